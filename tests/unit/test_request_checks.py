from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.common.cache_ttls import anthropic_ttls_apply
from policies.common.request_checks import (
    banned_field_problem,
    body_problem,
    check_context_window,
    check_forwarded_headers,
    check_max_tokens,
    check_messages,
    check_unpriced_extras,
    header_problem,
    parse_body,
    stored_context_error,
)
from policies.common.settings import AppConfig, load_config
from policies.routing.tiers import TierInfo
from tests.fuzz_requests import ROUTES, encode, requests_for, well_formed


@pytest.mark.parametrize("value", [0, -1, "10", 1.5, True])
def test_bad_max_tokens(value) -> None:
    assert "max_tokens" in check_max_tokens({"max_tokens": value})


def test_good_max_tokens_and_absent() -> None:
    assert check_max_tokens({"max_tokens": 10}) is None
    assert check_max_tokens({}) is None


def test_messages_shape() -> None:
    assert check_messages({"messages": []})
    assert check_messages({"messages": ["hi"]})
    assert check_messages({"messages": [{"role": "user", "content": "x"}]}) is None


def test_context_window() -> None:
    small = {"messages": [{"role": "user", "content": "x" * 100}]}
    big = {"messages": [{"role": "user", "content": [{"type": "text", "text": "x" * 100_000}]}]}
    assert check_context_window(small, "m", 2048) is None
    assert "too long" in check_context_window(big, "m", 2048)
    assert check_context_window(big, "m", None) is None


def test_context_window_counts_system_blocks_like_a_system_string() -> None:
    """The Messages API's `system` may be a list of text blocks: a long one is as long as the string."""
    long = "Policy clause about refunds and returns for the store. " * 300  # ~16,500 chars
    msgs = [{"role": "user", "content": "Summarise the policy."}]
    as_string = {"messages": msgs, "system": long}
    as_blocks = {
        "messages": msgs,
        "system": [{"type": "text", "text": long[:8000]}, {"type": "text", "text": long[8000:]}],
    }
    assert "too long" in check_context_window(as_string, "local-llama", 2048)
    assert "too long" in check_context_window(as_blocks, "local-llama", 2048)
    short_blocks = {"messages": msgs, "system": [{"type": "text", "text": "Be brief."}, {"type": "image"}, "junk"]}
    assert check_context_window(short_blocks, "local-llama", 2048) is None


# --- the front door (proxy/route_guard.py): body_problem, parse_body, header_problem -------------------------

MSG = [{"role": "user", "content": "hi"}]
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/embeddings", {"model": "auto", "input": [[], []]}, "'input'"),
        (
            "/v1/chat/completions",
            {"model": "gpt-4o", "messages": [{"role": "user", "content": [{"type": "tool_result"}]}]},
            "'messages[0].content[0]'",
        ),
        (
            "/v1/chat/completions",
            {"model": "gpt-4o", "messages": MSG, "response_format": []},
            "'response_format' must be an object",
        ),
        (
            "/v1/messages",
            {"model": "c", "max_tokens": 5, "messages": MSG, "system": 10**12},
            "'system' must be a string or a list",
        ),
        ("/v1/messages", {"model": "c", "max_tokens": 5, "messages": MSG, "tools": 5}, "'tools' must be a list"),
        ("/v1/chat/completions", {"model": "gpt-4o\x00", "messages": MSG}, "'model'"),
        (
            "/v1/chat/completions",
            {"model": "gpt-4o", "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
            "'messages[0].content[0].text' must be a string",
        ),
        (
            "/v1/chat/completions",
            {"model": "gpt-4o", "messages": MSG, "max_tokens": -1},
            "'max_tokens' must be at least 1",
        ),
        ("/v1/chat/completions", {"model": "gpt-4o"}, "'messages' is required"),
        ("/v1/completions", {"model": "local-llama", "prompt": [-1]}, "'prompt[0]' must be at least 0"),
        (
            "/v1/completions",
            {"model": "gpt-4o", "prompt": "x", "messages": MSG},
            "'messages' is not a field of this route",
        ),
        ("/v1/responses", {"model": "c", "input": [{"type": "web_search_call"}]}, "'input[0]."),
        ("/v1/messages/count_tokens", {"model": "c", "messages": MSG, "system": 5}, "'system'"),
        (
            "/v1/messages",
            {
                "model": "c",
                "max_tokens": 1,
                "messages": [{"role": "assistant", "content": [{"type": "text", "text": ""}]}],
            },
            "'messages[0].content[0].text' must hold text",
        ),
    ],
)
def test_body_problem_names_the_field(path: str, body: dict, field: str) -> None:
    problem = body_problem(path, body)
    assert problem is not None and field in problem, problem


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/v1/chat/completions",
            {
                "model": "gpt-4o",
                "stream": False,
                "n": 1,
                "stop": None,
                "temperature": 0,
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "hi"},
                            {"type": "image_url", "image_url": {"url": "data:,"}},
                        ],
                    },
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                    },
                    {"role": "tool", "tool_call_id": "a", "content": "42"},
                ],
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
                "tool_choice": "auto",
                "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
            },
        ),
        (
            "/v1/messages",
            {
                "model": "claude-sonnet-4-5",
                "max_tokens": 5,
                "stream": True,
                "metadata": {"user_id": "u"},
                "system": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}],
                "tools": [{"name": "t", "input_schema": {"type": "object"}}],
                "thinking": {"type": "enabled", "budget_tokens": 1024},
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "t", "input": {}}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]},
                ],
            },
        ),
        ("/v1/completions", {"model": "local-llama", "prompt": [[1, 2], [3]], "echo": True, "logprobs": 2}),
        (
            "/v1/responses",
            {
                "model": "gpt-4o",
                "input": [
                    {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
                    {"type": "function_call_output", "call_id": "c", "output": "4"},
                ],
            },
        ),
        (
            "/v1/embeddings",
            {"model": "local-embed", "input": [[1, 2], [3]], "dimensions": 384, "encoding_format": "base64"},
        ),
        ("/openai/deployments/gpt-4o/chat/completions", {"messages": MSG}),
        (
            "/v1/chat/completions",
            {"model": "gpt-4o", "messages": MSG, "timeout": 30, "metadata": {"tags": ["a"]}, "x-unknown": {}},
        ),
    ],
)
def test_what_sdks_send_passes(path: str, body: dict) -> None:
    assert body_problem(path, body) is None


