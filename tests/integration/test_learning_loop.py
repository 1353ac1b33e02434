"""Routing that learns, on the running stack: every routed request is logged, the gate and the application
label it, `synqra learn` installs a better router, every worker serves it without a restart
(x-synqra-router-version), a worse candidate is kept out, rollback and a corrupt version are safe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from policies.learning.registry import RouterRegistry
from policies.learning.store import InferenceLog
from policies.routing.scorer import DEFAULT_ARTIFACT, load_artifact
from proxy.learning_loop import RELOAD_EVERY_S
from tests.fakes.fake_providers import FakeProvider
from tests.stack import MASTER_KEY, REPO, RunningStack, proxy_workers, start_stack, wait_until
from tests.unit.learning_data import traffic

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


def post(s: RunningStack, body: dict, path: str = "/v1/chat/completions") -> httpx.Response:
    return httpx.post(f"{s.base_url}{path}", json=body, headers=AUTH, timeout=120)


def learn(s: RunningStack, *args: str) -> str:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "learn", "--config", str(s.config_path), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def version(s: RunningStack) -> str:
    r = post(s, {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "Tell me about packing."}]})
    assert r.status_code == 200, r.text
    return r.headers["x-synqra-router-version"]


def test_live_requests_are_logged_with_the_gates_label_and_take_feedback(stack: RunningStack) -> None:
    r = post(
        stack,
        {"model": "auto", "max_tokens": 3, "temperature": 0, "messages": [{"role": "user", "content": "Say hello."}]},
    )
    assert r.status_code == 200
    rid = r.headers["x-synqra-request-id"]
    log = InferenceLog(stack.data_dir / "learning")
    try:
        assert wait_until(lambda: (row := log.row(rid)) is not None and row["labels"], 30)
        row = log.row(rid)
        assert row["tier_chosen"] == "local-llama" and row["router_version"] == r.headers["x-synqra-router-version"]
        assert row["request_json"] is None, "no prompt text unless synqra.learning.keep_text"
        assert row["labels"][0]["source"] == "gate" and row["labels"][0]["value"] == 1.0  # the cut-off answer escalated
        # Feedback on an answer a paid tier served says nothing about the local tier: acknowledged, no label.
        fb = httpx.post(
            f"{stack.base_url}/api/feedback", json={"request_id": rid, "score": "good"}, headers=AUTH, timeout=30
        )
        assert fb.status_code == 200 and fb.json()["label"] is None and fb.json()["served_by"] != "local-llama"
        local = post(
            stack,
            {
                "model": "auto",
                "max_tokens": 24,
                "temperature": 0,
                "messages": [{"role": "user", "content": "What is the capital of France?"}],
            },
        )
        lid = local.headers["x-synqra-request-id"]
        if local.headers["x-synqra-route"] == "local-llama":
            fb = httpx.post(
                f"{stack.base_url}/api/feedback",
                json={"request_id": lid, "score": 0.9, "comment": "fine"},
                headers=AUTH,
                timeout=30,
            )
            assert fb.status_code == 200 and fb.json()["recorded"] and fb.json()["label"] == pytest.approx(0.1)
            assert wait_until(lambda: any(x["source"] == "feedback" for x in log.row(lid)["labels"]), 10)
    finally:
        log.close()


@pytest.mark.parametrize(
    "body,status",
    [
        ({"request_id": "synqra-nope", "score": "good"}, 404),
        ({"request_id": "x", "score": 2}, None),  # 404 (unknown id) comes first; a known id with score 2 is a 400 below
        ({"score": 1}, 400),
        ({"request_id": "x", "score": "good", "comment": 5}, 400),
        ({"request_id": "x", "score": "good", "comment": "long " * 1000}, 400),  # a note, not a document
    ],
)
def test_feedback_bad_input(stack: RunningStack, body: dict, status: int | None) -> None:
    """Errors in the /api format the README documents (as the route's own 401), naming the field."""
    r = httpx.post(f"{stack.base_url}/api/feedback", json=body, headers=AUTH, timeout=30)
    error = r.json()["detail"]["error"]
    assert r.status_code == (status or 404) and error["message"] and error["type"]
    assert error["param"] == ("comment" if "comment" in body else "request_id"), error
    assert httpx.post(f"{stack.base_url}/api/feedback", content=b"{nope", headers=AUTH, timeout=30).status_code == 400
    assert httpx.post(f"{stack.base_url}/api/feedback", json=body, timeout=30).status_code == 401


@pytest.mark.parametrize("raw", [b"[1]", b'"good"', b"5", b"null"])
def test_feedback_whose_body_is_not_an_object_names_no_field(stack: RunningStack, raw: bytes) -> None:
    """A body that is not a JSON object has no field to blame: the error named `score` (`[1]`, `"good"`)."""
    r = httpx.post(f"{stack.base_url}/api/feedback", content=raw, headers=AUTH, timeout=30)
    error = r.json()["detail"]["error"]
    assert r.status_code == 400 and "JSON object" in error["message"] and error["param"] is None, error


def test_feedback_score_out_of_range_is_a_400(stack: RunningStack) -> None:
    r = post(stack, {"model": "auto", "max_tokens": 4, "messages": [{"role": "user", "content": "Hello there"}]})
    rid = r.headers["x-synqra-request-id"]
    fb = httpx.post(f"{stack.base_url}/api/feedback", json={"request_id": rid, "score": 2}, headers=AUTH, timeout=30)
    assert fb.status_code == 400 and "0 to 1" in fb.json()["detail"]["error"]["message"]
    assert fb.json()["detail"]["error"]["param"] == "score"


def test_feedback_the_inference_log_cannot_store_is_a_400(stack: RunningStack) -> None:
    """A score past a float's range and a lone UTF-16 surrogate in the id or the comment (valid JSON, as `json` reads
    it) were a 500, or (the comment) acknowledged as recorded while the inference log's writer failed on it, and with
    it every other request's row in the same batch. Refused as the model routes refuse them; the log keeps working."""
    r = post(stack, {"model": "auto", "max_tokens": 4, "messages": [{"role": "user", "content": "Hello there"}]})
    rid = r.headers["x-synqra-request-id"]
    for raw in (
        f'{{"request_id": "{rid}", "score": 1{"0" * 400}}}',
        f'{{"request_id": "{rid}\\ud800", "score": 1}}',
        f'{{"request_id": "{rid}", "score": 0.5, "comment": "fine \\udc00"}}',
    ):
        fb = httpx.post(f"{stack.base_url}/api/feedback", content=raw.encode(), headers=AUTH, timeout=30)
        assert fb.status_code == 400 and "not valid JSON" in fb.json()["detail"]["error"]["message"], (
            raw[-40:],
            fb.text,
        )
    fb = httpx.post(f"{stack.base_url}/api/feedback", json={"request_id": rid, "score": 0.5}, headers=AUTH, timeout=30)
    assert fb.status_code == 200, fb.text


def test_two_workers_feedback_on_either_and_each_row_costs_what_the_ledger_says(
    stack: RunningStack, providers: dict[str, FakeProvider], tmp_path: Path
) -> None:
    """num_workers 2: feedback sent right after the answer reaches either worker (a new connection each time); the
    worker that did not serve the request must wait for the other's writer, not answer 404 (24 of 30 were 404s) or
    read the row before its outcome (3 of 30 took a Claude answer for a local one: label 0.0 recorded). Each row's
    cost is the ledger's for the request, streamed or not (it was NULL on every row)."""
    s = start_stack(
        tmp_path,
        providers,
        backends_of=stack,
        synqra_overrides={"server": {"num_workers": 2}, "routing": {"mode": "shadow", "shadow_eval_share": 0.0}},
    )
    log = InferenceLog(s.data_dir / "learning")
    try:
        assert wait_until(lambda: len(proxy_workers(s)) == 2, 60)
        ids = []
        for i in range(16):
            body = {"model": "auto", "max_tokens": 8, "stream": i % 2 == 1}
            r = post(s, {**body, "messages": [{"role": "user", "content": f"Name a colour, please ({i})."}]})
            assert r.status_code == 200, r.text
            rid, served = r.headers["x-synqra-request-id"], r.headers["x-synqra-route"]
            fb = httpx.post(
                f"{s.base_url}/api/feedback", json={"request_id": rid, "score": "good"}, headers=AUTH, timeout=30
            )
            assert fb.status_code == 200, (i, fb.text)
            assert fb.json()["served_by"] == served != "local-llama" and fb.json()["label"] is None, fb.json()
            ids.append(rid)
        ledger = httpx.get(f"{s.base_url}/api/budget/ledger", headers=AUTH, timeout=30).json()["records"]

        def cost(rid: str) -> float:
            return sum(x["cost_usd"] for x in ledger if x["request_id"].split(":")[0] == rid)

        assert all(cost(rid) > 0 for rid in ids)
        assert wait_until(lambda: all(log.row(rid)["cost_usd"] == pytest.approx(cost(rid)) for rid in ids), 10), [
            (log.row(rid)["cost_usd"], cost(rid)) for rid in ids
        ]
        assert not any(x["source"] == "feedback" for rid in ids for x in log.row(rid)["labels"])
    finally:
        log.close()
        s.stop()


@pytest.mark.parametrize("current", [b"29991231T000000Z-deadbeef", b"\xff\xfe\x00junk"], ids=["corrupt", "unreadable"])
def test_a_worker_starting_on_a_corrupt_version_names_the_router_it_serves(
    stack: RunningStack, providers: dict[str, FakeProvider], tmp_path: Path, current: bytes
) -> None:
    """routers/CURRENT names a damaged version when a worker starts (a worker restarted after the file was damaged):
    it serves the base router and must name it as the registry and every other worker do (`shipped-<sha12>`), not
    "shipped", in x-synqra-router-version and in the inference log. An unreadable CURRENT is survived the same way."""
    routers = tmp_path / "data" / "learning" / "routers"
    bad = routers / "29991231T000000Z-deadbeef"
    bad.mkdir(parents=True)
    (bad / "router.npz").write_bytes(b"not an artifact")
    # Not UTF-8: the worker's learning loop did not start (no header, no rows, no reloads).
    (routers / "CURRENT").write_bytes(current)
    s = start_stack(tmp_path, providers, backends_of=stack)
    log = InferenceLog(s.data_dir / "learning")
    try:
        r = post(
            s, {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "Tell me about packing."}]}
        )
        assert r.headers.get("x-synqra-router-version") == version(stack)
        assert wait_until(lambda: log.exists(r.headers["x-synqra-request-id"]), 10), "the request is logged"
        # CURRENT becoming unreadable while the worker runs: the reload poll died on it, and never reloaded again.
        (routers / "CURRENT").write_bytes(b"\xff\xfe\x00junk")
        time.sleep(2 * RELOAD_EVERY_S + 1)
        assert version(s) == version(stack)
        registry = RouterRegistry(routers, DEFAULT_ARTIFACT)
        good = registry.add(load_artifact(), {"note": "the shipped weights under a version name"})
        registry.activate(good)
        assert wait_until(lambda: version(s) == good, 20), "the worker reloads once CURRENT names a good version"
    finally:
        log.close()
        s.stop()


