"""The catalogue: what each reasoning-model workload is, and what it may touch."""

from typing import cast

from django.conf import settings
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

# What a slug field allows anyway (Django's slug check has no dots), in lower case: the
# message must not promise dots that the field then refuses.
slug_validator = RegexValidator(
    r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$",
    "Use lowercase letters and digits, with single - or _ between them.",
)


def related_label(instance: models.Model, name: str) -> str:
    """The related object's name when it is already loaded, else its id: a readable
    `str()` for audit records without a query behind every call."""
    field = cast(models.ForeignKey, instance._meta.get_field(name))  # every caller names one
    if field.is_cached(instance):
        related = field.get_cached_value(instance)
        if related is not None:
            return str(related)
    return str(getattr(instance, field.attname))


class CapabilityClass(models.TextChoices):
    WEB_ACCESS = "web_access", "Web access"
    FILE_READ = "file_read", "File read"
    FILE_WRITE = "file_write", "File write"
    CODE_EXECUTION = "code_execution", "Code execution"
    DOWNSTREAM_API = "downstream_api", "Downstream API"
    MESSAGING = "messaging", "Messaging"
    DATA_STORE = "data_store", "Data store"
    GENERATION = "generation", "Generation only"


class RiskLevel(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


class LoggingLevel(models.TextChoices):
    METADATA = "metadata", "Metadata only"
    FULL_TRACE = "full_trace", "Full trace"


class ModelFamily(models.TextChoices):
    O1 = "o1", "OpenAI o1"
    CLAUDE_3_7_SONNET = "claude-3-7-sonnet", "Claude 3.7 Sonnet"
    DEEPSEEK_R1 = "deepseek-r1", "DeepSeek R1"
    OTHER = "other", "Other"


class Environment(models.TextChoices):
    DEVELOPMENT = "development", "Development"
    STAGING = "staging", "Staging"
    PRODUCTION = "production", "Production"


def _effective_status(obj) -> str:
    """Expired means expired even before the expiry job has run."""
    if obj.status == "active" and obj.valid_until is not None and obj.valid_until <= timezone.now():
        return "expired"
    return obj.status


class SensitivityTier(models.Model):
    """An ordered access-sensitivity tier; its defaults bound every workload classified into it."""

    slug = models.SlugField(unique=True, validators=[slug_validator])
    name = models.CharField(max_length=80)
    rank = models.PositiveSmallIntegerField(unique=True, help_text="Higher is more sensitive.")
    description = models.TextField(blank=True)
    max_session_seconds = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    idle_timeout_seconds = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    max_tool_calls = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    max_reasoning_tokens = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    loop_threshold = models.PositiveSmallIntegerField(validators=[MinValueValidator(2)])
    logging_level = models.CharField(max_length=16, choices=LoggingLevel.choices)
    retention_days = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    approvals_required = models.PositiveSmallIntegerField(default=1)
    max_grant_days = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    grant_end_required = models.BooleanField(
        default=False, help_text="Requests in this tier must give an end date."
    )
    suspend_on_critical = models.BooleanField(
        default=False, help_text="A critical finding suspends the workload."
    )
    revoke_on_critical = models.BooleanField(
        default=False, help_text="A critical finding revokes the grant it abused."
    )
    gate_sessions_on_high = models.BooleanField(
        default=False,
        help_text="A high or critical finding makes each session of the workload need an approval.",
    )

    class Meta:
        ordering = ["rank"]

    def __str__(self) -> str:
        return self.name


class Workload(models.Model):
    """A reasoning-model agent deployment whose tool use Mandate governs."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"
        RETIRED = "retired", "Retired"

    slug = models.SlugField(max_length=80, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=120)
    purpose = models.TextField(help_text="Declared purpose: the yardstick for drift.")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_workloads"
    )
    model_family = models.CharField(max_length=32, choices=ModelFamily.choices)
    environment = models.CharField(max_length=16, choices=Environment.choices)
    data_categories = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    tier = models.ForeignKey(
        SensitivityTier, on_delete=models.PROTECT, null=True, blank=True, related_name="workloads"
    )
    classification_rationale = models.TextField(blank=True)
    classified_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="classified_workloads",
    )
    classified_at = models.DateTimeField(null=True, blank=True)
    sessions_need_approval = models.BooleanField(
        default=False,
        help_text="Set by containment: every session needs an approved session request to run.",
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(
                name="workload_live_requires_tier",
                condition=~Q(status__in=["active", "suspended"]) | Q(tier__isnull=False),
            ),
        ]
        indexes = [
            models.Index(fields=["status", "slug"]),
            models.Index(fields=["tier", "slug"]),
            models.Index(fields=["owner", "slug"]),
            models.Index(fields=["name"]),
        ]
        permissions = [
            ("register_workload", "Can register workloads"),
            ("classify_workload", "Can classify workloads and change their status"),
            ("view_all_workloads", "Can see every workload, not only owned ones"),
        ]

    def __str__(self) -> str:
        return self.slug

    @property
    def is_classified(self) -> bool:
        return self.tier_id is not None


class Tool(models.Model):
    """A tool an agent may call, typed by the capability it grants."""

    slug = models.SlugField(max_length=80, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=120)
    capability_class = models.CharField(max_length=32, choices=CapabilityClass.choices)
    risk = models.CharField(max_length=16, choices=RiskLevel.choices, default=RiskLevel.MEDIUM)
    mcp_server = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["slug"]
        indexes = [models.Index(fields=["capability_class"])]
        permissions = [("manage_catalogue", "Can manage tools, rules and session policies")]

    def __str__(self) -> str:
        return self.slug


class SessionPolicy(models.Model):
    """A workload's session limits; a blank field takes the tier default, a set one tightens it."""

    LIMIT_FIELDS = (
        "max_session_seconds",
        "idle_timeout_seconds",
        "max_tool_calls",
        "max_reasoning_tokens",
        "loop_threshold",
    )

    workload = models.OneToOneField(
        Workload, on_delete=models.CASCADE, related_name="session_policy"
    )
    max_session_seconds = models.PositiveIntegerField(null=True, blank=True)
    idle_timeout_seconds = models.PositiveIntegerField(null=True, blank=True)
    max_tool_calls = models.PositiveIntegerField(null=True, blank=True)
    max_reasoning_tokens = models.PositiveIntegerField(null=True, blank=True)
    loop_threshold = models.PositiveSmallIntegerField(null=True, blank=True)
    logging_level = models.CharField(max_length=16, choices=LoggingLevel.choices, blank=True)
    retention_days = models.PositiveIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "session policies"

    def __str__(self) -> str:
        return f"session policy of {related_label(self, 'workload')}"

    def effective(self, tier: SensitivityTier | None = None) -> dict:
        """The limits in force: each override, else the tier's default."""
        tier = tier or self.workload.tier
        values = {}
        for name in (*self.LIMIT_FIELDS, "logging_level", "retention_days"):
            override = getattr(self, name)
            default = getattr(tier, name) if tier else None
            values[name] = override if override not in (None, "") else default
        return values


class SessionLimitsChange(models.Model):
    """A workload's session limits (policy and tier, before extensions and narrowings) from a
    moment on, appended whenever they change: evaluation judges a session by the limits of
    its own time, however late it runs."""

    workload = models.ForeignKey(
        Workload, on_delete=models.CASCADE, related_name="session_limits_changes"
    )
    effective_from = models.DateTimeField(default=timezone.now)
    limits = models.JSONField()

    class Meta:
        indexes = [models.Index(fields=["workload", "effective_from", "id"])]

    def __str__(self) -> str:
        return f"session limits of {related_label(self, 'workload')} from {self.effective_from}"


class CombinationRule(models.Model):
    """Capability classes or tools that must not meet in one workload's grants or one session.

    `groups` is a list of alternatives lists: the rule trips when every group is matched by
    at least one tool. An entry is a capability class or `tool:<slug>`.
    """

    class Scope(models.TextChoices):
        STATIC = "static", "Grants of one workload"
        DYNAMIC = "dynamic", "Tools used in one session"
        BOTH = "both", "Both"

    class Effect(models.TextChoices):
        FORBID = "forbid", "Forbid"
        EXCEPTION_REQUIRED = "exception_required", "Allow only with an approved exception"

    slug = models.SlugField(max_length=80, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    groups = models.JSONField()
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.BOTH)
    effect = models.CharField(max_length=24, choices=Effect.choices, default=Effect.FORBID)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Entitlement(models.Model):
    """A grant: one workload may call one tool, within a validity window."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        EXPIRED = "expired", "Expired"
        REVOKED = "revoked", "Revoked"

    workload = models.ForeignKey(Workload, on_delete=models.CASCADE, related_name="entitlements")
    tool = models.ForeignKey(Tool, on_delete=models.PROTECT, related_name="entitlements")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    valid_from = models.DateTimeField(default=timezone.now)
    valid_until = models.DateTimeField(null=True, blank=True)
    constraints = models.JSONField(default=dict, blank=True)
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    revoke_reason = models.TextField(blank=True)
    request = models.ForeignKey(
        "governance.AccessRequest",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="grants",
        help_text="The approved request that created it.",
    )
    expiry_notified_at = models.DateTimeField(
        null=True, blank=True, help_text="When the owner was told it is about to expire."
    )
    # Kept by evaluation (one UPDATE per evaluated batch, never moved back), not by the
    # request path: what the unused-grant recommendation sorts and filters on, by index.
    last_used_at = models.DateTimeField(
        null=True, blank=True, help_text="The workload's latest call of this tool under this grant."
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["workload", "tool"],
                condition=Q(status="active"),
                name="one_active_grant_per_workload_tool",
            ),
            models.CheckConstraint(
                name="grant_window_ordered",
                condition=Q(valid_until__isnull=True) | Q(valid_until__gt=models.F("valid_from")),
            ),
        ]
        indexes = [
            models.Index(fields=["workload", "status"]),
            models.Index(fields=["status", "valid_until"]),
            models.Index(fields=["tool", "status"]),
            # The grant list (API): newest first, without sorting every grant for one page.
            models.Index(fields=["-created_at", "-id"], name="grant_recent"),
            # The unused-grant list's index (never used first, then least recently) is made on
            # PostgreSQL only, by migration 0014: SQLite cannot index NULLS FIRST.
        ]
        permissions = [("grant_entitlement", "Can grant and revoke entitlements directly")]

    def __str__(self) -> str:
        return f"{related_label(self, 'workload')}:{related_label(self, 'tool')}"

    def is_valid_at(self, moment) -> bool:
        """Expired grants count as expired even before the expiry job has run."""
        return (
            self.status == self.Status.ACTIVE
            and self.valid_from <= moment
            and (self.valid_until is None or moment < self.valid_until)
        )

    @property
    def effective_status(self) -> str:
        """The status as of now: an active grant past its end reads as expired."""
        return _effective_status(self)


class ExpiringApproval(models.Model):
    """What session windows and rule exceptions share: an approved window that ends, that an
    admin can revoke early, and whose owner is warned before it expires."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        EXPIRED = "expired", "Expired"
        REVOKED = "revoked", "Revoked"

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    valid_from = models.DateTimeField(default=timezone.now)
    valid_until = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    revoke_reason = models.TextField(blank=True)
    expiry_notified_at = models.DateTimeField(
        null=True, blank=True, help_text="When the owner was told it is about to expire."
    )

    class Meta:
        abstract = True

    def is_valid_at(self, moment) -> bool:
        return self.status == self.Status.ACTIVE and self.valid_from <= moment < self.valid_until

    @property
    def effective_status(self) -> str:
        return _effective_status(self)


class SessionExtension(ExpiringApproval):
    """A longer session window or bigger budget than the policy, granted for a while.

    Created by an approved request; while valid it raises the workload's effective limits.
    """

    workload = models.ForeignKey(Workload, on_delete=models.CASCADE, related_name="extensions")
    max_session_seconds = models.PositiveIntegerField(null=True, blank=True)
    max_tool_calls = models.PositiveIntegerField(null=True, blank=True)
    max_reasoning_tokens = models.PositiveIntegerField(null=True, blank=True)
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    request = models.ForeignKey(
        "governance.AccessRequest",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="extensions",
        help_text="The approved request that created it.",
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                name="extension_window_ordered", condition=Q(valid_until__gt=models.F("valid_from"))
            ),
            models.CheckConstraint(
                name="extension_revoked_when_stamped",
                condition=~Q(status="revoked") | Q(revoked_at__isnull=False),
            ),
        ]
        indexes = [
            models.Index(fields=["workload", "status"]),
            models.Index(fields=["status", "valid_until"]),
        ]

    def __str__(self) -> str:
        return f"extension of {related_label(self, 'workload')}"


