"""The quality gate on held-out answers: open-ended (arena-hard), worked multiple choice (MMLU-Pro), GSM8K.

Every figure of the learned part is out of fold: each row is scored by an answer model whose fit (and
L2 choice) never saw its prompt (arena-hard, GSM8K, MT-Bench) or its category (MMLU-Pro): the trainer's
nested cross-validation (`synqra train-quality-scorer`, whose logits are cached and reused here). The
rules are then applied exactly as the proxy applies them (`scorer.combine`), including the abstention
of the answer model on short exchanges. Baselines: answer length, answer-question similarity (static
MiniLM cosine), random; and the rule-weighted product alone (the scorer of the previous release).

Reported: AUROC for "bad" (arena-hard and MT-Bench: GPT-4 rating 5 or lower; MMLU-Pro, GSM8K: wrong);
cascade APGR (escalate the lowest-scored weak answers to the strong model first; quality = rating / 10
or right/wrong) for weak/strong pairs, beside the ceiling a validator of the weak answer alone can reach
(escalating by the weak answer's own true rating); the bands as judged; and the judge tier's cost.

    SYNQRA_DATA_DIR=../shared/data nice -n 10 .venv/bin/python bench/quality_eval.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from policies import judging  # noqa: E402
from policies.common.quality_settings import QualitySettings  # noqa: E402
from policies.quality import train  # noqa: E402
from policies.quality.dataset import DEFAULT_DATA_DIR, load_all  # noqa: E402
from policies.quality.registry import SIGNALS  # noqa: E402
from policies.quality.scorer import STATIC_BAND, _needs_relevance, combine, model_abstains  # noqa: E402
from policies.quality.signals import Signal, question_text, relevance  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "quality_eval.md"
STRONG = "gpt-4-1106-preview"
GSM_WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
PAIRS = (
    "mistralai/Mistral-7B-Instruct-v0.1",
    "Starling-LM-7B-alpha",
    "openchat_3.5",
    "Llama-2-70b-chat",
    "mistralai/Mixtral-8x7B-Instruct-v0.1",
    "gpt-3.5-turbo",
)
SEVEN_B = ("mistralai/Mistral-7B-Instruct-v0.1", "Starling-LM-7B-alpha", "openchat_3.5")
PRICE_IN, PRICE_OUT = 0.28, 0.42  # DeepSeek V3 list price, $ per million tokens


def auroc(score_bad: np.ndarray, bad: np.ndarray) -> float:
    return train.auroc(np.asarray(score_bad, float), np.asarray(bad, bool))


def cascade_apgr(score: np.ndarray, weak_q: np.ndarray, strong_q: np.ndarray) -> dict[str, float]:
    """Escalate the lowest `score` first (ties averaged); APGR and CPT(50%)/CPT(80%) of the quality curve."""
    n = len(score)
    order = np.argsort(score, kind="stable")
    s, gain = score[order], (strong_q - weak_q)[order]
    per = np.empty(n)
    i = 0
    while i < n:
        j = i
        while j + 1 < n and s[j + 1] == s[i]:
            j += 1
        per[i : j + 1] = gain[i : j + 1].mean()
        i = j + 1
    curve = (weak_q.sum() + np.concatenate([[0.0], np.cumsum(per)])) / n
    wa, sa = weak_q.mean(), strong_q.mean()
    pgr = (curve - wa) / (sa - wa)
    share = np.linspace(0, 1, n + 1)

    def cpt(t: float) -> float:
        hit = np.nonzero(pgr >= t)[0]
        return float(share[hit[0]]) if len(hit) else 1.0

    return {"APGR": float(np.sum((pgr[1:] + pgr[:-1]) / 2 * np.diff(share))), "CPT50": cpt(0.5), "CPT80": cpt(0.8)}


def served_scores(
    m: train.Matrices, sig: np.ndarray, p_learned: np.ndarray, settings: QualitySettings
) -> tuple[np.ndarray, list]:
    """The proxy's final score of each row with the out-of-fold answer model (combine, as served)."""
    names = [s.name for s in SIGNALS]
    hard = [i for i, s in enumerate(SIGNALS) if s.hard]
    cos = (m.q_emb * m.a_emb).sum(1)
    out, verdicts = np.empty(len(m.rows)), []
    for i, r in enumerate(m.rows):
        sigs = {n: Signal(float(v)) for n, v in zip(names, sig[i])}
        decided = any(sig[i][h] <= 0 for h in hard)
        learned = None
        if not decided and not model_abstains(r.question, r.answer):
            learned = float(p_learned[i])
        elif not decided and _needs_relevance(question_text({"messages": r.messages}), r.answer):
            sigs["relevance"] = relevance(float(cos[i]), *STATIC_BAND)
        v = combine(sigs, settings, learned)
        out[i] = v.score
        verdicts.append(v)
    return out, verdicts


