"""The inference log: rows, labels, retention, replicas, and a writer that never blocks or raises."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from policies.common.learning_settings import LearningSettings
from policies.common.routing_settings import RoutingSettings
from policies.embedding.names import embedder_for
from policies.learning.representation import Representation, Representer, representation_key
from policies.learning.store import InferenceLog, combine_labels
from policies.learning.writer import InferenceLogWriter
from policies.routing.features import FEATURE_NAMES
from policies.routing.router import Embedded, RouteDecision, Router
from policies.routing.scorer import load_artifact
from policies.routing.tiers import TierInfo
from tests.unit.learning_data import request, traffic


@pytest.fixture(scope="module")
def representer() -> Representer:
    prior = load_artifact()
    return Representer(prior, embedder_for(prior.embedder))


def _decision(score: float = 0.3, tier: str = "local-llama") -> RouteDecision:
    return RouteDecision(tier=tier, score=score, reason="test", features={})


def _writer(tmp_path: Path, representer: Representer, **settings: object) -> InferenceLogWriter:
    return InferenceLogWriter(InferenceLog(tmp_path), representer, LearningSettings(**settings), flush_interval_s=0.02)


def test_rows_keep_the_routers_representation_and_outcome(tmp_path: Path, representer: Representer) -> None:
    w = _writer(tmp_path, representer)
    w.start()
    reqs, _ = traffic(5, seed=1)
    for i, r in enumerate(reqs):
        assert w.log_route(f"r{i}", r, _decision(0.1 * i), router_version="v1", mode="shadow")
    assert w.log_outcome("r0", "deepseek-chat", ["local-llama", "deepseek-chat"], 0.0012)
    assert w.flush()
    row = w.store.row("r0")
    assert (
        row is not None and row["tier_served"] == "deepseek-chat" and row["escalation"] == "local-llama>deepseek-chat"
    )
    assert row["cost_usd"] == pytest.approx(0.0012) and row["router_version"] == "v1" and row["mode"] == "shadow"
    assert row["request_json"] is None  # keep_text is off by default
    ids, ts, rep = w.store.representation(representer.key)
    assert ids == [f"r{i}" for i in range(5)] and np.all(np.diff(ts) >= 0)
    direct = representer.represent(reqs)
    assert np.allclose(rep.feats, direct.feats)
    assert np.allclose(rep.emb, direct.emb, atol=2e-3)  # stored as float16
    assert all(np.array_equal(a, b) for a, b in zip(rep.tokens, direct.tokens))
    w.close()


def test_each_call_of_a_request_adds_to_its_cost_whenever_it_is_settled(
    tmp_path: Path, representer: Representer
) -> None:
    """The proxy logs a request's outcome before a stream's usage is settled, and an escalation or fallback is a
    ledger row of its own: each call's cost adds to the row, and an outcome without a cost keeps it (every row of
    the running stack had cost NULL: the outcome carried none and nothing else wrote it)."""
    w = _writer(tmp_path, representer)
    w.start()
    reqs, _ = traffic(2, seed=1)
    for i, r in enumerate(reqs):
        assert w.log_route(f"r{i}", r, _decision())
    assert w.log_cost("r0", 0.0003)  # the local answer's escalation to DeepSeek, settled by the gate
    assert w.log_outcome("r0", "deepseek-chat", "local-llama>deepseek-chat")
    assert w.log_cost("r0", 0.00012)  # a stream settled after its outcome
    assert w.log_outcome("r1", "local-llama")
    assert w.log_cost("r1", 0.0)  # the local model's free call
    assert w.log_cost("never-routed", 0.5)  # a call for a request that is not a routed row: nothing to add to
    assert w.flush()
    assert w.store.row("r0")["cost_usd"] == pytest.approx(0.00042)
    assert w.store.row("r1")["cost_usd"] == 0.0 and w.store.row("never-routed") is None
    w.close()


def test_keep_text_stores_the_request(tmp_path: Path, representer: Representer) -> None:
    w = _writer(tmp_path, representer, keep_text=True)
    w.start()
    w.log_route("a", request("hello there"), _decision())
    w.close()
    assert '"hello there"' in (InferenceLog(tmp_path).row("a") or {})["request_json"]


def test_labels_attach_by_request_id_with_their_source(tmp_path: Path, representer: Representer) -> None:
    w = _writer(tmp_path, representer)
    w.start()
    w.log_route("a", request("What is VAT?"), _decision())
    w.log_label("a", "gate", 1.0)
    w.log_label("a", "feedback", 0.0, note="fine answer")
    assert not w.log_label("a", "gossip", 1.0)  # unknown source: dropped and counted, no exception
    assert not w.log_label("a", "judge", 1.5)
    w.close()
    row = InferenceLog(tmp_path).row("a")
    assert [(x["source"], x["value"]) for x in row["labels"]] == [("gate", 1.0), ("feedback", 0.0)]
    assert w.dropped["label"] == 2
    # feedback (weight 1) and gate (0.5): (0.5 * 1 + 1 * 0) / 1.5
    value, weight, sources, _ = combine_labels(
        [("gate", 1.0, 1.0), ("feedback", 0.0, 2.0)], LearningSettings().source_weights
    )
    assert value == pytest.approx(1 / 3) and weight == 1.0 and sources == ("feedback", "gate")
    # the newest label of a source wins
    assert combine_labels([("judge", 1.0, 1.0), ("judge", 0.0, 2.0)], {"judge": 1.0})[0] == 0.0


def test_full_queue_drops_and_counts_without_blocking(tmp_path: Path, representer: Representer) -> None:
    w = _writer(tmp_path, representer, queue_size=2)  # not started: nothing drains the queue
    assert w.log_route("a", request("one"), _decision())
    assert w.log_route("b", request("two"), _decision())
    t0 = time.perf_counter()
    assert not w.log_route("c", request("three"), _decision())
    assert not w.log_label("a", "gate", 0.0)
    assert time.perf_counter() - t0 < 0.5
    assert w.dropped["route"] == 1 and w.dropped["label"] == 1
    w.start()
    w.close()
    assert w.store.exists("a") and w.store.exists("b") and not w.store.exists("c")


def test_a_request_the_features_cannot_read_is_dropped_alone(tmp_path: Path, representer: Representer) -> None:
    w = _writer(tmp_path, representer)
    w.start()
    w.log_route("good", request("fine"), _decision())
    w.log_route("bad", {"messages": "not a list"}, _decision())
    assert not w.log_route("nodecision", request("x"), object())
    w.close()
    assert w.store.exists("good") and not w.store.exists("bad")
    assert w.dropped["route"] == 2


def test_retention_deletes_old_rows_with_their_labels(tmp_path: Path, representer: Representer) -> None:
    w = _writer(tmp_path, representer)
    w.start()
    now = time.time()
    w.log_route("old", request("old question"), _decision(), ts=now - 10 * 86400)
    w.log_route("new", request("new question"), _decision(), ts=now)
    w.log_label("old", "gate", 1.0)
    w.log_label("new", "gate", 0.0)
    w.close()
    store = InferenceLog(tmp_path)
    assert store.purge(retention_days=5, now=now) == 1
    assert not store.exists("old") and store.exists("new")
    assert set(store.labels()) == {"new"}


def test_export_import_merges_replicas_once(tmp_path: Path, representer: Representer) -> None:
    a = _writer(tmp_path / "a", representer)
    a.start()
    for i, r in enumerate(traffic(3, seed=2)[0]):
        a.log_route(f"a{i}", r, _decision())
        a.log_label(f"a{i}", "judge", 1.0)
    a.log_outcome("a0", "local-llama", None, 0.0)
    a.close()
    buf = io.StringIO()
    assert a.store.export_jsonl(buf) == (3, 3)
    b = InferenceLog(tmp_path / "b")
    assert b.import_jsonl(io.StringIO(buf.getvalue())) == (3, 3)
    assert b.import_jsonl(io.StringIO(buf.getvalue())) == (0, 0)
    assert (b.row("a0") or {})["tier_served"] == "local-llama"
    with pytest.raises(ValueError, match="line 1"):
        b.import_jsonl(io.StringIO('{"nonsense": 1}\n'))


def test_two_writers_share_one_file(tmp_path: Path, representer: Representer) -> None:
    """Two processes' writers (here two connections in threads) on one SQLite file: nothing lost."""
    writers = [_writer(tmp_path, representer) for _ in range(2)]
    for w in writers:
        w.start()
    reqs, _ = traffic(50, seed=3)

    def feed(k: int) -> None:
        for i, r in enumerate(reqs):
            writers[k].log_route(f"w{k}-{i}", r, _decision())
            writers[k].log_label(f"w{k}-{i}", "gate", 0.5)

    threads = [threading.Thread(target=feed, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w in writers:
        w.close()
    assert InferenceLog(tmp_path).counts() == {"rows": 100, "labels": 100}
    assert sum(sum(w.dropped.values()) for w in writers) == 0


def test_rows_of_another_representation_are_kept_apart(tmp_path: Path, representer: Representer) -> None:
    w = _writer(tmp_path, representer)
    w.start()
    w.log_route("a", request("a question"), _decision())
    w.close()
    assert w.store.representation("other|key")[0] == []
    assert [r[0] for r in w.store.other_key_rows("other|key")] == ["a"]
    assert representation_key(load_artifact()) == representer.key


class CountingRepresenter(Representer):
    """The real Representer, counting the requests it had to embed and tokenise itself."""

    represented = 0

    def represent(
        self, requests: Sequence[Mapping[str, Any]], features: Sequence[Mapping[str, float] | None] | None = None
    ) -> Representation:
        self.represented += len(requests)
        return super().represent(requests, features)


def test_a_row_logged_from_the_decision_equals_one_represented_from_scratch(tmp_path: Path) -> None:
    """The writer stores the embedding and token ids the router computed for its decision instead of computing
    them again on the proxy's core: bit for bit the numbers representing the request from scratch gives."""
    scorer = load_artifact()
    rep = CountingRepresenter(scorer, embedder_for(scorer.embedder))
    settings = RoutingSettings()
    router = Router(settings, [TierInfo(n) for n in settings.tiers], scorer, rep.embedder)
    reqs, _ = traffic(12, seed=3)
    reqs += [
        request("Summarise this. " + "The shipment of order 4411 was late again, said the customer. " * 40),
        {
            "system": "You are a careful tax adviser.",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "What is VAT?"}]},
                {"role": "assistant", "content": "A tax on sales."},
                {"role": "user", "content": "And how is it computed for imports from outside the EU?"},
            ],
            "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {}}}],
            "max_tokens": 300,
        },
    ]
    decisions = [asyncio.run(router.adecide(r)) for r in reqs]
    assert all(d.embedded is not None and d.embedded.token_ids is not None for d in decisions)
    for r, d in zip(reqs, decisions):  # before storage: the same arrays
        found = rep.from_decision(d.features, d.embedded)
        direct = rep.represent([r])
        assert found is not None
        assert np.array_equal(found[0], direct.feats[0]) and found[0].dtype == direct.feats.dtype
        assert np.array_equal(found[1], direct.emb[0]) and found[1].dtype == direct.emb.dtype
        assert np.array_equal(found[2], direct.tokens[0]) and found[2].dtype == direct.tokens[0].dtype
    stored, now = {}, time.time()
    for name, strip in (("reused", False), ("scratch", True)):  # the same requests logged both ways
        rep.represented = 0
        w = InferenceLogWriter(InferenceLog(tmp_path / name), rep, LearningSettings(), flush_interval_s=0.02)
        w.start()
        for i, (r, d) in enumerate(zip(reqs, decisions)):
            # Times of today: the writer prunes rows older than the retention period.
            assert w.log_route(f"r{i}", r, dataclasses.replace(d, embedded=None) if strip else d, ts=now + i)
        w.close()
        assert rep.represented == (len(reqs) if strip else 0)
        stored[name] = w.store.representation(rep.key)
    (ids, _, a), (ids_b, _, b) = stored["reused"], stored["scratch"]
    assert ids == ids_b == [f"r{i}" for i in range(len(reqs))]
    assert np.array_equal(a.feats, b.feats) and np.array_equal(a.emb, b.emb)
    assert all(np.array_equal(x, y) for x, y in zip(a.tokens, b.tokens))


