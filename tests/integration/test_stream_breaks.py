"""A paid stream that ends short of its end is still paid for (found by the chaos run, issue 19).

The provider bills a stream for the prompt and what it sent, whether the connection broke mid-answer or the
client left. The proxy records a stream its client left at what it had delivered (LiteLLM's token count of the
answer so far; the prompt as the provider reported it when it said so), one its provider broke at its worst case
(what was sent past what was read is unknown), and holds no reservation afterwards.
"""

from __future__ import annotations

import json
import time
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.fakes.fake_providers import FakeProvider, Scripted
from tests.stack import MASTER_KEY, RunningStack, wait_until

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
LONG = " ".join(f"word{i}" for i in range(60))
SYSTEM = " ".join(f"rule{i}" for i in range(2000))  # 2,000 prompt tokens by the fakes' count
IN, OUT = 0.000003, 0.000015  # Claude's list prices (litellm_config.yaml), its cache's 1.25x and 0.1x
CACHE_WRITE, CACHE_READ = 1.25 * IN, 0.1 * IN


def rows_since(stack: RunningStack, t0: float, model: str) -> list[dict]:
    records = httpx.get(f"{stack.base_url}/api/budget/ledger", headers=AUTH, timeout=30).json()["records"]
    return [r for r in records if r["ts"] >= t0 and r["served_model"] == model]


def reserved(stack: RunningStack) -> float:
    return httpx.get(f"{stack.base_url}/api/budget/status", headers=AUTH, timeout=30).json()["reserved"]


def recorded(stack: RunningStack, t0: float, model: str) -> dict:
    assert wait_until(lambda: rows_since(stack, t0, model), timeout_s=15), f"no ledger row for the {model} call"
    rows = rows_since(stack, t0, model)
    assert len(rows) == 1, rows
    assert wait_until(lambda: reserved(stack) == 0, timeout_s=15), "the call's reservation is still held"
    return rows[0]


def test_an_openai_stream_cut_off_mid_answer_is_recorded(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider]
) -> None:
    deepseek = fresh_providers["deepseek"]
    # Scripted for this prompt alone: a judge call a previous test's stack left in flight must not take the step.
    deepseek.by_marker["Tell me about lighthouses please"] = Scripted(text=LONG, cut_after_words=3)
    client = openai.OpenAI(base_url=stack.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=60)
    t0 = time.time()
    try:
        with pytest.raises(openai.APIError):  # the client learns the answer broke off
            for _ in client.chat.completions.create(
                model="deepseek-chat",
                stream=True,
                max_tokens=100,
                messages=[{"role": "user", "content": "Tell me about lighthouses please"}],
            ):
                pass
    finally:
        deepseek.by_marker.clear()
    mine = [q.body for q in deepseek.requests if "Tell me about lighthouses please" in str(q.body.get("messages"))]
    billed = [(b.get("_prompt_tokens"), b.get("_completion_tokens")) for b in mine]
    assert billed == [(5, 3)], "the provider billed the prompt and the 3 words it sent"
    row = recorded(stack, t0, "deepseek-chat")
    # What the provider sent past what was read is unknown: booked at the worst case, LiteLLM's count of the prompt
    # with its chat framing and the whole max_tokens.
    assert 5 <= row["prompt_tokens"] <= 20 and row["completion_tokens"] == 100, row
    assert row["cost_usd"] > 0


def test_an_anthropic_stream_cut_off_mid_answer_is_recorded_at_the_providers_prompt_count(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider]
) -> None:
    # Chunks apart in time, so LiteLLM relays the first words before the cut (see the test below otherwise).
    claude = fresh_providers["anthropic"]
    claude.push(Scripted(text=LONG, cut_after_words=4, chunk_delay_s=0.2))
    client = anthropic.Anthropic(base_url=stack.base_url, api_key=MASTER_KEY, max_retries=0, timeout=60)
    t0 = time.time()
    with pytest.raises(anthropic.APIError):
        with client.messages.stream(
            model="claude-sonnet",
            max_tokens=100,
            messages=[{"role": "user", "content": "Write a short line about the sea"}],
        ) as stream:
            for _ in stream.text_stream:
                pass
    billed_prompt, billed_completion = claude.billed_tokens()
    assert billed_completion == 4
    row = recorded(stack, t0, "claude-sonnet")
    assert row["prompt_tokens"] >= billed_prompt and row["completion_tokens"] == 100, row  # its worst case


