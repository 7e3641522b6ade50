"""Who may report for which workload, and how often: cached briefly off the hot path.

Both caches live in the process and hold entries for `INGEST_CACHE_SECONDS` (default 10 s):
a revoked or expired token, a changed workload binding or a new/deleted workload takes
effect on ingestion within that time (token expiry itself is checked on every request).
They are bounded (`_MAX_ENTRIES`) and cleared whole when full.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from governance.throttling import AtomicRateThrottle
from governance.tokens import bearer_secret, service_token_lookup, token_hash
from workloads.models import Workload

_MAX_ENTRIES = 4096
log = logging.getLogger(__name__)
_lock = threading.Lock()
_tokens: dict[str, tuple[float, IngestToken | None]] = {}
_workloads: dict[str, tuple[float, int | None]] = {}


def _ttl() -> float:
    return float(getattr(settings, "INGEST_CACHE_SECONDS", 10))


@dataclass(frozen=True, slots=True)
class IngestToken:
    """What the hot path needs of a ServiceToken, detached from the ORM."""

    id: int
    name: str
    scopes: frozenset[str]
    all_workloads: bool
    workload_ids: frozenset[int]
    expires_at: datetime | None

    def may_report_for(self, workload_id: int) -> bool:
        return self.all_workloads or workload_id in self.workload_ids

    @property
    def only_workload_id(self) -> int | None:
        """The workload a token bound to exactly one workload reports for by default."""
        if not self.all_workloads and len(self.workload_ids) == 1:
            return next(iter(self.workload_ids))
        return None


def ingest_caches_clear() -> None:
    with _lock:
        _tokens.clear()
        _workloads.clear()


def _put(cache: dict, key, value) -> None:
    with _lock:
        if len(cache) >= _MAX_ENTRIES:
            cache.clear()
        cache[key] = (time.monotonic() + _ttl(), value)


def ingest_token_for(authorization_header: str) -> IngestToken | None:
    """The usable token behind an `Authorization: Bearer …` header, or None."""
    secret = bearer_secret(authorization_header or "")
    if secret is None:
        return None
    key = token_hash(secret)
    hit = _tokens.get(key)
    if hit is not None and hit[0] > time.monotonic():
        token = hit[1]
    else:
        found = service_token_lookup(secret)
        token = None
        if found is not None:
            token = IngestToken(
                id=found.pk,
                name=found.name,
                scopes=frozenset(found.scopes),
                all_workloads=found.all_workloads,
                workload_ids=frozenset(found.workloads.values_list("pk", flat=True)),
                expires_at=found.expires_at,
            )
        _put(_tokens, key, token)
    if token is not None and token.expires_at is not None and token.expires_at <= timezone.now():
        return None
    return token


def workload_ids_for(slugs) -> dict[str, int]:
    """Known workload slugs → ids; unknown slugs are absent. One query for the cache misses."""
    now = time.monotonic()
    found: dict[str, int] = {}
    missing = []
    for slug in slugs:
        hit = _workloads.get(slug)
        if hit is not None and hit[0] > now:
            if hit[1] is not None:
                found[slug] = hit[1]
        elif "\x00" not in slug:  # PostgreSQL cannot even compare text holding NUL
            missing.append(slug)
    if missing:
        fetched = dict(Workload.objects.filter(slug__in=missing).values_list("slug", "pk"))
        for slug in missing:
            _put(_workloads, slug, fetched.get(slug))
        found.update(fetched)
    return found


class IngestThrottle(AtomicRateThrottle):
    """DRF's rate limiting, keyed by token, for the plain ingestion views.

    The rate is read per request from REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["ingest"]
    (env INGEST_RATE), so overriding settings takes effect at once.
    """

    scope = "ingest"

    def __init__(self, token: IngestToken):
        self.token = token
        super().__init__()

    def get_rate(self):
        return settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES", {}).get(self.scope)

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.token.id}


def throttle_wait(request, token: IngestToken) -> int | None:
    """Seconds to wait when the token is over its rate, else None."""
    throttle = IngestThrottle(token)
    try:
        if throttle.rate is None or throttle.allow_request(request, None):
            return None
    except Exception as error:  # the shared cache (Redis) is down: storing beats limiting
        log.warning("Ingest rate not checked, cache unavailable: %s", error)
        return None
    return int(throttle.wait() or 0) + 1
