"""Small inline SVG charts for the HTML report: no script, no external asset, text escaped."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape
from typing import Any

BLUE, GREEN, AMBER, RED, GREY = "#2563eb", "#16a34a", "#d97706", "#dc2626", "#98a2b3"


def _t(x: float, y: float, text: str, anchor: str = "start", size: int = 11, fill: str = "#475467") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{fill}" text-anchor="{anchor}">{escape(text)}</text>'
    )


def daily_chart(
    days: Sequence[dict[str, Any]], usd: Callable[[float], str], width: int = 900, height: int = 230
) -> str:
    """Cost per day as bars (left scale) and client requests per day as a line (right scale)."""
    left, right, top, bottom = 64, 56, 14, 26
    n = max(1, len(days))
    cw = (width - left - right) / n
    max_cost = max((d["cost_usd"] for d in days), default=0.0) or 1.0
    max_req = max((d["requests"] for d in days), default=0) or 1

    def y(v: float, vmax: float) -> float:
        return top + (height - top - bottom) * (1 - v / vmax)

    parts = [
        f'<line x1="{left}" x2="{width - right}" y1="{height - bottom}" y2="{height - bottom}" stroke="#e4e7ec"/>',
        _t(4, top + 9, usd(max_cost)),
        _t(width - right + 4, top + 9, f"{max_req} req"),
    ]
    points = []
    for i, d in enumerate(days):
        x = left + i * cw
        h = height - bottom - y(d["cost_usd"], max_cost)
        parts.append(
            f'<rect class="bar" x="{x + cw * 0.15:.1f}" y="{height - bottom - h:.1f}" width="{cw * 0.7:.1f}" height="{h:.1f}" '
            f'fill="{BLUE}" opacity="0.85"><title>{escape(d["date"])}: {d["requests"]} requests, {escape(usd(d["cost_usd"]))}</title></rect>'
        )
        cx, cy = x + cw / 2, y(d["requests"], max_req)
        points.append(f"{cx:.1f},{cy:.1f}")
        if d["requests"]:
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="{GREEN}"/>')
        if d["day"] == 1 or d["day"] % 5 == 0:
            parts.append(_t(cx, height - 9, str(d["day"]), "middle", 10))
    parts.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{GREEN}" stroke-width="2"/>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="requests and cost per day">{"".join(parts)}</svg>'
    )


def hbars(items: Sequence[tuple[str, float, str, str]], width: int = 900, row: int = 26, label_w: int = 230) -> str:
    """Horizontal bars: (label, value, value text, colour) per row, scaled to the largest value."""
    vmax = max((v for _, v, _, _ in items), default=0.0) or 1.0
    bar_w = width - label_w - 150
    parts = []
    for i, (label, value, text, colour) in enumerate(items):
        y = i * row + 4
        w = max(0.0, bar_w * value / vmax)
        parts.append(_t(0, y + 14, label, size=12, fill="#1d2433"))
        parts.append(
            f'<rect class="bar" x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{row - 10}" fill="{colour}" rx="3"/>'
        )
        parts.append(_t(label_w + w + 6, y + 14, text, size=12))
    h = len(items) * row + 8
    return f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {h}" width="100%" role="img">{"".join(parts)}</svg>'


def spend_bar(spent: float, limit: float, alert_at: float, stop_at: float, projected: float, width: int = 900) -> str:
    """The month's spend against the limit, with the alert and stop marks and the projected month end."""
    scale = max(limit, projected, spent) or 1.0
    x0, w, h = 4, width - 8, 46

    def x(v: float) -> float:
        return x0 + w * v / scale

    parts = [
        f'<rect x="{x0}" y="10" width="{w}" height="14" rx="7" fill="#eef2f6"/>',
        f'<rect class="bar" x="{x0}" y="10" width="{max(0.0, x(spent) - x0):.1f}" height="14" rx="7" fill="{BLUE}"/>',
        f'<line x1="{x(projected):.1f}" x2="{x(projected):.1f}" y1="6" y2="28" stroke="{GREY}" stroke-dasharray="3,2" stroke-width="2"/>',
    ]
    for level, colour in ((alert_at, AMBER), (stop_at, RED)):
        parts.append(
            f'<line x1="{x(limit * level):.1f}" x2="{x(limit * level):.1f}" y1="4" y2="30" stroke="{colour}" stroke-width="2"/>'
        )
        parts.append(_t(x(limit * level), 42, f"{level:.0%}", "middle", 10, colour))
    return f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {h}" width="100%" role="img">{"".join(parts)}</svg>'
