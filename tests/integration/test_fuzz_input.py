"""Fuzzed input against the running stack (issue 19, point 3): Hypothesis draws request bodies and headers
for every accounted route (tests/fuzz_requests.py: well-formed, broken once, and wild) and each answer must
keep the standard "bad input gets a clear error in the API's own format, the process stays up, and no money
or record is lost":

- never a 5xx, never a dropped connection;
- an error is well formed in its API's format (OpenAI `{"error": {...}}`, Anthropic `{"type": "error", ...}`
  on /v1/messages and count_tokens);
- a rejected request leaves no ledger row and no reservation (the budget's figures do not move);
- no request is answered by a fallback (a client's mistake taken for a provider fault), and every model still
  answers a valid request itself afterwards (no deployment was cooled down); no process died.

Models answer fast: the instant fake providers, the local model held to one token; most bodies are refused
before any model runs. The proxy is this module's own (sharing the session stack's llama.cpp and embedding
servers), so its ledger and LiteLLM's cooldowns hold only what the fuzz did. About 2,400 cases a run;
SYNQRA_FUZZ_SCALE=4 runs four times as many.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fuzz_requests import (
    KEY_PLACEHOLDER,
    ROUTES,
    encode,
    header_sets,
    raw_bodies,
    requests_for,
)
from tests.stack import MASTER_KEY, RunningStack, start_stack, wait_until

SCALE = float(os.environ.get("SYNQRA_FUZZ_SCALE", "1"))
EXAMPLES = {"chat": 500, "messages": 450, "completions": 300, "responses": 300, "embeddings": 250, "count_tokens": 250}
HEADER_EXAMPLES = 350
CANARY_EVERY = 150  # requests between checks that every model still answers for itself
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
CANARY_MODELS = ("local-llama", "gpt-4o", "deepseek-chat", "claude-sonnet")


def fuzz_settings(n: int) -> Any:
    return settings(
        max_examples=max(1, int(n * SCALE)),
        deadline=None,
        database=None,
        print_blob=True,
        # No shrinking: against a live stack it takes many minutes; the failing body is printed as drawn.
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=(
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
            HealthCheck.filter_too_much,
        ),
    )


@pytest.fixture(scope="module")
def fuzz_stack(stack: RunningStack, providers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    s = start_stack(tmp_path_factory.mktemp("fuzz"), providers, backends_of=stack)
    yield s
    s.stop()


class Fuzz:
    """Sends one request and checks every property of its answer; keeps the budget's figures between requests."""

    def __init__(self, stack: RunningStack, backends_of: RunningStack) -> None:
        self.stack, self.backends_of = stack, backends_of
        self.client = httpx.Client(base_url=stack.base_url, timeout=120)
        self.statuses: Counter[int] = Counter()
        self.sent = 0
        self.figures = self._settled()
        # Where the supervisors' logs stand now: a restart written after this is one the fuzz caused.
        self.log_offsets = {log: log.stat().st_size for log in (stack.log_path, backends_of.log_path)}

    def _status(self) -> dict[str, Any]:
        return self.client.get("/api/budget/status", headers=AUTH).json()  # type: ignore[no-any-return]

    def _settled(self) -> tuple[Any, ...]:
        """The month's figures once nothing is reserved (an answered stream settles after its last byte)."""
        assert wait_until(lambda: self._status()["reserved"] == 0, timeout_s=30), "a reservation was never released"
        s = self._status()
        return s["requests"], s["monthly_used"], s["tokens"]["prompt"], s["tokens"]["completion"]

    def send(self, path: str, raw: bytes, headers: dict[str, Any], anthropic: bool) -> None:
        try:
            with self.client.stream("POST", path, content=raw, headers=headers) as r:
                text = r.read().decode("utf-8", "replace")
        except httpx.TransportError as e:  # a dropped connection is worse than a 500
            pytest.fail(f"{path}: no answer ({e!r}); the proxy must answer every request")
        self.sent += 1
        self.statuses[r.status_code] += 1
        assert r.status_code < 500, f"{path} -> {r.status_code}: {text[:800]}"
        assert "x-synqra-fallback" not in r.headers, (
            f"{path}: a client's request was taken for a provider fault and answered by a fallback "
            f"({r.headers['x-synqra-fallback']})"
        )
        if r.status_code < 400:
            served = 0 if path.endswith("/count_tokens") else 1  # count_tokens is answered by synqra, unbilled
            assert wait_until(lambda: self._settled()[0] == self.figures[0] + served, timeout_s=30), (
                f"{path}: a served request is not in the ledger: {text[:300]}"
            )
            self.figures = self._settled()
        else:
            error = json.loads(text)
            if anthropic:
                assert (
                    error["type"] == "error" and error["error"]["type"] and isinstance(error["error"]["message"], str)
                ), text
            else:
                assert isinstance(error["error"], dict) and isinstance(error["error"]["message"], str), text
                # a type of its own, a message of its own (/v1/completions gave type "None" and "400: {'error': ...}")
                assert error["error"].get("type") not in (None, "", "None"), text
                assert not re.match(r"\d{3}: \{", error["error"]["message"]), text
            assert self._settled() == self.figures, (
                f"{path}: a rejected request ({r.status_code}) moved the ledger: {text[:300]}"
            )
        if self.sent % CANARY_EVERY == 0:
            self.every_model_answers_for_itself()

    def every_model_answers_for_itself(self) -> None:
        """No deployment cooled down, no process died."""
        assert self.stack.proc.poll() is None, "the proxy supervisor exited"
        for log, offset in self.log_offsets.items():
            assert b" exited (" not in log.read_bytes()[offset:], f"a process died and was restarted: {log}"
        for model in CANARY_MODELS:
            r = self.client.post(
                "/v1/chat/completions",
                headers=AUTH,
                json={"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": "Say yes."}]},
            )
            assert r.status_code == 200, f"{model}: {r.status_code} {r.text[:300]}"
            assert r.headers.get("x-synqra-route") == model and "x-synqra-fallback" not in r.headers, (
                f"{model} did not answer for itself (cooled down?): {dict(r.headers)}"
            )
        self.figures = self._settled()


