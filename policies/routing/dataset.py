"""The routing training/evaluation data (RouteLLM outcomes) as labelled requests.

Offline only (training and benchmarks); the proxy never imports this. Each
example carries the per-prompt quality of the weak and the strong model, so the
same rows serve training (label) and evaluation (APGR curve).

Labels: P(weak model clearly worse than strong):
- MMLU, GSM8K: 1 if the weak model is wrong and the strong one right, else 0;
- MT-Bench: judge-score gap (strong - weak, 1..10 scale) / 3, clipped to [0, 1]:
  a gap of 3 points or more counts as "clearly worse".
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "routing"
WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG = "gpt-4-1106-preview"
MT_BENCH_GAP_FOR_CLEARLY_WORSE = 3.0


@dataclass
class Example:
    dataset: str  # "mmlu" | "gsm8k" | "mt_bench"
    group: str  # MMLU subject, MT-Bench category, GSM8K: "gsm8k"
    request: dict[str, Any]
    label: float
    weak_quality: float
    strong_quality: float
    # Evaluation rows (the one routing decision per MT-Bench question); training-only rows are False.
    eval_row: bool = True
    meta: dict[str, Any] = field(default_factory=dict)


def outcomes(examples: list[Example], idx: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
    """(weak, strong) quality of the rows idx: what route_metrics scores a ranking against."""
    rows = [examples[i] for i in idx]
    return np.array([e.weak_quality for e in rows]), np.array([e.strong_quality for e in rows])


def _user(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def _contaminated(root: Path, name: str) -> set[str]:
    path = root / "routellm" / f"{name}_contaminated_prompts.jsonl"
    if not path.exists():
        return set()
    return {json.loads(line)["eval_prompt"].strip() for line in path.read_text().splitlines() if line.strip()}


def _truthy(v: str) -> float:
    return 1.0 if v.strip() == "True" else 0.0


def load_mmlu(root: Path) -> tuple[list[Example], int]:
    drop = _contaminated(root, "mmlu")
    out, dropped = [], 0
    for path in sorted((root / "routellm" / "mmlu").glob("mmlu_*.csv")):
        subject = path.stem.removeprefix("mmlu_")
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                if row["prompt"].strip() in drop:
                    dropped += 1
                    continue
                w, s = _truthy(row[WEAK]), _truthy(row[STRONG])
                out.append(Example("mmlu", subject, _user(row["prompt"]), (1 - w) * s, w, s))
    return out, dropped


def load_gsm8k(root: Path) -> tuple[list[Example], int]:
    drop = _contaminated(root, "gsm8k")
    out, dropped = [], 0
    with (root / "routellm" / "gsm8k_responses.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            if row["prompt"].strip() in drop:
                dropped += 1
                continue
            w, s = _truthy(row[WEAK]), _truthy(row[STRONG])
            out.append(Example("gsm8k", "gsm8k", _user(row["prompt"]), (1 - w) * s, w, s))
    return out, dropped


_FIRST_ANSWER = re.compile(r"### Assistant A:\n(.*?)\n\n### User:", re.DOTALL)


def load_mt_bench(root: Path) -> tuple[list[Example], int]:
    """One eval row per question (routed on turn 1, quality = mean of both turns' scores),
    plus one training-only row per turn with that turn's score gap."""
    base = root / "routellm"
    drop = _contaminated(root, "mt_bench")
    questions = [json.loads(x) for x in (base / "mt_bench_question.jsonl").read_text().splitlines() if x.strip()]
    scores: dict[tuple[int, str, int], float] = {}
    first_answer: dict[int, str] = {}
    for line in (base / "mt_bench_judgements.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        j = json.loads(line)
        scores[(j["question_id"], j["model"], j["turn"])] = float(j["score"])
        if j["model"] == WEAK and j["turn"] == 2:
            m = _FIRST_ANSWER.search(j.get("user_prompt", ""))
            if m:
                first_answer[j["question_id"]] = m.group(1).strip()
    out, dropped = [], 0
    for q in questions:
        qid, turns = q["question_id"], q["turns"]
        if turns[0].strip() in drop:
            dropped += 1
            continue
        try:
            w = [scores[(qid, WEAK, t)] for t in (1, 2)]
            s = [scores[(qid, STRONG, t)] for t in (1, 2)]
        except KeyError:
            continue
        cat = q["category"]
        gap = [min(1.0, max(0.0, (s[i] - w[i]) / MT_BENCH_GAP_FOR_CLEARLY_WORSE)) for i in (0, 1)]
        meta = {"question_id": qid}
        out.append(Example("mt_bench", cat, _user(turns[0]), gap[0], sum(w) / 2, sum(s) / 2, True, meta))
        if len(turns) > 1:
            conv = {
                "messages": [
                    {"role": "user", "content": turns[0]},
                    {"role": "assistant", "content": first_answer.get(qid, "")},
                    {"role": "user", "content": turns[1]},
                ]
            }
            out.append(Example("mt_bench", cat, conv, gap[1], w[1], s[1], False, meta))
    return out, dropped


def load_all(root: Path = DEFAULT_DATA_DIR) -> tuple[list[Example], dict[str, Any]]:
    """All examples and a summary (rows, dropped contaminated prompts) for the manifest."""
    summary: dict[str, Any] = {}
    examples: list[Example] = []
    for name, loader in (("mmlu", load_mmlu), ("gsm8k", load_gsm8k), ("mt_bench", load_mt_bench)):
        rows, dropped = loader(root)
        examples += rows
        summary[name] = {"rows": len(rows), "dropped_contaminated": dropped}
    return examples, summary


def data_fingerprint(root: Path = DEFAULT_DATA_DIR) -> str:
    """sha256 over the data files used, so a manifest names exactly what it was trained on."""
    h = hashlib.sha256()
    for p in sorted((root / "routellm").rglob("*")):
        if p.is_file() and p.suffix in (".csv", ".jsonl"):
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()
