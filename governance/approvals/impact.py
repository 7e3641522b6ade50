"""What a request would do, and which approvals it needs: pure, plain data in and out.

The preview the owner sees while picking tools, the steps a request is filed with and the
re-check at approval all come from here, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

from workloads.combinations import RuleSpec, rules_completed_by

FORBID = "forbid"
EXCEPTION_REQUIRED = "exception_required"
APPROVAL = "approval"
EXCEPTION = "exception"


@dataclass(frozen=True)
class StepSpec:
    """One approval a request needs. An exception step names the rules it excepts."""

    kind: str
    rules: tuple[str, ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class RuleHit:
    slug: str
    name: str
    effect: str


@dataclass(frozen=True)
class Impact:
    forbidden: list[RuleHit] = field(default_factory=list)
    exceptions_needed: list[RuleHit] = field(default_factory=list)
    exceptions_in_force: list[RuleHit] = field(default_factory=list)
    redundant_grants: list[str] = field(default_factory=list)
    approvals_required: int = 1
    steps: list[StepSpec] = field(default_factory=list)

    @property
    def blocked(self) -> bool:
        return bool(self.forbidden)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["blocked"] = self.blocked
        return data


def approval_steps_required(
    *,
    approvals_required: int,
    exception_rules: Iterable[tuple[str, str]] = (),
    has_open_high_findings: bool = False,
) -> list[StepSpec]:
    """The steps a request needs: the tier's approvals, one more when the workload has open
    high-severity findings, and one extra iam_admin step (with a written justification) that
    excepts every (rule slug, rule name) of effect exception-required the request trips."""
    count = max(1, approvals_required)
    steps = [StepSpec(APPROVAL, reason="Required by the tier") for _ in range(count)]
    if has_open_high_findings:
        steps.append(StepSpec(APPROVAL, reason="The workload has open high-severity findings"))
    exception_rules = list(exception_rules)
    if exception_rules:
        names = ", ".join(name for _, name in exception_rules)
        steps.append(
            StepSpec(
                EXCEPTION,
                rules=tuple(slug for slug, _ in exception_rules),
                reason=f"Exception to {names} (iam_admin, with justification)",
            )
        )
    return steps


# One person lets one session of a gated workload run: the gate is the containment, and
# each approval reopens only grants the workload already holds, for one session.
SESSION_RUN_STEP = StepSpec(
    APPROVAL, reason="One approver lets one session run while its sessions need approval"
)


def session_run_impact() -> Impact:
    return Impact(approvals_required=1, steps=[SESSION_RUN_STEP])


def request_impact(
    *,
    rules: Iterable[RuleSpec],
    current_tools: Mapping[str, str],
    requested_tools: Mapping[str, str],
    exceptions_in_force: Iterable[str] = (),
    approvals_required: int = 1,
    has_open_high_findings: bool = False,
) -> Impact:
    """The impact of granting `requested_tools` (slug -> capability class) on top of
    `current_tools` (the grants valid now). `exceptions_in_force` are rule slugs the workload
    already holds a valid exception to; they need no new one."""
    in_force = set(exceptions_in_force)
    forbidden, needed, covered = [], [], []
    for rule in rules_completed_by(list(rules), current_tools, requested_tools):
        hit = RuleHit(rule.slug, rule.name, rule.effect)
        if rule.effect == FORBID:
            forbidden.append(hit)
        elif rule.slug in in_force:
            covered.append(hit)
        else:
            needed.append(hit)
    steps = approval_steps_required(
        approvals_required=approvals_required,
        exception_rules=[(hit.slug, hit.name) for hit in needed],
        has_open_high_findings=has_open_high_findings,
    )
    return Impact(
        forbidden=forbidden,
        exceptions_needed=needed,
        exceptions_in_force=covered,
        redundant_grants=sorted(set(requested_tools) & set(current_tools)),
        approvals_required=max(1, approvals_required),
        steps=steps,
    )
