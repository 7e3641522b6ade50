"""Revoke a service token by name; it stops working on its next request."""

from datetime import datetime
from typing import cast

from django.core.management.base import BaseCommand, CommandError

from governance.models import ServiceToken
from governance.tokens import service_token_revoke


class Command(BaseCommand):
    help = "Revoke a service token by name (audited; revoking twice is harmless)."

    def add_arguments(self, parser):
        parser.add_argument("name")

    def handle(self, *args, name, **_):
        token = ServiceToken.objects.filter(name=name).first()
        if token is None:
            raise CommandError(f"No token named {name!r}.")
        if token.revoked_at is not None:
            self.stdout.write(f"Token {name!r} was already revoked at {token.revoked_at}.")
            return
        token = service_token_revoke(token=token, by=None)
        revoked_at = cast(datetime, token.revoked_at)  # set: the service returns it revoked
        self.stdout.write(f"Revoked token {name!r} at {revoked_at.isoformat()}.")
