"""The LiteLLM proxy process with synqra's config, hooks and extra endpoints.

LiteLLM runs in-process (its FastAPI app under uvicorn) rather than through the
`litellm` CLI so that synqra's /api routes live on the same port and the runtime
state is set before LiteLLM loads the hooks.

Run: python -m proxy.server --config litellm_config.yaml [--host H] [--port P]
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os

from proxy.import_guards import block_unavailable_otel_imports
from proxy.master_key import resolve_master_key
from policies.common.offline import apply_offline_env
from proxy.runtime import get_runtime, init_runtime
from policies.common.settings import LOG_FORMAT, AppConfig, load_config


def build_app(cfg: AppConfig, master_key: str):  # -> fastapi.FastAPI (litellm's app)
    apply_offline_env()
    block_unavailable_otel_imports()
    os.environ["CONFIG_FILE_PATH"] = str(cfg.path)
    os.environ["LITELLM_MASTER_KEY"] = master_key
    init_runtime(cfg, master_key)
    from litellm.proxy.proxy_server import app  # heavy import, after the offline switches

    from proxy.api import mount_routes

    from proxy.error_format import AnthropicErrorFormat
    from proxy.dashboard.routes import make_dashboard_router
    from proxy.route_guard import RouteGuard
    from proxy.route_policy import RoutePolicy

    mount_routes(app)
    app.include_router(make_dashboard_router())  # the operator's page, built on the /api code (imports run one way)
    app.add_middleware(AnthropicErrorFormat)
    # Added last, so outermost: a closed route never reaches LiteLLM (or its lazily loaded routers).
    app.add_middleware(RouteGuard, policy=RoutePolicy(tuple(cfg.synqra.server.open_routes)))
    return app


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
    key, _ = resolve_master_key(s.data_path)
    app = build_app(cfg, key)
    server = uvicorn.Server(
        uvicorn.Config(app, host=args.host or s.host, port=args.port or s.port, log_level=s.log_level.lower(), timeout_graceful_shutdown=10)
    )

    async def serve() -> None:
        try:
            await get_runtime().warm_up()
            await server.serve()
        finally:
            # Flush ledger records queued during a store outage and deliver pending alerts.
            await get_runtime().aclose()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
