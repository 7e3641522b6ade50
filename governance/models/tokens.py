"""Service tokens: how agent runtimes and gateways authenticate."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class TokenScope(models.TextChoices):
    READ = "read", "Read the catalogue and workflow"
    WRITE = "write", "Register workloads and file requests"
    DECIDE = "decide", "Ask for decisions"
    INGEST = "ingest", "Report usage events"


class ServiceToken(models.Model):
    """A named bearer token; only its SHA-256 is stored, the secret is shown once."""

    name = models.CharField(max_length=120, unique=True)
    prefix = models.CharField(max_length=12, help_text="First characters, to recognise it")
    token_hash = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    all_workloads = models.BooleanField(
        default=False, help_text="Not bound: may act for every workload."
    )
    workloads = models.ManyToManyField("workloads.Workload", blank=True, related_name="tokens")
    acts_for = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The user that writes through this token are attributed to, if any.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        permissions = [("manage_tokens", "Can create and revoke service tokens")]

    def __str__(self) -> str:
        return self.name

    def is_usable_at(self, moment) -> bool:
        return self.revoked_at is None and (self.expires_at is None or moment < self.expires_at)
