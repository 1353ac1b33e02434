"""Moved to policies.common.settings; this re-export lasts only while branches written against the old path are merged."""
from policies.common.settings import *  # noqa: F401,F403
