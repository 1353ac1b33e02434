"""LlamaIndex `OpenAILike` with its defaults (not a chat model: /v1/completions) and `OpenAIEmbedding`.

LlamaIndex runs in its own venv (see llamaindex_driver.py), as a subprocess per call.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.clients.conftest import BillCheck
from tests.stack import MASTER_KEY

DRIVER = Path(__file__).with_name("llamaindex_driver.py")
# scripts/install.sh test makes it inside the project's venv.
PYTHON = Path(sys.prefix) / "llamaindex" / "bin" / "python"
MODELS = ["auto", "local-llama", "deepseek-chat", "claude-sonnet"]

pytestmark = pytest.mark.skipif(
    not PYTHON.exists(), reason=f"LlamaIndex venv missing ({PYTHON}): run scripts/install.sh test"
)


def drive(base_url: str, model: str, op: str) -> dict:
    p = subprocess.run(
        [str(PYTHON), str(DRIVER), base_url, MASTER_KEY, model, op],
        capture_output=True,
        text=True,
        timeout=240,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )
    last = [ln for ln in p.stderr.strip().splitlines() if ln and not ln.startswith((" ", "Traceback"))][-3:]
    assert p.returncode == 0, f"LlamaIndex {op} on {model} failed: {' | '.join(last)[-2500:]}"
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("op", ["complete", "stream_complete"])
@pytest.mark.parametrize("model", MODELS)
def test_openai_like_defaults(client_stack, bill: BillCheck, model: str, op: str) -> None:
    out = drive(client_stack.base_url, model, op)
    assert isinstance(out["text"], str)
    bill.settled()


@pytest.mark.parametrize("model", ["auto", "deepseek-chat"])
def test_openai_like_chat(client_stack, bill: BillCheck, model: str) -> None:
    out = drive(client_stack.base_url, model, "chat")
    assert isinstance(out["text"], str)
    bill.settled()


def test_openai_embedding(client_stack, bill: BillCheck) -> None:
    assert drive(client_stack.base_url, "local-embed", "embed")["dims"] == [384, 384]
    bill.settled()
