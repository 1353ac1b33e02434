"""Speed of the learning loop: what logging costs a request, and `synqra learn` over 100,000 rows.

1. Caller side of the inference log: `InferenceLogWriter.log_route` + `log_outcome` per request (the
   background thread running and writing to SQLite meanwhile), beside the router's own decision on the
   same requests, interleaved in one run. Target: the log adds under 0.5 ms to a request's p50 (the
   in-proxy figure, router on vs log on, is proxy-side work).
2. `learn_from_log` (what `synqra learn` runs) over 100,000 synthetic logged rows, every one labelled:
   5,000 distinct generated requests represented by the router's own code, each repeated 20 times
   with a jittered embedding and its own label. Target: under 2 minutes.

    cd /work/main && LITELLM_LOCAL_MODEL_COST_MAP=True HF_HUB_OFFLINE=1 .venv/bin/python -m bench.learning_speed

Writes bench/results/learning_speed.md.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from policies.common.offline import apply_offline_env  # noqa: E402

apply_offline_env()

from bench.measure import pct, write_result  # noqa: E402
from policies.common.learning_settings import LearningSettings  # noqa: E402
from policies.common.routing_settings import RoutingSettings  # noqa: E402
from policies.embedding.names import embedder_for  # noqa: E402
from policies.learning.registry import RouterRegistry  # noqa: E402
from policies.learning.representation import Representer, encode_row  # noqa: E402
from policies.learning.runs import learn_from_log  # noqa: E402
from policies.learning.store import InferenceLog, Label, RouteRow  # noqa: E402
from policies.learning.writer import InferenceLogWriter  # noqa: E402
from policies.routing.router import Router  # noqa: E402
from policies.routing.scorer import DEFAULT_ARTIFACT, load_artifact  # noqa: E402
from policies.routing.tiers import TierInfo  # noqa: E402

TOPICS = [
    "tax",
    "contract",
    "recipe",
    "travel",
    "python",
    "sql",
    "marketing",
    "brand",
    "invoice",
    "refund",
    "shipping",
    "warranty",
    "database",
    "poem",
    "equation",
    "physics",
    "history",
    "garden",
    "pricing",
    "loan",
]
VERBS = ["Explain", "Summarise", "Write", "Compare", "List", "Describe", "Draft", "Fix", "Plan", "Translate"]


def synthetic_requests(n: int, seed: int = 0) -> tuple[list[dict], np.ndarray]:
    """Generated requests of varied length and topic; label 1 more likely for some topics and long asks."""
    rng = random.Random(seed)
    reqs, labels = [], []
    hard = set(TOPICS[:7])
    for i in range(n):
        topic, other = rng.choice(TOPICS), rng.choice(TOPICS)
        words = [rng.choice(VERBS), "the", topic, "question", "for", "customer", str(i)]
        words += [rng.choice(TOPICS) for _ in range(rng.randint(0, 60))]
        text = " ".join(words) + f". Mention {other}?"
        reqs.append({"messages": [{"role": "user", "content": text}]})
        p = 0.2 + 0.5 * (topic in hard) + 0.002 * len(words)
        labels.append(float(rng.random() < p))
    return reqs, np.array(labels)


def caller_cost(n: int) -> list[str]:
    prior = load_artifact(DEFAULT_ARTIFACT)
    embedder = embedder_for(prior.embedder)
    tiers = [TierInfo("local-llama"), TierInfo("deepseek-chat"), TierInfo("claude-sonnet")]
    router = Router(RoutingSettings(), tiers, prior, embedder)
    reqs, _ = synthetic_requests(n, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        writer = InferenceLogWriter(InferenceLog(tmp), Representer(prior, embedder), LearningSettings(queue_size=n * 2))
        writer.start()
        decide, log = [], []
        for i, r in enumerate(reqs):  # interleaved: each request is routed, then logged
            t0 = time.perf_counter()
            d = router.decide(r)
            t1 = time.perf_counter()
            writer.log_route(f"r{i}", r, d, router_version="bench", mode="live")
            writer.log_outcome(f"r{i}", d.tier, None, 0.0)
            t2 = time.perf_counter()
            decide.append((t1 - t0) * 1e3)
            log.append((t2 - t1) * 1e3)
        t0 = time.perf_counter()
        writer.close(timeout_s=120)
        drain = time.perf_counter() - t0
        rows = writer.store.counts()["rows"]
    return [
        f"Caller side, {n} requests (static-embedding router decision, then log_route + log_outcome), interleaved:",
        "",
        "| step | p50 ms | p99 ms |",
        "| --- | --- | --- |",
        f"| router decision | {pct(decide, 50):.3f} | {pct(decide, 99):.3f} |",
        f"| inference log (caller side) | {pct(log, 50):.4f} | {pct(log, 99):.4f} |",
        "",
        f"Log / decision at p50: {pct(log, 50) / pct(decide, 50):.3f}. Rows written {rows} of {n}, dropped "
        f"{dict(writer.dropped)}; the background thread finished the queue {drain:.1f} s after the last request.",
    ]


def learn_speed(rows: int, distinct: int) -> list[str]:
    prior = load_artifact(DEFAULT_ARTIFACT)
    embedder = embedder_for(prior.embedder)
    rep_fn = Representer(prior, embedder)
    reqs, base_labels = synthetic_requests(distinct, seed=2)
    t0 = time.perf_counter()
    rep = rep_fn.represent(reqs)
    t_rep = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        store = InferenceLog(tmp)
        now = time.time()
        t0 = time.perf_counter()
        for start in range(0, rows, 5000):
            batch, labels = [], []
            for j in range(start, min(rows, start + 5000)):
                k = j % distinct
                emb = rep.emb[k] + rng.normal(0, 0.01, rep.emb.shape[1]).astype(np.float32)
                f, e, t, width = encode_row(rep.feats[k], emb / np.linalg.norm(emb), rep.tokens[k])
                rid = f"x{j}"
                ts = now - 86400 + j * 0.5
                batch.append(
                    RouteRow(rid, ts, rep.key, f, e, t, width, None, 0.3, "learned", "base", "local-llama", "live")
                )
                y = base_labels[k] if rng.random() > 0.1 else 1.0 - base_labels[k]
                labels.append(Label(rid, "gate" if j % 3 else "judge", float(y), ts + 1))
            store.write(batch, (), labels)
        t_write = time.perf_counter() - t0
        size = (Path(tmp) / "inference_log.sqlite3").stat().st_size
        reg = RouterRegistry(Path(tmp) / "routers", DEFAULT_ARTIFACT)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        record = learn_from_log(store, reg, LearningSettings(), embedder, now=now)
        wall = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return [
        f"`synqra learn` (learn_from_log) over {rows:,} logged rows, all labelled ({distinct:,} distinct generated "
        f"requests; representing them took {t_rep:.1f} s, writing the rows {t_write:.1f} s, file {size / 1e6:.0f} MB):",
        "",
        f"- wall {wall:.1f} s, CPU {cpu:.1f} s (target: under 120 s): {'met' if wall < 120 else 'NOT met'}",
        f"- decision: {record['decision']} ({record['reason']}); lambda {record.get('fit', {}) and record['fit'].get('lambda')}",
        f"- bytes per row in the file: {size / rows:.0f}",
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=5000, help="requests for the caller-side timing")
    ap.add_argument("--rows", type=int, default=100_000, help="logged rows for the learn timing")
    ap.add_argument("--distinct", type=int, default=5000)
    args = ap.parse_args(argv)
    lines = ["# Learning loop speed", "", "Command: `.venv/bin/python -m bench.learning_speed`", ""]
    lines += caller_cost(args.requests) + [""] + learn_speed(args.rows, args.distinct)
    text = "\n".join(lines)
    write_result("learning_speed", text)
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
