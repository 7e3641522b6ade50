"""REST shapes of sessions and their usage events: explicit fields, read-only."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from governance.usage.filters import SessionState
from workloads.models import Session, UsageEvent


class _SessionBase(serializers.ModelSerializer):
    workload = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    state = serializers.SerializerMethodField(help_text="open until an end is reported.")

    @extend_schema_field(serializers.ChoiceField(choices=SessionState.choices))
    def get_state(self, session: Session) -> str:
        return SessionState.OPEN if session.ended_at is None else SessionState.ENDED


SESSION_FIELDS = [
    "id",
    "external_id",
    "workload",
    "source",
    "state",
    "started_at",
    "last_event_at",
    "ended_at",
]


class SessionOutput(_SessionBase):
    finding_count = serializers.IntegerField(read_only=True)
    event_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Session
        fields = [*SESSION_FIELDS, "event_count", "finding_count"]
        read_only_fields = fields


class SessionCountsOutput(serializers.Serializer):
    events = serializers.IntegerField()
    events_by_type = serializers.DictField(
        child=serializers.IntegerField(), help_text="Event type → how many."
    )
    tool_calls = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    reasoning_tokens = serializers.IntegerField()


class SessionDetailOutput(_SessionBase):
    duration_seconds = serializers.SerializerMethodField(
        help_text="From start to end (or to the last event while open)."
    )
    counts = serializers.SerializerMethodField()
    findings = serializers.SerializerMethodField(help_text="Ids of the findings it raised.")
    original_request = serializers.SerializerMethodField(
        help_text="What the session was asked. Null unless the workload's logging level is "
        "full_trace, as for event content."
    )
    final_action = serializers.SerializerMethodField(
        help_text="What it did in the end. Null unless the logging level is full_trace."
    )

    class Meta:
        model = Session
        fields = [
            *SESSION_FIELDS,
            "original_request",
            "final_action",
            "duration_seconds",
            "counts",
            "findings",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_duration_seconds(self, session: Session) -> float | None:
        end = session.ended_at or session.last_event_at
        if session.started_at is None or end is None:
            return None
        return round((end - session.started_at).total_seconds(), 3)

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_original_request(self, session: Session) -> str | None:
        return session.original_request if self.context["full_trace"] else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_final_action(self, session: Session) -> str | None:
        return session.final_action if self.context["full_trace"] else None

    @extend_schema_field(SessionCountsOutput)
    def get_counts(self, session: Session) -> dict:
        summary = self.context["summary"]
        return {name: summary[name] for name in SessionCountsOutput().fields}

    @extend_schema_field(serializers.ListField(child=serializers.IntegerField()))
    def get_findings(self, session: Session) -> list[int]:
        return self.context["summary"]["finding_ids"]


class UsageEventOutput(serializers.ModelSerializer):
    content = serializers.SerializerMethodField(
        help_text="Reasoning text, tool result, original request or final action. Null unless "
        "the workload's logging level is full_trace."
    )
    evaluated = serializers.BooleanField(
        read_only=True, help_text="False while the event waits for evaluation."
    )

    class Meta:
        model = UsageEvent
        fields = [
            "id",
            "event_id",
            "type",
            "occurred_at",
            "received_at",
            "tool",
            "tool_call_id",
            "arguments_hash",
            "input_tokens",
            "output_tokens",
            "reasoning_tokens",
            "duration_ms",
            "attributes",
            "content",
            "evaluated",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_content(self, event: UsageEvent) -> str | None:
        return event.content if self.context.get("full_trace") else None