def test_token_ids_go_only_to_a_model_that_reads_them() -> None:
    ids = {"model": "gpt-4o", "prompt": [1, 2]}
    assert "token ids" in body_problem("/v1/completions", ids, lambda m: m == "local-llama")
    assert body_problem("/v1/completions", {**ids, "model": "local-llama"}, lambda m: m == "local-llama") is None
    assert body_problem("/v1/completions", {**ids, "prompt": "text"}, lambda m: False) is None


def test_anthropic_metadata_user_id_is_a_string() -> None:
    # LiteLLM validates Messages metadata into its own model: a non-string user_id was a 500 (found by fuzzing).
    body = {"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    assert "metadata.user_id" in body_problem("/v1/messages", {**body, "metadata": {"user_id": {"k": 1}}}, bool)
    assert body_problem("/v1/messages", {**body, "metadata": {"user_id": "u-1"}}, bool) is None
    assert body_problem("/v1/messages", {**body, "metadata": {"user_id": None}}, bool) is None
    # OpenAI's metadata is an object of the client's own: any values
    chat = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "metadata": {"user_id": {"k": 1}}}
    assert body_problem("/v1/chat/completions", chat, bool) is None


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b'{"a": NaN}', "NaN"),
        (b'{"a": -Infinity}', "Infinity"),
        (b'{"a": 1e999}', "out of range"),
        (b'{"a": 1' + b"0" * 400 + b"}", "out of range"),
        (b'{"a": "\\ud800"}', "surrogate"),
        (b"\xff{}", "UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        (b"{", "not valid JSON"),
    ],
)
def test_parse_body_refuses_what_no_provider_can_be_sent(raw: bytes, needle: str) -> None:
    value, problem = parse_body(raw)
    assert value is None and needle in problem


def test_parse_body_reads_what_litellm_reads() -> None:
    assert parse_body(b'{"a": 10000000000000000000000}') == ({"a": 1e22}, None)  # orjson: a float past 64 bits
    assert parse_body(b'{"a": "\xf0\x9f\x98\x80"}') == ({"a": "\U0001f600"}, None)


@pytest.mark.parametrize(
    ("headers", "needle"),
    [
        ([(b"x-litellm-timeout", b"abc")], "x-litellm-timeout"),
        ([(b"x-litellm-timeout", b"nan")], "x-litellm-timeout"),
        ([(b"x-litellm-num-retries", b"-1")], "x-litellm-num-retries"),
        ([(b"anthropic-beta", b"a\x7fb")], "control character"),
        ([(b"X-LiteLLM-Stream-Timeout", b"0")], "X-LiteLLM-Stream-Timeout"),
    ],
)
def test_header_problem(headers: list, needle: str) -> None:
    assert needle in header_problem(headers)


