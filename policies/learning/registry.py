"""Versioned router artifacts: the learned routers a deployment has installed, and which one serves.

    <store>/routers/
        CURRENT                 the serving version's name (absent: the base artifact, e.g. the shipped one)
        <version>/router.npz    the weights (scorer.LearnedScorer.save)
        <version>/router.manifest.json
        runs.jsonl              one record per `synqra learn` run: installed / kept / failed, and why

Versions are `YYYYmmddTHHMMSSZ-<sha8 of the weights>`: sorted by name they are in time order, and a
name says which weights it holds. Nothing is deleted: `rollback` points CURRENT at an older
version. CURRENT is replaced atomically (os.replace) under a file lock, so a worker that reads it
mid-install sees the old or the new name, never half of one. Every version is loaded through
scorer.load_artifact (sha256 against the manifest, shapes, finite weights) before it is made
current, so a corrupt artifact is refused and the serving one kept.

The proxy's workers poll `current_version()` (one small file read) and reload with `load_current()`
when it changes, keeping the scorer they have if the load fails.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from policies.common.artifacts import manifest_path, sha256_file
from policies.routing.scorer import ArtifactError, LearnedScorer, load_artifact

ARTIFACT_NAME = "router.npz"
BASE = "base"  # CURRENT absent: the configured (shipped) artifact serves
TMP_PREFIX = ".tmp-"  # a version being written by `add` (renamed to its name once complete)


def base_version(base_artifact: Path) -> str:
    """The version name of a shipped or configured artifact: its manifest's, else `shipped-<sha12>`."""
    try:
        v = json.loads(manifest_path(base_artifact).read_text()).get("version")
        if isinstance(v, str) and v:
            return v
    except (OSError, ValueError):
        pass
    try:
        return f"shipped-{sha256_file(base_artifact)[:12]}"
    except OSError:
        return "shipped-missing"


def scorer_version(scorer: LearnedScorer, default: str = "unknown") -> str:
    v = scorer.manifest.get("version")
    return v if isinstance(v, str) and v else default


def artifact_in(folder: Path) -> Path:
    """The .npz of an artifact folder (or the path itself when it is a .npz file)."""
    folder = Path(folder)
    return folder if folder.suffix == ".npz" else folder / ARTIFACT_NAME


def write_artifact(folder: Path, scorer: LearnedScorer, manifest: dict[str, Any]) -> Path:
    """Write weights + manifest (with their sha256 and `version` if not given) into folder; verified by
    loading it back. Raises ArtifactError if what was written does not load."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ARTIFACT_NAME
    scorer.save(path)
    manifest = {
        **manifest,
        "artifact": ARTIFACT_NAME,
        "artifact_sha256": sha256_file(path),
        "embedder": scorer.embedder,
    }
    manifest_path(path).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    load_artifact(path)
    return path


def new_version_name(weights_sha: str, now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{weights_sha[:8]}"


ROLLED_BACK = "rolled back"  # a run record's decision when `synqra learn --rollback` changed what serves


def iso_time(ts: float) -> str:
    """A run record's `time` (UTC, to the second)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class CurrentChanged(ArtifactError):
    """CURRENT no longer names the version a learn run compared its candidate with, or was rewritten since."""


@dataclasses.dataclass(frozen=True)
class Serving:
    """What serves and which activation made it serve: CURRENT's inode and change time (each activation replaces the
    file), None while CURRENT is absent. A rollback to the version that served before shows as a new stamp."""

    version: str
    stamp: tuple[int, int] | None


