"""`synqra learn` on a disk that fills while it runs, and the schedule that retries it.

The disk is filled for real, portably and without root: the run is a child process whose files may not grow past
RLIMIT_FSIZE bytes (the kernel refuses the write, EFBIG, as a full disk refuses it with ENOSPC). The candidate's
weights (about 100 KB) do not fit; a run log already past the limit cannot take the run's record."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from policies.embedding.names import embedder_for
from policies.learning.representation import Representer
from policies.routing.scorer import load_artifact
from proxy.supervisor import LearnSchedule
from tests.unit.test_learning_runs import _log

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 64 * 1024  # bytes a file of the run may grow to: the router's weights do not fit


@pytest.fixture(scope="module")
def representer() -> Representer:
    prior = load_artifact()
    return Representer(prior, embedder_for(prior.embedder))


def _small_disk() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def _learn(store: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", "learn", "--store", str(store)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_small_disk,
    )


def _temp_folders(store: Path) -> list[str]:
    return sorted(p.name for p in (store / "routers").glob(".tmp-*"))


def test_an_install_that_fills_the_disk_leaves_no_temp_folder_and_is_recorded(
    tmp_path: Path, representer: Representer
) -> None:
    """The candidate won but its weights could not be written: the run was recorded as failed, but its temporary
    folder (the partial weights) stayed, one more at each scheduled retry, and the disk stayed full."""
    _log(tmp_path, representer, 300, seed=30, start=time.time() - 1000)
    (tmp_path / "routers").mkdir()
    (tmp_path / "routers" / ".tmp-999999999-1").mkdir()  # a run killed inside an install (no such process)
    done = _learn(tmp_path)
    assert done.returncode == 1, done.stderr
    assert "failed: candidate won but could not be installed" in done.stdout, done.stdout
    assert _temp_folders(tmp_path) == []
    (run,) = [json.loads(x) for x in (tmp_path / "routers" / "runs.jsonl").read_text().splitlines()]
    assert run["decision"] == "failed" and "File too large" in run["reason"]


def test_a_run_whose_record_cannot_be_written_says_so_in_one_line(tmp_path: Path, representer: Representer) -> None:
    """The run log on the full disk too: the run ended in a traceback (OSError from record_run), unrecorded."""
    _log(tmp_path, representer, 300, seed=30, start=time.time() - 1000)
    routers = tmp_path / "routers"
    routers.mkdir()
    old = {"decision": "kept", "ts": time.time() - 30 * 86400, "reason": "x" * 200}
    (routers / "runs.jsonl").write_text((json.dumps(old) + "\n") * (LIMIT // 200 + 10))  # past the limit
    done = _learn(tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("synqra learn:")]
    assert "could not be recorded" in line and "runs.jsonl" in line and "File too large" in line
    assert _temp_folders(tmp_path) == []


def _schedule(tmp_path: Path, argv: list[str]) -> LearnSchedule:
    cfg: Any = SimpleNamespace(synqra=SimpleNamespace(learning=SimpleNamespace(enabled=True, schedule="daily")))
    cfg.path = tmp_path / "litellm_config.yaml"
    s = LearnSchedule(cfg, tmp_path / "learn.log", dict(os.environ))
    s.argv = argv
    s.next_at = 0.0
    return s


def _run_once(s: LearnSchedule) -> None:
    s.tick()
    assert s.proc is not None
    s.proc.wait(timeout=30)
    s.tick()  # sees the run's end


@pytest.mark.parametrize("failures", [1, 3])
def test_failed_scheduled_runs_back_off(tmp_path: Path, failures: int) -> None:
    """A run that failed (exit 1: its record not written) was started again at the next check, 10 minutes on, and
    the one after: each refitted for minutes. Failures in a row now wait 20, 40, 80 minutes ..., up to a day."""
    s = _schedule(tmp_path, [sys.executable, "-c", "raise SystemExit(1)"])
    for _ in range(failures):
        s.next_at = 0.0
        _run_once(s)
    assert s.proc is None and s.failures == failures
    wait = s.next_at - time.monotonic()
    assert LearnSchedule.CHECK_EVERY_S * 2**failures - 5 < wait <= LearnSchedule.CHECK_EVERY_S * 2**failures
    s.argv = [sys.executable, "-c", "pass"]
    s.next_at = 0.0
    _run_once(s)  # a run that succeeds ends the backoff
    assert s.failures == 0 and s.next_at - time.monotonic() <= LearnSchedule.CHECK_EVERY_S
