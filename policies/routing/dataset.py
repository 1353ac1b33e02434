"""The routing training/evaluation data as labelled requests.

Offline only (training and benchmarks); the proxy never imports this. Each
example carries the per-prompt quality of the weak and the strong side, so the
same rows serve training (label, gap) and evaluation (APGR curve).

Datasets (folders under ../shared/data/; READMEs there):
- `mmlu`, `gsm8k`, `mt_bench`: RouteLLM (`routing/routellm/`), Mixtral-8x7B vs GPT-4-1106;
- `mmlu_pro`: MMLU-Pro (`routing/mmlu_pro/outcomes.csv`), 0/1 outcomes of 23 models;
- `llmrouter`: LLMRouter's DCRouter split (`routing/llmrouter/train.json`), 14 tasks, 9 open models;
- `arena_hard`: 300 real Chatbot Arena prompts, 15 models rated 1-10 by GPT-4
  (`quality/arena_hard/answers.jsonl`).

Label rule. Where a dataset has several models on each side, the weak side is
the models closest to the local tier (instruction-tuned 4-9B models) and the
strong side the GPT-4-class models (or, in LLMRouter, its strongest), and a
prompt's quality on a side is the mean over that side's models (`WEAK_MODELS`,
`STRONG_MODELS`). The combined label is the share of (weak, strong) pairs in
which the weak model is clearly worse:
- 0/1 outcomes: weak wrong and strong right, i.e. (1 - mean weak) * mean strong;
  graded LLMRouter CommonGen cells (0..1) enter the same product;
- 1-10 judge scores (MT-Bench, arena-hard): clip(strong - weak, 0, 3) / 3 per
  pair (a gap of 3 judge points or more counts as "clearly worse"), averaged.
The gap the ranker learns is mean strong minus mean weak quality, in [-1, 1]
(judge points / 3). Averaging several weak models estimates how likely *a*
small model is to fail the prompt, which is what transfers to a local model
nobody here has measured; a single pair would teach one model's quirks.

Leakage between datasets: the 4,738 MMLU-Pro rows from MMLU (`src`
`ori_mmlu-<subject>`) are questions of RouteLLM's MMLU subjects, so they share
their subject's hold-out key (`Example.fold_key`, "mmlu:<subject>"): a subject
held out is held out of both. LLMRouter's 191 `agentverse-mgsm` prompts are
RouteLLM GSM8K test problems with a format suffix: dropped.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# <repo>/../shared/data/routing in a checkout next to the shared data; SYNQRA_ROUTING_DATA overrides
# (e.g. a git worktree elsewhere), and so does every command's --data flag.
DEFAULT_DATA_DIR = Path(
    os.environ.get("SYNQRA_ROUTING_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data" / "routing"
)
# RouteLLM's only pair.
WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG = "gpt-4-1106-preview"
JUDGE_GAP_FOR_CLEARLY_WORSE = 3.0  # judge points (1-10 scale)
MT_BENCH_GAP_FOR_CLEARLY_WORSE = JUDGE_GAP_FOR_CLEARLY_WORSE
# Sides of the combined labels (see the module docstring).
WEAK_MODELS: dict[str, tuple[str, ...]] = {
    "mmlu_pro": (
        "Meta-Llama-3_1-8B-Instruct",
        "Phi-3-mini-4k-instruct",
        "Mistral-7B-Instruct-v0.2",
        "Qwen1.5-7B-Chat",
        "Yi-6b-Chat",
    ),
    "llmrouter": ("llama-3.1-8b-instruct", "gemma-2-9b-it", "qwen2.5-7b-instruct", "mistral-7b-instruct-v0.3"),
    "arena_hard": ("mistralai/Mistral-7B-Instruct-v0.1", "Starling-LM-7B-alpha", "openchat_3.5"),
}
STRONG_MODELS: dict[str, tuple[str, ...]] = {
    "mmlu_pro": ("gpt-4o", "gemini-1.5-pro-002"),
    "llmrouter": ("llama-3.1-nemotron-51b-instruct", "llama-3.3-nemotron-super-49b-v1"),
    "arena_hard": ("gpt-4-0314", "gpt-4-1106-preview"),
}
LLMROUTER_DROPPED_TASKS = ("agentverse-mgsm",)  # RouteLLM GSM8K problems (see above)
ARENA_HARD_FOLDS = 5  # arena-hard has no topic labels: held out in seeded random folds of prompts
FOLD_SEED = 20240611
DATASETS = ("mmlu", "gsm8k", "mt_bench", "mmlu_pro", "llmrouter", "arena_hard")
OPEN_ENDED = ("mt_bench", "arena_hard")


@dataclass
class Example:
    dataset: str  # one of DATASETS
    group: str  # MMLU subject, MT-Bench category, MMLU-Pro source, LLMRouter task, arena-hard fold
    request: dict[str, Any]
    label: float  # P(weak clearly worse), see the module docstring
    weak_quality: float
    strong_quality: float
    # Evaluation rows (the one routing decision per MT-Bench question); training-only rows are False.
    eval_row: bool = True
    meta: dict[str, Any] = field(default_factory=dict)
    # What is held out together, across datasets ("mmlu:<subject>" for RouteLLM MMLU and the
    # MMLU-Pro rows of that subject); empty: "<dataset>:<group>".
    fold_key: str = ""

    @property
    def key(self) -> str:
        return self.fold_key or f"{self.dataset}:{self.group}"


def outcomes(examples: list[Example], idx: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
    """(weak, strong) quality of the rows idx: what route_metrics scores a ranking against."""
    rows = [examples[i] for i in idx]
    return np.array([e.weak_quality for e in rows]), np.array([e.strong_quality for e in rows])


def fold_keys(examples: Sequence[Example]) -> np.ndarray:
    return np.array([e.key for e in examples])


def _user(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def binary_label(weak: Sequence[float], strong: Sequence[float]) -> tuple[float, float, float]:
    """(label, mean weak, mean strong) of 0/1 (or 0..1 graded) outcomes: the share of (weak, strong)
    pairs where the weak model fails and the strong one succeeds, (1 - mean weak) * mean strong."""
    w, s = float(np.mean(weak)), float(np.mean(strong))
    return (1.0 - w) * s, w, s


def judged_label(weak: Sequence[float], strong: Sequence[float]) -> tuple[float, float, float]:
    """(label, mean weak, mean strong) of 1-10 judge scores: per (weak, strong) pair
    clip(strong - weak, 0, 3) / 3, averaged; the qualities stay in judge points."""
    gaps = np.subtract.outer(np.asarray(strong, float), np.asarray(weak, float))
    label = float(np.mean(np.clip(gaps / JUDGE_GAP_FOR_CLEARLY_WORSE, 0.0, 1.0)))
    return label, float(np.mean(weak)), float(np.mean(strong))


def quality_scale(dataset: str) -> float:
    """Divides a quality difference to put it on the [-1, 1] scale of 0/1 outcomes."""
    return JUDGE_GAP_FOR_CLEARLY_WORSE if dataset in OPEN_ENDED else 1.0


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
    paths = sorted((root / "routellm" / "mmlu").glob("mmlu_*.csv"))
    if not paths:
        raise FileNotFoundError(f"no MMLU files under {root / 'routellm' / 'mmlu'}")
    for path in paths:
        subject = path.stem.removeprefix("mmlu_")
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                if row["prompt"].strip() in drop:
                    dropped += 1
                    continue
                label, w, s = binary_label([_truthy(row[WEAK])], [_truthy(row[STRONG])])
                out.append(Example("mmlu", subject, _user(row["prompt"]), label, w, s, fold_key=f"mmlu:{subject}"))
    return out, dropped


def load_gsm8k(root: Path) -> tuple[list[Example], int]:
    drop = _contaminated(root, "gsm8k")
    out, dropped = [], 0
    with (root / "routellm" / "gsm8k_responses.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            if row["prompt"].strip() in drop:
                dropped += 1
                continue
            label, w, s = binary_label([_truthy(row[WEAK])], [_truthy(row[STRONG])])
            out.append(Example("gsm8k", "gsm8k", _user(row["prompt"]), label, w, s))
    return out, dropped


_FIRST_ANSWER = re.compile(r"### Assistant A:\n(.*?)\n\n### User:", re.DOTALL)


def load_mt_bench(root: Path) -> tuple[list[Example], int]:
    """One eval row per question (routed on turn 1, quality = mean of both turns' scores),
    plus one training-only row per second turn with that turn's score gap."""
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
        label = [judged_label([w[i]], [s[i]])[0] for i in (0, 1)]
        meta = {"question_id": qid}
        out.append(Example("mt_bench", cat, _user(turns[0]), label[0], sum(w) / 2, sum(s) / 2, True, meta))
        if len(turns) > 1:
            conv = {
                "messages": [
                    {"role": "user", "content": turns[0]},
                    {"role": "assistant", "content": first_answer.get(qid, "")},
                    {"role": "user", "content": turns[1]},
                ]
            }
            out.append(Example("mt_bench", cat, conv, label[1], w[1], s[1], False, meta))
    return out, dropped


def _cells(row: dict[str, Any], models: Sequence[str]) -> list[float]:
    """The models' outcomes present in a row (MMLU-Pro leaves a cell empty when a run has no record)."""
    out = []
    for m in models:
        v = row.get(m)
        if v is None or v == "":
            continue
        out.append(float(v))
    return out


def load_mmlu_pro(root: Path) -> tuple[list[Example], int]:
    """MMLU-Pro: group = the MMLU subject for `ori_mmlu-<subject>` rows (held out with RouteLLM's
    rows of that subject), else the source set (`stemez-Business`, `theoremQA-Math`, ...)."""
    out, dropped = [], 0
    weak_m, strong_m = WEAK_MODELS["mmlu_pro"], STRONG_MODELS["mmlu_pro"]
    with (root / "mmlu_pro" / "outcomes.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            w, s = _cells(row, weak_m), _cells(row, strong_m)
            if not w or not s:
                dropped += 1
                continue
            label, wq, sq = binary_label(w, s)
            src = row["src"]
            if src.startswith("ori_mmlu-"):
                subject = src.removeprefix("ori_mmlu-")
                group, key = subject, f"mmlu:{subject}"
            else:
                group, key = src, ""
            meta = {"question_id": row["question_id"], "category": row["category"], "src": src}
            out.append(Example("mmlu_pro", group, _user(row["prompt"]), label, wq, sq, True, meta, key))
    return out, dropped


def load_llmrouter(root: Path) -> tuple[list[Example], int]:
    records = json.loads((root / "llmrouter" / "train.json").read_text())
    out, dropped = [], 0
    weak_m, strong_m = WEAK_MODELS["llmrouter"], STRONG_MODELS["llmrouter"]
    for r in records:
        if r["task"] in LLMROUTER_DROPPED_TASKS:
            dropped += 1
            continue
        w, s = _cells(r["scores"], weak_m), _cells(r["scores"], strong_m)
        if not w or not s:
            dropped += 1
            continue
        label, wq, sq = binary_label(w, s)
        out.append(Example("llmrouter", r["task"], _user(r["question"]), label, wq, sq, True, {"task": r["task"]}))
    return out, dropped


def load_arena_hard(quality_root: Path) -> tuple[list[Example], int]:
    """arena-hard: one row per prompt with both sides' mean 1-10 rating (unrated answers skipped);
    group = one of ARENA_HARD_FOLDS seeded random folds of prompts."""
    prompts: dict[str, str] = {}
    ratings: dict[tuple[str, str], float] = {}
    for line in (quality_root / "arena_hard" / "answers.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        j = json.loads(line)
        prompts[j["question_id"]] = j["prompt"]
        if j.get("score") is not None:
            ratings[(j["question_id"], j["model"])] = float(j["score"])
    qids = sorted(prompts)
    perm = np.random.default_rng(FOLD_SEED).permutation(len(qids))
    fold = {qids[p]: f"fold{i % ARENA_HARD_FOLDS}" for i, p in enumerate(perm)}
    out, dropped = [], 0
    for q in qids:
        w = [ratings[(q, m)] for m in WEAK_MODELS["arena_hard"] if (q, m) in ratings]
        s = [ratings[(q, m)] for m in STRONG_MODELS["arena_hard"] if (q, m) in ratings]
        if not w or not s:
            dropped += 1
            continue
        label, wq, sq = judged_label(w, s)
        out.append(Example("arena_hard", fold[q], _user(prompts[q]), label, wq, sq, True, {"question_id": q}))
    return out, dropped


def quality_dir(routing_root: Path) -> Path:
    """`../quality` next to the routing data folder (where arena-hard lives)."""
    return routing_root.parent / "quality"


LOADERS: dict[str, Callable[[Path], tuple[list[Example], int]]] = {
    "mmlu": load_mmlu,
    "gsm8k": load_gsm8k,
    "mt_bench": load_mt_bench,
    "mmlu_pro": load_mmlu_pro,
    "llmrouter": load_llmrouter,
    "arena_hard": lambda root: load_arena_hard(quality_dir(root)),
}


def load_all(root: Path = DEFAULT_DATA_DIR, datasets: Sequence[str] = DATASETS) -> tuple[list[Example], dict[str, Any]]:
    """All examples and a summary (rows, dropped rows) for the manifest."""
    summary: dict[str, Any] = {}
    examples: list[Example] = []
    for name in datasets:
        rows, dropped = LOADERS[name](root)
        examples += rows
        summary[name] = {"rows": len(rows), "dropped": dropped}
    return examples, summary


def data_files(root: Path = DEFAULT_DATA_DIR) -> list[Path]:
    """The files the loaders read."""
    files = [p for p in sorted((root / "routellm").rglob("*")) if p.is_file() and p.suffix in (".csv", ".jsonl")]
    files += [root / "mmlu_pro" / "outcomes.csv", root / "llmrouter" / "train.json"]
    files.append(quality_dir(root) / "arena_hard" / "answers.jsonl")
    return files


def data_fingerprint(root: Path = DEFAULT_DATA_DIR) -> dict[str, str]:
    """sha256 of each data file used (path relative to the data root's parent) and of all of them."""
    out: dict[str, str] = {}
    total = hashlib.sha256()
    for p in data_files(root):
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        rel = p.relative_to(root.parent).as_posix()
        out[rel] = digest
        total.update(rel.encode() + digest.encode())
    out["all"] = total.hexdigest()
    return out
