"""Complexity routing inside the running proxy: `auto` goes to the cheapest tier that will do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.stack import MASTER_KEY, spend_the_budget, start_stack, wait_until

PIXEL = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
TIERS = ["local-llama", "deepseek-chat", "claude-sonnet"]


def _route(raw) -> tuple[str, float]:
    """(the tier the router chose, its score); the quality gate may have escalated from there."""
    chain = raw.headers["x-synqra-escalated"]
    first = chain.split(">")[0] if chain != "false" else raw.headers["x-synqra-route"]
    return first, float(raw.headers["x-synqra-route-score"])


def test_guide_examples_openai_sdk(openai_client, fresh_providers) -> None:
    easy = openai_client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "What is your pricing?"}], max_tokens=16
    )
    tier, score = _route(easy)
    assert tier == "local-llama" and 0.0 <= score <= 1.0
    assert easy.headers["x-synqra-request-id"].startswith("synqra-")

    before = len(fresh_providers["anthropic"].requests)  # the easy answer may have been escalated
    brand = openai_client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": "Write a compelling brand story for a luxury tech startup"}],
        max_tokens=64,
    )
    assert _route(brand)[0] == "claude-sonnet"
    assert brand.headers["x-synqra-escalated"] == "false", "the top tier is not second-guessed"
    assert brand.parse().choices[0].message.content.strip() == fresh_providers["anthropic"].default_text
    assert len(fresh_providers["anthropic"].requests) == before + 1


def test_guide_examples_anthropic_sdk(anthropic_client, fresh_providers) -> None:
    easy = anthropic_client.messages.with_raw_response.create(
        model="auto", max_tokens=16, messages=[{"role": "user", "content": "What is your pricing?"}]
    )
    assert _route(easy)[0] == "local-llama" and easy.parse().content[0].text.strip()
    brand = anthropic_client.messages.with_raw_response.create(
        model="auto",
        max_tokens=64,
        system="You are a marketing writer.",
        messages=[{"role": "user", "content": "Write a compelling brand story for a luxury tech startup"}],
    )
    assert _route(brand)[0] == "claude-sonnet"
    assert fresh_providers["anthropic"].requests[-1].body["system"]


def test_images_go_to_a_vision_tier(openai_client, fresh_providers) -> None:
    raw = openai_client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What colour is this?"},
                    {"type": "image_url", "image_url": {"url": PIXEL}},
                ],
            }
        ],
        max_tokens=16,
    )
    assert _route(raw)[0] == "claude-sonnet", "the only vision-capable tier"


def test_tools_skip_the_local_tier(openai_client, fresh_providers) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_time",
                "description": "Current time",
                "parameters": {"type": "object", "properties": {}},
            },
        }
    ]
    raw = openai_client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "What time is it?"}], tools=tools, max_tokens=16
    )
    assert _route(raw)[0] in ("deepseek-chat", "claude-sonnet")
    sent = (fresh_providers["deepseek"].requests or fresh_providers["anthropic"].requests)[-1].body
    assert sent.get("tools"), "the tools reach the provider"


def test_long_context_never_goes_to_a_too_small_window(openai_client) -> None:
    long_text = "Here is a document line about quarterly revenue figures. " * 700  # ~6,000 tokens > local 2,048
    raw = openai_client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": long_text + "\nWhat is your pricing?"}], max_tokens=16
    )
    assert _route(raw)[0] != "local-llama"


def test_multi_turn_and_system_prompt_are_read(openai_client) -> None:
    convo = [
        {"role": "system", "content": "You are the support bot of a SaaS company."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "What is your pricing?"},
    ]
    raw = openai_client.chat.completions.with_raw_response.create(model="auto", messages=convo, max_tokens=16)
    tier, score = _route(raw)
    assert tier in TIERS and 0 <= score <= 1


def test_explicit_models_are_not_routed(openai_client, fresh_providers) -> None:
    raw = openai_client.chat.completions.with_raw_response.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "What is your pricing?"}], max_tokens=8
    )
    assert raw.headers["x-synqra-route"] == "deepseek-chat" and "x-synqra-route-score" not in raw.headers


def test_intercepted_names_are_routed_like_auto(tmp_path: Path, stack, providers, fresh_providers) -> None:
    s = start_stack(tmp_path, providers, {"routing": {"intercept_models": ["claude-3-5-sonnet-*"]}}, backends_of=stack)
    try:
        r = httpx.post(
            f"{s.base_url}/v1/chat/completions",
            json={
                "model": "claude-3-5-sonnet-20241022",
                "messages": [{"role": "user", "content": "What is your pricing?"}],
                "max_tokens": 8,
            },
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
            timeout=120,
        )
        assert r.status_code == 200 and _route(r)[0] == "local-llama", "an easy request starts on the free tier"
    finally:
        s.stop()


@pytest.mark.parametrize(("sdk", "mode"), [("openai", "live"), ("anthropic", "live"), ("openai", "shadow")])
def test_budget_stopped_auto_stays_local_and_says_so(
    tmp_path: Path, stack, providers, fresh_providers, sdk, mode
) -> None:
    # Shadow mode changes who answers while there is money, not the emergency stop.
    overrides = {"budget": {"monthly_limit_usd": 0.0004}, "routing": {"mode": mode}}
    s = start_stack(tmp_path, providers, overrides, backends_of=stack)
    brand = [{"role": "user", "content": "Write a compelling brand story for a luxury tech startup"}]
    auth = {"Authorization": f"Bearer {MASTER_KEY}"}
    try:
        spend_the_budget(s, brand)  # the tiny budget, until not even the cheapest paid call fits
        n = sum(len(p.requests) for p in fresh_providers.values())
        if sdk == "openai":
            r = httpx.post(
                f"{s.base_url}/v1/chat/completions",
                json={"model": "auto", "messages": brand, "max_tokens": 16},
                headers=auth,
                timeout=120,
            )
        else:
            r = httpx.post(
                f"{s.base_url}/v1/messages",
                json={"model": "auto", "messages": brand, "max_tokens": 16},
                headers=auth,
                timeout=120,
            )
        assert r.status_code == 200, r.text
        assert r.headers["x-synqra-route"] == "local-llama" and r.headers["x-synqra-budget"] == "stopped"
        assert sum(len(p.requests) for p in fresh_providers.values()) == n, "no paid call once the budget is stopped"
    finally:
        s.stop()


def test_shadow_mode_serves_the_incumbent_and_logs_the_choice(
    tmp_path: Path, stack, providers, fresh_providers, capsys
) -> None:
    """Rollout step one: the router decides and says so, the incumbent answers, the local model answers
    too (unseen) and is judged, and the proxy's inference log is enough for `synqra route-thresholds --from-log`."""
    import anthropic
    import openai

    from policies.learning.labels import gate_action
    from policies.learning.route_thresholds import route_thresholds_main
    from policies.learning.store import InferenceLog
    from policies.routing.thresholds import local_cut

    overrides = {"routing": {"mode": "shadow", "intercept_models": ["claude-3-5-sonnet-*"], "shadow_eval_share": 1.0}}
    s = start_stack(tmp_path, providers, overrides, backends_of=stack)
    log = s.data_dir / "logs" / "proxy.log"
    evaluated = lambda: log.read_text().count("synqra.quality INFO shadow quality ")  # noqa: E731
    easy = [{"role": "user", "content": "What is your pricing?"}]
    anthropic_calls = len(fresh_providers["anthropic"].requests)
    scores = []
    try:
        oai = openai.OpenAI(base_url=s.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=120)
        raw = oai.chat.completions.with_raw_response.create(model="auto", messages=easy, max_tokens=8)
        assert raw.headers["x-synqra-route"] == "claude-sonnet", "auto is served by the strongest tier"
        assert raw.headers["x-synqra-route-shadow"] == "local-llama", "what live routing would have done"
        assert 0.0 <= float(raw.headers["x-synqra-route-score"]) <= 1.0
        assert "x-synqra-quality-score" not in raw.headers, "the incumbent's answers are not second-guessed"
        assert raw.parse().choices[0].message.content.strip() == fresh_providers["anthropic"].default_text
        scores.append(raw.headers["x-synqra-route-score"])
        version = raw.headers["x-synqra-router-version"]
        assert wait_until(lambda: evaluated() == 1, 120), "the local model answered in the background and was judged"

        ant = anthropic.Anthropic(base_url=s.base_url, api_key=MASTER_KEY, max_retries=0, timeout=120)
        raw = ant.messages.with_raw_response.create(
            model="claude-3-5-sonnet-20241022", max_tokens=8, system="Answer briefly.", messages=easy
        )
        assert (
            raw.headers["x-synqra-route"] == "claude-sonnet" and raw.headers["x-synqra-route-shadow"] == "local-llama"
        )
        scores.append(raw.headers["x-synqra-route-score"])
        assert wait_until(lambda: evaluated() == 2, 120), "Anthropic-shaped requests are evaluated too"
        hard = "Step by step, prove that there are infinitely many primes, then analyse the complexity of the sieve of Eratosthenes."
        raw = oai.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": hard}], max_tokens=8
        )
        assert raw.headers["x-synqra-route"] == "claude-sonnet"
        scores.append(raw.headers["x-synqra-route-score"])
        assert wait_until(lambda: evaluated() == 3, 120)
        assert len(fresh_providers["anthropic"].requests) == anthropic_calls + 3, "every answer came from the incumbent"
        status = lambda: httpx.get(f"{s.base_url}/api/budget/status", headers=s.headers(), timeout=30).json()  # noqa: E731
        assert wait_until(lambda: status()["requests"] == 3, 30), status()
        assert status()["local_share"] == 0.0, "the shadow answers are not in the ledger"
        families = httpx.get(f"{s.base_url}/metrics", headers=s.headers(), timeout=30).text
        outcomes = [ln for ln in families.splitlines() if ln.startswith("synqra_shadow_evaluations_total{")]
        assert sum(float(ln.rsplit(" ", 1)[1]) for ln in outcomes) == 3, outcomes
    finally:
        s.stop()
    learning = InferenceLog(s.data_dir / "learning")  # the proxy's writer thread flushed it as the proxy stopped
    verdicts = [(score, gate_action(label)) for score, label in learning.gate_labels(version, "learned")]
    learning.close()
    assert sorted(f"{score:.4f}" for score, _ in verdicts) == sorted(scores), (
        "each verdict carries its request's route score"
    )
    assert {action for _, action in verdicts} <= {"deliver", "rephrase", "escalate"}
    assert local_cut(verdicts, 1.0, min_requests=1) is not None
    capsys.readouterr()
    shares = ["--config", str(s.config_path), "--shares", "0.5", "0.25", "0.25", "--from-log"]
    assert route_thresholds_main(shares) == 2, "three logged decisions are too few to fit cuts from"
    assert "only 3 logged decisions" in capsys.readouterr().err
    assert route_thresholds_main([*shares, "--force"]) == 0
    out = capsys.readouterr().out
    configured = next(line for line in out.splitlines() if line.startswith("# at the configured thresholds"))
    assert "local-llama 0.667" in configured, "two of the three would have gone local"
    assert f"# 3 logged decisions of router {version}" in out
    assert (
        route_thresholds_main(
            ["--config", str(s.config_path), "--max-escalation", "0.2", "--from-log", str(s.data_dir / "learning")]
        )
        == 1
    )
    assert "# 3 logged quality verdicts on local-llama answers" in capsys.readouterr().out, "too few to place a cut"


