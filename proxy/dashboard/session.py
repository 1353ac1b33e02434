"""The dashboard's sign-in: a cookie that proves the master key was typed, without holding it.

The cookie is `<expires>.<nonce>.<hmac>`: an HMAC-SHA256, keyed by the master key, of the expiry time and a
random nonce. Any proxy process that knows the master key can check it (no shared session store), it
lapses on its own, and it stops working the moment the master key changes. Signing out clears the cookie and
revokes its nonce: in this process, and in `revoked_file` (one line per sign-out, read again by every worker
process when it changes), so a copied cookie stops working everywhere. The key itself is never in a cookie, a
URL or the page.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from pathlib import Path

COOKIE = "synqra_dashboard"
LIFETIME_S = 12 * 3600


def _sign(master_key: str, expires: int, nonce: str) -> str:
    return hmac.new(master_key.encode(), f"synqra-dashboard:{expires}:{nonce}".encode(), hashlib.sha256).hexdigest()


class Sessions:
    def __init__(self, lifetime_s: int = LIFETIME_S, revoked_file: Path | None = None) -> None:
        self.lifetime_s = lifetime_s
        self.revoked_file = revoked_file
        self._revoked: dict[str, int] = {}  # nonce -> its expiry (forgotten once it would have lapsed anyway)
        self._seen: tuple[int, int] | None = None  # (mtime_ns, size) of revoked_file when last read

    def _read_revoked(self) -> None:
        """Merge the sign-outs other processes wrote, when the file changed since the last read."""
        if self.revoked_file is None:
            return
        try:
            st = self.revoked_file.stat()
        except FileNotFoundError:
            return
        if self._seen == (st.st_mtime_ns, st.st_size):
            return
        self._seen = (st.st_mtime_ns, st.st_size)
        for line in self.revoked_file.read_text(errors="replace").splitlines():
            nonce, _, expires = line.partition(" ")
            if expires.isdigit():
                self._revoked[nonce] = int(expires)

    def issue(self, master_key: str, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + self.lifetime_s)
        nonce = secrets.token_urlsafe(16)
        return f"{expires}.{nonce}.{_sign(master_key, expires, nonce)}"

    def valid(self, token: str | None, master_key: str, now: float | None = None) -> bool:
        parts = (token or "").split(".")
        if len(parts) != 3 or not parts[0].isdigit():
            return False
        expires, nonce, sig = int(parts[0]), parts[1], parts[2]
        if expires < (time.time() if now is None else now):
            return False
        self._read_revoked()
        if nonce in self._revoked:
            return False
        return hmac.compare_digest(sig, _sign(master_key, expires, nonce))

    def revoke(self, token: str | None, now: float | None = None) -> None:
        parts = (token or "").split(".")
        if len(parts) == 3 and parts[0].isdigit():
            t = time.time() if now is None else now
            self._revoked = {n: e for n, e in self._revoked.items() if e >= t}
            self._revoked[parts[1]] = int(parts[0])
            if self.revoked_file is not None:
                self.revoked_file.parent.mkdir(parents=True, exist_ok=True)
                with self.revoked_file.open("a") as f:  # one short appended line: whole, whoever reads it
                    f.write(f"{parts[1]} {int(parts[0])}\n")