@pytest.mark.parametrize("cache", ["write", "read"])
@pytest.mark.parametrize("path", ["/v1/messages", "/v1/chat/completions"])
def test_a_claude_stream_cut_off_mid_answer_is_recorded_with_its_cached_prompt(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider], path: str, cache: str
) -> None:
    """Claude Code's prompt is cached on every turn. Anthropic's message_start reports input_tokens without the
    prompt read from or written to the cache (beside them): a stream cut short was recorded at those 3 input tokens
    only, 2,000 billed tokens left out of the ledger. A broken stream is now booked at its worst case."""
    claude = fresh_providers["anthropic"]
    claude.push(Scripted(text=LONG, cut_after_words=4, chunk_delay_s=0.2, **{f"cache_{cache}": 2000}))
    system = [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]
    question = {"role": "user", "content": "Write a line"}
    if path == "/v1/messages":
        body: dict[str, Any] = {"system": system, "messages": [question]}
    else:
        body = {
            "messages": [{"role": "system", "content": system}, question],
            "stream_options": {"include_usage": True},
        }
    body.update(model="claude-sonnet", stream=True, max_tokens=100)
    t0 = time.time()
    with httpx.stream("POST", f"{stack.base_url}{path}", json=body, headers=AUTH, timeout=60) as r:
        assert r.status_code == 200, r.read()
        for _ in r.iter_lines():
            pass
    billed_prompt, billed_completion = claude.billed_tokens()
    assert billed_completion == 4
    row = recorded(stack, t0, "claude-sonnet")
    cached_price = CACHE_WRITE if cache == "write" else CACHE_READ
    bill = (billed_prompt - 2000) * IN + 2000 * cached_price + billed_completion * OUT
    # Booked at its worst case: the prompt as the reservation counts it (LiteLLM's count, at the cache-write price
    # Anthropic may bill) and the whole max_tokens.
    assert row["prompt_tokens"] >= billed_prompt and row["completion_tokens"] == 100, row
    assert row["cost_usd"] >= bill, row


def test_a_gated_stream_cut_off_mid_answer_is_recorded(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider]
) -> None:
    # auto with tools goes to DeepSeek, whose answers the quality gate buffers and scores: the cut reaches the
    # gate, not the client's relay.
    deepseek = fresh_providers["deepseek"]
    deepseek.push(Scripted(text=LONG, cut_after_words=5))
    tool = {
        "type": "function",
        "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}},
    }
    client = openai.OpenAI(base_url=stack.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=60)
    t0 = time.time()
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(
            model="auto",
            stream=True,
            max_tokens=100,
            tools=[tool],
            messages=[{"role": "user", "content": "Look up the opening hours"}],
        ):
            pass
    assert deepseek.billed_tokens()[1] == 5
    row = recorded(stack, t0, "deepseek-chat")
    assert row["completion_tokens"] >= 5 and row["prompt_tokens"] > 0, row


def test_a_stream_its_client_abandons_is_recorded(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider]
) -> None:
    deepseek = fresh_providers["deepseek"]
    deepseek.push(Scripted(text=LONG, chunk_delay_s=0.3))
    t0 = time.time()
    body = {
        "model": "deepseek-chat",
        "stream": True,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Tell me a long story"}],
    }
    with httpx.stream("POST", f"{stack.base_url}/v1/chat/completions", json=body, headers=AUTH, timeout=60) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        got = 0
        for line in lines:
            got += line.startswith("data:")
            if got >= 4:
                break  # leave mid-answer: the connection closes with the block
    assert wait_until(lambda: "_fault" in (deepseek.requests[-1].body if deepseek.requests else {}), timeout_s=30)
    assert wait_until(lambda: deepseek.requests[-1].body.get("_fault") == "abandoned", timeout_s=30)
    sent = deepseek.billed_tokens()[1]
    assert 0 < sent < 60, "the provider billed the words it sent before it noticed"
    row = recorded(stack, t0, "deepseek-chat")
    assert row["completion_tokens"] > 0 and row["prompt_tokens"] > 0, row


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/chat/completions"])
def test_a_stream_its_client_leaves_once_it_has_the_usage_is_recorded_at_the_providers_count(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider], path: str
) -> None:
    """A client that stops reading once it has the answer and its usage (Anthropic's message_delta; the usage chunk
    of a chat stream from Claude), before the stream's last event: Claude bills the output_tokens it reported.
    Review (the TypeScript SDKs' abort): recorded at LiteLLM's count of the text instead, twice the bill here
    (3 in / 40 out, $0.000609, against 3 / 20, $0.000309: 'word7' is two of tiktoken's tokens)."""
    claude = fresh_providers["anthropic"]
    words = " ".join(f"word{i}" for i in range(20))
    claude.push(Scripted(text=words, chunk_delay_s=0.25))  # message_stop comes 0.25 s after message_delta
    body: dict[str, Any] = {
        "model": "claude-sonnet",
        "stream": True,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Count words please"}],
    }
    if path == "/v1/chat/completions":
        body["stream_options"] = {"include_usage": True}
    t0 = time.time()
    with httpx.stream("POST", f"{stack.base_url}{path}", json=body, headers=AUTH, timeout=60) as r:
        assert r.status_code == 200, r.read()
        seen = None
        for line in r.iter_lines():
            data = json.loads(line[5:]) if line.startswith("data:") and line[5:].strip() != "[DONE]" else {}
            if data.get("usage"):
                seen = data["usage"]
                break  # leave before the stream's end
    assert seen and seen.get("output_tokens", seen.get("completion_tokens")) == 20, seen
    assert wait_until(lambda: claude.requests and claude.requests[-1].body.get("_fault") == "abandoned", 30)
    row = recorded(stack, t0, "claude-sonnet")
    assert (row["prompt_tokens"], row["completion_tokens"]) == claude.billed_tokens() == (3, 20), row


