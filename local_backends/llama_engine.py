"""One llama-cpp-python model, generating OpenAI chat and text completions one at a time.

Base GGUFs (the embedded Gemma 270M) have no chat template: a per-model prompt format turns chat into a
completion prompt; instruct GGUFs keep their own template. Token log-probabilities (and the top ones, when
asked) come from the same generation call (local_backends/logprobs.py), which the quality validator uses.
JSON output is enforced by a llama.cpp grammar built from the requested schema. `n` answers are generated
one after another. A llama.cpp context is not thread-safe: every generation holds `lock`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

from local_backends.llama_params import Generation
from local_backends.logprobs import TokenLogprobRecorder
from local_backends.prompt_format import build_completion_prompt
from policies.common.model_files import resolve_gguf
from policies.common.settings import LlamaBackendSettings

if TYPE_CHECKING:
    from llama_cpp.llama_types import (
        ChatCompletionRequestMessage,
        CompletionUsage,
        CreateChatCompletionResponse,
        CreateChatCompletionStreamResponse,
        CreateCompletionResponse,
    )

log = logging.getLogger("synqra.llama")


class LlamaEngine:
    """Owns the Llama object and serialises generations on it."""

    def __init__(self, settings: LlamaBackendSettings) -> None:
        from llama_cpp import (
            Llama,  # imported here: heavy, and only the backend process needs it
        )

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
        log.info(
            "loaded %s (chat template: %s, prompt format: %s)",
            self.model_path,
            has_template,
            "chat_template" if self.use_chat_template else "completion",
        )

    # --- generation settings -------------------------------------------------------------

    def _kwargs(self, g: Generation, seed_offset: int = 0) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "max_tokens": g.max_tokens,
            "temperature": g.temperature,
            "top_p": g.top_p,
            "repeat_penalty": self.settings.repeat_penalty,
            "presence_penalty": g.presence_penalty,
            "frequency_penalty": g.frequency_penalty,
            "stop": list(g.stop),
        }
        if g.seed is not None:
            kw["seed"] = g.seed + seed_offset  # n answers from one seed would all be the same
        if g.json_schema is not None:
            kw["grammar"] = self._grammar(g.json_schema)
        return kw

    @staticmethod
    def _grammar(schema: dict[str, Any]) -> Any:
        from llama_cpp import LlamaGrammar
        from llama_cpp.llama_grammar import JSON_GBNF

        if not schema:
            return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
        try:
            return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        except Exception as e:  # a schema llama.cpp's converter cannot express
            raise ValueError(f"'response_format' schema cannot be enforced by the local model: {e}") from e

    def _recorder(self, g: Generation, kw: dict[str, Any]) -> TokenLogprobRecorder | None:
        """Log-probabilities in the same generation call, without logits_all (see local_backends/logprobs.py)."""
        if not g.logprobs:
            return None
        from llama_cpp import LogitsProcessorList

        rec = TokenLogprobRecorder(top_k=g.top_logprobs)
        kw["logits_processor"] = LogitsProcessorList([rec])
        return rec

    def _piece(self, token_id: int) -> str:
        return self.llm.detokenize([int(token_id)]).decode("utf-8", "replace")

    def _answer_tokens(self, rec: TokenLogprobRecorder) -> tuple[list[int], list[float], list[list[tuple[int, float]]]]:
        """(ids, logprobs, top alternatives) of the answer just generated (the last recorded tokens)."""
        values = rec.finish(self.llm.input_ids[: self.llm.n_tokens])
        ids = [int(t) for t in self.llm.input_ids[self.llm.n_tokens - len(values) : self.llm.n_tokens]]
        return ids, values, rec.top

    def _chat_logprobs(self, rec: TokenLogprobRecorder | None) -> dict[str, Any] | None:
        """OpenAI chat `logprobs.content` for the generated tokens."""
        if rec is None:
            return None
        ids, values, top = self._answer_tokens(rec)
        items = []
        for i, (tid, lp) in enumerate(zip(ids, values)):
            tok = self._piece(tid)
            alts = [
                {"token": (t := self._piece(a)), "logprob": alp, "bytes": list(t.encode())}
                for a, alp in (top[i] if i < len(top) else [])
            ]
            items.append({"token": tok, "logprob": lp, "bytes": list(tok.encode()), "top_logprobs": alts})
        return {"content": items} if items else None

    def _text_logprobs(self, rec: TokenLogprobRecorder | None) -> dict[str, Any] | None:
        """OpenAI completions `logprobs`: tokens, token_logprobs, top_logprobs, text_offset."""
        if rec is None:
            return None
        ids, values, top = self._answer_tokens(rec)
        tokens = [self._piece(t) for t in ids]
        offsets, pos = [], 0
        for tok in tokens:
            offsets.append(pos)
            pos += len(tok)
        tops = [{self._piece(a): alp for a, alp in alts} for alts in top[: len(ids)]] if top else None
        return {"tokens": tokens, "token_logprobs": values, "top_logprobs": tops, "text_offset": offsets}

    # --- llama-cpp-python calls --------------------------------------------------------------
    # It types each call as "a response or a stream of chunks" whatever `stream` asks for: these name the one
    # the call returns. The messages are the client's OpenAI-shaped dicts, as llama-cpp-python reads them.

    def _chat_response(self, messages: list[dict[str, Any]], **kw: Any) -> CreateChatCompletionResponse:
        out = self.llm.create_chat_completion(messages=cast("list[ChatCompletionRequestMessage]", messages), **kw)
        return cast("CreateChatCompletionResponse", out)

    def _chat_chunks(self, messages: list[dict[str, Any]], **kw: Any) -> Iterator[CreateChatCompletionStreamResponse]:
        out = self.llm.create_chat_completion(
            messages=cast("list[ChatCompletionRequestMessage]", messages), stream=True, **kw
        )
        return cast("Iterator[CreateChatCompletionStreamResponse]", out)

    def _completion(self, prompt: str, **kw: Any) -> CreateCompletionResponse:
        return cast("CreateCompletionResponse", self.llm.create_completion(prompt=prompt, **kw))

    def _completion_chunks(self, prompt: str, **kw: Any) -> Iterator[CreateCompletionResponse]:
        return cast("Iterator[CreateCompletionResponse]", self.llm.create_completion(prompt=prompt, stream=True, **kw))

    # --- chat ------------------------------------------------------------------------------

    def _chat_one(
        self, messages: list[dict[str, Any]], g: Generation, i: int
    ) -> tuple[str, str, dict[str, Any] | None, CompletionUsage]:
        """(text, finish reason, logprobs, usage) of one chat answer. Holds the lock."""
        kw = self._kwargs(g, i)
        rec = self._recorder(g, kw)
        finish: str | None
        if self.use_chat_template:
            out = self._chat_response(messages, **kw)
            choice = out["choices"][0]
            text, finish, usage = choice["message"].get("content") or "", choice.get("finish_reason"), out["usage"]
        else:
            kw["stop"] = kw["stop"] + self.settings.completion.stop
            done = self._completion(build_completion_prompt(messages, self.settings.completion), **kw)
            c = done["choices"][0]
            text, finish, usage = c["text"].strip(), c.get("finish_reason"), done["usage"]
        return text, finish or "stop", self._chat_logprobs(rec), usage

    def chat(self, body: dict[str, Any], g: Generation) -> dict[str, Any]:
        """Non-streamed chat completion in OpenAI's response shape, with `g.n` choices."""
        choices, prompt_tokens, completion_tokens = [], 0, 0
        with self.lock:
            for i in range(g.n):
                text, finish, logprobs, usage = self._chat_one(body["messages"], g, i)
                choices.append(
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": finish,
                        "logprobs": logprobs,
                    }
                )
                prompt_tokens = usage["prompt_tokens"]
                completion_tokens += usage["completion_tokens"]
        return _answer(
            "chatcmpl-", "chat.completion", self.settings.model_alias, choices, _usage(prompt_tokens, completion_tokens)
        )

    def chat_stream(self, body: dict[str, Any], g: Generation) -> Iterator[dict[str, Any]]:
        """Streamed chat completion chunks (run in a worker thread); choices one after another."""
        cid, created, alias = "chatcmpl-" + uuid.uuid4().hex, int(time.time()), self.settings.model_alias
        prompt_tokens = completion_tokens = 0
        with self.lock:
            for i in range(g.n):
                kw = self._kwargs(g, i)
                rec = self._recorder(g, kw)
                yield _chat_chunk(cid, created, alias, i, {"role": "assistant", "content": ""}, None)
                # (text, finish reason, whether the chunk carries a generated token): llama-cpp-python streams one
                # chunk per token, then a final one with the finish reason (and, for chat templates, a leading
                # role-only chunk), which are not tokens.
                parts: Iterator[tuple[str, str | None, bool]]
                if self.use_chat_template:
                    prompt = None
                    parts = (_chat_part(p) for p in self._chat_chunks(body["messages"], **kw))
                else:
                    kw["stop"] = kw["stop"] + self.settings.completion.stop
                    prompt = build_completion_prompt(body["messages"], self.settings.completion)
                    parts = (_text_part(p) for p in self._completion_chunks(prompt, **kw))
                n_out, started, finish = 0, False, "stop"
                for text, reason, is_token in parts:
                    n_out += is_token
                    finish = reason or finish
                    if not started:
                        # The model writes a space after "Answer:"; the non-streamed path strips it too.
                        text = text.lstrip()
                        started = bool(text)
                    if text:
                        yield _chat_chunk(cid, created, alias, i, {"content": text}, None)
                if prompt is not None:
                    prompt_tokens = self.count_tokens(prompt)
                    n_out = self._generated(prompt_tokens, n_out)
                else:  # a chat template's prompt is formatted inside llama-cpp-python: the context holds it and the answer
                    prompt_tokens = max(0, self.llm.n_tokens - n_out)
                completion_tokens += n_out
                # The token log-probabilities of the whole answer ride on the choice's final chunk, and the
                # request's usage on the last one.
                final = _chat_chunk(cid, created, alias, i, {}, finish, self._chat_logprobs(rec))
                if i == g.n - 1 and (body.get("stream_options") or {}).get("include_usage"):
                    final["usage"] = _usage(prompt_tokens, completion_tokens)
                yield final

    # --- text completions -------------------------------------------------------------------

    def text(self, prompts: list[str], g: Generation, echo: bool) -> dict[str, Any]:
        """Non-streamed /v1/completions: `g.n` choices for each prompt, prompt by prompt."""
        choices: list[dict[str, Any]] = []
        prompt_tokens = completion_tokens = 0
        with self.lock:
            for prompt in prompts:
                for i in range(g.n):
                    kw = self._kwargs(g, i)
                    rec = self._recorder(g, kw)
                    out = self._completion(prompt, **kw)
                    c = out["choices"][0]
                    choices.append(
                        {
                            "index": len(choices),
                            "text": (prompt if echo else "") + c["text"],
                            "finish_reason": c.get("finish_reason") or "stop",
                            "logprobs": self._text_logprobs(rec),
                        }
                    )
                    completion_tokens += out["usage"]["completion_tokens"]
                prompt_tokens += out["usage"]["prompt_tokens"]
        return _answer(
            "cmpl-", "text_completion", self.settings.model_alias, choices, _usage(prompt_tokens, completion_tokens)
        )

    def text_stream(
        self, prompts: list[str], g: Generation, echo: bool, include_usage: bool
    ) -> Iterator[dict[str, Any]]:
        cid, created, alias = "cmpl-" + uuid.uuid4().hex, int(time.time()), self.settings.model_alias
        prompt_tokens = completion_tokens = index = 0
        last = len(prompts) * g.n - 1
        with self.lock:
            for prompt in prompts:
                prompt_tokens += self.count_tokens(prompt)
                for i in range(g.n):
                    kw = self._kwargs(g, i)
                    rec = self._recorder(g, kw)
                    if echo:
                        yield _text_chunk(cid, created, alias, index, prompt, None)
                    n_out, finish = 0, "stop"
                    for part in self._completion_chunks(prompt, **kw):
                        c = part["choices"][0]
                        n_out += not c.get("finish_reason")  # the last chunk only carries the finish reason
                        finish = c.get("finish_reason") or finish
                        if c.get("text"):
                            yield _text_chunk(cid, created, alias, index, c["text"], None)
                    completion_tokens += self._generated(self.count_tokens(prompt), n_out)
                    final = _text_chunk(cid, created, alias, index, "", finish, self._text_logprobs(rec))
                    if index == last and include_usage:
                        final["usage"] = _usage(prompt_tokens, completion_tokens)
                    yield final
                    index += 1

    def _generated(self, prompt_tokens: int, chunks: int) -> int:
        """Tokens generated by the stream that just ended, as llama.cpp's own usage counts them (a stop string's
        tokens included, though the stream withheld their text): the context holds the prompt and every
        sampled token but the last, which is never evaluated."""
        return self.llm.n_tokens - prompt_tokens + 1 if chunks else 0

    def detokenize(self, ids: list[int]) -> str:
        """A prompt sent as token ids (OpenAI allows it): this model's own tokens. An id outside the
        vocabulary is refused here: llama.cpp aborts the whole process on one (std::out_of_range)."""
        size = self.llm.n_vocab()
        bad = next((i for i in ids if not 0 <= int(i) < size), None)
        if bad is not None:
            raise ValueError(f"'prompt' holds token id {bad}, outside this model's vocabulary (0 to {size - 1})")
        try:
            return self.llm.detokenize([int(i) for i in ids]).decode("utf-8", "replace")
        except Exception as e:  # ids outside the vocabulary
            raise ValueError(f"'prompt' holds token ids this model does not have: {e}") from e

    def count_tokens(self, text: str) -> int:
        """Tokens of a text in this model's vocabulary (the vocabulary, not the context: no lock needed)."""
        return len(self.llm.tokenize(text.encode(), add_bos=True, special=True))


