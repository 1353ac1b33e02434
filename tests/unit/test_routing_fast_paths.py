"""The router's cheaper feature and embedding code computes what the code before it computed.

The structural features, the static embedding's token ids and vectors, and the router's scores are
compared with reference implementations (the earlier code, kept here verbatim: plain regexes, one
chunk at a time, numpy's mean and norm) on 400 generated prompts that mix prose, code, maths, LaTeX,
multiple choice, numbers, non-ASCII text and every kind of whitespace. Routing decisions must not
move when the hot path gets faster.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from policies.common.routing_settings import RoutingSettings
from policies.embedding.static import _CHUNK_SPLIT, MAX_TOKENS, StaticEmbedder, chunks_of
from policies.routing import features as F
from policies.routing.complexity import _WORD, word_tokens
from policies.routing.dataset import DEFAULT_DATA_DIR, load_all
from policies.routing.router import RouteDecision, Router
from policies.routing.scorer import LearnedScorer, load_artifact
from policies.routing.tiers import TierInfo

# --- the earlier code, verbatim ------------------------------------------------------------------------

_CODE_LINE = re.compile(
    r"^\s*(def |class |import |from \S+ import|#include|function |const |let |var |public |private |return\b|for \(|"
    r"if \(|while \(|SELECT |\}|\{$|<\/?\w+>)|;\s*$|=>|\)\s*\{"
)
_MATH_WORDS = re.compile(
    r"\b(solve|equation|integral|derivative|probability|prove|theorem|matrix|sum|product|percent|ratio|"
    r"calculate|compute|how many|how much|average|total|function|polynomial|root|factor)\b"
)


def reference_features(request: dict[str, Any]) -> dict[str, float]:
    rt = F.request_text(request)
    text = rt.last_user
    return {
        **F.structural_features(request),  # the fields this change left alone
        "log_words_last_user": math.log1p(len(text.split())),
        "litellm_complexity": reference_complexity(text),
    }


def reference_fallback_cues(text: str) -> dict[str, float]:
    """The structural fallback rule's code and maths cues as the router's features computed them once."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return {
        "code_line_frac": sum(1 for ln in lines if _CODE_LINE.search(ln)) / max(1, len(lines)),
        "log_math_words": math.log1p(len(_MATH_WORDS.findall(text.lower()))),
        "has_latex": float(bool(F._LATEX.search(text))),
    }


def reference_complexity(text: str) -> float:
    from policies.routing import complexity as C

    lowered = text.lower()
    return C.litellm_complexity(text, _WORD.findall(lowered))


def reference_ids(tok: Any, cache: dict[str, list[int]], text: str, limit: int) -> list[int]:
    out: list[int] = []
    for chunk in _CHUNK_SPLIT.split(text):
        if not chunk:
            continue
        ids = cache.get(chunk)
        if ids is None:
            ids = tok.encode(chunk, add_special_tokens=False).ids
            cache[chunk] = ids
        out.extend(ids)
        if len(out) >= limit:
            break
    return out[:limit]


def reference_embed(table: np.ndarray, ids_of_texts: list[list[int]]) -> np.ndarray:
    out = np.zeros((len(ids_of_texts), table.shape[1]), dtype=np.float32)
    for i, ids in enumerate(ids_of_texts):
        if ids:
            out[i] = table[ids].mean(axis=0)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    unit: np.ndarray = out / np.maximum(norms, 1e-12)
    return unit


# --- 400 prompts ---------------------------------------------------------------------------------------

