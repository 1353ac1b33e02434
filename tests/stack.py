"""Start the real stack (`synqra serve`) on free ports with fake cloud providers behind it.

Used by the test fixtures and the benchmarks: the config is the shipped
litellm_config.yaml with only ports, data dir and provider API bases changed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

from proxy.supervisor import die_with_parent
from tests.fakes.fake_providers import FakeProvider, free_port

REPO = Path(__file__).resolve().parent.parent
MASTER_KEY = "sk-synqra-test-" + "k" * 24


def write_config(
    target_dir: Path,
    providers: dict[str, FakeProvider] | None = None,
    synqra_overrides: dict[str, Any] | None = None,
    backends_of: RunningStack | None = None,
    edit: Callable[[dict[str, Any]], None] | None = None,
    repo: Path = REPO,
) -> tuple[Path, dict[str, str]]:
    """A test copy of litellm_config.yaml; returns (path, env with provider keys/bases).

    `backends_of`: reuse that stack's llama and embedding servers (external_url)
    instead of starting new ones, so extra proxies start in seconds.
    `repo`: the checkout whose litellm_config.yaml is copied (a benchmark compares another checkout's proxy).
    """
    cfg = yaml.safe_load((repo / "litellm_config.yaml").read_text())
    s = cfg["synqra"]
    s["server"]["port"] = free_port()
    s["server"]["data_dir"] = str(target_dir / "data")
    urls = {}
    for key in ("llama", "embed"):
        if backends_of is not None:
            other = yaml.safe_load(backends_of.config_path.read_text())["synqra"]["backends"][key]
            urls[key] = f"http://127.0.0.1:{other['port']}"
            s["backends"][key]["external_url"] = urls[key]
        else:
            s["backends"][key]["port"] = free_port()
            urls[key] = f"http://127.0.0.1:{s['backends'][key]['port']}"
    for m in cfg["model_list"]:
        if m["model_name"] in ("local-llama", "auto"):
            m["litellm_params"]["api_base"] = urls["llama"] + "/v1"
        elif m["model_name"] == "local-embed":
            m["litellm_params"]["api_base"] = urls["embed"] + "/v1"
    s.setdefault("learning", {})["schedule"] = "off"  # no unattended router swap in the middle of a test
    _deep_update(s, synqra_overrides or {})
    if edit is not None:
        edit(cfg)  # any other change to the whole file, e.g. removing the hooks for a baseline
    target_dir.mkdir(parents=True, exist_ok=True)
    path = target_dir / "litellm_config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    env: dict[str, str] = {}
    providers = providers or {}
    if "openai" in providers:
        env.update(OPENAI_API_KEY="sk-fake-openai", OPENAI_API_BASE=providers["openai"].base_url + "/v1")
    if "deepseek" in providers:
        env.update(DEEPSEEK_API_KEY="sk-fake-deepseek", DEEPSEEK_API_BASE=providers["deepseek"].base_url)
    if "anthropic" in providers:
        env.update(ANTHROPIC_API_KEY="sk-ant-fake", ANTHROPIC_API_BASE=providers["anthropic"].base_url)
    return path, env


def _deep_update(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_update(base[k], v)
        else:
            base[k] = v


@dataclass
class RunningStack:
    config_path: Path
    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log_path: Path
    providers: dict[str, FakeProvider] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> dict[str, int]:
        return json.loads((self.data_dir / "run" / "pids.json").read_text())

    def headers(self, key: str = MASTER_KEY) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_stack(
    target_dir: Path,
    providers: dict[str, FakeProvider] | None = None,
    synqra_overrides: dict[str, Any] | None = None,
    timeout_s: float = 300,
    backends_of: RunningStack | None = None,
    extra_env: dict[str, str] | None = None,
    edit: Callable[[dict[str, Any]], None] | None = None,
    repo: Path = REPO,
) -> RunningStack:
    """`repo`: the checkout whose proxy runs (its code and its litellm_config.yaml); this one by default."""
    path, provider_env = write_config(target_dir, providers, synqra_overrides, backends_of, edit, repo)
    cfg = yaml.safe_load(path.read_text())
    port = cfg["synqra"]["server"]["port"]
    data_dir = Path(cfg["synqra"]["server"]["data_dir"])
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.endswith("_API_BASE")}
    env.update(provider_env)
    env["SYNQRA_MASTER_KEY"] = MASTER_KEY
    env.pop("REDIS_URL", None)
    env.update(extra_env or {})
    log_path = target_dir / "serve.log"
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "serve", "--config", str(path)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=str(repo),
        preexec_fn=die_with_parent,  # a killed test run must not leave a stack behind
    )
    log.close()
    stack = RunningStack(path, proc, port, data_dir, log_path, dict(providers or {}))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"synqra serve exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
        if b"synqra: ready" in log_path.read_bytes():
            return stack
        time.sleep(0.5)
    stack.stop()
    raise TimeoutError(f"stack not ready after {timeout_s}s:\n{log_path.read_text()[-4000:]}")


def proxy_workers(s: RunningStack) -> list[psutil.Process]:
    """The manager's live worker processes (not multiprocessing's resource tracker, not a dead one)."""
    out = []
    for c in psutil.Process(s.pids()["proxy"]).children():
        try:
            if c.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(c.cmdline()):
                out.append(c)
        except psutil.Error:  # gone meanwhile
            pass
    return out


def wait_until(pred: Any, timeout_s: float = 60, interval_s: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if pred():
                return True
        except (httpx.HTTPError, OSError, ValueError):
            pass
        time.sleep(interval_s)
    return False


def spend_the_budget(s: RunningStack, messages: list[dict[str, Any]]) -> None:
    """Make paid calls (Claude, then DeepSeek) until not even the cheapest fits: each ends on a 429."""
    for model in ("claude-sonnet", "deepseek-chat"):
        for _ in range(400):
            r = httpx.post(
                f"{s.base_url}/v1/chat/completions",
                json={"model": model, "messages": messages, "max_tokens": 3},
                headers=s.headers(),
                timeout=60,
            )
            if r.status_code == 429:
                break
        assert r.status_code == 429