def _chat_part(p: CreateChatCompletionStreamResponse) -> tuple[str, str | None, bool]:
    """(text, finish reason, whether the chunk carries a generated token) of a chat stream chunk."""
    c: Mapping[str, Any] = p["choices"][0] if p["choices"] else {}
    delta = c.get("delta") or {}
    return delta.get("content") or "", c.get("finish_reason"), "content" in delta and not c.get("finish_reason")


def _text_part(p: CreateCompletionResponse) -> tuple[str, str | None, bool]:
    """(text, finish reason, whether the chunk carries a generated token) of a completion stream chunk."""
    c = p["choices"][0]
    return c.get("text") or "", c.get("finish_reason"), not c.get("finish_reason")


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _answer(
    id_prefix: str, obj: str, model: str, choices: list[dict[str, Any]], usage: dict[str, int]
) -> dict[str, Any]:
    """A whole (non-streamed) chat or text completion object."""
    return {
        "id": id_prefix + uuid.uuid4().hex,
        "object": obj,
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage,
    }


def _chat_chunk(
    cid: str, created: int, model: str, index: int, delta: dict[str, Any], finish: str | None, logprobs: Any = None
) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": index, "delta": delta, "finish_reason": finish, "logprobs": logprobs}],
    }


def _text_chunk(
    cid: str, created: int, model: str, index: int, text: str, finish: str | None, logprobs: Any = None
) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"index": index, "text": text, "finish_reason": finish, "logprobs": logprobs}],
    }