def test_good_headers_pass() -> None:
    assert (
        header_problem([(b"x-litellm-timeout", b"30"), (b"x-litellm-num-retries", b"2"), (b"user-agent", b"a\tb")])
        is None
    )


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=st.sampled_from(sorted(ROUTES)), data=st.data())
def test_the_front_door_never_raises_and_always_explains(name: str, data) -> None:
    """Whatever the body, the checks answer None or a sentence; they never raise (a raise there is a 500)."""
    raw = encode(data.draw(requests_for(name)))
    value, problem = parse_body(raw)
    problem = problem or body_problem(ROUTES[name].path, value, lambda m: m == "local-llama")
    assert problem is None or (isinstance(problem, str) and problem)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=st.sampled_from(sorted(ROUTES)), data=st.data())
def test_well_formed_bodies_pass(name: str, data) -> None:
    body = data.draw(well_formed(name))
    value, problem = parse_body(json.dumps(body).encode())
    if problem is None:  # NaN can appear inside a drawn JSON schema's enum
        assert body_problem(ROUTES[name].path, value, lambda m: True) is None, body


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("api_base", "http://127.0.0.1:9/v1"),
        ("base_url", "http://127.0.0.1:9/v1"),
        ("user_config", {"model_list": []}),
        ("input_cost_per_token", 0),
        ("output_cost_per_token", 0),
    ],
)
def test_a_field_litellm_bans_is_named(field: str, value: object) -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], field: value}
    problem = banned_field_problem("/v1/chat/completions", body, {}, None)
    assert problem is not None and field in problem
    # The operator's opt-in is LiteLLM's, and it is honoured.
    assert banned_field_problem("/v1/chat/completions", body, {"allow_client_side_credentials": True}, None) is None


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=st.sampled_from(sorted(ROUTES)), data=st.data())
def test_banned_fields_pass_what_sdks_send_and_never_raise(name: str, data) -> None:
    body = data.draw(well_formed(name))
    assert banned_field_problem(ROUTES[name].path, body, {}, None) is None, body
    value, _ = parse_body(encode(data.draw(requests_for(name))))
    problem = banned_field_problem(ROUTES[name].path, value, {}, None)
    assert problem is None or (isinstance(problem, str) and problem)


@pytest.mark.parametrize(
    "body",
    [
        {"service_tier": "auto"},
        {"service_tier": "default"},
        {"service_tier": "flex"},  # cheaper than list: the ledger over-counts, never under
        {"service_tier": "standard_only"},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
        {"tools": [{"name": "lookup", "input_schema": {"type": "object"}}]},  # an Anthropic client tool
        {"tools": [{"type": "bash_20250124", "name": "bash"}, {"type": "custom", "name": "x"}]},
        {"tools": "not a list"},  # LiteLLM's and the API's own checks answer it
        {"inference_geo": "global"},  # Anthropic's default: list price
        {"speed": "standard"},
        # Claude Code's own context edits: what they clear is simply not billed
        {"context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}},
        {"context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}},
    ],
)
def test_token_priced_requests_pass_the_unpriced_extras_check(body: dict) -> None:
    assert check_unpriced_extras(body) is None


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"service_tier": "priority"}, "service_tier"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"tools": [{"type": "function"}, {"type": "web_search_preview"}]}, "tools[1]"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0]"),
        ({"tools": [{"type": "code_execution_20250522", "name": "code_execution"}]}, "tools[0]"),
        ({"tools": [{"type": "file_search", "vector_store_ids": ["v"]}]}, "tools[0]"),
        ({"tools": [{"type": "code_interpreter"}]}, "tools[0]"),
        ({"tools": [{"type": "image_generation"}]}, "tools[0]"),
        # Anthropic's US-only inference (1.1x the list price on its current models) and fast mode (6x): LiteLLM
        # forwards both on /v1/messages; the ledger priced them at list.
        ({"inference_geo": "us"}, "inference_geo"),
        ({"speed": "fast"}, "speed"),
        # Server-side compaction: Anthropic bills the summarising pass as an extra sampling iteration, outside the
        # top-level usage the ledger records (usage.iterations); LiteLLM turns the Responses API's into Anthropic's.
        ({"context_management": {"edits": [{"type": "compact_20260112"}]}}, "context_management.edits[0]"),
        ({"compaction": {"type": "auto"}}, "compaction"),
        ({"context_management": [{"type": "compaction", "compact_threshold": 1000}]}, "context_management[0]"),
    ],
)
def test_extras_billed_beyond_tokens_are_refused_naming_the_field(body: dict, named: str) -> None:
    problem = check_unpriced_extras(body)
    assert problem is not None and named in problem


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ({"extra_headers": [{"k": ["deep"]}]}, "got list"),  # a fuzzed body: LiteLLM's provider layer gave a 500
        ({"headers": "x-a: 1"}, "got str"),
        ({"extra_headers": {"x-a": ["1"]}}, "'extra_headers.x-a'"),
        ({"extra_headers": {"x-a": "1\r\nx-b: 2"}}, "'extra_headers.x-a'"),
        ({"headers": {"bad name": "1"}}, "invalid header name"),
        ({"extra_headers": {"x-tag": "caf\u00e9"}}, "'extra_headers.x-tag'"),  # httpx encodes values as ASCII
    ],
)
def test_forwarded_headers_must_be_header_names_and_string_values(headers: dict, named: str) -> None:
    problem = check_forwarded_headers(headers)
    assert problem is not None and named in problem
    assert (
        check_forwarded_headers({"extra_headers": {"anthropic-beta": "prompt-caching-2024-07-31", "X-Tag": "a b\tc"}})
        is None
    )