def rules_only(m: train.Matrices, sig: np.ndarray, settings: QualitySettings) -> np.ndarray:
    """The previous release's scorer: the product of every signal (static relevance where the gate asks)."""
    names = [s.name for s in SIGNALS]
    cos = (m.q_emb * m.a_emb).sum(1)
    out = np.empty(len(m.rows))
    for i, r in enumerate(m.rows):
        sigs = {n: Signal(float(v)) for n, v in zip(names, sig[i])}
        if _needs_relevance(question_text({"messages": r.messages}), r.answer):
            sigs["relevance"] = relevance(float(cos[i]), *STATIC_BAND)
        out[i] = combine(sigs, settings).score
    return out


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *["| " + " | ".join(r) + " |" for r in rows]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    args = ap.parse_args(argv)
    from policies.embedding.static import StaticEmbedder

    rows = load_all(args.data)
    static = StaticEmbedder.default()
    _, q_emb, a_emb, sig = train.feature_matrices(rows, static.embed)
    m = train.build(rows, static.embed)
    z, chosen = train.nested_oof(m)  # reuses the trainer's cached run when code and data are the same
    cz, cp = train.isotonic(z, m.y, m.weight)
    p = np.interp(z, cz, cp)
    settings = QualitySettings()
    final, verdicts = served_scores(m, sig, p, settings)
    old = rules_only(m, sig, settings)
    length = np.log1p([len(r.answer) for r in rows])
    cos = (q_emb * a_emb).sum(1)
    rating = np.array([r.rating if r.rating is not None else np.nan for r in rows])
    ds, model, y = m.dataset, m.model, m.y
    bad = y == 0
    rng = np.random.default_rng(0)
    rand = rng.random(len(rows))
    out = [
        "# Quality gate evaluation",
        "",
        "Command: `SYNQRA_DATA_DIR=../shared/data nice -n 10 .venv/bin/python bench/quality_eval.py` "
        "(after `synqra train-quality-scorer`, whose nested cross-validation it reuses).",
        "",
        "Held out: arena-hard, GSM8K and MT-Bench by whole prompt, MMLU-Pro by whole category (5 folds, L2 chosen "
        f'inside each training set: {[c["l2_feat"] for c in chosen]}). "served" = the proxy\'s score (out-of-fold '
        'answer model x rules; the model abstains on short exchanges and maths word problems); "rules only" = the previous release\'s '
        'hand-weighted product; "answer model alone" = its calibrated probability before the rules.',
        "",
    ]

    # --- arena-hard AUROC -------------------------------------------------------------------------
    def au_row(name: str, score_good: np.ndarray, sel: np.ndarray) -> list[str]:
        return [name, f"{auroc(-score_good[sel], bad[sel]):.3f}"]

    A = ds == "arena_hard"
    candidates = {
        "served": final,
        "answer model alone": p,
        "rules only (previous scorer)": old,
        "answer length (longer = better)": length,
        "answer-question similarity": cos,
        "random": rand,
    }
    out += [
        "## Open-ended: arena-hard, prompts held out",
        "",
        f'AUROC for "rated 5 or lower" ({int(bad[A].sum())} of {int(A.sum())} answers):',
        "",
    ]
    groups = {
        "all 15 models": A,
        "7B models": A & np.isin(model, SEVEN_B),
        "GPT-4 models": A & np.isin(model, ("gpt-4-0314", STRONG)),
    }
    out += table(
        ["scorer", *groups],
        [[n, *[f"{auroc(-s[g], bad[g]):.3f}" for g in groups.values()]] for n, s in candidates.items()],
    )
    manifest = json.loads((ROOT / "policies/quality/artifacts/answer_v1.manifest.json").read_text())
    held = (manifest.get("validation", {}).get("figures") or {}).get("arena_hard_prompts_and_models_held_out")
    if held:
        out += [
            "",
            f"Prompts and models held out together (the answer model never saw these models' answers: "
            f"{', '.join(held['models'])}): AUROC of the answer model alone {held['auroc_bad']:.3f} on {held['rows']} answers "
            "(from the training manifest).",
        ]

    # --- arena-hard cascade ----------------------------------------------------------------------------
    out += [
        "",
        f"Cascade: the weak model answers every prompt, the lowest-scored answers are escalated to {STRONG} "
        'first; quality = GPT-4 rating / 10. "ceiling" escalates by the weak answer\'s own true rating: the best '
        "any judge of the weak answer alone can do.",
        "",
    ]
    crow = []
    for weak in PAIRS:
        qid = {r.group: i for i, r in enumerate(rows) if r.dataset == "arena_hard" and r.model == weak}
        sid = {r.group: i for i, r in enumerate(rows) if r.dataset == "arena_hard" and r.model == STRONG}
        keys = sorted(set(qid) & set(sid))
        wi, si = np.array([qid[k] for k in keys]), np.array([sid[k] for k in keys])
        wq, sq = rating[wi] / 10, rating[si] / 10
        f = {
            n: cascade_apgr(s[wi], wq, sq)["APGR"]
            for n, s in [
                ("served", final),
                ("model", p),
                ("old", old),
                ("length", length),
                ("sim", cos),
                ("ceiling", rating),
            ]
        }
        rnd = np.mean([cascade_apgr(rng.random(len(wi)), wq, sq)["APGR"] for _ in range(20)])
        crow.append(
            [
                weak.split("/")[-1],
                str(len(keys)),
                f"{wq.mean() * 10:.2f}",
                f"{f['served']:.3f}",
                f"{f['model']:.3f}",
                f"{f['old']:.3f}",
                f"{f['length']:.3f}",
                f"{f['sim']:.3f}",
                f"{rnd:.3f}",
                f"{f['ceiling']:.3f}",
            ]
        )
    out += table(
        [
            "weak model",
            "prompts",
            "weak mean rating",
            "served",
            "answer model alone",
            "rules only",
            "length",
            "similarity",
            "random (20)",
            "ceiling",
        ],
        crow,
    )

    # --- MMLU-Pro ----------------------------------------------------------------------------------
    M = ds == "mmlu_pro"
    out += [
        "",
        "## Worked multiple choice: MMLU-Pro (Llama 3.1 8B), categories held out",
        "",
        f'AUROC for "wrong" ({int(bad[M].sum())} of {int(M.sum())}; answers that never reach a letter count as wrong):',
        "",
    ]
    out += table(
        ["scorer", "AUROC"],
        [au_row(n, s, M) for n, s in candidates.items()]
        + [["answer length (shorter = better)", f"{auroc(length[M], bad[M]):.3f}"]],
    )
    cats = sorted({r.category for r in rows if r.dataset == "mmlu_pro"})
    cat = np.array([r.category for r in rows])
    out += [
        "",
        "Per held-out category (served): "
        + ", ".join(f"{c} {auroc(-final[M & (cat == c)], bad[M & (cat == c)]):.2f}" for c in cats),
    ]

    # --- GSM8K ---------------------------------------------------------------------------------------
    gw = {r.group: i for i, r in enumerate(rows) if r.dataset == "gsm8k" and r.model == GSM_WEAK}
    gs = {r.group: i for i, r in enumerate(rows) if r.dataset == "gsm8k" and r.model == STRONG}
    keys = sorted(gw)
    wi, si = np.array([gw[k] for k in keys]), np.array([gs[k] for k in keys])
    wq, sq = y[wi], y[si]
    out += [
        "",
        "## GSM8K: Mixtral answers escalated to GPT-4, prompts held out",
        "",
        f"{len(keys)} prompts; weak accuracy {wq.mean():.3f}, strong {sq.mean():.3f}.",
        "",
    ]
    grow = []
    for n, s in [*candidates.items(), ("answer length (shorter = better)", -length)]:
        c = cascade_apgr(s[wi], wq, sq)
        grow.append([n, f"{c['APGR']:.3f}", f"{c['CPT50']:.1%}", f"{c['CPT80']:.1%}", f"{auroc(-s[wi], wq == 0):.3f}"])
    out += table(["scorer", "APGR", "CPT(50%)", "CPT(80%)", "AUROC weak wrong"], grow)

    T = ds == "mt_bench"
    out += [
        "",
        f"MT-Bench (GPT-4 and Mixtral, both turns, {int(T.sum())} answers, {int(bad[T].sum())} rated 5 or lower): "
        f"AUROC served {auroc(-final[T], bad[T]):.3f}, rules only {auroc(-old[T], bad[T]):.3f}, "
        f"length {auroc(-length[T], bad[T]):.3f}.",
    ]

    # --- bands -----------------------------------------------------------------------------------------
    out += [
        "",
        "## The bands as judged",
        "",
        "Served scores (out of fold) in the bands (deliver > 0.8, rephrase 0.6-0.8, escalate < 0.6): share of "
        "answers, then how the judge (GPT-4 rating) or the key scores them.",
        "",
    ]
    brow = []
    for name, sel, kind in [
        ("arena-hard, all models", A, "rating"),
        ("arena-hard, 7B models", A & np.isin(model, SEVEN_B), "rating"),
        ("MT-Bench", T, "rating"),
        ("MMLU-Pro", M, "right"),
        ("GSM8K (Mixtral)", np.isin(np.arange(len(rows)), wi), "right"),
    ]:
        acts = np.array([v.action for v in verdicts])
        cells = [name, str(int(sel.sum()))]
        for b in ("deliver", "rephrase", "escalate"):
            s_ = sel & (acts == b)
            if not s_.any():
                cells.append("0")
                continue
            judged = (
                f"mean rating {np.nanmean(rating[s_]):.1f}, {np.mean(bad[s_]):.0%} rated <= 5"
                if kind == "rating"
                else f"{np.mean(y[s_]):.0%} right"
            )
            cells.append(f"{s_.sum() / sel.sum():.0%}: {judged}")
        brow.append(cells)
    out += table(["answers", "n", "deliver", "rephrase", "escalate"], brow)

    # --- judge cost --------------------------------------------------------------------------------------
    band = settings.judge.band
    judgments = [
        json.loads(line)["judgment"] for line in (args.data / "routing/routellm/mt_bench_judgements.jsonl").open()
    ]
    out_tokens = float(np.mean([len(t) for t in judgments])) / 4
    jrows = []
    for name, sel in [
        ("arena-hard (open-ended)", A),
        ("arena-hard 7B", A & np.isin(model, SEVEN_B)),
        ("all eval answers", np.ones(len(rows), bool)),
    ]:
        inside = sel & (final >= band[0]) & (final <= band[1])
        idx = np.nonzero(inside)[0]
        in_tokens = (
            float(
                np.mean(
                    [
                        sum(
                            len(msg["content"])
                            for msg in judging.single_rating_messages(rows[i].question, rows[i].answer)
                        )
                        for i in idx
                    ]
                )
            )
            / 4
            if len(idx)
            else 0.0
        )
        per_call = (in_tokens * PRICE_IN + out_tokens * PRICE_OUT) / 1e6
        share = inside.sum() / sel.sum()
        jrows.append(
            [
                name,
                f"{share:.0%}",
                f"{in_tokens:.0f}",
                f"{out_tokens:.0f}",
                f"${per_call * 1000:.3f}",
                f"${share * per_call * 1000:.3f}",
            ]
        )
    out += [
        "",
        "## The judge tier's cost",
        "",
        f"Judge band {list(band)} (synqra.quality.judge.band), DeepSeek V3 list prices ${PRICE_IN}/${PRICE_OUT} per million "
        "tokens in/out; prompt = MT-Bench single-v1 template + question + answer (policies/judging.py), tokens "
        "estimated as characters / 4; output = the mean length of GPT-4's MT-Bench judgements (explanation + rating).",
        "",
    ]
    out += table(
        ["answers", "share in band", "prompt tokens", "output tokens", "$ per 1,000 judged", "$ per 1,000 requests"],
        jrows,
    )
    out += [
        "",
        "Per 1,000 requests = share in band x cost per judged answer; only answers of validated (local) tiers are "
        "scored, so traffic served by cloud tiers directly adds nothing.",
    ]
    text = "\n".join(out) + "\n"
    RESULTS.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
