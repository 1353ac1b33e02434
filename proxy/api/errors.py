"""The /api routes' error: FastAPI's HTTPException body `{"detail": {"error": {"message", "type", "param"}}}`, the
format the README documents for every /api route (the master-key 401 included)."""

from __future__ import annotations

from fastapi import HTTPException


def api_error(
    status: int, message: str, kind: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> HTTPException:
    """`code`: added to the error when given (POST /api/agents answers with one, as a chat completion's error has)."""
    error: dict[str, str | None] = {"message": message, "type": kind, "param": param}
    if code is not None:
        error["code"] = code
    return HTTPException(status_code=status, detail={"error": error})
