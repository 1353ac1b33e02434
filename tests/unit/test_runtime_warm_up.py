"""Runtime.warm_up(): the policy objects and the router's embedding table are ready before the first request."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml

from policies.common.settings import load_config
from proxy.runtime import Runtime

REPO = Path(__file__).resolve().parents[2]


def test_warm_up_builds_router_table_quality_and_budget(tmp_path: Path) -> None:
    raw = yaml.safe_load((REPO / "litellm_config.yaml").read_text())
    raw["synqra"]["server"]["data_dir"] = str(tmp_path / "data")
    path = tmp_path / "litellm_config.yaml"
    path.write_text(yaml.safe_dump(raw))
    rt = Runtime(load_config(path), "sk-test")
    assert not {"router", "quality", "budget", "static_embedder"} & set(vars(rt))  # lazy until asked

    async def main() -> None:
        await rt.warm_up()
        assert {"router", "quality", "budget", "static_embedder"} <= set(vars(rt))
        assert rt.static_embedder._chunks._ids  # the tokenizer has run once
        assert (await rt.budget.status())["store"]["reachable"]
        await rt.aclose()

    asyncio.run(main())
