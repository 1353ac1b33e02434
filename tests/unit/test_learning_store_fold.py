"""InferenceLog.write puts a row's outcomes and costs of the same write into its INSERT (one row write where an
INSERT and two UPDATEs were): the rows must end exactly as when the outcomes and costs come in a later write."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from policies.learning.store import Cost, InferenceLog, Label, Outcome, RouteRow


def _row(rid: str, ts: float = 1.0) -> RouteRow:
    return RouteRow(rid, ts, "key", b"f", b"e", b"t", 2, None, 0.25, "learned", "v1", "deepseek-chat", "live")


def _table(log: InferenceLog) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(str(log.path))
    try:
        return conn.execute("SELECT * FROM routed ORDER BY request_id").fetchall()
    finally:
        conn.close()


# (routes, outcomes, costs) written together; each id's row must end as if written first, the rest after.
CASES = {
    "outcome and costs": (
        ["a"],
        [Outcome("a", "deepseek-chat", None, None, 2.0)],
        [Cost("a", 0.1), Cost("a", 0.2)],
    ),
    "outcome with a cost, then costs": (
        ["a", "b"],
        [Outcome("a", "claude-sonnet", "deepseek-chat>claude-sonnet", 0.5, 3.0), Outcome("b", "x", None, 0.0, 4.0)],
        [Cost("a", 0.3), Cost("b", 0.7)],
    ),
    "two outcomes, the last wins, a cost-less one keeps the cost": (
        ["a"],
        [Outcome("a", "t1", None, 0.4, 2.0), Outcome("a", "t2", "t1>t2", None, 5.0)],
        [],
    ),
    "a cost with no outcome": (["a"], [], [Cost("a", 1e-7)]),
    "nothing but the row": (["a"], [], []),
    "an outcome and a cost of a row stored before": (
        ["b"],
        [Outcome("old", "t", None, None, 2.0), Outcome("b", "u", None, 0.1, 2.0)],
        [Cost("old", 0.25)],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_outcomes_and_costs_of_the_same_write_leave_the_row_as_a_later_write_would(tmp_path: Path, case: str) -> None:
    ids, outcomes, costs = CASES[case]
    together, apart = InferenceLog(tmp_path / "together.db"), InferenceLog(tmp_path / "apart.db")
    for log in (together, apart):
        log.write([_row("old", 0.5)], [Outcome("old", "s", None, 0.05, 1.0)])
    together.write([_row(i) for i in ids], outcomes, [Label("a", "gate", 1.0, 3.0)], costs)
    apart.write([_row(i) for i in ids])
    apart.write([], outcomes, [Label("a", "gate", 1.0, 3.0)], costs)
    assert _table(together) == _table(apart)


def test_an_id_stored_already_keeps_its_first_row_and_gets_the_outcome(tmp_path: Path) -> None:
    log = InferenceLog(tmp_path / "log.db")
    log.write([_row("a", 1.0)])
    log.write([_row("a", 9.0), _row("b", 9.0)], [Outcome("a", "t", None, 0.5, 3.0)], [], [Cost("b", 0.2)])
    rows = {r[0]: r for r in _table(log)}
    assert rows["a"][1] == 1.0 and rows["a"][-4:] == ("t", None, 0.5, 3.0)  # the first row, with the outcome
    assert rows["b"][-2] == 0.2


def test_an_id_twice_in_one_write_is_stored_once_with_its_outcome(tmp_path: Path) -> None:
    log = InferenceLog(tmp_path / "log.db")
    log.write([_row("a", 1.0), _row("a", 2.0)], [Outcome("a", "t", None, None, 3.0)], [], [Cost("a", 0.1)])
    assert _table(log) == [(*_table(log)[0][:13], "t", None, 0.1, 3.0)]
    assert _table(log)[0][1] == 1.0
