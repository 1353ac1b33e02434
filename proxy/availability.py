"""Which configured models can answer right now, and if not, why.

A cloud model whose API key variable is not set cannot answer: routing does not pick it, an escalation skips
it, a LiteLLM fallback to it is skipped, and a request naming it goes to its configured fallback or gets a
400 naming the variable to set. A model whose provider refuses its key (401/403) is set aside for
`synqra.routing.unavailable_retry_s`, then tried again. Local models are always candidates (their health
is the supervisor's and LiteLLM's fallbacks' business).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from policies.common.settings import AppConfig, ModelEntry

log = logging.getLogger("synqra.availability")


def env_ref(value: Any) -> tuple[str | None, bool]:
    """(env var name, is set) for an `os.environ/NAME` reference; a literal value counts as set."""
    if isinstance(value, str) and value.startswith("os.environ/"):
        name = value.removeprefix("os.environ/")
        return name, bool(os.environ.get(name))
    return None, bool(value)


def _missing_key(entry: ModelEntry, env: Mapping[str, str]) -> str | None:
    """Why this model has no API key, or None when it has one (or needs none)."""
    key = entry.litellm_params.get("api_key")
    if isinstance(key, str) and key.startswith("os.environ/"):
        name = key.removeprefix("os.environ/")
        return None if env.get(name) else f"{name} not set"
    if key:
        return None
    # No api_key in the config: the provider's own variable, as LiteLLM reads it.
    import litellm

    try:
        missing = litellm.validate_environment(model=str(entry.litellm_params["model"])).get("missing_keys") or []
    except Exception:  # a provider LiteLLM cannot check: let the call say
        return None
    return f"{', '.join(missing)} not set" if missing else None


class Availability:
    def __init__(
        self, cfg: AppConfig, env: Mapping[str, str] | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        env = os.environ if env is None else env
        self.retry_s = cfg.synqra.routing.unavailable_retry_s
        self._clock = clock
        local = {
            cfg.synqra.backends.llama.model_alias,
            cfg.synqra.backends.embed.model_alias,
            cfg.synqra.routing.virtual_model,
        }
        self._missing = {
            m.model_name: why for m in cfg.model_list if m.model_name not in local and (why := _missing_key(m, env))
        }
        self._auth_failed: dict[str, tuple[float, str]] = {}  # model -> (until, why)

    def reason(self, model: str) -> str | None:
        """Why `model` (a model_list name) cannot answer now, or None."""
        why = self._missing.get(model)
        if why:
            return why
        failed = self._auth_failed.get(model)
        if failed is None:
            return None
        until, why = failed
        if self._clock() >= until:
            del self._auth_failed[model]  # time to try the key again
            return None
        return why

    def unavailable(self, models: list[str]) -> dict[str, str]:
        """{model: why} for the models of `models` that cannot answer now."""
        return {m: why for m in models if (why := self.reason(m))}

    def auth_failed(self, model: str, status: int) -> None:
        """The provider refused the key: set the model aside for a while (not a cooldown: it is not overloaded)."""
        if model not in self._auth_failed:
            log.error(
                "%s: the provider refused its API key (HTTP %d); not used for %.0f s", model, status, self.retry_s
            )
        self._auth_failed[model] = (self._clock() + self.retry_s, f"its provider refused the API key (HTTP {status})")
