"""A thin OpenAI-compatible server around one llama-cpp-python model (local_backends/llama_engine.py).

Why our own instead of `llama_cpp.server`: base GGUFs (the embedded Gemma 270M)
have no chat template, and llama_cpp.server then returns empty strings; the
engine frames chat for them. Serves `POST /v1/chat/completions`, `POST /v1/completions`
(a raw prompt, as LlamaIndex and other completion clients send) and
`POST /extras/tokenize` (token counts for /v1/messages/count_tokens). What a request
asks that the model cannot honour is a 400 naming the parameter (llama_params.py).

One model, one generation at a time (a llama.cpp context is not thread-safe);
requests queue on a lock while /health stays responsive.

Run: python -m local_backends.llama_server --config litellm_config.yaml
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from local_backends.llama_engine import LlamaEngine
from local_backends.llama_params import ParamError, chat_generation, text_generation
from local_backends.serve import serve_backend
from policies.common.request_checks import check_max_tokens, check_messages
from policies.common.settings import LlamaBackendSettings

log = logging.getLogger("synqra.llama")


def _error(status: int, message: str, param: str | None = None) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}},
    )


def _validate_chat_body(body: dict[str, Any]) -> str | None:
    """The same checks the proxy applies, for callers that reach this backend directly."""
    return check_messages(body) or check_max_tokens(body)


def _prompts(prompt: Any, detokenize: Callable[[list[int]], str]) -> list[str]:
    """OpenAI's four prompt shapes: a string, strings, token ids (this model's), lists of token ids."""

    def is_ids(x: Any) -> bool:
        return isinstance(x, list) and bool(x) and all(isinstance(i, int) and not isinstance(i, bool) for i in x)

    if isinstance(prompt, str):
        return [prompt]
    if is_ids(prompt):
        return [detokenize(prompt)]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return list(prompt)
    if isinstance(prompt, list) and prompt and all(is_ids(p) for p in prompt):
        return [detokenize(p) for p in prompt]
    raise ParamError("'prompt' must be a string, a list of strings, or token ids", "prompt")


def create_app(settings: LlamaBackendSettings) -> FastAPI:
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state["engine"] = await asyncio.to_thread(LlamaEngine, settings)
        yield

    app = FastAPI(title="synqra llama.cpp backend", lifespan=lifespan)

    def engine() -> LlamaEngine:
        return state["engine"]

    @app.get("/health")
    async def health() -> dict[str, Any]:
        e = engine()
        return {
            "status": "ok",
            "model": settings.model_alias,
            "model_path": str(e.model_path),
            "prompt_format": "chat_template" if e.use_chat_template else "completion",
            "busy": e.lock.locked(),
        }

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": settings.model_alias, "object": "model", "owned_by": "synqra"}]}

    async def read(request: Request) -> dict[str, Any] | JSONResponse:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "request body is not valid JSON")
        if not isinstance(body, dict):
            return _error(400, "request body must be a JSON object")
        return body

    async def generate(
        body: dict[str, Any], once: Callable[[], dict[str, Any]], chunks: Callable[[], Iterator[dict[str, Any]]]
    ) -> Any:
        try:
            if not body.get("stream"):
                return JSONResponse(await asyncio.to_thread(once))
        except ValueError as exc:  # e.g. prompt longer than the context window, a schema the grammar cannot express
            return _error(400, str(exc))
        return StreamingResponse(_sse(chunks()), media_type="text/event-stream")

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await read(request)
        if not isinstance(body, dict):
            return body
        problem = _validate_chat_body(body)
        if problem:
            return _error(400, problem)
        try:
            g = chat_generation(body, settings.default_max_tokens)
        except ParamError as exc:
            return _error(400, str(exc), exc.param)
        e = engine()
        return await generate(body, lambda: e.chat(body, g), lambda: e.chat_stream(body, g))

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        body = await read(request)
        if not isinstance(body, dict):
            return body
        e = engine()
        try:
            g = text_generation(body, settings.default_max_tokens)
            prompts = _prompts(body.get("prompt"), e.detokenize)
        except ParamError as exc:
            return _error(400, str(exc), exc.param)
        except ValueError as exc:
            return _error(400, str(exc), "prompt")
        echo = bool(body.get("echo"))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return await generate(
            body, lambda: e.text(prompts, g, echo), lambda: e.text_stream(prompts, g, echo, include_usage)
        )

    @app.post("/extras/tokenize")
    async def tokenize(request: Request) -> Any:
        body = await read(request)
        if not isinstance(body, dict):
            return body
        text = body.get("input")
        if not isinstance(text, str):
            return _error(400, "'input' must be a string", "input")
        return {"count": engine().count_tokens(text)}

    return app


async def _sse(chunks: Iterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    """Drive a blocking generator in a thread and relay it as server-sent events."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    done = object()

    def pump() -> None:
        try:
            for c in chunks:
                loop.call_soon_threadsafe(queue.put_nowait, c)
        except Exception as exc:  # surfaced to the client as an SSE error event
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, done)

    threading.Thread(target=pump, daemon=True).start()
    while True:
        item = await queue.get()
        if item is done:
            break
        if isinstance(item, Exception):
            yield f"data: {json.dumps({'error': {'message': str(item), 'type': 'server_error'}})}\n\n".encode()
            break
        yield f"data: {json.dumps(item)}\n\n".encode()
    yield b"data: [DONE]\n\n"


def main(argv: list[str] | None = None) -> None:
    serve_backend(argv, __doc__, lambda cfg: cfg.synqra.backends.llama, create_app)


if __name__ == "__main__":
    main()
