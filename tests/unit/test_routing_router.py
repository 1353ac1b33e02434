"""The Router end to end with the shipped artifact and the real embedder it was trained with (in-process)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from policies.common.artifacts import manifest_path
from policies.common.routing_settings import RoutingSettings
from policies.common.settings import AppConfig, ModelEntry, SynqraSettings
from policies.embedding.base import Embedder
from policies.embedding.names import STATIC, embedder_for, embedder_name
from policies.routing import cli
from policies.routing.router import Router
from policies.routing.scorer import DEFAULT_ARTIFACT, ArtifactError, load_artifact


def make_config(**routing: object) -> AppConfig:
    info = {
        "local-llama": {"max_input_tokens": 2048, "supports_vision": False, "supports_function_calling": False},
        "deepseek-chat": {"max_input_tokens": 64000, "supports_vision": False, "supports_function_calling": True},
        "claude-sonnet": {"max_input_tokens": 200000, "supports_vision": True, "supports_function_calling": True},
    }
    models = [ModelEntry(model_name=n, litellm_params={"model": f"openai/{n}"}, model_info=i) for n, i in info.items()]
    models.append(ModelEntry(model_name="auto", litellm_params={"model": "openai/auto"}))
    settings = SynqraSettings(routing=RoutingSettings(**routing))
    return AppConfig(path=Path("litellm_config.yaml"), model_list=models, synqra=settings)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return embedder_for(load_artifact().embedder)


@pytest.fixture(scope="module")
def router(embedder: Embedder) -> Router:
    return Router.from_config(make_config(), embedder, lookup=lambda _: None)


def user(text: str, **extra: object) -> dict:
    return {"messages": [{"role": "user", "content": text}], **extra}


def test_shipped_artifact_loads_and_is_small() -> None:
    scorer = load_artifact()
    assert DEFAULT_ARTIFACT.stat().st_size < 5 * 1024 * 1024
    figures = scorer.manifest["validation"]["figures"]
    for protocol in ("held_out_groups", "leave_one_dataset_out"):  # every dataset validated both ways
        assert set(figures[protocol]) == {"mmlu", "gsm8k", "mt_bench", "mmlu_pro", "llmrouter", "arena_hard"}
    assert figures["held_out_groups"]["mmlu_pro"]["n"] > 9000 and figures["leave_one_dataset_out"]["gsm8k"]["n"] > 1000
    assert len(scorer.recommended_thresholds or []) == 2
    assert scorer.manifest["embedder"] == scorer.embedder and scorer.manifest["embedding_dims"] == scorer.dims


def test_embedder_mismatch_never_scores_foreign_vectors(router: Router, caplog: pytest.LogCaptureFixture) -> None:
    """Vectors from another embedding than the artifact's are never scored by its weights."""

    class Named:
        name = "some-other-embedder"

        def embed(self, texts: list[str]) -> np.ndarray:
            raise AssertionError("must not be called")

    # A static-embedding artifact swaps in its own (numpy, in-process) embedder...
    assert router.scorer.embedder == STATIC
    with caplog.at_level(logging.WARNING, logger="synqra.routing"):
        r = Router(router.settings, router.tiers, router.scorer, Named())
    assert r.scorer.name == "learned" and embedder_name(r.embedder) == STATIC and "routing embeds with" in caplog.text
    assert r.decide(user("What is your pricing?")).features["scorer"] == "learned"
    # ...any other artifact falls back to the structural rule, loudly.
    other = dataclasses.replace(router.scorer, embedder="another-model")
    with caplog.at_level(logging.ERROR, logger="synqra.routing"):
        r = Router(router.settings, router.tiers, other, Named())
    assert r.scorer.name == "heuristic" and "trained on embedder 'another-model'" in caplog.text

    class WrongWidth:  # unnamed and of another width: caught per request
        def embed(self, texts: list[str]) -> np.ndarray:
            return np.full((len(texts), router.scorer.dims + 8), 0.1, np.float32)

    r = Router(router.settings, router.tiers, router.scorer, WrongWidth())
    d = r.decide(user("What is your pricing?"))
    assert d.features["scorer"] == "heuristic" and "dimensions" in d.reason and d.tier == "local-llama"


def test_user_guide_examples(router: Router) -> None:
    pricing, brand = router.decide_batch(
        [user("What is your pricing?"), user("Write a compelling brand story for a luxury tech startup")]
    )
    assert pricing.tier == "local-llama", pricing.reason
    assert brand.tier == "claude-sonnet", brand.reason
    assert "creative/brand" in brand.reason


def test_async_and_batch_paths_agree(router: Router) -> None:
    req = user("Explain how a hash map handles collisions, with an example in Python.")
    a = asyncio.run(router.adecide(req))
    b = router.decide(req)
    assert a.tier == b.tier and a.score == pytest.approx(b.score, abs=1e-5)