def test_learn_installs_hot_reloads_keeps_out_worse_rolls_back_and_refuses_corrupt(
    stack: RunningStack, providers: dict[str, FakeProvider], tmp_path: Path
) -> None:
    # Shadow mode: every request is routed and logged, the (fake, instant) incumbent answers.
    s = start_stack(tmp_path, providers, backends_of=stack, synqra_overrides={"routing": {"mode": "shadow"}})
    flowing: list[int] = []
    stop = threading.Event()
    t: threading.Thread | None = None
    try:
        base = version(s)
        reqs, labels = traffic(160, seed=7)
        ids = []
        for req in reqs:
            r = post(s, {"model": "auto", "max_tokens": 16, **req})
            assert r.status_code == 200
            ids.append(r.headers["x-synqra-request-id"])
        log = InferenceLog(s.data_dir / "learning")
        assert wait_until(lambda: all(log.exists(i) for i in ids), 30), "every routed request is a row"
        for rid, y in zip(ids, labels):  # what judges and feedback would say: the specialist topics need more
            log.add_label(rid, "judge", y)

        def keep_flowing() -> None:  # requests keep being served while a version is installed
            while not stop.is_set():
                flowing.append(
                    post(
                        s, {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]}
                    ).status_code
                )

        t = threading.Thread(target=keep_flowing)
        t.start()
        out = learn(s)
        assert "installed" in out, out
        installed = next(
            x["version"]
            for x in reversed(
                json.loads(
                    "[" + ",".join((s.data_dir / "learning" / "routers" / "runs.jsonl").read_text().splitlines()) + "]"
                )
            )
            if x.get("decision") == "installed"
        )
        assert wait_until(lambda: version(s) == installed, 20), "every worker serves the new version, no restart"
        assert installed != base

        # A candidate no better on the newest labels (pure noise) is kept out: the installed version serves on.
        reqs2, _ = traffic(80, seed=8)
        noisy = []
        for req in reqs2:
            noisy.append(post(s, {"model": "auto", "max_tokens": 16, **req}).headers["x-synqra-request-id"])
        assert wait_until(lambda: all(log.exists(i) for i in noisy), 30)
        for i, rid in enumerate(noisy):
            log.add_label(rid, "judge", float(i % 2))
        out = learn(s)
        assert "kept" in out, out
        assert version(s) == installed

        # Rollback serves the shipped router again; a corrupt version is refused and the serving one kept.
        learn(s, "--rollback", "base")
        assert wait_until(lambda: version(s) == base, 20)
        routers = s.data_dir / "learning" / "routers"
        bad = routers / "29991231T000000Z-deadbeef"
        bad.mkdir()
        (bad / "router.npz").write_bytes(b"not an artifact")
        (routers / "CURRENT").write_text(bad.name)
        time.sleep(5)  # two reload polls
        assert version(s) == base
        log.close()
    finally:
        stop.set()
        if t is not None:
            t.join(60)
        s.stop()
    assert flowing and set(flowing) == {200}


