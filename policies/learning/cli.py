"""`synqra learn`: adapt the router to labelled traffic, keep its versions, roll back.

    synqra learn                       # fit from the inference log; install the candidate only if it wins
    synqra learn --dry-run             # the same comparison, printed; nothing installed or recorded
    synqra learn --if-due              # run only when synqra.learning.schedule says so (the supervisor)
    synqra learn --rollback [VERSION]  # serve VERSION (default: the one installed before the current)
    synqra learn --list                # versions and the last runs' decisions
    synqra learn --export FILE | --import FILE   # merge the inference logs of replicas on other hosts
    synqra learn --labels FILE --out DIR         # the evaluation interface: JSON lines
                                                 # {"id", "messages", "label": 0..1} -> artifact folder DIR
    synqra route-score --router DIR < requests.jsonl

Exit status: 0 done (installed or kept), 1 refused (corrupt artifact or inference log, nothing to roll back), 2 bad
input.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

from policies.common.learning_settings import LearningSettings
from policies.embedding.names import embedder_for
from policies.learning.registry import ROLLED_BACK, RouterRegistry
from policies.learning.runs import due, learn_from_file, learn_from_log
from policies.learning.store import FILENAME as LOG_FILENAME
from policies.learning.store import InferenceLog
from policies.routing.scorer import DEFAULT_ARTIFACT, ArtifactError, load_artifact

PROG = "synqra learn"


def _settings(config: str | None) -> tuple[LearningSettings, Path, Path, list[float] | None]:
    """(learning settings, learning folder, base artifact, configured thresholds: the rollout stage) from the
    config (built-in defaults without one)."""
    from policies.routing.cli import _load_config

    cfg = _load_config(config)
    settings = getattr(cfg.synqra, "learning", None) or LearningSettings()
    folder = settings.store_path(cfg.synqra.server.data_path)
    base = Path(cfg.synqra.routing.artifact_path or DEFAULT_ARTIFACT)
    return settings, folder, base, cfg.synqra.routing.thresholds


def _file_in_the_way(folder: Path) -> Path | None:
    """The file at `folder` or at the nearest of its parents that exists, if that is not a folder (the learning folder
    cannot be made there), else None."""
    for path in (folder, *folder.parents):
        if path.exists():
            return None if path.is_dir() else path
    return None


def _writable(folder: Path) -> bool:
    """Whether a file can be made in the learning folder (or in the nearest parent that exists, where it would be)."""
    where = next((p for p in (folder, *folder.parents) if p.exists()), folder)
    try:
        with tempfile.TemporaryFile(dir=where):
            return True
    except OSError:
        return False


# Less free space than this under the learning folder, and a failure to open the log is the disk's: SQLite reports a
# journal it cannot write as "disk I/O error" (SQLITE_IOERR), not as a full disk.
NEARLY_FULL_BYTES = 1 << 20


def _disk_full(folder: Path, e: BaseException) -> str | None:
    """The message for a learning folder on a full disk (or None when the failure is not that)."""
    where = next((p for p in (folder, *folder.parents) if p.exists()), folder)
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        return None
    said_full = (isinstance(e, OSError) and e.errno == errno.ENOSPC) or "disk is full" in str(e)
    if not said_full and free >= NEARLY_FULL_BYTES:
        return None
    return (
        f"the disk holding the learning folder {folder} is full ({free:,} bytes free; SQLite said: {e}): free space "
        "there and run again; --dry-run, --list and --export only read"
    )


def _not_writable(folder: Path, e: BaseException) -> str:
    return (
        f"the learning folder {folder} is read-only ({e}): this needs to write there; "
        "--dry-run, --list and --export only read it"
    )


def _print_record(record: dict[str, Any]) -> None:
    v = record.get("validation") or {}
    print(f"{record.get('decision')}: {record.get('reason')}")
    if "candidate" in v:
        print(
            f"  newest {v.get('rows')} labelled requests: candidate {json.dumps(v['candidate'])}, "
            f"{v.get('compared_with', 'current')} {json.dumps(v['current'])}"
        )
    for key in (
        "labelled_rows",
        "logged_rows",
        "label_sources",
        "fit",
        "thresholds",
        "threshold_notes",
        "version",
        "seconds",
    ):
        if record.get(key) not in (None, {}, []):
            print(f"  {key}: {json.dumps(record[key])}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--config", help="litellm_config.yaml (default: the repo's, else built-in defaults)")
    ap.add_argument(
        "--store", type=Path, help="learning folder (default: synqra.learning.store_dir or <data_dir>/learning)"
    )
    ap.add_argument(
        "--prior", type=Path, help="base artifact .npz (default: synqra.routing.artifact_path or the shipped one)"
    )
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--labels", type=Path, help="JSON lines {id, messages, label}: fit from this file (needs --out)")
    what.add_argument(
        "--rollback", nargs="?", const="", metavar="VERSION", help="serve VERSION (default: the previous one)"
    )
    what.add_argument("--list", action="store_true", help="versions and recent runs")
    what.add_argument("--if-due", action="store_true", help="run only if the schedule says so")
    what.add_argument("--export", type=Path, metavar="FILE", help="write the inference log as JSON lines")
    what.add_argument("--import", dest="import_", type=Path, metavar="FILE", help="add another replica's export")
    ap.add_argument("--out", type=Path, help="with --labels: artifact folder to write")
    ap.add_argument("--dry-run", action="store_true", help="print the comparison; install and record nothing")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    from policies.common.offline import apply_offline_env  # no model hub at run time

    apply_offline_env()
    try:
        settings, folder, base, stage = _settings(args.config)
    except ValueError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    folder = args.store or folder
    base = args.prior or base
    registry = RouterRegistry(folder / "routers", base)
    if args.labels is not None:
        return _from_file(args, base, settings)
    if args.out is not None:
        print(f"{PROG}: --out goes with --labels", file=sys.stderr)
        return 2
    blocker = _file_in_the_way(folder)
    if blocker is not None:
        where = f"--store {folder}" if args.store else f"the learning folder {folder} (synqra.learning.store_dir)"
        print(
            f"{PROG}: {where}: {blocker} is a file, not a folder; name a folder (it is created if missing)",
            file=sys.stderr,
        )
        return 2
    if args.rollback is not None:
        try:
            version = registry.rollback(args.rollback or None)
        except ArtifactError as e:
            print(
                f"{PROG}: rollback refused: {e}; the current router ({registry.current_version()}) keeps serving",
                file=sys.stderr,
            )
            return 1
        except OSError as e:  # a read-only store: a traceback (PermissionError on routers/.lock)
            print(f"{PROG}: rollback refused: {_not_writable(folder, e)}", file=sys.stderr)
            return 2
        try:
            registry.record_run(
                {
                    "decision": ROLLED_BACK,
                    "version": version,
                    "reason": f"synqra learn --rollback {args.rollback}".strip(),
                }
            )
        except OSError as e:
            print(f"{PROG}: serving {version}, but the rollback is not in the run log: {e}", file=sys.stderr)
        print(f"serving {version}")
        return 0
    if args.list:
        current = registry.current_version()
        print(f"current: {current}")
        for v in registry.versions():
            print(f"  {v}{'  (current)' if v == current else ''}")
        for r in registry.runs()[-10:]:
            print(f"run {r.get('time', '?')}: {r.get('decision')} {r.get('version', '')} {r.get('reason', '')}")
        return 0
    # What only reads opens an existing log read-only: on a read-only store it said "cannot be read".
    reads_only = (args.dry_run and not args.if_due) or args.export is not None
    read_only = reads_only and (folder / LOG_FILENAME).is_file()
    try:
        store = InferenceLog(folder, read_only=read_only)
    except (sqlite3.DatabaseError, RuntimeError, OSError) as e:  # not a database, or another schema: nothing changed
        if not read_only and not _writable(folder):
            why = f"no inference log in {folder}, a read-only folder" if reads_only else _not_writable(folder, e)
            print(f"{PROG}: {why}", file=sys.stderr)
            return 2
        full = None if read_only else _disk_full(folder, e)
        if full is not None:  # an empty file can still be made there, so it did not read as read-only
            print(f"{PROG}: {full}", file=sys.stderr)
            return 1  # as when the run's record cannot be written: the schedule retries, backing off
        print(f"{PROG}: the inference log in {folder} cannot be read: {e}", file=sys.stderr)
        return 1
    try:
        if args.export is not None:
            with args.export.open("w") as f:
                rows, labels = store.export_jsonl(f)
            print(f"exported {rows} rows and {labels} labels to {args.export}")
            return 0
        if args.import_ is not None:
            try:
                with args.import_.open() as f:
                    rows, labels = store.import_jsonl(f)
            except (OSError, ValueError) as e:
                print(f"{PROG}: {e}", file=sys.stderr)
                return 2
            print(f"imported {rows} new rows and {labels} new labels from {args.import_}")
            return 0
        if args.if_due:
            ok, why = due(store, registry, settings)
            if not ok:
                print(f"not due: {why}")
                return 0
        try:
            embedder = embedder_for(load_artifact(base).embedder)
        except ArtifactError as e:
            print(f"{PROG}: {e}", file=sys.stderr)
            return 1
        record = learn_from_log(store, registry, settings, embedder, dry_run=args.dry_run, stage_thresholds=stage)
    finally:
        store.close()
    _print_record(record)
    if "unrecorded" in record:
        print(
            f"{PROG}: the run could not be recorded in {registry.runs_file} ({record['unrecorded']}); "
            "free space there: the schedule retries, backing off",
            file=sys.stderr,
        )
        return 1
    return 1 if record.get("decision") == "failed" else 0


def _from_file(args: argparse.Namespace, base: Path, settings: LearningSettings) -> int:
    if args.out is None and not args.dry_run:
        print(f"{PROG}: --labels needs --out DIR (or --dry-run)", file=sys.stderr)
        return 2
    try:
        prior = load_artifact(base)
    except ArtifactError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    try:
        with args.labels.open() as f:
            outcome, errors = learn_from_file(
                f, args.out or Path("."), prior, embedder_for(prior.embedder), settings, args.dry_run
            )
    except (OSError, ValueError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    for err in errors[:20]:
        print(f"{PROG}: skipped {err}", file=sys.stderr)
    if len(errors) > 20:
        print(f"{PROG}: ... {len(errors) - 20} more lines skipped", file=sys.stderr)
    _print_record(outcome.record())
    if not args.dry_run:
        print(f"wrote {args.out} ({'candidate' if outcome.installed else 'prior kept'})")
    return 0
