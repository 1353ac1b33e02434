"""Issue 17's examples through the scorer API and `synqra quality-score`, the answer model's artifact, training."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from policies.common.artifacts import manifest_path
from policies.common.quality_settings import QualitySettings
from policies.quality.answer_model import DEFAULT_ARTIFACT, AnswerModelError, load_answer_model
from policies.quality.dataset import DEFAULT_DATA_DIR
from policies.quality.scorer import QualityScorer
from proxy.cli import main as synqra_main

# (question, bad answer the issue saw delivered, a good answer)
ISSUE_17 = [
    ("What is 17 times 23?", "17 times 23 = 60", "17 times 23 = 391."),
    ("What is 15% of 80?", "15% of 80 is 20.", "15% of 80 is 12."),
    (
        "What is your pricing?",
        "$10,598.62",
        "I don't have access to your pricing. Tell me your plans and prices, or check your pricing page, and I can "
        "help you present them.",
    ),
]
LONG_Q = (
    "Explain how a hash map works and what happens when two keys collide. Keep it practical for a junior developer."
)
LONG_GOOD = (
    "A hash map stores key-value pairs in an array of buckets. To insert a key, it computes a hash of the key and "
    "uses it (modulo the array size) to pick a bucket, so lookups take constant time on average.\n\n"
    "When two keys land in the same bucket, that is a collision. There are two common ways to handle it:\n\n"
    "1. **Chaining**: each bucket holds a small list; colliding entries are appended and a lookup scans the list.\n"
    "2. **Open addressing**: the map probes the next free slot (linear or quadratic probing) and lookups follow "
    "the same probe sequence.\n\nTo keep collisions rare, the map grows (typically doubling) and rehashes every "
    "entry once the load factor passes about 0.75. In practice: use immutable keys with a good hash function, "
    "and remember that worst-case lookups degrade to linear time if many keys collide."
)
LONG_BAD = (
    "hash map is a map. it maps things. the the the hash is when you map a hash and the map is hashed so that the "
    "map can be hashed again and then the collision is when the map collides with the hash, and this is why maps "
    "are useful for hashing. in conclusion the hash map is a kind of map that is used for maps of hashes."
)


@pytest.fixture(scope="module")
def scorer() -> QualityScorer:
    s = QualityScorer(QualitySettings())
    assert s.answer_model is not None, "the shipped answer model must load"
    return s


def score(scorer: QualityScorer, q: str, a: str, **kw):
    return asyncio.run(scorer.ascore({"messages": [{"role": "user", "content": q}], **kw}, a, "stop", None))


@pytest.mark.parametrize("q, bad, good", ISSUE_17, ids=["times", "percent", "pricing"])
def test_issue_examples_through_the_api(scorer: QualityScorer, q: str, bad: str, good: str) -> None:
    assert score(scorer, q, bad).action != "deliver"
    assert score(scorer, q, good).action == "deliver"


def test_issue_examples_through_synqra_quality_score(tmp_path: Path) -> None:
    rows = [
        {"id": f"{i}-{kind}", "messages": [{"role": "user", "content": q}], "answer": a}
        for i, (q, bad, good) in enumerate(ISSUE_17)
        for kind, a in (("bad", bad), ("good", good))
    ]
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert synqra_main(["quality-score", "--input", str(src), "--output", str(dst)]) == 0
    out = {o["id"]: o for o in map(json.loads, dst.read_text().splitlines())}
    for i in range(len(ISSUE_17)):
        assert out[f"{i}-bad"]["action"] != "deliver", out[f"{i}-bad"]
        assert out[f"{i}-good"]["action"] == "deliver", out[f"{i}-good"]


def test_price_list_in_the_system_prompt_may_be_quoted(scorer: QualityScorer) -> None:
    req = {
        "messages": [
            {"role": "system", "content": "Plans: Starter $10/month, Team $40/month."},
            {"role": "user", "content": "What is your pricing?"},
        ]
    }
    v = asyncio.run(scorer.ascore(req, "Starter is $10 a month and Team is $40 a month.", "stop", None))
    assert v.signals["invented_figure"] == 1.0 and v.action == "deliver"


def test_the_answer_model_ranks_a_sound_answer_above_a_muddled_one(scorer: QualityScorer) -> None:
    good, bad = score(scorer, LONG_Q, LONG_GOOD), score(scorer, LONG_Q, LONG_BAD)
    assert good.learned is not None and bad.learned is not None
    assert good.score > bad.score and good.learned > bad.learned


def test_short_exchanges_are_left_to_the_rules(scorer: QualityScorer) -> None:
    v = score(scorer, "What is the capital of Japan?", "Tokyo.")
    assert v.learned is None and v.action == "deliver"


# GSM8K-style word problems "answered" without a result: an abstention, an answer cut mid-calculation, a claim that
# the problem cannot be solved. None may be delivered, whether the rules decide alone or with the answer model.
Q_FRUIT = "Kira bought 3 apples, 5 bananas and 6 oranges. Lola ate 2 pieces of the fruit. How many pieces are left?"
Q_ALARM = (
    "Greg's alarm rang four times the first time it went off today. The second time, it rang three times as long as "
    "the first time, and the third time half as long as the second. How many times did the alarm ring in all?"
)
Q_MEALS = (
    "Mamou has volunteered to distribute 1,360 meals to families. She gave out 64 meals on Friday, 30 meals on "
    "Saturday, and 48 meals on Sunday. How many meals does she have left to distribute?"
)
WORD_PROBLEM_ABSTENTIONS = [
    (
        Q_FRUIT,
        "Lola ate an unknown number of fruits, so we cannot directly find the number of fruits left. If we know which "
        "type of fruit Lola ate and how many, we can subtract that number from the total number of fruits Kira "
        "bought. For example, if Lola ate 1 apple, then 2 apples are left.",
    ),
    (
        Q_FRUIT,
        "Let a be the apples left, so a + 5 + 6 = 14 - 2. But the fruit she ate is not given, so there is a mistake in "
        "the problem statement, and it is not possible to determine how many pieces are left.",
    ),
    (Q_ALARM, "It depends on how long each ring lasted, so I can't say exactly how many times the alarm rang."),
    (Q_MEALS, "Mamou gave out 64 + 30 +"),
    (Q_MEALS, "On the three days she gave out 64 + 30 + 48 = <<64+30+4"),
]


@pytest.mark.parametrize(
    "q, a", WORD_PROBLEM_ABSTENTIONS, ids=["cannot-find", "not-possible", "cannot-say", "cut-mid-sum", "cut-mid-note"]
)
def test_word_problems_answered_without_a_result_are_not_delivered(scorer: QualityScorer, q: str, a: str) -> None:
    assert score(scorer, q, a).action != "deliver"


@pytest.mark.parametrize(
    "q, a",
    [
        (Q_FRUIT, "Kira bought 3 + 5 + 6 = 14 pieces of fruit. Lola ate 2, so 14 - 2 = 12 pieces are left.\n#### 12"),
        (
            Q_ALARM,
            "The first time it rang 4 times. The second time it rang 4 * 3 = 12 times, and the third time "
            "12 / 2 = 6 times. In all, the alarm rang 4 + 12 + 6 = 22 times.\n#### 22",
        ),
        (
            Q_MEALS,
            "Over the three days she gave out 64 + 30 + 48 = 142 meals, so she has 1,360 - 142 = 1,218 meals left to "
            "distribute.\n#### 1218",
        ),
    ],
    ids=["fruit", "alarm-spelled-numbers", "meals"],
)
def test_worked_word_problems_are_left_to_the_arithmetic_rules(scorer: QualityScorer, q: str, a: str) -> None:
    v = score(scorer, q, a)
    assert v.learned is None and v.action == "deliver", v.reasons


def test_hard_failure_escalates_whatever_the_model_says(scorer: QualityScorer) -> None:
    v = asyncio.run(scorer.ascore({"messages": [{"role": "user", "content": LONG_Q}]}, LONG_GOOD, "length", None))
    assert v.action == "escalate" and v.learned is None and v.hard_failures


# --- the artifact ----------------------------------------------------------------------------------------


def test_shipped_artifact_loads_with_its_manifest() -> None:
    m = load_answer_model()
    assert m.manifest["artifact_sha256"] and m.manifest["training_code_sha256"] and m.manifest["label_rule"]
    assert m.manifest["training_data"]["files_sha256"] and m.embedder == m.manifest["embedder"]
    assert np.all(np.diff(m.calib_p) >= 0)


def _copy(tmp_path: Path) -> Path:
    dst = tmp_path / DEFAULT_ARTIFACT.name
    shutil.copy(DEFAULT_ARTIFACT, dst)
    shutil.copy(manifest_path(DEFAULT_ARTIFACT), manifest_path(dst))
    return dst


def test_corrupt_artifact_is_refused(tmp_path: Path) -> None:
    art = _copy(tmp_path)
    data = bytearray(art.read_bytes())
    data[len(data) // 2] ^= 0xFF
    art.write_bytes(bytes(data))
    with pytest.raises(AnswerModelError, match="does not match its manifest"):
        load_answer_model(art)


def test_artifact_without_manifest_or_file_is_refused(tmp_path: Path) -> None:
    art = _copy(tmp_path)
    manifest_path(art).unlink()
    with pytest.raises(AnswerModelError, match="manifest not found"):
        load_answer_model(art)
    with pytest.raises(AnswerModelError, match="not found"):
        load_answer_model(tmp_path / "missing.npz")


def test_artifact_with_a_pickle_inside_is_refused(tmp_path: Path) -> None:
    art = tmp_path / "evil.npz"
    np.savez(art, w_feat=np.array([object()], dtype=object))
    from policies.common.artifacts import sha256_file

    manifest_path(art).write_text(json.dumps({"artifact_sha256": sha256_file(art)}))
    with pytest.raises(AnswerModelError):
        load_answer_model(art)


def test_scorer_falls_back_to_the_rules_when_the_artifact_is_corrupt(tmp_path: Path, caplog) -> None:
    art = _copy(tmp_path)
    art.write_bytes(b"not an npz")
    s = QualitySettings.model_validate({"learned": {"artifact": str(art)}})
    sc = QualityScorer(s)
    assert sc.answer_model is None and "does not match its manifest" in caplog.text
    v = asyncio.run(sc.ascore({"messages": [{"role": "user", "content": LONG_Q}]}, LONG_GOOD, "stop", None))
    assert v.learned is None and 0 <= v.score <= 1
    off = QualityScorer(QualitySettings.model_validate({"learned": {"enabled": False}}))
    assert off.answer_model is None


# --- training --------------------------------------------------------------------------------------------


@pytest.mark.skipif(not (DEFAULT_DATA_DIR / "quality" / "arena_hard").is_dir(), reason="needs ../shared/data")
def test_training_is_reproducible_on_a_small_slice(tmp_path: Path) -> None:
    from policies.quality.train import main as train_main

    a, b = tmp_path / "a" / "answer.npz", tmp_path / "b" / "answer.npz"
    for out in (a, b):
        assert train_main(["--limit", "40", "--skip-cv", "--out", str(out)]) == 0
    assert a.read_bytes() == b.read_bytes()
    ma, mb = (json.loads(manifest_path(p).read_text()) for p in (a, b))
    assert ma["artifact_sha256"] == mb["artifact_sha256"] and ma["training_data"]["limit_per_dataset"] == 40
    model = load_answer_model(a)
    assert set(ma["training_data"]["rows"]) == {"arena_hard", "mmlu_pro", "gsm8k", "mt_bench"}
    assert model.manifest["training_code_sha256"] == ma["training_code_sha256"]
