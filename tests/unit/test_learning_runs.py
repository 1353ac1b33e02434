"""`synqra learn`'s decisions: install only a better candidate, versions, rollback, corrupt artifacts,
the inference-log path end to end, and the schedule."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest

from policies.common.learning_settings import LearningSettings
from policies.embedding.names import embedder_for
from policies.learning.learn import (
    GUARD_Z,
    Labelled,
    Segment,
    learn,
    loglik_test,
    recalibrated_loglik,
    rows_seen_by_current,
    validation_segments,
)
from policies.learning.registry import BASE, RouterRegistry
from policies.learning.representation import Representer
from policies.learning.runs import due, learn_from_log
from policies.learning.store import InferenceLog
from policies.learning.writer import InferenceLogWriter
from policies.routing.router import RouteDecision
from policies.routing.scorer import DEFAULT_ARTIFACT, ArtifactError, load_artifact
from tests.unit.learning_data import traffic


@pytest.fixture(scope="module")
def prior():
    return load_artifact()


@pytest.fixture(scope="module")
def representer(prior) -> Representer:
    return Representer(prior, embedder_for(prior.embedder))


def _labelled(representer: Representer, n: int, seed: int, invert_newest: float = 0.0) -> Labelled:
    reqs, y = traffic(n, seed=seed)
    y = np.array(y)
    if invert_newest:  # the newest rows say the opposite of the older ones: a candidate fit on the older is worse
        k = int(n * invert_newest)
        y[-k:] = 1.0 - y[-k:]
    return Labelled(representer.represent(reqs), y, np.ones(n), [("judge",)] * n)


def test_a_better_candidate_is_installed_with_thresholds_and_manifest(prior, representer) -> None:
    out = learn(prior, prior, _labelled(representer, 300, seed=20), LearningSettings())
    assert out.installed, out.reason
    assert out.validation["candidate"]["apgr"] > out.validation["current"]["apgr"]
    assert out.thresholds is not None and len(out.thresholds) == 2 and out.thresholds[0] <= out.thresholds[1]
    m = out.manifest
    assert m["training_rows"]["labelled"] == 300 and m["training_rows"]["by_source"] == {"judge": 300}
    assert m["recommended_thresholds"] == out.thresholds and "candidate" in m["validation"]


def test_a_candidate_worse_on_the_newest_labels_is_kept_out(prior, representer) -> None:
    out = learn(prior, prior, _labelled(representer, 300, seed=21, invert_newest=0.2), LearningSettings())
    assert not out.installed
    assert out.scorer is prior
    assert out.validation["candidate"]["apgr"] <= out.validation["current"]["apgr"]
    assert "needed" in out.reason


def test_the_guard_validates_on_more_than_the_newest_share_while_it_is_small() -> None:
    # 100 labels: the newest 20 alone are too few; the newest 3/4, in three out-of-time segments
    assert validation_segments(100, 20, seen=0) == [(25, 50), (50, 75), (75, 100)]
    assert validation_segments(1000, 200, seen=0) == [(250, 500), (500, 750), (750, 1000)]
    # never into rows the current router was trained on (it would be judged on its own training rows)
    assert validation_segments(1000, 200, seen=900) == [(800, 1000)]
    assert validation_segments(1000, 200, seen=700) == [(700, 1000)]  # one longer segment
    assert validation_segments(1000, 200, seen=500) == [(500, 750), (750, 1000)]
    # enough newest rows: one segment, one fit (learning over 100,000 rows stays fast)
    assert validation_segments(100_000, 20_000, seen=0) == [(80_000, 100_000)]
    # at the smallest sizes every segment keeps MIN_TRAIN rows before it
    assert validation_segments(40, 20, seen=0) == [(20, 40)]


def test_rows_seen_by_the_current_router_come_from_its_manifest(prior, representer) -> None:
    data = _labelled(representer, 50, seed=25)
    data.ts = np.arange(50, dtype=float) + 1000.0
    assert rows_seen_by_current(prior, data, is_prior=True) == 0
    learnt = dataclasses.replace(prior, manifest={"training_rows": {"trained_through_ts": 1029.0}})
    assert rows_seen_by_current(learnt, data, is_prior=False) == 30
    assert rows_seen_by_current(dataclasses.replace(prior, manifest={}), data, is_prior=False) is None
    data.ts = None
    assert rows_seen_by_current(learnt, data, is_prior=False) is None


def test_a_candidate_that_only_wins_on_older_segments_is_kept_out(prior, representer) -> None:
    # the older segment agrees with the candidate; the newest (a quarter of the rows) has drifted (labels inverted)
    out = learn(prior, prior, _labelled(representer, 300, seed=26, invert_newest=0.25), LearningSettings())
    assert len(out.validation["segments"]) > 1 and out.validation["apgr_gain_by_segment"][0] > 0
    assert not out.installed and out.validation["apgr_gain_by_segment"][-1] < 0, out.reason


def test_too_few_labels_keep_the_current_router(prior, representer) -> None:
    out = learn(prior, prior, _labelled(representer, 30, seed=22), LearningSettings())
    assert not out.installed and "at least 40" in out.reason


def _corrupt(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_versions_rollback_and_corrupt_artifacts(tmp_path: Path, prior, representer) -> None:
    reg = RouterRegistry(tmp_path / "routers", DEFAULT_ARTIFACT)
    assert reg.current_version() == BASE and reg.load_current()[1].startswith("shipped-")
    first = learn(prior, prior, _labelled(representer, 200, seed=23), LearningSettings())
    v1 = reg.add(first.scorer, first.manifest, now=1_000_000)
    reg.activate(v1)
    reg.record_run({"decision": "installed", "version": v1})
    second = learn(prior, first.scorer, _labelled(representer, 400, seed=24), LearningSettings())
    v2 = reg.add(second.scorer, second.manifest, now=2_000_000)
    reg.activate(v2)
    reg.record_run({"decision": "installed", "version": v2})
    assert reg.versions() == [v1, v2] and reg.current_version() == v2
    scorer, name = reg.load_current()
    assert name == v2 and scorer.manifest["version"] == v2
    # rollback with no version: the one installed before
    assert reg.rollback() == v1 and reg.current_version() == v1
    assert reg.rollback() == BASE
    assert reg.rollback(v2) == v2
    # a corrupt version is refused and the serving one kept
    _corrupt(tmp_path / "routers" / v1 / "router.npz")
    with pytest.raises(ArtifactError, match="does not match its manifest"):
        reg.rollback(v1)
    assert reg.current_version() == v2
    with pytest.raises(ArtifactError):
        reg.rollback("20990101T000000Z-deadbeef")
    # the serving one damaged on disk: load_current refuses (a worker keeps what it has)
    _corrupt(tmp_path / "routers" / v2 / "router.npz")
    with pytest.raises(ArtifactError):
        reg.load_current()


def test_an_install_cut_short_is_no_version(tmp_path: Path, prior, representer, monkeypatch) -> None:
    """`synqra learn` killed inside RouterRegistry.add (weights and manifest written to its temporary folder, not yet
    renamed to the version's name): that folder was listed by `--list` as a version and could be made to serve."""
    reg = RouterRegistry(tmp_path / "routers", DEFAULT_ARTIFACT)
    out = learn(prior, prior, _labelled(representer, 200, seed=23), LearningSettings())

    def killed(self: Path, target: Path) -> None:
        raise KeyboardInterrupt  # the process dies between writing the folder and naming it

    monkeypatch.setattr(Path, "rename", killed)
    with pytest.raises(KeyboardInterrupt):
        reg.add(out.scorer, out.manifest)
    monkeypatch.undo()
    (partial,) = [p.name for p in (tmp_path / "routers").iterdir() if p.is_dir()]
    assert reg.versions() == []
    with pytest.raises(ArtifactError):
        reg.activate(partial)
    assert reg.current_version() == BASE
    v = reg.add(out.scorer, out.manifest)  # the next run installs normally
    assert reg.versions() == [v]


def _log(
    tmp_path: Path, representer: Representer, n: int, seed: int, start: float, labelled_share: float = 1.0
) -> None:
    w = InferenceLogWriter(InferenceLog(tmp_path), representer, LearningSettings(), flush_interval_s=0.02)
    w.start()
    reqs, y = traffic(n, seed=seed)
    for i, (r, label) in enumerate(zip(reqs, y)):
        rid = f"s{seed}-{i}"
        w.log_route(rid, r, RouteDecision("local-llama", 0.2, "", {}), router_version="base", ts=start + i)
        if i < labelled_share * n:
            w.log_label(rid, "gate" if i % 2 else "judge", label)
    w.close()


def test_learning_from_the_log_installs_records_and_serves_the_new_version(tmp_path: Path, representer) -> None:
    now = time.time()
    _log(tmp_path, representer, 300, seed=30, start=now - 1000)
    store = InferenceLog(tmp_path)
    reg = RouterRegistry(tmp_path / "routers", DEFAULT_ARTIFACT)
    dry = learn_from_log(store, reg, LearningSettings(), dry_run=True, now=now)
    assert dry["decision"] == "would install" and reg.current_version() == BASE and reg.runs() == []
    rec = learn_from_log(store, reg, LearningSettings(), now=now)
    assert rec["decision"] == "installed", rec["reason"]
    assert rec["labelled_rows"] == 300 and rec["label_sources"] == {"gate": 150, "judge": 150}
    # the serving router is the base (loaded apart from the prior): the check reaches back past the newest 20%
    assert len(rec["validation"]["segments"]) == 3, rec["validation"]
    assert reg.current_version() == rec["version"]
    scorer, version = reg.load_current()
    assert version == rec["version"] and scorer.manifest["parent_version"].startswith("shipped-")
    assert reg.runs()[-1]["decision"] == "installed"


def test_the_schedule_waits_for_its_interval_and_new_labels(tmp_path: Path, representer) -> None:
    store = InferenceLog(tmp_path)
    reg = RouterRegistry(tmp_path / "routers", DEFAULT_ARTIFACT)
    now = time.time()
    assert due(store, reg, LearningSettings())[0] is False  # schedule off by default
    weekly = LearningSettings(schedule="weekly", min_new_labels=50)
    assert due(store, reg, weekly, now)[0] is False  # no labels yet
    _log(tmp_path, representer, 60, seed=31, start=now - 100)
    assert due(store, reg, weekly, now + 1)[0] is True
    reg.record_run({"decision": "kept", "ts": now + 2})
    ok, why = due(store, reg, weekly, now + 3)
    assert not ok and "schedule weekly" in why


def test_the_guard_asks_for_likelihood_evidence_about_the_ranking_not_the_calibration() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(600) < 0.3).astype(float)
    w = np.ones(600)
    informative = np.clip(np.where(y == 1, 0.6, 0.2) + rng.normal(0, 0.1, 600), 0.01, 0.99)  # ranks the labels well
    blind = np.clip(0.3 + rng.normal(0, 0.05, 600), 0.01, 0.99)  # ranks them at random
    # a candidate that knows more than the current router: strong evidence, pooled over the segments
    halves = [slice(0, 300), slice(300, 600)]
    gain, z = loglik_test([Segment(y[h], w[h], informative[h], blind[h]) for h in halves])
    assert gain > 0 and z >= GUARD_Z
    gain, z = loglik_test([Segment(y[h], w[h], blind[h], informative[h]) for h in halves])
    assert gain < 0 and z < 0
    # the same ranking, only miscalibrated (shifted and stretched): both are recalibrated, no evidence either way
    logit = np.log(informative / (1 - informative))
    miscalibrated = 1 / (1 + np.exp(-(2.5 * logit + 1.5)))
    gain, z = loglik_test([Segment(y, w, miscalibrated, informative)])
    assert abs(gain) < 1e-6 and abs(z) < 1.0
    # the recalibration is the best intercept and scale: never a worse fit than the scores as they are
    assert recalibrated_loglik(miscalibrated, y, w).sum() >= np.sum(
        y * np.log(miscalibrated) + (1 - y) * np.log(1 - miscalibrated)
    )