FRAGMENTS = [
    "How many apples are left if I eat 3 of 12?",
    "how much does it cost, how   many are there? HOW MANY!",
    "Solve the equation 3x + 5 = 20; compute the integral of x^2 and the derivative.",
    "Prove the theorem: the sum of two even numbers is even (product, ratio, percent).",
    "Write a Python function:\ndef f(x):\n    return x * 2\n",
    "class Foo {\n  public void run() {\n    for (int i = 0; i < 10; i++) {\n      x += i;\n    }\n  }\n}",
    "const f = (a, b) => a + b;\nlet y = f(1, 2);\nif (y > 2) { console.log(y) }",
    "SELECT name FROM users WHERE id = 3;",
    "<div>hello</div>\n</p>",
    "#include <stdio.h>\nint main() { return 0; }",
    "from os import path\nimport sys",
    "The formula is $E = mc^2$ and \\frac{a}{b} + \\sqrt{2} \\alpha \\beta",
    "a price of $5 and $6, or \\\\ a backslash, \\pi",
    "Which is right?\nA. one\nB) two\nC. three\nD) four",
    "Choose: A. yes",
    "Q: pick one\n  A) red\n  B) blue",
    "Version 3.14.15 and 1,000,000 items, 42 answers, 7.5% growth",
    "Explain step by step: first parse the file, then refactor the class.",
    "Step 1. do this 2. then that a) and b) done",
    "Café naïve coöperate — résumé, ¿qué? déjà-vu!! İstanbul ǅ",
    "中文字符和English混合,日本語もテスト。我需要开发票",
    "emoji 🚀🔥 and\u00a0non-breaking\u2003em space, zero\u200bwidth",
    "control\x1cchars\x07 and a \x0bvertical tab\x0c form feed\r\ncarriage return\x85next line\u2028sep",
    "   leading and trailing spaces   ",
    "URL https://example.com/a?b=c&d=e#frag and e-mail a.b@c.org",
    "snake_case_name and CamelCaseName, sum_total, total_sum, re-factor",
    "What is the average, the total and the root of this polynomial? Factor it.",
    "Thanks, bye!",
    "hi",
    "Tell me a story about a dragon who loves tea. ",
    "Is it true or false that a CPU and a GPU share memory over TCP via HTTP and gRPC?",
    "\t\tindented with tabs\n\n\nblank lines\n",
    "matrix probability calculate",
    "x => y",
    "call(f) {",
    "end with a semicolon;   ",
]


def prompts(n: int = 400, seed: int = 19) -> Iterator[str]:
    rng = random.Random(seed)
    for i in range(n):
        k = rng.randint(1, 6)
        sep = rng.choice([" ", "\n", "\n\n", "\t", "\r\n", " \u00a0", ""])
        text = sep.join(rng.choice(FRAGMENTS) for _ in range(k))
        if i % 7 == 0:
            text = text.upper()
        if i % 11 == 0:
            text = text * rng.randint(5, 30)  # long: past the embedding's character and token limits
        yield text


PROMPTS = list(prompts())


@pytest.fixture(scope="module")
def static() -> StaticEmbedder:
    return StaticEmbedder.default()


# --- the checks ----------------------------------------------------------------------------------------


def test_word_tokens_equal_the_regex() -> None:
    for text in PROMPTS + FRAGMENTS:
        for t in (text, text.lower()):
            assert word_tokens(t) == _WORD.findall(t), t


def test_structural_features_equal_the_earlier_code() -> None:
    for text in PROMPTS + FRAGMENTS:
        request = {"messages": [{"role": "user", "content": text}]}
        assert F.structural_features(request) == reference_features(request), text


def test_structural_fallback_cues_equal_the_earlier_code() -> None:
    for text in PROMPTS + FRAGMENTS:
        assert F.fallback_cues(text) == reference_fallback_cues(text), text


def test_word_count_equals_split() -> None:
    """Words from one translate: short random texts over the characters that decide them (every ASCII
    whitespace, leading and trailing ones, other scripts' spaces)."""
    rng = random.Random(19)
    alphabet = list("ab Z09.,-+=*/^<>%?\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f") + ["é", "√", "٣", "\u2028", "\xa0"]
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        for t in (text, "".join(c for c in text if c.isascii())):
            assert F._word_count(t) == len(t.split()), repr(t)


def test_chunks_equal_the_regex_split() -> None:
    for text in PROMPTS + FRAGMENTS:
        assert chunks_of(text) == [c for c in _CHUNK_SPLIT.split(text) if c], text


