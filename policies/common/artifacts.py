"""A trained model's files: its `.npz` arrays beside a JSON manifest, and the checks made before trusting them.

Both learned models (the router's scorer, the quality gate's answer model) ship this way: the trainer writes
the arrays, then a manifest naming the artifact's sha256 and the training code's; a loader refuses an
artifact its manifest does not vouch for. The model-specific checks (arrays, shapes, format) stay with each model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np


def manifest_path(artifact: Path) -> Path:
    return artifact.with_suffix(".manifest.json")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def code_hash(folder: Path, files: Iterable[str]) -> str:
    """sha256 over each file's name and bytes, in the given order: what a manifest records of the code."""
    h = hashlib.sha256()
    for name in files:
        h.update(name.encode())
        h.update((folder / name).read_bytes())
    return h.hexdigest()


def load_vouched_arrays(
    path: Path, *, what: str, manifest_what: str, how_to_build: str, error: type[Exception]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, manifest) of an `.npz` whose manifest names its sha256; `error` says what is wrong otherwise.

    `what` and `manifest_what` name the two files in the messages ("router artifact", "router manifest"),
    `how_to_build` is the hint given when the artifact is missing."""
    man = manifest_path(path)
    if not path.is_file():
        raise error(f"{what} not found: {path} ({how_to_build})")
    if not man.is_file():
        raise error(f"{manifest_what} not found: {man}")
    try:
        manifest = json.loads(man.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise error(f"{manifest_what} {man} is not valid JSON: {e}") from None
    digest = sha256_file(path)
    if manifest.get("artifact_sha256") != digest:
        raise error(f"{what} {path} does not match its manifest (sha256 {digest[:12]}...)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile / ValueError / OSError: any unreadable file is the same problem
        raise error(f"{what} {path} is unreadable: {e}") from None
    return arrays, manifest
