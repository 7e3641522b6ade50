"""The policy version: bumped in the same transaction as any change decisions depend on."""

from django.db import models


class PolicyState(models.Model):
    """A single row whose version tells every process when to recompile its policy snapshot."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    version = models.PositiveBigIntegerField(default=1)
    changed_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(name="policy_state_singleton", condition=models.Q(id=1))
        ]
        permissions = [("access_console", "Can use the Mandate console")]

    def __str__(self) -> str:
        return f"policy v{self.version}"
