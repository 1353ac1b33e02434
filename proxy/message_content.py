"""Moved to policies.common.message_content; this re-export lasts only while branches written against the old path are merged."""
from policies.common.message_content import *  # noqa: F401,F403
