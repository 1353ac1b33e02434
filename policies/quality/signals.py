"""Cheap answer-quality signals: pure functions, each -> Signal(value in [0, 1], reason).

1.0 means "no evidence of a problem" (also when a signal does not apply, e.g. the
JSON check when no JSON was asked for), 0.0 means "certainly bad". The reason is
empty when the signal found nothing. No I/O, no model calls: the relevance signal
takes a cosine computed by the caller from embeddings.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from typing import Any, NamedTuple

from policies.common.api_answers import get_field


class Signal(NamedTuple):
    value: float
    reason: str = ""


OK = Signal(1.0)

# Text of the request or of the answer that a reason quotes is marked, so that a log line can leave it out
# (synqra.learning.keep_text: false keeps prompts and answers out of what is stored, the INFO log included).
_OPEN, _CLOSE = "\u2039", "\u203a"  # ‹ ›
_QUOTED = re.compile(f"{_OPEN}[^{_CLOSE}]*{_CLOSE}")


def quoted(text: object) -> str:
    """`text` (from the request or the answer) as a reason quotes it: ‹text›."""
    return _OPEN + str(text).replace(_OPEN, "").replace(_CLOSE, "") + _CLOSE


def without_text(reason: str) -> str:
    """The reason with what it quoted from the request or the answer left out (‹…›)."""
    return _QUOTED.sub(_OPEN + "\u2026" + _CLOSE, reason)


def _ramp(x: float, bad: float, good: float) -> float:
    """Linear map: x at `bad` -> 0, at `good` -> 1, clipped (works for bad > good too)."""
    if good == bad:
        return 1.0 if x >= good else 0.0
    return float(min(1.0, max(0.0, (x - bad) / (good - bad))))


# --- structure -----------------------------------------------------------------------------------


def empty_answer(answer: str, tool_calls: list[Any] | None = None) -> Signal:
    """No visible text (whitespace/punctuation only) and no tool call."""
    if tool_calls:
        return OK
    if not any(ch.isalnum() for ch in answer):
        return Signal(0.0, "empty answer")
    return OK


def cut_off(finish_reason: str | None) -> Signal:
    """The generation hit max_tokens: the answer is incomplete by construction."""
    if finish_reason == "length":
        return Signal(0.0, "cut off by max_tokens (finish_reason=length)")
    return OK


_OPEN_CLOSE = (("(", ")"), ("[", "]"), ("{", "}"), ("<<", ">>"))
# Case-sensitive on purpose: "vitamin A" is a finished sentence, "and a" is not.
# Markdown-safe: "*" and "-" end bold text and rules, so they are not listed.
_DANGLING_END = re.compile(r"(?:[=+×÷,:;(\[{<]|\b(?:and|or|the|a|an|of|to|with|which|by))\s*$")


def abrupt_end(answer: str) -> Signal:
    """The text stops mid-thought although the model claims it stopped normally.

    Seen when a server-side stop string or token budget cuts the text without
    finish_reason=length: an unclosed code fence, a last line (outside code)
    with an unclosed bracket, or ending in an operator, comma or function word.
    """
    text = answer.rstrip()
    if not text:
        return OK
    if text.count("```") % 2 == 1:
        return Signal(0.2, "ends inside an unclosed code block")
    prose = _strip_code(text).rstrip()
    if not prose or not text.endswith(prose[-1:]):  # ends with a (closed) code block
        return OK
    last = prose.splitlines()[-1]
    for o, c in _OPEN_CLOSE:
        if last.count(o) > last.count(c):
            return Signal(0.2, f"ends with an unclosed '{o}'")
    if _DANGLING_END.search(last):
        return Signal(0.3, "ends mid-sentence")
    # A trailing number group that is too short ("130,00") is a cut inside a number.
    if re.search(r"\d,\d{1,2}$", last):
        return Signal(0.2, "ends inside a number")
    return OK


_WORD = re.compile(r"\w+", re.UNICODE)


def repetition(answer: str, n: int = 4, min_ngrams: int = 12) -> Signal:
    """Share of repeated word n-grams (char 8-grams for text without spaces).

    Natural prose and worked maths answers stay below ~0.3 (GSM8K answers reach
    0.28); a model stuck in a loop repeats whole lines and passes 0.6, where the
    value reaches 0 (a hard failure).
    """
    words = _WORD.findall(answer.lower())
    grams: list[tuple[str, ...]] | list[str]
    if len(words) - n + 1 >= min_ngrams:
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    else:  # scripts without spaces, or runs like "!!!!!!!!": use characters
        chars = re.sub(r"\s+", " ", answer.strip())
        k = 8
        if len(chars) - k + 1 < min_ngrams * 2:
            return OK
        grams = [chars[i : i + k] for i in range(len(chars) - k + 1)]
    rep = 1.0 - len(set(grams)) / len(grams)
    value = _ramp(rep, bad=0.6, good=0.3)
    return Signal(value, f"repetition loop ({rep:.0%} repeated {n}-grams)" if value < 1 else "")


_REFUSAL = re.compile(
    r"\bi (?:can(?:no|')t|am unable to|'m unable to|won'?t|will not|am not able to|'m not able to) "
    r"(?:help|assist|provide|answer|comply|do that|fulfil|fulfill|support|create|generate|write|share)"
    r"|\bas an ai(?: language model)?\b,? i (?:can|do|am)"
    r"|\bi (?:do not|don'?t) have (?:access|the ability)"
    r"|\b(?:sorry|apologi[sz]e)\b[^.!?]{0,40}\b(?:can(?:no|')t|unable|won'?t|not able)\b",
    re.I,
)
# Requests where a refusal is a fair answer, not a quality failure.
_SENSITIVE = re.compile(
    r"\b(?:bomb|explosive|weapon|kill|murder|suicide|self-harm|poison|hack(?:ing)?|malware|ransomware|exploit|"
    r"meth|cocaine|heroin|steal|counterfeit|launder|porn|nude|terror\w*|credit card numbers?|password of)\b",
    re.I,
)


def refusal(question: str, answer: str) -> Signal:
    """A refusal (or "as an AI I cannot") where nothing in the request warranted one."""
    head = answer.strip()[:300]
    if not _REFUSAL.search(head):
        return OK
    if _SENSITIVE.search(question):
        return Signal(1.0, "refusal of a sensitive request (accepted)")
    if asks_unknowable_figure(question):  # "I don't have access to your pricing": the honest answer
        return Signal(1.0, "says it cannot know the user's own figures (accepted)")
    return Signal(0.0, "refused a request that did not warrant it")


# --- language ------------------------------------------------------------------------------------

_SCRIPTS = (
    ("LATIN", "latin"),
    ("CYRILLIC", "cyrillic"),
    ("GREEK", "greek"),
    ("ARABIC", "arabic"),
    ("HEBREW", "hebrew"),
    ("DEVANAGARI", "devanagari"),
    ("HANGUL", "hangul"),
    ("HIRAGANA", "kana"),
    ("KATAKANA", "kana"),
    ("CJK", "han"),
    ("THAI", "thai"),
    ("BENGALI", "bengali"),
    ("TAMIL", "tamil"),
    ("ARMENIAN", "armenian"),
    ("GEORGIAN", "georgian"),
)

_STOPWORDS = {
    "en": "the and is are was were of to in that it for you with this what how be not have has on as do can your "
    "an at by from so he she they we his her their which will would each per",
    "fr": "le la les et est sont des du un une que qui pour dans avec ce cette pas vous je il elle nous",
    "de": "der die das und ist sind nicht ein eine zu den dem mit für auf ich sie es wir auch wie was",
    "es": "el la los las es son del que en un una por para con no se su lo como pero más",
    "it": "il lo la gli le è sono di del che un una per con non si della come ma anche",
    "pt": "os as é são de do da que em um uma para com não se por como mas",
    "nl": "het een en zijn van dat te niet op met voor ik je wat hoe ook",
}
_STOP_SETS = {lang: set(words.split()) for lang, words in _STOPWORDS.items()}
# The question may legitimately ask for another language.
_LANG_REQUEST = re.compile(
    r"\b(?:translat\w*|traduc\w*|übersetz\w*|in (?:english|french|german|spanish|italian|portuguese|dutch|"
    r"russian|chinese|japanese|korean|arabic|hindi|greek|hebrew)|en (?:français|anglais|español|inglés)|"
    r"auf (?:deutsch|englisch))\b",
    re.I,
)


def _script_of(ch: str) -> str | None:
    if not ch.isalpha():
        return None
    name = unicodedata.name(ch, "")
    for key, script in _SCRIPTS:
        if name.startswith(key) or (key == "CJK" and "IDEOGRAPH" in name):
            return script
    return "other"


def dominant_script(text: str) -> tuple[str | None, float]:
    """The script of most letters and its share (None for text with < 8 letters)."""
    counts: dict[str, int] = {}
    for ch in text:
        s = _script_of(ch)
        if s:
            counts[s] = counts.get(s, 0) + 1
    total = sum(counts.values())
    if total < 8:
        return None, 0.0
    script = max(counts, key=counts.__getitem__)
    return script, counts[script] / total


def latin_language(text: str, min_hits: int = 3) -> str | None:
    """Best stopword match among a few Latin-script languages, or None when unsure."""
    words = [w for w in _WORD.findall(text.lower()) if not w.isdigit()]
    hits = {lang: sum(w in s for w in words) for lang, s in _STOP_SETS.items()}
    ranked = sorted(hits.items(), key=lambda kv: kv[1], reverse=True)
    (best, n1), (_, n2) = ranked[0], ranked[1]
    if n1 < min_hits or n1 < 1.5 * n2:
        return None
    return best


def _strip_code(text: str) -> str:
    return re.sub(r"```.*?(?:```|$)", " ", text, flags=re.S)


def language_match(question: str, answer: str) -> Signal:
    """The answer is in the question's script, and (Latin script) its language."""
    if _LANG_REQUEST.search(question):
        return OK
    q, a = _strip_code(question), _strip_code(answer)
    qs, qshare = dominant_script(q)
    as_, ashare = dominant_script(a)
    if qs is None or as_ is None:
        return OK
    # Japanese mixes han and kana freely: treat them as one family.
    fam = {"han": "cjk", "kana": "cjk"}
    if fam.get(qs, qs) != fam.get(as_, as_) and qshare > 0.6 and ashare > 0.6:
        return Signal(0.0, f"answer script {as_} differs from question script {qs}")
    if qs == as_ == "latin":
        ql, al = latin_language(q), latin_language(a)
        if ql and al and ql != al:
            return Signal(0.1, f"answer language {al} differs from question language {ql}")
    return OK


