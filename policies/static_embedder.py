"""Moved to policies.embedding.static; this re-export lasts only while branches written against the old path are merged."""
from policies.embedding.static import *  # noqa: F401,F403
