from __future__ import annotations

from proxy.error_format import to_anthropic_error


def test_openai_error_becomes_anthropic() -> None:
    body = {"error": {"message": "invalid API key", "type": "authentication_error", "param": None, "code": "401"}}
    assert to_anthropic_error(401, body) == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid API key"},
    }
    assert to_anthropic_error(429, body)["error"]["type"] == "rate_limit_error"
    assert to_anthropic_error(502, body)["error"]["type"] == "api_error"


def test_already_anthropic_or_foreign_bodies_untouched() -> None:
    assert to_anthropic_error(400, {"type": "error", "error": {"type": "x", "message": "m"}}) is None
    assert to_anthropic_error(400, {"detail": "x"}) is None
    assert to_anthropic_error(400, ["x"]) is None


def test_the_api_error_body_with_and_without_a_code() -> None:
    """The /api routes' one error builder (POST /api/agents adds a `code`, as its 400s always had)."""
    from proxy.api.errors import api_error

    plain = api_error(404, "no such thing")
    assert plain.status_code == 404
    assert plain.detail == {"error": {"message": "no such thing", "type": "invalid_request_error", "param": None}}
    coded = api_error(400, "message: Field required", param="message", code="400")
    assert coded.detail == {
        "error": {
            "message": "message: Field required",
            "type": "invalid_request_error",
            "param": "message",
            "code": "400",
        }
    }
