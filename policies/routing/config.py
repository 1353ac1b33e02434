"""Moved to policies.common.routing_settings; this re-export lasts only while branches written against the old path are merged."""
from policies.common.routing_settings import *  # noqa: F401,F403
