"""Runtime.warm_up(): the policy objects and the router's embedding table are ready before the first request."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
import yaml

from policies.common.settings import load_config
from proxy.runtime import Runtime

REPO = Path(__file__).resolve().parents[2]


def test_warm_up_builds_router_table_quality_and_budget(tmp_path: Path) -> None:
    raw = yaml.safe_load((REPO / "litellm_config.yaml").read_text())
    raw["synqra"]["server"]["data_dir"] = str(tmp_path / "data")
    path = tmp_path / "litellm_config.yaml"
    path.write_text(yaml.safe_dump(raw))
    rt = Runtime(load_config(path), "sk-test")
    assert not {"router", "quality", "budget", "static_embedder"} & set(vars(rt))  # lazy until asked

    async def main() -> None:
        await rt.warm_up()
        assert {"router", "quality", "budget", "static_embedder"} <= set(vars(rt))
        assert rt.static_embedder._chunks._ids  # the tokenizer has run once
        assert (await rt.budget.status())["store"]["reachable"]
        await rt.aclose()

    asyncio.run(main())


def test_a_failing_step_does_not_stop_the_others_and_is_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The budget's SQLite file cannot be made (a file where its folder should be): warm-up stopped at that step, so
    the learning loop never started (no inference log, no reload of installed routers) and nothing retried it. Now the
    learning loop starts anyway, the failure is logged once, and the budget starts once its folder can be made."""
    raw = yaml.safe_load((REPO / "litellm_config.yaml").read_text())
    raw["synqra"]["server"]["data_dir"] = str(tmp_path / "data")
    blocker = tmp_path / "volume"
    blocker.write_text("not mounted yet\n")
    raw["synqra"].setdefault("budget", {})["sqlite_path"] = str(blocker / "budget.sqlite3")
    raw["synqra"].setdefault("learning", {})["enabled"] = True
    path = tmp_path / "litellm_config.yaml"
    path.write_text(yaml.safe_dump(raw))
    rt = Runtime(load_config(path), "sk-test")
    rt.WARM_UP_RETRY_S = 0.2  # type: ignore[misc]  # instead of 30 s

    async def main() -> None:
        with caplog.at_level(logging.INFO, logger="synqra.runtime"):
            await rt.warm_up()
            assert rt.learning.writer is not None and rt.learning._task is not None  # started after the failure
            await asyncio.sleep(0.5)  # two retries, both failing: logged once
            blocker.unlink()  # the volume appears
            for _ in range(50):
                if any("warm-up: budget ready on retry" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.1)
            assert (await rt.budget.status())["store"]["reachable"]
            assert rt.learning._ledger_row in rt.budget.listeners  # the loop's cost listener, once budget exists
            await rt.aclose()
        failures = [r for r in caplog.records if "warm-up: budget failed" in r.getMessage()]
        assert len(failures) == 1 and failures[0].exc_info is not None
        assert any("warm-up: budget ready on retry" in r.getMessage() for r in caplog.records)

    asyncio.run(main())
