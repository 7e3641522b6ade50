"""manage.py export_policy --format cedar|json [--output PATH]"""

import json
from pathlib import Path

from django.core.management.base import BaseCommand

from governance.decisions.export import cedar_entities, cedar_policies, snapshot_json_text
from governance.decisions.snapshot import snapshot_load


class Command(BaseCommand):
    help = (
        "Export the compiled policy. cedar: Cedar policies (PATH.cedar) and entities "
        "(PATH.entities.json) for the static part; json: the versioned compiled snapshot."
    )

    def add_arguments(self, parser):
        parser.add_argument("--format", choices=["cedar", "json"], required=True)
        parser.add_argument(
            "--output",
            help="cedar: a path prefix (default mandate-policy); json: a file (default stdout)",
        )

    def handle(self, *args, format, output=None, **options):
        snapshot = snapshot_load()
        if format == "json":
            text = snapshot_json_text(snapshot)
            if output:
                Path(output).write_text(text + "\n")
                self.stderr.write(f"Wrote policy version {snapshot.version} to {output}")
            else:
                self.stdout.write(text)
            return
        prefix = output or "mandate-policy"
        policies = Path(f"{prefix}.cedar")
        entities = Path(f"{prefix}.entities.json")
        policies.write_text(cedar_policies(snapshot))
        entities.write_text(json.dumps(cedar_entities(snapshot), indent=2) + "\n")
        self.stderr.write(f"Wrote policy version {snapshot.version} to {policies} and {entities}")