def test_a_messages_stream_cut_before_litellm_relays_it_is_recorded(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider]
) -> None:
    """LiteLLM holds back the first words of a /v1/messages stream. When the provider's words and its break come in
    one burst, LiteLLM falls back to the next model before relaying anything, and the broken call is known only
    from LiteLLM's record of failed attempts. The words LiteLLM held
    back are unknown: it is booked at its worst case, as a row of its own. When message_start was relayed first, the
    client gets the break as an error and the call is booked at its worst case likewise."""
    claude = fresh_providers["anthropic"]
    claude.push(Scripted(text=LONG, cut_after_words=4))
    client = anthropic.Anthropic(base_url=stack.base_url, api_key=MASTER_KEY, max_retries=0, timeout=60)
    t0 = time.time()
    fell_back = True
    try:
        with client.messages.stream(
            model="claude-sonnet", max_tokens=100, messages=[{"role": "user", "content": "Write a line about the sea"}]
        ) as stream:
            "".join(stream.text_stream)  # GPT-4o, the fallback, answers in full
    except anthropic.APIStatusError as e:  # the break reached the client, in the Messages API's error format
        assert "Response payload is not completed" in e.message, e
        fell_back = False
    billed_in, billed_out = claude.billed_tokens()
    assert billed_out == 4
    assert wait_until(lambda: rows_since(stack, t0, "claude-sonnet"), timeout_s=5), "the cut Claude call"
    (row,) = rows_since(stack, t0, "claude-sonnet")
    # Booked at its worst case (its prompt and max_tokens), whichever way it went: review13, 0 out when it fell back.
    assert row["prompt_tokens"] >= billed_in and row["completion_tokens"] == 100, row
    if fell_back:
        assert wait_until(lambda: rows_since(stack, t0, "gpt-4o"), timeout_s=15)
        assert row["kind"] == "fallback" and not row["counts_request"], row
    else:
        assert row["completion_tokens"] >= billed_out and not rows_since(stack, t0, "gpt-4o"), row


def _abandon(stack: RunningStack, provider: FakeProvider, path: str, body: dict, after_events: int) -> None:
    """Read `after_events` SSE data lines of a slow stream, then leave; return once the provider has billed."""
    provider.push(Scripted(text=LONG, chunk_delay_s=0.2))
    with httpx.stream("POST", f"{stack.base_url}{path}", json=body, headers=AUTH, timeout=60) as r:
        assert r.status_code == 200, r.read()
        got = 0
        for line in r.iter_lines():
            got += line.startswith("data:")
            if got >= after_events:
                break
    assert wait_until(lambda: provider.requests and provider.requests[-1].body.get("_fault") == "abandoned", 30)


PROVIDER_OF = {"gpt-4o": "openai", "claude-sonnet": "anthropic", "deepseek-chat": "deepseek"}


