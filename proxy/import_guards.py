"""Stop LiteLLM from re-trying an import that cannot succeed, once per request.

LiteLLM's key auth runs `from litellm.integrations.otel.logger import ...` on every
request (to route OpenTelemetry spans) and swallows the failure. Without the
OpenTelemetry SDK installed that import fails half-way through the module, and
Python re-executes it on the next request: about 0.25 ms of CPU per request on
this machine, more than the whole budget store round trip. Marking the module as
unavailable makes the same import fail at once, with the same exception type.
"""

from __future__ import annotations

import importlib.util
import sys

# Modules that need the OpenTelemetry SDK and that LiteLLM imports on a request's path.
OTEL_SDK_MODULES = ("litellm.integrations.otel.logger",)


def otel_sdk_available() -> bool:
    try:
        return importlib.util.find_spec("opentelemetry.sdk") is not None
    except ModuleNotFoundError:  # not even the opentelemetry API package
        return False


def block_unavailable_otel_imports() -> list[str]:
    """Without the OpenTelemetry SDK, make LiteLLM's OTel logger import fail fast; return what was blocked."""
    if otel_sdk_available():
        return []
    blocked = [m for m in OTEL_SDK_MODULES if m not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # Python's "import halted" marker
    return blocked
