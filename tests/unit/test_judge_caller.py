"""JudgeCaller.ask_all against a real budget guard (SQLite) and a real LiteLLM router in front of a fake DeepSeek:
calls reserved together give back the reservations of the calls not made, however the pair ends."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from policies.budget.accountant import Accountant
from policies.budget.guard import BudgetGuard
from policies.common.offline import apply_offline_env
from policies.common.request_state import RequestState
from policies.common.settings import AppConfig, ModelEntry, SynqraSettings
from proxy.judge import JudgeCaller
from tests.fakes.fake_providers import FakeProvider

apply_offline_env()

PAIR = [[{"role": "user", "content": "Which answer is better, A or B?"}]] * 2


@pytest.fixture
def deepseek() -> Iterator[FakeProvider]:
    fp = FakeProvider("deepseek", default_text="A is better.").start()
    yield fp
    fp.stop()


def config(tmp: Path, api_base: str) -> AppConfig:
    models = [
        ModelEntry(model_name="local-llama", litellm_params={"model": "openai/local-llama"}, model_info={}),
        ModelEntry(
            model_name="deepseek-chat",
            litellm_params={"model": "deepseek/deepseek-chat", "api_key": "sk-fake", "api_base": api_base},
            model_info={"input_cost_per_token": 0.28e-6, "output_cost_per_token": 0.42e-6, "max_output_tokens": 8192},
        ),
        ModelEntry(  # the baseline model
            model_name="claude-sonnet",
            litellm_params={"model": "anthropic/claude-sonnet-4-5"},
            model_info={"input_cost_per_token": 3e-6, "output_cost_per_token": 15e-6, "max_output_tokens": 64000},
        ),
    ]
    synqra = SynqraSettings.model_validate({"server": {"data_dir": str(tmp)}, "budget": {"store": "sqlite"}})
    return AppConfig(path=tmp / "litellm_config.yaml", model_list=models, synqra=synqra)


def test_a_pair_ended_by_an_exception_gives_back_the_reservations_of_the_calls_not_made(
    tmp_path: Path, deepseek: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first judge call is answered and booked; reading its reply raises (not a failed call): the second call,
    reserved with the first and never made, gave its reservation back at once. It was held until
    reservation_ttl_s (900 s by default), against the judge's monthly limit and the month's."""
    import litellm
    import litellm.proxy.proxy_server as proxy_server

    cfg = config(tmp_path, deepseek.base_url)
    router = litellm.Router(model_list=[m.model_dump(include={"model_name", "litellm_params"}) for m in cfg.model_list])
    monkeypatch.setattr(proxy_server, "llm_router", router)

    def unreadable(_: str) -> bool:
        raise ValueError("a reply the parser chokes on")

    async def main() -> tuple[float, float]:
        guard = BudgetGuard.from_config(cfg, env={})
        rt = SimpleNamespace(
            budget=guard, accounts=Accountant(guard, "local-llama"), availability=SimpleNamespace(reason=lambda _: None)
        )
        judge = JudgeCaller(rt, "learning", "deepseek-chat", 16)
        with pytest.raises(ValueError, match="chokes"):
            await judge.ask_all(RequestState.new(call_type="acompletion"), PAIR, accept=unreadable)
        await guard.refresh()
        snap = guard.snapshot()
        await guard.aclose()
        return snap["reserved_usd"], snap["committed_usd"]

    reserved, committed = asyncio.run(main())
    assert len(deepseek.requests) == 1, "the second call of the pair was not made"
    assert committed > 0, "the call made is booked"
    assert reserved == 0, f"${reserved} still reserved for the judge call never made"