def test_batch_larger_than_the_embedding_cache_keeps_its_cached_texts(embedder: Embedder) -> None:
    # A text cached before the batch, coming after more new texts than the cache holds: remembering
    # those evicts it, and it used to be looked up only afterwards (None in the stack, a crash).
    r = Router.from_config(make_config(embed_cache_size=2), embedder, lambda _: None)
    old = user("Write a haiku about autumn leaves.")
    alone = r.decide(old)
    batch = r.decide_batch([user("What is 2 + 2?"), user("Explain TCP slow start."), old])
    assert batch[2].tier == alone.tier and batch[2].score == pytest.approx(alone.score, abs=1e-6)


def test_images_tools_and_long_context_constraints(router: Router) -> None:
    image = user([{"type": "text", "text": "What is your pricing?"}, {"type": "image_url", "image_url": {"url": "x"}}])
    tools = user("What is your pricing?", tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}])
    long = user("What is your pricing? " + "Some context here. " * 2000)
    d_img, d_tools, d_long = router.decide_batch([image, tools, long])
    assert d_img.tier == "claude-sonnet" and d_img.features["has_images"] == 1
    assert d_tools.tier == "deepseek-chat"
    assert d_long.tier != "local-llama" and d_long.features["prompt_tokens"] > 2048


def test_system_prompt_and_multi_turn(router: Router) -> None:
    plain = router.decide(user("What is your pricing?"))
    with_system = router.decide(
        {
            "messages": [
                {"role": "system", "content": "You are a helpful sales bot for ACME."},
                *user("What is your pricing?")["messages"],
            ]
        }
    )
    convo = router.decide(
        {
            "messages": [
                {"role": "user", "content": "Write a compelling brand story for a luxury tech startup"},
                {"role": "assistant", "content": "Here is a story..."},
                {"role": "user", "content": "What is your pricing?"},
            ]
        }
    )
    assert with_system.features["has_system"] == 1 and with_system.tier == plain.tier == "local-llama"
    # The newest user turn is what gets embedded: a plain follow-up in a creative conversation
    # does not trigger the creative rule; depth is a learned feature (MT-Bench second turns
    # were harder for the weak model), so it may raise the score, never lower it here.
    assert convo.features["log_user_turns"] > plain.features["log_user_turns"]
    assert convo.features["creative_similarity"] < 0.6 and "creative" not in convo.reason
    assert convo.score >= plain.score


def test_budget_pressure_and_intercept_patterns(embedder: Embedder) -> None:
    r = Router.from_config(
        make_config(intercept_models=["claude-3-5-sonnet-*"], thresholds=[0.1, 0.2]), embedder, lambda _: None
    )
    req = user("Compare merge sort and quicksort for linked lists, with complexity analysis.")
    calm, pressed = r.decide(req), r.decide(req, budget_pressure=1.0)
    names = [t.name for t in r.tiers]
    assert calm.score == pytest.approx(pressed.score)
    assert names.index(pressed.tier) <= names.index(calm.tier) and "0.550, 0.600" in pressed.reason
    # what the pressure changed is kept: the quality gate escalates no higher than the calm route
    assert calm.unpressured is None and pressed.unpressured == (calm.tier if pressed.tier != calm.tier else None)
    assert r.thresholds == [0.1, 0.2]
    assert r.handles("auto") and r.handles("claude-3-5-sonnet-20241022") and not r.handles("gpt-4o")


