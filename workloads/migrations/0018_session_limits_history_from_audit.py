"""Rebuild each workload's session-limits history from the audit trail, which only grows:
registrations (no limits until classified), classifications (the tier's defaults, with the
overrides the new tier no longer allows dropped) and session-policy edits, oldest first.
Without it, the first edit after 0017 would claim that the limits it replaces held since
the workload was registered, over any earlier edit."""

from django.db import migrations

LIMIT_FIELDS = (
    "max_session_seconds",
    "idle_timeout_seconds",
    "max_tool_calls",
    "max_reasoning_tokens",
    "loop_threshold",
)
ACTIONS = ("workload.register", "workload.classify", "session_policy.update")


def _limits(tier: dict | None, overrides: dict) -> dict:
    if tier is None:
        return dict.fromkeys(LIMIT_FIELDS)
    return {
        name: tier[name] if overrides.get(name) is None else overrides[name]
        for name in LIMIT_FIELDS
    }


def rebuild(apps, schema_editor):
    AuditEvent = apps.get_model("governance", "AuditEvent")
    SensitivityTier = apps.get_model("workloads", "SensitivityTier")
    SessionLimitsChange = apps.get_model("workloads", "SessionLimitsChange")
    Workload = apps.get_model("workloads", "Workload")
    tiers = {
        tier["id"]: tier for tier in SensitivityTier.objects.values("id", *LIMIT_FIELDS)
    }
    workloads = dict(Workload.objects.values_list("id", "created_at"))
    recorded = set(SessionLimitsChange.objects.values_list("workload_id", flat=True).distinct())
    events = (
        AuditEvent.objects.filter(
            object_type__in=("workloads.workload", "workloads.sessionpolicy"), action__in=ACTIONS
        )
        .order_by("id")
        .values_list("object_id", "action", "created_at", "before", "after")
        .iterator()
    )
    # workload id -> [tier, overrides, history]
    replay: dict[int, list] = {}
    for object_id, action, at, before, after in events:
        try:
            workload_id = int(object_id)
        except ValueError:
            continue
        if workload_id not in workloads or workload_id in recorded:
            continue
        before, after = before or {}, after or {}
        state = replay.get(workload_id)
        if state is None:
            # What held before the first event: the tier it names, the overrides it replaces.
            tier = tiers.get(before.get("tier")) if action == "workload.classify" else None
            overrides = (
                {name: before.get(name) for name in LIMIT_FIELDS}
                if action == "session_policy.update"
                else {}
            )
            if action == "session_policy.update":
                tier = _first_tier(workload_id, AuditEvent, tiers, apps)
            state = replay[workload_id] = [
                tier,
                overrides,
                [(workloads[workload_id], _limits(tier, overrides))],
            ]
        tier, overrides, history = state
        if action == "workload.classify":
            tier = tiers.get(after.get("tier"))
            if tier is not None:  # the overrides the new tier no longer allows are dropped
                overrides = {
                    name: value
                    for name, value in overrides.items()
                    if value is not None and value <= tier[name]
                }
        elif action == "session_policy.update":
            overrides = {name: after.get(name) for name in LIMIT_FIELDS}
        limits = _limits(tier, overrides)
        if limits != history[-1][1]:
            history.append((max(at, history[-1][0]), limits))
        state[0], state[1] = tier, overrides
    SessionLimitsChange.objects.bulk_create(
        [
            SessionLimitsChange(workload_id=workload_id, effective_from=since, limits=limits)
            for workload_id, (_tier, _overrides, history) in replay.items()
            for since, limits in history
        ],
        batch_size=1000,
    )


def _first_tier(workload_id, AuditEvent, tiers, apps):
    """The tier a workload had before its first policy edit, when no earlier event says: the
    one its first classification moved it from, else the one it has now."""
    first = (
        AuditEvent.objects.filter(
            object_type="workloads.workload",
            object_id=str(workload_id),
            action="workload.classify",
        )
        .order_by("id")
        .values_list("before", flat=True)
        .first()
    )
    if first is not None:
        return tiers.get((first or {}).get("tier"))
    Workload = apps.get_model("workloads", "Workload")
    return tiers.get(Workload.objects.filter(pk=workload_id).values_list("tier_id", flat=True)[0])


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0017_containment_records_kept_through_merges"),
        ("workloads", "0017_session_limits_history"),
    ]

    operations = [migrations.RunPython(rebuild, migrations.RunPython.noop)]
