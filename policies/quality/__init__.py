"""Answer quality validation: deliver, rephrase or escalate."""
