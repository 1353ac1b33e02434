"""The proxy freezes its start-up heap and collects young garbage less often (proxy/server.py)."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from proxy import server


@pytest.fixture
def gc_restored() -> Any:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_freeze_moves_live_objects_out_of_the_collectors_walks(
    gc_restored: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(server.GC_THRESHOLD_ENV, raising=False)
    kept = [{"n": i} for i in range(1000)]  # alive at "start-up"
    frozen = server.freeze_startup_heap()
    assert frozen >= len(kept)
    # The collector no longer walks them (the freeze count itself moves as other threads free frozen objects).
    assert not any(o is kept for o in gc.get_objects())
    assert gc.get_threshold()[0] == server.GC_YOUNG_THRESHOLD
    # Garbage made after the freeze is still collected: a reference cycle goes on the next collection.
    cycle: list[Any] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1


def test_operators_gc_thresholds_are_kept(gc_restored: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """PYTHON_GC_THRESHOLD is LiteLLM's setting (applied when it is imported): the freeze leaves it alone."""
    monkeypatch.setenv(server.GC_THRESHOLD_ENV, "1234,11,12")
    gc.set_threshold(1234, 11, 12)
    server.freeze_startup_heap()
    assert gc.get_threshold() == (1234, 11, 12)


def test_lifespan_freezes_once_start_up_is_complete(gc_restored: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The freeze runs when the app reports start-up complete (after LiteLLM's own start-up), not before."""
    events: list[str] = []

    class Runtime:
        async def warm_up(self) -> None:
            events.append("warm_up")

        async def aclose(self) -> None:
            events.append("aclose")

    monkeypatch.setattr(server, "get_runtime", lambda: Runtime())

    def freeze() -> int:
        events.append("freeze")
        return 0

    monkeypatch.setattr(server, "freeze_startup_heap", freeze)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "lifespan.startup"
        events.append("app start-up")
        await send({"type": "lifespan.startup.complete"})
        assert (await receive())["type"] == "lifespan.shutdown"
        await send({"type": "lifespan.shutdown.complete"})

    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    asyncio.run(server.WarmUpLifespan(app)({"type": "lifespan"}, receive, send))
    assert events == ["warm_up", "app start-up", "freeze", "aclose"]
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
