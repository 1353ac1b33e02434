"""Moved to policies.common.request_checks; this re-export lasts only while branches written against the old path are merged."""
from policies.common.request_checks import *  # noqa: F401,F403
