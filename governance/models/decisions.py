"""The decision log: every answer the decision endpoint gave, written in batches."""

from django.db import models
from django.utils import timezone


class Decision(models.Model):
    """One answer to "may workload W call tool T in session S now?".

    Workload, tool and session are kept as the slugs and id the caller sent, not foreign keys:
    a question about an unknown workload or tool is itself worth keeping. Rows are written in
    batches by `governance.decisions.log`, never on the request's own path.
    """

    class Answer(models.TextChoices):
        ALLOW = "allow", "Allow"
        DENY = "deny", "Deny"

    id = models.BigAutoField(primary_key=True)
    decided_at = models.DateTimeField(default=timezone.now)
    workload = models.CharField(max_length=80)
    tool = models.CharField(max_length=80)
    session = models.CharField(max_length=200, blank=True)
    decision = models.CharField(max_length=8, choices=Answer.choices)
    reason_code = models.CharField(max_length=40, help_text="The first reason's code")
    reasons = models.JSONField(default=list)
    policy_version = models.PositiveBigIntegerField()
    latency_us = models.PositiveIntegerField(help_text="Mandate's own time for this answer")
    # No database constraint and no index: a foreign-key check per logged row cost the writer
    # about a third of its database time (bench/README.md). Tokens are revoked, never deleted,
    # so the id always resolves; the console joins on it for the 50 rows of a page.
    token = models.ForeignKey(
        "governance.ServiceToken",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        null=True,
        blank=True,
        related_name="+",
    )
    correlation_id = models.CharField(max_length=64, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    context = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-decided_at", "-id"]
        indexes = [
            models.Index(fields=["-decided_at", "-id"], name="decision_recent"),
            models.Index(fields=["workload", "-decided_at"], name="decision_by_workload"),
            models.Index(fields=["tool", "-decided_at"], name="decision_by_tool"),
            # Partial indexes: most rows are sessionless allows, and they skip both. "allow"
            # is the common answer, so filtering for it walks decision_recent.
            models.Index(
                fields=["-decided_at"],
                name="decision_denied",
                condition=models.Q(decision="deny"),
            ),
            # Session first: the console may filter by session alone, and with the workload
            # (the timeline's query) both columns are still equalities before decided_at.
            models.Index(
                fields=["session", "workload", "decided_at"],
                name="decision_by_session",
                condition=~models.Q(session=""),
            ),
        ]
        permissions = [("view_decisions", "Can read the decision log")]

    def __str__(self) -> str:
        return f"{self.decision} {self.workload}/{self.tool}"


class DecisionCount(models.Model):
    """Decisions per hour, answer and first reason: what the decision log's charts read (the
    log itself grows too fast to count on a page view). The log writer keeps it, in the
    transaction that writes the rows it counts."""

    hour = models.DateTimeField()
    decision = models.CharField(max_length=8, choices=Decision.Answer.choices)
    reason_code = models.CharField(max_length=40)
    n = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            # Also the index for "the last N hours" (hour leads).
            models.UniqueConstraint(
                fields=["hour", "decision", "reason_code"], name="decision_count_bucket"
            )
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h {self.decision} {self.reason_code}: {self.n}"
