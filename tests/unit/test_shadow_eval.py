"""Shadow evaluation: the local model's unseen answer is judged by the real quality scorer and logged
beside the route score; sampling, busy slots and requests the local tier never takes are skipped."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from policies.common.request_state import RequestState, RouteInfo
from policies.common.settings import AppConfig, ModelEntry, SynqraSettings
from policies.embedding.static import StaticEmbedder
from policies.quality.scorer import QualityScorer
from policies.routing.router import RouteDecision, Router
from proxy.shadow_eval import ShadowEvaluator, openai_messages
from tests.fakes.local_http import LocalPostServer

GOOD = "Our pricing has three plans: Starter at $10 a month, Team at $40 a month and Enterprise on request."


class LocalModel(LocalPostServer):
    """A llama.cpp-like OpenAI chat server on 127.0.0.1 that records what it was sent."""

    path = "/v1/chat/completions"

    def __init__(self, text: str = GOOD, finish: str = "stop", status: int = 200) -> None:
        self.text, self.finish, self.status = text, finish, status
        self.bodies: list[dict[str, Any]] = []

    async def handle(self, req: web.Request) -> web.Response:
        self.bodies.append(await req.json())
        await asyncio.sleep(0.05)
        if self.status != 200:
            return web.json_response({"error": {"message": "boom"}}, status=self.status)
        lp = {"content": [{"token": w, "logprob": -0.05, "top_logprobs": []} for w in self.text.split()]}
        return web.json_response(
            {
                "id": "x",
                "object": "chat.completion",
                "model": "local-llama",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": self.text},
                        "finish_reason": self.finish,
                        "logprobs": lp,
                    }
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 20, "total_tokens": 25},
            }
        )

    @property
    def api_base(self) -> str:
        return self.base_url + "/v1"


class Labels:
    """What the evaluator tells the learning loop (proxy/learning_loop.py has its own tests)."""

    def __init__(self) -> None:
        self.verdicts: list[tuple[str, str, bool]] = []

    def gate_verdict(self, request_id: str, action: str, shadow: bool = False) -> None:
        self.verdicts.append((request_id, action, shadow))

    def offer(self, *args: Any) -> None:
        pass


def runtime(api_base: str, **routing: Any) -> SimpleNamespace:
    models = [
        ModelEntry(
            model_name="local-llama",
            litellm_params={"model": "openai/local-llama", "api_base": api_base},
            model_info={"max_input_tokens": 2048, "max_output_tokens": 64},
        ),
        ModelEntry(model_name="claude-sonnet", litellm_params={"model": "anthropic/claude-sonnet-4-5"}),
    ]
    synqra = SynqraSettings.model_validate({"routing": {"mode": "shadow", "shadow_eval_share": 1.0, **routing}})
    cfg = AppConfig(path=Path("litellm_config.yaml"), model_list=models, synqra=synqra)
    embedder = StaticEmbedder.default()
    router = Router.from_config(cfg, embedder, lookup=lambda _: None)
    return SimpleNamespace(
        config=cfg, quality=QualityScorer.from_config(cfg, embedder), router=router, learning=Labels()
    )


def decision(tier: str = "local-llama") -> RouteDecision:
    return RouteDecision(tier, 0.1234, "test", {"prompt_tokens": 12, "scorer": "learned"})


PIXEL = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
TOOL = {"type": "function", "function": {"name": "lookup_price", "parameters": {"type": "object", "properties": {}}}}


def state(n: int = 0, call_type: str = "acompletion") -> RequestState:
    return RequestState(f"req-{n}", call_type=call_type, routing=RouteInfo(0.1234, 1.0, "learned", "test"))


ASK = {"messages": [{"role": "user", "content": "What is your pricing?"}], "max_tokens": 32}


def outcome(name: str) -> float:
    return REGISTRY.get_sample_value("synqra_shadow_evaluations_total", {"outcome": name}) or 0.0


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_the_local_answer_is_judged_and_logged_with_its_route_score(caplog: pytest.LogCaptureFixture) -> None:
    labels: list[tuple[str, str, bool]] = []

    async def main() -> tuple[LocalModel, LocalModel]:
        async with LocalModel() as good, LocalModel(finish="length") as cut:
            for model, n in ((good, 1), (cut, 2)):
                rt = runtime(model.api_base)
                ev = ShadowEvaluator(rt)
                assert ev.maybe_start(state(n), ASK, decision("claude-sonnet"))
                assert not ev.maybe_start(state(n + 10), ASK, decision()), "one at a time"
                await ev.drain()
                assert ev.maybe_start(state(n + 20), {**ASK, "max_tokens": 4096}, decision())
                await ev.drain()
                await ev.aclose()
                labels.extend(rt.learning.verdicts)
        return good, cut

    caplog.set_level(logging.INFO, logger="synqra.quality")
    good, cut = run(main())
    assert good.bodies[0]["max_tokens"] == 32 and good.bodies[0]["logprobs"] is True, "the client's own limit"
    assert good.bodies[1]["max_tokens"] == 64, "within what the local model can write (its max_output_tokens)"
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("shadow quality")]
    assert len(lines) == 4
    assert "first=local-llama route_score=0.1234 scorer=learned chosen=claude-sonnet request=req-1" in lines[0]
    assert " deliver " in lines[0] or " rephrase " in lines[0], lines[0]
    assert " escalate " in lines[2] and "cut off" in lines[2], "a cut-off answer is a hard failure"
    # Each verdict is a label for the router (shadow_gate): the cut-off answers escalated.
    assert [(rid, shadow) for rid, _, shadow in labels] == [
        ("req-1", True),
        ("req-21", True),
        ("req-2", True),
        ("req-22", True),
    ]
    assert [a for rid, a, _ in labels if rid in ("req-2", "req-22")] == ["escalate", "escalate"]


def test_anthropic_requests_reach_the_local_model_as_chat_messages(capfd: pytest.CaptureFixture) -> None:
    data = {
        "model": "auto",
        "max_tokens": 16,
        "system": "Answer briefly.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "What is your pricing?"}]}],
    }
    messages = openai_messages(data, "anthropic_messages", "openai/local-llama")
    assert messages[0] == {"role": "system", "content": "Answer briefly."}
    assert messages[1]["role"] == "user" and "pricing" in str(messages[1]["content"])
    assert "Provider List" not in capfd.readouterr().out, "nothing printed into the proxy's log"
    assert openai_messages(ASK, "acompletion", "openai/local-llama") == ASK["messages"]


def test_sampling_busy_slots_and_requests_the_local_tier_never_takes() -> None:
    async def main() -> tuple[list[bool], int, float]:
        async with LocalModel() as local:
            rt = runtime(local.api_base)
            ev = ShadowEvaluator(rt)
            before = outcome("skipped_busy")
            # The router's own decisions on requests it never sends to local-llama (its window is 2048 tokens).
            tools = {**ASK, "tools": [TOOL]}
            image = {"messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, PIXEL]}]}
            long = {"messages": [{"role": "user", "content": "Summarise this. " + "word " * 4000}]}
            started = [
                ev.maybe_start(state(1), ASK, decision()),
                ev.maybe_start(state(2), ASK, decision()),  # the one slot is taken
            ]
            await ev.drain()
            started += [
                ev.maybe_start(state(n), r, rt.router.decide(r)) for n, r in ((3, tools), (4, image), (5, long))
            ]
            await ev.drain()
            off = ShadowEvaluator(runtime(local.api_base, shadow_eval_share=0.0))
            started.append(off.maybe_start(state(6), ASK, decision()))
            await ev.aclose()
            await off.aclose()
            return started, len(local.bodies), outcome("skipped_busy") - before

    started, calls, busy = run(main())
    assert started == [True, False, False, False, False, False]
    assert calls == 1 and busy == 1
    assert REGISTRY.get_sample_value("synqra_shadow_evaluations_in_flight") == 0, "every slot was given back"


def test_a_failing_local_model_costs_only_the_sample(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> float:
        async with LocalModel(status=500) as local:
            ev = ShadowEvaluator(runtime(local.api_base))
            before = outcome("failed")
            assert ev.maybe_start(state(1), ASK, decision())
            await ev.drain()
            assert ev.maybe_start(state(2), ASK, decision()), "the slot is free again"
            await ev.drain()
            await ev.aclose()
            return outcome("failed") - before

    assert run(main()) == 2
    assert any("shadow evaluation of req-1 failed" in r.getMessage() for r in caplog.records)