def test_a_decision_that_embedded_another_cut_is_represented_again(representer: Representer) -> None:
    """A decision prepared under a version that reads another length of text (installed meanwhile), or whose
    scorer read no token ids, is represented from the request, never stored under a key it does not match."""
    d = RouteDecision("local-llama", 0.2, "", {n: 0.0 for n in FEATURE_NAMES})
    vector = np.zeros(representer.embedder.table.shape[1], np.float32)
    tokens = np.array([5, 9], np.int64)
    assert representer.from_decision(d.features, Embedded(representer.max_chars, vector, tokens)) is not None
    assert representer.from_decision(d.features, Embedded(representer.max_chars + 1, vector, tokens)) is None
    assert representer.from_decision(d.features, Embedded(representer.max_chars, vector, None)) is None
    assert representer.from_decision({}, Embedded(representer.max_chars, vector, tokens)) is None
    assert representer.from_decision(d.features, None) is None


def _switches(native_id: int) -> int:
    """How often a thread of this process has gone to sleep and been woken (Linux)."""
    status = Path(f"/proc/self/task/{native_id}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("voluntary_ctxt_switches")).split()[1])


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads a thread's context switches from /proc")
def test_the_request_side_never_wakes_the_writer_thread(tmp_path: Path, representer: Representer) -> None:
    """The writer shares the proxy's core and GIL: a request's put must not wake it (each wake-up cost a thread
    switch and a GIL hand-over); it writes what came meanwhile once per interval, or when asked to flush."""
    w = InferenceLogWriter(InferenceLog(tmp_path), representer, LearningSettings(), flush_interval_s=30.0)
    w.start()
    assert w._thread is not None and w._thread.native_id is not None
    time.sleep(0.1)  # the thread is waiting now
    before = _switches(w._thread.native_id)
    for i in range(100):
        assert w.log_route(f"r{i}", request(f"question {i}"), _decision())
        assert w.log_outcome(f"r{i}", "local-llama")
        time.sleep(0.002)  # time for a woken thread to run
    assert _switches(w._thread.native_id) - before <= 2
    assert not w.store.exists("r0")  # nothing written before the interval or a flush
    assert w.flush()
    assert w.store.exists("r0") and w.store.exists("r99") and w.store.row("r99")["tier_served"] == "local-llama"
    w.close()
