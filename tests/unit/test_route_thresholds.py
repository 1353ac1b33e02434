"""`synqra route-thresholds`: thresholds that split a sample of one's own traffic in chosen tier shares."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from policies.common.routing_settings import RoutingSettings
from policies.embedding.names import embedder_for
from policies.learning.cli import _settings
from policies.learning.labels import label_from_gate
from policies.learning.registry import base_version
from policies.learning.route_thresholds import route_thresholds_main
from policies.learning.store import InferenceLog, Label, RouteRow
from policies.routing import thresholds as cli
from policies.routing.router import Router
from policies.routing.scorer import load_artifact
from policies.routing.tiers import thresholds_for_shares, tier_index
from tests.unit.test_routing_router import make_config, user

SUBJECTS = [
    "refunds",
    "shipping times",
    "the pricing page",
    "password resets",
    "invoices",
    "API rate limits",
    "a flaky unit test",
    "database indexes",
    "the quarterly report",
    "a caching strategy",
]
ASKS = [
    "What is {}?",
    "Explain {} in two sentences.",
    "Compare three ways to handle {} and say which one you would pick, with the trade-offs of each.",
    "Step by step, analyse why {} keeps failing in production, then propose a fix and a test that proves it.",
]


def sample_requests() -> list[dict]:
    return [user(ask.format(s)) for s in SUBJECTS for ask in ASKS for _ in range(2)] + [
        user(f"{ask.format(s)} Keep it under {n} words.") for s in SUBJECTS for ask in ASKS for n in (50, 100, 200)
    ]


@pytest.fixture(scope="module")
def router() -> Router:
    return Router.from_config(make_config(), embedder_for(load_artifact().embedder), lookup=lambda _: None)


def test_cuts_split_the_scores_in_the_asked_shares() -> None:
    scores = [i / 100 for i in range(100)]
    t = thresholds_for_shares(scores, [0.8, 0.15, 0.05])
    tiers = [tier_index(s, t) for s in scores]
    assert [tiers.count(i) for i in range(3)] == [80, 15, 5]
    assert t == sorted(t)
    # Whole sample on one tier, at either end.
    assert [tier_index(s, thresholds_for_shares(scores, [1.0, 0.0, 0.0])) for s in scores] == [0] * 100
    assert [tier_index(s, thresholds_for_shares(scores, [0.0, 0.0, 1.0])) for s in scores] == [2] * 100
    # The printed (6-decimal) cut keeps the top score below it too.
    top = thresholds_for_shares(scores, [1.0, 0.0, 0.0])
    assert top == [0.990001, 0.990001] and top[0] == float(str(top[0]))


@pytest.mark.parametrize("shares", [[0.7, 0.2], [1.0], [0.9, 0.2, -0.1], [0.5, 0.2, 0.2]])
def test_shares_must_be_a_split_of_the_whole(shares: list[float]) -> None:
    with pytest.raises(ValueError, match="shares"):
        thresholds_for_shares([0.1, 0.2], shares)


def test_refit_router_serves_the_asked_shares(router: Router) -> None:
    requests = sample_requests()
    default_local = sum(d.tier == "local-llama" for d in router.decide_batch(requests)) / len(requests)
    thresholds, shares = cli.fit_thresholds(router, requests, [0.8, 0.15, 0.05])
    assert len(thresholds) == 2 and thresholds[0] <= thresholds[1]
    assert shares["local-llama"] == pytest.approx(0.8, abs=0.02)
    assert shares["claude-sonnet"] == pytest.approx(0.05, abs=0.02)
    assert abs(default_local - 0.8) > 0.05  # the shipped thresholds split this sample otherwise
    RoutingSettings(thresholds=thresholds)  # a valid config value


def test_creative_rule_still_raises_requests_above_their_share(router: Router) -> None:
    requests = sample_requests() + [user("Write a compelling brand story for a luxury tech startup")] * 20
    _, shares = cli.fit_thresholds(router, requests, [1.0, 0.0, 0.0])
    assert shares["claude-sonnet"] == pytest.approx(20 / len(requests))


def test_command_prints_a_config_snippet(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    lines = [json.dumps({"id": i, **r}) for i, r in enumerate(sample_requests())] + ["not json"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
    assert route_thresholds_main(["--shares", "0.8", "0.15", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "(1 unreadable lines skipped)" in out
    # Within one request of 80%: the sample holds each prompt twice, and a tied pair may straddle the cut.
    fitted = re.search(r"local-llama (\d\.\d+)", out)
    assert fitted and float(fitted.group(1)) == pytest.approx(0.8, abs=1 / len(sample_requests()) + 1e-9)
    thresholds = yaml.safe_load(out)["synqra"]["routing"]["thresholds"]
    assert len(thresholds) == 2 and thresholds == sorted(thresholds)


def test_command_names_the_tiers_when_shares_do_not_fit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(user("hi")) + "\n"))
    assert route_thresholds_main(["--shares", "0.8", "0.2"]) == 2
    assert "local-llama, deepseek-chat, claude-sonnet" in capsys.readouterr().err


def serving_version() -> str:
    """The version the command reads rows of without a config (the repo's config, no learnt version installed)."""
    return base_version(_settings(None)[2])


def inference_log(path: Path, rows: list[tuple[float, str, str]], labels: dict[int, str] | None = None) -> Path:
    """An inference log (as the proxy's writer thread writes it) of rows (route score, router version, scorer) and
    quality gate verdicts {row index: action}, alternately live (`gate`) and shadow mode's (`shadow_gate`)."""
    log = InferenceLog(path)
    routes = [
        RouteRow(f"r{i}", 1000.0 + i, "k", b"", b"", b"", 0, None, score, scorer, version, "local-llama", "live")
        for i, (score, version, scorer) in enumerate(rows)
    ]
    verdicts = [
        Label(f"r{i}", "shadow_gate" if i % 2 else "gate", label_from_gate(action), 2000.0 + i)
        for i, action in (labels or {}).items()
    ]
    log.write(routes=routes, labels=verdicts)
    log.close()
    return log.path


def test_command_reads_the_serving_versions_scores(
    router: Router, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The scores of the router version serving now, as the proxy's inference log keeps them; another version's
    (another scale) and the structural fallback rule's are left out."""
    requests = sample_requests()
    version = serving_version()
    rows = [(d.score, version, "learned") for d in router.decide_batch(requests)]
    rows += [(0.99, "v-older", "learned")] * 50 + [(0.99, version, "heuristic")] * 5
    file = inference_log(tmp_path, rows)
    shares = ["--shares", "0.8", "0.15", "0.05"]
    tiers = [d.tier for d in router.decide_batch(requests)]
    for given in (file, tmp_path):  # the file or its folder
        assert route_thresholds_main([*shares, "--from-log", str(given)]) == 0
        out = capsys.readouterr().out
        assert f"# {len(requests)} logged decisions of router {version}" in out
        # The split the running thresholds give (what a shadow-mode log says going live would do) is the
        # split of the logged decisions themselves (none of these prompts is creative or needs a capability).
        expected = ", ".join(
            f"{t} {tiers.count(t) / len(tiers):.3f}" for t in ("local-llama", "deepseek-chat", "claude-sonnet")
        )
        assert f"# at the configured thresholds {router.thresholds}: {expected}" in out
        fitted = yaml.safe_load(out)["synqra"]["routing"]["thresholds"]
        from_requests, _ = cli.fit_thresholds(router, requests, [0.8, 0.15, 0.05])
        assert fitted == pytest.approx(from_requests, abs=1e-3)
    assert len(set(tiers)) > 1
    assert route_thresholds_main([*shares, "--from-log", str(tmp_path / "none")]) == 2
    assert "none" in capsys.readouterr().err


def test_too_few_logged_decisions_are_refused_unless_forced_and_then_warned_of(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """One logged decision gave both cuts at its own score ([0.169731, 0.169731]), printed as a config to paste."""
    from policies.learning.route_thresholds import MIN_LOGGED_DECISIONS

    log = inference_log(tmp_path, [(0.169731, serving_version(), "learned")])
    shares = ["--shares", "0.5", "0.25", "0.25", "--from-log", str(log)]
    assert route_thresholds_main(shares) == 2
    out, err = capsys.readouterr()
    assert "thresholds:" not in out
    assert "only 1 logged decisions" in err and f"fewer than {MIN_LOGGED_DECISIONS}" in err and "--force" in err
    assert route_thresholds_main([*shares, "--force"]) == 0
    out, err = capsys.readouterr()
    assert "warning: only 1 logged decisions" in err
    assert "# warning: only 1 logged decisions" in out and yaml.safe_load(out)["synqra"]["routing"]["thresholds"]
    (tmp_path / "enough").mkdir()
    enough = inference_log(tmp_path / "enough", [(i / 100, serving_version(), "learned") for i in range(100)])
    assert route_thresholds_main(["--shares", "0.5", "0.25", "0.25", "--from-log", str(enough)]) == 0
    out, err = capsys.readouterr()
    assert "warning" not in out + err


def test_command_reads_the_log_without_writing_it_and_names_the_version_it_looked_for(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A read-only command: an empty file stays empty (it was given a schema, 0 -> 36 KB), and a log holding only
    another version's rows says which version it looked for."""
    empty = tmp_path / "empty" / "inference_log.sqlite3"
    empty.parent.mkdir()
    empty.touch()
    shares = ["--shares", "0.8", "0.15", "0.05"]
    assert route_thresholds_main([*shares, "--from-log", str(empty)]) == 2
    assert empty.stat().st_size == 0
    assert "holds no inference log" in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    other = inference_log(tmp_path / "other", [(0.5, "learned-v0099", "learned")] * 30)
    assert route_thresholds_main([*shares, "--from-log", str(other)]) == 2
    err = capsys.readouterr().err
    assert f"no route scores of router {serving_version()}" in err and "learned-v0099" not in err, err


# --- the local cut from logged quality verdicts (--max-escalation) ------------------------------


def verdicts_rising(n: int = 200, bad_above: float = 0.6) -> list[tuple[float, str]]:
    """Scores spread over 0..1; the local answer is escalated exactly when the score is above bad_above."""
    return [(i / n, "escalate" if i / n > bad_above else ("rephrase" if i % 3 else "deliver")) for i in range(n)]


def test_local_cut_stops_where_escalations_pass_the_rate() -> None:
    v = verdicts_rising()
    strict = cli.local_cut(v, 0.0)
    assert strict is not None and strict.escalation_rate == 0 and 0.6 < strict.threshold < 0.61
    assert strict.below == sum(s <= 0.6 for s, _ in v)
    loose = cli.local_cut(v, 0.25)  # 121 good below 0.605; a quarter escalated allows 40 more
    assert loose is not None and loose.escalation_rate <= 0.25 and loose.below == 161
    assert loose.threshold == pytest.approx((v[160][0] + v[161][0]) / 2)
    everything = cli.local_cut(v, 1.0)
    assert everything is not None and everything.below == len(v) and everything.threshold > v[-1][0]


def test_local_cut_never_splits_tied_scores_and_needs_enough_requests() -> None:
    tied = [(0.1, "deliver")] * 30 + [(0.2, "deliver")] * 5 + [(0.2, "escalate")] * 5 + [(0.3, "escalate")] * 10
    cut = cli.local_cut(tied, 0.0)
    assert cut is not None and cut.below == 30 and cut.threshold == pytest.approx(0.15)
    assert cli.local_cut(tied, 0.0, min_requests=31) is None
    assert cli.local_cut([(0.1, "escalate")] * 25, 0.5) is None


def test_escalation_bands_cover_every_verdict() -> None:
    bands = cli.escalation_by_band(verdicts_rising(), 5)
    assert [n for _, _, n, _ in bands] == [40] * 5
    assert [rate for *_, rate in bands] == [0.0, 0.0, 0.0, pytest.approx(0.975), 1.0]


def test_command_places_the_local_cut_from_logged_verdicts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    v = verdicts_rising()
    version = serving_version()
    rows = [(score, version, "learned") for score, _ in v]
    rows += [(0.01, version, "heuristic"), (0.01, "v-older", "learned")]  # escalated, on other scales: left out
    labels = {i: action for i, (_, action) in enumerate(v)} | {len(v): "escalate", len(v) + 1: "escalate"}
    log = inference_log(tmp_path / "good", rows, labels)
    assert route_thresholds_main(["--max-escalation", "0.25", "--from-log", str(log)]) == 0
    out = capsys.readouterr().out
    cut = cli.local_cut(v, 0.25)
    assert cut is not None and f"# local cut {cut.threshold}: the 161 logged requests" in out
    assert f"# {len(v)} logged quality verdicts on local-llama answers (live and shadow)" in out
    thresholds = yaml.safe_load(out)["synqra"]["routing"]["thresholds"]
    assert thresholds[0] == cut.threshold and thresholds == sorted(thresholds)
    assert "nothing is known about higher scores" not in out
    assert route_thresholds_main(["--max-escalation", "1", "--from-log", str(log)]) == 0
    assert "every logged request is below this cut" in capsys.readouterr().out
    assert route_thresholds_main(["--max-escalation", "0.25"]) == 2, "needs the log"
    assert "--from-log" in capsys.readouterr().err
    bad = inference_log(tmp_path / "bad", [(0.1, version, "learned")] * 30, dict.fromkeys(range(30), "escalate"))
    assert route_thresholds_main(["--max-escalation", "0.1", "--from-log", str(bad)]) == 1
    assert "no cut keeps the escalation rate" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        route_thresholds_main(["--max-escalation", "0.1", "--shares", "0.8", "0.15", "0.05"])
