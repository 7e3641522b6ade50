"""`manage.py run`: the whole console on one machine — web, Celery worker and beat.

Migrates, seeds demo data on the first run (printing the credentials and a service token
once), then starts the web server, a real Celery worker and Celery beat as child processes;
on that first run it also asks the decision endpoint about the demo's tool calls, so the
decision log starts with real answers. Ctrl-C stops all of them; if one dies, the others are
stopped too.
"""

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from governance.demo import demo_needed, demo_seed
from governance.demo_gateway import demo_decisions_post, demo_token_create, server_wait


class Command(BaseCommand):
    help = "Run Mandate (web server, Celery worker, Celery beat) on this machine."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-demo", action="store_true", help="Do not seed demo data.")

    def handle(self, *args, host, port, no_demo, **options):
        call_command("migrate", interactive=False, verbosity=0)
        demo_secret = None
        if not no_demo and demo_needed():
            self._print_credentials(demo_seed())
            demo_secret = demo_token_create()
        python = sys.executable
        manage = str(settings.BASE_DIR / "manage.py")
        celery = [python, "-m", "celery", "-A", "governance"]
        schedule = str(settings.VAR_DIR / "celerybeat-schedule")
        children = {
            "web": [python, manage, "runserver", f"{host}:{port}", "--noreload"],
            "worker": [
                *celery,
                "worker",
                "--loglevel=INFO",
                "--pool=threads",
                "--concurrency=2",
                "--hostname=mandate-local@%h",
            ],
            "beat": [*celery, "beat", "--loglevel=INFO", f"--schedule={schedule}"],
        }
        env = os.environ.copy()
        processes = {
            name: subprocess.Popen(argv, env=env, cwd=settings.BASE_DIR, start_new_session=True)
            for name, argv in children.items()
        }
        self.stdout.write(
            self.style.SUCCESS(
                f"Mandate is starting on http://{host}:{port}/ (web, worker, beat). "
                "Ctrl-C stops it."
            )
        )
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        if demo_secret:
            self._demo_decisions(f"http://{host}:{port}", demo_secret, lambda: stopping)
        exit_code = 0
        while not stopping:
            for name, process in processes.items():
                if process.poll() is not None:
                    self.stderr.write(f"{name} exited with {process.returncode}; stopping.")
                    exit_code = process.returncode or 1
                    stopping = True
            time.sleep(0.3)
        self._stop_all(processes)
        if exit_code:
            sys.exit(exit_code)

    def _stop_all(self, processes):
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def _print_credentials(self, credentials):
        self.stdout.write(
            self.style.WARNING(
                "Demo users created. These passwords are shown once; write them down:"
            )
        )
        for username, password in credentials.items():
            self.stdout.write(f"  {username:<10} {password}")

    def _demo_decisions(self, base_url, secret, stopping):
        self.stdout.write(
            self.style.WARNING(
                "A service token for the demo workloads (scopes decide, ingest), shown once:"
            )
        )
        self.stdout.write(f"  {secret}")
        self.stdout.write(
            f"  curl -H 'Authorization: Bearer {secret}' -H 'Content-Type: application/json' "
            f'-d \'{{"workload": "support-triage", "tool": "crm-api"}}\' '
            f"{base_url}/api/v1/decisions"
        )
        if not server_wait(base_url, give_up=stopping):
            if not stopping():
                self.stderr.write("The web server did not answer; no demo decisions were made.")
            return
        try:
            answers = demo_decisions_post(base_url, secret)
        except (OSError, ValueError) as error:  # the console runs on; the log starts empty
            self.stderr.write(f"Demo decisions failed: {error}")
            return
        denied = sum(answer["decision"] == "deny" for answer in answers)
        self.stdout.write(
            f"Asked the decision endpoint about the demo's {len(answers)} tool calls "
            f"({denied} denied): {base_url}/decisions/"
        )
