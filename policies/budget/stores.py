"""The configured ledger store: the embedded SQLite file, or a shared Redis (see BudgetSettings.store)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from policies.budget.store import BudgetStore
from policies.common.budget_settings import BudgetSettings


def sqlite_path(settings: BudgetSettings, data_dir: Path) -> Path:
    return Path(settings.sqlite_path).expanduser() if settings.sqlite_path else data_dir / "budget.sqlite3"


def open_store(settings: BudgetSettings, data_dir: Path, env: Mapping[str, str]) -> BudgetStore:
    """The configured store (see BudgetSettings.store); connections open lazily."""
    target = settings.resolved_store(env)
    if target == "sqlite":
        from policies.budget.sqlite_store import SqliteStore

        return SqliteStore(
            sqlite_path(settings, data_dir), settings.sqlite_synchronous, loop_writes=settings.sqlite_loop_writes
        )
    from policies.budget.redis_store import RedisStore

    return RedisStore(target, prefix=settings.redis_key_prefix, timeout_s=settings.store_timeout_s)
