"""Prompt tokens as LiteLLM's `token_counter` counts them, without its per-call set-up, and each text counted once.

`litellm.token_counter(model=..., messages=...)` picks the model's tokenizer and its message constants on every call
(`_MessageCountParams`: ~27 us, more than tiktoken takes for a 200-token prompt here). `PromptCounter` keeps them
per model and runs LiteLLM's own message walk (`_count_messages`, `_count_extra`), so its counts are LiteLLM's to
the token (tests/unit/test_token_count.py compares them over generated prompts). The texts it counts are kept in
a bounded LRU: a client that resends its whole conversation every turn (Claude Code, most chat UIs) has each
earlier message counted once, not once per turn.

LiteLLM 1.108's internals: the pinned version (pyproject.toml) and the comparison test keep them honest.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

# Texts shorter than this are counted each time: a lookup would cost about what tiktoken does.
MIN_CACHED_CHARS = 64
# The LRU's size, in characters of the texts it keeps (about that many bytes of memory for ASCII text, up to 4x
# for other scripts): a few dozen long agent conversations.
MAX_CACHED_CHARS = 16_000_000


class PromptCounter:
    def __init__(self, max_cached_chars: int = MAX_CACHED_CHARS) -> None:
        self.max_cached_chars = max_cached_chars
        self._params: dict[str, Any] = {}  # LiteLLM model -> its _MessageCountParams, count_function cached
        self._cache: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._cached_chars = 0
        self.hits = 0
        self.misses = 0

    def count(self, model: str, messages: Sequence[Any] | None = None, text: str | None = None) -> int:
        """`litellm.token_counter(model=model, messages=messages, text=text)` (no tools: the callers count tool
        definitions as text); raises where it raises."""
        import litellm
        from litellm.litellm_core_utils.token_counter import _count_extra, _count_messages
        from litellm.utils import convert_list_message_to_dict

        if litellm.disable_token_counter is True:
            return 0
        if text is not None and messages is not None:
            raise ValueError("text and messages cannot both be set")
        params = self._params_of(model)
        if text is not None:
            return int(params.count_function(text))
        if messages is None:
            raise ValueError("Either text or messages must be provided")
        msgs: list[Any] = convert_list_message_to_dict(messages)
        n = _count_messages(params, msgs, False, None)
        system = any(m.get("role", None) == "system" for m in msgs)
        return int(n + _count_extra(params.count_function, None, None, system))

    def _params_of(self, model: str) -> Any:
        params = self._params.get(model)
        if params is None:
            from litellm.litellm_core_utils.token_counter import _MessageCountParams

            params = _MessageCountParams(model, None)
            params.count_function = self._cached(model, params.count_function)
            self._params[model] = params
        return params

    def _cached(self, model: str, count: Callable[[str], int]) -> Callable[[str], int]:
        cache = self._cache

        def cached_count(text: str) -> int:
            if len(text) < MIN_CACHED_CHARS:
                return count(text)
            key = (model, text)
            n = cache.get(key)
            if n is not None:
                cache.move_to_end(key)
                self.hits += 1
                return n
            n = count(text)
            self.misses += 1
            cache[key] = n
            self._cached_chars += len(text)
            while self._cached_chars > self.max_cached_chars and cache:
                (_, old), _ = cache.popitem(last=False)
                self._cached_chars -= len(old)
            return n

        return cached_count
