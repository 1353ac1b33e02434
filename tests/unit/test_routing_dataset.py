"""The routing data loaders, the label rule, and the hold-outs, on small files in the shared data's formats."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from policies.embedding.names import embedder_for
from policies.routing import dataset as D
from policies.routing import train as T

MMLU_PRO_MODELS = [
    "Meta-Llama-3_1-8B-Instruct",
    "Phi-3-mini-4k-instruct",
    "Mistral-7B-Instruct-v0.2",
    "Qwen1.5-7B-Chat",
    "Yi-6b-Chat",
    "Llama-2-7b-hf",
    "gpt-4o",
    "gemini-1.5-pro-002",
    "gemini-3.1-pro-preview",
]
SUBJECTS = ("anatomy", "virology", "marketing")


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def make_data(root: Path) -> Path:
    """A routing folder (and ../quality) in the shared data's formats, a few rows each."""
    rl = root / "routing" / "routellm"
    for subject in SUBJECTS:
        rows = [[f"{subject} question {j}?\nA. x\nB. y\nAnswer:", str(j % 2 == 0), str(j % 3 != 0)] for j in range(6)]
        rows.append(["contaminated question", "True", "True"])
        write_csv(rl / "mmlu" / f"mmlu_{subject}.csv", ["prompt", D.WEAK, D.STRONG], rows)
    write_jsonl(rl / "mmlu_contaminated_prompts.jsonl", [{"eval_prompt": "contaminated question"}])
    gsm = [[f"How many apples {j}?", "False", "True"] for j in range(10)]
    write_csv(rl / "gsm8k_responses.csv", ["prompt", D.WEAK, D.STRONG], gsm)
    write_jsonl(
        rl / "mt_bench_question.jsonl",
        [
            {"question_id": 1, "category": "writing", "turns": ["Write a poem.", "Make it shorter."]},
            {"question_id": 2, "category": "math", "turns": ["Solve x^2 = 4.", "And x^3 = 8?"]},
        ],
    )
    judgements = []
    for qid, (w, s) in {1: ((8, 9), (9, 9)), 2: ((3, 4), (10, 9))}.items():
        for model, sc in ((D.WEAK, w), (D.STRONG, s)):
            for turn in (1, 2):
                prompt = "### User:\nq\n\n### Assistant A:\nfirst answer\n\n### User:\nq2" if turn == 2 else "q"
                judgements.append(
                    {"question_id": qid, "model": model, "turn": turn, "score": sc[turn - 1], "user_prompt": prompt}
                )
    write_jsonl(rl / "mt_bench_judgements.jsonl", judgements)
    # MMLU-Pro: two rows from RouteLLM's subjects, two from a STEM source, one with an empty cell.
    header = ["question_id", "src", "category", "question", "options", "answer", "prompt", *MMLU_PRO_MODELS]

    def pro(qid: int, src: str, weak: list[str], strong: list[str]) -> list[object]:
        return [qid, src, "other", f"q{qid}", "[]", "A", f"Pro question {qid}\nA. a\nAnswer:", *weak, "0", *strong, "1"]

    write_csv(
        root / "routing" / "mmlu_pro" / "outcomes.csv",
        header,
        [
            pro(1, "ori_mmlu-anatomy", ["1", "0", "0", "0", "0"], ["1", "1"]),
            pro(2, "ori_mmlu-virology", ["1", "1", "1", "1", "1"], ["1", "0"]),
            pro(3, "stemez-Physics", ["0", "0", "0", "0", "0"], ["1", ""]),  # gemini has no record here
            pro(4, "stemez-Business", ["1", "1", "0", "0", "0"], ["0", "0"]),
            pro(5, "scibench-atkins", ["0", "0", "0", "0", "0"], ["1", "1"]),
        ],
    )
    weak_llm, strong_llm = D.WEAK_MODELS["llmrouter"], D.STRONG_MODELS["llmrouter"]
    records = []
    for task, weak, strong in (
        ("mbpp", [1, 0, 0, 0], [1, 1]),
        ("commongen", [0.5, 0.5, 1, 1], [1, 0.5]),
        ("agentverse-mgsm", [0, 0, 0, 0], [1, 1]),
        ("natural_qa", [1, 1, 1, 1], [0, 0]),
    ):
        scores = {**dict(zip(weak_llm, weak)), **dict(zip(strong_llm, strong)), "codegemma-7b": 0.0}
        records.append({"question": f"{task} prompt", "task": task, "cluster_id": 0, "scores": scores})
    (root / "routing" / "llmrouter").mkdir(parents=True)
    (root / "routing" / "llmrouter" / "train.json").write_text(json.dumps(records))
    answers = []
    for q in range(7):
        for m in (*D.WEAK_MODELS["arena_hard"], *D.STRONG_MODELS["arena_hard"], "llama-13b"):
            weak = m in D.WEAK_MODELS["arena_hard"]
            unrated = q == 6 or (q == 5 and m == "openchat_3.5")
            score = None if unrated else float(2 + q if weak else 9)
            answers.append({"question_id": f"q{q}", "prompt": f"arena prompt {q}", "model": m, "score": score})
    write_jsonl(root / "quality" / "arena_hard" / "answers.jsonl", answers)
    return root / "routing"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data(tmp_path_factory.mktemp("shared"))


