"""Services for console sign-ins and passwords: each counts what the login limits need
(governance/login_guard.py) and records what the audit trail should show."""

from __future__ import annotations

from django.db import transaction

from governance.audit import audit_record
from governance.login_guard import login_failure_record, login_success_record


def login_failed(*, username: str, address: str) -> None:
    """Count a failed login; the one that reaches a limit is audited as a lockout."""
    if login_failure_record(username=username, address=address):
        with transaction.atomic():
            audit_record(
                by=None,
                action="user.login_locked",
                object_type="auth.user",
                object_repr=username[:200],
                after={"username": username[:150], "address": address},
            )


@transaction.atomic
def login_succeeded(*, user, address: str) -> None:
    login_success_record(username=user.get_username(), address=address)
    audit_record(by=user, action="user.login", obj=user, after={"address": address})


@transaction.atomic
def password_changed(*, user) -> None:
    audit_record(by=user, action="user.password_change", obj=user)
