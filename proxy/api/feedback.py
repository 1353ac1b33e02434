"""`POST /api/feedback` (master key): the application says how good an answer was; the router learns from it.

    {"request_id": "synqra-...", "score": 0.0-1.0 | "good" | "bad", "comment": "optional"}

The request id is the `x-synqra-request-id` header of the answer. Feedback on an answer the local model served
becomes a label for the inference log (`feedback`, 1 - score: 1 means the local answer was not good enough);
feedback on an answer a paid tier served is acknowledged and says nothing about the local tier. Unknown id:
404; a bad body or score: 400; both in the /api error format.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Depends, Request

from policies.common.request_checks import parse_body
from policies.learning.labels import label_from_feedback
from policies.learning.writer import FLUSH_INTERVAL_S, InferenceLogWriter
from proxy.api.auth import require_master_key
from proxy.api.errors import api_error
from proxy.runtime import get_runtime

# How long a request's row may take to appear when another worker served it: a few of its writer's flush intervals.
OTHER_WORKER_WAIT_S = 5 * FLUSH_INTERVAL_S
# A note for whoever reads the label, not a document: the inference log keeps it with every copy of the row.
MAX_COMMENT_CHARS = 4000

router = APIRouter(tags=["learning"], dependencies=[Depends(require_master_key)])


async def _finished_row(writer: InferenceLogWriter, request_id: str) -> dict[str, Any] | None:
    """The request's row once its outcome (the tier that served) is in, or as it is after OTHER_WORKER_WAIT_S.

    This worker's writer is flushed; a request another worker served a moment ago is written by that worker's
    writer within its flush interval, so the row (or its outcome) is waited for rather than answered 404 or read
    as served by the tier chosen (in shadow mode, not the tier that answered)."""
    await asyncio.to_thread(writer.flush, 2.0)
    deadline = time.monotonic() + OTHER_WORKER_WAIT_S
    while True:
        row = await asyncio.to_thread(writer.store.row, request_id)
        if (row is not None and row.get("done_ts") is not None) or time.monotonic() >= deadline:
            return row
        await asyncio.sleep(0.05)


@router.post("/api/feedback")
async def feedback(request: Request) -> Any:
    # As the model routes read a body: no lone surrogate (the inference log cannot store one: a comment holding one
    # failed its writer's whole batch, other requests' rows with it; an id holding one was a 500), no number past a
    # float's range (a score of 10**400 was a 500).
    body, problem = parse_body(await request.body())
    if problem is not None:
        raise api_error(400, problem)
    if not isinstance(body, dict):  # no field to name
        raise api_error(400, 'the body must be a JSON object {"request_id", "score", "comment"?}')
    if not isinstance(body.get("request_id"), str) or "score" not in body:
        param = "request_id" if not isinstance(body.get("request_id"), str) else "score"
        raise api_error(
            400, "'request_id' (a string) and 'score' (0 to 1, \"good\" or \"bad\") are required", param=param
        )
    comment = body.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT_CHARS):
        raise api_error(400, f"'comment' must be a string of at most {MAX_COMMENT_CHARS:,} characters", param="comment")
    loop = get_runtime().learning
    writer = loop.writer
    if writer is None:
        raise api_error(409, f"{_why_no_log(loop)}: feedback is not kept", "conflict")
    row = await _finished_row(writer, body["request_id"])
    if row is None:
        raise api_error(
            404,
            f"no routed request with id {body['request_id']!r} in the inference log",
            "not_found_error",
            "request_id",
        )
    local = get_runtime().config.synqra.backends.llama.model_alias
    # No outcome logged (the request failed): which tier answered is unknown, and the tier chosen is no answer (in
    # shadow mode it never answers).
    served = row.get("tier_served") if row.get("done_ts") is not None else None
    try:
        value = label_from_feedback(body["score"], served_locally=served == local)
    except ValueError as e:
        raise api_error(400, str(e), param="score") from None
    # The comment is the application's text: kept only with synqra.learning.keep_text (it was kept regardless).
    keep = loop.settings.keep_text
    recorded = value is not None and loop.label(body["request_id"], "feedback", value, comment if keep else None)
    out = {"request_id": body["request_id"], "served_by": served, "label": value, "recorded": recorded}
    if comment is not None and not keep:
        out["comment_kept"] = False
    return out


def _why_no_log(loop: Any) -> str:
    """Why this worker writes no inference log: learning off, the log could not be opened, or the router it learns
    for did not load (the 409 said `learning.enabled: false` in every case)."""
    if not loop.settings.enabled:
        return "the inference log is off (synqra.learning.enabled: false)"
    if loop.log_problem is not None:
        return f"the inference log could not be opened ({loop.log_problem}); see the proxy's log"
    return "the inference log is not written: the router's learned scorer did not load (it routes by its fallback rule)"
