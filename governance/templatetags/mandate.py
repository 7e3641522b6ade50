"""Template helpers for the console: audit changes, a finding's details, and the dashboard's
SVG bars."""

from django import template

register = template.Library()

_HIDDEN = object()


@register.filter
def audit_changes(event) -> list[dict]:
    """The fields an audit event changed, with their value before and after; ids of related
    objects by name where `audit_labels_attach` found one."""
    before = event.before or {}
    after = event.after or {}
    labels = getattr(event, "value_labels", {})
    changes = []
    for field in sorted(set(before) | set(after)):
        old, new = before.get(field, _HIDDEN), after.get(field, _HIDDEN)
        if old == new:
            continue
        named = labels.get(field, {})
        old, new = named.get(str(old), old), named.get(str(new), new)
        changes.append(
            {
                "field": field,
                "before": None if old is _HIDDEN else _short(old),
                "after": None if new is _HIDDEN else _short(new),
            }
        )
    return changes


def _short(value, limit: int = 80) -> str:
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    text = "—" if value in (None, "") else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Detail keys whose name alone reads badly: their label for a reviewer.
DETAIL_LABELS = {
    "dated_ahead_seconds": "Dated ahead of arrival",
    "reported_late_seconds": "Reported late",
    "elapsed_seconds": "Session ran",
    "idle_seconds": "Idle for",
    "limit_seconds": "Limit",
}
# A key's unit suffix, and the unit written after its value.
DETAIL_UNITS = (("_seconds", "s"), ("_ms", "ms"))


@register.filter
def detail_rows(details) -> list[tuple[str, str]]:
    """A finding's details (detector output, JSON) as label and text for a reviewer:
    "In catalogue: Yes", not "In_catalogue: True"; "Dated ahead of arrival: 3 s", not
    "Dated ahead seconds: 3"."""
    return [_detail_row(str(key), value) for key, value in (details or {}).items()]


def _detail_row(key: str, value) -> tuple[str, str]:
    stem, unit = key, ""
    for suffix, symbol in DETAIL_UNITS:
        if key.endswith(suffix):
            stem, unit = key.removesuffix(suffix), symbol
    label = DETAIL_LABELS.get(key) or stem.replace("_", " ").capitalize()
    text = _readable(value)
    if unit and isinstance(value, int | float) and not isinstance(value, bool):
        text = f"{text} {unit}"
    return label, text


def _readable(value) -> str:
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, list | tuple):
        return ", ".join(_readable(v) for v in value) or "—"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_readable(v)}" for k, v in value.items()) or "—"
    return "—" if value in (None, "") else str(value)
