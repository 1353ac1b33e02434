"""Accountant.settle: the post-call hook and LiteLLM's logging task settle a request once between them;
a request entering the proxy starts a fresh RequestState."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from policies.budget.accountant import Accountant
from policies.common.request_state import RequestState


class RecordingGuard:
    """The guard's two writes, counted (the guard itself has its own tests): `settle` is what is under test."""

    def __init__(self, record: Any) -> None:
        self.record = record

    def is_free(self, model: str) -> bool:
        return True

    async def record_free(self, record: Any) -> None:
        await self.record()

    async def settle(self, request_id: str, record: Any) -> None:
        await self.record()


def account_once(state: RequestState, settle: Any) -> Any:
    return Accountant(RecordingGuard(settle), "local-llama").settle(
        state, {"prompt_tokens": 1, "completion_tokens": 1}, "m"
    )


def is_accounted(state: RequestState) -> bool:
    return state.accounted


def test_concurrent_callers_settle_once_and_both_wait_for_it() -> None:
    calls: list[str] = []
    written: list[bool] = []

    async def settle() -> None:
        calls.append("settle")
        await asyncio.sleep(0.01)  # the store round trip
        written.append(True)

    async def caller(state: RequestState) -> None:
        await account_once(state, settle)
        assert written == [True]  # neither caller returns before the record is written

    async def main() -> None:
        hook_state = RequestState("r-once", call_type="acompletion")
        log_state = copy.deepcopy(hook_state)  # LiteLLM hands the logging task a (deep) copy of the metadata
        assert log_state is hook_state, "a copy of the state is the live state"
        await asyncio.gather(caller(hook_state), caller(log_state))
        assert calls == ["settle"]
        assert is_accounted(hook_state) and is_accounted(log_state)
        await account_once(copy.copy(hook_state), settle)  # later callers see it accounted
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
        state = RequestState("r-retry", call_type="acompletion")
        first = asyncio.create_task(account_once(state, flaky))
        await asyncio.sleep(0)
        second = asyncio.create_task(account_once(state, flaky))
        with pytest.raises(RuntimeError):
            await first
        await second
        assert len(attempts) == 2 and is_accounted(state)

    asyncio.run(main())


def test_new_request_state_drops_what_a_client_sent_under_our_key() -> None:
    from proxy.litellm_state import new_state, state_of

    forged = {"request_id": "synqra-forged", "accounted": True}
    for key in ("metadata", "litellm_metadata"):
        data = {"model": "gpt-4o", key: {"synqra": dict(forged), "user_tag": "kept"}}
        state = new_state(data)
        assert state.request_id != forged["request_id"] and not state.accounted
        assert data[key]["user_tag"] == "kept"
        assert state_of(data) is state, "later hooks see the same fresh state"
