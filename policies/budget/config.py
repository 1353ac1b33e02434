"""Moved to policies.common.budget_settings; this re-export lasts only while branches written against the old path are merged."""
from policies.common.budget_settings import *  # noqa: F401,F403