class RouterRegistry:
    def __init__(self, root: str | Path, base_artifact: str | Path) -> None:
        self.root = Path(root)
        self.base_artifact = Path(base_artifact)

    @property
    def _current_file(self) -> Path:
        return self.root / "CURRENT"

    @property
    def runs_file(self) -> Path:
        return self.root / "runs.jsonl"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # --- what serves ------------------------------------------------------------------------------

    def current_version(self) -> str:
        """The serving version's name (`base` when nothing learnt is installed); cheap, for polling."""
        try:
            name = self._current_file.read_text().strip()
        except FileNotFoundError:
            return BASE
        return name or BASE

    def serving(self) -> Serving:
        """The serving version and its activation's stamp (`activate(..., expect=)` refuses when either changed)."""
        with self._locked():
            return self._serving()

    def _serving(self) -> Serving:  # under the lock, which every activation holds
        try:
            st = self._current_file.stat()
        except FileNotFoundError:
            return Serving(BASE, None)
        return Serving(self.current_version(), (st.st_ino, st.st_mtime_ns))

    def current_artifact(self) -> Path:
        v = self.current_version()
        return self.base_artifact if v == BASE else artifact_in(self.root / v)

    def load_current(self) -> tuple[LearnedScorer, str]:
        """(scorer, version) of what serves. Raises ArtifactError when it cannot be loaded: the caller
        keeps the scorer it has (a worker) or reports it (the CLI)."""
        scorer = load_artifact(self.current_artifact())
        name = self.current_name()
        return dataclasses.replace(scorer, manifest={**scorer.manifest, "version": name}), name

    def current_name(self) -> str:
        """The serving version as the proxy names it (x-synqra-router-version, the inference log's router_version)."""
        v = self.current_version()
        return base_version(self.base_artifact) if v == BASE else v

    def load_base(self) -> tuple[LearnedScorer, str]:
        scorer = load_artifact(self.base_artifact)
        name = base_version(self.base_artifact)
        return dataclasses.replace(scorer, manifest={**scorer.manifest, "version": name}), name

    def versions(self) -> list[str]:
        """Installed-or-kept learnt versions, oldest first (not the temporary folder of an `add` cut short)."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(TMP_PREFIX) and (p / ARTIFACT_NAME).is_file()
        )

    # --- changing what serves -----------------------------------------------------------------------

    def add(self, scorer: LearnedScorer, manifest: dict[str, Any], now: float | None = None) -> str:
        """Write a new version folder (not yet serving); returns its name. A write that fails (a full disk) removes
        its temporary folder before raising: each failed install left one, and the disk stayed full."""
        self._sweep_orphans()
        tmp = self.root / f"{TMP_PREFIX}{os.getpid()}-{time.monotonic_ns()}"
        try:
            return self._add(tmp, scorer, manifest, now)
        except Exception:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _sweep_orphans(self) -> None:
        """Remove the temporary folders of runs that died inside `add` (their process is gone): space a full disk
        needs. A live process's folder (a run beside this one) is left alone."""
        if not self.root.is_dir():
            return
        for p in self.root.glob(f"{TMP_PREFIX}*"):
            pid = p.name.removeprefix(TMP_PREFIX).split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                shutil.rmtree(p, ignore_errors=True)

    def _add(self, tmp: Path, scorer: LearnedScorer, manifest: dict[str, Any], now: float | None) -> str:
        path = write_artifact(tmp, scorer, manifest)
        name = new_version_name(sha256_file(path), now)
        manifest = {**json.loads(manifest_path(path).read_text()), "version": name}
        manifest_path(path).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        load_artifact(path)
        final = self.root / name
        if final.exists():  # same weights in the same second: keep the one already there
            for p in tmp.iterdir():
                p.unlink()
            tmp.rmdir()
        else:
            tmp.rename(final)
        return name

    def activate(self, version: str, expect: str | Serving | None = None) -> None:
        """Make `version` (or `base`) serve. Raises ArtifactError, and changes nothing, if it does not load, or
        (CurrentChanged) if `expect` is given and another version serves by now, or (a `Serving`) any version was
        made to serve since, the same one included: a learn run validated its candidate against `expect`, and a
        rollback or another run that finished meanwhile must not be undone."""
        with self._locked():
            name = expect.version if isinstance(expect, Serving) else expect
            if name is not None and (now := self.current_version()) != name:
                raise CurrentChanged(f"the serving version changed during the run ({name} -> {now})")
            if isinstance(expect, Serving) and self._serving() != expect:
                raise CurrentChanged(f"{name} was made to serve during the run (a rollback or another run)")
            if version != BASE:
                if version not in self.versions():
                    raise ArtifactError(f"no router version {version!r} in {self.root}")
                load_artifact(artifact_in(self.root / version))  # refuse a corrupt one before it serves
            tmp = self._current_file.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(version + "\n")
            os.replace(tmp, self._current_file)

    def rollback(self, version: str | None = None) -> str:
        """Serve `version`, or (None) the version installed before the current one (`base` before the
        first). Returns the version now serving; raises ArtifactError and keeps the current one if the
        target does not load."""
        if version is None:
            current, older = self.current_version(), self.versions()
            if current == BASE:
                raise ArtifactError("nothing to roll back: the base artifact is serving")
            installed = [r["version"] for r in self.runs() if r.get("decision") == "installed" and r.get("version")]
            before = [v for v in installed if v < current and v in older]
            version = before[-1] if before else BASE
        self.activate(version)
        return version

    # --- the run log ----------------------------------------------------------------------------------

    def record_run(self, record: dict[str, Any]) -> None:
        """Append a run's record; one without a time (a rollback) is stamped now, so it sorts and shows by month."""
        ts = record.get("ts")
        if not isinstance(ts, (int, float)):
            ts = time.time()
        record = {"time": iso_time(ts), "ts": ts, **record}
        with self._locked():
            with self.runs_file.open("a") as f:
                f.write(json.dumps(record, default=str) + "\n")

    def runs(self) -> list[dict[str, Any]]:
        """Every run's record, oldest first (a line that is not a JSON object, and a `version` that is not a name, are
        skipped: the log may be torn or edited by hand, and its readers call `.get` and compare versions)."""
        try:
            lines = self.runs_file.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                if "version" in record and not isinstance(record["version"], str):
                    record = {k: v for k, v in record.items() if k != "version"}
                out.append(record)
        return out