def test_corrupt_or_missing_artifact_falls_back(
    tmp_path: Path, embedder: Embedder, caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "router_v1.npz"
    shutil.copy(DEFAULT_ARTIFACT, bad)
    shutil.copy(manifest_path(DEFAULT_ARTIFACT), manifest_path(bad))
    data = bytearray(bad.read_bytes())
    data[100] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match its manifest"):
        load_artifact(bad)
    for path in (bad, tmp_path / "missing.npz"):
        with caplog.at_level(logging.ERROR, logger="synqra.routing"):
            r = Router.from_config(make_config(artifact_path=str(path)), embedder, lambda _: None)
        assert r.scorer.name == "heuristic" and "fallback" in caplog.text
        d = r.decide(user("What is your pricing?"))
        assert d.features["scorer"] == "heuristic" and d.tier == "local-llama"


@pytest.mark.parametrize("inline", [False, True], ids=["awaited", "inline"])
def test_embedding_failure_routes_with_fallback(router: Router, inline: bool) -> None:
    class Down:
        def embed(self, texts: list[str]) -> np.ndarray:
            raise ConnectionError("embedding server down")

    down = Down()
    down.inline = inline  # type: ignore[attr-defined]  # the static table is called inline, servers are awaited
    r = Router(router.settings, router.tiers, router.scorer, down)
    d = asyncio.run(r.adecide(user("What is your pricing?")))
    assert d.features["scorer"] == "heuristic" and "embedding unavailable" in d.reason
    assert d.tier == "local-llama"  # the fallback rule uses its own thresholds


def test_route_score_cli_round_trip(router: Router) -> None:
    lines = [
        json.dumps({"id": 1, "messages": [{"role": "user", "content": "What is your pricing?"}]}),
        "not json",
        json.dumps({"id": "b", "messages": []}),
        json.dumps(
            {
                "id": 3,
                "messages": [{"role": "user", "content": "Write a compelling brand story for a luxury tech startup"}],
            }
        ),
    ]
    out = io.StringIO()
    errors = cli.score_stream(router, io.StringIO("\n".join(lines) + "\n"), out, batch_size=2)
    rows = [json.loads(x) for x in out.getvalue().splitlines()]
    assert errors == 2 and [r.get("id") for r in rows] == [1, None, "b", 3]
    assert rows[0]["tier"] == "local-llama" and 0 <= rows[0]["score"] <= 1 and rows[3]["tier"] == "claude-sonnet"
    assert "error" in rows[1] and "error" in rows[2]


@pytest.mark.stack
def test_route_score_stops_quietly_when_the_reader_goes_away(tmp_path: Path) -> None:
    """`synqra route-score < big.jsonl | head -1`: the first line, then an exit without a traceback."""
    line = json.dumps({"id": 1, "messages": [{"role": "user", "content": "What is your pricing?"}]})
    (tmp_path / "in.jsonl").write_text((line + "\n") * 5000)
    cmd = [sys.executable, "-m", "proxy.cli", "route-score", "--batch-size", "1"]
    with (tmp_path / "in.jsonl").open() as stdin:
        proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout and proc.stderr
        first = proc.stdout.readline()
        proc.stdout.close()  # the reader goes away with most of the output unread
        err = proc.stderr.read().decode()
    assert json.loads(first)["id"] == 1
    assert proc.wait(timeout=60) == 1 and "Traceback" not in err, err


def test_token_weights_reach_the_score_on_both_paths(router: Router, embedder: Embedder) -> None:
    """An artifact with token weights: the router reads the token ids of the text it embeds, on the
    batch and async paths alike; an embedder with no tokenizer gets the structural rule, never a
    score with the token term silently left out."""
    refund = embedder.token_ids(["refund"])[0]  # type: ignore[attr-defined]
    w_tok = np.zeros(embedder.table.shape[0], np.float32)  # type: ignore[attr-defined]
    w_tok[refund] = 3.0
    r = Router(router.settings, router.tiers, dataclasses.replace(router.scorer, w_tok=w_tok), embedder)
    plain = Router(router.settings, router.tiers, dataclasses.replace(router.scorer, w_tok=None), embedder)
    text = "How do I get a refund for my order?"
    distinct = set(embedder.token_ids([text])[0])  # type: ignore[attr-defined]

    def logit(p: float) -> float:
        return float(np.log(p / (1 - p)))

    d, d0 = r.decide(user(text)), plain.decide(user(text))
    assert logit(d.score) - logit(d0.score) == pytest.approx(3.0 * len(set(refund)) / np.sqrt(len(distinct)), abs=1e-3)
    assert asyncio.run(r.adecide(user(text))).score == pytest.approx(d.score)
    other = user("How do I get a receipt for my order?")
    assert r.decide(other).score == pytest.approx(plain.decide(other).score)

    class NoTokenizer:
        def embed(self, texts: list[str]) -> np.ndarray:
            return embedder.embed(texts)

    d = Router(router.settings, router.tiers, r.scorer, NoTokenizer()).decide(user(text))
    assert d.features["scorer"] == "heuristic" and "token ids" in d.reason


def test_a_version_fitted_for_the_configured_stage_serves_its_own_cuts(embedder: Embedder) -> None:
    """Configured thresholds (a rollout stage) win over a scorer's recommendation, except for a learnt version fitted
    for them (`stage_thresholds` in its manifest): its cuts keep the stage's shares on its own scale."""
    stage = [0.22, 0.27]
    r = Router.from_config(make_config(thresholds=stage), embedder, lookup=lambda _: None)
    assert r.thresholds == stage
    base = load_artifact()
    fitted = dataclasses.replace(
        base, manifest={**base.manifest, "recommended_thresholds": [0.08, 0.88], "stage_thresholds": list(stage)}
    )
    r.use_scorer(fitted)
    assert r.thresholds == [0.08, 0.88]
    other_stage = dataclasses.replace(fitted, manifest={**fitted.manifest, "stage_thresholds": [0.5, 0.6]})
    r.use_scorer(other_stage)  # fitted for another stage: the configured one applies
    assert r.thresholds == stage
    r.use_scorer(base)  # a rollback to the base
    assert r.thresholds == stage
