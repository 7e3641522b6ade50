"""System checks of our own: deployment warnings (`manage.py check --deploy`) and settings
that would fail at run time."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register(Tags.security, deploy=True)
def bench_floors_check(app_configs, **kwargs):
    """The bench's floor views answer without a token; only bench/decisions.py turns them on."""
    if getattr(settings, "DECISIONS_BENCH_FLOORS", False):
        return [
            Warning(
                "MANDATE_BENCH_FLOORS is on: /bench/floor/* answer without authentication.",
                hint="Unset MANDATE_BENCH_FLOORS; only bench/decisions.py needs it.",
                id="mandate.W001",
            )
        ]
    return []


@register()
def session_approval_hours_check(app_configs, **kwargs):
    """An approval must last a while: 0 would make every session approval fail to save."""
    if settings.SESSION_APPROVAL_HOURS < 1:
        return [
            Error(
                f"SESSION_APPROVAL_HOURS is {settings.SESSION_APPROVAL_HOURS}: at least 1.",
                hint="Unset it for the default, 24 hours.",
                id="mandate.E001",
            )
        ]
    return []
