"""Policies applied by the LiteLLM hooks: routing -> budget -> quality.

Each sub-package holds pure decisions (no I/O) plus the small adapters that
give them data; `proxy.hooks` wires them into LiteLLM's CustomLogger seam.
"""
