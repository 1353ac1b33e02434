"""The proxy's master key: from the environment, or generated once and kept on disk; and how a request
presents it.

LiteLLM refuses to start without one (and refuses `sk-1234`), so a first run on a
fresh machine creates a strong key, stores it owner-only, and says where it is.
Clients present it as `Authorization: Bearer <key>` (OpenAI SDKs, Prometheus) or
`x-api-key: <key>` (the Anthropic SDK); it is compared in constant time.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

ENV_VARS = ("SYNQRA_MASTER_KEY", "LITELLM_MASTER_KEY")


def key_file(data_dir: Path) -> Path:
    return data_dir / "master_key"


def resolve_master_key(data_dir: Path) -> tuple[str, str]:
    """Return (key, where it came from). Generates and stores one if none exists."""
    for var in ENV_VARS:
        value = os.environ.get(var, "").strip()
        if value:
            return value, f"environment variable {var}"
    path = key_file(data_dir)
    if path.is_file():
        return path.read_text().strip(), str(path)
    data_dir.mkdir(parents=True, exist_ok=True)
    key = "sk-synqra-" + secrets.token_urlsafe(32)
    # Create with 0600 from the start: no window where the key is world-readable.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key, f"{path} (generated on first run)"


def bearer_token(value: str | None) -> str:
    """The key in an Authorization header value ("Bearer <key>", any case), or the value itself (x-api-key)."""
    value = (value or "").strip()
    return value[7:].strip() if value[:7].lower() == "bearer " else value


def is_master_key(presented: str, master_key: str) -> bool:
    return bool(presented) and secrets.compare_digest(presented.encode(), master_key.encode())
