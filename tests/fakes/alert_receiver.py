"""The budget alert webhook's other end: a local HTTP server that keeps every POSTed JSON body."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes.fake_providers import free_port


class AlertReceiver:
    """Serves POST on 127.0.0.1 (a thread) from construction until `stop()`; `posts` holds the bodies in order."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.posts.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/alert"

    def levels(self) -> list[str]:
        """The `level` of each alert received, in order."""
        return [str(p.get("level")) for p in self.posts]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
