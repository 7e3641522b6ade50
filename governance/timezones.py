"""The console shows times in the viewer's time zone, which their browser names in a cookie
(static/js/mandate.js sets it). Forms read typed times in the same zone, so an expiry typed
as 17:00 means 17:00 where the viewer is. The API stays in UTC whatever the cookie says: a
service's timestamps must not depend on whose browser last touched the session."""

from __future__ import annotations

import zoneinfo
from functools import lru_cache

from django.utils import timezone

COOKIE = "mandate_tz"
_NAME_MAX = 64  # the longest IANA names are about 30 characters


@lru_cache(maxsize=1)
def _known() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


@lru_cache(maxsize=256)
def zone_named(name: str) -> zoneinfo.ZoneInfo | None:
    """The IANA zone called `name`, or None for anything else (UTC is then shown)."""
    if not name or len(name) > _NAME_MAX or name not in _known():
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


class ViewerTimeZoneMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        zone = None
        if not request.path_info.startswith(("/api/", "/v1/")):
            zone = zone_named(request.COOKIES.get(COOKIE, ""))
        if zone is None:
            timezone.deactivate()
            return self.get_response(request)
        timezone.activate(zone)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
