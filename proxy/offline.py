"""Moved to policies.common.offline; this re-export lasts only while branches written against the old path are merged."""
from policies.common.offline import *  # noqa: F401,F403
