"""Walk the audit hash chain; exit non-zero at the first broken link."""

from django.core.management.base import BaseCommand, CommandError

from governance.audit import audit_head, audit_verify
from governance.models import AuditEvent


class Command(BaseCommand):
    help = (
        "Verify the hash-chained audit trail. Prints OK, the event count and the head (the "
        "newest event's hash), or the first broken link (event id and reason) and exits with "
        "status 1. Keep the printed head outside the database and pass it back with "
        "--expect-head: events removed from the end of the trail are then caught too."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--expect-head",
            metavar="HASH",
            help="a head printed by an earlier run; fail if it is no longer in the chain",
        )

    def handle(self, *args, expect_head=None, **options):
        # Counted first: events appended during the walk are chained after these anyway.
        count = AuditEvent.objects.count()
        head = audit_head()
        broken = audit_verify(expect_head=expect_head)
        if broken is not None:
            raise CommandError(
                f"BROKEN at audit event {broken.event_id}: {broken.reason}", returncode=1
            )
        self.stdout.write(f"OK: {count} audit events, chain intact; head {head}")
