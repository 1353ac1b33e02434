"""The /api routes' error: FastAPI's HTTPException body `{"detail": {"error": {"message", "type", "param"}}}`, the
format the README documents for every /api route (the master-key 401 included)."""

from __future__ import annotations

from fastapi import HTTPException


def api_error(
    status: int, message: str, kind: str = "invalid_request_error", param: str | None = None
) -> HTTPException:
    return HTTPException(status_code=status, detail={"error": {"message": message, "type": kind, "param": param}})
