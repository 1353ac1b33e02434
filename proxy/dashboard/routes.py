"""`/dashboard`: the operator's page, served by the proxy itself, no internet needed.

    GET  /dashboard               the page once signed in, else the sign-in form
    POST /dashboard/login         form field `key` (the master key): sets the session cookie, or the form again (401)
    POST /dashboard/logout        revokes the session, clears the cookie
    GET  /dashboard/data          the page's JSON (proxy/dashboard/data.py): the session cookie or the master key
    GET  /dashboard/assets/NAME   the page's script and style sheet (shipped in this package)

The cookie is HttpOnly, SameSite=Strict, limited to /dashboard, Secure behind HTTPS (proxy/dashboard/session.py).
Every page answer carries a strict Content-Security-Policy: only this origin's script, style and fetches.
"""

from __future__ import annotations

import asyncio
import html
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from proxy.api.auth import holds_master_key
from proxy.dashboard.data import DashboardData
from proxy.dashboard.session import COOKIE, Sessions
from proxy.master_key import is_master_key
from proxy.runtime import get_runtime

ASSETS = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
WRONG_KEY_DELAY_S = 0.5  # a wrong key waits a little: guessing stays slow without locking anyone out
MAX_FORM_BYTES = 4096


@cache
def _asset(name: str) -> bytes:
    return resources.files("proxy.dashboard").joinpath("assets", name).read_bytes()


def _page(name: str, status: int = 200, **fields: str) -> HTMLResponse:
    text = _asset(name).decode()
    for k, v in fields.items():
        text = text.replace("{{" + k + "}}", html.escape(v))
    return HTMLResponse(text, status_code=status, headers=SECURITY_HEADERS)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "").lower() == "https"


def make_dashboard_router() -> APIRouter:
    router = APIRouter(tags=["dashboard"], include_in_schema=False)
    # Sign-outs are shared by the worker processes through a file beside the other run state.
    sessions = Sessions(revoked_file=get_runtime().config.synqra.server.data_path / "run" / "dashboard_signed_out")
    data: dict[str, DashboardData] = {}  # built on first use, inside the running proxy

    def signed_in(request: Request) -> bool:
        return sessions.valid(request.cookies.get(COOKIE), get_runtime().master_key)

    @router.get("/dashboard")
    async def dashboard(request: Request) -> Response:
        if signed_in(request):
            return _page("dashboard.html")
        return _page("login.html", error="")

    @router.post("/dashboard/login")
    async def login(request: Request) -> Response:
        body = await request.body()
        fields = parse_qs(body[:MAX_FORM_BYTES].decode("utf-8", "replace"))
        key = (fields.get("key") or [""])[0].strip()
        master = get_runtime().master_key
        if not is_master_key(key, master):
            await asyncio.sleep(WRONG_KEY_DELAY_S)
            return _page("login.html", status=401, error="That is not this proxy's master key.")
        out = RedirectResponse("/dashboard", status_code=303, headers=SECURITY_HEADERS)
        out.set_cookie(
            COOKIE,
            sessions.issue(master),
            max_age=sessions.lifetime_s,
            path="/dashboard",
            httponly=True,
            samesite="strict",
            secure=_secure(request),
        )
        return out

    @router.post("/dashboard/logout")
    async def logout(request: Request) -> Response:
        sessions.revoke(request.cookies.get(COOKIE))
        out = RedirectResponse("/dashboard", status_code=303, headers=SECURITY_HEADERS)
        out.delete_cookie(COOKIE, path="/dashboard", httponly=True, samesite="strict", secure=_secure(request))
        return out

    @router.get("/dashboard/data")
    async def dashboard_data(request: Request) -> dict[str, Any]:
        if not (signed_in(request) or holds_master_key(request)):
            raise HTTPException(
                status_code=401,
                detail={
                    "error": {"message": "sign in at /dashboard, or send the proxy's master key", "type": "auth_error"}
                },
            )
        if "snapshot" not in data:
            data["snapshot"] = DashboardData(get_runtime())
        return await data["snapshot"].snapshot()

    @router.get("/dashboard/assets/{name}")
    async def asset(name: str) -> Response:
        if name not in ASSETS:
            raise HTTPException(
                status_code=404, detail={"error": {"message": f"no dashboard asset {name!r}", "type": "not_found"}}
            )
        return Response(
            _asset(name),
            media_type=ASSETS[name],
            headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"},
        )

    return router
