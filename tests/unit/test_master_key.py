from __future__ import annotations

import stat
from pathlib import Path

import pytest

from proxy.master_key import resolve_master_key


def test_env_key_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNQRA_MASTER_KEY", "sk-from-env")
    assert resolve_master_key(tmp_path) == ("sk-from-env", "environment variable SYNQRA_MASTER_KEY")
    assert not (tmp_path / "master_key").exists()


def test_generated_once_owner_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNQRA_MASTER_KEY", raising=False)
    monkeypatch.delenv("LITELLM_MASTER_KEY", raising=False)
    key, origin = resolve_master_key(tmp_path / "data")
    path = tmp_path / "data" / "master_key"
    assert key.startswith("sk-synqra-") and len(key) > 40 and str(path) in origin
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert resolve_master_key(tmp_path / "data")[0] == key, "stable across restarts"
