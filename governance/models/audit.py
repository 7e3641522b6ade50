"""The append-only audit trail."""

from typing import Protocol, cast

from django.conf import settings
from django.db import models
from django.utils import timezone


class AuditImmutable(RuntimeError):
    """Raised on any ORM attempt to change or remove an audit event."""


class _ManagerFlag(Protocol):
    """The attribute Django reads off a queryset method to keep it off managers; typed here
    because the checker knows no such attribute on a function."""

    queryset_only: bool


class AuditEventQuerySet(models.QuerySet):
    """No bulk rewriting of history: `update()`, `bulk_update()` and `delete()` are refused."""

    def update(self, **kwargs):
        raise AuditImmutable("Audit events are append-only; they cannot be updated.")

    def bulk_update(self, objs, fields, batch_size=None):
        raise AuditImmutable("Audit events are append-only; they cannot be updated.")

    def delete(self):
        raise AuditImmutable("Audit events are append-only; they cannot be deleted.")

    cast(_ManagerFlag, update).queryset_only = True
    cast(_ManagerFlag, delete).queryset_only = True


class AuditEvent(models.Model):
    """One state change, hash-chained to the one before so an edited row breaks the chain.

    Append-only at the model level: saving an existing row and deleting are refused. What
    the ORM cannot stop (direct SQL) is what `manage.py verify_audit` detects.
    """

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    actor_label = models.CharField(max_length=150, help_text="User name or token name")
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["object_type", "object_id", "-id"]),
            models.Index(fields=["action", "-id"]),
            models.Index(fields=["actor_label", "-id"]),
            models.Index(fields=["created_at"]),
        ]
        permissions = [("view_audit_log", "Can read the audit log")]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type}:{self.object_id}"

    def save(self, *args, **kwargs):
        if not self._state.adding or kwargs.get("force_update") or kwargs.get("update_fields"):
            raise AuditImmutable("Audit events are append-only; they cannot be updated.")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditImmutable("Audit events are append-only; they cannot be deleted.")
