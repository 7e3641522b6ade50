"""Issue a service token for automation; the secret is printed once and only its hash kept."""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from governance.errors import DomainError
from governance.models.tokens import TokenScope
from governance.tokens import service_token_create
from workloads.models import Workload


class Command(BaseCommand):
    help = (
        "Create a service token. Prints the token (once) on stdout and what it may do on "
        "stderr, so `TOKEN=$(manage.py create_service_token …)` captures just the secret."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="A unique name, e.g. the service that will use it.")
        parser.add_argument(
            "--scopes",
            required=True,
            help=f"Comma-separated, from: {', '.join(TokenScope.values)}.",
        )
        bound = parser.add_mutually_exclusive_group()
        bound.add_argument(
            "--workload",
            action="append",
            default=[],
            metavar="SLUG",
            help="Bind the token to this workload (repeatable).",
        )
        bound.add_argument(
            "--all-workloads", action="store_true", help="May act for every workload."
        )
        parser.add_argument(
            "--expires-days", type=int, default=None, help="Expire after N days (default never)."
        )
        parser.add_argument(
            "--acts-for",
            metavar="USERNAME",
            default=None,
            help="Attribute the token's writes to this user in the audit trail.",
        )

    def handle(self, *args, name, scopes, workload, all_workloads, expires_days, acts_for, **_):
        scope_list = [s.strip() for s in scopes.split(",") if s.strip()]
        expires_at = None
        if expires_days is not None:
            if expires_days < 1:
                raise CommandError("--expires-days must be at least 1.")
            expires_at = timezone.now() + timedelta(days=expires_days)
        workloads = list(Workload.objects.filter(slug__in=workload))
        missing = sorted(set(workload) - {w.slug for w in workloads})
        if missing:
            raise CommandError(f"Unknown workload: {', '.join(missing)}")
        user = None
        if acts_for:
            user = get_user_model().objects.filter(username=acts_for, is_active=True).first()
            if user is None:
                raise CommandError(f"No active user {acts_for!r}.")
        try:
            issued = service_token_create(
                name=name,
                scopes=scope_list,
                workloads=workloads,
                all_workloads=all_workloads,
                expires_at=expires_at,
                acts_for=user,
            )
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        token = issued.token
        if token.all_workloads:
            binding = "all workloads"
        elif workloads:
            binding = ", ".join(sorted(w.slug for w in workloads))
        else:
            binding = "no workloads (catalogue reads only)"
        self.stderr.write(
            f"Created token {token.name!r} (prefix {token.prefix}): scopes "
            f"{', '.join(token.scopes)}; bound to {binding}; "
            f"expires {token.expires_at.isoformat() if token.expires_at else 'never'}. "
            "Store it now: it will not be shown again."
        )
        self.stdout.write(issued.secret)
