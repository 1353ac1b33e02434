"""Moved to policies.embedding.base; this re-export lasts only while branches written against the old path are merged."""
from policies.embedding.base import *  # noqa: F401,F403
from policies.embedding.names import make_embedder  # noqa: F401
