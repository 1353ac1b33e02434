"""Labelled answers for training and evaluating the learned answer scorer. Offline only: the proxy never
imports this (training, `bench/quality_eval.py` and tests do).

Each row is one (question, answer) pair with a 0/1 label "deserves delivery" (`good`) and the group it
must be held out with:

| dataset | rows | answer | good | held out by |
| --- | --- | --- | --- | --- |
| `arena_hard` | 4,465 rated (300 prompts x 15 models) | open-ended chat answer | GPT-4 rating >= 6 (1-10) | prompt, and model |
| `mmlu_pro` | 9,960 | Llama 3.1 8B's worked multiple-choice answer | right letter, read from the text | category |
| `gsm8k` | 2 x 1,307 | Mixtral's and GPT-4's worked maths answers | right final answer | prompt |
| `mt_bench` | 320 | Mixtral's and GPT-4's answers to both turns | GPT-4 rating >= 6 | question |

MT-Bench answer texts are not separate files: they are read out of the judge prompt each judgement
row carries (`user_prompt`, MT-Bench's `single-v1` / `single-math-v1` / `-multi-turn` templates); a
turn-2 row becomes the conversation [turn 1, answer 1, turn 2] and answer 2.
The label rule "rated 6 or more" splits arena-hard's bimodal ratings (1-2 vs 8-10) at the middle of
its thin 3-7 range; issue 17's target reads "rated 5 or lower" as a bad answer, its complement.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# <repo>/../shared/data in a normal checkout (/work/main -> /work/shared/data); SYNQRA_DATA_DIR or
# --data elsewhere (a worktree at /work/wt/<name> sets it).
DEFAULT_DATA_DIR = Path(os.environ.get("SYNQRA_DATA_DIR") or Path(__file__).resolve().parents[3] / "shared" / "data")
GOOD_RATING = 6.0  # judge ratings (1-10) at or above this deserve delivery
DATASETS = ("arena_hard", "mmlu_pro", "gsm8k", "mt_bench")
GSM8K_MODELS = ("mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview")


@dataclass
class LabelledAnswer:
    dataset: str
    group: str  # held out together (a prompt; for MMLU-Pro the row's category decides the folds)
    category: str
    model: str
    messages: list[dict[str, Any]]  # the conversation the answer replies to (last = the user's turn)
    answer: str
    good: float  # 1: deserves delivery
    rating: float | None = None  # the judge's 1-10 rating where there is one
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def question(self) -> str:
        return str(self.messages[-1]["content"])


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def load_arena_hard(root: Path) -> list[LabelledAnswer]:
    out = []
    for line in (root / "quality" / "arena_hard" / "answers.jsonl").open(encoding="utf-8"):
        r = json.loads(line)
        if r.get("score") is None:  # 35 judgements without a rating
            continue
        out.append(
            LabelledAnswer(
                "arena_hard",
                f"arena_hard/{r['question_id']}",
                r["category"],
                r["model"],
                _user(r["prompt"]),
                r["answer"].strip(),
                float(r["score"] >= GOOD_RATING),
                float(r["score"]),
            )
        )
    return out


def load_mmlu_pro(root: Path) -> list[LabelledAnswer]:
    """An answer that never reaches a letter (`pred_from_text` false: mostly loops to the token limit)
    is wrong whatever the run recorded, as the data's README advises."""
    out = []
    for line in (root / "quality" / "mmlu_pro_cot" / "llama31_8b_instruct.jsonl").open(encoding="utf-8"):
        r = json.loads(line)
        prompt = re.sub(r"\s*Answer:\s*$", "", r["prompt"].strip())
        good = float(bool(r["correct"]) and bool(r["pred_from_text"]))
        out.append(
            LabelledAnswer(
                "mmlu_pro",
                f"mmlu_pro/{r['category']}",
                r["category"],
                "Llama-3.1-8B-Instruct",
                _user(prompt),
                r["answer_text"].strip(),
                good,
                meta={"question_id": r["question_id"]},
            )
        )
    return out


