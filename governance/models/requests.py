"""Access requests and the approvals they need.

A request moves one way: pending -> approved | denied | cancelled | expired. The steps it
needs are set when it is filed (tier approvals, one iam_admin step per combination rule
that needs an exception, extra steps the workload's state asks for) and topped up at
approval when a stricter tier now asks for more. Each decision fills one step; the database
refuses self-approval, owner approval and a second decision by one person.
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone


class AccessRequest(models.Model):
    """An owner's request for one workload: tools, a longer session window, or leave to run one
    session while the workload's sessions need approval (a containment)."""

    class Kind(models.TextChoices):
        TOOLS = "tools", "Tools"
        SESSION_WINDOW = "session_window", "Longer session window"
        SESSION_RUN = "session_run", "Run one session"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        DENIED = "denied", "Denied"
        CANCELLED = "cancelled", "Cancelled"
        EXPIRED = "expired", "Expired"

    workload = models.ForeignKey(
        "workloads.Workload", on_delete=models.CASCADE, related_name="access_requests"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.TOOLS)
    tools = models.ManyToManyField("workloads.Tool", blank=True, related_name="access_requests")
    justification = models.TextField()
    duration_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Grant length counted from approval."
    )
    valid_until = models.DateTimeField(null=True, blank=True, help_text="Fixed grant end.")
    max_session_seconds = models.PositiveIntegerField(null=True, blank=True)
    session = models.CharField(
        max_length=200, blank=True, help_text="The session a session-run request asks to run."
    )
    max_tool_calls = models.PositiveIntegerField(null=True, blank=True)
    max_reasoning_tokens = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="access_requests"
    )
    via_token = models.ForeignKey(
        "governance.ServiceToken",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The service token that filed it on the requester's behalf, if any.",
    )
    impact = models.JSONField(default=dict, blank=True, help_text="The preview when filed.")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(help_text="A pending request expires at this time.")
    reminded_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True, help_text="Why it was denied or cancelled.")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                name="request_status_known",
                condition=Q(status__in=["pending", "approved", "denied", "cancelled", "expired"]),
            ),
            models.CheckConstraint(
                name="request_kind_known",
                condition=Q(kind__in=["tools", "session_window", "session_run"]),
            ),
            # One pending request per session: a second filing is a 409, not a second
            # approval that would restart the first one's window.
            models.UniqueConstraint(
                fields=["workload", "session"],
                condition=Q(kind="session_run", status="pending"),
                name="one_pending_request_per_session",
            ),
            models.CheckConstraint(
                name="request_session_run_names_its_session",
                condition=Q(kind="session_run", session__gt="")
                | (~Q(kind="session_run") & Q(session="")),
            ),
            models.CheckConstraint(
                name="request_decided_when_closed",
                condition=Q(status="pending", decided_at__isnull=True)
                | (~Q(status="pending") & Q(decided_at__isnull=False)),
            ),
            models.CheckConstraint(
                name="request_one_end",
                condition=Q(duration_days__isnull=True) | Q(valid_until__isnull=True),
            ),
            models.CheckConstraint(
                name="request_window_asks_for_something",
                condition=~Q(kind="session_window")
                | Q(max_session_seconds__isnull=False)
                | Q(max_tool_calls__isnull=False)
                | Q(max_reasoning_tokens__isnull=False),
            ),
        ]
        indexes = [
            models.Index(fields=["status", "-created_at"]),
            models.Index(fields=["status", "expires_at"]),
            models.Index(fields=["workload", "status"]),
            models.Index(fields=["kind", "status"]),
            models.Index(fields=["requested_by", "-created_at"]),
            # Unfiltered lists (the API, "all requests"): newest first without a sort.
            models.Index(fields=["-created_at", "-id"], name="request_recent"),
        ]
        permissions = [
            ("request_entitlement", "Can request tools and session windows for owned workloads"),
            ("approve_request", "Can approve or deny access requests"),
            ("grant_exception", "Can approve exceptions to combination rules"),
        ]

    def __str__(self) -> str:
        return f"request #{self.pk} for {self.workload_id}"

    @property
    def is_pending(self) -> bool:
        return self.status == self.Status.PENDING

    @property
    def session_approval_hours(self) -> int:
        """How long a session-run request's approval lets its session run."""
        return settings.SESSION_APPROVAL_HOURS


class ApprovalStep(models.Model):
    """One approval a request needs: an approver's, or an iam_admin's exception to rules."""

    class Kind(models.TextChoices):
        APPROVAL = "approval", "Approval"
        EXCEPTION = "exception", "Rule exception (iam_admin, with justification)"

    request = models.ForeignKey(AccessRequest, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    rules = models.JSONField(
        default=list, blank=True, help_text="Slugs of the rules an exception step excepts."
    )
    reason = models.CharField(max_length=200, blank=True, help_text="Why this step is required.")

    class Meta:
        ordering = ["request", "position"]
        constraints = [
            models.UniqueConstraint(fields=["request", "position"], name="step_position_unique"),
            models.CheckConstraint(
                name="step_kind_known", condition=Q(kind__in=["approval", "exception"])
            ),
        ]

    def __str__(self) -> str:
        return f"step {self.position} of request #{self.request_id}"


class ApprovalDecision(models.Model):
    """One person's approve or deny on a request. Requester and owner are copied in so the
    database itself refuses self-approval and owner approval."""

    class Verdict(models.TextChoices):
        APPROVE = "approve", "Approve"
        DENY = "deny", "Deny"

    request = models.ForeignKey(AccessRequest, on_delete=models.CASCADE, related_name="decisions")
    step = models.OneToOneField(
        ApprovalStep, on_delete=models.CASCADE, null=True, blank=True, related_name="decision"
    )
    approver = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="approval_decisions"
    )
    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    workload_owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    verdict = models.CharField(max_length=8, choices=Verdict.choices)
    comment = models.TextField(blank=True)
    justification = models.TextField(blank=True, help_text="An exception's written reason.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["request", "approver"], name="one_decision_per_approver"
            ),
            models.UniqueConstraint(
                fields=["request"], condition=Q(verdict="deny"), name="one_denial_per_request"
            ),
            models.CheckConstraint(
                name="approver_is_not_requester", condition=~Q(approver=F("requester"))
            ),
            models.CheckConstraint(
                name="approver_is_not_workload_owner", condition=~Q(approver=F("workload_owner"))
            ),
            models.CheckConstraint(
                name="approval_fills_a_step",
                condition=Q(verdict="deny", step__isnull=True)
                | Q(verdict="approve", step__isnull=False),
            ),
        ]
        indexes = [models.Index(fields=["approver", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.verdict} by {self.approver_id} on request #{self.request_id}"