def test_a_stored_conversation_routed_to_a_model_that_does_not_keep_it_is_refused() -> None:
    caps = {"claude-sonnet": TierInfo("claude-sonnet"), "gpt-4o": TierInfo("gpt-4o", stores_responses=True)}
    turn = {"input": "And in French?", "previous_response_id": "resp_1"}
    message = stored_context_error("auto", turn, caps, "claude-sonnet")
    assert message and "'previous_response_id'" in message and "(gpt-4o)" in message
    assert stored_context_error("auto", turn, caps, "gpt-4o") is None
    assert stored_context_error("auto", {"input": "hi"}, caps, "claude-sonnet") is None
    nobody = stored_context_error("auto", {"conversation": "c"}, {}, "local-llama")  # no model keeps them
    assert nobody is not None and "'conversation'" in nobody and "by name" not in nobody


# --- cache_control TTLs: Anthropic takes "5m" and "1h" only ----------------------------------------------

_TTL_2H = {"type": "ephemeral", "ttl": "2h"}
CACHE_TTL_CASES = [
    ("/v1/messages", {"cache_control": _TTL_2H}, "'cache_control.ttl'"),
    (
        "/v1/messages",
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": _TTL_2H}]}]},
        "'messages[0].content[0].cache_control.ttl'",
    ),
    (
        "/v1/messages",
        {"system": [{"type": "text", "text": "Be brief.", "cache_control": _TTL_2H}]},
        "'system[0].cache_control.ttl'",
    ),
    (
        "/v1/messages",
        {"tools": [{"name": "t", "input_schema": {}, "cache_control": _TTL_2H}]},
        "'tools[0].cache_control",
    ),
    (
        "/v1/messages",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t1",
                            "content": [{"type": "text", "text": "42", "cache_control": _TTL_2H}],
                        }
                    ],
                }
            ]
        },
        "'messages[0].content[0].content[0].cache_control.ttl'",
    ),
    ("/v1/messages/count_tokens", {"cache_control": {"type": "ephemeral", "ttl": 3600}}, "'cache_control.ttl'"),
    (
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": _TTL_2H}]}]},
        "'messages[0].content[0].cache_control.ttl'",
    ),
    (
        "/v1/chat/completions",
        {"messages": [{"role": "system", "content": "Be brief.", "cache_control": _TTL_2H}]},
        "'messages[0].cache_control.ttl'",
    ),
    (
        "/v1/chat/completions",
        {"tools": [{"type": "function", "function": {"name": "f", "cache_control": _TTL_2H}}]},
        "'tools[0].function.cache_control.ttl'",
    ),
    ("/v1/chat/completions", {"tools": [{"type": "function", "cache_control": _TTL_2H}]}, "'tools[0].cache_control"),
    ("/v1/chat/completions", {"cache_control": _TTL_2H}, "'cache_control.ttl'"),
    (
        "/v1/responses",
        {"input": [{"role": "user", "content": [{"type": "input_text", "text": "hi", "cache_control": _TTL_2H}]}]},
        "'input[0].content[0].cache_control.ttl'",
    ),
]