def test_a_learnt_version_keeps_the_configured_rollout_stage(
    stack: RunningStack, providers: dict[str, FakeProvider], tmp_path: Path
) -> None:
    """A rollout stage is `synqra.routing.thresholds` fitted on the serving router's scores (route-thresholds
    --shares 0.1 0.8 0.1). A version `synqra learn` installs scores on its own scale and refitted its thresholds to
    `target_local_share`, but the configured cuts won over them: a 10% stage (10/80/10) served 53% local and 47%
    Claude once the weekly run installed a version. Its thresholds now keep the stage's shares of the logged traffic,
    and serve while the config names that stage."""
    from policies.routing.tiers import thresholds_for_shares

    reqs, labels = traffic(160, seed=7)
    lines = "".join(json.dumps({"id": i, **r}) + "\n" for i, r in enumerate(reqs))
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "route-score", "--config", str(stack.config_path)],
        input=lines,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    stage = [0.1, 0.8, 0.1]
    thresholds = thresholds_for_shares([json.loads(x)["score"] for x in out.stdout.splitlines()], stage)
    s = start_stack(
        tmp_path,
        providers,
        backends_of=stack,
        synqra_overrides={"routing": {"mode": "shadow", "shadow_eval_share": 0.0, "thresholds": thresholds}},
    )
    tiers = ["local-llama", "deepseek-chat", "claude-sonnet"]

    def shares() -> tuple[list[float], list[str]]:
        chosen, ids = [], []
        for req in reqs:
            r = post(s, {"model": "auto", "max_tokens": 8, **req})
            assert r.status_code == 200, r.text
            chosen.append(r.headers["x-synqra-route-shadow"])
            ids.append(r.headers["x-synqra-request-id"])
        return [chosen.count(t) / len(chosen) for t in tiers], ids

    log = InferenceLog(s.data_dir / "learning")
    try:
        before, ids = shares()
        assert before == pytest.approx(stage, abs=0.02), before
        assert wait_until(lambda: all(log.exists(i) for i in ids), 30)
        for rid, y in zip(ids, labels):
            log.add_label(rid, "judge", y)
        assert "installed" in learn(s)
        installed = RouterRegistry(s.data_dir / "learning" / "routers", DEFAULT_ARTIFACT).current_version()
        assert wait_until(lambda: version(s) == installed, 20)
        after, _ = shares()
        assert after == pytest.approx(stage, abs=0.05), after
    finally:
        log.close()
        s.stop()