@pytest.mark.parametrize("model", sorted(PROVIDER_OF))
def test_an_abandoned_responses_stream_is_recorded_at_what_it_delivered(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider], model: str
) -> None:
    # LiteLLM's Responses stream events carry their type as a (str, Enum) member: the answer's deltas must be
    # read by its value, or the abandoned answer is recorded as 0 tokens (review: billed 5 in / 21 out, 12 / 0).
    provider = fresh_providers[PROVIDER_OF[model]]
    t0 = time.time()
    body = {"model": model, "input": "Tell me a long story", "max_output_tokens": 200, "stream": True}
    _abandon(stack, provider, "/v1/responses", body, after_events=25)
    billed_in, billed_out = provider.billed_tokens()
    assert 0 < billed_out < 60
    row = recorded(stack, t0, model)
    assert row["prompt_tokens"] >= billed_in and row["completion_tokens"] >= billed_out, (row, billed_in, billed_out)


def test_an_abandoned_messages_stream_from_an_openai_model_is_recorded_at_its_prompt(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider]
) -> None:
    # LiteLLM's Anthropic adapter opens the stream of an OpenAI-protocol model with a message_start whose
    # input_tokens is 0 (it does not know them yet): no figure, not a free prompt (review: 7 in billed, 0 recorded).
    provider = fresh_providers["openai"]
    t0 = time.time()
    body = {
        "model": "gpt-4o",
        "max_tokens": 200,
        "stream": True,
        "messages": [{"role": "user", "content": "Tell me a long story about France."}],
    }
    _abandon(stack, provider, "/v1/messages", body, after_events=20)
    billed_in, billed_out = provider.billed_tokens()
    assert billed_in == 7 and 0 < billed_out < 60
    row = recorded(stack, t0, "gpt-4o")
    assert row["prompt_tokens"] >= billed_in and row["completion_tokens"] >= billed_out, (row, billed_in, billed_out)


# Streams cut after 4 words, chunks apart in time (LiteLLM's DeepSeek text-completion transport fails on the first
# read of a stream whose words and cut arrive in one burst, before any chunk reaches the proxy: a known gap).
CUT_STREAMS = [("/v1/responses", m, {"input": "Tell me a long story", "max_output_tokens": 200}) for m in PROVIDER_OF]
CUT_STREAMS += [
    ("/v1/completions", m, {"prompt": "Tell me a long story", "max_tokens": 200}) for m in ("deepseek-chat", "gpt-4o")
]


@pytest.mark.parametrize(
    ("path", "model", "body"), CUT_STREAMS, ids=[f"{p.rsplit('/', 1)[1]}-{m}" for p, m, _ in CUT_STREAMS]
)
def test_a_responses_or_text_completion_stream_cut_off_mid_answer_is_recorded(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider], path: str, model: str, body: dict
) -> None:
    provider = fresh_providers[PROVIDER_OF[model]]
    provider.push(Scripted(text=LONG, cut_after_words=4, chunk_delay_s=0.2))
    t0 = time.time()
    with httpx.stream(
        "POST", f"{stack.base_url}{path}", json={"model": model, "stream": True, **body}, headers=AUTH, timeout=60
    ) as r:
        text = "\n".join(r.iter_lines())
    billed_in, billed_out = provider.billed_tokens()
    assert billed_out == 4, text
    assert ('"type":"response.failed"' if path == "/v1/responses" else '"error"') in text.replace(" ", ""), text[-500:]
    # LiteLLM would continue a Responses answer on the next model and book both calls' tokens as that model's.
    assert not any(p.billed_tokens()[0] for p in fresh_providers.values() if p is not provider), "no continuation"
    row = recorded(stack, t0, model)
    assert row["prompt_tokens"] >= billed_in and row["completion_tokens"] >= billed_out, (row, billed_in, billed_out)


@pytest.mark.parametrize("model", ["deepseek-chat", "gpt-4o"])
def test_a_messages_stream_from_an_openai_model_cut_off_mid_answer_is_recorded(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider], model: str
) -> None:
    # LiteLLM's Anthropic adapter opens such a stream with input_tokens 0 and ends a broken one with no usage:
    # the row is priced at LiteLLM's count of the prompt and of the words delivered, never at 0 / 0.
    provider = fresh_providers[PROVIDER_OF[model]]
    provider.push(Scripted(text=LONG, cut_after_words=4, chunk_delay_s=0.2))
    client = anthropic.Anthropic(base_url=stack.base_url, api_key=MASTER_KEY, max_retries=0, timeout=60)
    t0 = time.time()
    with pytest.raises(anthropic.APIError):
        with client.messages.stream(
            model=model, max_tokens=100, messages=[{"role": "user", "content": "Write a short line about the sea"}]
        ) as stream:
            for _ in stream.text_stream:
                pass
    billed_in, billed_out = provider.billed_tokens()
    assert billed_out == 4
    row = recorded(stack, t0, model)
    assert row["prompt_tokens"] >= billed_in and row["completion_tokens"] >= billed_out, (row, billed_in, billed_out)


