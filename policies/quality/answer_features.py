"""Features of a (question, answer) pair for the learned answer scorer: the same function at training and
at serving time, pure, no I/O (the caller passes the static embeddings).

Three kinds, all defined for any answer, so no dataset's quirks are needed to compute them:
- shape of the answer beside the question (lengths, lines, lists, code, sentences, digits, repetition,
  vocabulary, questions asked back), and what the question asks (code, a maths word problem, a choice
  among lettered options, a figure the model cannot know);
- the rule signals' values (1 = fine) for the checks that are not certain enough to decide alone;
- question/answer similarity in the static MiniLM space, and the two embeddings themselves
  (256 numbers each; `EMB_DIMS`), which carry the topic and the register of each text.
"""

from __future__ import annotations

import math
import re

import numpy as np

from policies.quality import signals as sg

# The rule signals the learned model reads as inputs (value in [0, 1], 1 = no evidence of a problem).
# The certain rules (empty, cut off, loop, JSON, tool arguments, refusal, language, wrong arithmetic,
# invented figures) are not among them: they stay rules (scorer.py) and cap the learned score.
SIGNAL_INPUTS = ("abrupt_end", "hedging", "maths_answer", "maths_inputs", "dead_end")

_LIST_LINE = re.compile(r"^\s*(?:[-*•+]|\d{1,2}[.)])\s+\S")
_HEADING = re.compile(r"^\s*(?:#{1,6}\s+\S|\*\*[^*\n]{2,60}\*\*:?\s*$)")
_CODE_ASK = re.compile(
    r"```|\b(?:code|function|python|javascript|typescript|java|c\+\+|c#|rust|golang|sql|regex|script|program|"
    r"implement|class|method|api|bash|shell|html|css|excel formula|vba)\b",
    re.I,
)
_OPTIONS = re.compile(r"^\s*[A-J][.)]\s+\S", re.M)
_CHOICE = re.compile(r"\banswer is \(?[A-J]\)?|\banswer:\s*\(?[A-J]\)?(?:\W|$)|^\s*\(?[A-J]\)\s", re.I | re.M)
_SENT = re.compile(r"[.!?]+(?:\s|$)")
_ENDS_CLEAN = re.compile(r"(?:[.!?)\]\"'`*:]|```)\s*$")
_FIRST_PERSON_AI = re.compile(r"\b(?:as an ai|language model|i'm an ai|i am an ai)\b", re.I)
_APOLOGY = re.compile(r"\b(?:sorry|apologi[sz]e)\b", re.I)
_CLARIFY = re.compile(
    r"\b(?:could you|can you|please (?:provide|clarify|specify|share)|more (?:details|information|context))\b", re.I
)
_WORD = re.compile(r"[^\W_]+", re.U)
HEAD_WORDS = 400  # vocabulary features read the head: bounded cost, and loops show early

# A worked answer that doubts itself or lands on an option its own working did not produce.
_DOUBT = re.compile(
    r"\b(?:closest|approximately|roughly|none of the (?:options|choices|above)|not (?:listed|among|match\w*|one of)|"
    r"does(?:n't| not) match|re-?evaluat\w*|recalculat\w*|re-?examin\w*|wait|mistake|error in|however|but since|"
    r"let me (?:re|try)|not sure|assum\w+)\b",
    re.I,
)
_LETTER_REF = re.compile(r"\(([A-J])\)|\boption ([A-J])\b|\b([A-J])\. ", re.I)
_OPTION_LINE = re.compile(r"^\s*([A-J])[.)]\s+(.+)$", re.M)
_CHOSEN = re.compile(r"answer is \(?([A-J])\)?", re.I)


def _choice_mismatch(question: str, answer: str) -> float:
    """1 when the chosen option states a number that the working never reached (picked the "closest")."""
    chosen = _CHOSEN.findall(answer)
    if not chosen:
        return 0.0
    options = {m.group(1).upper(): m.group(2) for m in _OPTION_LINE.finditer(question)}
    text = options.get(chosen[-1].upper(), "")
    opt_nums = [x for x in sg._numbers(text)]
    if not opt_nums:
        return 0.0
    work = sg._numbers(_CHOSEN.sub(" ", answer))
    return 0.0 if any(sg._close(o, w) for o in opt_nums for w in work) else 1.0


# Not among them: the question's length and the number of turns. On arena-hard they stood for how hard a
# prompt was (its long prompts carry context and were answered better) and said nothing about the answer;
# a model leaning on them marked every short everyday question as hard.
SHAPE_NAMES = (
    "log_answer_chars",
    "log_length_ratio",
    "log_answer_lines",
    "list_line_share",
    "heading_lines",
    "answer_has_code",
    "question_asks_code",
    "code_asked_none_given",
    "type_token_ratio",
    "repeated_4gram_share",
    "log_mean_sentence_words",
    "digit_share",
    "ends_clean",
    "question_is_maths",
    "question_has_options",
    "options_without_choice",
    "question_unknowable_figure",
    "log_answer_numbers",
    "questions_asked_back",
    "clarification_request",
    "ai_self_reference",
    "apology",
    "non_ascii_share",
    "lexical_overlap",
    "lexical_overlap_known",
    "cosine",
    "log_doubt_phrases",
    "option_letters_named",
    "choice_not_worked_out",
)
BASE_NAMES = SHAPE_NAMES + tuple(f"signal_{n}" for n in SIGNAL_INPUTS)
# What makes an answer good differs by task (a long worked answer to a multiple-choice question is a bad
# sign, a long open answer a good one): each base feature gets one weight per task, the task decided
# from the question alone (lettered options -> choice, a maths word problem -> maths, else open).
TASKS = ("open", "choice", "maths")
FEATURE_NAMES = tuple(f"{t}:{n}" for t in TASKS for n in BASE_NAMES) + ("task_choice", "task_maths")
EMB_DIMS = 256


