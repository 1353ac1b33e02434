"""Self-learning, simulated: a deployment on traffic the shipped router never saw, labelled as it goes.

For each deployment one dataset (or half of the MMLU subjects, with their MMLU-Pro questions) is held
out of the router's training: the prior is trained without it by the training code `synqra
train-router` runs (`policies.routing.train.fit`; hyperparameters: the shipped artifact's, or chosen
again by `train.select` with --select). Its prompts then arrive in a random order; after 100, 200,
400 and 1,000 labelled requests `synqra learn`'s run (policies.learning.learn.learn, the very function
both `synqra learn` paths call) fits a candidate from the prior and installs it only if it beats the
router serving then on the newest labelled requests it was not trained on. Each deployment state is scored by APGR on the
traffic not yet seen, beside the static prior, prompt length, LiteLLM's complexity_router score,
the candidate installed without the guard, and a plain logistic regression on the same embedding
learnt from scratch (scikit-learn, C by internal cross-validation). Labels are the datasets' own
(P(weak clearly worse), dataset.py), clean and with 25% flipped (y -> 1 - y); every figure is the
mean over --orders random orders.

    cd /work/main && SYNQRA_ROUTING_DATA=../shared/data/routing LITELLM_LOCAL_MODEL_COST_MAP=True \
        HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python -m bench.self_learning

Writes bench/results/self_learning.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from policies.common.offline import apply_offline_env  # noqa: E402

apply_offline_env()

from bench.measure import write_result  # noqa: E402
from policies.common.learning_settings import LearningSettings  # noqa: E402
from policies.embedding.names import embedder_for, token_source  # noqa: E402
from policies.learning.fit import fit_adapted  # noqa: E402
from policies.learning.learn import Labelled, learn, scores_of  # noqa: E402
from policies.learning.representation import Representation, representation_key  # noqa: E402
from policies.routing import train as T  # noqa: E402
from policies.routing.dataset import DEFAULT_DATA_DIR, load_all  # noqa: E402
from policies.routing.features import FEATURE_NAMES  # noqa: E402
from policies.routing.metrics import route_metrics  # noqa: E402
from policies.routing.scorer import DEFAULT_ARTIFACT, load_artifact  # noqa: E402

log = logging.getLogger("bench.self_learning")
CHECKPOINTS = (100, 200, 400, 1000)
MIN_REST = 40  # a checkpoint is scored only if this much unseen traffic is left (open-ended: 443 requests, 400 + 43)
NOISE = 0.25
LENGTH = FEATURE_NAMES.index("log_chars_last_user")
COMPLEXITY = FEATURE_NAMES.index("litellm_complexity")
ROWS_FILE = Path("/tmp/synqra_self_learning_rows.json")  # every simulated run, for further analysis
TARGETS = {"open_ended": (400, 0.64), "mmlu_subjects": (1000, 0.60)}


@dataclass
class Deployment:
    name: str
    train: np.ndarray  # rows the prior is trained on
    test: np.ndarray  # the deployment's traffic


def deployments(m: T.Matrices, names: list[str]) -> list[Deployment]:
    ds = m.dataset
    out = []
    subjects = sorted({g for g, d in zip(m.groups, ds) if d == "mmlu"})
    rng = np.random.default_rng(T.SEED)
    shuffled = list(rng.permutation(subjects))
    halves = [sorted(shuffled[0::2]), sorted(shuffled[1::2])]
    for name in names:
        if name == "mmlu_subjects":
            for h, held in enumerate(halves):  # half the subjects (19): unseen in RouteLLM's MMLU and MMLU-Pro
                shared = np.isin(m.groups, held)
                out.append(
                    Deployment(f"mmlu_subjects/{h}", np.nonzero(~shared)[0], np.nonzero(shared & (ds == "mmlu"))[0])
                )
        elif name == "open_ended":
            test = np.nonzero(np.isin(ds, ("mt_bench", "arena_hard")))[0]
            out.append(Deployment(name, np.nonzero(~np.isin(ds, ("mt_bench", "arena_hard")))[0], test))
        else:
            train, test = T.leave_dataset_out(m, name)
            out.append(Deployment(name, train, test))
    return out


def representation(m: T.Matrices, prior, rows: np.ndarray) -> Representation:
    """The learning's representation of dataset rows, from the training matrices (same functions)."""
    tok = m.tokens[prior.max_chars][rows] if m.tokens else None
    tokens = (
        [tok.indices[tok.indptr[i] : tok.indptr[i + 1]].astype(np.int64) for i in range(len(rows))]
        if tok is not None
        else [np.zeros(0, np.int64)] * len(rows)
    )
    return Representation(
        m.feats[rows].astype(np.float32), m.embs[prior.max_chars][rows], tokens, representation_key(prior)
    )