# A stream whose provider broke off before its first word: LiteLLM starts it again, on the same model when the
# client asked for retries (`num_retries`), else on the next model of the fallback chain. The broken attempt had
# begun answering (the provider billed its prompt): it is recorded at its prompt, beside the attempt that answered.
SEA = [{"role": "user", "content": "Write a line about the sea"}]
BEFORE_CONTENT = [
    # DeepSeek breaks off before its first word; Claude, its fallback, answers.
    ("/v1/chat/completions", "deepseek-chat", {}),
    # Claude breaks off before its first word; Claude, retried, answers.
    ("/v1/messages", "claude-sonnet", {"num_retries": 1}),
    ("/v1/chat/completions", "claude-sonnet", {"num_retries": 1}),
    # DeepSeek's Responses stream (LiteLLM's bridge to chat) breaks off; Claude, its fallback, answers.
    ("/v1/responses", "deepseek-chat", {}),
]


@pytest.mark.parametrize(
    ("path", "model", "extra"),
    BEFORE_CONTENT,
    ids=["chat-fallback", "messages-retry", "chat-retry", "responses-fallback"],
)
def test_a_stream_broken_before_its_first_word_and_answered_again_is_billed_for_both(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider], path: str, model: str, extra: dict
) -> None:
    broken = fresh_providers[PROVIDER_OF[model]]
    broken.push(Scripted(text=LONG, cut_after_words=0))
    t0 = time.time()
    body = {
        "model": model,
        "max_tokens": 100,
        "stream": True,
        **({"input": "Write a line about the sea"} if path == "/v1/responses" else {"messages": SEA}),
        **extra,
    }
    r = httpx.post(f"{stack.base_url}{path}", json=body, headers=AUTH, timeout=60)
    assert r.status_code == 200, r.text
    assert broken.requests[0].body.get("_fault") == "cut"
    assert wait_until(lambda: reserved(stack) == 0, timeout_s=15)
    time.sleep(1)  # the success event settles after the stream's end
    for name, fp in fresh_providers.items():
        served = next(m for m, p in PROVIDER_OF.items() if p == name)
        billed_in, billed_out = fp.billed_tokens()
        rows = rows_since(stack, t0, served)
        recorded_in = sum(x["prompt_tokens"] for x in rows)
        assert recorded_in >= billed_in, (
            f"{served}: billed {billed_in} prompt tokens over {len(fp.requests)} call(s), recorded {recorded_in} "
            f"in {len(rows)} row(s)"
        )
        assert sum(x["completion_tokens"] for x in rows) >= billed_out
    (broken_row,) = [x for x in rows_since(stack, t0, model) if x["request_id"].endswith(":broken1")]
    assert broken_row["kind"] == "fallback" and not broken_row["counts_request"], broken_row
    # What the broken attempt generated is unknown: it is booked at its worst case (its prompt and max_tokens; on the
    # Responses API, which reads only max_output_tokens, DeepSeek's output ceiling of 8,192).
    assert broken_row["completion_tokens"] == (8192 if path == "/v1/responses" else 100), broken_row
    counted = [x for m in PROVIDER_OF for x in rows_since(stack, t0, m) if x["counts_request"]]
    assert len(counted) == 1, counted  # the client's request counts once: for the attempt that answered


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/responses"])
def test_a_stream_broken_before_its_first_word_with_nothing_to_fall_back_to_is_billed(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider], path: str
) -> None:
    """GPT-4o is the end of the fallback chain: its broken stream is the client's error, and its prompt is billed."""
    gpt = fresh_providers["openai"]
    gpt.push(Scripted(text=LONG, cut_after_words=0))
    t0 = time.time()
    body = {"model": "gpt-4o", "max_tokens": 100, "stream": True}
    body |= (
        {"input": "Write a line about the sea"}
        if path == "/v1/responses"
        else {"messages": [{"role": "user", "content": "Write a line about the sea"}]}
    )
    with httpx.stream("POST", f"{stack.base_url}{path}", json=body, headers=AUTH, timeout=60) as r:
        text = r.read().decode()
    assert r.status_code == 200 and '"error"' in text, text  # the break, as the API's in-stream error
    assert gpt.requests[-1].body.get("_fault") == "cut"
    assert wait_until(lambda: reserved(stack) == 0, timeout_s=15)
    billed_in, _ = gpt.billed_tokens()
    assert wait_until(lambda: rows_since(stack, t0, "gpt-4o"), timeout_s=10), f"nothing recorded; billed {billed_in}"
    assert sum(x["prompt_tokens"] for x in rows_since(stack, t0, "gpt-4o")) >= billed_in


