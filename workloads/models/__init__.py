from workloads.models.catalogue import (
    CapabilityClass,
    CombinationRule,
    Entitlement,
    Environment,
    LoggingLevel,
    ModelFamily,
    RiskLevel,
    SensitivityTier,
    SessionPolicy,
    Tool,
    Workload,
)
from workloads.models.usage import EventType, Session, UsageEvent

__all__ = [
    "CapabilityClass",
    "CombinationRule",
    "Entitlement",
    "Environment",
    "EventType",
    "LoggingLevel",
    "ModelFamily",
    "RiskLevel",
    "SensitivityTier",
    "Session",
    "SessionPolicy",
    "Tool",
    "UsageEvent",
    "Workload",
]
