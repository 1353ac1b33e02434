"""Prometheus metrics of the request path: route, validate, account, and the month's budget.

Registered on prometheus_client's default registry, so `GET /metrics` (proxy.api.metrics) also
carries LiteLLM's own per-model request, latency and token metrics when its `prometheus` callback is
added to `litellm_settings.callbacks` (LiteLLM renders the same registry). Observing is a few
in-memory increments per request; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from policies.budget.guard import BudgetGuard
    from policies.budget.records import LedgerRecord
    from proxy.learning_loop import LearningLoop

ROUTE_DECISIONS = Counter(
    "synqra_route_decisions",
    "Routing decisions by the tier the router chose; mode shadow: logged, not served",
    ["tier", "mode"],
)
ROUTE_SECONDS = Histogram(
    "synqra_route_decision_seconds",
    "Time to decide a route, embedding included",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
)
QUALITY_VERDICTS = Counter(
    "synqra_quality_verdicts", "Quality verdicts on a validated tier's first answer", ["tier", "action"]
)
QUALITY_SCORE = Histogram(
    "synqra_quality_score",
    "Quality score of a validated tier's first answer",
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
)
QUALITY_SERVED = Counter(
    "synqra_quality_served",
    "Validated requests by the tier that answered first and the tier that served",
    ["first_tier", "served_tier"],
)
SHADOW_EVALS = Counter(
    "synqra_shadow_evaluations",
    "Shadow-mode answers of the local model by verdict (or skipped_busy, failed)",
    ["outcome"],
)
SHADOW_IN_FLIGHT = Gauge(
    "synqra_shadow_evaluations_in_flight",
    "Shadow-mode answers of the local model being generated or judged",
    multiprocess_mode="livesum",
)
CALLS = Counter(
    "synqra_calls", "Model calls written to the ledger (escalations and fallbacks included)", ["model", "kind", "local"]
)
COST_USD = Counter("synqra_cost_usd", "Actual cost of the ledger's calls, USD", ["model"])
# The same spend by what the call was for: a client's own call (its API: chat, messages, ...), an escalation, a
# fallback, a judge's call (the quality gate's or the learning loop's: their monthly limits apply).
COST_BY_KIND_USD = Counter("synqra_cost_by_kind_usd", "Actual cost of the ledger's calls by kind, USD", ["kind"])
BASELINE_USD = Counter(
    "synqra_baseline_usd", "What the same calls would have cost on the baseline model, USD", ["model"]
)
TOKENS = Counter("synqra_tokens", "Tokens of the ledger's calls", ["model", "direction"])
# Once per alert (the process that stored it first counts it): level "0.7", "0.9"... or "stop"; tag "" for the month's
# whole budget, else the capped tag's name.
BUDGET_ALERTS = Counter(
    "synqra_budget_alerts", "Budget alerts fired, by level (share of the limit, or stop) and tag", ["level", "tag"]
)


_ROUTE_CHILDREN: dict[tuple[str, str], Counter] = {}  # by (tier, mode): see _LEDGER_CHILDREN


def observe_route(tier: str, mode: str, seconds: float) -> None:
    child = _ROUTE_CHILDREN.get((tier, mode))
    if child is None:
        child = _ROUTE_CHILDREN[(tier, mode)] = ROUTE_DECISIONS.labels(tier=tier, mode=mode)
    child.inc()
    ROUTE_SECONDS.observe(seconds)


def observe_quality(first_tier: str, action: str, score: float, served_tier: str) -> None:
    QUALITY_VERDICTS.labels(tier=first_tier, action=action).inc()
    QUALITY_SCORE.observe(score)
    QUALITY_SERVED.labels(first_tier=first_tier, served_tier=served_tier).inc()


def observe_shadow_eval(outcome: str) -> None:
    SHADOW_EVALS.labels(outcome=outcome).inc()


# The ledger's counters by (model, kind, local): .labels() takes a lock and builds a key each time, and
# five of them were a tenth of a paid request's budget bookkeeping. Few combinations: models x kinds.
_Children = tuple[Counter, Counter, Counter, Counter, Counter, Counter]
_LEDGER_CHILDREN: dict[tuple[str, str, bool], _Children] = {}


def _ledger_children(model: str, kind: str, local: bool) -> _Children:
    key = (model, kind, local)
    children = _LEDGER_CHILDREN.get(key)
    if children is None:
        children = _LEDGER_CHILDREN[key] = (
            CALLS.labels(model=model, kind=kind, local=str(local).lower()),
            COST_USD.labels(model=model),
            BASELINE_USD.labels(model=model),
            TOKENS.labels(model=model, direction="prompt"),
            TOKENS.labels(model=model, direction="completion"),
            COST_BY_KIND_USD.labels(kind=kind),
        )
    return children


def observe_ledger(record: LedgerRecord) -> None:
    """A BudgetGuard listener: one call per ledger row, as written (or queued while the store is down)."""
    calls, cost, baseline, prompt, completion, by_kind = _ledger_children(
        record.served_model, record.kind, record.local
    )
    calls.inc()
    cost.inc(record.cost_usd)
    by_kind.inc(record.cost_usd)
    baseline.inc(record.baseline_usd)
    prompt.inc(record.prompt_tokens)
    completion.inc(record.completion_tokens)


def observe_budget_alert(level: str, tag: str | None) -> None:
    """A BudgetGuard alert listener: one call per alert fired."""
    BUDGET_ALERTS.labels(level=level, tag=tag or "").inc()


class BudgetCollector(Collector):
    """The month's budget as this process knows it (the guard's cache, refreshed from the shared
    store by its maintenance loop), read at scrape time."""

    def __init__(self, guard: Callable[[], BudgetGuard | None]) -> None:
        self._guard = guard

    def collect(self) -> Iterator[GaugeMetricFamily]:
        guard = self._guard()
        if guard is None:
            return
        v = guard.snapshot()
        yield GaugeMetricFamily("synqra_budget_limit_usd", "Monthly hard limit, USD", value=v["limit_usd"])
        yield GaugeMetricFamily(
            "synqra_budget_committed_usd", "Spent this month (settled calls), USD", value=v["committed_usd"]
        )
        yield GaugeMetricFamily(
            "synqra_budget_reserved_usd", "Reserved by calls in flight, USD", value=v["reserved_usd"]
        )
        yield GaugeMetricFamily(
            "synqra_budget_used_ratio", "Committed share of the monthly limit", value=v["used_ratio"]
        )
        yield GaugeMetricFamily("synqra_budget_pressure", "Thrift pressure on routing, 0..1", value=v["pressure"])
        yield GaugeMetricFamily("synqra_budget_stopped", "1 when paid calls are stopped", value=float(v["stopped"]))


def register_budget(guard: Callable[[], BudgetGuard | None], registry: CollectorRegistry = REGISTRY) -> BudgetCollector:
    collector = BudgetCollector(guard)
    registry.register(collector)
    return collector


class LearningCollector(Collector):
    """The inference log's writer (rows written and dropped, by kind) and the serving router version."""

    def __init__(self, loop: Callable[[], LearningLoop | None]) -> None:
        self._loop = loop

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        loop = self._loop()
        if loop is None:
            return
        if loop.version is not None:
            info = GaugeMetricFamily(
                "synqra_router_version_info", "The router version serving (value 1)", labels=["version"]
            )
            info.add_metric([loop.version], 1.0)
            yield info
        writer = loop.writer
        if writer is not None or loop.log_problem is not None:
            yield GaugeMetricFamily(
                "synqra_learning_log_writable",
                "1 while the inference log is written; 0 when it could not be opened (the proxy log says why)",
                value=float(writer is not None),
            )
        if writer is None:
            return
        rows = CounterMetricFamily(
            "synqra_learning_log_items", "Inference log items (route, outcome, label) by fate", labels=["kind", "fate"]
        )
        for fate, counts in (("written", writer.written), ("dropped", writer.dropped)):
            for kind in ("route", "outcome", "label"):
                rows.add_metric([kind, fate], float(counts.get(kind, 0)))
        yield rows


def register_learning(
    loop: Callable[[], LearningLoop | None], registry: CollectorRegistry = REGISTRY
) -> LearningCollector:
    collector = LearningCollector(loop)
    registry.register(collector)
    return collector
