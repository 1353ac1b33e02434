"""The LiteLLM proxy process(es) with synqra's config, hooks and extra endpoints.

LiteLLM runs in-process (its FastAPI app under uvicorn) rather than through the `litellm` CLI so that synqra's
/api routes live on the same port and the runtime state is set before LiteLLM loads the hooks.

`synqra.server.num_workers: N` > 1 runs N worker processes on one port (uvicorn's process manager shares the
socket and restarts a worker that dies). Each worker builds its own runtime; what they must agree on is shared:
the budget (the SQLite file under BEGIN IMMEDIATE, or Redis), the inference log and the learnt router versions
(files every worker reads), and the Prometheus counters (prometheus-client's multiprocess mode, a folder under
data_dir that every worker writes and every scrape sums).

Run: python -m proxy.server --config litellm_config.yaml [--host H] [--port P]
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import shutil
from typing import Any

from policies.common.offline import apply_offline_env
from policies.common.settings import LOG_FORMAT, AppConfig, load_config
from proxy.import_guards import block_unavailable_otel_imports
from proxy.master_key import resolve_master_key
from proxy.runtime import get_runtime, init_runtime

CONFIG_ENV = "SYNQRA_CONFIG"  # how a worker process finds the config its manager was started with
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's multiprocess mode
log = logging.getLogger("synqra.server")
GC_YOUNG_THRESHOLD = 10_000  # allocations between young-generation collections (see freeze_startup_heap)
GC_THRESHOLD_ENV = "PYTHON_GC_THRESHOLD"  # LiteLLM's own setting for the thresholds (it applies it at import)


def build_app(cfg: AppConfig, master_key: str) -> Any:  # fastapi.FastAPI (litellm's app)
    apply_offline_env()
    block_unavailable_otel_imports()
    os.environ["CONFIG_FILE_PATH"] = str(cfg.path)
    os.environ["LITELLM_MASTER_KEY"] = master_key
    init_runtime(cfg, master_key)
    from litellm.proxy.proxy_server import app  # heavy import, after the offline switches

    from proxy.api import mount_routes
    from proxy.client_watch import ClientWatch
    from proxy.dashboard.routes import make_dashboard_router
    from proxy.error_format import AnthropicErrorFormat
    from proxy.route_guard import RouteGuard
    from proxy.route_policy import RoutePolicy

    mount_routes(app)
    app.include_router(make_dashboard_router())  # the operator's page, built on the /api code (imports run one way)
    app.add_middleware(AnthropicErrorFormat)
    # Added after the error format, so outside it: a closed route never reaches LiteLLM (or its lazily loaded routers).
    app.add_middleware(RouteGuard, policy=RoutePolicy(tuple(cfg.synqra.server.open_routes)))
    app.add_middleware(ClientWatch)  # outermost: it keeps the server's own `receive`, which reports a disconnect
    return app


def freeze_startup_heap() -> int:
    """Move every object alive now (LiteLLM's modules, the cost map, the router, the embedding table's
    Python side: about 800,000 objects) out of the cyclic garbage collector's reach; returns how many.

    They live as long as the process, yet each full collection walked them all: measured in the running
    proxy, about 0.45 s of CPU per full collection and ~1.3 ms of CPU per request in all (10% of a bare
    LiteLLM request), plus a 0.45 s pause every few hundred requests. Objects created later are collected
    as before. Called once start-up is complete, in each worker.

    The youngest generation is also collected every GC_YOUNG_THRESHOLD allocations instead of Python's 700: a
    request allocates hundreds of objects (LiteLLM's pydantic models, httpx, our hooks), so the default ran a
    young collection about every request (0.2-0.3 ms of CPU per request here); at 10,000 it runs every tens of
    requests, for about 0.1 ms per request all generations included. Cyclic garbage waits longer (at most
    10,000 objects: kilobytes to a few MB); everything else is freed by reference counting as before.
    LiteLLM's own setting, the environment variable PYTHON_GC_THRESHOLD ("gen0,gen1,gen2"), is left as it is.
    """
    gc.collect()  # what start-up left as garbage goes now, not into the frozen set
    gc.freeze()
    if not os.environ.get(GC_THRESHOLD_ENV):  # the operator's own thresholds (LiteLLM applies them) win
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
    return gc.get_freeze_count()


class WarmUpLifespan:
    """Runs the runtime's warm-up before the app's own start-up (LiteLLM's), and closes it after shutdown, in
    the worker's event loop: the first request finds the router, the budget and the learning loop ready.
    Once start-up is complete, the start-up heap is frozen (`freeze_startup_heap`)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def wrapped_receive() -> dict[str, Any]:
            message: dict[str, Any] = await receive()
            if message["type"] == "lifespan.startup":
                await get_runtime().warm_up()
            return message

        async def wrapped_send(message: dict[str, Any]) -> None:
            if message["type"] == "lifespan.startup.complete":
                log.info(
                    "start-up heap frozen: %d objects outside the garbage collector's walks", freeze_startup_heap()
                )
            await send(message)

        try:
            await self.app(scope, wrapped_receive, wrapped_send)
        finally:
            await get_runtime().aclose()  # flush ledger records queued during an outage, pending alerts, the log


def worker_app() -> Any:
    """The ASGI app of one worker process (uvicorn's factory): config from the manager's environment."""
    cfg = load_config(os.environ[CONFIG_ENV])
    logging.basicConfig(level=cfg.synqra.server.log_level, format=LOG_FORMAT)
    key, _ = resolve_master_key(cfg.synqra.server.data_path)
    return WarmUpLifespan(build_app(cfg, key))


def _metrics_dir(cfg: AppConfig) -> str:
    """A fresh folder for prometheus-client's multiprocess files (counts of a previous run are not this one's)."""
    folder = cfg.synqra.server.data_path / "run" / "prometheus"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder)


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="litellm_config.yaml")
    ap.add_argument("--host")
    ap.add_argument("--port", type=int)
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    s = cfg.synqra.server
    logging.basicConfig(level=s.log_level, format=LOG_FORMAT)
    os.environ[CONFIG_ENV] = str(cfg.path)
    if s.num_workers > 1:  # before any worker imports prometheus_client
        os.environ[METRICS_DIR_ENV] = _metrics_dir(cfg)
    uvicorn.run(
        "proxy.server:worker_app",
        factory=True,
        host=args.host or s.host,
        port=args.port or s.port,
        workers=s.num_workers,
        log_level=s.log_level.lower(),
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
