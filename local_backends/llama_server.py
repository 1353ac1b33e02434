"""A thin OpenAI-compatible server around one llama-cpp-python model.

Why our own instead of `llama_cpp.server`: base GGUFs (the embedded Gemma 270M)
have no chat template, and llama_cpp.server then returns empty strings. Here a
per-model prompt format turns chat into a completion prompt; instruct GGUFs keep
their own template. Token log-probabilities come back in the same generation call
(OpenAI `logprobs`), which the quality validator uses without a second pass.

One model, one generation at a time (a llama.cpp context is not thread-safe);
requests queue on a lock while /health stays responsive.

Run: python -m local_backends.llama_server --config litellm_config.yaml
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from local_backends.logprobs import TokenLogprobRecorder
from local_backends.model_files import resolve_gguf
from local_backends.prompt_format import build_completion_prompt
from proxy.request_checks import check_max_tokens, check_messages
from proxy.settings import LOG_FORMAT, LlamaBackendSettings, load_config

log = logging.getLogger("synqra.llama")


def _error(status: int, message: str, param: str | None = None) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}},
    )


class LlamaEngine:
    """Owns the Llama object and serialises generations on it."""

    def __init__(self, settings: LlamaBackendSettings) -> None:
        from llama_cpp import Llama  # imported here: heavy, and only the backend process needs it

        self.settings = settings
        self.model_path = resolve_gguf(settings.model_path)
        self.llm = Llama(
            model_path=str(self.model_path),
            n_ctx=settings.n_ctx,
            n_threads=settings.n_threads,
            n_threads_batch=settings.n_threads,
            n_batch=settings.n_batch,
            logits_all=False,
            verbose=False,
        )
        has_template = bool(self.llm.metadata.get("tokenizer.chat_template"))
        fmt = settings.prompt_format
        self.use_chat_template = fmt == "chat_template" or (fmt == "auto" and has_template)
        self.lock = threading.Lock()
        self.loaded_at = time.time()
        log.info(
            "loaded %s (chat template: %s, prompt format: %s)",
            self.model_path,
            has_template,
            "chat_template" if self.use_chat_template else "completion",
        )

    def _gen_kwargs(self, body: dict[str, Any]) -> dict[str, Any]:
        s = self.settings
        stop = body.get("stop") or []
        if isinstance(stop, str):
            stop = [stop]
        kw: dict[str, Any] = {
            "max_tokens": body.get("max_tokens") or body.get("max_completion_tokens") or s.default_max_tokens,
            "temperature": float(body.get("temperature", 0.2) if body.get("temperature") is not None else 0.2),
            "top_p": float(body.get("top_p") if body.get("top_p") is not None else 0.95),
            "repeat_penalty": s.repeat_penalty,
            "stop": list(stop),
        }
        if body.get("seed") is not None:
            kw["seed"] = int(body["seed"])
        return kw

    def _completion_args(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        kw = self._gen_kwargs(body)
        kw["stop"] = kw["stop"] + self.settings.completion.stop
        return build_completion_prompt(body["messages"], self.settings.completion), kw

    def _recorder(self, body: dict[str, Any], kw: dict[str, Any]) -> TokenLogprobRecorder | None:
        """Log-probabilities in the same generation call, without logits_all (see local_backends/logprobs.py)."""
        if not body.get("logprobs"):
            return None
        from llama_cpp import LogitsProcessorList

        rec = TokenLogprobRecorder()
        kw["logits_processor"] = LogitsProcessorList([rec])
        return rec

    def _logprob_items(self, values: list[float], n_prompt: int) -> dict[str, Any] | None:
        """OpenAI chat `logprobs.content` for the generated tokens (the last len(values) tokens)."""
        ids = list(self.llm.input_ids[n_prompt : self.llm.n_tokens])
        items = []
        for tid, lp in zip(ids[: len(values)], values):
            tok = self.llm.detokenize([int(tid)]).decode("utf-8", "replace")
            items.append({"token": tok, "logprob": lp, "bytes": list(tok.encode()), "top_logprobs": []})
        return {"content": items} if items else None

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """Non-streamed chat completion in OpenAI's response shape."""
        with self.lock:
            if self.use_chat_template:
                kw = self._gen_kwargs(body)
                rec = self._recorder(body, kw)
                out = self.llm.create_chat_completion(messages=body["messages"], **kw)
                out["model"] = self.settings.model_alias
                if rec is not None:
                    values = rec.finish(self.llm.input_ids[: self.llm.n_tokens])
                    out["choices"][0]["logprobs"] = self._logprob_items(values, self.llm.n_tokens - len(values))
                return out
            prompt, kw = self._completion_args(body)
            rec = self._recorder(body, kw)
            out = self.llm.create_completion(prompt=prompt, **kw)
            logprobs = None
            if rec is not None:
                values = rec.finish(self.llm.input_ids[: self.llm.n_tokens])
                logprobs = self._logprob_items(values, out["usage"]["prompt_tokens"])
        choice = out["choices"][0]
        result: dict[str, Any] = {
            "id": "chatcmpl-" + uuid.uuid4().hex,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.settings.model_alias,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": choice["text"].strip()},
                    "finish_reason": choice.get("finish_reason") or "stop",
                    "logprobs": logprobs,
                }
            ],
            "usage": out["usage"],
        }
        return result

    def stream(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Streamed chat completion chunks (run in a worker thread)."""
        cid = "chatcmpl-" + uuid.uuid4().hex
        created = int(time.time())
        alias = self.settings.model_alias
        with self.lock:
            if self.use_chat_template:
                kw = self._gen_kwargs(body)
                rec = self._recorder(body, kw)
                for chunk in self.llm.create_chat_completion(messages=body["messages"], stream=True, **kw):
                    chunk["model"] = alias
                    if rec is not None and chunk["choices"] and chunk["choices"][0].get("finish_reason"):
                        values = rec.finish(self.llm.input_ids[: self.llm.n_tokens])
                        chunk["choices"][0]["logprobs"] = self._logprob_items(values, self.llm.n_tokens - len(values))
                    yield chunk
                return
            prompt, kw = self._completion_args(body)
            rec = self._recorder(body, kw)
            n_prompt = len(self.llm.tokenize(prompt.encode(), add_bos=True, special=True))
            yield _chunk(cid, created, alias, {"role": "assistant", "content": ""}, None)
            n_out, finish, started = 0, "stop", False
            for part in self.llm.create_completion(prompt=prompt, stream=True, **kw):
                c = part["choices"][0]
                text = c.get("text") or ""
                if not started:
                    # The model writes a space after "Answer:"; the non-streamed path strips it too.
                    text = text.lstrip()
                    started = bool(text)
                n_out += 1
                finish = c.get("finish_reason") or finish
                if text:
                    yield _chunk(cid, created, alias, {"content": text}, None)
            # The token log-probabilities of the whole answer ride on the final chunk.
            logprobs = None
            if rec is not None:
                values = rec.finish(self.llm.input_ids[: self.llm.n_tokens])
                logprobs = self._logprob_items(values, n_prompt)
            final = _chunk(cid, created, alias, {}, finish, logprobs)
            if body.get("stream_options", {}) and body["stream_options"].get("include_usage"):
                final["usage"] = {"prompt_tokens": n_prompt, "completion_tokens": n_out, "total_tokens": n_prompt + n_out}
            yield final


def _chunk(
    cid: str, created: int, model: str, delta: dict[str, Any], finish: str | None, logprobs: Any = None
) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": logprobs}],
    }


def _validate_chat_body(body: Any) -> str | None:
    """The same checks the proxy applies, for callers that reach this backend directly."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    return check_messages(body) or check_max_tokens(body)


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

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "request body is not valid JSON")
        problem = _validate_chat_body(body)
        if problem:
            return _error(400, problem)
        e = engine()
        try:
            if not body.get("stream"):
                return JSONResponse(await asyncio.to_thread(e.complete, body))
        except ValueError as exc:  # e.g. prompt longer than the context window
            return _error(400, str(exc))
        return StreamingResponse(_sse(e.stream(body)), media_type="text/event-stream")

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
    import uvicorn

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", required=True)
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    s = cfg.synqra.backends.llama
    logging.basicConfig(level=cfg.synqra.server.log_level, format=LOG_FORMAT)
    uvicorn.run(create_app(s), host=s.host, port=s.port, log_level="warning", timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