@pytest.mark.parametrize("rolled_back", [False, True], ids=["other-run", "other-run-then-rollback"])
def test_a_run_does_not_replace_a_version_made_to_serve_while_it_ran(
    tmp_path: Path, prior, representer, monkeypatch: pytest.MonkeyPatch, rolled_back: bool
) -> None:
    """A manual `synqra learn` beside the scheduled one, or a `--rollback` while a run fits: the run compared its
    candidate with the version serving when it started, so it must not install over one made to serve since. Also
    when the operator rolled back to the very version the run started from (another run had installed meanwhile):
    CURRENT names it again, and a check by name let the run install over the rollback (seen with two processes on one
    data dir, seconds after `--rollback base`); each activation makes a new CURRENT, and the run compares that."""
    import policies.learning.runs as runs

    now = time.time()
    _log(tmp_path, representer, 300, seed=30, start=now - 1000)
    reg = RouterRegistry(tmp_path / "routers", DEFAULT_ARTIFACT)
    other = learn(prior, prior, _labelled(representer, 200, seed=23), LearningSettings())
    v_other = reg.add(other.scorer, other.manifest, now=1_000_000)
    real_learn = runs.learn

    def meanwhile(*args, **kwargs):  # the other process finishes while this run fits (then the operator rolls back)
        out = real_learn(*args, **kwargs)
        reg.activate(v_other)
        if rolled_back:
            reg.rollback()
        return out

    monkeypatch.setattr(runs, "learn", meanwhile)
    rec = learn_from_log(InferenceLog(tmp_path), reg, LearningSettings(), now=now)
    why = "made to serve during the run" if rolled_back else "changed during the run (base -> "
    assert rec["decision"] == "kept" and why in rec["reason"], rec
    assert reg.current_version() == (BASE if rolled_back else v_other)  # what the other process or operator did stands
    assert rec["version"] in reg.versions()  # the candidate is stored: an operator can still --rollback to it
    monkeypatch.undo()
    # with nothing changed meanwhile, the same run installs
    rec = learn_from_log(InferenceLog(tmp_path), RouterRegistry(tmp_path / "r2", DEFAULT_ARTIFACT), LearningSettings())
    assert rec["decision"] == "installed", rec


def test_a_rollback_is_recorded_with_its_time_and_does_not_count_as_a_learning_run(tmp_path: Path, representer) -> None:
    store = InferenceLog(tmp_path)
    reg = RouterRegistry(tmp_path / "routers", DEFAULT_ARTIFACT)
    weekly = LearningSettings(schedule="weekly", min_new_labels=50)
    now = time.time()
    reg.record_run({"decision": "installed", "version": "v", "ts": now - 8 * 86400, "source": "log"})
    _log(tmp_path, representer, 60, seed=31, start=now - 100)
    reg.record_run({"decision": "rolled back", "version": BASE})
    rolled = reg.runs()[-1]
    assert abs(rolled["ts"] - time.time()) < 60 and rolled["time"].endswith("Z")
    ok, why = due(store, reg, weekly, now + 1)
    assert ok, why  # a week since the last learning run, and 60 new labels: the rollback learnt nothing
