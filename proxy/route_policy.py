"""Which of LiteLLM's HTTP routes synqra serves. Pure: (method, path) -> served, free or closed.

LiteLLM's proxy mounts some 650 routes (images, audio, rerank, batches, files, fine-tuning, realtime,
provider pass-through, key and team management...), and an upgrade can add more. Any route that can
reach a provider and is not budgeted is a paid call outside the ledger, so the rule is an allow-list:

- ACCOUNTED: generation and embedding routes; every call through them passes synqra's hooks (route,
  reserve, settle, record), on every model;
- FREE: routes that reach no paid provider (model list, token counting, health, synqra's /api and
  /metrics, the dashboard);
- everything else is closed (403 in the API's error format) unless the operator opens it by name in
  `synqra.server.open_routes`, knowing it is not accounted.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Literal

Verdict = Literal["accounted", "free", "closed", "opened"]

# (method, path template) in LiteLLM's own notation; {x} is one path segment, {x:path} any rest.
ACCOUNTED: tuple[tuple[str, str], ...] = tuple(
    ("POST", prefix + suffix)
    for suffix in ("/chat/completions", "/completions", "/embeddings")
    for prefix in ("", "/v1", "/engines/{model:path}", "/openai/deployments/{model:path}")
) + (
    ("POST", "/v1/messages"),
    ("POST", "/responses"),
    ("POST", "/v1/responses"),
    ("POST", "/openai/v1/responses"),
)
FREE: tuple[tuple[str, str], ...] = (
    ("GET", "/models"),
    ("GET", "/v1/models"),
    ("GET", "/models/{model_id}"),
    ("GET", "/v1/models/{model_id}"),
    ("POST", "/v1/messages/count_tokens"),  # served by synqra itself (proxy/api/count_tokens.py)
    ("GET", "/health/liveliness"),
    ("GET", "/health/liveness"),
    ("GET", "/health/readiness"),
    ("GET", "/metrics"),
    # synqra's own admin routes (proxy/api); LiteLLM has /api/* routes of its own, which stay closed.
    ("GET", "/api/budget/status"),
    ("GET", "/api/budget/ledger"),
    ("GET", "/api/models/status"),
    ("POST", "/api/models/init"),
    # The guide's agents endpoint: it reaches models only through an in-process POST /v1/chat/completions,
    # which is accounted like any client's (proxy/api/agents.py).
    ("POST", "/api/agents"),
    # The operator's dashboard (proxy/dashboard/routes.py): the page, sign-in and -out, its JSON, its assets.
    ("GET", "/dashboard"),
    ("POST", "/dashboard/login"),
    ("POST", "/dashboard/logout"),
    ("GET", "/dashboard/data"),
    ("GET", "/dashboard/assets/{name}"),
    ("POST", "/api/feedback"),
)


def _pattern(template: str) -> re.Pattern[str]:
    out, pos = "", 0
    for m in re.finditer(r"\{(\w+)(:path)?\}", template):
        out += re.escape(template[pos : m.start()]) + (".+" if m.group(2) else "[^/]+")
        pos = m.end()
    return re.compile("^" + out + re.escape(template[pos:]) + "/?$")


@dataclass(frozen=True)
class RoutePolicy:
    """The allow-list, compiled once. `open_routes`: "METHOD /path" or "/path" globs the operator opened."""

    open_routes: tuple[str, ...] = ()
    # (method, path pattern, verdict), from ACCOUNTED and FREE: derived, so neither an argument nor compared.
    _rules: list[tuple[str, re.Pattern[str], Verdict]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        compiled: list[tuple[str, re.Pattern[str], Verdict]] = [(m, _pattern(t), "accounted") for m, t in ACCOUNTED]
        compiled += [(m, _pattern(t), "free") for m, t in FREE]
        object.__setattr__(self, "_rules", compiled)

    def verdict(self, method: str, path: str) -> Verdict:
        method = method.upper()
        # A CORS preflight or a HEAD is as open as the route it asks about.
        asked = "GET" if method == "HEAD" else method
        for m, pattern, kind in self._rules:
            if (asked == m or method == "OPTIONS") and pattern.match(path):
                return kind
        for rule in self.open_routes:
            rule_method, _, rule_path = rule.rpartition(" ")
            if (not rule_method or rule_method.upper() in (method, asked)) and fnmatch.fnmatchcase(path, rule_path):
                return "opened"
        return "closed"


def closed_message(method: str, path: str) -> str:
    return (
        f"{method} {path} is closed on this gateway: synqra-proxy serves only the routes it accounts for "
        "(chat, messages, completions, responses, embeddings, models, count_tokens, health); an operator "
        "can open another route in synqra.server.open_routes, unaccounted"
    )