def test_label_rule_combines_pairs() -> None:
    # 0/1: share of (weak, strong) pairs where the weak fails and the strong succeeds.
    label, w, s = D.binary_label([1, 0, 0, 0], [1, 1])
    assert (label, w, s) == (pytest.approx(0.75), 0.25, 1.0)
    assert D.binary_label([1], [0])[0] == 0.0 and D.binary_label([0], [1])[0] == 1.0
    # Judge scores: clip(strong - weak, 0, 3) / 3 per pair, averaged (not the clipped mean gap).
    label, w, s = D.judged_label([2.0, 9.0], [9.0, 10.0])
    pairs = [min(3.0, max(0.0, b - a)) / 3 for a in (2.0, 9.0) for b in (9.0, 10.0)]
    assert label == pytest.approx(np.mean(pairs)) and (w, s) == (5.5, 9.5)
    assert D.judged_label([9.0], [7.0])[0] == 0.0


def test_loaders_read_every_dataset(data: Path) -> None:
    examples, summary = D.load_all(data)
    assert summary["mmlu"] == {"rows": 18, "dropped": 3}  # contaminated prompts dropped
    assert summary["llmrouter"] == {"rows": 3, "dropped": 1}  # agentverse-mgsm: RouteLLM GSM8K problems
    assert summary["arena_hard"] == {"rows": 6, "dropped": 1}  # no rated answer on one side
    by = {d: [e for e in examples if e.dataset == d] for d in D.DATASETS}
    pro = {e.meta["question_id"]: e for e in by["mmlu_pro"]}
    assert pro["1"].label == pytest.approx(0.8 * 1.0) and pro["1"].group == "anatomy" and pro["1"].key == "mmlu:anatomy"
    assert pro["3"].strong_quality == 1.0, "an empty cell is no outcome, not a failure"
    assert pro["4"].label == 0.0 and pro["4"].group == "stemez-Business" and pro["4"].key == "mmlu_pro:stemez-Business"
    assert all(e.weak_quality <= 1 for e in by["mmlu_pro"])
    llm = {e.group: e for e in by["llmrouter"]}
    assert llm["mbpp"].label == pytest.approx(0.75) and llm["natural_qa"].label == 0.0
    assert llm["commongen"].weak_quality == 0.75 and llm["commongen"].label == pytest.approx(0.25 * 0.75)
    arena = {e.meta["question_id"]: e for e in by["arena_hard"]}
    assert arena["q0"].weak_quality == 2.0 and arena["q0"].strong_quality == 9.0 and arena["q0"].label == 1.0
    assert arena["q5"].weak_quality == 7.0, "an unrated answer is left out of its side's mean"
    assert {e.group for e in by["arena_hard"]} <= {f"fold{i}" for i in range(D.ARENA_HARD_FOLDS)}
    mt = [e for e in by["mt_bench"] if e.meta["question_id"] == 2]
    assert [e.eval_row for e in mt] == [True, False] and mt[0].label == 1.0
    assert mt[1].request["messages"][1]["content"] == "first answer"
    assert by["mmlu"][0].key == "mmlu:anatomy"
    digests = D.data_fingerprint(data)
    assert "quality/arena_hard/answers.jsonl" in digests and "routing/mmlu_pro/outcomes.csv" in digests


