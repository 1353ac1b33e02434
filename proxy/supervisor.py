"""`synqra serve`: start the local backends and the LiteLLM proxy, keep them up, stop them all.

Each service is a child process in its own session (so a terminal's Ctrl-C reaches
only the supervisor, which then stops children in order) that also dies with the
supervisor if that is killed outright (PR_SET_PDEATHSIG): no orphans either way.
A child that dies is restarted with exponential backoff; each restart is logged.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from policies.common.offline import apply_offline_env
from policies.common.settings import LOG_FORMAT, AppConfig, ConfigError, load_config
from proxy.master_key import resolve_master_key

log = logging.getLogger("synqra.supervisor")

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Runs in the child before exec: get SIGTERM when the supervisor dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def spawn_logged(argv: list[str], log_path: Path, env: dict[str, str], *, new_session: bool) -> subprocess.Popen[bytes]:
    """Start argv with stdout and stderr appended to log_path and no stdin; it dies with this process.
    new_session: out of the terminal's process group, so a Ctrl-C reaches only the supervisor, which stops the
    services in order."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=new_session,
            preexec_fn=die_with_parent,
        )


@dataclass
class Service:
    name: str
    argv: list[str]
    health_url: str
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    backoff_s: float = 0.0
    started_at: float = 0.0
    next_start_at: float = 0.0
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        self.proc = spawn_logged(self.argv, self.log_path, self.env, new_session=True)
        self.started_at = time.monotonic()
        log.info("started %s (pid %d), log: %s", self.name, self.proc.pid, self.log_path)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self) -> bool:
        try:
            return httpx.get(self.health_url, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, timeout_s: float = 10.0) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0fs; killing it", self.name, timeout_s)
            self.proc.kill()
            self.proc.wait()
        log.info("stopped %s", self.name)