@pytest.mark.parametrize("model", ["claude-sonnet", "gpt-4o"])
def test_a_messages_stream_its_client_leaves_before_the_first_chunk_is_recorded_at_its_prompt(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider], model: str
) -> None:
    """A client that gives up on a slow-to-start stream (a read timeout, Claude Code's API_TIMEOUT_MS): the provider
    opens the stream after the client left, LiteLLM sees the disconnect before the first chunk and cancels it. The
    provider bills the prompt. Review: Claude billed 5 in / 0 out, the ledger had no row and the call's reservation
    ($0.015) stayed held."""
    provider = fresh_providers[PROVIDER_OF[model]]
    provider.push(Scripted(text=" ".join(["word"] * 500), hang_s=4, chunk_delay_s=0.02))
    t0 = time.time()
    body = {
        "model": model,
        "max_tokens": 1000,
        "stream": True,
        "messages": [{"role": "user", "content": "Tell me a story"}],
    }
    with pytest.raises(httpx.ReadTimeout):
        with httpx.stream("POST", f"{stack.base_url}/v1/messages", json=body, headers=AUTH, timeout=2) as r:
            r.read()
    assert wait_until(lambda: provider.requests and "_fault" in provider.requests[-1].body, timeout_s=30)
    # Whether the provider's stream had opened when LiteLLM cancelled it is a race ("abandoned": the prompt billed,
    # "timeout": nothing): the ledger covers the bill either way, and nothing stays reserved.
    billed_in, billed_out = provider.billed_tokens()
    row = recorded(stack, t0, model)
    assert row["prompt_tokens"] >= billed_in and row["completion_tokens"] >= billed_out, (row, billed_in, billed_out)


# (path, model, answer words the provider may send after the client left, beyond what the ledger records)
HUNG_UP = [
    # Review: 6 to 17 words billed, 1 recorded (LiteLLM's stream was closed only when finalised later). The slack
    # is a time (a word every 50 ms): wide enough that a loaded CI machine does not fail a hang-up that worked.
    ("/v1/chat/completions", "claude-sonnet", 12),
    # A Messages stream LiteLLM bridges to a chat model: it ran to its end, 200 words billed, none recorded. Closed
    # now, a few hundred milliseconds of words still slip through (11 here): the ledger records what was relayed.
    ("/v1/messages", "gpt-4o", 40),
    ("/v1/responses", "claude-sonnet", 40),  # bridged to chat completions
    ("/v1/responses", "gpt-4o", 40),
]


@pytest.mark.parametrize(("path", "model", "slack"), HUNG_UP)
def test_a_stream_its_client_left_is_hung_up_on_at_once(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider], path: str, model: str, slack: int
) -> None:
    """The provider generates, and bills, until it sees the connection close. A client gone before a slow-to-start
    stream opens is seen once the stream opens; closing only the outermost of LiteLLM's stream wrappers left the
    provider's connection open. The hook now closes every stream in the chain (stream_relay.hang_up).
    The fake opens its stream after 3 s and sends a word every 50 ms; the client gives up after 1.5 s."""
    provider = fresh_providers[PROVIDER_OF[model]]
    provider.push(Scripted(text=" ".join(["word"] * 200), delay_s=3, chunk_delay_s=0.05))
    t0 = time.time()
    body: dict[str, Any] = {"model": model, "stream": True}
    if path == "/v1/responses":
        body.update(input="A story", max_output_tokens=1000)
    else:
        body.update(max_tokens=1000, messages=[{"role": "user", "content": "A story"}])
    with pytest.raises(httpx.ReadTimeout):
        with httpx.stream("POST", f"{stack.base_url}{path}", json=body, headers=AUTH, timeout=1.5) as r:
            r.read()
    assert wait_until(lambda: provider.requests and "_finished_at" in provider.requests[-1].body, timeout_s=30)
    row = recorded(stack, t0, model)
    billed_in, billed_out = provider.billed_tokens()
    assert billed_out <= row["completion_tokens"] + slack, f"billed {billed_out} answer tokens, recorded {row}"
    assert row["prompt_tokens"] >= billed_in


