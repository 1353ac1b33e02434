"""The judge's pure module: templates, parsing (malformed output -> None, never an exception), both orders."""

from __future__ import annotations

import random

import pytest

from policies import judging as j
from policies.common.quality_settings import JudgeSettings, QualitySettings
from policies.quality.bands import band


def test_single_rating_prompt_carries_question_and_answer() -> None:
    msgs = j.single_rating_messages("What is 17 times 23?", "391")
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert "[[rating]]" in msgs[0]["content"]
    assert "[Question]\nWhat is 17 times 23?" in msgs[1]["content"]
    assert "[The Start of Assistant's Answer]\n391\n[The End of Assistant's Answer]" in msgs[1]["content"]
    ref = j.single_rating_messages("q", "a", reference="r")
    assert "reference answer" in ref[0]["content"] and "[The Start of Reference Answer]\nr\n" in ref[1]["content"]


def test_long_texts_are_cut_so_the_cost_is_bounded() -> None:
    msgs = j.single_rating_messages("q" * 50_000, "a" * 50_000)
    assert len(msgs[1]["content"]) < j.MAX_QUESTION_CHARS + j.MAX_ANSWER_CHARS + 500


@pytest.mark.parametrize(
    "text, rating",
    [
        ("The answer is correct and concise. Rating: [[9]]", 9.0),
        ("Rating: [[7.5]]", 7.5),
        ("[[ 3 ]]", 3.0),
        ("Good. Rating: [[8]]. Again: [[8]]", 8.0),  # the same rating twice is still one rating
        ("No brackets. Rating: 6", 6.0),  # MT-Bench's second chance: an unbracketed rating
    ],
)
def test_parse_rating(text: str, rating: float) -> None:
    assert j.parse_rating(text) == rating


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Rating: [[1",
        "I would rate it [[7]] or maybe [[8]]",
        "Rating: [[11]]",
        "Rating: [[0]]",
        "$ERROR$",
        "9/10 overall",
        None,
        7,
        {"rating": 7},
        ["[[7]]"],
    ],
)
def test_malformed_rating_is_none(text: object) -> None:
    assert j.parse_rating(text) is None


def test_parsers_never_raise_on_random_text() -> None:
    rng = random.Random(17)
    alphabet = "[]ABCD0123456789.:/ \nRating[[]]Verdict-é字\x00"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        r = j.parse_rating(text)
        assert r is None or 1 <= r <= 10
        assert j.parse_verdict(text) in (None, "A", "B", "C")


def test_rating_maps_onto_the_bands() -> None:
    s = QualitySettings()
    assert [band(j.rating_to_score(r), s) for r in (10, 9, 8)] == ["deliver"] * 3
    assert [band(j.rating_to_score(r), s) for r in (7, 6)] == ["rephrase"] * 2
    assert [band(j.rating_to_score(r), s) for r in (5, 3, 1)] == ["escalate"] * 3
    scores = [j.rating_to_score(r / 2) for r in range(2, 21)]
    assert scores == sorted(scores) and scores[0] == 0.0 and scores[-1] == 1.0


def test_pairwise_prompts_in_both_orders() -> None:
    first, second = j.pairwise_messages_both_orders("Q?", "answer one", "answer two")
    assert "Assistant A's Answer]\nanswer one" in first[1]["content"]
    assert "Assistant B's Answer]\nanswer two" in first[1]["content"]
    assert "Assistant A's Answer]\nanswer two" in second[1]["content"]
    assert "Assistant B's Answer]\nanswer one" in second[1]["content"]
    assert '"[[C]]" for a tie' in first[0]["content"]


@pytest.mark.parametrize(
    "text, verdict",
    [
        ("A is clearer. [[A]]", "A"),
        ("[[B]]", "B"),
        ("Both fine: [[C]]", "C"),
        ("[[B]] ... final: [[B]]", "B"),
        ("[[A]] no wait [[B]]", None),
        ("A is better", None),
        ("[[D]]", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_verdict(text: object, verdict: str | None) -> None:
    assert j.parse_verdict(text) == verdict


@pytest.mark.parametrize(
    "v1, v2, pref",
    [
        ("A", "B", "first"),  # first won in both positions
        ("B", "A", "second"),
        ("A", "A", "tie"),  # each order preferred the same position: position bias, a tie
        ("B", "B", "tie"),
        ("C", "C", "tie"),
        ("A", "C", "first"),  # a win and a tie lean to the winner
        ("C", "A", "second"),
        (None, "A", None),
        ("B", None, None),
    ],
)
def test_combine_orders_cancels_position_bias(v1, v2, pref) -> None:
    assert j.combine_orders(v1, v2) == pref


def test_preference_value_and_band() -> None:
    assert [j.preference_value(p) for p in ("first", "tie", "second")] == [1.0, 0.5, 0.0]
    assert j.in_judge_band(0.7, (0.5, 0.85)) and not j.in_judge_band(0.9, (0.5, 0.85))


def test_judge_settings_defaults_and_validation() -> None:
    s = QualitySettings().judge
    assert (s.enabled, s.model, s.band) == (False, "deepseek-chat", (0.5, 0.85)) and s.monthly_limit_usd > 0
    with pytest.raises(ValueError):
        JudgeSettings(band=(0.9, 0.5))
    with pytest.raises(ValueError):
        QualitySettings.model_validate({"judge": {"modle": "x"}})
