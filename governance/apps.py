from django.apps import AppConfig
from django.db.models.signals import post_migrate


class GovernanceConfig(AppConfig):
    name = "governance"
    verbose_name = "Governance"

    def ready(self) -> None:
        post_migrate.connect(_sync_roles_once, sender=self, dispatch_uid="mandate-roles-sync")
        # Registers the Bearer scheme with drf-spectacular (extensions register on import).
        from governance import checks, openapi  # noqa: F401


def _sync_roles_once(**kwargs) -> None:
    # Runs after the governance app's migrations; by then every app's permissions exist.
    from governance.roles import roles_sync

    roles_sync()