@pytest.fixture(scope="module")
def fuzz(fuzz_stack: RunningStack, stack: RunningStack) -> Iterator[Fuzz]:
    f = Fuzz(fuzz_stack, stack)
    yield f
    print(f"\nfuzz: {f.sent} requests, statuses {dict(sorted(f.statuses.items()))}")


def _route_test(name: str) -> Any:
    route = ROUTES[name]

    @fuzz_settings(EXAMPLES[name])
    @given(body=requests_for(name))
    def test(fuzz: Fuzz, body: Any) -> None:
        fuzz.send(route.path, encode(body), {**AUTH, "content-type": "application/json"}, route.anthropic)

    test.__name__ = f"test_fuzzed_{name}_bodies"
    test.__doc__ = (
        f"{route.path}: every drawn body is answered, with a well-formed error or a 2xx, and moves no money if refused."
    )
    return test


test_fuzzed_chat_bodies = _route_test("chat")
test_fuzzed_messages_bodies = _route_test("messages")
test_fuzzed_completions_bodies = _route_test("completions")
test_fuzzed_responses_bodies = _route_test("responses")
test_fuzzed_embeddings_bodies = _route_test("embeddings")
test_fuzzed_count_tokens_bodies = _route_test("count_tokens")

VALID_BODY = {
    "model": "gpt-4o",
    "max_tokens": 2,
    "messages": [{"role": "user", "content": "hi"}],
    "input": "hi",
    "prompt": "hi",
}


@fuzz_settings(HEADER_EXAMPLES)
@given(name=st.sampled_from(sorted(ROUTES)), headers=header_sets(), raw=st.one_of(st.none(), raw_bodies))
def test_fuzzed_headers_and_encodings(fuzz: Fuzz, name: str, headers: dict[str, str], raw: bytes | None) -> None:
    """Odd auth forms, content types, LiteLLM's control headers with values of every kind, and bodies that are
    not JSON (bytes, NaN, lone surrogates): an error in the API's format or a 2xx, never a 5xx."""
    route = ROUTES[name]
    body = dict(VALID_BODY, model="claude-sonnet" if route.anthropic else "gpt-4o")
    if name == "embeddings":
        body = {"model": "local-embed", "input": "hi"}
    sent = {k: v.replace(KEY_PLACEHOLDER, MASTER_KEY).encode("latin-1") for k, v in headers.items()}
    fuzz.send(route.path, raw if raw is not None else encode(body), sent, route.anthropic)


# --- the 500s the first fuzz run found (issue 19), each a 400 naming the field ------------------------------

