"""How a local backend runs as its own process (`python -m local_backends.<server> --config FILE`, as the
supervisor starts it): its settings from the config, synqra's log format, uvicorn on its host and port."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from policies.common.settings import LOG_FORMAT, AppConfig, EmbedBackendSettings, LlamaBackendSettings, load_config

S = TypeVar("S", LlamaBackendSettings, EmbedBackendSettings)


def serve_backend(
    argv: list[str] | None,
    description: str | None,
    settings_of: Callable[[AppConfig], S],
    create_app: Callable[[S], Any],
) -> None:
    """Parse `--config`, build the app from this backend's settings and serve it until stopped."""
    import uvicorn

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--config", required=True)
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    s = settings_of(cfg)
    logging.basicConfig(level=cfg.synqra.server.log_level, format=LOG_FORMAT)
    uvicorn.run(create_app(s), host=s.host, port=s.port, log_level="warning", timeout_graceful_shutdown=5)