# What a Responses request refers to that its provider stored: a conversation, or (review16) a prompt template
# (`prompt: {"id": "pmpt_..."}`), which OpenAI expands server-side into instructions and input it bills as prompt.
STORED = {"previous_response_id": "resp_abc123", "prompt": {"id": "pmpt_abc123", "variables": {"city": "Paris"}}}


def _next_turn(base_url: str, model: str, field: str = "previous_response_id") -> httpx.Response:
    body = {"model": model, "input": "And in French?", field: STORED[field], "max_output_tokens": 16}
    return httpx.post(f"{base_url}/v1/responses", json=body, headers={"Authorization": f"Bearer {MASTER_KEY}"})


@pytest.mark.parametrize("field", list(STORED))
@pytest.mark.parametrize("model", ["claude-sonnet", "deepseek-chat", "auto"])
def test_a_stored_conversation_is_never_answered_without_its_history(
    stack, fresh_providers, model: str, field: str
) -> None:
    """A Responses turn that refers to a stored conversation: only OpenAI keeps one. LiteLLM gives other providers
    the history only from its database, which synqra does not run: it sent the new turn alone (2 prompt tokens)
    and the client got a 200 whose answer never saw the conversation. A 400 names the way out instead.
    A stored prompt template likewise (review16): LiteLLM dropped it for Claude and DeepSeek, a 200 answering
    "And in French?" without the template, reserved and billed as the 4-word turn it was not."""
    before = {name: len(p.requests) for name, p in fresh_providers.items()}
    r = _next_turn(stack.base_url, model, field)
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert f"stored Responses conversations ('{field}')" in message and "`input`" in message, message
    if model == "auto":
        assert "gpt-4o" in message, "the model that keeps them, by name"
    assert {name: len(p.requests) for name, p in fresh_providers.items()} == before, "no provider was called"


