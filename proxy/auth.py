"""API-key check for the LLM routes (LiteLLM `general_settings.custom_auth`).

synqra runs LiteLLM without its Postgres database, so there are no virtual keys:
the master key is the key. LiteLLM's own check then tries a database lookup for
any other key and answers "No connected db" (400) or crashes (500) for a missing
key; this gives a plain 401 instead, with the key compared in constant time.
"""

from __future__ import annotations

from fastapi import Request
from litellm.proxy._types import LitellmUserRoles, ProxyException, UserAPIKeyAuth

from proxy.master_key import bearer_token, is_master_key
from proxy.runtime import get_runtime


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    key = bearer_token(api_key)
    if not key:
        raise ProxyException(
            message="missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'",
            type="authentication_error",
            param="api_key",
            code=401,
        )
    if not is_master_key(key, get_runtime().master_key):
        raise ProxyException(message="invalid API key", type="authentication_error", param="api_key", code=401)
    return UserAPIKeyAuth(api_key=key, user_role=LitellmUserRoles.PROXY_ADMIN)
