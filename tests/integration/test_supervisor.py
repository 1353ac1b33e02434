"""The supervisor restarts a killed backend, and stops everything it started."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from tests.stack import MASTER_KEY, start_stack, wait_until


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has exited all the same.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _chat(base_url: str, model: str) -> httpx.Response:
    return httpx.post(
        f"{base_url}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=60,
    )


@pytest.mark.parametrize("backend", ["local-llama", "local-embed"])
def test_sigkilled_backend_comes_back(stack, backend) -> None:
    old = stack.pids()[backend]
    os.kill(old, signal.SIGKILL)
    assert wait_until(lambda: stack.pids()[backend] != old, timeout_s=30), "supervisor did not restart the backend"
    if backend == "local-llama":
        assert wait_until(lambda: _chat(stack.base_url, "local-llama").status_code == 200, timeout_s=120)
    else:

        def ok() -> bool:
            r = httpx.post(
                f"{stack.base_url}/v1/embeddings",
                json={"model": "local-embed", "input": "back again"},
                headers={"Authorization": f"Bearer {MASTER_KEY}"},
                timeout=30,
            )
            return r.status_code == 200

        assert wait_until(ok, timeout_s=120)
    log = (stack.data_dir / "logs").parent  # restarts are logged by the supervisor
    assert b"restarted" in stack.log_path.read_bytes() and log.exists()


def test_sigterm_stops_everything_without_orphans(tmp_path) -> None:
    s = start_stack(tmp_path)
    pids = s.pids()
    children = [pid for name, pid in pids.items() if name != "supervisor"]
    assert all(_alive(p) for p in children)
    t0 = time.monotonic()
    assert s.stop() == 0
    assert wait_until(lambda: not any(_alive(p) for p in children), timeout_s=20), "orphan processes left behind"
    assert time.monotonic() - t0 < 40
