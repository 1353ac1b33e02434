"""How far the router's signals can go on this data, chosen with hindsight (an optimistic bound).

`bench/routing_eval.py` reports what the router reaches honestly (nested out of fold). This script asks
the opposite question, to tell a tuning problem from a data problem:
1. **Hindsight grid.** Every candidate of a grid wider than training's (lam up to 100, LiteLLM-score
   weight mu up to 8, with and without the token term, intercepts per group or per dataset) is scored
   out of fold with the training folds (whole groups of every dataset held out), and the best candidate
   is picked per dataset *after* seeing the held-out results. No deployable router can do better than
   this choice on these signals.
2. **Subject oracle on MMLU.** Pooled MMLU APGR is mostly about ordering subjects (see routing_eval's
   within/between table). Each prompt's out-of-fold score is mixed with the mean score of its own subject
   (z-scored; mix weight chosen with hindsight), which a router could only do if it knew the subject of
   an unseen prompt and the mean over all its prompts: a ceiling for each signal's subject ordering.

    cd /work/main && LITELLM_LOCAL_MODEL_COST_MAP=True HF_HUB_OFFLINE=1 \
        nice -n 10 .venv/bin/python -m bench.routing_ceiling

Prints a table and writes bench/results/routing_ceiling.md (a few minutes; embeddings are cached as in
routing_eval).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

from policies.common.offline import apply_offline_env  # noqa: E402

apply_offline_env()

from bench.measure import write_result  # noqa: E402
from bench.routing_eval import TARGET_MMLU_APGR, complexity_router_scores, length_scores  # noqa: E402
from policies.common.artifacts import manifest_path  # noqa: E402
from policies.embedding.names import STATIC, embedder_for, token_source  # noqa: E402
from policies.routing import train as T  # noqa: E402
from policies.routing.dataset import DATASETS, DEFAULT_DATA_DIR, Example, load_all  # noqa: E402
from policies.routing.scorer import DEFAULT_ARTIFACT  # noqa: E402

WIDE_LAM = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 100.0)
WIDE_MU = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
WIDE_L2_EMB = (10.0, 100.0)
MIX = np.linspace(0.0, 1.0, 11)


def wide_grid(max_chars: tuple[int, ...]) -> list[T.Hyper]:
    tokens = [(0.0, 0.0)] + [(nu, l2) for nu in (0.5, 1.0) for l2 in T.GRID_L2_TOK]
    combos = itertools.product(max_chars, (True, False), WIDE_L2_EMB, WIDE_LAM, WIDE_MU, tokens)
    return [T.Hyper(mc, lam, l2, mu, nu, l2_tok, wg) for mc, wg, l2, lam, mu, (nu, l2_tok) in combos]


def apgr(examples: list[Example], scores: np.ndarray) -> dict[str, float]:
    return {d: f["apgr"] for d, f in T.metrics_by_dataset(examples, scores).items()}


def zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() or 1.0)


def subject_oracle(examples: list[Example], scores: np.ndarray) -> tuple[float, float]:
    """(best MMLU APGR, its mix weight) of (1 - a) z(score) + a z(mean score of the prompt's subject)."""
    mmlu = np.array([e.dataset == "mmlu" for e in examples])
    subject = np.array([e.group for e in examples])[mmlu]
    z = zscore(scores[mmlu])
    names, inverse = np.unique(subject, return_inverse=True)
    means = zscore(np.bincount(inverse, weights=z) / np.bincount(inverse))[inverse]
    best = (-1.0, 0.0)
    for a in MIX:
        mixed = np.zeros(len(examples))
        mixed[mmlu] = (1 - a) * z + a * means
        best = max(best, (apgr(examples, mixed)["mmlu"], float(a)))
    return best


def shipped_setting() -> T.Hyper:
    """The hyperparameters of the committed artifact, from its manifest."""
    hp = json.loads(manifest_path(DEFAULT_ARTIFACT).read_text())["hyperparameters"]
    return T.Hyper(
        hp["max_chars"], hp["lam"], hp["l2_emb"], hp["mu"], hp["nu"], hp["l2_tok"], hp.get("within_groups", True)
    )


def report(examples: list[Example], baselines: dict[str, np.ndarray], oof: dict[T.Hyper, np.ndarray]) -> list[str]:
    base = {name: apgr(examples, s) for name, s in baselines.items()}
    bar = {d: max(b[d] for b in base.values()) for d in DATASETS}  # the issue: above both baselines
    figs = {hp: apgr(examples, s) for hp, s in oof.items()}
    hps = list(oof)

    def meets(f: dict[str, float]) -> bool:
        return all(f[d] > bar[d] for d in DATASETS) and f["mmlu"] >= TARGET_MMLU_APGR

    def margin(hp: T.Hyper) -> float:
        return min(figs[hp][d] - bar[d] for d in DATASETS)

    rows = {f"best for {d}": max(hps, key=lambda hp, d=d: figs[hp][d]) for d in DATASETS}
    rows["best worst-case margin over both baselines"] = max(hps, key=margin)
    shipped = shipped_setting()
    if shipped in oof:
        rows["shipped setting (for reference)"] = shipped
    max_chars = sorted({hp.max_chars for hp in hps})
    lines = [
        "# Routing ceiling on this data (hindsight choice, optimistic)",
        "",
        f"Command: `.venv/bin/python -m bench.routing_ceiling`. {len(hps)} candidates (max_chars {max_chars}, "
        f"intercepts per group or per dataset, l2_emb {list(WIDE_L2_EMB)}, lam {list(WIDE_LAM)}, mu {list(WIDE_MU)}, "
        f"token term nu [0, 0.5, 1] x l2_tok {list(T.GRID_L2_TOK)}), each scored out of fold with the training "
        "folds (whole groups of every dataset held out), then chosen with hindsight on the held-out results. "
        "APGR pooled per dataset.",
        "",
        "| router | " + " | ".join(DATASETS) + " | worst margin over both baselines | setting |",
        "|" + " --- |" * (len(DATASETS) + 3),
    ]
    for name, f in base.items():
        lines.append(f"| {name} | " + " | ".join(f"{f[d]:.3f}" for d in DATASETS) + " | | |")
    for name, hp in rows.items():
        f = figs[hp]
        cells = " | ".join(f"{f[d]:.3f}" for d in DATASETS)
        lines.append(f"| {name} | {cells} | {margin(hp):+.4f} | {hp.label} |")
    lines += [
        "",
        f"Candidates meeting every target at once (above both baselines on all six, MMLU >= {TARGET_MMLU_APGR}): "
        f"**{sum(meets(f) for f in figs.values())} of {len(hps)}**.",
        "",
        "MMLU subject oracle: each prompt's score mixed with the mean score of its own (held-out) subject, mix "
        f"weight chosen with hindsight from {MIX[0]:.1f} to {MIX[-1]:.1f}:",
        "",
        "| signal | MMLU APGR as is | with the subject oracle | mix weight |",
        "| --- | --- | --- | --- |",
    ]
    signals = {**baselines, "ours, best for MMLU": oof[rows["best for mmlu"]]}
    if shipped in oof:
        signals["ours, shipped setting"] = oof[shipped]
    for name, s in signals.items():
        best, a = subject_oracle(examples, s)
        lines.append(f"| {name} | {apgr(examples, s)['mmlu']:.3f} | {best:.3f} | {a:.1f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--max-chars", type=int, nargs="+", default=list(T.GRID_MAX_CHARS))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    examples, _ = load_all(args.data)
    baselines = {
        "prompt length": length_scores(examples),
        "LiteLLM complexity_router": complexity_router_scores(examples),
    }
    embedder = embedder_for(STATIC)
    tokenize, vocab = token_source(embedder)
    max_chars = tuple(args.max_chars)
    m = T.build_matrices(examples, embedder.embed, STATIC, max_chars, tokenize, vocab)
    oof = T.cv_scores(m, np.arange(len(examples)), wide_grid(max_chars))
    text = "\n".join([*report(examples, baselines, oof), "", f"Run time {time.perf_counter() - t0:.0f} s."])
    print(text)
    write_result("routing_ceiling", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
