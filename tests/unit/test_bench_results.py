"""bench/measure.prepend_result: a benchmark's new run goes on top of its results file, earlier runs' sections kept."""

from __future__ import annotations

from pathlib import Path

from bench.measure import prepend_result


def test_a_new_run_is_put_above_the_earlier_ones_which_stay(tmp_path: Path) -> None:
    older = "## perf22 (2026-12-07)\n\n| proxy | M instr/req |\n|---|---|\n| bare | 36.4 |\n\n## perf21\n\nnotes\n"
    (tmp_path / "proxy_instructions.md").write_text(older)
    out = prepend_result("proxy_instructions", "perf23 (2026-12-08 02:30-02:50 UTC)", "`cmd`\n\n| a |\n", tmp_path)
    text = out.read_text()
    assert text.startswith("## perf23 (2026-12-08 02:30-02:50 UTC)\n\n`cmd`\n\n| a |\n\n## perf22")
    assert text.endswith(older)  # every earlier section, byte for byte


def test_the_first_run_makes_the_file(tmp_path: Path) -> None:
    out = prepend_result("x", "run", "figures", tmp_path / "results")
    assert out.read_text() == "## run\n\nfigures\n"
