"""Bands, hard-failure escalation and the scorer with the real MiniLM embedder."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from pydantic import ValidationError

from policies.common.quality_settings import QualitySettings
from policies.quality.bands import band, is_validated, validated_tiers
from policies.quality.scorer import QualityScorer, ScoreItem, combine, compute_signals

TIERS = ["local-llama", "deepseek-chat", "claude-sonnet"]
Q = "Explain in two sentences why the sky is blue during the day."
GOOD = (
    "The sky looks blue because air molecules scatter short blue wavelengths of sunlight much more than red ones. "
    "This Rayleigh scattering sends blue light toward our eyes from every direction of the sky."
)
OFF_TOPIC = "My favourite recipe is a lasagne with spinach, ricotta and a lot of parmesan cheese on top."


def req(question: str = Q, **extra: object) -> dict:
    return {"messages": [{"role": "user", "content": question}], **extra}


@pytest.fixture(scope="module", params=["static", "minilm"])
def embedder(request: pytest.FixtureRequest):
    """Both embedding spaces the relevance signal can use, each judged by its own band."""
    from policies.embedding.names import make_embedder

    return make_embedder(request.param, n_threads=1)


def test_bands_follow_config() -> None:
    s = QualitySettings()
    assert [band(x, s) for x in (0.95, 0.8, 0.7, 0.6, 0.59)] == [
        "deliver",
        "rephrase",
        "rephrase",
        "rephrase",
        "escalate",
    ]
    s2 = QualitySettings(deliver_above=0.5, escalate_below=0.2)
    assert [band(x, s2) for x in (0.6, 0.3, 0.1)] == ["deliver", "rephrase", "escalate"]


def test_settings_reject_crossed_bands_and_unknown_keys() -> None:
    with pytest.raises(ValidationError):
        QualitySettings(deliver_above=0.5, escalate_below=0.7)
    with pytest.raises(ValidationError):
        QualitySettings.model_validate({"weights": {"relevence": 0.5}})


def test_validated_tiers_default_all_but_top() -> None:
    s = QualitySettings()
    assert validated_tiers(s, TIERS) == ["local-llama", "deepseek-chat"]
    assert not is_validated("claude-sonnet", s, TIERS)
    only_local = QualitySettings(validated_tiers=["local-llama"])
    assert validated_tiers(only_local, TIERS) == ["local-llama"]
    assert not is_validated("local-llama", QualitySettings(enabled=False), TIERS)


def test_good_answer_delivers_without_embedder() -> None:
    v = asyncio.run(QualityScorer(QualitySettings()).ascore(req(), GOOD, "stop", [-0.3] * 40))
    assert v.action == "deliver" and v.score > 0.8 and v.hard_failures == []


@pytest.mark.parametrize(
    "answer,finish,request_extra",
    [
        ("", "stop", {}),
        (GOOD, "length", {}),
        ("The sky is blue. " * 30, "stop", {}),
        (GOOD, "stop", {"response_format": {"type": "json_object"}}),
    ],
    ids=["empty", "cut_off", "loop", "invalid_json"],
)
def test_hard_failures_escalate_despite_confident_logprobs(answer: str, finish: str, request_extra: dict) -> None:
    v = asyncio.run(QualityScorer(QualitySettings()).ascore(req(**request_extra), answer, finish, [-0.01] * 50))
    assert v.action == "escalate"
    assert v.hard_failures and v.score <= QualitySettings().hard_failure_score


def test_bad_tool_call_escalates() -> None:
    request = req(tools=[{"type": "function", "function": {"name": "f", "parameters": {"required": ["x"]}}}])
    calls = [{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{'x': 1"}}]
    v = asyncio.run(QualityScorer(QualitySettings()).ascore(request, "", "tool_calls", None, calls))
    assert v.action == "escalate" and "tool" in v.hard_failures[0]


def test_hard_failure_ignores_weights() -> None:
    # Even with the weight of "empty" at 0 the answer is unusable and escalates.
    s = QualitySettings.model_validate({"weights": {"empty": 0.0}})
    assert combine(compute_signals(req(), "", "stop", None, None, None), s).action == "escalate"


def test_soft_signals_lower_the_score() -> None:
    s = QualitySettings()
    good = combine(compute_signals(req(), GOOD, "stop", None, None, 0.6), s)
    unsure = combine(compute_signals(req(), GOOD, "stop", [-3.0] * 40, None, 0.6), s)
    refused = combine(
        compute_signals(req(), "I'm sorry, but I can't help with that request.", "stop", None, None, 0.6), s
    )
    assert good.score > unsure.score and good.action == "deliver" and unsure.action != "deliver"
    assert refused.action == "escalate" and "refused" in refused.reasons[0]


def test_good_prose_answers_deliver() -> None:
    from tests.unit.test_quality_signals import PROSE

    for question, answer in PROSE:
        v = combine(compute_signals(req(question), answer, "stop", None, None, None), QualitySettings())
        assert v.action == "deliver" and v.score == 1.0, (question, v.reasons)


def test_maths_answer_with_lost_working_scores_lower() -> None:
    q = "Tom buys 3 boxes of 12 eggs and breaks 4. How many eggs does he have left?"
    sound = combine(
        compute_signals(req(q), "3 * 12 = 36 eggs.\n36 - 4 = 32 left.\n#### 32", "stop", None, None, None),
        QualitySettings(),
    )
    lost = combine(
        compute_signals(req(q), "3 * 12 = 36 eggs.\n12 - 4 = 8 left.\n#### 8", "stop", None, None, None),
        QualitySettings(),
    )
    assert sound.score == 1.0 and lost.signals["dead_end"] == 0.0 and lost.score < sound.score


def test_relevance_with_real_embedder(embedder) -> None:
    scorer = QualityScorer(QualitySettings(), embedder)
    on = asyncio.run(scorer.ascore(req(), GOOD, "stop", None))
    off = asyncio.run(scorer.ascore(req(), OFF_TOPIC, "stop", None))
    assert on.action == "deliver"
    assert off.signals["relevance"] < 0.5 and off.action != "deliver"


def test_score_batch_matches_ascore(embedder) -> None:
    scorer = QualityScorer(QualitySettings(), embedder)
    items = [ScoreItem(req(), GOOD, "stop"), ScoreItem(req(), OFF_TOPIC, "stop"), ScoreItem(req(), "", "stop")]
    batch = scorer.score_batch(items)
    single = [asyncio.run(scorer.ascore(it.request, it.answer_text, it.finish_reason, None)) for it in items]
    assert [b.action for b in batch] == [s.action for s in single]
    assert np.allclose([b.score for b in batch], [s.score for s in single], atol=1e-3)


def test_bare_number_answers_skip_relevance() -> None:
    """An embedding cannot tell whether "120" answers the question: no relevance call is made."""

    class _Refuse:
        async def aembed(self, texts: list[str]) -> np.ndarray:
            raise AssertionError("relevance must not be measured for a bare number")

    scorer = QualityScorer(QualitySettings(), _Refuse())
    maths = req("A baker sells 40 loaves a day for 3 days. How many loaves does he sell?")
    for answer in ("120", "$1,052.", "10 cookies"):
        v = asyncio.run(scorer.ascore(maths, answer, "stop", None))
        assert v.signals["relevance"] == 1.0, answer
    v = asyncio.run(scorer.ascore(maths, OFF_TOPIC, "stop", None))  # real prose still gets the check
    assert any("relevance not measured" in r for r in v.reasons)


class _DownEmbedder:
    async def aembed(self, texts: list[str]) -> np.ndarray:
        raise ConnectionError("embedding server down")


class _SlowEmbedder:
    async def aembed(self, texts: list[str]) -> np.ndarray:
        await asyncio.sleep(5)
        raise AssertionError("should have timed out")


@pytest.mark.parametrize(
    "emb,error", [(_DownEmbedder(), "ConnectionError"), (_SlowEmbedder(), "TimeoutError")], ids=["down", "slow"]
)
def test_embedder_failure_scores_without_relevance(emb, error: str) -> None:
    scorer = QualityScorer(QualitySettings(embed_timeout_s=0.2), emb)
    v = asyncio.run(scorer.ascore(req(), OFF_TOPIC, "stop", None))
    assert v.signals["relevance"] == 1.0
    assert f"relevance not measured ({error})" in v.reasons


def test_extract_logprobs_shapes() -> None:
    from policies.common.api_answers import extract_logprobs

    chat = {"content": [{"token": "Hi", "logprob": -0.5, "top_logprobs": []}, {"token": "!", "logprob": -1.5}]}
    assert extract_logprobs(chat) == [-0.5, -1.5]
    assert extract_logprobs({"token_logprobs": [None, -0.25]}) == [-0.25]
    assert extract_logprobs(None) is None and extract_logprobs({"content": []}) is None


def test_precomputed_question_embedding_gives_same_verdict(embedder) -> None:
    scorer = QualityScorer(QualitySettings(), embedder)
    qvec = embedder.embed([Q])[0]
    a = asyncio.run(scorer.ascore(req(), OFF_TOPIC, "stop", None))
    b = asyncio.run(scorer.ascore(req(), OFF_TOPIC, "stop", None, question_embedding=qvec))
    assert a.signals["relevance"] == pytest.approx(b.signals["relevance"], abs=1e-3)
