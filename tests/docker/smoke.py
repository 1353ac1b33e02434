"""Run docker/compose.yaml for real and check it end to end (scripts/docker-smoke.sh calls this).

The images must exist (scripts/docker-build.sh). docker-compose merges the shipped compose file with a
generated override that keeps every address on 127.0.0.1: host networking, the service names
(llama, embed, redis) mapped to 127.0.0.1, free ports, and a fake DeepSeek on 127.0.0.1 whose
API base reaches the proxy through compose's environment; the merged file runs without the
proxy's published port (meaningless under host networking, and refused by docker-compose 1.29). The container config is the shipped
docker/litellm_config.docker.yaml with only those ports and listen addresses changed.

Checks: the four services become healthy; the official openai SDK gets an answer from the local
model and an embedding from the embedding server through the proxy; a paid call reaches the fake
provider and lands in the Redis ledger at the fake's bill; `compose down` leaves no container,
process, volume or listening port behind. Prints the timings as one JSON line; exits non-zero
on any failure.

    python -m tests.docker.smoke [--project NAME] [--keep-on-failure]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.fakes.fake_providers import FakeProvider, free_port

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker" / "compose.yaml"
DOCKER_CONFIG = REPO / "docker" / "litellm_config.docker.yaml"
IN_IMAGE_CONFIG = "/app/docker/litellm_config.docker.yaml"
MASTER_KEY = "sk-synqra-docker-smoke-" + "d" * 20
FAKE_DEEPSEEK_KEY = "sk-fake-deepseek"
DEEPSEEK_PRICES = (0.28e-6, 0.42e-6)  # per input / output token, as in litellm_config.yaml
SERVICES = ("llama", "embed", "redis", "proxy")


class SmokeFailure(AssertionError):
    pass


def check(cond: bool, what: str) -> None:
    if not cond:
        raise SmokeFailure(what)
    print(f"ok: {what}", flush=True)


def wait_until(pred: Callable[[], bool], timeout_s: float, what: str, every_s: float = 1.0) -> float:
    """Seconds until pred() held; raises SmokeFailure after timeout_s."""
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout_s:
            raise SmokeFailure(f"timed out after {timeout_s:.0f}s: {what}")
        time.sleep(every_s)
    return time.monotonic() - t0


def run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 600, check_rc: bool = True) -> str:
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if check_rc and p.returncode != 0:
        raise SmokeFailure(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p.stdout


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def smoke_config(ports: dict[str, int]) -> dict[str, Any]:
    """The shipped container config with test ports and 127.0.0.1 listen addresses (hostnames kept)."""
    cfg = yaml.safe_load(DOCKER_CONFIG.read_text())
    s = cfg["synqra"]
    s["server"].update(host="127.0.0.1", port=ports["proxy"])
    for key in ("llama", "embed"):
        b = s["backends"][key]
        b.update(host="127.0.0.1", port=ports[key], external_url=f"http://{key}:{ports[key]}")
    for m in cfg["model_list"]:
        served_by = {"local-llama": "llama", "auto": "llama", "local-embed": "embed"}.get(m["model_name"])
        if served_by:
            m["litellm_params"]["api_base"] = f"http://{served_by}:{ports[served_by]}/v1"
    s["budget"]["store"] = f"redis://redis:{ports['redis']}/0"
    return cfg


def override(ports: dict[str, int], config_path: Path) -> dict[str, Any]:
    """Compose override: host networking, service names -> 127.0.0.1, test ports and health checks."""
    hosts = [f"{name}:127.0.0.1" for name in ("llama", "embed", "redis")]
    health = {
        name: [
            "CMD",
            "python",
            "-c",
            f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{ports[name]}{path}')",
        ]
        for name, path in (("llama", "/health"), ("embed", "/health"), ("proxy", "/health/liveliness"))
    }
    services: dict[str, Any] = {}
    for name in SERVICES:
        svc: dict[str, Any] = {"network_mode": "host", "extra_hosts": hosts}
        if name == "redis":
            base_cmd = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["redis"]["command"]
            svc["command"] = [*base_cmd, "--bind", "127.0.0.1", "--port", str(ports["redis"])]
            svc["healthcheck"] = {"test": ["CMD", "redis-cli", "-h", "127.0.0.1", "-p", str(ports["redis"]), "ping"]}
        else:
            svc["volumes"] = [f"{config_path}:{IN_IMAGE_CONFIG}:ro"]
            svc["healthcheck"] = {"test": health[name]}  # intervals as shipped: time to healthy is real
        services[name] = svc
    services["proxy"]["environment"] = {"REDIS_URL": f"redis://redis:{ports['redis']}/0"}
    return {"services": services}


class Compose:
    def __init__(self, project: str, files: list[Path], env: dict[str, str]) -> None:
        self.base = [*os.environ.get("SYNQRA_COMPOSE", "docker-compose").split(), "-p", project]
        for f in files:
            self.base += ["-f", str(f)]
        self.project = project
        self.env = env

    def __call__(self, *args: str, timeout: float = 900, check_rc: bool = True) -> str:
        return run([*self.base, *args], env=self.env, timeout=timeout, check_rc=check_rc)

    def containers(self) -> dict[str, str]:
        """service name -> container id, of every container of this project (running or not)."""
        out = run(
            [
                "docker",
                "ps",
                "-a",
                "--filter",
                f"label=com.docker.compose.project={self.project}",
                "--format",
                '{{.ID}} {{.Label "com.docker.compose.service"}}',
            ]
        )
        return {svc: cid for cid, svc in (line.split() for line in out.splitlines() if line.strip())}

    def health(self) -> dict[str, str]:
        result = {}
        for svc, cid in self.containers().items():
            result[svc] = run(
                [
                    "docker",
                    "inspect",
                    "-f",
                    "{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}",
                    cid,
                ]
            ).strip()
        return result


def host_processes(cids: list[str]) -> dict[int, str]:
    """Host pid -> command line of every process in these containers."""
    procs: dict[int, str] = {}
    for cid in cids:  # a container that is not running has none (docker top then fails)
        for line in run(["docker", "top", cid, "-eo", "pid"], check_rc=False).splitlines()[1:]:
            pid = int(line.strip())
            try:
                procs[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                pass
    return procs


def still_running(procs: dict[int, str]) -> list[str]:
    left = []
    for pid, cmdline in procs.items():
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace") == cmdline:
                left.append(f"{pid}: {cmdline.replace(chr(0), ' ')}")
        except OSError:
            pass
    return left


def ledger(base_url: str) -> dict[str, dict[str, Any]]:
    r = httpx.get(f"{base_url}/api/budget/ledger", headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30)
    r.raise_for_status()
    return {row["request_id"]: row for row in r.json()["records"]}


def exercise(ports: dict[str, int], fake: FakeProvider) -> None:
    """SDK calls through the proxy: local chat, local embedding, a paid call; then the ledger."""
    import openai
    import redis

    base_url = f"http://127.0.0.1:{ports['proxy']}"
    client = openai.OpenAI(base_url=base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=180)

    raw = client.chat.completions.with_raw_response.create(
        model="local-llama", messages=[{"role": "user", "content": "What is the capital of France?"}], max_tokens=16
    )
    local = raw.parse()
    local_id = raw.headers["x-synqra-request-id"]
    check(
        raw.headers["x-synqra-route"] == "local-llama", "openai SDK chat answered by the local model (x-synqra-route)"
    )
    text, usage = local.choices[0].message.content or "", local.usage
    check(bool(text.strip()) and usage is not None and usage.completion_tokens > 0, "the local model generated text")
    check(not fake.requests, "the local call sent nothing to the paid provider")

    emb = client.embeddings.create(model="local-embed", input="hello world")
    check(len(emb.data[0].embedding) == 384, "openai SDK embedding from the embedding container (384 dimensions)")

    raw = client.chat.completions.with_raw_response.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "a paid question"}], max_tokens=32
    )
    paid_id = raw.headers["x-synqra-request-id"]
    check(
        raw.parse().choices[0].message.content == fake.default_text,
        "paid call answered by the fake DeepSeek on 127.0.0.1",
    )
    check(
        len(fake.requests) == 1 and fake.requests[0].headers.get("authorization") == f"Bearer {FAKE_DEEPSEEK_KEY}",
        "the fake provider got exactly one call, with the key passed through compose's environment",
    )
    p_tok, c_tok = fake.billed_tokens()
    bill = p_tok * DEEPSEEK_PRICES[0] + c_tok * DEEPSEEK_PRICES[1]

    rows: dict[str, dict[str, Any]] = {}

    def both_recorded() -> bool:
        nonlocal rows
        rows = ledger(base_url)
        return {local_id, paid_id} <= set(rows)

    wait_until(both_recorded, 30, "both chat calls in /api/budget/ledger")
    paid, loc = rows[paid_id], rows[local_id]
    check(loc["local"] is True and loc["cost_usd"] == 0, "the local call is in the ledger, free")
    check(
        paid["served_model"] == "deepseek-chat"
        and (paid["prompt_tokens"], paid["completion_tokens"]) == (p_tok, c_tok),
        f"the paid call is in the ledger with the fake's token counts ({p_tok}, {c_tok})",
    )
    check(abs(paid["cost_usd"] - bill) < 1e-12, f"ledger cost {paid['cost_usd']!r} = the fake's bill {bill!r}")

    r = redis.Redis(host="127.0.0.1", port=ports["redis"], decode_responses=True)
    month = paid["month"]
    stored = r.hget(f"synqra:budget:{month}:ledger", paid_id)
    check(
        stored is not None and json.loads(stored)["cost_nano"] == round(bill * 1e9),
        "the paid call's row is in the Redis container's ledger hash, at the fake's bill in nano-dollars",
    )
    committed = int(r.hget(f"synqra:budget:{month}:totals", "committed") or 0)
    check(committed == round(bill * 1e9), f"Redis committed total {committed} nano-USD = the bill")
    r.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", default=f"synqra-smoke-{os.getpid()}")
    ap.add_argument("--image", default=os.environ.get("SYNQRA_IMAGE", "synqra-proxy:latest"))
    ap.add_argument("--redis-image", default=os.environ.get("SYNQRA_REDIS_IMAGE", "synqra-redis:bookworm"))
    ap.add_argument("--keep-on-failure", action="store_true", help="leave the containers up to debug")
    args = ap.parse_args(argv)

    for image in (args.image, args.redis_image):
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False).returncode != 0:
            print(f"image {image} is missing: run scripts/docker-build.sh first", file=sys.stderr)
            return 2
    ports = {name: free_port() for name in SERVICES}
    fake = FakeProvider("deepseek", default_text="Fake DeepSeek answer from 127.0.0.1.").start()
    work = Path(tempfile.mkdtemp(prefix="synqra-docker-smoke-"))
    config_path = work / "litellm_config.docker.yaml"
    config_path.write_text(yaml.safe_dump(smoke_config(ports), sort_keys=False))
    config_path.chmod(0o644)
    override_path = work / "compose.smoke.yaml"
    override_path.write_text(yaml.safe_dump(override(ports, config_path), sort_keys=False))
    env = {
        **os.environ,
        "SYNQRA_MASTER_KEY": MASTER_KEY,
        "DEEPSEEK_API_KEY": FAKE_DEEPSEEK_KEY,
        "DEEPSEEK_API_BASE": fake.base_url,
        "SYNQRA_REDIS_IMAGE": args.redis_image,
    }
    # compose merges the shipped file with the override itself (`config`); then the published ports go:
    # Docker discards them under host networking, and docker-compose 1.29 refuses the combination.
    rendered = yaml.safe_load(Compose(args.project, [COMPOSE_FILE, override_path], env)("config"))
    for svc in rendered["services"].values():
        svc.pop("ports", None)
    rendered_path = work / "compose.rendered.yaml"
    rendered_path.write_text(yaml.safe_dump(rendered, sort_keys=False))
    compose = Compose(args.project, [rendered_path], env)
    figures: dict[str, Any] = {"date": datetime.now(UTC).date().isoformat(), "ports": ports}
    ok = False
    procs: dict[int, str] = {}
    up: subprocess.Popen[bytes] | None = None
    try:
        t0 = time.monotonic()
        # --no-build: the images come from scripts/docker-build.sh; compose must not pull or rebuild.
        # `up -d` returns once the proxy's dependencies are healthy: watch the health meanwhile.
        up_log = work / "compose-up.log"
        with open(up_log, "w") as out:
            up = subprocess.Popen(
                [*compose.base, "up", "-d", "--no-build"], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        healthy_at: dict[str, float] = {}

        def all_healthy() -> bool:
            if up.poll() not in (None, 0):
                raise SmokeFailure(f"compose up exited {up.returncode}:\n{up_log.read_text()[-3000:]}")
            h = compose.health()
            for svc, status in h.items():
                if status == "healthy":
                    healthy_at.setdefault(svc, round(time.monotonic() - t0, 1))
                elif status in ("unhealthy", "exited", "dead"):
                    raise SmokeFailure(f"{svc} is {status}")
            return set(h) == set(SERVICES) and all(s == "healthy" for s in h.values())

        wait_until(all_healthy, 600, "all four services healthy", every_s=0.5)
        check(up.wait(60) == 0, "compose up -d succeeded")
        figures["time_to_healthy_s"] = round(time.monotonic() - t0, 1)
        figures["healthy_at_s"] = healthy_at
        print(
            f"ok: llama, embed, redis and proxy healthy in {figures['time_to_healthy_s']} s ({healthy_at})", flush=True
        )
        procs = host_processes(list(compose.containers().values()))
        exercise(ports, fake)
        ok = True
    finally:
        if up is not None and up.poll() is None:  # still waiting for a dependency that never got healthy
            up.terminate()
            up.wait(30)
        if not ok:
            try:  # diagnostics only: they must not stop the clean-up below
                print(compose("logs", "--no-color", "--tail", "60", check_rc=False, timeout=120), file=sys.stderr)
                for svc, cid in compose.containers().items():
                    if svc == "proxy":
                        print(
                            run(["docker", "exec", cid, "sh", "-c", "tail -n 80 /data/logs/*.log"], check_rc=False),
                            file=sys.stderr,
                        )
            except (SmokeFailure, subprocess.TimeoutExpired) as e:
                print(f"(diagnostics failed: {e})", file=sys.stderr)
        if ok or not args.keep_on_failure:
            if not procs:
                procs = host_processes(list(compose.containers().values()))
            t1 = time.monotonic()
            compose("down", "-v", "--remove-orphans", "-t", "30", check_rc=False)
            figures["down_s"] = round(time.monotonic() - t1, 1)
        fake.stop()
        if ok or not args.keep_on_failure:
            shutil.rmtree(work, ignore_errors=True)
    check(not compose.containers(), "compose down left no container of the project")
    nets = run(
        ["docker", "network", "ls", "-q", "--filter", f"label=com.docker.compose.project={args.project}"]
    ).split()
    check(not nets, "compose down removed the project's networks")
    check(not still_running(procs), f"none of the containers' {len(procs)} processes is still running")
    vols = run(["docker", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={args.project}"]).split()
    check(not vols, "compose down -v removed the project's volumes")
    check(not any(port_open(p) for p in ports.values()), "no port of the stack is still listening")
    figures["image_size_mb"] = round(int(run(["docker", "image", "inspect", "-f", "{{.Size}}", args.image])) / 1e6)
    print("SMOKE-FIGURES " + json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except SmokeFailure as e:
        print(f"FAILED: {e}", file=sys.stderr)
        raise SystemExit(1) from None