# --- requested formats ---------------------------------------------------------------------------


def json_requested(request: dict[str, Any]) -> dict[str, Any] | None:
    """The response_format asking for JSON (json_object / json_schema), else None."""
    rf = request.get("response_format")
    if isinstance(rf, dict) and rf.get("type") in ("json_object", "json_schema"):
        return rf
    return None


def json_valid(request: dict[str, Any], answer: str) -> Signal:
    """When JSON was asked for, the answer must parse (and carry the schema's required keys)."""
    rf = json_requested(request)
    if rf is None:
        return OK
    try:
        obj = json.loads(answer)
    except (json.JSONDecodeError, TypeError) as e:
        return Signal(0.0, f"JSON was requested but the answer does not parse ({e.msg if hasattr(e, 'msg') else e})")
    schema = (rf.get("json_schema") or {}).get("schema") if rf.get("type") == "json_schema" else None
    if isinstance(schema, dict):
        if schema.get("type") == "object" and not isinstance(obj, dict):
            return Signal(0.0, "JSON schema asks for an object")
        missing = [k for k in schema.get("required", []) if isinstance(obj, dict) and k not in obj]
        if missing:
            return Signal(0.0, f"JSON lacks required keys {quoted(missing)}")
    return OK


def _tool_schemas(request: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Offered tools by name -> argument schema. OpenAI: {"type": "function", "function": {"name", "parameters"}};
    Anthropic: {"name", "input_schema"} (its server tools, e.g. web search, have a name and no schema)."""
    out: dict[str, dict[str, Any]] = {}
    for t in request.get("tools") or []:
        if not isinstance(t, dict):
            continue
        fn = t["function"] if isinstance(t.get("function"), dict) else t
        if fn.get("name"):
            out[fn["name"]] = fn.get("parameters") or fn.get("input_schema") or {}
    return out


def _tool_call(call: Any) -> tuple[Any, Any]:
    """(name, arguments) of a tool call, dict or SDK object. OpenAI: {"function": {"name", "arguments": JSON text}};
    Anthropic: {"type": "tool_use", "name", "input": an object, or JSON text when read from a stream}."""
    fn = get_field(call, "function")
    if fn is not None:
        return get_field(fn, "name"), get_field(fn, "arguments")
    return get_field(call, "name"), get_field(call, "input")


def tool_args_valid(request: dict[str, Any], tool_calls: list[Any] | None) -> Signal:
    """Every tool call names an offered tool and carries JSON-object arguments with the required keys."""
    if not tool_calls:
        return OK
    schemas = _tool_schemas(request)
    for call in tool_calls:
        name, raw = _tool_call(call)
        if schemas and name not in schemas:
            return Signal(0.0, f"tool call to unknown tool {quoted(name)}")
        try:
            args = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError:
            return Signal(0.0, f"tool call {quoted(name)} arguments do not parse as JSON")
        if not isinstance(args, dict):
            return Signal(0.0, f"tool call {quoted(name)} arguments are not a JSON object")
        missing = [k for k in (schemas.get(name) or {}).get("required", []) if k not in args]
        if missing:
            return Signal(0.0, f"tool call {quoted(name)} lacks required arguments {quoted(missing)}")
    return OK


# --- model confidence and relevance --------------------------------------------------------------


def logprob_mean(logprobs: list[float] | None, bad: float = -2.5, good: float = -0.6) -> Signal:
    """Mean token log-probability of the answer: low = the model was guessing."""
    if not logprobs:
        return OK
    m = float(sum(logprobs) / len(logprobs))
    v = _ramp(m, bad, good)
    return Signal(v, f"mean token logprob {m:.2f}" if v < 1 else "")


def logprob_min(logprobs: list[float] | None, window: int = 4, bad: float = -6.0, good: float = -2.5) -> Signal:
    """Lowest mean logprob over any `window` consecutive tokens.

    The bare minimum of single tokens is dominated by harmless rare words in long
    answers; a short window catches a span where the model lost its way.
    """
    if not logprobs or len(logprobs) < window:
        return OK
    lows = [sum(logprobs[i : i + window]) / window for i in range(len(logprobs) - window + 1)]
    m = float(min(lows))
    v = _ramp(m, bad, good)
    return Signal(v, f"unsure span (4-token logprob {m:.2f})" if v < 1 else "")


def relevance(cosine: float | None, bad: float = 0.05, good: float = 0.35) -> Signal:
    """Cosine of question and answer embeddings: a ramp from `bad` (off topic) to `good` (on topic).
    The defaults are full MiniLM's; a static embedding has its own band (`relevance_band`)."""
    if cosine is None or math.isnan(cosine):
        return OK
    v = _ramp(cosine, bad, good)
    return Signal(v, f"answer weakly related to the question (cosine {cosine:.2f})" if v < 1 else "")


def _content_stems(text: str) -> set[str]:
    stop = _STOP_SETS["en"]
    return {w[:5] for w in _WORD.findall(text.lower()) if len(w) >= 4 and w not in stop and not w.isdigit()}


def lexical_overlap(question: str, answer: str) -> float | None:
    """Share of the question's content words (5-letter stems) found in the answer; None if < 3 of them.

    A cheap gate in front of the embedding call: an answer that reuses the
    question's own words is on topic, and only the others need the embedding.
    """
    q = _content_stems(question)
    if len(q) < 3:
        return None
    return len(q & _content_stems(answer)) / len(q)


# --- maths task check ----------------------------------------------------------------------------

# An arithmetic expression: numbers (1,234.5, $, %) joined by + - * / x × ÷ and parentheses.
_NUM = r"\$?\d(?:\d|,\d{3})*(?:\.\d+)?%?"
# "x" as an operator needs spaces on both sides; written as lookarounds so that no two parts of a pattern
# can match the same space (the alternative let a failing match backtrack exponentially in the terms).
_OP = r"(?:[+\-*/×÷]|\\\*|(?<=\s)[xX](?=\s))"
_EXPR = rf"[(\s]*{_NUM}(?:[)\s]*{_OP}[(\s]*{_NUM})*[)\s]*"
# A chain "a + b = c = d * 2 = e": every member must equal the next. A member glued
# to a letter ("1.5x") is algebra, not arithmetic, and ends the chain.
_CHAIN = re.compile(rf"(?<![\w.]){_EXPR}(?:\s*=\s*{_EXPR})+(?![\w]|\.\d)")
_OPERATOR_BEFORE = re.compile(r"(?:[+\-*/×÷(^=]|\\\*)\s*$")
_HAS_OP = re.compile(rf"\d%?[)\s]*{_OP}[(\s]*\$?\d")
_ANNOT = re.compile(r"<<([^<>]+)>>")


def _parse_number(tok: str) -> float:
    tok = tok.replace("$", "").replace(",", "")
    if tok.endswith("%"):
        return float(tok[:-1]) / 100.0
    return float(tok)


def eval_arithmetic(expr: str) -> float | None:
    """Evaluate + - * / and parentheses over numbers; None if not a plain expression.

    A tiny recursive-descent parser: never `eval`, so any text is safe to feed in.
    """
    s = expr.replace("\\*", "*").replace("×", "*").replace("÷", "/")
    s = re.sub(r"(?<=[\d)%])\s*[xX]\s*(?=[\d($])", "*", s)
    toks: list[str] = re.findall(r"\$?\d[\d,]*(?:\.\d+)?%?|[+\-*/()]|\S", s)
    pos = 0

    def peek() -> str | None:
        return toks[pos] if pos < len(toks) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return toks[pos - 1]

    def atom() -> float:
        t = take() if peek() is not None else ""
        if t == "(":
            v = sum_()
            if take() != ")":
                raise ValueError
            return v
        if t == "-":
            return -atom()
        return _parse_number(t)

    def product() -> float:
        v = atom()
        while peek() in ("*", "/"):
            op, rhs = take(), atom()
            v = v * rhs if op == "*" else v / rhs
        return v

    def sum_() -> float:
        v = product()
        while peek() in ("+", "-"):
            op, rhs = take(), product()
            v = v + rhs if op == "+" else v - rhs
        return v

    try:
        v = sum_()
    except (ValueError, ZeroDivisionError, IndexError):
        return None
    return v if pos == len(toks) else None


def _close(a: float, b: float) -> bool:
    # Rounded intermediate values (2/3 -> 0.67, 33.33) are not errors.
    return abs(a - b) <= max(0.011, 0.006 * max(abs(a), abs(b)))


_SPACES = re.compile(r"[ \t\u00a0]{2,}")
MAX_MATHS_CHARS = 20000  # the arithmetic checks read this much of an answer: bounded cost for any text


def squeeze(text: str) -> str:
    """Runs of spaces as one, and at most MAX_MATHS_CHARS: the expression patterns allow spaces around
    every operator, and long blank runs (markdown tables) made them backtrack for minutes."""
    return _SPACES.sub(" ", text)[:MAX_MATHS_CHARS]


def _chains(answer: str) -> list[tuple[int, list[str]]]:
    """(end offset, members) of each `expr = expr (= ...)` chain, in reading order.

    GSM8K-style calculator notes `<<3*4=12>>` are chains too. A chain right after an
    operator or "=" ("x * 4 + 8 = 40") is part of an algebraic equation and skipped.
    """
    found = [(m.end(), m.group(1).split("=")) for m in _ANNOT.finditer(answer)]
    answer = squeeze(answer)  # offsets are of the squeezed text, as _operands' are
    plain = _ANNOT.sub(lambda m: " " * len(m.group(0)), answer)  # same length: offsets stay valid
    start = 0
    for line in plain.splitlines(keepends=True):
        for m in _CHAIN.finditer(line):
            if not _OPERATOR_BEFORE.search(line[: m.start()]):
                found.append((start + m.end(), m.group(0).split("=")))
        start += len(line)
    found.sort(key=lambda c: c[0])
    return [(end, [x.strip() for x in members]) for end, members in found]


def equations(answer: str) -> list[tuple[str, str]]:
    """(left, right) of consecutive members of each chain that holds an operator, in reading order."""
    found = []
    for _, members in _chains(answer):
        for left, right in zip(members, members[1:]):
            if _HAS_OP.search(left) or _HAS_OP.search(right):
                found.append((left, right))
    return found


# --- worded arithmetic ---------------------------------------------------------------------------
# "17 times 23 is 391", "15% of 80 equals 12", "twice 15 = 30": rewritten into symbols so that the same
# parser and checks as "17 * 23 = 391" apply. Only words between two numbers (or before one) are
# rewritten, and "is" / "equals" become "=" only right after an expression that holds an operator.
# Starts only at the head of a number: inside a long digit run every start point re-scanned the run.
_WN = r"(?<![\d.,$])(\$?\d(?:\d|,\d{3})*(?:\.\d+)?%?)"
_WORD_OPS = (
    (
        re.compile(rf"{_WN}\s*(?:%|percent|per cent)\s+of\s+(?:the\s+)?{_WN}", re.I),
        lambda m: f"{m[1].rstrip('%')}% * {m[2]}",
    ),
    (re.compile(rf"{_WN}\s+(?:times|multiplied by)\s+{_WN}", re.I), lambda m: f"{m[1]} * {m[2]}"),
    (re.compile(rf"{_WN}\s+plus\s+{_WN}", re.I), lambda m: f"{m[1]} + {m[2]}"),
    (re.compile(rf"{_WN}\s+minus\s+{_WN}", re.I), lambda m: f"{m[1]} - {m[2]}"),
    (re.compile(rf"{_WN}\s+(?:divided by|over)\s+{_WN}", re.I), lambda m: f"{m[1]} / {m[2]}"),
    (re.compile(rf"\b(?:twice|double)\s+(?:of\s+)?{_WN}", re.I), lambda m: f"2 * {m[1]}"),
    (re.compile(rf"\b(?:triple|thrice)\s+{_WN}", re.I), lambda m: f"3 * {m[1]}"),
    (re.compile(rf"\bhalf\s+of\s+{_WN}", re.I), lambda m: f"{m[1]} / 2"),
    (re.compile(rf"{_WN}\s+squared\b", re.I), lambda m: f"{m[1]} * {m[1]}"),
    (re.compile(rf"\bthe\s+sum\s+of\s+{_WN}\s+and\s+{_WN}", re.I), lambda m: f"{m[1]} + {m[2]}"),
    (re.compile(rf"\bthe\s+product\s+of\s+{_WN}\s+and\s+{_WN}", re.I), lambda m: f"{m[1]} * {m[2]}"),
)
_WORD_EQUALS = re.compile(
    rf"(?<![\w.])({_EXPR})\s*(?:is equal to|equals|is|makes|gives(?: you)?|comes to|would be|will be|results in|=)\s+"
    rf"(?:about\s+|approximately\s+)?(-?{_NUM})(?![\w]|\.\d)",
    re.I,
)


def words_to_symbols(text: str) -> str:
    """Worded arithmetic between numbers written with operators, and "is" / "equals" after such an
    expression written as "=": "15% of 80 is 20" -> "15% * 80 = 20". Other text is left as it is."""
    out = squeeze(text)
    for _ in range(3):  # "17 times 23 plus 4": each pass rewrites the operators the previous one exposed
        before = out
        for pattern, repl in _WORD_OPS:
            out = pattern.sub(repl, out)
        if out == before:
            break
    return _WORD_EQUALS.sub(lambda m: f"{m[1]} = {m[2]}" if _HAS_OP.search(m[1]) else m[0], out)


def arithmetic_errors(answer: str) -> list[str]:
    """Equations (symbolic or worded) whose left side does not evaluate to the right side."""
    bad = []
    for left, right in equations(words_to_symbols(answer)):
        lv, rv = eval_arithmetic(left), eval_arithmetic(right)
        if lv is None or rv is None or _close(lv, rv):
            continue
        if right.endswith("%") and _close(lv, rv * 100) or left.endswith("%") and _close(lv * 100, rv):
            continue  # "0.1 * 100 = 10%"
        if rv == round(rv) and abs(lv - rv) < 1 and lv != round(lv):  # rounded to a whole count: 73/8 = 9 boxes
            continue
        if "%" in left:  # "50 + 20% = 60" style: also accept percent-of-base readings
            alt = eval_arithmetic(left.replace("%", ""))
            if alt is not None and _close(alt, rv):
                continue
        bad.append(f"{left} = {right} (is {lv:g})")
    return bad


def arithmetic(answer: str) -> Signal:
    """Re-check the arithmetic of a worked answer: any wrong equation is a strong hint of a wrong answer."""
    bad = arithmetic_errors(answer)
    if not bad:
        return OK
    more = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
    return Signal(0.0 if len(bad) > 1 else 0.15, f"wrong arithmetic: {quoted(bad[0])}{more}")


_NUMBER = re.compile(r"(?<![\w.])-?\$?\d(?:\d|,\d{3})*(?:\.\d+)?")
# Word problems ask for a quantity in many ways: "how tall", "what's her annual salary", "what percentage of",
# "what will the total cost be" (GSM8K phrasings the earlier, narrower list missed, so no maths check ran).
_QUANTITY_QUESTION = re.compile(
    r"\b(?:how (?:many|much|long|far|old|fast|often|tall|heavy|high|big|wide|deep|large)|"
    r"what(?:'s| is| was| are| were| will be| would be) (?:the |their |his |her |its )?(?:total|sum|number|amount|"
    r"cost|price|value|average|difference|percentage|area|perimeter|distance|speed|rate|ratio|profit|combined|final|"
    r"new|mean)|what percent(?:age)?|calculate|compute|solve|find the)\b",
    re.I,
)
# The quantities of a word problem are often spelled out ("three times as many", "twice", "half", "a dozen")
# or written without a leading zero (".5 hours"): both count as the problem's numbers.
_NUMBER_WORD = re.compile(
    r"\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|fifty|"
    r"hundred|thousand|dozen|twice|half|double|triple|thrice|quarter)\b",
    re.I,
)
_BARE_DECIMAL = re.compile(r"(?<![\w.])\.\d+")
# In an exact word problem, approximating or correcting oneself signals a muddled solution.
_MATHS_DOUBT = re.compile(
    r"\b(?:approximately|roughly|about \$?\d|however|actually|assum\w+|round(?:ed|ing)? (?:up|down|to))\b", re.I
)
_COUNT_QUESTION = re.compile(r"\bhow many\b", re.I)
# A word problem "answered" by saying it cannot be answered: no result to deliver, whatever the working.
_NO_RESULT = re.compile(
    r"\b(?:can ?not|can't|could ?not|couldn't|unable to|impossible to|not possible to)\s+(?:be\s+)?"
    r"(?:directly\s+|exactly\s+|accurately\s+|definitively\s+)?"
    r"(?:determine[ds]?|find|found|calculated?|compute[ds]?|known?|say|answer(?:ed)?|solved?|tell|give)\b"
    r"|\b(?:not|in)sufficient information\b|\bnot enough (?:information|data|details)\b"
    r"|\bno (?:unique |whole[- ]number |integer |valid |exact )?solution\b"
    r"|\b(?:problem|question)(?: statement)? (?:has|contains|is) (?:an? )?(?:small )?"
    r"(?:inconsisten\w*|error|mistake|flaw\w*|ambiguous|missing)",
    re.I,
)
# A result stated as the answer after the doubt ("we can't solve it directly ... #### 10") is one.
_COMMITTED = re.compile(r"####\s*\$?-?\d|\\boxed\{\s*\$?-?\d|\banswer(?: is|:)\s*\**\$?-?\d", re.I)
_FINAL_MARK = re.compile(r"####|\\boxed|answer(?: is|:)|=\s*\$?-?\d|total(?: is|:)|therefore|so,? ", re.I)


def is_maths_question(question: str) -> bool:
    """A word problem asking for a quantity: at least two numbers (digits or words) and a quantity question."""
    if not _QUANTITY_QUESTION.search(question):
        return False
    count = len(_NUMBER.findall(question)) + len(_BARE_DECIMAL.findall(question))
    return count >= 2 or count + len(_NUMBER_WORD.findall(question)) >= 2


def final_number(answer: str) -> float | None:
    """The last number of the answer's last non-empty line (where a final result goes)."""
    lines = [ln for ln in answer.strip().splitlines() if ln.strip()]
    if not lines:
        return None
    nums = _NUMBER.findall(_ANNOT.sub(" ", lines[-1]))
    if not nums:
        return None
    try:
        return _parse_number(nums[-1])
    except ValueError:
        return None


def _numbers(text: str) -> list[float]:
    out = []
    for tok in _NUMBER.findall(_ANNOT.sub(" ", text)):
        try:
            out.append(_parse_number(tok))
        except ValueError:
            pass
    return out


def _whole(x: float) -> bool:
    return abs(x - round(x)) < 1e-9


def maths_answer(question: str, answer: str) -> Signal:
    """For a maths word problem, the final result is stated and plausible.

    Checks, the first failing one decides: a final number is present; a "how many" gets a whole
    number (and so, more mildly, does any quantity asked from whole inputs); no
    approximating or self-correcting; some
    calculation is shown; the final number was produced by the worked steps (or
    given), not pulled from nowhere.
    """
    if not is_maths_question(question):
        return OK
    no_result = _NO_RESULT.search(answer)
    if no_result and not _COMMITTED.search(answer, no_result.end()):
        # "we cannot directly find the number left; if she ate 1 apple, 2 are left": an abstention, not a result
        return Signal(0.3, f"maths question answered without a result ({quoted(no_result.group(0))})")
    value = final_number(answer)
    if value is None:
        last = answer.strip().splitlines()[-1] if answer.strip() else ""
        if not _FINAL_MARK.search(last) or not _NUMBER.search(last):
            return Signal(0.3, "maths question but no final number in the last line")
        return OK
    if not _whole(value):
        if _COUNT_QUESTION.search(question):
            return Signal(0.3, f"'how many' answered with a fractional number {quoted(f'{value:g}')}")
        if all(_whole(x) for x in _numbers(question)):
            return Signal(0.5, f"fractional result {quoted(f'{value:g}')} from whole-number inputs")
    if doubt := _MATHS_DOUBT.search(answer):
        return Signal(0.5, f"worked answer approximates or corrects itself ({quoted(doubt.group(0))})")
    steps = equations(answer)
    if not steps:  # nothing to check: an unexplained number is less reliable
        return Signal(0.7, "maths answer shows no worked calculation")
    results = [v for pair in steps for e in pair if (v := eval_arithmetic(e)) is not None]
    if results and not any(_close(value, r) for r in results + _numbers(question)):
        return Signal(0.5, f"final number {quoted(f'{value:g}')} is not the result of any worked step")
    return OK


def maths_inputs(question: str, answer: str) -> Signal:
    """Share of the numbers given in a maths word problem that the worked answer never uses."""
    if not is_maths_question(question) or not equations(answer):
        return OK
    given = set(_numbers(question))
    used = set(_numbers(answer))
    unused = [x for x in given if x not in used]
    share = len(unused) / max(1, len(given))
    v = _ramp(share, bad=1.0, good=0.0)
    return Signal(v, f"{len(unused)} of {len(given)} given numbers unused" if v < 1 else "")


# An arithmetic operator right before / after a number ("=" is not one: "= 12" restates a result).
_OPERATOR_LEFT = re.compile(r"(?:[+\-*/×÷]|\\\*|\s[xX])\s*\(*\s*$")
_OPERATOR_AFTER = re.compile(r"\s*\)*\s*(?:[+\-*/×÷]|\\\*|[xX]\s)")


def _operands(text: str) -> list[tuple[int, float]]:
    """(offset, value) of numbers written next to an arithmetic operator (operands of a calculation)."""
    out = []
    text = _ANNOT.sub(
        lambda a: f"  {a.group(1)}  ", squeeze(text)
    )  # calculator notes are calculations too; same length
    for m in _NUMBER.finditer(text):
        if _OPERATOR_LEFT.search(text[max(0, m.start() - 8) : m.start()]) or _OPERATOR_AFTER.match(text, m.end()):
            try:
                out.append((m.start(), _parse_number(m.group(0))))
            except ValueError:
                pass
    return out


def worked_results(answer: str) -> list[tuple[int, float]]:
    """(end offset, value) of the result of each calculation chain, in reading order."""
    out = []
    for end, members in _chains(answer):
        if any(_HAS_OP.search(x) for x in members) and (v := eval_arithmetic(members[-1])) is not None:
            out.append((end, v))
    return out


def dead_end(question: str, answer: str) -> Signal:
    """A worked step of a maths answer whose result nothing later uses.

    In sound working every intermediate result feeds a later calculation or is the
    final answer; a result left hanging means the solution changed course or lost a link.
    """
    if not is_maths_question(question):
        return OK
    results = worked_results(answer)
    if len(results) < 2:
        return OK
    final = final_number(answer)
    operands = _operands(answer)
    for end, value in results[:-1]:
        if final is not None and _close(value, final):
            continue
        if not any(at >= end and _close(value, x) for at, x in operands):
            return Signal(0.0, f"worked result {quoted(f'{value:g}')} is never used afterwards")
    return OK


# Uncertainty and self-correction, not ordinary discourse markers ("however" is fine).
_HEDGE = re.compile(
    r"\b(?:i'?m not (?:sure|certain)|i am not (?:sure|certain)|i (?:think|believe|guess)|it(?: i|')s (?:unclear|"
    r"not clear|hard to say|difficult to say)|wait|(?:a|my) mistake|that'?s (?:wrong|incorrect)|doesn'?t make sense|"
    r"not possible|cannot be determined|not enough information|assuming)\b",
    re.I,
)


def hedging(answer: str) -> Signal:
    """Uncertainty and self-correction phrases ("I'm not sure", "however", "wait", "assuming")."""
    hits = _HEDGE.findall(answer)
    if not hits:
        return OK
    # Floor 0.4: hedging alone never pushes a good answer out of the deliver band.
    v = max(0.4, 1.0 - 0.3 * len(hits))
    return Signal(v, f"hedging or self-correction: {', '.join(dict.fromkeys(h.lower() for h in hits))}")


def question_text(request: dict[str, Any]) -> str:
    """The last user turn's text (what the answer must address)."""
    from policies.common.message_content import message_text

    for m in reversed(request.get("messages") or []):
        if m.get("role") == "user":
            return message_text(m.get("content"))
    return ""


# --- the computation the question asks for ---------------------------------------------------------

_ASKS_VALUE = re.compile(
    r"^\s*(?:what(?:'s| is| are| does)|how much (?:is|are|does)|calculate|compute|evaluate|work out|"
    r"solve|find|tell me)\b",
    re.I,
)


def asked_expression(question: str) -> tuple[str, float] | None:
    """(expression, value) when the question is a bare calculation ("What is 17 times 23?",
    "Calculate 15% of 80", "what's 12*7"): one expression with an operator and nothing else numeric."""
    q = question.strip()
    if len(q) > 160 or not _ASKS_VALUE.search(q):
        return None
    sym = words_to_symbols(q)
    exprs = [m.group(0).strip() for m in re.finditer(_EXPR, sym) if _HAS_OP.search(m.group(0))]
    if len(exprs) != 1 or len(_NUMBER.findall(sym)) != len(_NUMBER.findall(exprs[0])):
        return None
    value = eval_arithmetic(exprs[0])
    return (exprs[0], value) if value is not None else None


def computation(question: str, answer: str) -> Signal:
    """The question is a bare calculation: the answer must state its result somewhere.

    Certain when it fires: "What is 17 times 23?" answered "60" (or "17 times 23 = 60") gives no number
    equal to 391. An answer with no number at all is left to the other signals."""
    asked = asked_expression(question)
    if asked is None:
        return OK
    expr, value = asked
    nums = _numbers(words_to_symbols(answer))
    pct = [x * 100 for x in nums]  # "15% of 80" answered "12" and "0.15 * 80 = 12" alike
    if not nums or any(_close(value, x) for x in nums + pct) or any(_close(value, x / 100) for x in nums):
        return OK
    return Signal(
        0.0, f"the question asks for {quoted(f'{expr} = {value:g}')}; the answer states {quoted(f'{nums[-1]:g}')}"
    )


# --- figures the model cannot know ---------------------------------------------------------------

# Questions about the user's (or the assistant's, speaking for a business) own facts: prices, plans,
# dates of their orders, their hours, contacts, names. A model without that context cannot know them.
_OWN = r"(?:your|our|my|this (?:company|store|shop|business)'s)"
_OWN_FACT = (
    r"pric\w*|cost\w*|fees?|rates?|plans?|subscriptions?|charges?|tariffs?|discounts?|refunds?|revenue|sales|"
    r"turnover|profits?|margins?|salar\w+|budget|invoices?|balance|order(?:s| number)?|deliver\w*|ship\w*|"
    r"opening hours|hours|address|phone(?: number)?|email(?: address)?|stock|inventory|customers?|employees?|staff|"
    r"headcount|founded|launch\w*|deadline|appointment|booking|reservation|account(?: number)?|contact\w*"
)
_UNKNOWABLE = re.compile(
    rf"\b(?:what(?:'s| is| are| was| were)|how (?:much|many)|when|where|which|tell me|give me|list)\b[^?.!]{{0,40}}?"
    rf"\b{_OWN}\b[^?.!]{{0,30}}?\b(?:{_OWN_FACT})\b"
    rf"|\b(?:how much|what) (?:do|does|did|will) (?:you|we) (?:charge|cost|ask|bill)"
    rf"|\bwhen (?:do|does|will|are|is) (?:you|we) (?:open|close|ship|deliver)"
    rf"|\bwhat(?:'s| is) (?:the )?(?:name of )?{_OWN} (?:company|business|store|shop|brand|firm|startup|product|app)"
    rf"(?:'s)? (?:name|called)"
    rf"|\b(?:name|called) (?:of )?{_OWN} (?:company|business|store|shop|brand|firm|startup|ceo|founder|manager)",
    re.I,
)
_NAME_QUESTION = re.compile(r"\bname\b|\bcalled\b|\bwho is (?:our|my|the) (?:ceo|founder|manager|owner)\b", re.I)
_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|jun(?:e)?|jul(?:y)?|aug(?:ust)?|sep(?:t(?:ember)?)?|"
    r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
# Specific figures: money, percentages, dates, times, phone numbers, and other numbers of two or more digits.
_FIGURE = re.compile(
    rf"[$€£¥]\s?\d[\d,]*(?:\.\d+)?|\b\d[\d,]*(?:\.\d+)?\s?(?:usd|eur|gbp|dollars?|euros?|pounds?|%|percent)\b"
    rf"|\b{_MONTH}\.? \d{{1,2}}(?:st|nd|rd|th)?(?:,? \d{{4}})?\b|\b\d{{1,2}}(?:st|nd|rd|th)? (?:of )?{_MONTH}\b"
    rf"|\b\d{{1,4}}[/-]\d{{1,2}}[/-]\d{{1,4}}\b|\b\d{{1,2}}(?::\d{{2}})?\s?(?:am|pm|a\.m\.|p\.m\.)"
    rf"|\+?\d[\d ().-]{{7,}}\d|(?<![\w.])\d[\d,]*\.\d+|(?<![\w.])\d{{2,}}(?:,\d{{3}})*(?![\w.)]|\.\d)",
    re.I,
)
_LIST_NUMBER = re.compile(r"^\s*\d{1,2}[.)]\s", re.M)
_PROPER = re.compile(r"(?<![.!?]\s)(?<!^)\b([A-Z][a-z]+(?:\s+[A-Z][a-z]+)*)\b")
_COMMON_CAPS = {
    "I",
    "I'm",
    "AI",
    "Please",
    "However",
    "The",
    "Your",
    "You",
    "Our",
    "We",
    "If",
    "For",
    "To",
    "Unfortunately",
    "Sorry",
    "Hello",
    "Hi",
    "Thanks",
    "Thank",
    "Yes",
    "No",
}


def asks_unknowable_figure(question: str) -> bool:
    """The question asks for a figure or name only the user's own records hold (their prices, orders,
    hours, company name...): a model answering without that context can only invent it."""
    return bool(_UNKNOWABLE.search(question))


def _figures(text: str) -> list[str]:
    text = _LIST_NUMBER.sub(" ", _ANNOT.sub(" ", text))
    return [m.group(0).strip() for m in _FIGURE.finditer(text)]


def _digits(fig: str) -> str:
    return re.sub(r"\D", "", fig.split(".")[0]) or fig


def invented_figure(context: str, question: str, answer: str) -> Signal:
    """The question asks for a figure the model cannot know (see asks_unknowable_figure), and the answer
    states one that neither the conversation (system prompt included) nor any worked calculation gives.

    "What is your pricing?" -> "$10,598.62" is invented; "I don't have your price list; it is on your
    pricing page" states nothing and passes; with the price list in the system prompt, quoting it passes.
    """
    if not asks_unknowable_figure(question):
        return OK
    known = {_digits(f) for f in _figures(context)} | {_digits(n) for n in _NUMBER.findall(context)}
    computed = {f"{v:g}" for _, v in worked_results(answer)}
    for fig in _figures(answer):
        if _digits(fig) not in known and fig.lstrip("$€£¥ ") not in computed:
            return Signal(
                0.0, f"states {quoted(fig)}, a figure the conversation does not give and the model cannot know"
            )
    if _NAME_QUESTION.search(question):
        ctx = context.lower()
        names = [n for n in _PROPER.findall(answer) if n not in _COMMON_CAPS and n.lower() not in ctx]
        if names:
            return Signal(
                0.0, f"names {quoted(names[0])}, which the conversation does not give and the model cannot know"
            )
    return OK


def conversation_text(request: dict[str, Any]) -> str:
    """Every message's text (system prompt and earlier turns included): what the answer may draw on."""
    from policies.common.message_content import message_text

    parts = [message_text(m.get("content")) for m in request.get("messages") or [] if isinstance(m, dict)]
    system = request.get("system")  # the Anthropic Messages API's top-level system prompt
    if system:
        parts.insert(0, system if isinstance(system, str) else message_text(system))
    return "\n".join(parts)
