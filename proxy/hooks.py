"""synqra's LiteLLM hooks: the seam where request -> route -> budget -> call -> validate -> account runs.

Registered in litellm_config.yaml (`litellm_settings.callbacks: proxy.hooks.synqra_hooks`).
LiteLLM checks `type(cb).__dict__` for some hook names, so every hook is defined
on this class itself. The class only sequences the policies; decisions live in
`policies/` and state in `proxy.runtime`.
"""
from __future__ import annotations

import logging
from typing import Any

from fastapi import HTTPException
from litellm.integrations.custom_logger import CustomLogger

from proxy.request_checks import check_context_window, check_max_tokens, check_messages
from proxy.request_state import request_state
from proxy.runtime import get_runtime

log = logging.getLogger("synqra.hooks")

CHAT_CALL_TYPES = {"acompletion", "completion", "anthropic_messages"}


def _bad_request(message: str) -> HTTPException:
    return HTTPException(status_code=400, detail={"error": message})


class SynqraHooks(CustomLogger):
    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict, call_type: str) -> dict:
        cfg = get_runtime().config
        state = request_state(data)
        if call_type not in CHAT_CALL_TYPES:
            return data
        for problem in (check_messages(data), check_max_tokens(data)):
            if problem:
                raise _bad_request(problem)
        requested = str(data.get("model", ""))
        state["requested_model"] = requested
        if requested == cfg.synqra.routing.virtual_model:
            # Placeholder rule until the learned router lands: the cheapest tier.
            data["model"] = cfg.synqra.routing.tiers[0]
        state["route"] = data["model"]
        entry = cfg.model(str(data["model"]))
        if entry is not None:
            problem = check_context_window(data, entry.model_name, entry.model_info.get("max_input_tokens"))
            if problem:
                raise _bad_request(problem)
        return data

    async def async_post_call_response_headers_hook(
        self,
        data: dict,
        user_api_key_dict: Any,
        response: object,
        request_headers: dict[str, str] | None = None,
        litellm_call_info: dict[str, object] | None = None,
    ) -> dict[str, str] | None:
        state = request_state(data)
        headers = {"x-synqra-request-id": state["request_id"]}
        if "route" in state:
            headers["x-synqra-route"] = state["route"]
        return headers

    async def async_post_call_streaming_iterator_hook(self, user_api_key_dict: Any, response: Any, request_data: dict):
        async for item in response:
            yield item


synqra_hooks = SynqraHooks()