def plain_logistic(emb_train: np.ndarray, y: np.ndarray, emb_test: np.ndarray) -> np.ndarray | None:
    from sklearn.linear_model import LogisticRegressionCV

    yb = (y >= 0.5).astype(int)
    if yb.min() == yb.max() or min(yb.sum(), len(yb) - yb.sum()) < 5:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lr = LogisticRegressionCV(Cs=10, cv=5, scoring="neg_log_loss", max_iter=2000).fit(emb_train, yb)
    return lr.decision_function(emb_test)


def simulate(m: T.Matrices, dep: Deployment, prior, orders: int, settings: LearningSettings, vocab: int) -> list[dict]:
    rows = dep.test
    rep = representation(m, prior, rows)
    weak = np.array([m.examples[i].weak_quality for i in rows])
    strong = np.array([m.examples[i].strong_quality for i in rows])
    label = m.label[rows]
    static = scores_of(prior, rep, vocab)
    checkpoints = [n for n in CHECKPOINTS if len(rows) - n >= MIN_REST]
    out = []
    for seed in range(orders):
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(rows))
        flip = rng.random(len(rows)) < NOISE
        for noise in (0.0, NOISE):
            y = np.where(flip, 1.0 - label, label) if noise else label
            current, current_seen = prior, 0
            for n in checkpoints:
                seen, rest = order[:n], order[n:]
                data = Labelled(rep.subset(seen), y[seen], np.ones(n), [("file",)] * n)
                t0 = time.perf_counter()
                res = learn(prior, current, data, settings, vocab, traffic=rep.subset(seen), current_seen=current_seen)
                secs = time.perf_counter() - t0
                if res.installed:
                    current, current_seen = res.scorer, n
                unguarded = (
                    res.scorer
                    if res.installed
                    else (
                        fit_adapted(prior, data.rep, data.label, data.weight, vocab, lam=res.candidate.lam).scorer
                        if res.candidate is not None
                        else prior
                    )
                )
                rrep = rep.subset(rest)
                w, s = weak[rest], strong[rest]
                row = {
                    "deployment": dep.name,
                    "seed": seed,
                    "noise": noise,
                    "n": n,
                    "rest": len(rest),
                    "installed": res.installed,
                    "seconds": round(secs, 2),
                    "lambda": None if res.candidate is None else res.candidate.lam,
                    "learnt (guarded)": route_metrics(scores_of(current, rrep, vocab), w, s).apgr,
                    "learnt, no guard": route_metrics(scores_of(unguarded, rrep, vocab), w, s).apgr,
                    "static prior": route_metrics(static[rest], w, s).apgr,
                    "prompt length": route_metrics(m.feats[rows[rest], LENGTH], w, s).apgr,
                    "LiteLLM complexity_router": route_metrics(m.feats[rows[rest], COMPLEXITY], w, s).apgr,
                }
                lr = plain_logistic(rep.emb[seen], y[seen], rrep.emb)
                row["logistic regression on the embedding"] = (
                    route_metrics(lr, w, s).apgr if lr is not None else float("nan")
                )
                out.append(row)
                log.info("%s", json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}))
    return out


ROUTERS = (
    "learnt (guarded)",
    "learnt, no guard",
    "static prior",
    "prompt length",
    "LiteLLM complexity_router",
    "logistic regression on the embedding",
)


def summarise(rows: list[dict]) -> list[str]:
    lines = [
        "| deployment | labels | n | rest | " + " | ".join(ROUTERS) + " | installed | guarded - static |",
        "|" + " --- |" * (len(ROUTERS) + 6),
    ]
    keys = sorted({(r["deployment"], r["noise"], r["n"]) for r in rows}, key=lambda k: (k[0], k[1], k[2]))
    worst = {}
    for d, noise, n in keys:
        sel = [r for r in rows if (r["deployment"], r["noise"], r["n"]) == (d, noise, n)]
        mean = {k: float(np.nanmean([r[k] for r in sel])) for k in ROUTERS}
        diff = mean["learnt (guarded)"] - mean["static prior"]
        worst[(d, noise, n)] = diff
        cells = " | ".join(f"{mean[k]:.3f}" for k in ROUTERS)
        inst = sum(r["installed"] for r in sel)
        lines.append(
            f"| {d} | {'25% flipped' if noise else 'clean'} | {n} | {sel[0]['rest']} | {cells} | {inst}/{len(sel)} | {diff:+.3f} |"
        )
    return lines


