"""Complexity routing: which tier serves a request sent to the virtual model."""
