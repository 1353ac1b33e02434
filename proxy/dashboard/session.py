"""The dashboard's sign-in: a cookie that proves the master key was typed, without holding it.

The cookie is `<expires>.<nonce>.<hmac>`: an HMAC-SHA256, keyed by the master key, of the expiry time and a
random nonce. Any proxy process that knows the master key can check it (no shared session store), it
lapses on its own, and it stops working the moment the master key changes. Signing out revokes its nonce in
this process (and clears the cookie); the key itself is never in a cookie, a URL or the page.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time

COOKIE = "synqra_dashboard"
LIFETIME_S = 12 * 3600


def _sign(master_key: str, expires: int, nonce: str) -> str:
    return hmac.new(master_key.encode(), f"synqra-dashboard:{expires}:{nonce}".encode(), hashlib.sha256).hexdigest()


class Sessions:
    def __init__(self, lifetime_s: int = LIFETIME_S) -> None:
        self.lifetime_s = lifetime_s
        self._revoked: dict[str, int] = {}  # nonce -> its expiry (forgotten once it would have lapsed anyway)

    def issue(self, master_key: str, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + self.lifetime_s)
        nonce = secrets.token_urlsafe(16)
        return f"{expires}.{nonce}.{_sign(master_key, expires, nonce)}"

    def valid(self, token: str | None, master_key: str, now: float | None = None) -> bool:
        parts = (token or "").split(".")
        if len(parts) != 3 or not parts[0].isdigit():
            return False
        expires, nonce, sig = int(parts[0]), parts[1], parts[2]
        if expires < (time.time() if now is None else now) or nonce in self._revoked:
            return False
        return hmac.compare_digest(sig, _sign(master_key, expires, nonce))

    def revoke(self, token: str | None, now: float | None = None) -> None:
        parts = (token or "").split(".")
        if len(parts) == 3 and parts[0].isdigit():
            t = time.time() if now is None else now
            self._revoked = {n: e for n, e in self._revoked.items() if e >= t}
            self._revoked[parts[1]] = int(parts[0])
