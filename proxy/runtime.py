"""Process-wide state of the running proxy: the validated config and the policy objects.

Set once by `proxy.server` before LiteLLM starts. The hook module is loaded by
LiteLLM from a file path (a separate module object), so state lives here, in a
normally imported module that the hooks and the extra endpoints both reach.
"""
from __future__ import annotations

from dataclasses import dataclass

from proxy.settings import AppConfig


@dataclass
class Runtime:
    config: AppConfig
    master_key: str


_runtime: Runtime | None = None


def init_runtime(config: AppConfig, master_key: str) -> Runtime:
    global _runtime
    _runtime = Runtime(config=config, master_key=master_key)
    return _runtime


def get_runtime() -> Runtime:
    if _runtime is None:
        raise RuntimeError("synqra runtime not initialised: start the proxy with `synqra serve` or proxy.server")
    return _runtime
