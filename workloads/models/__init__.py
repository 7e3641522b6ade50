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

__all__ = [
    "CapabilityClass",
    "CombinationRule",
    "Entitlement",
    "Environment",
    "LoggingLevel",
    "ModelFamily",
    "RiskLevel",
    "SensitivityTier",
    "SessionPolicy",
    "Tool",
    "Workload",
]
