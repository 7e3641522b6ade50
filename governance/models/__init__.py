from governance.models.audit import AuditEvent
from governance.models.findings import (
    ContainmentAction,
    Finding,
    FindingComment,
    FindingKind,
    ReevaluationJob,
    Severity,
)
from governance.models.policy import PolicyState
from governance.models.tokens import ServiceToken

__all__ = [
    "AuditEvent",
    "ContainmentAction",
    "Finding",
    "FindingComment",
    "FindingKind",
    "PolicyState",
    "ReevaluationJob",
    "ServiceToken",
    "Severity",
]