def _log(x: float) -> float:
    return math.log1p(max(0.0, x))


def shape_features(question: str, answer: str, cosine: float | None) -> list[float]:
    a_lines = [ln for ln in answer.splitlines() if ln.strip()]
    words = _WORD.findall(answer.lower())
    head = words[:HEAD_WORDS]
    grams = [tuple(head[i : i + 4]) for i in range(len(head) - 3)]
    sentences = max(1, len(_SENT.findall(sg._strip_code(answer))))
    n_chars = max(1, len(answer))
    asks_code = bool(_CODE_ASK.search(question))
    has_code = "```" in answer or sum(ln.startswith(("    ", "\t")) for ln in a_lines) >= 3
    options = len(_OPTIONS.findall(question)) >= 3
    overlap = sg.lexical_overlap(question, answer)
    return [
        _log(len(answer)),
        math.log((len(answer) + 50) / (len(question) + 50)),
        _log(len(a_lines)),
        sum(bool(_LIST_LINE.match(ln)) for ln in a_lines) / max(1, len(a_lines)),
        min(10.0, sum(bool(_HEADING.match(ln)) for ln in a_lines)),
        float(has_code),
        float(asks_code),
        float(asks_code and not has_code),
        len(set(head)) / max(1, len(head)) if head else 0.0,
        1.0 - len(set(grams)) / len(grams) if grams else 0.0,
        _log(len(words) / sentences),
        sum(ch.isdigit() for ch in answer) / n_chars,
        float(bool(_ENDS_CLEAN.search(answer))),
        float(sg.is_maths_question(question)),
        float(options),
        float(options and not _CHOICE.search(answer)),
        float(sg.asks_unknowable_figure(question)),
        _log(len(sg._NUMBER.findall(answer))),
        min(5.0, answer.count("?")),
        float(bool(_CLARIFY.search(answer))),
        float(bool(_FIRST_PERSON_AI.search(answer))),
        float(bool(_APOLOGY.search(answer[:400]))),
        sum(ord(ch) > 127 for ch in answer) / n_chars,
        overlap if overlap is not None else 0.0,
        float(overlap is not None),
        cosine if cosine is not None and not math.isnan(cosine) else 0.0,
        _log(len(_DOUBT.findall(answer))),
        min(5.0, len({next(g for g in m.groups() if g).upper() for m in _LETTER_REF.finditer(answer)}))
        if options
        else 0.0,
        _choice_mismatch(question, answer) if options else 0.0,
    ]


def task_of(question: str) -> str:
    if len(_OPTIONS.findall(question)) >= 3:
        return "choice"
    return "maths" if sg.is_maths_question(question) else "open"


def feature_row(question: str, answer: str, signal_values: dict[str, float], cosine: float | None) -> np.ndarray:
    """The scalar features (FEATURE_NAMES order) of one answer: the base features in its task's block, zeros
    in the other tasks' blocks."""
    base = shape_features(question, answer, cosine) + [float(signal_values.get(n, 1.0)) for n in SIGNAL_INPUTS]
    task = task_of(question)
    out = np.zeros(len(FEATURE_NAMES), dtype=np.float64)
    at = TASKS.index(task) * len(BASE_NAMES)
    out[at : at + len(BASE_NAMES)] = base
    out[-2], out[-1] = float(task == "choice"), float(task == "maths")
    return out


# Short exchanges (a short question answered in a few sentences: "What is the capital of Japan?" "Tokyo.")
# are outside what the training sets can teach: on arena-hard the 91 such answers are 9% good (a base
# model's and PaLM 2's failures on hard prompts), on MT-Bench, GSM8K and MMLU-Pro 70-90% good, and a model
# fitted on all of them learnt "short = bad" from the first. There the answer model abstains and the rules
# and the local model's log-probabilities decide.
SHORT_QUESTION_CHARS = 150
SHORT_ANSWER_WORDS = 60


def is_short_exchange(question: str, answer: str) -> bool:
    return len(question) < SHORT_QUESTION_CHARS and len(answer.split()) < SHORT_ANSWER_WORDS


# How much of each text the static embeddings read (the same at training and at serving).
EMBED_QUESTION_CHARS = 1000
EMBED_ANSWER_CHARS = 1500


def embed_texts(question: str, answer: str) -> tuple[str, str]:
    """The two texts to embed for one answer: the heads of the question and of the answer."""
    return question[:EMBED_QUESTION_CHARS], answer[:EMBED_ANSWER_CHARS] or " "