def targets(rows: list[dict]) -> list[str]:
    def mean(dep_prefix: str, n: int, noise: float, key: str) -> float:
        sel = [r[key] for r in rows if r["deployment"].startswith(dep_prefix) and r["n"] == n and r["noise"] == noise]
        return float(np.mean(sel)) if sel else float("nan")

    out = []
    for dep, (n, target) in TARGETS.items():
        v = mean(dep, n, 0.0, "learnt (guarded)")
        out.append(
            f"- {dep} after {n} clean labels: APGR {v:.3f} (target >= {target}): {'met' if v >= target else 'NOT met'}"
        )
    below = []
    for r in {(x["deployment"], x["noise"], x["n"]) for x in rows}:
        sel = [x for x in rows if (x["deployment"], x["noise"], x["n"]) == r]
        d = np.mean([x["learnt (guarded)"] - x["static prior"] for x in sel])
        below.append((d, r))
    d, r = min(below)
    out.append(
        f"- never more than 0.01 below the static prior: worst mean difference {d:+.3f} at {r} "
        f"({'met' if d >= -0.01 else 'NOT met'})"
    )
    noisy = [
        (
            np.mean(
                [
                    x["learnt (guarded)"] - x["static prior"]
                    for x in rows
                    if (x["deployment"], x["n"]) == k and x["noise"]
                ]
            ),
            k,
        )
        for k in {(x["deployment"], x["n"]) for x in rows if x["noise"]}
    ]
    above = sum(v > 0 for v, _ in noisy)
    out.append(f"- with 25% flipped labels above the static prior: {above} of {len(noisy)} (deployment, n) cells")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument(
        "--deployments",
        nargs="+",
        default=["open_ended", "arena_hard", "mmlu_subjects", "gsm8k", "mmlu_pro", "llmrouter"],
    )
    ap.add_argument("--orders", type=int, default=3, help="random orders of each deployment's traffic")
    ap.add_argument(
        "--select", action="store_true", help="choose each prior's hyperparameters again (train.select; slow)"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    t0 = time.perf_counter()
    shipped = load_artifact(DEFAULT_ARTIFACT)
    embedder = embedder_for(shipped.embedder)
    tokenize, vocab = token_source(embedder)
    examples, summary = load_all(args.data)
    m = T.build_matrices(examples, embedder.embed, shipped.embedder, (shipped.max_chars,), tokenize, vocab)
    fields = {f.name for f in dataclasses.fields(T.Hyper)}
    shipped_hp = T.Hyper(**{k: v for k, v in shipped.manifest["hyperparameters"].items() if k in fields})
    settings = LearningSettings()
    rows, priors = [], []
    for dep in deployments(m, args.deployments):
        hp = (
            T.select(m, dep.train, T.grid((shipped.max_chars,), tokens=tokenize is not None))[0]
            if args.select
            else shipped_hp
        )
        prior = T.fit(m, dep.train, hp, shipped.embedder)
        prior = dataclasses.replace(
            prior,
            manifest={"recommended_thresholds": shipped.recommended_thresholds, "version": f"prior-without-{dep.name}"},
        )
        priors.append(
            f"- {dep.name}: prior trained on {len(dep.train)} rows without it ({hp}); traffic {len(dep.test)} requests"
        )
        rows += simulate(m, dep, prior, args.orders, settings, vocab)
        ROWS_FILE.write_text(json.dumps(rows))  # partial results survive an interrupted run
    lines = [
        "# Self-learning, simulated deployments",
        "",
        f"Command: `.venv/bin/python -m bench.self_learning --deployments {' '.join(args.deployments)} "
        f"--orders {args.orders}{' --select' if args.select else ''}` "
        f"(data {summary}). Learning settings: defaults ({settings.model_dump_json()}).",
        "Each row: mean APGR over the random orders on the traffic not yet seen after n labelled requests; "
        "`learnt (guarded)` is what `synqra learn` would serve (the candidate only when it beat the router serving "
        "then out of time: learn.py's rolling-origin check on the newest labels, APGR gain > 0 and significant at 95% in all by a paired APGR bootstrap or the paired recalibrated log-likelihood); `learnt, no guard` installs every candidate; `installed` counts the runs "
        "that installed a new candidate at that checkpoint.",
        "",
        *summarise(rows),
        "",
        "Targets (issue 16):",
        *targets(rows),
        "",
        "Priors:",
        *priors,
        "",
        "Mean `synqra learn` run time per checkpoint (fit + validation + refit): "
        + ", ".join(
            f"n={n}: {np.mean([r['seconds'] for r in rows if r['n'] == n]):.1f} s"
            for n in CHECKPOINTS
            if any(r["n"] == n for r in rows)
        ),
        f"Run time {time.perf_counter() - t0:.0f} s.",
    ]
    text = "\n".join(lines)
    write_result("self_learning", text)
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
