"""Server-rendered SVG bar charts: geometry computed here, drawn by a template (no JS, no
inline styles, so CSP holds)."""

from __future__ import annotations

WIDTH, HEIGHT, TOP, BOTTOM = 420, 140, 14, 20


def bar_chart(series: list[dict], *, width: int = WIDTH, height: int = HEIGHT) -> dict:
    """`series` is [{"day": date, "n": int, "label"?: str}, ...] → bars with x/y/w/h in SVG
    units (the label defaults to the day)."""
    peak = max((point["n"] for point in series), default=0) or 1
    slot = width / max(len(series), 1)
    plot = height - TOP - BOTTOM
    bars = []
    for i, point in enumerate(series):
        h = round(plot * point["n"] / peak, 1)
        bars.append(
            {
                "x": round(i * slot + slot * 0.15, 1),
                "y": round(TOP + plot - h, 1),
                "w": round(slot * 0.7, 1),
                "h": h,
                "n": point["n"],
                "label": point.get("label") or point["day"].strftime("%d %b"),
                "tick": i % max(1, len(series) // 7) == 0,
                # The first label starts at the left edge instead of centring past it.
                "tx": round(i * slot + slot / 2, 1) if i else 0,
                "anchor": "middle" if i else "start",
            }
        )
    return {
        "bars": bars,
        "width": width,
        "height": height,
        "peak": max((p["n"] for p in series), default=0),
        "total": sum(p["n"] for p in series),
        "baseline": height - BOTTOM,
        "label_y": height - 5,
    }