class _StaticTableBuild:
    """Builds the static embedding table in the background (a no-op once it is cached)."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="static-table", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from policies.embedding.static import ensure_table

        try:
            t0 = time.monotonic()
            path = ensure_table()
            log.info("static embedding table ready: %s (%.1fs)", path, time.monotonic() - t0)
        except BaseException as e:  # reported by wait(); the proxy then routes by the fallback rule
            self.error = e

    def wait(self, timeout_s: float) -> None:
        self.thread.join(timeout_s)
        if self.thread.is_alive() or self.error is not None:
            log.error(
                "static embedding table not built (%s); routing uses its fallback rule", self.error or "timed out"
            )


class LearnSchedule:
    """`synqra.learning.schedule` (daily, weekly): the supervisor runs `synqra learn --if-due` unattended, at
    most one at a time, and checks every CHECK_EVERY_S whether a run is due (`--if-due` decides: the interval
    since the last run and `min_new_labels`). Each run's decision (installed / kept, and why) is in the run
    log (`synqra learn --list`) and in logs/learn.log; the proxy workers pick an installed version up."""

    CHECK_EVERY_S = 600.0
    MAX_BACKOFF_S = 86400.0  # runs failing in a row wait twice as long each time, up to a day

    def __init__(self, cfg: AppConfig, log_path: Path, env: dict[str, str]) -> None:
        self.enabled = cfg.synqra.learning.enabled and cfg.synqra.learning.schedule != "off"
        self.argv = [sys.executable, "-m", "proxy.cli", "learn", "--if-due", "--config", str(cfg.path)]
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.failures = 0  # runs in a row that exited non-zero
        self.next_at = time.monotonic() + 60.0  # not while the stack is warming up

    def tick(self) -> None:
        if not self.enabled:
            return
        if self.proc is not None:
            if self.proc.poll() is None:
                return  # the last run is still fitting
            self._finished(self.proc.returncode)
            self.proc = None
        if time.monotonic() < self.next_at:
            return
        self.next_at = time.monotonic() + self.CHECK_EVERY_S
        self.proc = spawn_logged(self.argv, self.log_path, self.env, new_session=False)

    def _finished(self, code: int) -> None:
        """A run that failed (e.g. a full disk: its record could not be written, so `--if-due` finds it due again)
        is retried after a backoff, not at every check: each retry refitted for minutes and wrote to that disk."""
        if code == 0:
            self.failures = 0
            log.info("scheduled synqra learn finished; see %s", self.log_path)
            return
        self.failures += 1
        wait = min(self.CHECK_EVERY_S * 2**self.failures, self.MAX_BACKOFF_S)
        self.next_at = max(self.next_at, time.monotonic() + wait)
        log.error(
            "scheduled synqra learn failed (exit %s, %d in a row); next try in %.0f min; see %s",
            code,
            self.failures,
            wait / 60,
            self.log_path,
        )


class Supervisor:
    def __init__(self, cfg: AppConfig, host: str, port: int, master_key: str) -> None:
        self.cfg = cfg
        s = cfg.synqra
        self.backoff_initial = s.backends.restart_backoff_initial_s
        self.backoff_max = s.backends.restart_backoff_max_s
        self.data_dir = s.server.data_path
        self.stopping = threading.Event()
        env = apply_offline_env(dict(os.environ))
        env["LITELLM_MASTER_KEY"] = master_key
        env["PYTHONUNBUFFERED"] = "1"
        self.env = env
        logs = self.data_dir / "logs"
        py, conf = sys.executable, str(cfg.path)
        self.backends: list[Service] = []
        for key, b in (("llama", s.backends.llama), ("embed", s.backends.embed)):
            if b.enabled and not b.external_url:
                module = "local_backends.llama_server" if key == "llama" else "local_backends.embedding_server"
                self.backends.append(
                    Service(
                        b.model_alias,
                        [py, "-m", module, "--config", conf],
                        f"{b.url}/health",
                        logs / f"{b.model_alias}.log",
                        env=env,
                    )
                )
        self.proxy = Service(
            "proxy",
            [py, "-m", "proxy.server", "--config", conf, "--host", host, "--port", str(port)],
            f"http://{host}:{port}/health/liveliness",
            logs / "proxy.log",
            env=env,
        )

    @property
    def services(self) -> list[Service]:
        return [*self.backends, self.proxy]

    def _write_pids(self) -> None:
        run = self.data_dir / "run"
        run.mkdir(parents=True, exist_ok=True)
        pids = {s.name: s.proc.pid for s in self.services if s.proc is not None}
        pids["supervisor"] = os.getpid()
        tmp = run / "pids.json.tmp"
        tmp.write_text(json.dumps(pids))
        tmp.replace(run / "pids.json")

    def _wait_healthy(self, services: list[Service], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        pending = list(services)
        while pending:
            if self.stopping.is_set():
                raise InterruptedError("stopped during start-up")
            for s in list(pending):
                if not s.alive():
                    raise RuntimeError(f"{s.name} exited during start-up; see {s.log_path}")
                if s.healthy():
                    log.info("%s is healthy (%.1fs)", s.name, time.monotonic() - s.started_at)
                    pending.remove(s)
            if time.monotonic() > deadline:
                raise TimeoutError(f"not healthy after {timeout_s:.0f}s: {[s.name for s in pending]}")
            time.sleep(0.25)

    def start(self) -> None:
        for s in self.backends:
            s.start()
        self._write_pids()
        table = _StaticTableBuild()  # first run only: distil the router's embedding while backends load
        self._wait_healthy(self.backends, self.cfg.synqra.backends.start_timeout_s)
        table.wait(self.cfg.synqra.backends.start_timeout_s)
        self.proxy.start()
        self._write_pids()
        self._wait_healthy([self.proxy], 120)

    def _check(self, s: Service) -> None:
        """Restart a dead service once its backoff has passed."""
        now = time.monotonic()
        if s.alive():
            if s.backoff_s and now - s.started_at > 60:
                s.backoff_s = 0.0  # stable for a minute: forget past failures
            return
        if s.next_start_at == 0.0:
            code = s.proc.returncode if s.proc else None
            s.backoff_s = min(self.backoff_max, s.backoff_s * 2 if s.backoff_s else self.backoff_initial)
            s.next_start_at = now + s.backoff_s
            log.warning("%s exited (code %s); restarting in %.1fs", s.name, code, s.backoff_s)
            return
        if now >= s.next_start_at:
            s.next_start_at = 0.0
            s.restarts += 1
            s.start()
            self._write_pids()
            log.info("%s restarted (restart #%d)", s.name, s.restarts)

    def run_forever(self) -> None:
        schedule = LearnSchedule(self.cfg, self.data_dir / "logs" / "learn.log", self.env)
        while not self.stopping.wait(0.25):
            for s in self.services:
                self._check(s)
            schedule.tick()

    def stop(self) -> None:
        self.stopping.set()
        for s in reversed(self.services):  # proxy first, so no request hits a stopped backend
            s.stop()


def tiers_line(cfg: AppConfig) -> str:
    """Which routing tiers can answer, as `synqra serve` prints it at start (a cloud tier needs its API key)."""
    from proxy.availability import Availability

    down = Availability(cfg).unavailable(cfg.synqra.routing.tiers)
    parts = [f"{t} unavailable ({down[t]})" if t in down else f"{t} ok" for t in cfg.synqra.routing.tiers]
    return "tiers: " + ", ".join(parts)


def apply_environment_variables(cfg: AppConfig) -> None:
    """Set the config's `environment_variables:` in this process, as LiteLLM sets them in the proxy's: what serve
    says about the tiers (a key given there) and the backends it starts see them too."""
    from policies.common.settings import read_config

    for name, value in (read_config(cfg.path).get("environment_variables") or {}).items():
        os.environ[str(name)] = str(value)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="synqra serve", description="Start the local backends and the LiteLLM proxy.")
    ap.add_argument("--config", default=os.environ.get("SYNQRA_CONFIG", "litellm_config.yaml"))
    ap.add_argument("--host")
    ap.add_argument("--port", type=int)
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"synqra: {e}", file=sys.stderr)
        return 2
    apply_environment_variables(cfg)
    s = cfg.synqra.server
    logging.basicConfig(level=s.log_level, format=LOG_FORMAT)
    key, origin = resolve_master_key(s.data_path)
    print(f"synqra: master key from {origin}", flush=True)
    print(f"synqra: {tiers_line(cfg)}", flush=True)
    sup = Supervisor(cfg, args.host or s.host, args.port or s.port, key)

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        sup.stopping.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        sup.start()
        print(
            f"synqra: ready on http://{args.host or s.host}:{args.port or s.port} (logs in {s.data_path / 'logs'})",
            flush=True,
        )
        sup.run_forever()
    except (RuntimeError, TimeoutError) as e:
        log.error("start-up failed: %s", e)
        return 1
    except InterruptedError:
        pass
    finally:
        sup.stop()
    return 0
