"""The official anthropic SDK against the proxy's /v1/messages, unchanged."""

from __future__ import annotations


def test_messages_create_claude(anthropic_client, fresh_providers) -> None:
    raw = anthropic_client.messages.with_raw_response.create(
        model="claude-sonnet", max_tokens=32, messages=[{"role": "user", "content": "Say hello"}]
    )
    msg = raw.parse()
    assert msg.content[0].text.strip() == fresh_providers["anthropic"].default_text
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens == len(
        fresh_providers["anthropic"].default_text.split()
    )
    req = fresh_providers["anthropic"].requests[0]
    assert req.path == "/v1/messages" and req.headers["x-api-key"] == "sk-ant-fake"
    assert raw.headers["x-synqra-route"] == "claude-sonnet"


def test_messages_create_local_llama(anthropic_client, fresh_providers) -> None:
    msg = anthropic_client.messages.create(
        model="local-llama", max_tokens=24, messages=[{"role": "user", "content": "What is 2 + 2?"}]
    )
    assert msg.content[0].text.strip()
    assert msg.usage.output_tokens > 0
    assert not any(p.requests for p in fresh_providers.values()), "a local answer costs no cloud call"


def test_messages_stream_claude(anthropic_client, fresh_providers) -> None:
    with anthropic_client.messages.stream(
        model="claude-sonnet", max_tokens=32, messages=[{"role": "user", "content": "Stream a greeting"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.strip() == fresh_providers["anthropic"].default_text
    assert final.usage.output_tokens > 0


def test_messages_stream_local_llama(anthropic_client) -> None:
    with anthropic_client.messages.stream(
        model="local-llama",
        max_tokens=24,
        system="You answer briefly.",
        messages=[{"role": "user", "content": "Name a fruit."}],
    ) as stream:
        text = "".join(stream.text_stream)
    assert text.strip()


def test_a_system_turn_inside_messages_is_answered(anthropic_client, fresh_providers) -> None:
    # Claude Code 2.1 sends its environment notes as a {"role": "system"} turn after the user's.
    messages = [
        {"role": "user", "content": "Say hello"},
        {"role": "system", "content": [{"type": "text", "text": "Answer in one short sentence."}]},
    ]
    for model in ("claude-sonnet", "local-llama"):
        msg = anthropic_client.messages.create(model=model, max_tokens=16, messages=messages)  # type: ignore[arg-type]
        assert msg.content[0].text.strip(), model
    sent = fresh_providers["anthropic"].requests[0].body["messages"]
    assert [m["role"] for m in sent][0] == "user" and "Answer in one short sentence." in str(sent)
