"""Moved to policies.embedding.names; this re-export lasts only while branches written against the old path are merged."""
from policies.embedding.names import *  # noqa: F401,F403