def test_without_keep_text_the_quality_lines_quote_no_answer_text(
    stack: RunningStack, providers: dict[str, FakeProvider], tmp_path: Path
) -> None:
    """synqra.learning.keep_text: false (the default) keeps the prompt and the answer out of what is stored, but the
    quality gate's INFO line quoted the answer's own words as its reasons: "states '$10,598.62', a figure the
    conversation does not give", a name it "names", a tool name, an arithmetic expression. The line keeps each reason,
    with the text it quoted left out."""
    from tests.fakes.fake_providers import Scripted

    s = start_stack(tmp_path, providers, backends_of=stack, synqra_overrides={"routing": {"thresholds": [0.0, 0.999]}})
    deepseek = providers["deepseek"]
    deepseek.by_marker["invoice total"] = Scripted(text="Your invoice total is $10,598.62 for this month.")
    try:
        r = post(
            s,
            {"model": "auto", "max_tokens": 40, "messages": [{"role": "user", "content": "What is my invoice total?"}]},
        )
        assert r.status_code == 200, r.text
        log_text = (s.data_dir / "logs" / "proxy.log").read_text()
        assert "a figure the conversation does not give" in log_text, "the reason is still logged"
        assert "10,598" not in log_text
    finally:
        deepseek.by_marker.clear()
        s.stop()


