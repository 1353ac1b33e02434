"""A quicker read of bench/routing_eval.py's first table, for trying router changes.

Same data, matrices and protocols (the functions of policies/routing/train.py), but:
- `--fixed SETTING ...` scores given settings (Hyper labels, e.g. 1024/0.5/100.0/2.0/0.5/1000.0/dataset)
  without the inner selection (not nested: a screen, never a reported figure);
- without `--fixed`, the nested protocols exactly as routing_eval runs them, on the `--left-out`
  datasets only (and the held-out-group folds unless `--no-held-out`);
- `--set NAME=VALUE` overrides a module constant of train.py first (e.g. GRID_LAM=0.25,0.5).
The baselines are train.baseline_scores (LiteLLM's score by complexity.py, equal to its classify()).

    LITELLM_LOCAL_MODEL_COST_MAP=True HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python -m bench.routing_quick \
        --left-out gsm8k arena_hard
"""

from __future__ import annotations

import argparse
import ast
import time
from pathlib import Path

import numpy as np

from policies.common.offline import apply_offline_env  # noqa: E402

apply_offline_env()

from policies.embedding.names import STATIC, embedder_for, token_source  # noqa: E402
from policies.routing import train as T  # noqa: E402
from policies.routing.dataset import DATASETS, DEFAULT_DATA_DIR, load_all  # noqa: E402


def parse_setting(label: str) -> T.Hyper:
    mc, lam, l2, mu, nu, l2_tok, mode = label.split("/")
    return T.Hyper(int(mc), float(lam), float(l2), float(mu), float(nu), float(l2_tok), mode == "group")


def override(assignment: str) -> None:
    name, value = assignment.split("=", 1)
    old = getattr(T, name)
    new = ast.literal_eval(value)
    if isinstance(old, tuple) and not isinstance(new, tuple):
        new = (new,)
    setattr(T, name, new)


def fixed_scores(m: T.Matrices, hp: T.Hyper, left_out: list[str], held_out: bool) -> tuple[np.ndarray, np.ndarray]:
    """Held-out-group and left-out-dataset scores of one setting, no inner selection."""
    held, lodo = np.full(len(m.examples), np.nan), np.full(len(m.examples), np.nan)
    everything = np.arange(len(m.examples))
    if held_out:
        for _, test in T.folds(m.examples):
            held[test] = T.score_rows(T.fit(m, np.setdiff1d(everything, test), hp, STATIC), m, test)
    for d in left_out:
        train, test = T.leave_dataset_out(m, d)
        lodo[test] = T.score_rows(T.fit(m, train, hp, STATIC), m, test)
    return held, lodo


def table(m: T.Matrices, held: np.ndarray, lodo: np.ndarray, title: str) -> str:
    base = {n: T.metrics_by_dataset(m.examples, s) for n, s in T.baseline_scores(m.examples).items()}
    h = T.metrics_by_dataset(m.examples, np.nan_to_num(held, nan=0.0))
    lo = T.metrics_by_dataset(m.examples, np.nan_to_num(lodo, nan=0.0))
    lines = [title, "| data | length | LiteLLM | held-out groups | left out | held margin | left margin |"]
    worst = 1.0
    for d in DATASETS:
        bar = max(b[d]["apgr"] for b in base.values())
        cells = [base["prompt length"][d]["apgr"], base["LiteLLM complexity_router"][d]["apgr"]]
        has_h = not np.isnan(held[m.dataset == d]).any()
        has_l = not np.isnan(lodo[m.dataset == d]).any()
        hv = h[d]["apgr"] if has_h else float("nan")
        lv = lo[d]["apgr"] if has_l else float("nan")
        if has_l:
            worst = min(worst, lv - bar)
        lines.append(
            f"| {d} | {cells[0]:.3f} | {cells[1]:.3f} | {hv:.3f} | {lv:.3f} | {hv - bar:+.3f} | {lv - bar:+.3f} |"
        )
    lines.append(f"worst left-out margin {worst:+.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--fixed", nargs="*", default=[])
    ap.add_argument("--left-out", nargs="*", default=list(DATASETS))
    ap.add_argument("--no-held-out", action="store_true")
    ap.add_argument("--set", nargs="*", default=[], dest="overrides")
    args = ap.parse_args(argv)
    for a in args.overrides:
        override(a)
    t0 = time.perf_counter()
    examples, _ = load_all(args.data)
    embedder = embedder_for(STATIC)
    tokenize, vocab = token_source(embedder)
    m = T.build_matrices(examples, embedder.embed, STATIC, tuple(T.GRID_MAX_CHARS), tokenize, vocab)
    print(f"matrices {time.perf_counter() - t0:.0f} s", flush=True)
    for label in args.fixed:
        held, lodo = fixed_scores(m, parse_setting(label), args.left_out, not args.no_held_out)
        print(table(m, held, lodo, f"fixed {label} ({time.perf_counter() - t0:.0f} s)"), flush=True)
    if not args.fixed:
        hps = T.grid(tuple(T.GRID_MAX_CHARS), tokens=tokenize is not None)
        held = np.full(len(examples), np.nan)
        if not args.no_held_out:
            held, chosen = T.nested_out_of_fold_scores(m, hps, STATIC)
            print("held-out picks:", [c["setting"] for c in chosen])
        lodo, chosen_l = T.leave_one_dataset_out_scores(m, hps, STATIC, tuple(args.left_out))
        print("left-out picks:", [c["setting"] for c in chosen_l])
        print(table(m, held, lodo, f"nested ({time.perf_counter() - t0:.0f} s)"), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
