"""Spend per agent or app through the running proxy, driven by the official SDKs (issue 18, point 5).

A proxy of its own (sharing the session stack's llama.cpp and embedding servers) with a fake Anthropic
behind it and a cap on the tag "capped"; the escalation test uses the session stack.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.fakes.fake_providers import FakeProvider
from tests.stack import MASTER_KEY, RunningStack, start_stack, wait_until

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
IN_PRICE, OUT_PRICE = Decimal("0.000003"), Decimal("0.000015")  # claude-sonnet in litellm_config.yaml
ANSWER = " ".join(f"word{i}" for i in range(20))  # 20 tokens by the fake's count, = max_tokens
# A claude-sonnet call here costs about $0.0003 and reserves about $0.00033: the cap holds three or four.
TAG_LIMIT = 0.0012
BRAND = "Write a compelling brand story for a luxury tech startup"  # auto routes it to Claude


@pytest.fixture(scope="module")
def claude() -> Iterator[FakeProvider]:
    fp = FakeProvider("anthropic", default_text=ANSWER).start()
    yield fp
    fp.stop()


@pytest.fixture(scope="module")
def tagged(
    tmp_path_factory: pytest.TempPathFactory, stack: RunningStack, claude: FakeProvider
) -> Iterator[RunningStack]:
    s = start_stack(
        tmp_path_factory.mktemp("tags"),
        {"anthropic": claude},
        {"budget": {"monthly_limit_usd": 50.0, "tags": {"capped": {"monthly_limit_usd": TAG_LIMIT}}}},
        backends_of=stack,
    )
    yield s
    s.stop()


def oai(s: RunningStack) -> openai.OpenAI:
    return openai.OpenAI(base_url=s.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=120)


def ant(s: RunningStack) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=s.base_url, api_key=MASTER_KEY, max_retries=0, timeout=120)


def chat(s: RunningStack, text: str, model: str = "claude-sonnet", tag: str | None = None, **extra: Any) -> Any:
    """A chat completion through the OpenAI SDK; returns the raw response (headers and parsed body)."""
    headers = {"x-synqra-tag": tag} if tag is not None else None
    return oai(s).chat.completions.with_raw_response.create(
        model=model, max_tokens=20, messages=[{"role": "user", "content": text}], extra_headers=headers, **extra
    )


def ledger(s: RunningStack) -> list[dict[str, Any]]:
    return httpx.get(f"{s.base_url}/api/budget/ledger", headers=AUTH, timeout=30).json()["records"]


def by_tag(s: RunningStack) -> dict[str, Any]:
    r = httpx.get(f"{s.base_url}/api/budget/status", params={"by": "tag"}, headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_tags_from_the_header_and_metadata_tags_are_booked_and_broken_down(
    tagged: RunningStack, claude: FakeProvider
) -> None:
    ids: dict[str, str | None] = {}
    for i in range(2):
        r = chat(tagged, f"Please answer briefly, sales question {i}", tag="sales")
        ids[r.headers["x-synqra-request-id"]] = "sales"
    r = chat(
        tagged, "Please answer briefly, a support question", extra_body={"metadata": {"tags": ["support-bot", "x"]}}
    )
    ids[r.headers["x-synqra-request-id"]] = "support-bot"
    r = chat(tagged, "Hello there", model="local-llama", extra_body={"metadata": {"tags": ["support-bot"]}})
    ids[r.headers["x-synqra-request-id"]] = "support-bot"
    r = chat(tagged, "Header and metadata both", tag="sales", extra_body={"metadata": {"tags": ["ignored"]}})
    ids[r.headers["x-synqra-request-id"]] = "sales"  # the header wins
    r = chat(tagged, "Hello, untagged", model="local-llama")
    ids[r.headers["x-synqra-request-id"]] = None
    msg = ant(tagged).messages.with_raw_response.create(
        model="claude-sonnet",
        max_tokens=20,
        messages=[{"role": "user", "content": "Please answer briefly, from Claude's SDK"}],
        extra_headers={"x-synqra-tag": "sales"},
    )
    ids[msg.headers["x-synqra-request-id"]] = "sales"

    assert wait_until(lambda: {r["request_id"] for r in ledger(tagged)} >= set(ids), 30)
    rows = ledger(tagged)
    assert {r["request_id"]: r["tag"] for r in rows if r["request_id"] in ids} == ids

    status = by_tag(tagged)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[r["tag"] or "untagged"].append(r)
    assert set(groups) <= set(status["by_tag"]) and status["by_tag"]["capped"]["limit"] == TAG_LIMIT
    for tag, mine in groups.items():
        row = status["by_tag"][tag]
        cost = sum(Decimal(str(r["cost_usd"])) for r in mine)
        baseline = sum(Decimal(str(r["baseline_usd"])) for r in mine)
        requests = sum(r["counts_request"] for r in mine)
        local = sum(int(r["counts_request"] and r["local"]) - int(r["leaves_local"]) for r in mine)
        assert abs(Decimal(str(row["cost"])) - cost) <= Decimal("1e-6"), tag
        assert abs(Decimal(str(row["baseline"])) - baseline) <= Decimal("1e-6"), tag
        assert abs(Decimal(str(row["savings"])) - (baseline - cost)) <= Decimal("2e-6"), tag
        assert (row["requests"], row["local_requests"]) == (requests, local), tag
        assert row["local_share"] == pytest.approx(local / requests, abs=1e-4)
        assert row["limit"] is None
    assert status["by_tag"]["support-bot"]["local_requests"] == 1 and status["by_tag"]["sales"]["requests"] == 4
    # ...and the ledger is the provider's bill: what Claude billed is what the tags cost.
    p, c = claude.billed_tokens()
    assert abs(
        sum(Decimal(str(r["cost"])) for r in status["by_tag"].values()) - (p * IN_PRICE + c * OUT_PRICE)
    ) < Decimal("1e-6")


def test_a_tag_that_cannot_be_booked_is_a_400_and_costs_nothing(tagged: RunningStack) -> None:
    before = len(ledger(tagged))
    with pytest.raises(openai.BadRequestError) as err:
        chat(tagged, "hello", tag="x" * 200)
    assert "x-synqra-tag" in err.value.message and "at most 128 characters" in err.value.message
    with pytest.raises(anthropic.BadRequestError) as aerr:
        ant(tagged).messages.create(
            model="claude-sonnet",
            max_tokens=20,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-synqra-tag": "bell\x07"},
        )
    assert "x-synqra-tag" in str(aerr.value)
    # "untagged" is what the by-tag status calls the requests without a tag: a client's tag of that name was merged
    # into them. LiteLLM books a tag as it was sent, so it is refused rather than renamed.
    with pytest.raises(openai.BadRequestError) as err:
        chat(tagged, "hello", model="local-llama", tag="untagged")
    assert "x-synqra-tag" in err.value.message and "'untagged'" in err.value.message
    with pytest.raises(anthropic.BadRequestError) as aerr:
        ant(tagged).messages.create(
            model="claude-sonnet",
            max_tokens=20,
            messages=[{"role": "user", "content": "hi"}],
            metadata={"tags": ["untagged"]},  # type: ignore[typeddict-unknown-key]
        )
    assert "'untagged'" in str(aerr.value)
    assert (
        len(ledger(tagged)) == before and chat(tagged, "still up", model="local-llama").http_response.status_code == 200
    )


def test_a_capped_tag_is_refused_by_name_while_other_tags_pass_and_auto_goes_local(
    tagged: RunningStack, claude: FakeProvider
) -> None:
    served = 0
    refusal: openai.RateLimitError | None = None
    for i in range(12):
        try:
            chat(tagged, f"Please answer briefly, capped request {i}", tag="capped")
            served += 1
        except openai.RateLimitError as e:
            refusal = e
            break
    assert refusal is not None, "the tag's cap must stop it"
    assert 2 <= served <= 4, served
    assert "tag 'capped' is exhausted" in refusal.message and "resets on" in refusal.message
    with pytest.raises(anthropic.RateLimitError) as aerr:  # the same refusal in the Messages API's format
        ant(tagged).messages.create(
            model="claude-sonnet",
            max_tokens=20,
            messages=[{"role": "user", "content": "hi there"}],
            extra_headers={"x-synqra-tag": "capped"},
        )
    assert "tag 'capped' is exhausted" in str(aerr.value)
    # The global budget has room: other tags and untagged requests are served by Claude.
    assert (
        chat(tagged, "Please answer briefly, a sales request", tag="sales").headers["x-synqra-route"] == "claude-sonnet"
    )
    assert chat(tagged, "Please answer briefly, untagged").headers["x-synqra-route"] == "claude-sonnet"
    # auto: the router picks Claude for brand work; for the exhausted tag the local model answers instead.
    other = chat(tagged, BRAND, model="auto", tag="sales")
    assert other.headers["x-synqra-route"] == "claude-sonnet"
    local = chat(tagged, BRAND, model="auto", tag="capped")
    assert local.http_response.status_code == 200 and local.headers["x-synqra-route"] == "local-llama"
    assert local.headers["x-synqra-budget"] == "stopped"
    assert local.parse().choices[0].message.content
    rows = [r for r in ledger(tagged) if r["tag"] == "capped"]
    assert sum(Decimal(str(r["cost_usd"])) for r in rows) <= Decimal(str(TAG_LIMIT)) * Decimal("0.95")
    assert [r["served_model"] for r in rows].count("claude-sonnet") == served
    st = by_tag(tagged)
    assert st["by_tag"]["capped"]["requests"] == served + 1 and st["by_tag"]["capped"]["local_requests"] == 1
    assert st["state"] == "ok" and st["reserved"] == 0


def test_an_escalations_rows_carry_the_requests_tag(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider]
) -> None:
    """The local answer to "Say hello." in 3 tokens is cut off and escalated: every row of the request
    (the local call and the paid escalation) is booked to the request's tag."""
    r = httpx.post(
        f"{stack.base_url}/v1/chat/completions",
        headers={**AUTH, "x-synqra-tag": "escalating-agent"},
        timeout=120,
        json={
            "model": "auto",
            "max_tokens": 3,
            "temperature": 0,
            "messages": [{"role": "user", "content": "Say hello."}],
        },
    )
    assert r.status_code == 200, r.text
    rid = r.headers["x-synqra-request-id"]
    assert r.headers["x-synqra-escalated"] != "false", r.headers

    def rows() -> list[dict[str, Any]]:
        return [
            x
            for x in httpx.get(f"{stack.base_url}/api/budget/ledger", headers=AUTH, timeout=30).json()["records"]
            if x["request_id"] == rid or x["request_id"].startswith(rid + ":")
        ]

    assert wait_until(lambda: len(rows()) >= 2, 30), rows()
    assert {x["tag"] for x in rows()} == {"escalating-agent"}
    assert any(x["kind"] == "escalation" and not x["local"] for x in rows())
    st = httpx.get(f"{stack.base_url}/api/budget/status?by=tag", headers=AUTH, timeout=30).json()["by_tag"][
        "escalating-agent"
    ]
    assert st["requests"] == 1 and st["local_requests"] == 0 and st["cost"] > 0
