"""`synqra quality-score` round trip: JSON lines in, scores out, in order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from policies.quality.cli import quality_score_main
from proxy.cli import main as synqra_main

ROWS = [
    {
        "id": "good",
        "messages": [{"role": "user", "content": "Why is the sky blue?"}],
        "answer": "Air molecules scatter blue sunlight more strongly than red light, so the sky looks blue.",
    },
    {"id": 7, "messages": [{"role": "user", "content": "Name three primary colours."}], "answer": "   "},
    {"id": "loop", "messages": [{"role": "user", "content": "Tell me a story."}], "answer": "The end is near. " * 40},
    {
        "id": "cut",
        "messages": [{"role": "user", "content": "Write a poem about rain."}],
        "answer": "Rain falls softly on the roof,",
        "finish_reason": "length",
    },
]


def _run(tmp_path: Path, extra: list[str]) -> list[dict]:
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    assert quality_score_main(["--input", str(src), "--output", str(dst), *extra]) == 0
    return [json.loads(line) for line in dst.read_text().splitlines()]


def test_round_trip_default_settings(tmp_path: Path) -> None:
    out = _run(tmp_path, [])
    assert [o["id"] for o in out] == [r["id"] for r in ROWS]
    assert all(set(o) == {"id", "score", "action"} and 0 <= o["score"] <= 1 for o in out)
    assert [o["action"] for o in out] == ["deliver", "escalate", "escalate", "escalate"]


def test_config_bands_apply(tmp_path: Path) -> None:
    cfg = {
        "model_list": [
            {
                "model_name": "local-llama",
                "litellm_params": {"model": "openai/x", "api_base": "http://127.0.0.1:8080/v1"},
            },
            {
                "model_name": "local-embed",
                "litellm_params": {"model": "openai/e", "api_base": "http://127.0.0.1:8081/v1"},
            },
            {"model_name": "deepseek-chat", "litellm_params": {"model": "deepseek/deepseek-chat"}},
            {"model_name": "claude-sonnet", "litellm_params": {"model": "anthropic/claude-sonnet-4-5"}},
            {"model_name": "auto", "litellm_params": {"model": "openai/auto"}},
        ],
        # Nothing but a perfect score delivers; relevance off (no embedding model loaded).
        "synqra": {
            "quality": {"deliver_above": 0.999, "escalate_below": 0.5, "weights": {"relevance": 0.0, "hedging": 0.9}}
        },
    }
    path = tmp_path / "litellm_config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rows = [
        {
            "id": 1,
            "messages": [{"role": "user", "content": "Is it going to rain?"}],
            "answer": "I think it might rain, however I'm not sure.",
        }
    ]
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text(json.dumps(rows[0]) + "\n")
    assert synqra_main(["quality-score", "--config", str(path), "--input", str(src), "--output", str(dst)]) == 0
    out = json.loads(dst.read_text())
    assert out["id"] == 1 and out["action"] != "deliver"


def test_bad_line_is_a_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "messages": [], "answer": "x"}\nnot json\n')
    with pytest.raises(SystemExit, match="line 2"):
        quality_score_main(["--input", str(src), "--output", str(tmp_path / "o.jsonl")])