# A fast stream (no pause between chunks) whose provider connection breaks after 200 answer words: the provider
# sent, and bills, 200 words, but the client got about 32, and the words that had reached the proxy's HTTP client but
# were not yet read were dropped with the break. Review13: recorded at what was relayed, below the bill (gpt-4o: 12
# in / 32 out, $0.00035, for 5 in / 200 out, $0.0020125; claude-sonnet $0.000501 for $0.003015). What a broken
# stream carried cannot be known: it is booked at its worst case, its reservation's (the prompt and max_tokens), as
# a timed-out call is. On /v1/messages the cut Claude stream may fall back to GPT-4o before anything is relayed
# (review13: the Claude row at 0 out, $0.000036 for $0.000465): that attempt is a row of its own at its worst case,
# GPT-4o's answer a row at its own usage.
PRICES = {"gpt-4o": (0.0000025, 0.00001), "claude-sonnet": (IN, OUT)}
FAST_BREAKS = [
    ("/v1/chat/completions", "gpt-4o", {"messages": [{"role": "user", "content": "Tell me about the cat"}]}),
    ("/v1/chat/completions", "claude-sonnet", {"messages": [{"role": "user", "content": "Tell me about the cat"}]}),
    ("/v1/messages", "claude-sonnet", {"messages": [{"role": "user", "content": "Tell me about the cat"}]}),
    ("/v1/responses", "gpt-4o", {"input": "Tell me about the cat"}),
    ("/v1/completions", "gpt-4o", {"prompt": "Tell me about the cat"}),
]


@pytest.mark.parametrize(
    ("path", "model", "body"),
    FAST_BREAKS,
    ids=["chat-gpt-4o", "chat-claude-sonnet", "messages-claude-sonnet", "responses-gpt-4o", "completions-gpt-4o"],
)
def test_a_fast_stream_that_breaks_is_recorded_at_its_worst_case(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider], path: str, model: str, body: dict
) -> None:
    provider = fresh_providers[PROVIDER_OF[model]]
    provider.push(Scripted(text=" ".join(["the cat sat on the mat and then"] * 30), cut_after_words=200))
    allowance = {"max_output_tokens": 300} if path == "/v1/responses" else {"max_tokens": 300}
    t0 = time.time()
    with httpx.stream(
        "POST", f"{stack.base_url}{path}", json={"model": model, "stream": True, **allowance, **body}, headers=AUTH
    ) as r:
        text = "\n".join(r.iter_lines())
    billed_in, billed_out = provider.billed_tokens()
    assert billed_out == 200, text[-500:]
    assert wait_until(lambda: rows_since(stack, t0, model) and reserved(stack) == 0, timeout_s=15)
    time.sleep(0.5)  # a fallback's row, settled once its stream ends
    (row,) = rows_since(stack, t0, model)
    price_in, price_out = PRICES[model]
    bill = billed_in * price_in + billed_out * price_out
    assert row["completion_tokens"] == 300 and row["prompt_tokens"] >= billed_in, (row, billed_in, billed_out)
    assert row["cost_usd"] >= bill, (row, bill)
    call_id = row["request_id"].split(":")[0]
    log = (stack.data_dir / "logs" / "proxy.log").read_text()
    warned = [ln for ln in log.splitlines() if call_id in ln and "at its worst case" in ln]
    assert len(warned) == 1 and "WARNING" in warned[0], warned
    fallback = rows_since(stack, t0, "gpt-4o") if model != "gpt-4o" else []
    if fallback:  # the cut Claude stream fell back before anything was relayed: GPT-4o answered, at its own usage
        assert row["request_id"].endswith(":broken1") and not row["counts_request"], row
        (answer,) = fallback
        gpt_in, gpt_out = fresh_providers["openai"].billed_tokens()
        assert answer["completion_tokens"] < 300 and answer["completion_tokens"] >= gpt_out, (answer, gpt_out)
        assert answer["counts_request"], answer
    else:
        assert '"error"' in text.replace(" ", "") or "response.failed" in text, text[-500:]
