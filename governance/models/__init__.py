from governance.models.audit import AuditEvent
from governance.models.decisions import Decision
from governance.models.policy import PolicyState
from governance.models.tokens import ServiceToken

__all__ = ["AuditEvent", "Decision", "PolicyState", "ServiceToken"]
