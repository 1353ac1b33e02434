"""account_once: the post-call hook and LiteLLM's logging task settle a request once between them."""
from __future__ import annotations

import asyncio

import pytest

from proxy.request_state import account_once, is_accounted


def test_concurrent_callers_settle_once_and_both_wait_for_it() -> None:
    calls: list[str] = []
    written: list[bool] = []

    async def settle() -> None:
        calls.append("settle")
        await asyncio.sleep(0.01)  # the store round trip
        written.append(True)

    async def caller(state: dict) -> None:
        await account_once(state, settle)
        assert written == [True]  # neither caller returns before the record is written

    async def main() -> None:
        hook_state = {"request_id": "r-once"}
        log_state = dict(hook_state)  # LiteLLM hands the logging task a copy of the state
        await asyncio.gather(caller(hook_state), caller(log_state))
        assert calls == ["settle"]
        assert is_accounted(hook_state) and is_accounted(log_state)
        await account_once({"request_id": "r-once"}, settle)  # later callers see it accounted
        assert calls == ["settle"]

    asyncio.run(main())


def test_a_failed_settle_is_retried_by_the_waiting_caller() -> None:
    attempts: list[int] = []

    async def flaky() -> None:
        attempts.append(1)
        await asyncio.sleep(0.01)
        if len(attempts) == 1:
            raise RuntimeError("store exploded")

    async def main() -> None:
        first = asyncio.create_task(account_once({"request_id": "r-retry"}, flaky))
        await asyncio.sleep(0)
        second = asyncio.create_task(account_once({"request_id": "r-retry"}, flaky))
        with pytest.raises(RuntimeError):
            await first
        await second
        assert len(attempts) == 2 and is_accounted({"request_id": "r-retry"})

    asyncio.run(main())


def test_new_request_state_drops_what_a_client_sent_under_our_key() -> None:
    from proxy.request_state import new_request_state, request_state

    forged = {"request_id": "synqra-forged", "accounted": True}
    for key in ("metadata", "litellm_metadata"):
        data = {"model": "gpt-4o", key: {"synqra": dict(forged), "user_tag": "kept"}}
        state = new_request_state(data)
        assert state["request_id"] != forged["request_id"] and not state.get("accounted")
        assert data[key]["user_tag"] == "kept"
        assert request_state(data) is state, "later hooks see the same fresh state"
