"""OpenAI-compatible `POST /v1/embeddings` on sentence-transformers.

Concurrent requests are gathered into one forward pass (see `Batcher`): one
sentence per request is the common case, and a batch of 32 costs far less than
32 single encodes on CPU. Token counts for `usage` come from the same
tokenisation the model runs, so they cost nothing extra.

Run: python -m local_backends.embedding_server --config litellm_config.yaml
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from local_backends import token_ids
from local_backends.serve import serve_backend
from policies.common.settings import EmbedBackendSettings
from policies.embedding.encoder import Encoder

log = logging.getLogger("synqra.embed")


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future[tuple[np.ndarray, list[int]]] = field(repr=False)


class Batcher:
    """Collects jobs for up to `wait_ms` (or `max_batch` texts) and encodes them together.

    One worker thread runs the model, so the event loop keeps accepting requests
    (and filling the next batch) while a batch computes.
    """

    def __init__(self, encoder: Encoder, max_batch: int, wait_ms: float) -> None:
        self.encoder = encoder
        self.max_batch = max_batch
        self.wait_s = wait_ms / 1000.0
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._last_batch_jobs = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()

    async def submit(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        fut: asyncio.Future[tuple[np.ndarray, list[int]]] = asyncio.get_running_loop().create_future()
        await self.queue.put(_Job(texts, fut))
        return await fut

    async def _encode(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        """At most max_batch texts per forward pass: one request may bring thousands (OpenAI takes 2,048, LangChain
        sends 1,000), and a single pass over them all grew the server by ~4.4 MB per 256-token text."""
        parts, counts = [], []
        for i in range(0, len(texts), self.max_batch):
            vecs, n = await asyncio.to_thread(self.encoder.encode, texts[i : i + self.max_batch])
            parts.append(vecs)
            counts += n
        return np.concatenate(parts), counts

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            n = len(jobs[0].texts)
            # Wait for company only under concurrent traffic: a lone request (the router's and the
            # quality gate's usual case) is encoded at once instead of paying the batching window.
            concurrent = not self.queue.empty() or self._last_batch_jobs > 1
            deadline = loop.time() + (self.wait_s if concurrent else 0.0)
            while n < self.max_batch:
                try:
                    job = self.queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        job = await asyncio.wait_for(self.queue.get(), remaining)
                    except TimeoutError:
                        break
                jobs.append(job)
                n += len(job.texts)
            texts = [t for j in jobs for t in j.texts]
            self._last_batch_jobs = len(jobs)
            try:
                vecs, counts = await self._encode(texts)
            except Exception as exc:  # one bad batch must not kill the worker
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(exc)
                continue
            i = 0
            for j in jobs:
                k = len(j.texts)
                if not j.future.done():
                    j.future.set_result((vecs[i : i + k], counts[i : i + k]))
                i += k


# OpenAI's embeddings API takes at most this many inputs in one request.
MAX_INPUTS = 2048


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status, media_type="application/json"
    )


def _error(status: int, message: str, param: str | None = None) -> Response:
    return _json({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}}, status)


def _is_ids(x: Any) -> TypeGuard[list[int]]:
    return isinstance(x, list) and bool(x) and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in x)


class InputError(ValueError):
    """A request this server cannot embed; `param` names the field."""

    def __init__(self, message: str, param: str = "input") -> None:
        super().__init__(message)
        self.param = param


def parse_embedding_request(body: Any) -> tuple[list[str], str]:
    """(texts, encoding_format) of a request; raises InputError naming the bad field.

    `input` takes OpenAI's four shapes: a string, strings, token ids, or lists of token ids (read as
    cl100k_base tokens, local_backends/token_ids.py)."""
    if not isinstance(body, dict):
        raise InputError("request body must be a JSON object")
    raw = body.get("input")
    if isinstance(raw, str):
        texts = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(t, str) for t in raw):
        texts = raw
    elif _is_ids(raw):
        texts = [token_ids.decode(raw)]
    elif isinstance(raw, list) and raw and all(_is_ids(t) for t in raw):
        texts = [token_ids.decode(t) for t in raw]
    else:
        raise InputError("'input' must be a non-empty string, list of strings, token ids or lists of token ids")
    if len(texts) > MAX_INPUTS:
        raise InputError(f"'input' may hold at most {MAX_INPUTS} items (OpenAI's limit), got {len(texts)}")
    if any(not t for t in texts):
        raise InputError("'input' must not contain empty strings")
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise InputError("'encoding_format' must be 'float' or 'base64'", "encoding_format")
    return texts, fmt


def create_app(settings: EmbedBackendSettings, encoder: Encoder | None = None) -> Starlette:
    state: dict[str, Any] = {}

    async def startup() -> None:
        enc = (
            encoder
            if encoder is not None
            else await asyncio.to_thread(Encoder, settings.model_path, settings.n_threads)
        )
        state["encoder"] = enc
        state["batcher"] = Batcher(enc, settings.max_batch, settings.batch_wait_ms)
        state["batcher"].start()
        log.info("embedding model %s loaded (%d dimensions)", enc.path, enc.dim)

    async def shutdown() -> None:
        if "batcher" in state:
            await state["batcher"].stop()

    async def health(_: Request) -> Response:
        enc: Encoder = state["encoder"]
        return _json(
            {"status": "ok", "model": settings.model_alias, "model_path": str(enc.path), "dimensions": enc.dim}
        )

    async def models(_: Request) -> Response:
        return _json(
            {"object": "list", "data": [{"id": settings.model_alias, "object": "model", "owned_by": "synqra"}]}
        )

    async def embeddings(request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _error(400, "request body is not valid JSON")
        try:
            texts, fmt = parse_embedding_request(body)
        except InputError as e:
            return _error(400, str(e), e.param)
        except ValueError as e:  # token ids outside the vocabulary
            return _error(400, str(e), "input")
        dims = body.get("dimensions")
        enc: Encoder = state["encoder"]
        if dims is not None and dims != enc.dim:  # never a silent 384 for a 128 asked
            return _error(400, f"'dimensions' must be {enc.dim} (this model's only size), got {dims!r}", "dimensions")
        vecs, counts = await state["batcher"].submit(texts)
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(v.astype(np.float32).tobytes()).decode() if fmt == "base64" else v,
            }
            for i, v in enumerate(vecs)
        ]
        n = sum(counts)
        return _json(
            {
                "object": "list",
                "data": data,
                "model": body.get("model") or settings.model_alias,
                "usage": {"prompt_tokens": n, "total_tokens": n},
            }
        )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await startup()
        yield
        await shutdown()

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/v1/models", models),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/embeddings", embeddings, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


def main(argv: list[str] | None = None) -> None:
    serve_backend(argv, __doc__, lambda cfg: cfg.synqra.backends.embed, create_app)


if __name__ == "__main__":
    main()
