"""One exception type for domain rule violations, mapped once to HTTP and to forms."""


class DomainError(Exception):
    """A request that breaks a rule of the domain; `code` is machine-readable."""

    status = 400

    def __init__(
        self,
        message: str,
        *,
        code: str = "invalid",
        field: str | None = None,
        status: int | None = None,
        detail: dict | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field
        self.detail = detail or {}
        if status is not None:
            self.status = status


class NotAllowed(DomainError):
    status = 403

    def __init__(self, message: str = "You may not do this.", **kwargs):
        kwargs.setdefault("code", "forbidden")
        super().__init__(message, **kwargs)


class Conflict(DomainError):
    status = 409

    def __init__(self, message: str, **kwargs):
        kwargs.setdefault("code", "conflict")
        super().__init__(message, **kwargs)


class RuleViolation(DomainError):
    """A combination rule or tier gate blocks the change (422, with the rule named)."""

    status = 422

    def __init__(self, message: str, **kwargs):
        kwargs.setdefault("code", "rule_violation")
        super().__init__(message, **kwargs)
