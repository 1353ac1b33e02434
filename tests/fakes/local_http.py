"""A small aiohttp app on a free 127.0.0.1 port, for tests that need a real HTTP peer."""

from __future__ import annotations

from aiohttp import web

from tests.fakes.fake_providers import free_port


class LocalPostServer:
    """One POST route (`path`, answered by `handle`) served while used as an async context manager."""

    path = "/"

    async def handle(self, req: web.Request) -> web.Response:
        raise NotImplementedError

    async def __aenter__(self) -> LocalPostServer:
        app = web.Application()
        app.router.add_post(self.path, self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()
