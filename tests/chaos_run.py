"""A chaos run: three proxies on one Redis budget, faulty fake providers, mixed SDK traffic, and kills.

Shared by `bench/chaos.py` (300 requests) and `tests/integration/test_chaos.py` (fewer). What happens:

- stack A (llama.cpp, embeddings, proxy) and proxies B and C on A's backends, all three on one Redis budget
  (appendonly) with a limit that runs out midway, a short reservation TTL, short cloud timeouts and a local
  alert webhook;
- fake providers (tests/fakes/fake_providers.py `Faults`) answering with 429s, 5xx, timeouts, slow and cut-off
  streams at fixed rates;
- N requests from the official SDKs (OpenAI chat and embeddings, Anthropic Messages; streamed or not; `auto`,
  explicit and aliased models; tools), arriving over `ramp_s` seconds round-robin over the proxies, each with
  a nonce in its prompt and its own tag (`x-synqra-tag: c<i>`), so every ledger row and every provider call
  is traced to its request;
- during the run: kill -9 of B's proxy process while it relays two slow paid streams (its supervisor restarts it), a Redis stop / start on the same
  port, kill -9 of A's llama.cpp server while a local stream is being read (its supervisor restarts it).

A client whose proxy refuses the connection (B while it restarts) retries on the next proxy, as a load
balancer would: nothing was sent. A connection lost with a request on it is an outcome of its own.

Afterwards `ChaosReport` holds the figures for the invariants: ledger vs the providers' own bill (per request
and model, at litellm_config.yaml's prices), committed spend against the limit (sampled from Redis during
the run), reservations after their TTL, client outcomes by kind, alerts, and processes left after stopping.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis
import yaml
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.fakes.alert_receiver import AlertReceiver
from tests.fakes.fake_providers import FakeProvider, Faults, Scripted
from tests.redis_server import RedisServer
from tests.stack import MASTER_KEY, REPO, RunningStack, start_stack, wait_until

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
MODEL_OF_PROVIDER = {"anthropic": "claude-sonnet", "openai": "gpt-4o", "deepseek": "deepseek-chat"}
SLOW_MARKER = "[slow-stream]"  # the fakes stream a prompt carrying this slowly: the killed proxy's paid calls in flight
LOST_IN_KILL = "connection lost: its proxy was killed under it"
NONCE = re.compile(r"\[c(-?\d+)\]")
ANSWER = "The answer is short and plain so that every provider bills the same handful of words here."

PROMPTS = [  # a spread the router sends to different tiers
    "What is the capital of France?",
    "Say hello to the team.",
    "Write a Python function that merges two sorted lists and explain its complexity.",
    "Prove that the square root of two is irrational, step by step.",
    "Summarise the plot of Hamlet in two sentences.",
    "What is 17 times 23?",
    "Draft a short brand tagline for an eco-friendly coffee shop.",
    "Explain how a hash map handles collisions.",
]
OAI_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
ANT_TOOLS = [
    {
        "name": "get_weather",
        "description": "Current weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]


@dataclass
class ChaosConfig:
    n_requests: int = 300
    ramp_s: float = 40.0  # arrivals spread over this long; every request runs in its own thread
    seed: int = 19
    limit_usd: float | None = None  # None: sized from n_requests so the money runs out about midway
    reservation_ttl_s: float = 60.0  # the killed proxy's reservations are still held when the traffic ends
    cloud_timeout_s: float = 3.0
    max_tokens: int = 24
    faults: dict[str, float] = field(
        default_factory=lambda: {
            "rate_429": 0.05,
            "rate_5xx": 0.05,
            "rate_timeout": 0.03,
            "rate_slow": 0.08,
            "rate_cut": 0.05,
        }
    )
    kill_proxy_at: float = 0.25  # share of arrivals at which each fault happens
    redis_restart_at: float = 0.5
    redis_down_s: float = 2.0
    kill_llama_at: float = 0.65

    def limit(self) -> float:
        return self.limit_usd if self.limit_usd is not None else round(0.00004 * self.n_requests, 6)


@dataclass
class Spec:
    i: int
    api: str  # chat | messages | embeddings | victim
    model: str
    stream: bool
    tools: bool
    prompt: str
    proxy: int

    @property
    def tag(self) -> str:
        return f"c{self.i}"


@dataclass
class Outcome:
    spec: Spec
    kind: str  # "2xx" or an error's "status type" (e.g. "429 rate_limit_error", "stream 500 None")
    well_formed: bool
    proxy: int  # the proxy that answered (after reroutes)
    t0: float
    t1: float
    rerouted: int = 0
    detail: str = ""


def plan(n: int, seed: int) -> list[Spec]:
    rng = random.Random(seed)
    specs = []
    for i in range(n):
        api = rng.choices(["chat", "messages", "embeddings"], [0.45, 0.40, 0.15])[0]
        prompt = f"[c{i}] " + rng.choice(PROMPTS)
        if api == "chat":
            model = rng.choices(
                ["auto", "claude-sonnet", "deepseek-chat", "gpt-4o", "local-llama"], [0.3, 0.2, 0.2, 0.15, 0.15]
            )[0]
        elif api == "messages":
            model = rng.choices(
                ["auto", "claude-sonnet", "deepseek-chat", "claude-3-5-sonnet-20241022"], [0.3, 0.3, 0.2, 0.2]
            )[0]
        else:
            model = rng.choice(["local-embed", "auto"])
        tools = api != "embeddings" and model != "local-llama" and rng.random() < 0.2
        stream = api != "embeddings" and rng.random() < 0.5
        specs.append(Spec(i, api, model, stream, tools, prompt, i % 3))
    return specs


# --- the clients ------------------------------------------------------------------------------------


def _sdk_clients(base_urls: list[str]) -> list[tuple[Any, Any]]:
    import anthropic
    import openai

    return [
        (
            openai.OpenAI(base_url=u + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=120),
            anthropic.Anthropic(base_url=u, api_key=MASTER_KEY, max_retries=0, timeout=120),
        )
        for u in base_urls
    ]


def _call(spec: Spec, oai: Any, ant: Any, max_tokens: int) -> str:
    """One request through the SDK; "" when it succeeded as its API says, else why not (a broken answer)."""
    headers = {"x-synqra-tag": spec.tag}
    if spec.api == "embeddings":
        texts = [spec.prompt, spec.prompt + " (again)"]
        r = oai.embeddings.create(model=spec.model, input=texts, extra_headers=headers)
        return "" if len(r.data) == 2 and len(r.data[0].embedding) > 0 else "embeddings: wrong shape"
    if spec.api == "chat":
        kw: dict[str, Any] = {
            "model": spec.model,
            "max_tokens": max_tokens,
            "extra_headers": headers,
            "messages": [{"role": "user", "content": spec.prompt}],
        }
        if spec.tools:
            kw.update(tools=OAI_TOOLS, tool_choice="required")
        if not spec.stream:
            r = oai.chat.completions.create(**kw)
            msg = r.choices[0].message
            return (
                ""
                if (msg.content is not None or msg.tool_calls) and r.choices[0].finish_reason
                else "chat: empty answer"
            )
        finish = None
        for chunk in oai.chat.completions.create(stream=True, **kw):
            for c in chunk.choices:
                finish = c.finish_reason or finish
        return "" if finish else "chat stream ended without a finish_reason"
    kw = {
        "model": spec.model,
        "max_tokens": max_tokens,
        "extra_headers": headers,
        "messages": [{"role": "user", "content": spec.prompt}],
    }
    if spec.tools:
        kw.update(tools=ANT_TOOLS, tool_choice={"type": "any"})
    if not spec.stream:
        r = ant.messages.create(**kw)
        return "" if r.stop_reason and r.content is not None else "messages: no stop_reason"
    with ant.messages.stream(**kw) as s:
        m = s.get_final_message()
    return "" if m.stop_reason else "messages stream ended without a stop_reason"


def _connect_refused(e: BaseException) -> bool:
    seen: BaseException | None = e
    while seen is not None:  # the SDKs wrap their own copy of httpx: look for the OS's refusal
        if isinstance(seen, ConnectionRefusedError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def classify(e: BaseException) -> tuple[str, bool]:
    """(kind, well formed in its API's error format) for an exception the SDKs raised."""
    import anthropic
    import openai

    if isinstance(e, (openai.APIConnectionError, anthropic.APIConnectionError)):
        return (
            "timeout" if isinstance(e, (openai.APITimeoutError, anthropic.APITimeoutError)) else "connection lost"
        ), False
    if isinstance(e, openai.APIError):
        body = _json_of(e)
        err = (
            body.get("error") if isinstance(body.get("error"), dict) else body
        )  # the SDK hands a stream error's object
        ok = isinstance(err, dict) and isinstance(err.get("message"), str) and "type" in err
        where = (
            str(e.status_code)
            if isinstance(e, openai.APIStatusError)
            else f"stream {err.get('code') if isinstance(err, dict) else '?'}"
        )
        return f"{where} {err.get('type') if isinstance(err, dict) else '?'}", ok
    if isinstance(e, anthropic.APIError):
        body = _json_of(e)
        err = body.get("error")
        ok = (
            body.get("type") == "error"
            and isinstance(err, dict)
            and isinstance(err.get("message"), str)
            and isinstance(err.get("type"), str)
        )
        status = getattr(e, "status_code", None)
        where = "stream" if status in (None, 200) else str(status)
        return f"{where} {err.get('type') if isinstance(err, dict) else '?'}", ok
    return f"unexpected {type(e).__name__}", False


def _json_of(e: Any) -> dict[str, Any]:
    """The error body: the HTTP response's JSON when it has one, else what the SDK parsed (stream errors)."""
    resp = getattr(e, "response", None)
    if resp is not None and getattr(resp, "status_code", 200) >= 400:
        try:
            body = resp.json()
            return body if isinstance(body, dict) else {}
        except (ValueError, httpx.ResponseNotRead):
            pass
    body = getattr(e, "body", None)
    return body if isinstance(body, dict) else {}


def run_one(spec: Spec, clients: list[tuple[Any, Any]], max_tokens: int) -> Outcome:
    t0, proxy, rerouted = time.time(), spec.proxy, 0
    while True:
        oai, ant = clients[proxy]
        try:
            problem = _call(spec, oai, ant, max_tokens)
            return Outcome(
                spec, "2xx" if not problem else "broken answer", not problem, proxy, t0, time.time(), rerouted, problem
            )
        except Exception as e:  # noqa: BLE001  # every way a client can fail is an outcome to count
            if _connect_refused(e) and rerouted < 2 * len(clients):
                rerouted += 1  # nothing reached that proxy: a load balancer sends it to the next one
                proxy = (proxy + 1) % len(clients)
                time.sleep(0.2)
                continue
            kind, ok = classify(e)
            return Outcome(spec, kind, ok, proxy, t0, time.time(), rerouted, str(e)[:300])


# --- the receiver, the sampler ----------------------------------------------------------------------


class SpendSampler:
    """Reads the month's committed and reserved nano-dollars straight from Redis every `every_s` seconds."""

    def __init__(self, port: int, prefix: str = "synqra:budget", every_s: float = 0.1) -> None:
        month = datetime.now(UTC).strftime("%Y-%m")
        self.key = f"{prefix}:{month}:totals"
        self.client = redis.Redis(
            port=port, socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
        )
        self.every_s = every_s
        self.samples: list[tuple[float, int, int]] = []
        self.failed = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop_event.wait(self.every_s):
            try:
                c, r = self.client.hmget(self.key, "committed", "reserved")
                self.samples.append((time.time(), int(c or 0), int(r or 0)))
            except redis.RedisError:
                self.failed += 1  # Redis is restarting

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(5)
        self.client.close()


# --- the run ----------------------------------------------------------------------------------------


@dataclass
class ChaosReport:
    config: ChaosConfig
    figures: dict[str, Any]
    outcomes: list[Outcome]
    events: list[tuple[float, str]]
    mismatches: list[dict[str, Any]]
    t_start: float

    def outcome_kinds(self) -> Counter[str]:
        return Counter(
            f"{o.spec.api}: {o.kind}" + ("" if o.well_formed or o.kind == LOST_IN_KILL else " [MALFORMED]")
            for o in self.outcomes
        )


def _prices() -> dict[str, tuple[Decimal, Decimal]]:
    cfg = yaml.safe_load((REPO / "litellm_config.yaml").read_text())
    return {
        m["model_name"]: (
            Decimal(str(m["model_info"]["input_cost_per_token"])),
            Decimal(str(m["model_info"]["output_cost_per_token"])),
        )
        for m in cfg["model_list"]
        if "input_cost_per_token" in m.get("model_info", {})
    }


def _short_cloud_timeouts(seconds: float) -> Any:
    def edit(cfg: dict[str, Any]) -> None:
        for m in cfg["model_list"]:
            if m["model_name"] in MODEL_OF_PROVIDER.values():
                m["litellm_params"]["timeout"] = seconds
                m["litellm_params"]["stream_timeout"] = seconds

    return edit


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _port_open(port: int) -> bool:
    try:
        with httpx.Client(timeout=0.5) as c:
            c.get(f"http://127.0.0.1:{port}/")
        return True
    except httpx.ConnectError:
        return False
    except httpx.HTTPError:
        return True


class ChaosRun:
    def __init__(self, workdir: Path, cfg: ChaosConfig, log: Any = print) -> None:
        self.dir = Path(workdir)
        self.cfg = cfg
        self.log = log
        self.events: list[tuple[float, str]] = []
        self.pids_seen: set[int] = set()
        self.stacks: list[RunningStack] = []
        self.providers: dict[str, FakeProvider] = {}
        self.redis: RedisServer | None = None
        self.receiver: AlertReceiver | None = None
        self.kill_at: float | None = None  # when B's proxy was killed
        self.back_at: float | None = None  # when it served again
        self.killed_proxy = 1

    def event(self, what: str) -> None:
        self.events.append((time.time(), what))
        self.log(f"[chaos] {what}")

    # -- set up / tear down -----------------------------------------------------------------------------

    def start(self) -> None:
        c = self.cfg
        for kind, seed in (("openai", 1), ("deepseek", 2), ("anthropic", 3)):
            faults = Faults(**c.faults, hang_s=60.0, seed=c.seed * 10 + seed)
            self.providers[kind] = FakeProvider(
                kind, default_text=ANSWER, faults=faults, by_marker={SLOW_MARKER: Scripted(chunk_delay_s=1.5)}
            ).start()
        self.redis = RedisServer(self.dir / "redis").start()
        self.receiver = AlertReceiver()
        overrides = {
            "budget": {
                "monthly_limit_usd": c.limit(),
                "store": self.redis.url,
                "reservation_ttl_s": c.reservation_ttl_s,
                "alert_webhook": self.receiver.url,
                "store_timeout_s": 0.5,
                "store_retry_after_s": 0.5,
            }
        }
        edit = _short_cloud_timeouts(c.cloud_timeout_s)
        t0 = time.monotonic()
        a = start_stack(self.dir / "a", self.providers, overrides, edit=edit)
        self.stacks.append(a)
        for name in "bc":  # in this thread: a child started from a thread gets its death signal when the thread ends
            self.stacks.append(start_stack(self.dir / name, self.providers, overrides, backends_of=a, edit=edit))
        self.event(
            f"3 proxies up in {time.monotonic() - t0:.0f}s on ports {[s.port for s in self.stacks]}, Redis on {self.redis.port}"
        )
        self._note_pids()

    def _note_pids(self) -> None:
        for s in self.stacks:
            try:
                self.pids_seen.update(s.pids().values())
            except (OSError, ValueError):
                pass
            self.pids_seen.add(s.proc.pid)

    def stop(self) -> dict[str, Any]:
        """Stop everything started; then what is still alive (the orphan check)."""
        self._note_pids()
        for s in self.stacks:
            s.stop()
        if self.redis is not None:
            redis_pid = self.redis.proc.pid if self.redis.proc else None
            self.redis.stop()
            if redis_pid:
                self.pids_seen.add(redis_pid)
        for fp in self.providers.values():
            fp.stop()
        if self.receiver is not None:
            self.receiver.stop()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (any(_alive(p) for p in self.pids_seen) or self._stray()):
            time.sleep(0.25)
        stray = self._stray()
        fakes_open = [k for k, fp in self.providers.items() if _port_open(fp.port)]
        return {
            "pids_tracked": len(self.pids_seen),
            "alive_after_stop": sorted(p for p in self.pids_seen if _alive(p)),
            "stray_processes": stray,
            "fake_ports_open": fakes_open,
        }

    def _stray(self) -> list[str]:
        """Processes whose command line names this run's folder (stacks, backends, Redis), this one aside."""
        marker, out = str(self.dir), []
        me = psutil.Process()
        mine = {me.pid, *(p.pid for p in me.parents())}  # this run and whatever launched it with the folder in argv
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                if (
                    p.pid not in mine
                    and marker in " ".join(p.info["cmdline"] or [])
                    and p.status() != psutil.STATUS_ZOMBIE
                ):
                    out.append(f"{p.pid} {' '.join(p.info['cmdline'] or [])[:160]}")
            except psutil.Error:
                pass
        return out

    # -- the faults -------------------------------------------------------------------------------------

    def start_kill_victims(self, clients: list[tuple[Any, Any]], out: list[Outcome]) -> list[threading.Thread]:
        """Two slow paid streams on B (DeepSeek: cheap, so what they hold does not starve the run), opened
        first: B is killed while it relays them, so their reservations are left behind and must lapse."""
        victims = [
            Spec(
                -2 - k,
                "chat",
                "deepseek-chat",
                True,
                False,
                f"[c{-2 - k}] {SLOW_MARKER} Tell me about tides.",
                self.killed_proxy,
            )
            for k in range(2)
        ]

        def victim(spec: Spec) -> None:
            out.append(run_one(spec, clients, 8))  # a small reservation each: the rest of the traffic spends the money

        threads = [threading.Thread(target=victim, args=(v,)) for v in victims]
        for t in threads:
            t.start()
        deepseek = self.providers["deepseek"]
        wait_until(
            lambda: sum(SLOW_MARKER in json.dumps(r.body) for r in list(deepseek.requests)) >= len(victims),
            timeout_s=60,
        )
        return threads

    def kill_proxy(self) -> None:
        """kill -9 B's proxy process (its supervisor restarts it)."""
        b = self.stacks[self.killed_proxy]
        old = b.pids()["proxy"]
        self.pids_seen.add(old)
        self.kill_at = time.time()
        os.kill(old, signal.SIGKILL)
        self.event(f"kill -9 proxy B (pid {old})")
        ok = wait_until(lambda: b.pids()["proxy"] != old, timeout_s=60) and wait_until(
            lambda: httpx.get(f"{b.base_url}/health/readiness", timeout=2).status_code == 200, timeout_s=180
        )
        self._note_pids()
        self.back_at = time.time()
        self.event(f"proxy B {'back' if ok else 'NOT back'} ({time.time() - self.kill_at:.1f}s after the kill)")

    def restart_redis(self) -> None:
        assert self.redis is not None
        self.redis.stop()
        self.event("Redis stopped")
        time.sleep(self.cfg.redis_down_s)
        self.redis.start()
        self.event("Redis started on the same port (appendonly data)")

    def kill_llama_mid_stream(self, clients: list[tuple[Any, Any]], out: list[Outcome]) -> None:
        """Read a long local stream from proxy A; after its first words, kill -9 A's llama.cpp server."""
        a = self.stacks[0]
        spec = Spec(-1, "victim", "local-llama", True, False, "[c-1] Write a long story about a lighthouse keeper.", 0)
        oai, _ = clients[0]
        t0, words, kind, ok, detail = time.time(), 0, "2xx", True, ""
        try:
            stream = oai.chat.completions.create(
                model="local-llama",
                stream=True,
                max_tokens=400,
                messages=[{"role": "user", "content": spec.prompt}],
                extra_headers={"x-synqra-tag": "c-1"},
            )
            finish = None
            for chunk in stream:
                for c in chunk.choices:
                    finish = c.finish_reason or finish
                    if c.delta and c.delta.content:
                        words += 1
                        if words == 3:
                            pid = a.pids()["local-llama"]
                            self.pids_seen.add(pid)
                            os.kill(pid, signal.SIGKILL)
                            self.event(f"kill -9 llama.cpp (pid {pid}) after 3 streamed chunks")
            if not finish:
                kind, ok, detail = "broken answer", False, "local stream ended without a finish_reason"
        except Exception as e:  # noqa: BLE001
            kind, ok = classify(e)
            detail = str(e)[:300]
        out.append(Outcome(spec, kind, ok, 0, t0, time.time(), 0, f"{words} chunks read; {detail}"))
        self.event(f"the local stream ended: {kind} after {words} chunks ({detail[:120]})")
        back = wait_until(
            lambda: httpx.get(f"{a.base_url}/api/models/status", headers=AUTH, timeout=5).json()["local"][
                "local-llama"
            ]["healthy"],
            timeout_s=180,
        )
        self._note_pids()
        self.event(f"llama.cpp {'back' if back else 'NOT back'} ({time.time() - t0:.1f}s after the stream began)")

    # -- the traffic -------------------------------------------------------------------------------------

    def traffic(self) -> list[Outcome]:
        c = self.cfg
        specs = plan(c.n_requests, c.seed)
        clients = _sdk_clients([s.base_url for s in self.stacks])
        outcomes: list[Outcome] = []
        lock = threading.Lock()

        def worker(spec: Spec) -> None:
            o = run_one(spec, clients, c.max_tokens)
            with lock:
                outcomes.append(o)

        victims = self.start_kill_victims(clients, outcomes)
        faults = sorted(
            [
                (c.kill_proxy_at, self.kill_proxy),
                (c.redis_restart_at, self.restart_redis),
                (c.kill_llama_at, lambda: self.kill_llama_mid_stream(clients, outcomes)),
            ],
            key=lambda f: f[0],
        )
        fault_threads: list[threading.Thread] = []
        threads = []
        t0 = time.monotonic()
        self.event(f"traffic: {len(specs)} requests over {c.ramp_s:.0f}s")
        for k, spec in enumerate(specs):
            while faults and k >= faults[0][0] * len(specs):
                ft = threading.Thread(target=faults.pop(0)[1])
                ft.start()
                fault_threads.append(ft)
            delay = t0 + k * c.ramp_s / len(specs) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            t = threading.Thread(target=worker, args=(spec,))
            t.start()
            threads.append(t)
        for t in threads + fault_threads + victims:
            t.join()
        self.event(f"traffic done: {len(outcomes)} outcomes in {time.monotonic() - t0:.0f}s")
        return outcomes

    # -- the whole run -----------------------------------------------------------------------------------

    def run(self) -> ChaosReport:
        t_start = time.time()
        try:
            self.start()
            assert self.redis is not None
            sampler = SpendSampler(self.redis.port)
            outcomes = self.traffic()
            a = self.stacks[0]
            held = httpx.get(f"{a.base_url}/api/budget/status", headers=AUTH, timeout=30).json()["reserved"]
            t_done = time.time()
            zero = wait_until(
                lambda: httpx.get(f"{a.base_url}/api/budget/status", headers=AUTH, timeout=30).json()["reserved"] == 0,
                timeout_s=self.cfg.reservation_ttl_s + 60,
                interval_s=0.5,
            )
            t_zero = time.time() - t_done
            time.sleep(2)  # stragglers: alerts' webhook, background settles
            sampler.stop()
            status = httpx.get(f"{a.base_url}/api/budget/status", headers=AUTH, timeout=30).json()
            rows = httpx.get(f"{a.base_url}/api/budget/ledger", headers=AUTH, timeout=60).json()["records"]
            figures, mismatches = self._figures(outcomes, rows, status, sampler, held, zero, t_zero)
        finally:
            orphans = self.stop()
        figures["orphans"] = orphans
        return ChaosReport(self.cfg, figures, outcomes, self.events, mismatches, t_start)

    def _lost_in_kill(self, o: Outcome) -> bool:
        """A connection that broke because its proxy was killed under it (no proxy can answer that)."""
        # In flight at the kill, or sent before B was back on a pooled keep-alive connection to the dead process.
        back = self.back_at or float("inf")
        return (
            o.kind in ("connection lost", LOST_IN_KILL)
            and self.kill_at is not None
            and o.proxy == self.killed_proxy
            and o.t1 + 1.0 >= self.kill_at
            and o.t0 <= back
        )

    # -- the invariants ----------------------------------------------------------------------------------

    def _figures(
        self,
        outcomes: list[Outcome],
        rows: list[dict[str, Any]],
        status: dict[str, Any],
        sampler: SpendSampler,
        held: float,
        zero: bool,
        t_zero: float,
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        for o in outcomes:
            if self._lost_in_kill(o):
                o.kind = LOST_IN_KILL
        prices = _prices()
        ledger: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        ledger_usd = Decimal(0)
        for r in rows:
            ledger_usd += Decimal(str(r["cost_usd"]))
            if r["served_model"] in MODEL_OF_PROVIDER.values():
                t = ledger[(str(r.get("tag")), r["served_model"])]
                t[0] += r["prompt_tokens"]
                t[1] += r["completion_tokens"]
        bill: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        faults_of: dict[tuple[str, str], list[str]] = defaultdict(list)
        calls = Counter()
        for kind, fp in self.providers.items():
            model = MODEL_OF_PROVIDER[kind]
            for rec in list(fp.requests):
                m = NONCE.search(json.dumps(rec.body))
                key = (f"c{m.group(1)}" if m else "?", model)
                calls[f"{kind} {rec.body.get('_fault') or 'ok'}"] += 1
                faults_of[key].append(str(rec.body.get("_fault") or "ok"))
                b = bill[key]
                b[0] += int(rec.body.get("_prompt_tokens", 0))
                b[1] += int(rec.body.get("_completion_tokens", 0))

        def usd(model: str, tokens: list[int]) -> Decimal:
            pin, pout = prices[model]
            return tokens[0] * pin + tokens[1] * pout

        bill_usd = sum((usd(m, t) for (_, m), t in bill.items()), Decimal(0))
        paid_ledger_usd = sum((usd(m, t) for (_, m), t in ledger.items()), Decimal(0))
        by_request = {o.spec.tag: o for o in outcomes}
        mismatches = []
        for key in sorted(set(bill) | set(ledger)):
            lt, bt = ledger.get(key, [0, 0]), bill.get(key, [0, 0])
            if lt != bt:
                o = by_request.get(key[0])
                in_kill = (
                    o is not None
                    and self.kill_at is not None
                    and o.proxy == self.killed_proxy
                    and o.t0 <= self.kill_at <= o.t1
                )
                mismatches.append(
                    {
                        "request": key[0],
                        "model": key[1],
                        "ledger_tokens": lt,
                        "bill_tokens": bt,
                        "diff_usd": float(usd(key[1], lt) - usd(key[1], bt)),
                        "provider_faults": faults_of.get(key, []),
                        "client_outcome": o.kind if o else None,
                        "on_killed_proxy_at_kill": in_kill,
                        "api": o.spec.api if o else None,
                        "stream": o.spec.stream if o else None,
                    }
                )
        limit_nano = int(round(self.cfg.limit() * 1e9))
        max_committed = max((s[1] for s in sampler.samples), default=0)
        max_used = max((s[1] + s[2] for s in sampler.samples), default=0)
        alerts = Counter(str(p.get("level")) for p in (self.receiver.posts if self.receiver else []))
        figures = {
            "requests": len(outcomes),
            "limit_usd": self.cfg.limit(),
            "ledger_rows": len(rows),
            "ledger_usd": float(ledger_usd),
            "ledger_paid_usd_recomputed": float(paid_ledger_usd),
            "provider_bill_usd": float(bill_usd),
            "ledger_minus_bill_usd": float(ledger_usd - bill_usd),
            "requests_billed_differently": len(mismatches),
            "provider_calls": dict(sorted(calls.items())),
            "committed_final_usd": status["monthly_used"],
            "committed_max_sampled_usd": max_committed / 1e9,
            "committed_plus_reserved_max_sampled_usd": max_used / 1e9,
            "committed_over_limit": max(max_committed, int(round(status["monthly_used"] * 1e9))) > limit_nano,
            "spend_samples": len(sampler.samples),
            "spend_samples_failed_redis_down": sampler.failed,
            "reserved_at_traffic_end_usd": held,
            "reserved_zero_after_ttl": zero,
            "seconds_to_zero_reserved": round(t_zero, 1),
            "reservation_ttl_s": self.cfg.reservation_ttl_s,
            "budget_state": status["state"],
            "alerts": dict(alerts),
            "alert_70_fired": alerts.get("0.7", 0),
            "lost_with_the_killed_proxy": sum(1 for o in outcomes if self._lost_in_kill(o)),
            "malformed_outcomes": sum(1 for o in outcomes if not o.well_formed and not self._lost_in_kill(o)),
            "rerouted_connects": sum(o.rerouted for o in outcomes),
        }
        return figures, mismatches


def format_report(rep: ChaosReport) -> str:
    f = rep.figures
    lines = [f"chaos run: {f['requests']} client requests over 3 proxies on one Redis; limit ${f['limit_usd']}", ""]
    lines.append("events:")
    lines += [f"  +{t - rep.t_start:6.1f}s  {what}" for t, what in rep.events]
    lines += ["", "client outcomes (API: status type; [MALFORMED] = not its API's error format):"]
    lines += [f"  {n:4d}  {k}" for k, n in sorted(rep.outcome_kinds().items(), key=lambda kv: -kv[1])]
    examples: dict[str, Outcome] = {}
    for o in rep.outcomes:
        examples.setdefault(o.kind, o)
    lines += ["", "an example of each error kind:"]
    lines += [
        f"  {k}: {o.spec.api} {o.spec.model} stream={o.spec.stream} via proxy {'ABC'[o.proxy]}: {o.detail[:200]!r}"
        for k, o in examples.items()
        if k != "2xx"
    ]
    lines += ["", "provider calls by fault:"] + [f"  {n:4d}  {k}" for k, n in f["provider_calls"].items()]
    lines += [
        "",
        "invariants:",
        f"  ledger ${f['ledger_usd']:.6f} vs providers' bill ${f['provider_bill_usd']:.6f}: "
        f"difference ${f['ledger_minus_bill_usd']:+.6f} ({f['requests_billed_differently']} request/model pairs differ)",
        f"  committed: final ${f['committed_final_usd']:.6f}, max sampled ${f['committed_max_sampled_usd']:.6f} "
        f"({f['spend_samples']} samples, {f['spend_samples_failed_redis_down']} while Redis was down), "
        f"committed+reserved max ${f['committed_plus_reserved_max_sampled_usd']:.6f}; limit ${f['limit_usd']}: "
        f"{'OVER' if f['committed_over_limit'] else 'never above'}",
        f"  reservations: ${f['reserved_at_traffic_end_usd']:.6f} held when the traffic ended, "
        f"{'zero' if f['reserved_zero_after_ttl'] else 'NOT zero'} {f['seconds_to_zero_reserved']}s later (TTL {f['reservation_ttl_s']}s)",
        f"  client answers not well formed: {f['malformed_outcomes']}; connections lost with the killed proxy: "
        f"{f['lost_with_the_killed_proxy']}; connect refusals rerouted to the next proxy: {f['rerouted_connects']}",
        f"  alerts: {f['alerts']} (70% fired {f['alert_70_fired']}x); budget state at the end: {f['budget_state']}",
        f"  orphans after stop: {f['orphans']}",
    ]
    if rep.mismatches:
        lines += ["", "request/model pairs where the ledger and the bill differ:"]
        for m in rep.mismatches:
            lines.append(
                f"  {m['request']:>5} {m['model']:<14} ledger {m['ledger_tokens']} bill {m['bill_tokens']} "
                f"({m['diff_usd']:+.6f}) faults {m['provider_faults']} api {m['api']} stream {m['stream']} "
                f"client {m['client_outcome']!r} killed-proxy-in-flight {m['on_killed_proxy_at_kill']}"
            )
    return "\n".join(lines)