@pytest.mark.parametrize("field", list(STORED))
def test_a_stored_conversation_goes_to_openai_which_keeps_it(stack, fresh_providers, field: str) -> None:
    r = _next_turn(stack.base_url, "gpt-4o", field)
    assert r.status_code == 200, r.text
    assert fresh_providers["openai"].requests[-1].body[field] == STORED[field]


# LiteLLM drops what a provider does not take (drop_params): Claude has no `n` and no logprobs, so a request for two
# answers to claude-sonnet got a 200 with one choice, logprobs=True a 200 without them (LangChain's n=2 then yields
# one generation). Asked for by name: a 400 naming the parameter, before any call; `auto` picks a tier that can, and
# the quality gate escalates only to tiers that can.
BRAND = [{"role": "user", "content": "Write a compelling brand story for a luxury tech startup"}]


def test_several_answers_or_logprobs_are_never_silently_dropped(openai_client, fresh_providers) -> None:
    import openai

    with pytest.raises(openai.BadRequestError, match="'n'"):
        openai_client.chat.completions.create(model="claude-sonnet", messages=BRAND, max_tokens=16, n=2)
    with pytest.raises(openai.BadRequestError, match="'logprobs'"):
        openai_client.chat.completions.create(model="claude-sonnet", messages=BRAND, max_tokens=16, logprobs=True)
    with pytest.raises(openai.BadRequestError, match="'top_logprobs'"):
        openai_client.chat.completions.create(model="claude-sonnet", messages=BRAND, max_tokens=16, top_logprobs=2)
    assert not fresh_providers["anthropic"].requests, "refused before any call"
    raw = openai_client.chat.completions.with_raw_response.create(model="auto", messages=BRAND, max_tokens=16, n=2)
    assert _route(raw)[0] != "claude-sonnet", "the brand story's tier cannot give two answers"
    assert len(raw.parse().choices) == 2
    raw = openai_client.chat.completions.with_raw_response.create(
        model="auto", messages=BRAND, max_tokens=16, logprobs=True
    )
    assert _route(raw)[0] != "claude-sonnet"
    with pytest.raises(openai.BadRequestError, match="'n'"):
        openai_client.completions.create(model="claude-sonnet", prompt="Say hi", max_tokens=8, n=2)
    assert not fresh_providers["anthropic"].requests


