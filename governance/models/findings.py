"""Findings raised by the evaluator, their review, the containment they caused, and
re-evaluation jobs."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from workloads.models import Entitlement, Session, Workload


class FindingKind(models.TextChoices):
    UNENTITLED_TOOL = "unentitled_tool", "Unentitled tool use"
    EXPIRED_GRANT_USE = "expired_grant_use", "Use of an expired or revoked grant"
    SUSPENDED_WORKLOAD_USE = "suspended_workload_use", "Activity of a suspended workload"
    UNCLASSIFIED_WORKLOAD_USE = "unclassified_workload_use", "Activity of an unclassified workload"
    FORBIDDEN_COMBINATION = "forbidden_combination", "Forbidden tool combination"
    SESSION_OVERRUN = "session_overrun", "Session overrun"
    IDLE_TIMEOUT = "idle_timeout", "Idle timeout"
    BUDGET_EXCEEDED = "budget_exceeded", "Budget exceeded"
    REASONING_LOOP = "reasoning_loop", "Reasoning loop"
    INTENT_DRIFT = "intent_drift", "Intent drift"
    UNAPPROVED_SESSION_USE = "unapproved_session_use", "Tool use in a session nobody approved"


class Severity(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


SEVERITY_RANK = {"low": 1, "medium": 2, "high": 3, "critical": 4}


class Finding(models.Model):
    """One detected breach of a workload's mandate, raised exactly once (`dedupe_key`)."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        RESOLVED = "resolved", "Resolved"
        FALSE_POSITIVE = "false_positive", "False positive"

    kind = models.CharField(max_length=32, choices=FindingKind.choices)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    severity_rank = models.PositiveSmallIntegerField(default=1, help_text="For sorting.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    workload = models.ForeignKey(Workload, on_delete=models.CASCADE, related_name="findings")
    session = models.ForeignKey(
        Session, on_delete=models.CASCADE, null=True, blank=True, related_name="findings"
    )
    tool = models.CharField(max_length=80, blank=True, help_text="The tool involved, if any.")
    summary = models.CharField(max_length=300)
    evidence = models.JSONField(default=list, blank=True, help_text="Usage event ids.")
    details = models.JSONField(default=dict, blank=True, help_text="Which signal fired, values.")
    dedupe_key = models.CharField(max_length=200, unique=True)
    occurred_at = models.DateTimeField(help_text="When the evidence happened.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="assigned_findings",
    )
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "-created_at"]),
            models.Index(fields=["kind", "-created_at"]),
            models.Index(fields=["severity", "-created_at"]),
            models.Index(fields=["workload", "status"]),
            models.Index(fields=["session"]),
            models.Index(fields=["assignee", "status"]),
            models.Index(fields=["-created_at", "-id"], name="finding_recent"),
            models.Index(fields=["-severity_rank", "-created_at", "-id"], name="finding_severe"),
        ]
        permissions = [
            ("view_findings", "Can see findings and session timelines"),
            ("triage_finding", "Can acknowledge, resolve, assign and comment on findings"),
            ("reverse_containment", "Can undo a suspension or revocation caused by a finding"),
            ("contain_finding", "Can suspend the workload or revoke the grant a finding names"),
            ("run_reevaluation", "Can re-run the detectors over past sessions"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk}"


class FindingComment(models.Model):
    """A reviewer's note on a finding."""

    finding = models.ForeignKey(Finding, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["finding", "created_at"])]

    def __str__(self) -> str:
        return f"comment on {self.finding_id}"


class ContainmentAction(models.Model):
    """What a finding did to its workload (suspend, require approval for each session, or
    narrow its session limits) or grant (revoke): by the tier's rule for a critical finding, or
    by a person's hand for any other; reversible either way."""

    class Action(models.TextChoices):
        SUSPEND_WORKLOAD = "suspend_workload", "Suspended the workload"
        REVOKE_GRANT = "revoke_grant", "Revoked the grant"
        GATE_SESSIONS = "gate_sessions", "Required an approval for each session"
        NARROW_SESSIONS = "narrow_sessions", "Narrowed the session limits"

    finding = models.ForeignKey(Finding, on_delete=models.CASCADE, related_name="containment")
    action = models.CharField(max_length=24, choices=Action.choices)
    workload = models.ForeignKey(Workload, on_delete=models.CASCADE, related_name="+")
    grant = models.ForeignKey(
        Entitlement, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # A narrowing's caps, {limit name: highest value}: they hold over the session policy, tier
    # defaults and extensions alike until the record is reversed. Empty for other actions.
    limits = models.JSONField(default=dict, blank=True)
    # Why, as the person said it (or the tier's rule), and why it was reversed: shown where
    # the measure is, not only in the audit trail that reviewers cannot open.
    reason = models.CharField(max_length=500, blank=True)
    reverse_reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Who contained by hand; empty when the tier's rule did it as the finding was raised.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    reversed_at = models.DateTimeField(null=True, blank=True)
    reversed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["finding"]),
            # The findings queue's "containment in force" filter, and each row's marker.
            models.Index(
                fields=["finding"],
                name="containment_in_force",
                condition=Q(reversed_at__isnull=True),
            ),
            # The caps in force, read with every policy compile.
            models.Index(
                fields=["workload"],
                name="narrowing_in_force",
                condition=Q(action="narrow_sessions", reversed_at__isnull=True),
            ),
        ]
        constraints = [
            # One record in force per workload-wide measure and finding; reversed ones stay
            # as history. Narrowings are not held to it: a finding merged into another
            # brings its narrowing along whole, so each keeps the time it was taken (what
            # evaluation reads to judge sessions by the caps of their time).
            models.UniqueConstraint(
                fields=["finding", "action"],
                condition=Q(reversed_at__isnull=True)
                & ~Q(action__in=("revoke_grant", "narrow_sessions")),
                name="containment_once_in_force",
            ),
            # Revocations: one in force per grant. A finding merged into another brings its
            # own revocation along when it revoked a different grant (one issued again in
            # between), so each revoked grant keeps the record that can restore it.
            models.UniqueConstraint(
                fields=["finding", "grant"],
                condition=Q(reversed_at__isnull=True, action="revoke_grant"),
                name="revocation_once_in_force",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} for finding {self.finding_id}"


class ReevaluationJob(models.Model):
    """Re-running the detectors over the sessions of the last N days, in bounded steps."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    days = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    since = models.DateTimeField()
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    cursor = models.BigIntegerField(default=0, help_text="Last session id processed.")
    findings_raised = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status"], name="reevaluation_active", condition=~Q(status="done"))
        ]

    def __str__(self) -> str:
        return f"re-evaluation #{self.pk} ({self.days} days)"

    @property
    def percent(self) -> int:
        if self.status == self.Status.DONE:
            return 100
        return int(self.done * 100 / self.total) if self.total else 0