def test_mmlu_subjects_are_held_out_of_both_datasets(data: Path) -> None:
    examples, _ = D.load_all(data)
    keys = T.leave_out_groups(examples)
    everything = np.arange(len(examples))
    for _, test in T.folds(examples):
        train = np.setdiff1d(everything, test)
        assert not set(keys[test]) & set(keys[train]), "no group on both sides"
    ds = np.array([e.dataset for e in examples])
    for _, test in T.folds(examples):
        subjects = {e.group for e in (examples[i] for i in test) if e.dataset == "mmlu"}
        pro_subjects = {examples[i].group for i in test if ds[i] == "mmlu_pro" and examples[i].key.startswith("mmlu:")}
        assert pro_subjects <= subjects, "an MMLU-Pro row of a subject is held out with the subject"


def test_leaving_a_dataset_out_drops_the_groups_it_shares(data: Path) -> None:
    examples, _ = D.load_all(data)
    m = T.Matrices(
        examples,
        {},
        np.zeros((len(examples), 1)),
        np.zeros(len(examples)),
        np.zeros(len(examples)),
        np.array([e.dataset for e in examples]),
        T.sample_weights(examples),
        T.leave_out_groups(examples),
    )
    train, test = T.leave_dataset_out(m, "mmlu")
    assert set(m.dataset[test]) == {"mmlu"}
    assert not any(examples[i].key.startswith("mmlu:") for i in train), "MMLU-Pro rows of MMLU subjects leave too"
    assert {examples[i].meta["src"] for i in train if m.dataset[i] == "mmlu_pro"} == {
        "stemez-Physics",
        "stemez-Business",
        "scibench-atkins",
    }
    train, test = T.leave_dataset_out(m, "arena_hard")
    assert "arena_hard" not in set(m.dataset[train]) and len(train) + len(test) == len(examples)


def test_sample_weights_split_each_dataset_between_its_groups(data: Path) -> None:
    examples, _ = D.load_all(data)
    w = T.sample_weights(examples)
    ds = np.array([e.dataset for e in examples])
    totals = {d: w[ds == d].sum() for d in D.DATASETS}
    for d in D.DATASETS:
        assert totals[d] / totals["mmlu"] == pytest.approx(T.DATASET_WEIGHT[d] / T.DATASET_WEIGHT["mmlu"])
    assert w.mean() == pytest.approx(1.0)


def test_training_is_reproducible_and_the_artifact_routes(data: Path, tmp_path: Path) -> None:
    """`synqra train-router` twice on the same data: byte-identical weights; the artifact loads and decides."""
    from policies.routing.router import Router
    from policies.routing.scorer import load_artifact
    from tests.unit.test_routing_router import make_config

    outs = [tmp_path / f"run{i}" / "router.npz" for i in range(2)]
    for out in outs:
        assert T.main(["--data", str(data), "--out", str(out), "--skip-cv"]) == 0
    assert outs[0].read_bytes() == outs[1].read_bytes()
    manifests = [json.loads(o.with_suffix(".manifest.json").read_text()) for o in outs]
    assert manifests[0] == manifests[1]
    man = manifests[0]
    assert man["training_data"]["rows"]["mmlu_pro"]["rows"] == 5 and "label_rule" in man["training_data"]
    assert man["training_data"]["weak_models"]["arena_hard"] == list(D.WEAK_MODELS["arena_hard"])
    scorer = load_artifact(outs[0])
    router = Router.from_config(make_config(artifact_path=str(outs[0])), embedder_for, lookup=lambda _: None)
    assert router.scorer.manifest == scorer.manifest
    d = router.decide({"messages": [{"role": "user", "content": "What is your pricing?"}]})
    assert d.features["scorer"] == "learned" and 0.0 <= d.score <= 1.0
