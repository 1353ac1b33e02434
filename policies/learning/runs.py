"""`synqra learn`'s two paths around learn.learn: the inference log (with the registry of versions)
and a labels file (the evaluation interface). I/O lives here; the decision in learn.py.

Start-up of a deployment's unattended loop (the supervisor): `due()` says whether a scheduled run
should happen now; `learn_from_log()` runs one and records it whatever it decides.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import numpy as np

from policies.common.learning_settings import LearningSettings
from policies.learning.learn import Labelled, Outcome, learn
from policies.learning.registry import (
    ROLLED_BACK,
    CurrentChanged,
    RouterRegistry,
    iso_time,
    scorer_version,
    write_artifact,
)
from policies.learning.representation import Representation, Representer, representation_key
from policies.learning.store import InferenceLog, combine_labels
from policies.routing.scorer import ArtifactError, LearnedScorer

log = logging.getLogger("synqra.learning")

SCHEDULE_INTERVAL_S = {"daily": 86400.0, "weekly": 7 * 86400.0}


def labelled_from_log(
    store: InferenceLog, prior: LearnedScorer, settings: LearningSettings, embedder: Any | None = None
) -> tuple[Labelled, Representation]:
    """(labelled rows oldest first, every logged row) under the prior's representation. Rows logged
    under another representation are re-read from their text when it was kept (and an embedder is
    given), else left out and counted."""
    key = representation_key(prior)
    ids, ts, traffic = store.representation(key)
    labels = store.labels()
    extra_ids: list[str] = []
    extra_ts: list[float] = []
    extra_rep = None
    skipped: dict[str, int] = {}
    others = store.other_key_rows(key)
    if others:
        usable = [(rid, t, json.loads(txt)) for rid, t, txt in others if txt]
        skipped["other_representation_without_text"] = len(others) - len(usable)
        if usable and embedder is not None:
            rep = Representer(prior, embedder)
            good = []
            for rid, t, req in usable:
                try:
                    good.append((rid, t, rep.represent([req])))
                except ValueError:
                    skipped["unreadable_text"] = skipped.get("unreadable_text", 0) + 1
            if good:
                extra_ids, extra_ts = [g[0] for g in good], [g[1] for g in good]
                extra_rep = Representation.concat([g[2] for g in good])
        elif usable:
            skipped["other_representation_no_embedder"] = len(usable)
    if extra_rep is not None:
        order = np.argsort(np.concatenate([ts, extra_ts]), kind="stable")
        all_ids = [(ids + extra_ids)[i] for i in order]
        all_ts = np.concatenate([ts, extra_ts])[order]
        traffic = Representation.concat([traffic, extra_rep]).subset(order) if len(traffic) else extra_rep.subset(order)
        ids, ts = all_ids, all_ts
    rows, label, weight, sources = [], [], [], []
    for i, rid in enumerate(ids):
        got = labels.get(rid)
        if not got:
            continue
        c = combine_labels(got, settings.source_weights)
        if c is None:
            continue
        rows.append(i)
        label.append(c[0])
        weight.append(c[1])
        sources.append(c[2])
    idx = np.array(rows, dtype=np.int64)
    data = Labelled(
        traffic.subset(idx),
        np.array(label, dtype=np.float64),
        np.array(weight, dtype=np.float64),
        sources,
        ts[idx] if len(idx) else np.zeros(0),
        skipped,
    )
    return data, traffic


def learn_from_log(
    store: InferenceLog,
    registry: RouterRegistry,
    settings: LearningSettings,
    embedder: Any | None = None,
    dry_run: bool = False,
    current_thresholds: list[float] | None = None,
    now: float | None = None,
    stage_thresholds: list[float] | None = None,
) -> dict[str, Any]:
    """One run over the inference log; returns (and, unless dry_run, appends to the run log) its record.
    Installs the candidate (new version, made current) only if it wins. `stage_thresholds`: the configured
    `synqra.routing.thresholds` (a rollout stage), whose tier shares the candidate keeps."""
    now = time.time() if now is None else now
    t0 = time.perf_counter()
    record: dict[str, Any] = {"time": iso_time(now), "ts": now, "dry_run": dry_run, "source": "log"}
    try:
        prior, prior_version = registry.load_base()
    except ArtifactError as e:
        record.update(decision="failed", reason=f"base artifact unusable: {e}")
        return _finish(registry, record, dry_run, t0)
    # What serves, and since which activation: the install is refused if it changes (a dry run installs nothing, and
    # takes no lock: it may read a store it cannot write).
    serving = None if dry_run else registry.serving()
    try:
        current, current_version = registry.load_current()
    except ArtifactError as e:  # the serving version is damaged: compare with the base instead
        log.error("current router version unusable (%s); comparing with the base artifact", e)
        current, current_version = prior, prior_version
        record["current_unusable"] = str(e)
    record.update(prior_version=prior_version, current_version=current_version)
    if not dry_run:
        try:
            record["purged_rows"] = store.purge(settings.retention_days, now)
        except sqlite3.OperationalError as e:  # a full disk: the run reads on, and says so
            record["purge_failed"] = str(e)
            log.error("inference log rows past retention not deleted: %s", e)
    data, traffic = labelled_from_log(store, prior, settings, embedder)
    record.update(
        labelled_rows=len(data), logged_rows=len(traffic), label_sources=data.by_source(), left_out=data.skipped
    )
    outcome = learn(
        prior,
        current,
        data,
        settings,
        traffic=traffic,
        current_thresholds=current_thresholds,
        stage_thresholds=stage_thresholds,
    )
    record.update(outcome.record())
    if outcome.installed:
        if dry_run:
            record["decision"] = "would install"
        else:
            manifest = {**outcome.manifest, "parent_version": current_version, "prior_version": prior_version}
            try:
                version = registry.add(outcome.scorer, manifest, now)
                record["version"] = version
                registry.activate(version, expect=serving)
            except CurrentChanged as e:  # a rollback or another run (manual beside scheduled) finished first
                record.update(decision="kept", reason=f"{e}; the candidate is stored, not serving")
            except (ArtifactError, OSError) as e:
                record.update(decision="failed", reason=f"candidate won but could not be installed: {e}")
    return _finish(registry, record, dry_run, t0)


def _finish(registry: RouterRegistry, record: dict[str, Any], dry_run: bool, t0: float) -> dict[str, Any]:
    """The record, appended to the run log. When it cannot be (a full disk), `unrecorded` says why and one ERROR
    line names the file: the exception ended the run unrecorded, with a traceback, and the schedule refitted at
    each of its checks."""
    record["seconds"] = round(time.perf_counter() - t0, 2)
    if not dry_run:
        try:
            registry.record_run(record)
        except OSError as e:
            record["unrecorded"] = f"{type(e).__name__}: {e}"
            log.error(
                "learning run (%s) could not be recorded in %s: %s",
                record.get("decision"),
                registry.runs_file,
                record["unrecorded"],
            )
    return record


def due(
    store: InferenceLog, registry: RouterRegistry, settings: LearningSettings, now: float | None = None
) -> tuple[bool, str]:
    """Whether the schedule asks for a run now: schedule on, its interval passed since the last
    (non-dry) run, and at least min_new_labels labels arrived since then."""
    if not settings.enabled or settings.schedule == "off":
        return False, "schedule off"
    now = time.time() if now is None else now
    # learning runs only: a rollback is recorded with a time too, but it learnt nothing
    runs = [
        r
        for r in registry.runs()
        if r.get("decision") != ROLLED_BACK and not r.get("dry_run") and isinstance(r.get("ts"), (int, float))
    ]
    last = max((r["ts"] for r in runs), default=0.0)
    interval = SCHEDULE_INTERVAL_S[settings.schedule]
    if now - last < interval:
        return False, f"last run {(now - last) / 3600:.1f} h ago, schedule {settings.schedule}"
    new = store.labels_since(last)
    if new < settings.min_new_labels:
        return False, f"{new} new labels since the last run, {settings.min_new_labels} needed"
    return True, f"{new} new labels since the last run"


# --- the labels file: the evaluation interface ---------------------------------------------------


def read_labels_file(lines: Iterable[str]) -> tuple[list[dict[str, Any]], list[float], list[str]]:
    """(requests, labels, errors) of JSON lines {"id", "messages", "label"} in file order; a bad line
    is reported (line number and why) and skipped."""
    from policies.routing.cli import parse_line

    requests, labels, errors = [], [], []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        rid, req, err = parse_line(line)
        if err is None:
            raw = json.loads(line).get("label")
            if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 0.0 <= float(raw) <= 1.0:
                err = f"'label' must be a number from 0 to 1, got {raw!r}"
        if err is not None or req is None:
            errors.append(f"line {n} (id {rid!r}): {err}")
            continue
        requests.append(req)
        labels.append(float(raw))
    return requests, labels, errors


def learn_from_file(
    lines: Iterable[str] | IO[str],
    out_dir: Path,
    prior: LearnedScorer,
    embedder: Any,
    settings: LearningSettings,
    dry_run: bool = False,
) -> tuple[Outcome, list[str]]:
    """Fit from a labels file exactly as from the log (file order = time order), with the prior as the
    current router, and write the winner (the candidate, or the prior kept) to out_dir as a loadable
    artifact folder. Returns (outcome, errors of skipped lines); ValueError when no line is usable."""
    requests, labels, errors = read_labels_file(lines)
    if not requests:
        raise ValueError("no usable labelled request in the file" + (f" ({errors[0]})" if errors else ""))
    rep = Representer(prior, embedder).represent(requests)
    data = Labelled(
        rep,
        np.array(labels),
        np.ones(len(labels)),
        [("file",)] * len(labels),
        None,
        {"unreadable_lines": len(errors)} if errors else {},
    )
    outcome = learn(prior, prior, data, settings, traffic=rep)
    if not dry_run:
        if outcome.installed:
            manifest = outcome.manifest
        else:  # the prior, unchanged, with the run's decision beside it
            manifest = {
                **{k: v for k, v in prior.manifest.items() if k not in ("artifact", "artifact_sha256")},
                "parent_version": scorer_version(prior),
                "decision": outcome.reason,
                "validation": outcome.validation,
                "training_rows": {"labelled": len(data), "by_source": data.by_source(), "left_out": data.skipped},
            }
        write_artifact(
            out_dir, outcome.scorer, {**manifest, "version": f"file-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"}
        )
    return outcome, errors
