"""Small measuring helpers shared by the benchmarks (percentiles, RSS, a table printer)."""

from __future__ import annotations

import os
import statistics
from pathlib import Path


def pct(values: list[float], q: float) -> float:
    """q-th percentile (0..100) by nearest rank; values need not be sorted."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, round(q / 100 * (len(s) - 1))))
    return s[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (from /proc; children not included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def table(rows: list[dict[str, object]]) -> str:
    """A markdown table of dict rows (same keys)."""
    if not rows:
        return ""
    cols = list(rows[0])
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


RESULTS = Path(__file__).resolve().parent / "results"


def write_result(name: str, text: str) -> Path:
    out = RESULTS / f"{name}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text + "\n")
    return out


def prepend_result(name: str, heading: str, text: str, results: Path = RESULTS) -> Path:
    """Put a run's section (`## heading`, then `text`) at the top of results/<name>.md, above the sections of
    earlier runs, which stay as they were (write_result replaces the file)."""
    out = results / f"{name}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    older = out.read_text() if out.exists() else ""
    section = f"## {heading}\n\n{text.strip()}\n"
    out.write_text(section + ("\n" + older.lstrip("\n") if older.strip() else ""))
    return out
