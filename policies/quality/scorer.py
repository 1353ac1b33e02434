"""QualityScorer: signals and the learned answer model -> one score in [0, 1] -> deliver / rephrase / escalate.

    scorer = QualityScorer.from_config(cfg, embedder)
    verdict = await scorer.ascore(request, text, finish_reason, logprobs, tool_calls)
    verdict.action  # "deliver" | "rephrase" | "escalate"

score = P(answer deserves delivery) x prod over rule signals (1 - w * (1 - s)):
- P comes from the learned answer model (answer_model.py) when its artifact loads: it reads the question
  and the answer (static MiniLM embeddings, shape features) and the `input` signals of the registry;
  without it, the product of the `input` signals stands in (the hand-weighted scorer of earlier releases).
- rule signals (registry.py: empty, cut off, loop, JSON, tool arguments, refusal, language, arithmetic,
  the calculation asked, invented figures, token log-probabilities) pull the score down whatever P says;
  the hard ones (empty, cut off, loop, invalid JSON, unparsable tool arguments) force "escalate".
numpy only: no torch in the proxy process.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from policies.common.quality_settings import QualitySettings
from policies.embedding.base import RELEVANCE_BANDS
from policies.quality import answer_features as af
from policies.quality import signals as sg
from policies.quality.answer_model import DEFAULT_ARTIFACT, AnswerModel, AnswerModelError, load_answer_model
from policies.quality.bands import Action, band
from policies.quality.registry import BY_NAME, HARD_SIGNALS, AnswerContext, compute_all

if TYPE_CHECKING:
    from policies.common.settings import AppConfig
    from policies.embedding.base import Embedder
    from policies.embedding.static import StaticEmbedder

log = logging.getLogger("synqra.quality")

__all__ = ["HARD_SIGNALS", "QualityScorer", "QualityVerdict", "ScoreItem", "combine", "compute_signals"]
# Relevance reads the head of each text: an on-topic answer addresses the question
# early, and MiniLM's cost grows with length (it stops at 256 word pieces anyway).
_EMBED_CHARS = 600
# Answers reusing this share of the question's content words are on topic: no embedding call.
LEXICAL_GATE = 0.3
MIN_WORDS_FOR_RELEVANCE = 3
_WORD = re.compile(r"[^\W\d_]{2,}")
DEFAULT_RELEVANCE_BAND = RELEVANCE_BANDS["minilm"]
STATIC_BAND = RELEVANCE_BANDS["static"]


@dataclass
class QualityVerdict:
    score: float
    action: Action
    reasons: list[str]
    signals: dict[str, float]
    hard_failures: list[str] = field(default_factory=list)
    # P(deserves delivery) from the learned answer model, before the rules; None: no model was used.
    learned: float | None = None


@dataclass(frozen=True)
class ScoreItem:
    request: dict[str, Any]
    answer_text: str
    finish_reason: str | None = None
    logprobs: list[float] | None = None
    tool_calls: list[Any] | None = None


def compute_signals(
    request: dict[str, Any],
    answer: str,
    finish_reason: str | None,
    logprobs: list[float] | None,
    tool_calls: list[Any] | None,
    cosine: float | None,
    relevance_band: tuple[float, float] = DEFAULT_RELEVANCE_BAND,
) -> dict[str, sg.Signal]:
    """Every registered signal for one answer; `cosine` is question/answer embedding similarity (None: unknown),
    judged by `relevance_band` (unrelated below, related above) of the embedder that measured it."""
    ctx = AnswerContext(
        request,
        sg.question_text(request),
        sg.conversation_text(request),
        answer or "",
        finish_reason,
        logprobs,
        tool_calls,
        cosine,
        relevance_band,
    )
    return compute_all(ctx)


def combine(signals: dict[str, sg.Signal], settings: QualitySettings, learned: float | None = None) -> QualityVerdict:
    """Learned probability (or the input signals' product) x the rule signals' product; hard failures
    escalate. Pure. A signal the registry does not know is an error, never a silent weight of 0."""
    unknown = sorted(set(signals) - set(BY_NAME))
    if unknown:
        raise KeyError(f"signals {unknown} are not in policies/quality/registry.py")
    weights = settings.weights
    score = 1.0 if learned is None else float(learned)
    for name, s in signals.items():
        if BY_NAME[name].role == "rule" or learned is None:
            score *= 1.0 - weights[name] * (1.0 - s.value)
    hard = [s.reason for name, s in signals.items() if BY_NAME[name].hard and s.value <= 0.0]
    if hard:
        score = min(score, settings.hard_failure_score)
        action: Action = "escalate"
    else:
        action = band(score, settings)
    reasons = [s.reason for s in sorted(signals.values(), key=lambda s: s.value) if s.reason]  # worst first
    if learned is not None and learned <= settings.deliver_above:
        reasons.append(f"answer model: P(deserves delivery) {learned:.2f}")
    return QualityVerdict(
        score=round(float(score), 4),
        action=action,
        reasons=reasons,
        signals={k: round(float(s.value), 4) for k, s in signals.items()},
        hard_failures=hard,
        learned=None if learned is None else round(float(learned), 4),
    )


def _needs_relevance(question: str, answer: str) -> bool:
    """Only answers whose topic the cheap lexical check cannot vouch for get an embedding call."""
    if not question.strip() or len(_WORD.findall(answer)) < MIN_WORDS_FOR_RELEVANCE:
        return False  # a bare number or a word or two: embeddings cannot judge its topic
    overlap = sg.lexical_overlap(question, answer)
    return overlap is None or overlap < LEXICAL_GATE


def _pair_cosines(vecs: np.ndarray) -> list[float]:
    """Rows are [q0, a0, q1, a1, ...], L2-normalised."""
    return [float(np.dot(vecs[i], vecs[i + 1])) for i in range(0, len(vecs), 2)]


@lru_cache(maxsize=4)
def _cached_model(path: str) -> AnswerModel:
    return load_answer_model(Path(path))


def resolve_answer_model(settings: QualitySettings) -> AnswerModel | None:
    """The answer model `synqra.quality.learned` asks for, or None (off, or the artifact unusable: logged)."""
    if not settings.learned.enabled:
        return None
    try:
        return _cached_model(str(settings.learned.artifact or DEFAULT_ARTIFACT))
    except AnswerModelError as e:
        log.warning("%s; the quality gate scores with the rule-weighted product alone", e)
        return None


def model_abstains(question: str, answer: str) -> bool:
    """Where the rules decide alone: short exchanges (no training set has them, answer_features.py) and worked
    answers to maths word problems, where the arithmetic rules (fitted on GSM8K) have steps to check and rank
    better held out than the answer model combined with them (bench/results/quality_eval.md)."""
    if af.is_short_exchange(question, answer):
        return True
    return sg.is_maths_question(question) and bool(sg.equations(answer))


@lru_cache(maxsize=1)
def _default_static() -> StaticEmbedder:
    from policies.embedding.static import StaticEmbedder

    return StaticEmbedder.default()


class QualityScorer:
    """`embedder` measures relevance when no answer model is used; the answer model reads the static
    MiniLM table (`static_embedder`, or `embedder` itself when it is one, or the default table)."""

    def __init__(
        self,
        settings: QualitySettings,
        embedder: Embedder | None = None,
        answer_model: AnswerModel | None | Literal["auto"] = "auto",
        static_embedder: StaticEmbedder | None = None,
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        # Cosines mean different things in different embedding spaces: each embedder says its band.
        self.relevance_band: tuple[float, float] = getattr(embedder, "relevance_band", DEFAULT_RELEVANCE_BAND)
        self.answer_model = resolve_answer_model(settings) if answer_model == "auto" else answer_model
        from policies.embedding.static import StaticEmbedder

        if static_embedder is None and isinstance(embedder, StaticEmbedder):
            static_embedder = embedder
        self._static = static_embedder
        if self.answer_model is not None and self._static is None:
            try:
                self._static = _default_static()
            except Exception as e:  # no embedding model files: the learned part cannot run
                log.warning("static embedding table unavailable (%s); scoring without the answer model", e)
                self.answer_model = None
        if (
            self.answer_model is not None
            and self._static is not None
            and self.answer_model.embedder != self._static.name
        ):
            log.warning(
                "answer model trained on %s, static table is %s; scoring without it",
                self.answer_model.embedder,
                self._static.name,
            )
            self.answer_model = None

    @classmethod
    def from_config(
        cls, cfg: AppConfig, embedder: Embedder | None, static_embedder: StaticEmbedder | None = None
    ) -> QualityScorer:
        return cls(cfg.synqra.quality, embedder, static_embedder=static_embedder)

    def _relevance_wanted(self, question: str, answer: str) -> bool:
        return (
            self.embedder is not None and self.settings.weights["relevance"] > 0 and _needs_relevance(question, answer)
        )

    def _uses_model(self, question: str, answer: str) -> bool:
        """The answer model scores this answer: it loaded, and it does not abstain (model_abstains)."""
        return self.answer_model is not None and not model_abstains(question, answer)

    def _learned(self, question: str, answer: str, sigs: dict[str, sg.Signal]) -> float:
        """P(deserves delivery) of one answer; sets its relevance signal from the static cosine."""
        assert self.answer_model is not None and self._static is not None
        q_emb, a_emb = self._static.embed(list(af.embed_texts(question, answer)))
        cos = float(q_emb @ a_emb)
        sigs["relevance"] = sg.relevance(cos, *STATIC_BAND)
        feats = af.feature_row(question, answer, {k: v.value for k, v in sigs.items()}, cos)
        return self.answer_model.probability(feats, q_emb, a_emb)

    async def _acosine(
        self, question: str, answer: str, question_embedding: np.ndarray | None
    ) -> tuple[float | None, str]:
        embedder = self.embedder
        assert embedder is not None  # called only when _relevance_wanted
        texts = [answer[:_EMBED_CHARS]]
        if question_embedding is None:
            texts.insert(0, question[:_EMBED_CHARS])
        try:
            aembed = getattr(embedder, "aembed", None)
            if aembed is not None:
                call = aembed(texts)
            else:
                call = asyncio.to_thread(embedder.embed, texts)
            vecs = await asyncio.wait_for(call, self.settings.embed_timeout_s)
        except Exception as e:  # the embedding server down or slow: score without relevance
            return None, f"relevance not measured ({type(e).__name__})"
        if question_embedding is not None:
            q = np.asarray(question_embedding, np.float32).ravel()
            return float(np.dot(q / max(float(np.linalg.norm(q)), 1e-12), vecs[0])), ""
        return _pair_cosines(vecs)[0], ""

    async def ascore(
        self,
        request: dict[str, Any],
        answer_text: str,
        finish_reason: str | None,
        logprobs: list[float] | None,
        tool_calls: list[Any] | None = None,
        question_embedding: np.ndarray | None = None,
    ) -> QualityVerdict:
        """Score one answer. With the answer model: two static embeddings in-process (well under a
        millisecond), no embedding call. Without it (or for a short exchange, where it abstains): one
        embedding call at most, skipped when a hard failure already decides or the answer reuses the question's words; `question_embedding` (the
        router's vector of the newest user turn, same model) saves embedding the question again."""
        answer_text = answer_text or ""
        cosine, note, learned = None, "", None
        question = sg.question_text(request)
        sigs = compute_signals(request, answer_text, finish_reason, logprobs, tool_calls, None)
        decided = any(sigs[n].value <= 0 for n in HARD_SIGNALS)
        if not decided and self._uses_model(question, answer_text):
            learned = self._learned(question, answer_text, sigs)
        elif not decided and self._relevance_wanted(question, answer_text):
            cosine, note = await self._acosine(question, answer_text, question_embedding)
            sigs["relevance"] = sg.relevance(cosine, *self.relevance_band)
        verdict = combine(sigs, self.settings, learned)
        if note:
            verdict.reasons.append(note)
        return verdict

    def score_batch(self, items: list[ScoreItem]) -> list[QualityVerdict]:
        """Score many answers (offline tools, benchmarks): one batched embedding call."""
        questions = [sg.question_text(it.request) for it in items]
        sigs = [
            compute_signals(it.request, it.answer_text or "", it.finish_reason, it.logprobs, it.tool_calls, None)
            for it in items
        ]
        open_ = [i for i, s in enumerate(sigs) if not any(s[n].value <= 0 for n in HARD_SIGNALS)]
        learned: dict[int, float] = {}
        for i in open_:  # two static embeddings each: batching would save little
            if self._uses_model(questions[i], items[i].answer_text or ""):
                learned[i] = self._learned(questions[i], items[i].answer_text or "", sigs[i])
        if self.embedder is not None:
            wanted = [
                i
                for i in open_
                if i not in learned and self._relevance_wanted(questions[i], items[i].answer_text or "")
            ]
            if wanted:
                texts = [t for i in wanted for t in (questions[i][:_EMBED_CHARS], items[i].answer_text[:_EMBED_CHARS])]
                for i, c in zip(wanted, _pair_cosines(self.embedder.embed(texts))):
                    sigs[i]["relevance"] = sg.relevance(c, *self.relevance_band)
        return [combine(s, self.settings, learned.get(i)) for i, s in enumerate(sigs)]
