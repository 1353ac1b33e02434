"""QualityScorer: signals -> one score in [0, 1] -> deliver / rephrase / escalate.

    scorer = QualityScorer.from_config(cfg, HttpEmbedder(cfg.synqra.backends.embed.url))
    verdict = await scorer.ascore(request, text, finish_reason, logprobs, tool_calls)
    verdict.action  # "deliver" | "rephrase" | "escalate"

Combination: score = prod_i (1 - w_i * (1 - s_i)) over the signals s_i (1 = fine),
weights from `synqra.quality.weights`. A signal that does not apply is 1 and costs
nothing, so an open-ended chat answer is judged by the signals that do apply
(structure, refusal, language, relevance, log-probabilities). Hard failures
(empty, cut off, loop, invalid JSON asked, unparsable tool arguments) force
"escalate" whatever the rest says. numpy only: no torch in the proxy process.
"""
from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from policies.embedding.base import RELEVANCE_BANDS
from policies.quality import signals as sg
from policies.quality.bands import Action, band
from policies.common.quality_settings import QualitySettings

if TYPE_CHECKING:
    from policies.embedding.base import Embedder
    from policies.common.settings import AppConfig

# A hard failure forces escalation: the answer is unusable whatever else holds.
HARD_SIGNALS = ("empty", "cut_off", "loop", "json_valid", "tool_args")
# Relevance reads the head of each text: an on-topic answer addresses the question
# early, and MiniLM's cost grows with length (it stops at 256 word pieces anyway).
_EMBED_CHARS = 600
# Answers reusing this share of the question's content words are on topic: no embedding call.
LEXICAL_GATE = 0.3
MIN_WORDS_FOR_RELEVANCE = 3
_WORD = re.compile(r"[^\W\d_]{2,}")
DEFAULT_RELEVANCE_BAND = RELEVANCE_BANDS["minilm"]


@dataclass
class QualityVerdict:
    score: float
    action: Action
    reasons: list[str]
    signals: dict[str, float]
    hard_failures: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ScoreItem:
    request: dict[str, Any]
    answer_text: str
    finish_reason: str | None = None
    logprobs: list[float] | None = None
    tool_calls: list | None = None


def compute_signals(
    request: dict[str, Any],
    answer: str,
    finish_reason: str | None,
    logprobs: list[float] | None,
    tool_calls: list | None,
    cosine: float | None,
    relevance_band: tuple[float, float] = DEFAULT_RELEVANCE_BAND,
) -> dict[str, sg.Signal]:
    """Every signal for one answer; `cosine` is question/answer embedding similarity (None: unknown),
    judged by `relevance_band` (unrelated below, related above) of the embedder that measured it."""
    question = sg.question_text(request)
    answer = answer or ""
    return {
        "empty": sg.empty_answer(answer, tool_calls),
        "cut_off": sg.cut_off(finish_reason),
        "loop": sg.repetition(answer),
        "json_valid": sg.json_valid(request, answer) if not tool_calls else sg.OK,
        "tool_args": sg.tool_args_valid(request, tool_calls),
        "abrupt_end": sg.abrupt_end(answer) if finish_reason != "length" else sg.OK,
        "refusal": sg.refusal(question, answer),
        "language": sg.language_match(question, answer),
        "relevance": sg.relevance(cosine, *relevance_band),
        "logprob_mean": sg.logprob_mean(logprobs),
        "logprob_min": sg.logprob_min(logprobs),
        "arithmetic": sg.arithmetic(answer),
        "maths_answer": sg.maths_answer(question, answer),
        "maths_inputs": sg.maths_inputs(question, answer),
        "dead_end": sg.dead_end(question, answer),
        "hedging": sg.hedging(answer),
    }


def combine(signals: dict[str, sg.Signal], settings: QualitySettings) -> QualityVerdict:
    """Weighted product of the signals, hard failures forced to escalate. Pure."""
    weights = settings.weights.model_dump()
    score = 1.0
    for name, s in signals.items():
        score *= 1.0 - weights.get(name, 0.0) * (1.0 - s.value)
    hard = [s.reason for name, s in signals.items() if name in HARD_SIGNALS and s.value <= 0.0]
    if hard:
        score = min(score, settings.hard_failure_score)
        action: Action = "escalate"
    else:
        action = band(score, settings)
    reasons = [s.reason for s in sorted(signals.values(), key=lambda s: s.value) if s.reason]  # worst first
    return QualityVerdict(
        score=round(float(score), 4),
        action=action,
        reasons=reasons,
        signals={k: round(float(s.value), 4) for k, s in signals.items()},
        hard_failures=hard,
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


class QualityScorer:
    def __init__(self, settings: QualitySettings, embedder: "Embedder | None" = None) -> None:
        self.settings = settings
        self.embedder = embedder
        # Cosines mean different things in different embedding spaces: each embedder says its band.
        self.relevance_band: tuple[float, float] = getattr(embedder, "relevance_band", DEFAULT_RELEVANCE_BAND)

    @classmethod
    def from_config(cls, cfg: "AppConfig", embedder: "Embedder | None") -> "QualityScorer":
        return cls(cfg.synqra.quality, embedder)

    def _relevance_wanted(self, question: str, answer: str) -> bool:
        return self.embedder is not None and self.settings.weights.relevance > 0 and _needs_relevance(question, answer)

    async def _acosine(
        self, question: str, answer: str, question_embedding: np.ndarray | None
    ) -> tuple[float | None, str]:
        texts = [answer[:_EMBED_CHARS]]
        if question_embedding is None:
            texts.insert(0, question[:_EMBED_CHARS])
        try:
            aembed = getattr(self.embedder, "aembed", None)
            if aembed is not None:
                call = aembed(texts)
            else:
                call = asyncio.to_thread(self.embedder.embed, texts)  # type: ignore[union-attr]
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
        tool_calls: list | None = None,
        question_embedding: np.ndarray | None = None,
    ) -> QualityVerdict:
        """Score one answer: one embedding call at most, skipped when a hard failure already
        decides or the answer reuses the question's words. `question_embedding` (e.g. the
        router's vector of the newest user turn, same model) saves embedding the question again."""
        answer_text = answer_text or ""
        cosine, note = None, ""
        question = sg.question_text(request)
        sigs = compute_signals(request, answer_text, finish_reason, logprobs, tool_calls, None)
        decided = any(sigs[n].value <= 0 for n in HARD_SIGNALS)
        if not decided and self._relevance_wanted(question, answer_text):
            cosine, note = await self._acosine(question, answer_text, question_embedding)
            sigs["relevance"] = sg.relevance(cosine, *self.relevance_band)
        verdict = combine(sigs, self.settings)
        if note:
            verdict.reasons.append(note)
        return verdict

    def score_batch(self, items: list[ScoreItem]) -> list[QualityVerdict]:
        """Score many answers with one batched embedding call (offline tools, benchmarks)."""
        questions = [sg.question_text(it.request) for it in items]
        wanted = [i for i, it in enumerate(items) if self._relevance_wanted(questions[i], it.answer_text or "")]
        cosines: dict[int, float] = {}
        if wanted:
            texts = [t for i in wanted for t in (questions[i][:_EMBED_CHARS], items[i].answer_text[:_EMBED_CHARS])]
            cosines = dict(zip(wanted, _pair_cosines(self.embedder.embed(texts))))  # type: ignore[union-attr]
        return [
            combine(
                compute_signals(
                    it.request, it.answer_text or "", it.finish_reason, it.logprobs, it.tool_calls, cosines.get(i),
                    self.relevance_band,
                ),
                self.settings,
            )
            for i, it in enumerate(items)
        ]
