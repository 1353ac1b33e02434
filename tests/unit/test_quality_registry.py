"""One table of quality signals: every name is known in one place; a misspelt weight fails at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from policies.common.quality_settings import QualitySettings
from policies.quality import registry as reg
from policies.quality.escalation import rephrase_instruction
from policies.quality.scorer import QualityVerdict, combine, compute_signals
from policies.quality.signals import Signal

ROOT = Path(__file__).resolve().parents[2]


def test_compute_signals_yields_exactly_the_registered_signals() -> None:
    sigs = compute_signals({"messages": [{"role": "user", "content": "Hi?"}]}, "Hello!", "stop", None, None, None)
    assert list(sigs) == [s.name for s in reg.SIGNALS]


def test_hard_signals_are_rules_and_the_roles_cover_the_table() -> None:
    assert set(reg.HARD_SIGNALS) == {"empty", "cut_off", "loop", "json_valid", "tool_args"}
    assert set(reg.RULES) | set(reg.INPUTS) == set(reg.BY_NAME) and not set(reg.RULES) & set(reg.INPUTS)


def test_misspelt_weight_is_an_error_naming_it() -> None:
    with pytest.raises(ValidationError, match="relevence"):
        QualitySettings.model_validate({"weights": {"relevence": 0.5}})
    with pytest.raises(ValidationError, match="weights"):
        QualitySettings.model_validate({"weights": {"relevance": 1.5}})
    s = QualitySettings.model_validate({"weights": {"relevance": 0.1}})
    assert s.weights["relevance"] == 0.1 and s.weights["arithmetic"] == reg.BY_NAME["arithmetic"].weight


def test_misspelt_weight_fails_the_config_load(tmp_path: Path) -> None:
    """Through the app's own config loader, as `synqra serve` starts: the error names the dotted key."""
    from policies.common.settings import load_config

    cfg = yaml.safe_load((ROOT / "litellm_config.yaml").read_text())
    cfg["synqra"]["quality"]["weights"] = {"hedgin": 0.3}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(Exception, match=r"synqra\.quality\.weights.*hedgin|hedgin.*known"):
        load_config(str(path))


def test_combine_refuses_an_unregistered_signal() -> None:
    with pytest.raises(KeyError, match="tone"):
        combine({"empty": Signal(1.0), "tone": Signal(0.0)}, QualitySettings())


def test_weight_zero_switches_a_signal_off_and_rules_cap_the_learned_probability() -> None:
    sigs = {s.name: Signal(1.0) for s in reg.SIGNALS}
    sigs["arithmetic"] = Signal(0.0, "wrong arithmetic")
    s = QualitySettings()
    assert combine(sigs, s, learned=0.95).score == pytest.approx(0.95 * (1 - s.weights["arithmetic"]))
    off = QualitySettings.model_validate({"weights": {"arithmetic": 0.0}})
    assert combine(sigs, off, learned=0.95).score == pytest.approx(0.95)
    sigs["arithmetic"] = Signal(1.0)
    sigs["hedging"] = Signal(0.4)  # an input signal: the learned model read it, it is not applied again
    assert combine(sigs, s, learned=0.9).score == pytest.approx(0.9)
    assert combine(sigs, s).score == pytest.approx(1 - s.weights["hedging"] * 0.6)  # no model: the product


def test_rephrase_hints_come_from_the_table() -> None:
    v = QualityVerdict(0.7, "rephrase", [], {"invented_figure": 0.0, "refusal": 1.0, "unknown_old_name": 0.0})
    text = rephrase_instruction(v)
    assert reg.BY_NAME["invented_figure"].hint in text and reg.BY_NAME["refusal"].hint not in text


def test_readme_names_only_files_that_exist_and_documents_next_step() -> None:
    import inspect
    import re

    from policies.quality.escalation import next_step

    readme = (ROOT / "policies" / "quality" / "README.md").read_text()
    for name in re.findall(r"`([\w/]+\.py)`", readme):
        candidates = [ROOT / "policies" / "quality" / name, ROOT / name, ROOT / "policies" / name]
        assert any(p.is_file() for p in candidates), f"README names {name}, which does not exist"
    for param in inspect.signature(next_step).parameters:
        assert param in readme, f"README does not document next_step's {param!r}"