def test_feedback_on_a_shadow_stream_its_client_left_labels_nothing(
    stack: RunningStack, providers: dict[str, FakeProvider], tmp_path: Path
) -> None:
    """Shadow mode: Claude answers, the router chose the local tier. A streamed answer its client stopped reading
    never had its outcome logged (the tier that served), and the feedback endpoint took the tier chosen for it: a
    "bad" became a label 1.0 for the local model, which never answered, and "served_by": "local-llama"."""
    from tests.fakes.fake_providers import Scripted

    s = start_stack(
        tmp_path,
        providers,
        backends_of=stack,
        synqra_overrides={"routing": {"mode": "shadow", "shadow_eval_share": 0.0}},
    )
    anthropic = providers["anthropic"]
    anthropic.by_marker["a long story please"] = Scripted(
        text=" ".join(f"word{i}" for i in range(60)), chunk_delay_s=0.1
    )
    log = InferenceLog(s.data_dir / "learning")
    try:
        body = {"model": "auto", "max_tokens": 200, "stream": True}
        body["messages"] = [{"role": "user", "content": "Tell me a long story please."}]
        with httpx.stream("POST", f"{s.base_url}/v1/chat/completions", json=body, headers=AUTH, timeout=60) as r:
            assert r.status_code == 200 and r.headers["x-synqra-route-shadow"] == "local-llama"
            rid = r.headers["x-synqra-request-id"]
            for i, _ in enumerate(r.iter_lines()):
                if i == 3:
                    break  # the client stops reading
        assert wait_until(lambda: log.exists(rid), 10)
        fb = httpx.post(
            f"{s.base_url}/api/feedback", json={"request_id": rid, "score": "bad"}, headers=AUTH, timeout=30
        )
        assert fb.status_code == 200, fb.text
        assert fb.json()["label"] is None and fb.json()["served_by"] != "local-llama", fb.json()
        assert wait_until(lambda: log.row(rid)["tier_served"] == "claude-sonnet", 10), log.row(rid)
        assert not log.row(rid)["labels"]
    finally:
        anthropic.by_marker.clear()
        log.close()
        s.stop()


def test_a_worker_whose_inference_log_cannot_open_still_follows_installs_and_rollbacks(
    stack: RunningStack, providers: dict[str, FakeProvider], tmp_path: Path
) -> None:
    """The inference log failing to open when a worker starts (a read-only learning volume, a file it cannot open)
    ended LearningLoop.start before it started the reload poll: the worker served, but never picked up a version
    installed or rolled back later (a rollback left it serving the version rolled back, beside workers serving the
    base). It serves on without the log, and follows CURRENT as the others do."""
    (tmp_path / "data" / "learning" / "inference_log.sqlite3").mkdir(parents=True)  # not a file sqlite can open
    s = start_stack(tmp_path, providers, backends_of=stack)
    try:
        base = version(s)
        registry = RouterRegistry(tmp_path / "data" / "learning" / "routers", DEFAULT_ARTIFACT)
        good = registry.add(load_artifact(), {"note": "the shipped weights under a version name"})
        registry.activate(good)
        assert wait_until(lambda: version(s) == good, 20), "the worker reloads the version installed"
        registry.rollback()
        assert wait_until(lambda: version(s) == base, 20), "and the rollback"
    finally:
        s.stop()


