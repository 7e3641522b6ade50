from governance.models.audit import AuditEvent
from governance.models.decisions import Decision, DecisionCount
from governance.models.findings import (
    ContainmentAction,
    Finding,
    FindingComment,
    FindingKind,
    ReevaluationJob,
    Severity,
)
from governance.models.policy import PolicyState
from governance.models.requests import AccessRequest, ApprovalDecision, ApprovalStep
from governance.models.tokens import ServiceToken

__all__ = [
    "AccessRequest",
    "ApprovalDecision",
    "ApprovalStep",
    "AuditEvent",
    "ContainmentAction",
    "Decision",
    "DecisionCount",
    "Finding",
    "FindingComment",
    "FindingKind",
    "PolicyState",
    "ReevaluationJob",
    "ServiceToken",
    "Severity",
]