@pytest.mark.parametrize(("path", "extra", "field"), CACHE_TTL_CASES)
def test_a_cache_ttl_anthropic_does_not_take_is_named(path: str, extra: dict, field: str) -> None:
    base = {"model": "claude-sonnet", "max_tokens": 5, "messages": MSG}
    if path == "/v1/responses":
        base = {"model": "claude-sonnet", "input": "hi"}
    problem = body_problem(path, {**base, **extra})
    assert problem is not None and field in problem and "'5m'" in problem and "'1h'" in problem, problem


@pytest.mark.parametrize("ttl", ["5m", "1h", None])
def test_the_cache_ttls_anthropic_takes_pass(ttl: str | None) -> None:
    control = {"type": "ephemeral"} if ttl is None else {"type": "ephemeral", "ttl": ttl}
    block = {"type": "text", "text": "hi", "cache_control": control}
    messages = {"model": "claude-sonnet", "max_tokens": 5, "messages": [{"role": "user", "content": [block]}]}
    assert body_problem("/v1/messages", {**messages, "system": [block], "cache_control": control}) is None
    chat = {"model": "claude-sonnet", "messages": [{"role": "user", "content": [block], "cache_control": control}]}
    assert body_problem("/v1/chat/completions", chat) is None
    # a tool's own schema may have a property named cache_control: it is the tool's, not a breakpoint
    schema = {"type": "object", "properties": {"cache_control": {"type": "object", "ttl": {"type": "string"}}}}
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    assert body_problem("/v1/chat/completions", {**chat, "tools": [tool]}) is None


def _config_with(tmp_path: Path, *entries: dict) -> AppConfig:
    raw = yaml.safe_load((REPO / "litellm_config.yaml").read_text())
    raw["model_list"] += list(entries)
    path = tmp_path / "litellm_config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


def _deployment(name: str, model: str) -> dict:
    return {"model_name": name, "litellm_params": {"model": model}, "model_info": {"mode": "chat"}}


@pytest.mark.parametrize(
    ("model", "anthropic"),
    [
        ("gemini-flash", False),
        ("vertex-gemini", False),
        ("gpt-4o", False),
        ("claude-sonnet", True),
        ("claude-3-5-sonnet-20241022", True),  # an alias of claude-sonnet
        ("bedrock-claude", True),
        ("vertex-claude", True),
        ("auto", True),  # routed: its tiers include claude-sonnet
        ("deepseek-chat", True),  # router_settings.fallbacks: deepseek-chat -> claude-sonnet
        ("local-llama", True),  # -> deepseek-chat -> claude-sonnet
    ],
)
def test_cache_ttls_are_checked_only_for_anthropic_deployments(tmp_path: Path, model: str, anthropic: bool) -> None:
    """Gemini's and Vertex AI's context caches take TTLs such as "3600s": the front door refused them for every model
    with Anthropic's rule ("5m" or "1h"). The rule is now Anthropic's API's only (Claude on Bedrock and Vertex AI
    included, and `auto` while a tier is Claude); other providers get the body as the client sent it."""
    cfg = _config_with(
        tmp_path,
        _deployment("gemini-flash", "gemini/gemini-2.5-flash"),
        _deployment("vertex-gemini", "vertex_ai/gemini-2.5-pro"),
        _deployment("bedrock-claude", "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0"),
        _deployment("vertex-claude", "vertex_ai/claude-sonnet-4-5@20250929"),
    )
    ttl = {"type": "ephemeral", "ttl": "3600s"}
    block = {"type": "text", "text": "hi", "cache_control": ttl}
    body = {"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": [block]}]}
    problem = body_problem("/v1/chat/completions", body, anthropic_ttls=lambda m: anthropic_ttls_apply(cfg, m))
    if anthropic:
        assert problem is not None and "'messages[0].content[0].cache_control.ttl'" in problem, problem
        assert "'3600s'" in problem
    else:
        assert problem is None, problem
        # what else is wrong is still named
        bad = {**body, "max_tokens": "5"}
        assert "'max_tokens'" in str(body_problem("/v1/chat/completions", bad, anthropic_ttls=lambda m: False))


# --- store: OpenAI's true or false ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"model": "claude-sonnet", "messages": MSG}),
        ("/v1/messages", {"model": "claude-sonnet", "max_tokens": 5, "messages": MSG}),
        ("/v1/responses", {"model": "gpt-4o", "input": "hi"}),
    ],
)
def test_store_must_be_true_or_false(path: str, body: dict) -> None:
    problem = body_problem(path, {**body, "store": "yes"})
    assert problem is not None and "'store' must be true or false" in problem, problem
    for ok in (True, False, None):
        assert body_problem(path, {**body, "store": ok}) is None