def load_gsm8k(root: Path) -> list[LabelledAnswer]:
    """Both models' answers (contaminated prompts dropped, as the router's data does)."""
    rr = root / "routing" / "routellm"
    bad = {json.loads(line)["eval_prompt"] for line in (rr / "gsm8k_contaminated_prompts.jsonl").open()}
    out = []
    for r in csv.DictReader((rr / "gsm8k_responses.csv").open(encoding="utf-8")):
        if r["prompt"] in bad:
            continue
        pid = hashlib.sha1(r["prompt"].encode()).hexdigest()[:10]
        for model in GSM8K_MODELS:
            out.append(
                LabelledAnswer(
                    "gsm8k",
                    f"gsm8k/{pid}",
                    "gsm8k",
                    model,
                    _user(r["prompt"]),
                    r[model + "_response"].strip(),
                    float(r[model] == "True"),
                )
            )
    return out


_SINGLE = re.compile(
    r"\[Question\]\n(.*?)\n\n(?:\[The Start of Reference Answer\].*?\[The End of Reference Answer\]\n\n)?"
    r"\[The Start of Assistant's Answer\]\n(.*)\n\[The End of Assistant's Answer\]\s*$",
    re.S,
)
_CONV = re.compile(
    r"<\|The Start of Assistant A's Conversation with User\|>\n\n### User:\n(.*?)\n\n### Assistant A:\n(.*?)"
    r"\n\n### User:\n(.*?)\n\n### Assistant A:\n(.*)\n\n<\|The End of Assistant A's Conversation with User\|>",
    re.S,
)


def parse_mt_bench_judge_prompt(user_prompt: str) -> tuple[list[dict[str, Any]], str] | None:
    """(messages, answer) out of an MT-Bench judge prompt (single or multi-turn template), None if unknown."""
    m = _CONV.search(user_prompt)
    if m:
        q1, a1, q2, a2 = m.groups()
        return [
            {"role": "user", "content": q1},
            {"role": "assistant", "content": a1},
            {"role": "user", "content": q2},
        ], a2
    m = _SINGLE.search(user_prompt)
    if m:
        return _user(m.group(1)), m.group(2)
    return None


def load_mt_bench(root: Path) -> list[LabelledAnswer]:
    rr = root / "routing" / "routellm"
    cats = {
        json.loads(line)["question_id"]: json.loads(line)["category"]
        for line in (rr / "mt_bench_question.jsonl").open()
    }
    out = []
    for line in (rr / "mt_bench_judgements.jsonl").open(encoding="utf-8"):
        r = json.loads(line)
        parsed = parse_mt_bench_judge_prompt(r["user_prompt"])
        if parsed is None or r.get("score") is None:
            continue
        messages, answer = parsed
        out.append(
            LabelledAnswer(
                "mt_bench",
                f"mt_bench/{r['question_id']}",
                cats.get(r["question_id"], "?"),
                r["model"],
                messages,
                answer.strip(),
                float(float(r["score"]) >= GOOD_RATING),
                float(r["score"]),
                meta={"turn": r["turn"]},
            )
        )
    return out


LOADERS = {"arena_hard": load_arena_hard, "mmlu_pro": load_mmlu_pro, "gsm8k": load_gsm8k, "mt_bench": load_mt_bench}
DATA_FILES = (
    "quality/arena_hard/answers.jsonl",
    "quality/mmlu_pro_cot/llama31_8b_instruct.jsonl",
    "routing/routellm/gsm8k_responses.csv",
    "routing/routellm/gsm8k_contaminated_prompts.jsonl",
    "routing/routellm/mt_bench_judgements.jsonl",
    "routing/routellm/mt_bench_question.jsonl",
)


def load_all(root: Path = DEFAULT_DATA_DIR, datasets: tuple[str, ...] = DATASETS) -> list[LabelledAnswer]:
    missing = [f for f in DATA_FILES if not (root / f).is_file()]
    if missing:
        raise FileNotFoundError(f"quality data missing under {root}: {missing} (set SYNQRA_DATA_DIR or --data)")
    return [row for d in datasets for row in LOADERS[d](root)]


def data_hashes(root: Path = DEFAULT_DATA_DIR) -> dict[str, str]:
    """sha256 of each data file used, for the manifest."""
    return {f: hashlib.sha256((root / f).read_bytes()).hexdigest() for f in DATA_FILES}
