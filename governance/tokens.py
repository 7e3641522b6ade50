"""Service tokens: issuing, hashing, authenticating.

A token is `mnd_` + 43 url-safe characters (256 random bits). Only its SHA-256 is stored;
lookups hash the presented secret, so the database never holds anything replayable.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone
from rest_framework import authentication, exceptions

from governance.audit import audit_record, audit_snapshot
from governance.errors import DomainError
from governance.models import ServiceToken
from governance.models.tokens import TokenScope
from governance.policy_version import policy_version_bump

TOKEN_PREFIX = "mnd_"
LAST_USED_RESOLUTION = timedelta(minutes=1)
_AUDIT_FIELDS = ("name", "prefix", "scopes", "all_workloads", "expires_at", "revoked_at")


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    token: ServiceToken
    secret: str


@transaction.atomic
def service_token_create(
    *,
    name: str,
    scopes: list[str],
    by=None,
    workloads=(),
    all_workloads: bool = False,
    expires_at: datetime | None = None,
    acts_for=None,
) -> IssuedToken:
    """Issue a token; the secret is returned once and never stored."""
    unknown = sorted(set(scopes) - set(TokenScope.values))
    if unknown or not scopes:
        raise DomainError(
            f"Unknown scopes: {', '.join(unknown)}" if unknown else "Give at least one scope.",
            field="scopes",
        )
    if expires_at is not None and expires_at <= timezone.now():
        raise DomainError("The expiry must be in the future.", field="expires_at")
    if ServiceToken.objects.filter(name=name).exists():
        raise DomainError("A token with this name exists.", field="name", code="duplicate")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ServiceToken.objects.create(
        name=name,
        prefix=secret[:10],
        token_hash=token_hash(secret),
        scopes=sorted(set(scopes)),
        all_workloads=all_workloads,
        expires_at=expires_at,
        acts_for=acts_for,
        created_by=by if getattr(by, "pk", None) else None,
    )
    if workloads:
        token.workloads.set(workloads)
    after = audit_snapshot(token, _AUDIT_FIELDS) | {"workloads": [w.slug for w in workloads]}
    audit_record(by=by, action="token.create", obj=token, after=after)
    policy_version_bump()  # decision snapshots hold the tokens
    return IssuedToken(token=token, secret=secret)


@transaction.atomic
def service_token_revoke(*, token: ServiceToken, by) -> ServiceToken:
    token = ServiceToken.objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is not None:
        return token
    before = audit_snapshot(token, _AUDIT_FIELDS)
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    audit_record(
        by=by,
        action="token.revoke",
        obj=token,
        before=before,
        after=audit_snapshot(token, _AUDIT_FIELDS),
    )
    policy_version_bump()  # a revoked token stops deciding on the next call
    return token


def service_token_lookup(secret: str) -> ServiceToken | None:
    """The usable token for a presented secret, or None. Touches last_used at most once a minute."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 100:
        return None
    token = ServiceToken.objects.filter(token_hash=token_hash(secret)).first()
    now = timezone.now()
    if token is None or not token.is_usable_at(now):
        return None
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ServiceToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def bearer_secret(authorization_header: str) -> str | None:
    scheme, _, secret = authorization_header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return secret.strip()


class ServicePrincipal:
    """The `request.user` of a token-authenticated request: no Django permissions of its own."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, token: ServiceToken):
        self.token = token

    def __str__(self) -> str:
        return f"token:{self.token.name}"

    def get_username(self) -> str:
        return str(self)

    def has_perm(self, perm, obj=None) -> bool:
        return False

    def may_act_for(self, workload) -> bool:
        token = self.token
        return token.all_workloads or token.workloads.filter(pk=workload.pk).exists()


class ServiceTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer mnd_…` for DRF views."""

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        secret = bearer_secret(header)
        if secret is None:
            return None
        token = service_token_lookup(secret)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked token.")
        return ServicePrincipal(token), token

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="mandate"'
