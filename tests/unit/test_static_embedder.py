"""The static embedding distilled from MiniLM: real table (built once into the cache), real tokenizer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from policies.common.model_files import resolve_embedding_model
from policies.common.quality_settings import QualitySettings
from policies.embedding.base import RELEVANCE_BANDS, InProcessEmbedder
from policies.embedding.names import make_embedder
from policies.embedding.static import (
    DIMS,
    MAX_TOKENS,
    NAME,
    ChunkCachedTokenizer,
    StaticEmbedder,
    sif_weights,
    table_path,
)
from policies.quality.scorer import QualityScorer

QUESTIONS = [
    "How do I reset my password?",
    "What is the capital of France?",
    "Solve 3x + 5 = 20 for x.",
    "Write a short poem about the sea.",
    "Which Python function sorts a list in place?",
    "How long should I boil an egg for a soft yolk?",
]
ANSWERS = [
    "Open Settings, choose Account, then Reset password and follow the link we email you.",
    "Paris is the capital of France.",
    "Subtract 5 from both sides to get 3x = 15, then divide by 3: x = 5.",
    "Waves roll in silver light, the tide sings softly through the night.",
    "list.sort() sorts the list in place; sorted() returns a new list.",
    "About six minutes in boiling water gives a soft, runny yolk.",
]


@pytest.fixture(scope="module")
def static() -> StaticEmbedder:
    return StaticEmbedder.default()


def test_rows_are_unit_vectors_and_deterministic(static: StaticEmbedder) -> None:
    a = static.embed(QUESTIONS)
    assert a.shape == (len(QUESTIONS), DIMS) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(a, static.embed(QUESTIONS))
    assert np.array_equal(static.embed([QUESTIONS[2]])[0], a[2]), "batching does not change a row"


def test_empty_text_gives_a_zero_row_not_nan(static: StaticEmbedder) -> None:
    v = static.embed(["", "hello"])
    assert not np.isnan(v).any() and np.linalg.norm(v[0]) == 0.0 and np.linalg.norm(v[1]) == pytest.approx(1.0)


def test_answers_are_closer_to_their_own_question_than_to_others(static: StaticEmbedder) -> None:
    q, a = static.embed(QUESTIONS), static.embed(ANSWERS)
    sims = q @ a.T
    assert (sims.argmax(axis=1) == np.arange(len(QUESTIONS))).all(), np.round(sims, 2)


def test_ranks_like_full_minilm(static: StaticEmbedder) -> None:
    """The distilled space keeps full MiniLM's notion of which pairs belong together."""
    full = InProcessEmbedder()
    fs = (full.embed(QUESTIONS) @ full.embed(ANSWERS).T).ravel()
    ss = (static.embed(QUESTIONS) @ static.embed(ANSWERS).T).ravel()
    rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731
    assert np.corrcoef(rank(fs), rank(ss))[0, 1] > 0.6


def test_frequent_tokens_weigh_less() -> None:
    w = sif_weights(30522)
    assert w[2000] < w[10000] < w[29000] and w[100] == w.min()


def test_table_is_keyed_by_the_model_weights(tmp_path: Path) -> None:
    p = table_path(resolve_embedding_model(None), tmp_path)
    assert p.parent == tmp_path and p.name.startswith(NAME) and p.suffix == ".npy"


def test_quality_relevance_uses_the_static_band(static: StaticEmbedder) -> None:
    scorer = QualityScorer(QualitySettings(), make_embedder("static"))
    assert scorer.relevance_band == RELEVANCE_BANDS["static"]
    req = {"messages": [{"role": "user", "content": "Explain how vaccines train the immune system."}]}
    on = asyncio.run(
        scorer.ascore(
            req, "A vaccine shows the body a harmless piece of a germ so it learns to make antibodies.", "stop", None
        )
    )
    off = asyncio.run(scorer.ascore(req, "Our store opens at nine and parking is free on weekends.", "stop", None))
    assert on.signals["relevance"] > off.signals["relevance"] and off.signals["relevance"] < 1


TRICKY = [
    *QUESTIONS,
    *ANSWERS,
    "Café naïve coöperate — résumé, ¿qué?  déjà-vu!!",
    "def f(x):\n\treturn {'a': [1, 2.5e-3]}  # comment\r\nprint(f(3))",
    "中文字符和English混合,日本語もテスト。",
    "emoji 🚀🔥 and\u00a0non-breaking\u2003em space, zero\u200bwidth",
    "control\x1cchars\x07 and a trailing tab\t",
    "   leading and trailing spaces   ",
    "URL https://example.com/a?b=c&d=e#frag and e-mail a.b@c.org",
    "supercalifragilisticexpialidocious antidisestablishmentarianism " * 3,
    "",
]


def test_chunk_cache_gives_the_tokenizers_exact_ids(static: StaticEmbedder) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(resolve_embedding_model(None) / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    cached = ChunkCachedTokenizer(tok)
    for _ in range(2):  # first pass fills the cache, the second reads it
        for text in TRICKY:
            assert cached.ids(text, 10_000) == tok.encode(text, add_special_tokens=False).ids, text
    long = " ".join(TRICKY) * 20
    assert cached.ids(long, MAX_TOKENS) == tok.encode(long, add_special_tokens=False).ids[:MAX_TOKENS]


def test_chunk_cache_is_bounded() -> None:
    from tokenizers import Tokenizer

    cached = ChunkCachedTokenizer(
        Tokenizer.from_file(str(resolve_embedding_model(None) / "tokenizer.json")), max_entries=5
    )
    cached.ids(" ".join(f"word{i}" for i in range(50)), 10_000)
    assert len(cached._ids) <= 5


def test_recent_texts_are_remembered_whole_and_bounded(static: StaticEmbedder) -> None:
    """The router reads a text's ids twice per decision (embedding, token term): the second read is
    the same list, not a second walk; the memo keeps only the last RECENT_TEXTS texts."""
    from policies.embedding.static import RECENT_TEXTS

    text = "How do I get a refund for my order?"
    first = static.token_ids([text])[0]
    assert static.token_ids([text])[0] is first
    static.token_ids([f"filler text {i}" for i in range(RECENT_TEXTS)])
    again = static.token_ids([text])[0]
    assert again == first and again is not first  # evicted, tokenised anew: the same ids


def test_a_texts_new_words_take_one_tokenizer_call_with_each_words_exact_ids() -> None:
    """A request brings a few new words (numbers, names): one tokenizer call for all of them (its fixed cost is
    most of a short word's), each word's ids still exactly its own, whatever the normaliser does to it."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(resolve_embedding_model(None) / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()

    class Counting:
        calls = 0

        def encode(self, text: str, add_special_tokens: bool = True) -> object:
            Counting.calls += 1
            return tok.encode(text, add_special_tokens=add_special_tokens)

    cached = ChunkCachedTokenizer(Counting())
    odd = "naïve 東京タワー x\x00y \x7f [CLS]x 😀👍 ﬁne İstanbul straße " + "a" * 150 + " 12345. 12345? order 12345."
    for text in [odd, *TRICKY]:
        before = Counting.calls
        assert cached.ids(text, 10_000) == tok.encode(text, add_special_tokens=False).ids, text
        assert Counting.calls - before <= 1, text
    assert cached.ids(odd, 10_000) == tok.encode(odd, add_special_tokens=False).ids  # now from the cache