MSG = [{"role": "user", "content": "hi"}]
KNOWN_500S: list[tuple[str, str, Any, str]] = [
    ("embeddings [[], []]", "/v1/embeddings", {"model": "auto", "input": [[], []]}, "'input'"),
    (
        "chat tool_result part",
        "/v1/chat/completions",
        {"model": "gpt-4o", "messages": [{"role": "user", "content": [{"type": "tool_result"}]}]},
        "'messages[0].content[0]'",
    ),
    (
        "chat tool_result part, auto",
        "/v1/chat/completions",
        {"model": "auto", "messages": [{"role": "user", "content": [{"type": "tool_result"}]}]},
        "'messages[0].content[0]'",
    ),
    (
        "response_format []",
        "/v1/chat/completions",
        {"model": "gpt-4o", "messages": MSG, "response_format": []},
        "'response_format'",
    ),
    (
        "response_format [] on the local model",
        "/v1/chat/completions",
        {"model": "local-llama", "max_tokens": 1, "messages": MSG, "response_format": []},
        "'response_format'",
    ),
    (
        "messages system 10**12",
        "/v1/messages",
        {"model": "claude-sonnet", "max_tokens": 5, "messages": MSG, "system": 1000000000000},
        "'system'",
    ),
    (
        "messages tools 5",
        "/v1/messages",
        {"model": "claude-sonnet", "max_tokens": 5, "messages": MSG, "tools": 5},
        "'tools'",
    ),
    (
        "messages tools {}",
        "/v1/messages",
        {"model": "claude-sonnet", "max_tokens": 5, "messages": MSG, "tools": {"a": 1}},
        "'tools'",
    ),
    # found by this fuzz
    (
        "model with a control character (the connection dropped)",
        "/v1/chat/completions",
        {"model": "gpt-4o\x00", "messages": MSG},
        "'model'",
    ),
    (
        "model with an edge space (the connection dropped)",
        "/v1/responses",
        {"model": "auto ", "input": "hi"},
        "'model'",
    ),
    (
        "NaN temperature",
        "/v1/chat/completions",
        {"model": "gpt-4o", "messages": MSG, "temperature": float("nan")},
        "nan",
    ),
    (
        "a developer message without content",
        "/v1/chat/completions",
        {"model": "claude-sonnet", "messages": [{"role": "developer", "content": None}, *MSG]},
        "'messages[0].content'",
    ),
    (
        "an empty role (local model failed, fell back)",
        "/v1/messages",
        {"model": "auto", "max_tokens": 1, "messages": [{"role": "", "content": "hi"}]},
        "'messages[0].role'",
    ),
    (
        "token id -1 (llama.cpp aborted)",
        "/v1/completions",
        {"model": "local-llama", "prompt": [-1], "max_tokens": 1},
        "'prompt",
    ),
    ("token ids to a chat model", "/v1/completions", {"model": "gpt-4o", "prompt": [1, 2, 3]}, "token ids"),
    ("token ids to Claude", "/v1/completions", {"model": "claude-sonnet", "prompt": [[0]]}, "token ids"),
    (
        "messages in a text completion",
        "/v1/completions",
        {"model": "gpt-4o", "prompt": "hi", "messages": MSG},
        "'messages'",
    ),
    (
        "a web_search_call item without its fields",
        "/v1/responses",
        {"model": "claude-sonnet", "input": [{"type": "web_search_call"}, {"role": "user", "content": "hi"}]},
        "'input[0]",
    ),
    (
        "an integer beyond a float",
        "/v1/responses",
        {"model": "claude-sonnet", "input": "hi", "metadata": {"n": 10**400}},
        "out of range",
    ),
    (
        "LiteLLM's max_retries as a list",
        "/v1/messages",
        {"model": "local-llama", "max_tokens": 1, "messages": MSG, "max_retries": [1]},
        "'max_retries'",
    ),
    (
        "LiteLLM's litellm_trace_id as a number",
        "/v1/completions",
        {"model": "gpt-4o", "prompt": "hi", "litellm_trace_id": 9},
        "'litellm_trace_id'",
    ),
    (
        "LiteLLM's client as an object",
        "/v1/completions",
        {"model": "claude-sonnet", "prompt": "hi", "client": {}},
        "'client'",
    ),
    ("api_key as a list", "/v1/responses", {"model": "deepseek-chat", "input": "hi", "api_key": [{}]}, "'api_key'"),
    (
        "count_tokens system 5",
        "/v1/messages/count_tokens",
        {"model": "claude-sonnet", "messages": MSG, "system": 5},
        "'system'",
    ),
    (
        "count_tokens nesting deeper than Python reads",
        "/v1/messages/count_tokens",
        '{"model": "claude-sonnet", "messages": ' + "[" * 5000 + "]" * 5000 + "}",
        "nested too deeply",
    ),
    (
        "count_tokens lone surrogate to the local tokenizer",
        "/v1/messages/count_tokens",
        {"model": "local-llama", "messages": [{"role": "user", "content": "a\udfffb"}]},
        "surrogate",
    ),
    ("a body that is not UTF-8", "/v1/messages", b'{"model": "claude-sonnet", "messages": "\xff"}', "utf-8"),
]
KNOWN_500_HEADERS: list[tuple[str, str, dict[str, str], str]] = [
    ("x-litellm-timeout abc", "/v1/chat/completions", {"x-litellm-timeout": "abc"}, "x-litellm-timeout"),
    ("x-litellm-num-retries abc", "/v1/chat/completions", {"x-litellm-num-retries": "abc"}, "x-litellm-num-retries"),
    ("x-litellm-stream-timeout NaN", "/v1/messages", {"x-litellm-stream-timeout": "NaN"}, "x-litellm-stream-timeout"),
    (
        "a control character in anthropic-beta (fell back to gpt-4o)",
        "/v1/messages",
        {"anthropic-beta": "\x7f"},
        "anthropic-beta",
    ),
]


