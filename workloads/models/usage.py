"""What workloads actually did: agent sessions and the usage events services report."""

from django.db import models
from django.db.models import Q
from django.utils import timezone

from workloads.models.catalogue import Workload, related_label


class Session(models.Model):
    """One agent run of a workload, identified by the client's session id."""

    class Source(models.TextChoices):
        NATIVE = "native", "Mandate JSON"
        OTLP = "otlp", "OpenTelemetry"

    workload = models.ForeignKey(Workload, on_delete=models.CASCADE, related_name="sessions")
    external_id = models.CharField(max_length=200)
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.NATIVE)
    original_request = models.TextField(blank=True)
    final_action = models.TextField(blank=True)
    # When the events they came from happened: batches can arrive out of order (a retry, a
    # replay), and only an earlier start or a later final action may replace what is kept.
    original_request_at = models.DateTimeField(null=True, blank=True)
    final_action_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Incremental evaluation state (tools used, counters, recent call hashes); owned by
    # the evaluator so a run reads one row per session instead of the session's history.
    evaluation_state = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(fields=["workload", "external_id"], name="session_per_workload")
        ]
        indexes = [
            models.Index(fields=["workload", "-started_at"]),
            # The sessions list across workloads: newest first, and since/until.
            models.Index(fields=["-started_at", "-id"], name="session_recent"),
            models.Index(
                fields=["last_event_at"], name="open_session_activity", condition=Q(ended_at=None)
            ),
        ]

    def __str__(self) -> str:
        return f"{related_label(self, 'workload')}/{self.external_id}"


class EventType(models.TextChoices):
    SESSION_START = "session_start", "Session start"
    REASONING_STEP = "reasoning_step", "Reasoning step"
    TOOL_CALL = "tool_call", "Tool call"
    TOOL_RESULT = "tool_result", "Tool result"
    FINAL_ACTION = "final_action", "Final action"
    SESSION_END = "session_end", "Session end"


class SessionTrace(models.Model):
    """The session an OpenTelemetry trace belongs to, once one of its spans named it.

    Spans end (and are exported) before their parents, so the spans of a long agent run often
    arrive before the root span that carries `gen_ai.conversation.id`. Those early spans are
    kept in a session keyed by the trace id; when the naming span arrives, that session is
    folded into the named one (`governance.ingest.traces`), and later spans of the trace
    find their session here.
    """

    workload = models.ForeignKey(Workload, on_delete=models.CASCADE, related_name="+")
    trace_id = models.CharField(max_length=32)
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="traces")
    # Set (and committed) before a fold, cleared by it: what the sweeper still has to fold.
    fold_pending = models.BooleanField(default=False)
    # The sweeper looks again at recent links for a trace-keyed session that a batch running
    # alongside the link committed after it (and so after the fold).
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workload", "trace_id"], name="trace_per_workload")
        ]
        indexes = [
            models.Index(
                fields=["id"], name="trace_fold_pending", condition=models.Q(fold_pending=True)
            ),
            models.Index(fields=["created_at"], name="trace_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.trace_id} → {self.session_id}"


class UsageEvent(models.Model):
    """One reported event. Stored before anything evaluates it: until then a
    `PendingEvaluation` row names it (a database trigger adds that row on every insert).

    `event_id` is the client's idempotency key (for OTLP spans `<trace id>:<span id>`), unique
    per workload. The tool is kept as the reported slug, not a foreign key: use of a tool the
    catalogue does not know is itself evidence.
    """

    id = models.BigAutoField(primary_key=True)
    # No single-column FK indexes: (workload, event_id), (workload, -occurred_at) and
    # (session, occurred_at) lead with these columns, and every index slows ingestion.
    workload = models.ForeignKey(
        Workload, on_delete=models.CASCADE, related_name="events", db_index=False
    )
    session = models.ForeignKey(
        Session, on_delete=models.CASCADE, related_name="events", db_index=False
    )
    event_id = models.CharField(max_length=200)
    type = models.CharField(max_length=16, choices=EventType.choices)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)
    tool = models.CharField(max_length=80, blank=True)
    tool_call_id = models.CharField(max_length=200, blank=True)
    arguments_hash = models.CharField(
        max_length=64, blank=True, help_text="SHA-256 of the canonical JSON of the tool arguments"
    )
    content = models.TextField(
        blank=True, help_text="Original request, reasoning text, or the final action described"
    )
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    attributes = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["occurred_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["workload", "event_id"], name="event_once_per_workload")
        ]
        indexes = [
            models.Index(fields=["session", "occurred_at"]),
            models.Index(fields=["workload", "-occurred_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class PendingEvaluation(models.Model):
    """An event stored and not evaluated yet: evaluation's work list, in the database.

    A narrow table of its own rather than a flag on the event: claiming a batch deletes these
    small rows instead of rewriting every wide event row and its index entries (about 4 µs an
    event against 16; bench/README.md). A trigger (migration 0012) adds the row in the same
    statement that stores the event, whatever stores it; evaluation deletes it in the
    transaction that records the event's findings, so a rollback leaves it pending.
    """

    # No foreign-key constraint in the database: the trigger inserts the row in the statement
    # that stores its event, and a constraint's per-row check at commit cost ingestion about
    # a tenth of its rate. Deleting an event through the ORM still deletes its row.
    event = models.OneToOneField(
        UsageEvent,
        primary_key=True,
        on_delete=models.CASCADE,
        db_constraint=False,
        related_name="pending_evaluation",
    )

    def __str__(self) -> str:
        return f"pending {self.event_id}"
