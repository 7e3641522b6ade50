"""The demo's gateway: the agent runs of `demo.py`, asked of the decision endpoint first.

A fresh console should show the decision log and its charts with real answers, not an empty
table. After the run command's web server is up, this posts one check per tool call of the
demo runs to it, over HTTP, as a gateway would: the answers come from the real endpoint, its
session state lives in the web process, and the decision log records them.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from governance.demo import DEMO_WORKLOADS
from governance.tokens import service_token_create
from workloads.models import Workload

DEMO_TOKEN_NAME = "demo-gateway"

# (workload, tool, session): the tool calls of demo.py's runs, in order, plus one call from the
# workload that is still waiting for classification.
DEMO_CHECKS = [
    ("support-triage", "crm-api", "run-clean"),
    *[("research-assistant", "web-search", "run-loop")] * 5,
    ("support-triage", "send-email", "run-unentitled"),
    ("data-analyst", "sql-query", "run-trifecta"),
    ("data-analyst", "web-search", "run-trifecta"),
    ("data-analyst", "code-exec", "run-trifecta"),
    ("release-notes-bot", "web-search", "run-draft"),
]


def demo_token_create() -> str:
    """A decide + ingest token for the demo workloads; returns its secret (shown once)."""
    slugs = [spec["slug"] for spec in DEMO_WORKLOADS]
    issued = service_token_create(
        name=DEMO_TOKEN_NAME,
        scopes=["decide", "ingest"],
        workloads=list(Workload.objects.filter(slug__in=slugs)),
    )
    return issued.secret


def server_wait(base_url: str, *, timeout: float = 60.0, give_up=lambda: False) -> bool:
    """Whether the web server answered within `timeout` seconds (or before `give_up()`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not give_up():
        try:
            with urllib.request.urlopen(f"{base_url}/login/", timeout=2) as response:
                if response.status == 200:
                    return True
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.3)
    return False


def demo_decisions_post(base_url: str, secret: str) -> list[dict]:
    """Ask the endpoint about every demo tool call; returns the answers, in order."""
    answers = []
    for workload, tool, session in DEMO_CHECKS:
        body = json.dumps({"workload": workload, "tool": tool, "session": session}).encode()
        request = urllib.request.Request(
            f"{base_url}/api/v1/decisions",
            data=body,
            headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answers.append(json.load(response))
    return answers