def _raw(body: Any) -> bytes:
    return body if isinstance(body, bytes) else body.encode() if isinstance(body, str) else encode(body)


def _assert_400(r: httpx.Response, path: str, needle: str) -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    if path.startswith("/v1/messages"):
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        message = body["error"]["message"]
    else:
        message = body["error"]["message"]
    assert needle.lower() in message.lower(), message


@pytest.mark.parametrize(("name", "path", "body", "needle"), KNOWN_500S, ids=[c[0] for c in KNOWN_500S])
def test_what_was_a_500_is_a_400_naming_the_field(
    fuzz: Fuzz, fresh_providers, name: str, path: str, body: Any, needle: str
) -> None:
    before = fuzz._settled()
    r = fuzz.client.post(path, content=_raw(body), headers={**AUTH, "content-type": "application/json"})
    _assert_400(r, path, needle)
    assert not any(p.requests for p in fresh_providers.values()), "refused before any provider was called"
    assert fuzz._settled() == before


@pytest.mark.parametrize(
    ("name", "path", "headers", "needle"), KNOWN_500_HEADERS, ids=[c[0] for c in KNOWN_500_HEADERS]
)
def test_what_was_a_500_in_a_header_is_a_400_naming_it(
    fuzz: Fuzz, fresh_providers, name: str, path: str, headers: dict[str, str], needle: str
) -> None:
    body = {"model": "claude-sonnet", "max_tokens": 2, "messages": MSG}
    r = fuzz.client.post(path, json=body, headers={**AUTH, **headers})
    _assert_400(r, path, needle)
    assert not any(p.requests for p in fresh_providers.values())


def test_after_the_fuzz_every_model_answers_for_itself(fuzz: Fuzz) -> None:
    fuzz.every_model_answers_for_itself()
    assert fuzz.sent >= sum(EXAMPLES.values()) * SCALE * 0.9, f"only {fuzz.sent} fuzzed requests were sent"


# Last: the fallback it shows cools Claude down on this module's proxy.
@pytest.mark.xfail(
    strict=True,
    reason="LiteLLM downloads an image URL for Anthropic models in its provider layer; an "
    "unreachable one is a fault there, and the request falls back to gpt-4o (reported)",
)
def test_an_unreachable_image_url_for_claude_is_the_clients_error(fuzz: Fuzz) -> None:
    body = {
        "model": "claude-sonnet",
        "max_tokens": 2,
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/cat.png"}}]}
        ],
    }  # port 9: nothing listens
    r = fuzz.client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert r.status_code == 400 and "x-synqra-fallback" not in r.headers, (r.status_code, dict(r.headers))


def test_an_empty_enum_in_a_json_schema_for_the_local_model_is_a_400(fuzz: Fuzz) -> None:
    """llama.cpp built an empty grammar for it and crashed the server: the engine refuses it first."""
    schema = {"type": "object", "properties": {"a": {"type": "string", "enum": []}}}
    r = fuzz.client.post(
        "/v1/chat/completions",
        headers=AUTH,
        json={
            "model": "local-llama",
            "max_tokens": 1,
            "messages": MSG,
            "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": schema}},
        },
    )
    assert r.status_code == 400 and "x-synqra-fallback" not in r.headers


def test_the_fuzz_stack_is_this_modules_own(fuzz_stack: RunningStack, stack: RunningStack) -> None:
    assert fuzz_stack.port != stack.port and Path(fuzz_stack.data_dir) != Path(stack.data_dir)