def test_a_refused_capability_names_its_parameter_in_the_openai_error(openai_client, fresh_providers) -> None:
    """OpenAI's error object names the parameter refused (`error.param`); synqra's refusals of `n` and logprobs
    answered `param: null`, so a client reading `e.param` could not tell which of its parameters to drop."""
    import openai

    chat = openai_client.chat.completions
    asks: list[tuple[str, dict[str, Any]]] = [("n", {"n": 2}), ("logprobs", {"logprobs": True})]
    asks.append(("top_logprobs", {"top_logprobs": 2}))
    for param, extra in asks:
        with pytest.raises(openai.BadRequestError) as e:
            chat.create(model="claude-sonnet", messages=BRAND, max_tokens=16, **extra)
        assert e.value.param == param, e.value.body
    with pytest.raises(openai.BadRequestError) as e:
        openai_client.completions.create(model="claude-sonnet", prompt="Say hi", max_tokens=8, n=2)
    assert e.value.param == "n", e.value.body
    assert not fresh_providers["anthropic"].requests, "refused before any call"


# A text completion's list of prompts gets one answer per prompt from OpenAI. LiteLLM joins the list into one message
# for every model but the local one (which answers each): two prompts to gpt-4o, deepseek-chat, claude-sonnet or auto
# got a 200 with one choice, billed as one prompt of both texts.
def test_a_list_of_prompts_is_answered_prompt_by_prompt_or_refused(openai_client, fresh_providers) -> None:
    import openai

    for model in ("gpt-4o", "deepseek-chat", "claude-sonnet", "auto"):
        with pytest.raises(openai.BadRequestError, match="'prompt' holds 2 prompts"):
            openai_client.completions.create(model=model, prompt=["Say hi", "Say bye"], max_tokens=8)
    assert not any(p.requests for p in fresh_providers.values()), "refused before any call"
    r = openai_client.completions.create(model="local-llama", prompt=["Say hi", "Say bye"], max_tokens=4)
    assert sorted(c.index for c in r.choices) == [0, 1]