class RuleException(ExpiringApproval):
    """An approved, expiring exception that lets one workload hold a combination a rule guards."""

    workload = models.ForeignKey(Workload, on_delete=models.CASCADE, related_name="exceptions")
    rule = models.ForeignKey(CombinationRule, on_delete=models.CASCADE, related_name="exceptions")
    justification = models.TextField()
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    request = models.ForeignKey(
        "governance.AccessRequest",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="exceptions",
        help_text="The approved request that created it.",
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                name="exception_window_ordered", condition=Q(valid_until__gt=models.F("valid_from"))
            ),
            models.CheckConstraint(
                name="exception_revoked_when_stamped",
                condition=~Q(status="revoked") | Q(revoked_at__isnull=False),
            ),
        ]
        indexes = [
            models.Index(fields=["workload", "status"]),
            models.Index(fields=["status", "valid_until"]),
        ]

    def __str__(self) -> str:
        return f"{related_label(self, 'rule')} exception for {related_label(self, 'workload')}"


# The longest session id a service may send (the decision log's column, too).
SESSION_ID_MAX = 200


class SessionApproval(ExpiringApproval):
    """Leave for one session of a workload whose sessions need approval (a containment): the
    decision endpoint lets that session's calls through while it is valid, nothing else."""

    workload = models.ForeignKey(
        Workload, on_delete=models.CASCADE, related_name="session_approvals"
    )
    session = models.CharField(max_length=SESSION_ID_MAX, help_text="The session id services send.")
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    request = models.ForeignKey(
        "governance.AccessRequest",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="session_approvals",
        help_text="The approved request that created it.",
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                name="session_approval_window_ordered",
                condition=Q(valid_until__gt=models.F("valid_from")),
            ),
            models.CheckConstraint(
                name="session_approval_revoked_when_stamped",
                condition=~Q(status="revoked") | Q(revoked_at__isnull=False),
            ),
            models.UniqueConstraint(
                fields=["workload", "session"],
                condition=Q(status="active"),
                name="session_approval_once",
            ),
        ]
        indexes = [
            models.Index(fields=["workload", "status"]),
            models.Index(fields=["status", "valid_until"]),
        ]

    def __str__(self) -> str:
        return f"session {self.session} of {related_label(self, 'workload')}"
