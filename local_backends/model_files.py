"""Moved to policies.common.model_files; this re-export lasts only while branches written against the old path are merged."""
from policies.common.model_files import *  # noqa: F401,F403
