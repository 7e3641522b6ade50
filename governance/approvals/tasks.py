"""Celery tasks for the approval workflow: thin, ids in, one service or notification call."""

from celery import shared_task
from django.db import OperationalError

from governance.approvals import notifications

_RETRY = dict(
    bind=True,
    acks_late=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)


@shared_task(name="approvals.request_filed_notify", **_RETRY)
def request_filed_notify(self, request_id: int) -> int:
    return notifications.notify_request_filed(request_id)


@shared_task(name="approvals.request_decided_notify", **_RETRY)
def request_decided_notify(self, request_id: int) -> int:
    return notifications.notify_request_decided(request_id)


@shared_task(name="approvals.request_reminder_notify", **_RETRY)
def request_reminder_notify(self, request_id: int) -> int:
    return notifications.notify_request_reminder(request_id)


@shared_task(name="approvals.grant_expiring_notify", **_RETRY)
def grant_expiring_notify(self, grant_id: int) -> int:
    return notifications.notify_grant_expiring(grant_id)


@shared_task(name="approvals.exception_expiring_notify", **_RETRY)
def exception_expiring_notify(self, exception_id: int) -> int:
    return notifications.notify_exception_expiring(exception_id)


@shared_task(name="approvals.extension_expiring_notify", **_RETRY)
def extension_expiring_notify(self, extension_id: int) -> int:
    return notifications.notify_extension_expiring(extension_id)


@shared_task(name="approvals.requests_remind", **_RETRY)
def requests_remind(self) -> int:
    return services().access_requests_remind()


@shared_task(name="approvals.requests_expire", **_RETRY)
def requests_expire(self) -> int:
    return services().access_requests_expire()


@shared_task(name="approvals.grants_warn_expiring", **_RETRY)
def grants_warn_expiring(self) -> int:
    return services().grants_warn_expiring()


@shared_task(name="approvals.grants_expire", **_RETRY)
def grants_expire(self) -> int:
    return services().grants_expire()


def services():
    # The services module enqueues these tasks, so it is imported when first needed.
    from governance.approvals import services as module

    return module
