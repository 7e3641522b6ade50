"""Deployment checks of our own, run by `manage.py check --deploy` beside Django's."""

from django.conf import settings
from django.core.checks import Tags, Warning, register


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
