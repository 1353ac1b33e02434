"""The router: request -> RouteDecision(tier, score, reason, features).

One code path for the proxy hook (`adecide`, one request, embedding over HTTP)
and the batch tools (`decide_batch`, many requests, one batched in-process
embedding call): both run `_prepare` -> embed -> `_finish`.

    router = Router.from_config(load_config("litellm_config.yaml"), HttpEmbedder(url))
    if router.handles(data["model"]):
        decision = await router.adecide(data, budget_pressure=0.3)
        data["model"] = decision.tier

numpy only: the proxy process never imports torch for routing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from policies.common.api_shapes import ANSWERS_ASKED, stored_context
from policies.common.routing_settings import RoutingSettings
from policies.embedding.names import STATIC, embedder_for, embedder_name
from policies.routing.capabilities import ModelInfoLookup, litellm_model_info, tier_infos_from_config
from policies.routing.features import (
    embed_text,
    estimate_prompt_tokens,
    feature_vector,
    has_tools,
    request_text,
    structural_features,
)
from policies.routing.scorer import DEFAULT_ARTIFACT, ArtifactError, HeuristicScorer, LearnedScorer, load_artifact
from policies.routing.tiers import Constraints, TierInfo, choose_tier

log = logging.getLogger("synqra.routing")


def asks_choices(request: dict[str, Any]) -> bool:
    """More than one answer asked for a prompt (`n` > 1)."""
    try:
        return int(request.get(ANSWERS_ASKED) or request.get("n") or 1) > 1
    except (TypeError, ValueError):
        return False


def wants_reasoning(request: dict[str, Any]) -> bool:
    """Extended thinking asked for: Anthropic `thinking` (enabled), chat `reasoning_effort`, Responses `reasoning`."""
    thinking = request.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") not in (None, "disabled"):
        return True
    reasoning = request.get("reasoning")
    effort = request.get("reasoning_effort") or (reasoning.get("effort") if isinstance(reasoning, dict) else None)
    return effort not in (None, "none", "minimal")


class Embedder(Protocol):
    def embed(self, texts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class Embedded:
    """What a decision computed of the text it embedded: the inference log stores it rather than computing
    it again on the same core (policies/learning/representation.py, Representer.from_decision)."""

    max_chars: int  # the embedded text is the newest user turn cut at this length (the scorer's, then)
    vector: np.ndarray  # (d,) the embedder's vector of that text
    token_ids: np.ndarray | None  # its distinct token ids (int64, sorted); None when the scorer read none


@dataclass
class RouteDecision:
    tier: str
    score: float
    reason: str
    features: dict[str, Any] = field(default_factory=dict)
    # What the request needs of a tier (tiers.unmet reads it): also asked of tiers it was not routed to.
    constraints: Constraints = field(default_factory=Constraints)
    # The tier the decision would have picked had it been available, and why it was not ("x-synqra-route-note").
    note: str | None = None
    embedded: Embedded | None = None  # None when nothing was embedded (the structural rule, a failed embedding)
    # The tier the decision would have picked without budget pressure, when the pressure moved the request to a
    # cheaper one (None otherwise): a quality escalation under pressure goes no higher than it (proxy/quality_gate.py).
    unpressured: str | None = None


@dataclass
class _Prepared:
    text: str  # what the embedding reads
    max_chars: int  # the cut that text was made with
    feats: dict[str, float]
    constraints: Constraints
    last_user: str  # the newest user turn: the structural fallback reads its cues only when it scores


def load_scorer(path: str | Path | None) -> LearnedScorer | HeuristicScorer:
    """The trained scorer, or the structural fallback with a log line saying why."""
    try:
        scorer = load_artifact(Path(path) if path else DEFAULT_ARTIFACT)
        log.info("router artifact loaded (training code %s)", scorer.manifest.get("training_code_sha256", "?")[:12])
        return scorer
    except ArtifactError as e:
        log.error("%s; routing with the structural fallback rule (see policies/routing/scorer.py)", e)
        return HeuristicScorer()


class Router:
    def __init__(
        self,
        settings: RoutingSettings,
        tiers: list[TierInfo],
        scorer: LearnedScorer | HeuristicScorer,
        embedder: Embedder | None,
    ) -> None:
        self.settings = settings
        self.tiers = tiers
        name = embedder_name(embedder)
        if isinstance(scorer, LearnedScorer) and embedder is not None and name not in (None, scorer.embedder):
            if scorer.embedder == STATIC:
                # The static embedding is numpy-only and in-process: use it rather than lose the model.
                log.warning("router artifact was trained on %r, not %r: routing embeds with %r", STATIC, name, STATIC)
                embedder = embedder_for(STATIC)
            else:  # vectors of another embedding mean nothing to these weights: refuse rather than misroute
                log.error(
                    "router artifact was trained on embedder %r, got %r; using the fallback rule", scorer.embedder, name
                )
                scorer = HeuristicScorer()
        self.scorer = scorer
        self.embedder = embedder
        self.thresholds = self._serving_thresholds(scorer)
        # When the embedding fails the structural rule scores, on its own scale.
        self._fallback_thresholds = self._thresholds_for(HeuristicScorer.recommended_thresholds)
        names = [t.name for t in tiers]
        creative = settings.creative_tier or names[-1]
        self._creative_index = names.index(creative) if settings.creative_examples else None
        self._creative_emb: np.ndarray | None = None
        if tuple(settings.creative_examples) == scorer.creative_texts and scorer.creative_emb is not None:
            self._creative_emb = scorer.creative_emb
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def use_scorer(self, scorer: LearnedScorer) -> None:
        """Serve another trained scorer from now on (a learnt version, `synqra learn`): its weights and its
        recommended thresholds (unless the config sets thresholds it was not fitted for). The embedding it reads
        must be the one this router computes; one decision in flight keeps the scorer it started with."""
        if isinstance(self.scorer, LearnedScorer) and scorer.embedder != self.scorer.embedder:
            raise ValueError(
                f"scorer reads embedding {scorer.embedder!r}, this router computes {self.scorer.embedder!r}"
            )
        self.thresholds = self._serving_thresholds(scorer)
        self.scorer = scorer

    def _serving_thresholds(self, scorer: LearnedScorer | HeuristicScorer) -> list[float]:
        """The scorer's recommendation, unless the config sets thresholds; but a version `synqra learn` fitted for
        the configured thresholds (a rollout stage, fitted on the scores of the router serving then) recommends the
        cuts that keep that stage's shares on its own scale: the configured cuts, read on that scale, are no stage."""
        recommended = scorer.recommended_thresholds or HeuristicScorer.recommended_thresholds
        manifest = getattr(scorer, "manifest", None) or {}
        configured = self.settings.thresholds
        stage = manifest.get("stage_thresholds")
        if configured is not None and scorer.recommended_thresholds and isinstance(stage, list):
            if [float(x) for x in stage] == [float(x) for x in configured]:
                return self._thresholds_for(recommended, configured=False)
        return self._thresholds_for(recommended)

    def _thresholds_for(self, recommended: list[float], configured: bool = True) -> list[float]:
        """Configured thresholds (unless `configured` is False), else the scorer's recommendation fitted to the
        number of tiers."""
        t = (self.settings.thresholds if configured else None) or recommended
        n = len(self.tiers) - 1
        if len(t) != n:  # recommendations are for three tiers: spread them over other counts
            t = list(np.linspace(min(t), max(t), n)) if n > 1 else [min(t)][:n]
        return [float(x) for x in t]

    @classmethod
    def from_config(
        cls,
        cfg: Any,
        embedder: Embedder | Callable[[str | None], Embedder] | None,
        lookup: ModelInfoLookup = litellm_model_info,
    ) -> Router:
        """Build from an AppConfig: tiers' capabilities, artifact (or fallback), thresholds.

        `embedder` may be a function of the embedder name the artifact was trained on (None for
        the fallback rule), so a caller can supply the matching one without loading it twice."""
        r: RoutingSettings = cfg.synqra.routing
        scorer = load_scorer(r.artifact_path)
        if callable(embedder) and not hasattr(embedder, "embed"):
            embedder = embedder(getattr(scorer, "embedder", None))
        return cls(r, tier_infos_from_config(cfg, lookup), scorer, embedder)

    def handles(self, model: str | None) -> bool:
        """True for the virtual model and for explicit names matching `intercept_models` globs."""
        return self.settings.routes(model)

    @property
    def uses_embedding(self) -> bool:
        return self.embedder is not None and (self.scorer.needs_embedding or self._creative_index is not None)

    # --- the shared path -------------------------------------------------------------

    def _prepare(self, request: dict[str, Any]) -> _Prepared:
        rt = request_text(request)
        feats = structural_features(request, rt)
        max_chars = self.scorer.max_chars
        return _Prepared(embed_text(rt, max_chars), max_chars, feats, self._constraints(request, rt), rt.last_user)

    def _constraints(self, request: dict[str, Any], rt: Any) -> Constraints:
        return Constraints(
            prompt_tokens=int(estimate_prompt_tokens(request, rt) * self.settings.context_safety_factor),
            images=rt.images > 0,
            tools=has_tools(request) > 0 or rt.tool_messages > 0,
            reasoning=wants_reasoning(request),
            stored_context=stored_context(request) is not None,
            choices=asks_choices(request),
            logprobs=bool(request.get("logprobs") or request.get("top_logprobs")),
        )

    def constraints(self, request: dict[str, Any]) -> Constraints:
        """What a request needs of the model that serves it (also checked for models asked for by name)."""
        return self._constraints(request, request_text(request))

    def _finish(
        self,
        p: _Prepared,
        emb: np.ndarray | None,
        budget_pressure: float,
        note: str = "",
        unavailable: Mapping[str, str] | None = None,
    ) -> RouteDecision:
        score = None
        tokens = None
        if emb is not None and self.scorer.needs_embedding:
            try:
                tokens = self._distinct_tokens(p.text)
                term = None if tokens is None else self.scorer.distinct_token_term(tokens)
                score = float(self.scorer.score(emb[None, :], feature_vector(p.feats)[None, :], term)[0])
                scorer_name, thresholds = self.scorer.name, self.thresholds
            except ValueError as e:  # another embedder than trained on (vector width, no tokenizer)
                note = f"{note}; {e}, structural fallback" if note else f"{e}, structural fallback"
                log.error("routing: %s", e)
        if score is None:
            scorer_name, thresholds = HeuristicScorer.name, self._fallback_thresholds
            score = HeuristicScorer().score_request(p.feats, p.last_user)
        creative_sim = None
        min_tier = 0
        creative = self._creative_emb
        if (
            self._creative_index is not None
            and creative is not None
            and emb is not None
            and creative.shape[1] == emb.shape[-1]  # vectors of one width (one embedder)
        ):
            creative_sim = float(np.max(creative @ emb))
            if creative_sim >= self.settings.creative_min_similarity:
                min_tier = self._creative_index
        tier, reason = choose_tier(
            score,
            thresholds,
            self.tiers,
            p.constraints,
            budget_pressure,
            self.settings.budget_max_shift,
            min_tier,
            unavailable,
        )
        unpressured = None
        if budget_pressure > 0:
            plain, _ = choose_tier(
                score, thresholds, self.tiers, p.constraints, 0.0, self.settings.budget_max_shift, min_tier, unavailable
            )
            unpressured = plain if plain != tier else None
        passed_over = None
        if unavailable:
            wanted, _ = choose_tier(
                score, thresholds, self.tiers, p.constraints, budget_pressure, self.settings.budget_max_shift, min_tier
            )
            if wanted != tier and wanted in unavailable:
                passed_over = f"{wanted} unavailable: {unavailable[wanted]}"
        if min_tier:
            reason += f" (creative/brand similarity {creative_sim:.2f})"
        if note:
            reason += f"; {note}"
        features = {
            **p.feats,
            "prompt_tokens": p.constraints.prompt_tokens,
            "creative_similarity": creative_sim,
            "scorer": scorer_name,
            "budget_pressure": budget_pressure,
        }
        embedded = None if emb is None else Embedded(p.max_chars, emb, tokens)
        return RouteDecision(tier, score, reason, features, p.constraints, passed_over, embedded, unpressured)

    def _distinct_tokens(self, text: str) -> np.ndarray | None:
        """The embedded text's distinct token ids, what the scorer's token term reads, when its artifact has
        token weights and the embedder a tokenizer (without one the scorer refuses to score, and the
        structural rule routes). Sorted once: the token term and the inference log both read them."""
        token_ids = getattr(self.embedder, "token_ids", None)
        if not isinstance(self.scorer, LearnedScorer) or self.scorer.w_tok is None or token_ids is None:
            return None
        # np.unique's answer (sorted distinct int64) from a set of the ~200 Python ints: a third of its cost,
        # which converts the whole list to an array and sorts it first.
        return np.array(sorted(set(token_ids([text])[0])), dtype=np.int64)

    # --- embeddings with an LRU cache ---------------------------------------------------

    def _cached(self, text: str) -> np.ndarray | None:
        v = self._cache.get(text)
        if v is not None:
            self._cache.move_to_end(text)
        return v

    def _remember(self, text: str, v: np.ndarray) -> None:
        if self.settings.embed_cache_size <= 0:
            return
        self._cache[text] = v
        self._cache.move_to_end(text)
        while len(self._cache) > self.settings.embed_cache_size:
            self._cache.popitem(last=False)

    def _creative_texts_to_embed(self) -> list[str]:
        needed = self._creative_index is not None and self._creative_emb is None
        return list(self.settings.creative_examples) if needed else []

    def _embed_many(self, texts: list[str]) -> np.ndarray:
        """Sync, batched: creative examples (once) + uncached texts in one call."""
        assert self.embedder is not None
        extra = self._creative_texts_to_embed()
        # Cache hits are taken before any new vector is remembered: remembering may evict them.
        found = {t: v for t in dict.fromkeys(texts) if (v := self._cached(t)) is not None}
        todo = [t for t in dict.fromkeys(texts) if t not in found]
        if todo or extra:
            vecs = self.embedder.embed(extra + todo)
            if extra:
                self._creative_emb = vecs[: len(extra)]
            for t, v in zip(todo, vecs[len(extra) :]):
                found[t] = v
                self._remember(t, v)
        out = [found[t] for t in texts]
        return np.stack(out) if out else np.zeros((0, 0), np.float32)

    def _embed_inline(self, text: str) -> np.ndarray:
        """One text on the event loop: _embed_many's answer without its batch bookkeeping."""
        assert self.embedder is not None
        if self._creative_texts_to_embed():
            first: np.ndarray = self._embed_many([text])[0]
            return first
        emb = self._cached(text)
        if emb is None:
            emb = self.embedder.embed([text])[0]
            self._remember(text, emb)
        return emb

    async def _aembed_one(self, text: str) -> np.ndarray:
        assert self.embedder is not None
        hit = self._cached(text)
        if hit is not None and not self._creative_texts_to_embed():
            return hit
        aembed = getattr(self.embedder, "aembed", None)
        extra = self._creative_texts_to_embed()
        batch = extra + [text]
        vecs: np.ndarray = await aembed(batch) if aembed else await asyncio.to_thread(self.embedder.embed, batch)
        if extra:
            self._creative_emb = vecs[: len(extra)]
        emb: np.ndarray = vecs[-1]
        self._remember(text, emb)
        return emb

    # --- public -------------------------------------------------------------------------

    async def adecide(
        self, request: dict[str, Any], budget_pressure: float = 0.0, unavailable: Mapping[str, str] | None = None
    ) -> RouteDecision:
        """One request (the proxy hook). Embedding errors or timeouts fall back to the structural rule.
        `unavailable`: tiers that cannot answer now ({name: why}), passed over."""
        p = self._prepare(request)
        emb, note = None, ""
        if self.uses_embedding:
            try:
                if getattr(self.embedder, "inline", False):
                    # In-process and sub-millisecond (the static table): no task, no await, so
                    # the decision is not stretched by other requests' turns on the event loop.
                    emb = self._embed_inline(p.text)
                else:
                    emb = await asyncio.wait_for(self._aembed_one(p.text), self.settings.embed_timeout_s)
            except Exception as e:  # server down, timeout, bad reply: route anyway
                note = f"embedding unavailable ({type(e).__name__}), structural fallback"
                log.warning("routing: %s", note)
        d = self._finish(p, emb, budget_pressure, note, unavailable)
        # DEBUG: a line per request cost ~80k instructions (2% of a bare LiteLLM request); the inference log keeps
        # each decision's score and router version, which route-thresholds --from-log reads.
        log.debug("route %s score=%.6f %s", d.tier, d.score, d.reason)
        return d

    def decide_batch(self, requests: list[dict[str, Any]], budget_pressure: float = 0.0) -> list[RouteDecision]:
        """Many requests, one batched embedding call. Raises ValueError on a malformed request."""
        prepared = [self._prepare(r) for r in requests]
        embs: list[np.ndarray | None] = [None] * len(prepared)
        if self.uses_embedding and prepared:
            embs = list(self._embed_many([p.text for p in prepared]))
        return [self._finish(p, e, budget_pressure) for p, e in zip(prepared, embs)]

    def decide(self, request: dict[str, Any], budget_pressure: float = 0.0) -> RouteDecision:
        return self.decide_batch([request], budget_pressure)[0]
