"""proxy.import_guards: LiteLLM's per-request OTel import fails at once when the SDK is missing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CHECK = """
import importlib.util, sys
from policies.common.offline import apply_offline_env
apply_offline_env()
from proxy.import_guards import block_unavailable_otel_imports, otel_sdk_available
blocked = block_unavailable_otel_imports()
import litellm.proxy.proxy_server  # the proxy still imports
try:
    from litellm.integrations.otel.logger import fan_out_provider
    outcome = "imported"
except ModuleNotFoundError as e:
    outcome = "blocked" if "halted" in str(e) else "failed-slowly"
import json
print(json.dumps([otel_sdk_available(), blocked, outcome]))
"""


@pytest.mark.stack
def test_otel_logger_import_is_blocked_only_without_the_sdk() -> None:
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300, check=True)
    sdk, blocked, outcome = json.loads(out.stdout.strip().splitlines()[-1])
    if sdk:
        assert blocked == [] and outcome == "imported"
    else:  # this project does not install the OpenTelemetry SDK: the CI case
        assert blocked == ["litellm.integrations.otel.logger"] and outcome == "blocked"