def test_token_ids_and_embeddings_equal_the_earlier_code(static: StaticEmbedder) -> None:
    ref_cache: dict[str, list[int]] = {}
    texts = [F.embed_text(F.request_text({"messages": [{"role": "user", "content": t}]}), 1024) for t in PROMPTS]
    texts += PROMPTS[:50]  # whole, long ones past MAX_TOKENS
    for _ in range(2):  # cold chunk cache, then warm
        ref_ids = [reference_ids(static._tok, ref_cache, t, MAX_TOKENS) for t in texts]
        ids = [static._chunks.ids(t, MAX_TOKENS) for t in texts]
        assert ids == ref_ids
        new, old = static.embed(texts), reference_embed(static.table, ref_ids)
        np.testing.assert_allclose(new, old, rtol=0, atol=1e-6)


def test_router_scores_equal_the_earlier_code(static: StaticEmbedder) -> None:
    scorer = load_artifact()
    assert isinstance(scorer, LearnedScorer) and scorer.embedder == static.name
    tiers = [TierInfo("local"), TierInfo("deepseek-chat"), TierInfo("claude-sonnet")]
    router = Router(RoutingSettings(embed_cache_size=0), tiers, scorer, static)
    requests = [{"messages": [{"role": "user", "content": t}], "max_tokens": 64} for t in PROMPTS]
    decisions = router.decide_batch(requests)  # the batch tools' path

    async def one_by_one() -> list[RouteDecision]:  # the proxy hook's path (the inline embedding)
        return [await router.adecide(r) for r in requests]

    assert [d.score for d in asyncio.run(one_by_one())] == [d.score for d in decisions]
    ref_cache: dict[str, list[int]] = {}
    for request, d in zip(requests, decisions):
        rt = F.request_text(request)
        text = F.embed_text(rt, scorer.max_chars)
        ids = reference_ids(static._tok, ref_cache, text, MAX_TOKENS)
        # The distinct ids the token term read and the inference log keeps: np.unique's answer, dtype included.
        assert d.embedded is not None and d.embedded.token_ids is not None
        assert d.embedded.token_ids.dtype == np.int64
        np.testing.assert_array_equal(d.embedded.token_ids, np.unique(np.asarray(ids, dtype=np.int64)))
        feats = F.feature_vector(reference_features(request))[None, :]
        emb = reference_embed(static.table, [ids])
        score = float(scorer.score(emb, feats, scorer.token_term([ids]))[0])
        assert d.score == pytest.approx(score, abs=1e-6), text


def _earlier_presence_term(w_tok: np.ndarray, distinct: np.ndarray, value: float) -> float:
    return float(w_tok[distinct[distinct < len(w_tok)]].sum()) * value


@pytest.mark.skipif(not DEFAULT_DATA_DIR.is_dir(), reason="the routing training data is not on this machine")
def test_router_scores_on_the_training_prompts_equal_the_earlier_code_exactly(static: StaticEmbedder) -> None:
    """Every training prompt (RouteLLM, MMLU-Pro, LLMRouter, arena-hard): the served decision's score is the float
    the earlier feature and token-term code gives with the same scorer, bit for bit."""
    scorer = load_artifact()
    assert scorer.w_tok is not None
    tiers = [TierInfo("local"), TierInfo("deepseek-chat"), TierInfo("claude-sonnet")]
    router = Router(RoutingSettings(embed_cache_size=0), tiers, scorer, static)
    examples, _ = load_all(DEFAULT_DATA_DIR)
    requests = [e.request for e in examples]

    async def served() -> list[RouteDecision]:
        return [await router.adecide(r) for r in requests]

    for request, d in zip(requests, asyncio.run(served())):
        text = F.embed_text(F.request_text(request), scorer.max_chars)
        distinct = np.unique(np.asarray(static.token_ids([text])[0], dtype=np.int64))
        value = 1.0 / math.sqrt(len(distinct)) if len(distinct) else 0.0
        term = np.array([_earlier_presence_term(scorer.w_tok, distinct, value)], np.float32)
        feats = F.feature_vector(reference_features(request))[None, :]
        assert d.score == float(scorer.score(static.embed([text]), feats, term)[0]), text[:200]