def test_a_damaged_inference_log_at_start_is_one_clear_error_and_a_gauge_and_serving_goes_on(
    stack: RunningStack, providers: dict[str, FakeProvider], tmp_path: Path
) -> None:
    """An inference log that is not a database when the proxy starts: learning went off after one "warm-up failed"
    traceback, and nothing said so afterwards (no gauge, no hot reload either). Now one ERROR line names the file and
    what to do, `synqra_learning_log_writable` is 0, requests are served and accounted, and the file is left alone."""
    damaged = tmp_path / "data" / "learning" / "inference_log.sqlite3"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"garbage, not a database\n" * 10)
    s = start_stack(tmp_path, providers, backends_of=stack)
    try:
        r = post(s, {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "Say hello."}]})
        assert r.status_code == 200, r.text
        rid = r.headers["x-synqra-request-id"]
        ledger = lambda: httpx.get(f"{s.base_url}/api/budget/ledger", headers=AUTH, timeout=30).json()["records"]  # noqa: E731
        assert wait_until(lambda: any(x["request_id"] == rid for x in ledger()), 10), "the money path is unaffected"
        metrics = httpx.get(f"{s.base_url}/metrics", headers=AUTH, timeout=30).text
        assert "synqra_learning_log_writable 0.0" in metrics, [m for m in metrics.splitlines() if "learning" in m]
        text = (s.data_dir / "logs" / "proxy.log").read_text()  # the proxy workers' log
        errors = [line for line in text.splitlines() if " ERROR " in line and str(damaged) in line]
        assert len(errors) == 1 and "not being written" in errors[0] and "move it aside" in errors[0].lower(), errors
        assert "Traceback" not in text and "warm-up failed" not in text
        assert damaged.read_bytes() == b"garbage, not a database\n" * 10
    finally:
        s.stop()


def test_feedback_keeps_its_comment_only_with_keep_text(stack: RunningStack) -> None:
    """synqra.learning.keep_text: false (the default) keeps no text of the application's in the inference log: the
    feedback's comment was stored with its label all the same. The score is kept, the comment is not (and the answer
    says so)."""
    body = {"model": "auto", "max_tokens": 24, "temperature": 0}
    body["messages"] = [{"role": "user", "content": "What is the capital of France?"}]
    r = post(stack, body)
    assert r.status_code == 200 and r.headers["x-synqra-route"] == "local-llama", r.headers
    rid = r.headers["x-synqra-request-id"]
    comment = "wrong city, my customer Jane Doe at 12 Rue X complained"
    fb = httpx.post(
        f"{stack.base_url}/api/feedback",
        json={"request_id": rid, "score": 0.2, "comment": comment},
        headers=AUTH,
        timeout=30,
    )
    assert fb.status_code == 200 and fb.json()["recorded"], fb.json()
    log = InferenceLog(stack.data_dir / "learning")
    try:
        assert wait_until(lambda: any(x["source"] == "feedback" for x in log.row(rid)["labels"]), 10)
        (label,) = [x for x in log.row(rid)["labels"] if x["source"] == "feedback"]
        assert label["value"] == pytest.approx(0.8) and label["note"] is None, label
    finally:
        log.close()
    assert fb.json()["comment_kept"] is False, fb.json()


def test_feedback_409_says_why_the_inference_log_is_not_written(
    stack: RunningStack, providers: dict[str, FakeProvider], tmp_path: Path
) -> None:
    """Learning enabled, but the inference log could not be opened (a damaged file): the 409 said
    "synqra.learning.enabled: false", sending the operator to a setting that was already on."""
    damaged = tmp_path / "data" / "learning" / "inference_log.sqlite3"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"garbage, not a database\n" * 10)
    s = start_stack(tmp_path, providers, backends_of=stack)
    try:
        fb = httpx.post(f"{s.base_url}/api/feedback", json={"request_id": "x", "score": 1}, headers=AUTH, timeout=30)
        assert fb.status_code == 409, fb.text
        message = fb.json()["detail"]["error"]["message"]
        assert "enabled: false" not in message and "could not be opened" in message, message
        assert "DatabaseError" in message, message
    finally:
        s.stop()
