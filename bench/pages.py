"""Console pages and API lists at scale: query count, p50 and p95 server time per page.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mandate_pages_bench \\
    uv run python bench/pages.py [--repeat 30] [--only workload] [--rebuild]

PostgreSQL only. The first run creates the database if it is missing, migrates it and fills
it with SQL (INSERT … SELECT generate_series, no ORM row by row, ~2-4 min): 10,000 workloads
(four tiers, unclassified drafts, every status, 200 owners plus one owner of 500), ~50,000
grants, 50,000 sessions with 20 events each plus one 3,000-event session (~1,000,000 usage
events), 20,000 findings, 200,000 decision log rows, 5,000 access requests with their steps
and decisions, 50,000 audit events, 40 service tokens. Later runs reuse it (a row in the
`pagesbench_meta` table says what was built; `migrate` still runs, so new indexes apply);
`--rebuild` drops the database and builds it again.

Requests go through Django's test Client in this process, not a server on loopback: "server
time" is then exactly what Mandate does for a request (middleware, view, queries, template)
without the HTTP client and a second process competing for the machine's two shared cores,
and the queries of a request can be captured in the same process. Each page is requested
twice to warm up, once with its queries captured, then --repeat times timed. The database
connection pool is on and governance/wsgi.py is imported (URLconf loaded, loaded heap
frozen out of garbage collection), as in production; `--gc-unfrozen` undoes the freeze.
Each page's line counts the full (generation 2) garbage collections that ran while it was
timed: they, not the page, are what lands a ~40 ms request in the p95 tail.

Target (issue 2): p95 < 150 ms for every page, with a query count that does not grow with
the data. Nothing fails when it is missed: this prints figures.
"""

import argparse
import gc
import importlib
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATA_VERSION = 3
TARGET_MS = 150.0

N_WORKLOADS = 10_000
N_OWNERS = 200
HEAVY_OWNER = "bench-owner"  # owns every workload whose (i / 10) % 20 == 0: 500 of them
N_EXTRA_TOOLS = 42  # + the 8 seeded tools = 50
N_EXTRA_RULES = 11
GRANTS_PER_WORKLOAD = 5
N_SESSIONS = 50_000
EVENTS_PER_SESSION = 20
LONG_SESSION = "run-long"
LONG_SESSION_EVENTS = 3_000
N_FINDINGS = 20_000
N_DECISIONS = 200_000
N_REQUESTS = 5_000
N_AUDIT = 50_000
N_TOKENS = 40

STAFF = {
    "bench-admin": "iam_admin",
    "bench-reviewer": "reviewer",
    "bench-approver": "approver",
    "bench-auditor": "auditor",
}


def configure_env() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "governance.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-0123456789-abcdefghijkl")
    os.environ.setdefault("DEBUG", "0")
    os.environ["SECURE_SSL_REDIRECT"] = "0"
    os.environ["SESSION_COOKIE_SECURE"] = "0"
    os.environ["CSRF_COOKIE_SECURE"] = "0"
    os.environ["ALLOWED_HOSTS"] = "testserver"
    os.environ.setdefault("LOG_LEVEL", "WARNING")


# --- the database ------------------------------------------------------------------------


def _maintenance_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    return urlunsplit(parts._replace(path="/postgres")), name


def ensure_database(url: str, *, rebuild: bool) -> None:
    """Create the database if missing; with --rebuild drop it first (only a bench database:
    one with the meta table, or with no workloads at all)."""
    import psycopg

    admin_url, name = _maintenance_url(url)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists and rebuild:
            with psycopg.connect(url) as target:
                ours = target.execute(
                    "SELECT to_regclass('pagesbench_meta') IS NOT NULL"
                    " OR to_regclass('workloads_workload') IS NULL"
                    " OR NOT EXISTS (SELECT 1 FROM workloads_workload)"
                ).fetchone()[0]
            if not ours:
                sys.exit(f"--rebuild refused: {name} holds workloads this bench did not build.")
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            exists = None
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")


def built_version(cursor) -> int | None:
    cursor.execute("SELECT to_regclass('pagesbench_meta') IS NOT NULL")
    if not cursor.fetchone()[0]:
        return None
    cursor.execute("SELECT max(version) FROM pagesbench_meta")
    return cursor.fetchone()[0]


def _step(cursor, label: str, sql: str) -> None:
    started = time.perf_counter()
    cursor.execute(sql)
    rows = cursor.rowcount
    print(f"  {label:<28} {rows:>10,} rows  {time.perf_counter() - started:6.1f} s", flush=True)


def _ids(cursor, sql: str) -> list[int]:
    cursor.execute(sql)
    return [row[0] for row in cursor.fetchall()]


def _array(values) -> str:
    return "ARRAY[" + ",".join(str(int(v)) for v in values) + "]::bigint[]"


def build(cursor) -> None:
    """Fill an empty, migrated database. Plain SQL in one transaction; values are computed
    from generate_series so a rebuild gives the same data (times are relative to now)."""
    cursor.execute("SELECT EXISTS (SELECT 1 FROM workloads_workload)")
    if cursor.fetchone()[0]:
        sys.exit("The database already has workloads; give an empty one or use --rebuild.")
    print("building the bench data (PostgreSQL, INSERT … SELECT):", flush=True)
    started = time.perf_counter()
    # Users: staff with roles, 200 owners and the heavy owner. Unusable passwords: the bench
    # logs in with force_login.
    staff_names = ",".join(f"('{name}')" for name in [*STAFF, HEAVY_OWNER])
    _step(
        cursor,
        "users",
        f"""
        INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email,
                               is_staff, is_active, date_joined)
        SELECT '!', false, name, '', '', name || '@example.com', false, true, now()
        FROM (VALUES {staff_names}
              UNION ALL SELECT format('owner-%s', lpad(i::text, 3, '0'))
              FROM generate_series(0, {N_OWNERS - 1}) i) AS names(name)
        """,
    )
    roles = {**STAFF, HEAVY_OWNER: "owner"}
    role_rows = ",".join(f"('{user}', '{role}')" for user, role in roles.items())
    cursor.execute(
        f"""
        INSERT INTO auth_user_groups (user_id, group_id)
        SELECT u.id, g.id FROM auth_user u
        JOIN (VALUES {role_rows}
              UNION ALL SELECT username, 'owner' FROM auth_user WHERE username LIKE 'owner-%')
             AS r(username, role) ON r.username = u.username
        JOIN auth_group g ON g.name = r.role
        """
    )
    admin = _ids(cursor, "SELECT id FROM auth_user WHERE username = 'bench-admin'")[0]
    approver = _ids(cursor, "SELECT id FROM auth_user WHERE username = 'bench-approver'")[0]
    reviewer = _ids(cursor, "SELECT id FROM auth_user WHERE username = 'bench-reviewer'")[0]
    heavy = _ids(cursor, f"SELECT id FROM auth_user WHERE username = '{HEAVY_OWNER}'")[0]
    owners = _array(
        _ids(cursor, "SELECT id FROM auth_user WHERE username LIKE 'owner-%' ORDER BY id")
    )
    tiers = _array(_ids(cursor, "SELECT id FROM workloads_sensitivitytier ORDER BY rank"))

    _step(
        cursor,
        "tools",
        f"""
        INSERT INTO workloads_tool (slug, name, capability_class, risk, mcp_server, description)
        SELECT format('tool-%s', lpad(i::text, 2, '0')), format('Internal tool %s', i),
               (ARRAY['web_access','file_read','file_write','code_execution','downstream_api',
                      'messaging','data_store','generation'])[1 + i % 8],
               (ARRAY['low','medium','high','critical'])[1 + i % 4],
               CASE WHEN i % 3 = 0 THEN format('mcp-%s.internal', i) ELSE '' END,
               'A bench tool.'
        FROM generate_series(1, {N_EXTRA_TOOLS}) i
        """,
    )
    _step(
        cursor,
        "combination rules",
        f"""
        INSERT INTO workloads_combinationrule (slug, name, description, groups, scope, effect,
                                               enabled, created_at, updated_at)
        SELECT format('rule-%s', lpad(i::text, 2, '0')), format('Bench rule %s', i), '',
               jsonb_build_array(jsonb_build_array(format('tool:tool-%s', lpad(i::text, 2, '0'))),
                                 jsonb_build_array('messaging')),
               (ARRAY['static','dynamic','both'])[1 + i % 3],
               (ARRAY['forbid','exception_required'])[1 + i % 2], i % 5 <> 0, now(), now()
        FROM generate_series(1, {N_EXTRA_RULES}) i
        """,
    )
    tools = _ids(cursor, "SELECT id FROM workloads_tool ORDER BY id")
    tool_slugs = "ARRAY(SELECT slug FROM workloads_tool ORDER BY id)"

    # Workloads: 70% active, 10% suspended, 10% draft (half unclassified), 10% retired.
    _step(
        cursor,
        "workloads",
        f"""
        INSERT INTO workloads_workload (slug, name, purpose, owner_id, model_family, environment,
            data_categories, status, tier_id, classification_rationale, classified_by_id,
            classified_at, created_at, updated_at, sessions_need_approval)
        SELECT format('wl-%s', lpad(i::text, 5, '0')),
               format('%s %s %s', (ARRAY['Ticket','Invoice','Research','Code','Sales','Support',
                      'Claims','Payroll'])[1 + i % 8],
                      (ARRAY['triage','review','assistant','summariser','router'])[1 + i % 5], i),
               format('Handles %s work for team %s and drafts answers for a human to check.',
                      (ARRAY['finance','support','research','engineering','legal','sales'])
                      [1 + i % 6], i % 97),
               CASE WHEN (i / 10) % 20 = 0 THEN {heavy}
                    ELSE ({owners})[1 + i % {N_OWNERS}] END,
               (ARRAY['o1','claude-3-7-sonnet','deepseek-r1','other'])[1 + i % 4],
               (ARRAY['development','staging','production'])[1 + i % 3],
               '["customer"]'::jsonb,
               CASE WHEN i % 10 < 7 THEN 'active' WHEN i % 10 = 7 THEN 'suspended'
                    WHEN i % 10 = 8 THEN 'draft' ELSE 'retired' END,
               CASE WHEN i % 20 = 8 THEN NULL ELSE ({tiers})[1 + (i / 3) % 4] END,
               CASE WHEN i % 20 = 8 THEN '' ELSE 'Classified by the bench.' END,
               CASE WHEN i % 20 = 8 THEN NULL ELSE {admin} END,
               CASE WHEN i % 20 = 8 THEN NULL ELSE now() - (i % 300) * interval '1 hour' END,
               now() - ({N_WORKLOADS} - i) * interval '5 minutes',
               now(),
               false
        FROM generate_series(1, {N_WORKLOADS}) i
        """,
    )
    _step(
        cursor,
        "session policies",
        """
        INSERT INTO workloads_sessionpolicy (workload_id, max_tool_calls, logging_level,
                                             updated_at)
        SELECT id, CASE WHEN id % 7 = 0 THEN 40 END, '', now() FROM workloads_workload
        """,
    )
    # Grants: five distinct tools a classified workload; the fifth revoked, some expired.
    _step(
        cursor,
        "grants",
        f"""
        INSERT INTO workloads_entitlement (workload_id, tool_id, status, valid_from, valid_until,
            constraints, granted_by_id, created_at, revoked_at, revoked_by_id, revoke_reason)
        SELECT w.id, ({_array(tools)})[1 + (w.id * 3 + k * 7) % {len(tools)}],
               CASE WHEN k = 4 THEN 'revoked' WHEN k = 3 AND w.id % 3 = 0 THEN 'expired'
                    ELSE 'active' END,
               now() - interval '60 days',
               CASE WHEN k = 3 AND w.id % 3 = 0 THEN now() - interval '2 days'
                    WHEN k % 2 = 1 THEN now() + interval '30 days' END,
               '{{}}'::jsonb, {admin}, now() - interval '60 days' + k * interval '1 day',
               CASE WHEN k = 4 THEN now() - interval '10 days' END,
               CASE WHEN k = 4 THEN {admin} END,
               CASE WHEN k = 4 THEN 'No longer needed.' ELSE '' END
        FROM workloads_workload w CROSS JOIN generate_series(0, {GRANTS_PER_WORKLOAD - 1}) k
        WHERE w.tier_id IS NOT NULL
        """,
    )
    # Sessions of live workloads over the last 30 days, newest with the highest ids.
    live = _ids(
        cursor,
        "SELECT id FROM workloads_workload WHERE status IN ('active','suspended') ORDER BY id",
    )
    span = 30 * 24 * 3600
    _step(
        cursor,
        "sessions",
        f"""
        INSERT INTO workloads_session (workload_id, external_id, source, original_request,
            final_action, started_at, last_event_at, ended_at, created_at, evaluation_state)
        SELECT ({_array(live)})[1 + (j * 7919) % {len(live)}],
               CASE WHEN j = {N_SESSIONS - 1} THEN '{LONG_SESSION}' ELSE format('run-%s', j) END,
               CASE WHEN j % 5 = 0 THEN 'otlp' ELSE 'native' END,
               format('Customer %s asks for the status of order %s and a refund.', j % 911, j),
               'Answered the customer.', t, t + interval '19 seconds',
               CASE WHEN j % 50 = 0 THEN NULL ELSE t + interval '20 seconds' END, t, '{{}}'::jsonb
        FROM generate_series(0, {N_SESSIONS - 1}) j,
             LATERAL (SELECT now() - ({N_SESSIONS} - j) * interval '{span // N_SESSIONS} seconds'
                      AS t) times
        """,
    )
    event_columns = """(event_id, type, occurred_at, received_at, tool, tool_call_id,
        arguments_hash, content, input_tokens, output_tokens, reasoning_tokens, duration_ms,
        attributes, session_id, workload_id)"""
    last = EVENTS_PER_SESSION - 1

    def event_values(at: str) -> str:
        return f"""
        format('%s-%s', s.id, k),
        CASE WHEN k = 0 THEN 'session_start' WHEN k = {last} THEN 'session_end'
             WHEN k = {last - 1} THEN 'final_action'
             ELSE (ARRAY['reasoning_step','tool_call','tool_result'])[1 + (k - 1) % 3] END,
        {at}, {at},
        CASE WHEN (k - 1) % 3 IN (1, 2) AND k NOT IN (0, {last - 1}, {last})
             THEN ({tool_slugs})[1 + (s.id + k) % {len(tools)}] ELSE '' END,
        CASE WHEN (k - 1) % 3 IN (1, 2) THEN format('call-%s', (k - 1) / 3) ELSE '' END,
        CASE WHEN (k - 1) % 3 = 1 THEN md5(format('%s', (s.id + k) % 13)) ELSE '' END,
        CASE WHEN (k - 1) % 3 = 0 THEN 'Thinking about which order the customer means.'
             ELSE '' END,
        100, 40, CASE WHEN (k - 1) % 3 = 0 THEN 800 ELSE 0 END,
        CASE WHEN (k - 1) % 3 = 1 THEN 120 END, '{{}}'::jsonb, s.id, s.workload_id
        """

    _step(
        cursor,
        "usage events",
        f"""
        INSERT INTO workloads_usageevent {event_columns}
        SELECT {event_values("s.started_at + k * interval '1 second'")}
        FROM workloads_session s CROSS JOIN generate_series(0, {last}) k
        """,
    )
    # One long run: 3,000 events (the timeline shows the first 1,000).
    long_at = f"s.started_at + interval '20 seconds' + (k - {EVENTS_PER_SESSION}) * interval '0.2s'"
    _step(
        cursor,
        "usage events (long session)",
        f"""
        INSERT INTO workloads_usageevent {event_columns}
        SELECT {event_values(long_at)}
        FROM workloads_session s
        CROSS JOIN generate_series({EVENTS_PER_SESSION}, {LONG_SESSION_EVENTS - 1}) k
        WHERE s.external_id = '{LONG_SESSION}'
        """,
    )
    # History: evaluated long ago, so off the pending list the insert trigger put it on.
    cursor.execute("TRUNCATE workloads_pendingevaluation")
    cursor.execute(
        f"UPDATE workloads_session SET last_event_at = started_at + interval '10 minutes',"
        f" ended_at = started_at + interval '10 minutes' WHERE external_id = '{LONG_SESSION}'"
    )
    first_session = _ids(cursor, "SELECT min(id) FROM workloads_session")[0]
    kinds = (
        "ARRAY['unentitled_tool','expired_grant_use','suspended_workload_use',"
        "'forbidden_combination','session_overrun','idle_timeout','budget_exceeded',"
        "'reasoning_loop','intent_drift','unclassified_workload_use']"
    )
    # Findings on sessions spread over the whole range, 45% open; the long session has 20.
    _step(
        cursor,
        "findings",
        f"""
        INSERT INTO governance_finding (kind, severity, severity_rank, status, workload_id,
            session_id, tool, summary, evidence, details, dedupe_key, occurred_at, created_at,
            updated_at, assignee_id, resolved_at)
        SELECT ({kinds})[1 + f % 10], (ARRAY['low','medium','high','critical'])[1 + (f / 10) % 4],
               1 + (f / 10) % 4,
               CASE WHEN f % 20 < 9 THEN 'open' WHEN f % 20 < 13 THEN 'acknowledged'
                    WHEN f % 20 < 19 THEN 'resolved' ELSE 'false_positive' END,
               s.workload_id, s.id, 'web-search',
               format('Finding %s: the agent did something its mandate does not cover.', f),
               (SELECT coalesce(jsonb_agg(e.id), '[]'::jsonb) FROM (
                    SELECT id FROM workloads_usageevent
                    WHERE session_id = s.id ORDER BY occurred_at, id OFFSET 2 LIMIT 2) e),
               '{{}}'::jsonb, format('bench:%s', f), s.started_at + interval '3 seconds',
               s.started_at + interval '30 seconds', now(),
               CASE WHEN f % 4 = 0 THEN {reviewer} END,
               CASE WHEN f % 20 >= 13 THEN s.started_at + interval '1 day' END
        FROM generate_series(0, {N_FINDINGS - 21}) f
        JOIN workloads_session s ON s.id = {first_session} + (f * 7919) % {N_SESSIONS}
        UNION ALL
        SELECT ({kinds})[1 + f % 10], 'high', 3, 'open', s.workload_id, s.id, '',
               format('Long-session finding %s.', f),
               (SELECT coalesce(jsonb_agg(e.id), '[]'::jsonb) FROM (
                    SELECT id FROM workloads_usageevent WHERE session_id = s.id
                    ORDER BY occurred_at, id OFFSET f * 40 LIMIT 3) e),
               '{{}}'::jsonb, format('bench:long:%s', f), s.started_at, s.started_at, now(),
               NULL, NULL
        FROM generate_series(0, 19) f
        JOIN workloads_session s ON s.external_id = '{LONG_SESSION}'
        """,
    )
    _step(
        cursor,
        "finding comments",
        f"""
        INSERT INTO governance_findingcomment (finding_id, author_id, body, created_at)
        SELECT f.id, {reviewer}, format('Looked at this (%s).', k), f.created_at + k * interval '1h'
        FROM governance_finding f CROSS JOIN generate_series(1, 2) k WHERE f.id % 10 = 0
        """,
    )
    _step(
        cursor,
        "containment actions",
        f"""
        INSERT INTO governance_containmentaction (action, created_at, reversed_at, workload_id,
            finding_id, created_by_id, reversed_by_id, limits, reason, reverse_reason)
        SELECT 'suspend_workload', f.created_at + interval '10 minutes',
               CASE WHEN f.id % 3 = 0 THEN f.created_at + interval '2 hours' END,
               f.workload_id, f.id, {reviewer},
               CASE WHEN f.id % 3 = 0 THEN {admin} END, '{{}}'::jsonb,
               'Contained by the bench.',
               CASE WHEN f.id % 3 = 0 THEN 'Reversed by the bench.' ELSE '' END
        FROM governance_finding f WHERE f.id % 20 = 0
        """,
    )
    _step(
        cursor,
        "decision log",
        f"""
        INSERT INTO governance_decision (decided_at, workload, tool, session, decision,
            reason_code, reasons, policy_version, latency_us, correlation_id, request_id,
            context)
        SELECT now() - d * interval '{span * 1000 // N_DECISIONS} milliseconds',
               format('wl-%s', lpad((1 + d % {N_WORKLOADS})::text, 5, '0')),
               ({tool_slugs})[1 + d % {len(tools)}],
               CASE WHEN d % 4 = 0 THEN '' ELSE format('run-%s', d % {N_SESSIONS}) END,
               CASE WHEN d % 7 = 0 THEN 'deny' ELSE 'allow' END,
               CASE WHEN d % 7 = 0 THEN 'not_entitled' ELSE 'granted' END,
               CASE WHEN d % 7 = 0
                    THEN '[{{"code": "not_entitled", "message": "No grant for this tool."}}]'
                    ELSE '[{{"code": "granted", "message": "Granted."}}]' END::jsonb,
               1, 80 + d % 400, '', '', '{{}}'::jsonb
        FROM generate_series(0, {N_DECISIONS - 1}) d
        """,
    )
    # Access requests: 5% pending (a third of those half approved), the rest closed.
    _step(
        cursor,
        "access requests",
        f"""
        INSERT INTO governance_accessrequest (workload_id, kind, justification, duration_days,
            max_tool_calls, status, requested_by_id, impact, created_at, expires_at,
            decided_at, decision_reason, session)
        SELECT w.id, CASE WHEN r % 10 = 9 THEN 'session_window' ELSE 'tools' END,
               format('Needed for the quarter-end run %s.', r), 30,
               CASE WHEN r % 10 = 9 THEN 500 END, st.status, w.owner_id, '{{}}'::jsonb, c.t,
               CASE WHEN st.status = 'pending' THEN now() + interval '7 days'
                    ELSE c.t + interval '7 days' END,
               CASE WHEN st.status <> 'pending' THEN c.t + interval '1 hour' END,
               CASE WHEN st.status = 'denied' THEN 'Not justified.' ELSE '' END,
               ''
        FROM generate_series(0, {N_REQUESTS - 1}) r
        JOIN workloads_workload w ON w.id = ({_array(live)})[1 + (r * 104729) % {len(live)}],
        LATERAL (SELECT CASE WHEN r % 20 = 0 THEN 'pending' WHEN r % 20 < 13 THEN 'approved'
                             WHEN r % 20 < 17 THEN 'denied' WHEN r % 20 < 19 THEN 'cancelled'
                             ELSE 'expired' END AS status) st,
        LATERAL (SELECT now() - r * interval '8 minutes' AS t) c
        """,
    )
    cursor.execute(
        f"""
        INSERT INTO governance_accessrequest_tools (accessrequest_id, tool_id)
        SELECT a.id, ({_array(tools)})[1 + (a.id * 5 + k * 11) % {len(tools)}]
        FROM governance_accessrequest a CROSS JOIN generate_series(0, 1) k
        WHERE a.kind = 'tools' AND (k = 0 OR a.id % 2 = 0)
        """
    )
    _step(
        cursor,
        "approval steps",
        """
        INSERT INTO governance_approvalstep (request_id, position, kind, rules, reason)
        SELECT a.id, p, 'approval', '[]'::jsonb, 'Required by the tier'
        FROM governance_accessrequest a CROSS JOIN generate_series(1, 2) p
        WHERE p = 1 OR a.id % 3 = 0
        """,
    )
    # Approved: every step decided (admin, then approver); pending with two steps: step 1 by
    # the admin; denied: one deny by the approver.
    _step(
        cursor,
        "approval decisions",
        f"""
        INSERT INTO governance_approvaldecision (request_id, step_id, approver_id, requester_id,
            workload_owner_id, verdict, comment, justification, created_at)
        SELECT a.id, s.id, CASE s.position WHEN 1 THEN {admin} ELSE {approver} END,
               a.requested_by_id, w.owner_id, 'approve', 'Fine.', '',
               a.created_at + s.position * interval '10 minutes'
        FROM governance_accessrequest a
        JOIN governance_approvalstep s ON s.request_id = a.id
        JOIN workloads_workload w ON w.id = a.workload_id
        WHERE a.status = 'approved' OR (a.status = 'pending' AND a.id % 3 = 0 AND s.position = 1)
        UNION ALL
        SELECT a.id, NULL, {approver}, a.requested_by_id, w.owner_id, 'deny', 'No.', '',
               a.created_at + interval '30 minutes'
        FROM governance_accessrequest a JOIN workloads_workload w ON w.id = a.workload_id
        WHERE a.status = 'denied'
        """,
    )
    first_workload = _ids(cursor, "SELECT min(id) FROM workloads_workload")[0]
    actions = (
        "ARRAY['workload.register','workload.classify','session_policy.update','grant.create',"
        "'grant.revoke','request.create','request.approve','finding.assign']"
    )
    types = (
        "ARRAY['workloads.workload','workloads.workload','workloads.sessionpolicy',"
        "'workloads.entitlement','workloads.entitlement','governance.accessrequest',"
        "'governance.accessrequest','governance.finding']"
    )
    actors = "ARRAY['bench-admin','bench-approver','bench-reviewer','bench-owner']"
    # The chain's hashes are unique but not a valid chain (verify_audit would say so).
    _step(
        cursor,
        "audit events",
        f"""
        INSERT INTO governance_auditevent (actor_label, action, object_type, object_id,
            object_repr, before, after, request_id, created_at, prev_hash, hash, actor_id)
        SELECT ({actors})[1 + a % 4], ({actions})[1 + a % 8], ({types})[1 + a % 8],
               CASE WHEN a % 8 IN (0, 1, 2) THEN ({first_workload} + (a / 8) % {N_WORKLOADS})::text
                    ELSE (1 + a % 5000)::text END,
               format('object %s', a), '{{"status": "draft"}}'::jsonb,
               '{{"status": "active", "tier": "internal-act"}}'::jsonb, '',
               now() - ({N_AUDIT} - a) * interval '{span // N_AUDIT} seconds',
               encode(sha256(format('bench-audit-%s', a - 1)::bytea), 'hex'),
               encode(sha256(format('bench-audit-%s', a)::bytea), 'hex'),
               u.id
        FROM generate_series(1, {N_AUDIT}) a
        LEFT JOIN auth_user u ON u.username = ({actors})[1 + a % 4]
        ORDER BY a
        """,
    )
    _step(
        cursor,
        "service tokens",
        f"""
        INSERT INTO governance_servicetoken (name, prefix, token_hash, scopes, all_workloads,
            created_by_id, created_at, expires_at, revoked_at, last_used_at)
        SELECT format('svc-%s', lpad(t::text, 2, '0')), format('mdt_%s', t),
               encode(sha256(format('bench-token-%s', t)::bytea), 'hex'),
               '["read", "decide", "ingest"]'::jsonb, t % 4 = 0, {admin}, now(),
               CASE WHEN t % 5 = 0 THEN now() + interval '90 days' END,
               CASE WHEN t % 7 = 0 THEN now() - interval '3 days' END, now()
        FROM generate_series(1, {N_TOKENS}) t
        """,
    )
    cursor.execute(
        f"""
        INSERT INTO governance_servicetoken_workloads (servicetoken_id, workload_id)
        SELECT t.id, {first_workload} + (t.id * 37 + k) % {N_WORKLOADS}
        FROM governance_servicetoken t CROSS JOIN generate_series(0, 99) k
        WHERE NOT t.all_workloads AND k < 1 + (t.id % 4) * 33
        """
    )
    # What evaluation would have kept of each grant's last use (v2: the unused-grant page):
    # the migration's own backfill statement.
    cursor.execute(
        importlib.import_module("workloads.migrations.0014_grant_last_used").BACKFILL_POSTGRESQL
    )
    cursor.execute(
        "CREATE TABLE pagesbench_meta (version integer, built_at timestamptz DEFAULT now())"
    )
    cursor.execute(f"INSERT INTO pagesbench_meta (version) VALUES ({DATA_VERSION})")
    print(f"  built in {time.perf_counter() - started:.0f} s", flush=True)


def prepare(url: str, *, rebuild: bool) -> None:
    ensure_database(url, rebuild=rebuild)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        version = built_version(cursor)
    if version is not None and version != DATA_VERSION:
        sys.exit(f"The database holds bench data v{version}, this is v{DATA_VERSION}: --rebuild.")
    if version is None:
        with transaction.atomic(), connection.cursor() as cursor:
            build(cursor)
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")  # outside the build's transaction, as it must be
        print(f"  vacuum analyze {time.perf_counter() - started:.0f} s", flush=True)


# --- the pages ---------------------------------------------------------------------------


def cases(ids: dict) -> list[tuple[str, str, str, dict]]:
    """(user, label, url, headers): every console page that lists or summarises data, and the
    API lists, as the users who see them."""
    hx = {"HTTP_HX_REQUEST": "true"}
    admin, reviewer, owner, approver = (
        "bench-admin",
        "bench-reviewer",
        HEAVY_OWNER,
        "bench-approver",
    )
    detail = f"/workloads/{ids['busy_workload']}/"
    audit_deep = f"actor={HEAVY_OWNER}&before={ids['audit_deep']}"
    return [
        (admin, "dashboard", "/", {}),
        (admin, "dashboard findings panels", "/findings/dashboard-panels/", hx),
        (admin, "workloads", "/workloads/", {}),
        (admin, "workloads ?status&tier", "/workloads/?status=active&tier=internal-act", {}),
        (admin, "workloads ?q=invoice", "/workloads/?q=invoice", {}),
        (admin, "workloads ?q=no-such-thing", "/workloads/?q=no-such-thing", {}),
        (admin, "workloads ?ordering=-tier", "/workloads/?ordering=-tier", {}),
        (admin, "workloads ?ordering=-created", "/workloads/?ordering=-created", {}),
        (admin, "workloads ?owner=", f"/workloads/?owner={HEAVY_OWNER}", {}),
        (admin, "workloads page 50", "/workloads/?page=50", {}),
        (admin, "workloads table (htmx)", "/workloads/?status=suspended&ordering=name", hx),
        (admin, "workload detail", detail, {}),
        (admin, "unused grants", "/grants/unused/", {}),
        (admin, "unused grants 90 days, page 20", "/grants/unused/?days=90&page=20", {}),
        (admin, "tools", "/tools/", {}),
        (admin, "rules", "/rules/", {}),
        (admin, "requests (awaiting)", "/requests/", {}),
        (admin, "requests ?view=all&status", "/requests/?view=all&status=approved", {}),
        (admin, "findings (open)", "/findings/", {}),
        (admin, "findings ?severity&kind", "/findings/?severity=high&kind=reasoning_loop", {}),
        (admin, "findings ?tier&status=", "/findings/?tier=boundary-crossing&status=", {}),
        (admin, "findings ?containment", "/findings/?containment=in_force&status=", {}),
        (admin, "finding detail", f"/findings/{ids['finding']}/", {}),
        (admin, "sessions", "/sessions/", {}),
        (admin, "sessions ?workload", f"/sessions/?workload={ids['busy_workload']}", {}),
        (admin, "session timeline (3,000)", f"/sessions/{ids['long_session']}/", {}),
        (admin, "session timeline p15", f"/sessions/{ids['long_session']}/?page=15", {}),
        (admin, "decisions", "/decisions/", {}),
        (admin, "decisions ?decision=deny", "/decisions/?decision=deny", {}),
        (admin, "decisions ?workload", f"/decisions/?workload={ids['busy_workload']}", {}),
        (admin, "decisions ?tool&deny", "/decisions/?tool=code-exec&decision=deny", {}),
        (admin, "decisions 100,000 back", f"/decisions/?before={ids['decisions_deep']}", {}),
        (admin, "audit", "/audit/", {}),
        (admin, "audit ?action", "/audit/?action=grant.create", {}),
        (admin, "audit ?actor, 1,000 back", f"/audit/?{audit_deep}", {}),
        (
            admin,
            "audit ?object",
            f"/audit/?object_type=workloads.workload&object_id={ids['busy_workload_id']}",
            {},
        ),
        (admin, "tokens", "/tokens/", {}),
        (admin, "api workloads", "/api/v1/workloads", {}),
        (
            admin,
            "api workloads ?status&tier",
            "/api/v1/workloads?status=active&tier=internal-act",
            {},
        ),
        (admin, "api workloads ?page=100", "/api/v1/workloads?page=100", {}),
        (admin, "api tiers", "/api/v1/tiers", {}),
        (admin, "api tools", "/api/v1/tools", {}),
        (admin, "api rules", "/api/v1/rules", {}),
        (admin, "api grants", "/api/v1/grants", {}),
        (admin, "api grants ?status=expired", "/api/v1/grants?status=expired", {}),
        (admin, "api grants ?workload", f"/api/v1/grants?workload={ids['busy_workload']}", {}),
        (admin, "api requests", "/api/v1/requests", {}),
        (admin, "api findings", "/api/v1/findings", {}),
        (admin, "api findings ?status&severity", "/api/v1/findings?status=open&severity=high", {}),
        (admin, "api sessions", "/api/v1/sessions", {}),
        (
            admin,
            "api session events p10",
            f"/api/v1/sessions/{ids['long_session']}/events?page=10",
            {},
        ),
        (reviewer, "dashboard", "/", {}),
        (reviewer, "dashboard findings panels", "/findings/dashboard-panels/", hx),
        (reviewer, "findings (open)", "/findings/", {}),
        (reviewer, "findings ?assignee", "/findings/?assignee=bench-reviewer", {}),
        (reviewer, "finding detail", f"/findings/{ids['finding']}/", {}),
        (reviewer, "sessions", "/sessions/", {}),
        (reviewer, "session timeline (3,000)", f"/sessions/{ids['long_session']}/", {}),
        (reviewer, "decisions ?decision=deny", "/decisions/?decision=deny", {}),
        (reviewer, "api findings ?assignee", "/api/v1/findings?assignee=bench-reviewer", {}),
        (approver, "requests (awaiting)", "/requests/", {}),
        (approver, "api requests ?view=awaiting", "/api/v1/requests?view=awaiting", {}),
        (owner, "dashboard", "/", {}),
        (owner, "workloads", "/workloads/", {}),
        (owner, "workloads ?q=invoice", "/workloads/?q=invoice", {}),
        (owner, "workloads ?ordering=-tier p5", "/workloads/?ordering=-tier&page=5", {}),
        (owner, "workload detail", f"/workloads/{ids['owned_workload']}/", {}),
        (owner, "requests (mine)", "/requests/", {}),
        (owner, "api workloads", "/api/v1/workloads", {}),
        (owner, "api grants", "/api/v1/grants", {}),
        (owner, "api requests", "/api/v1/requests", {}),
    ]


def bench_ids() -> dict:
    from django.db.models import Count

    from governance.models import Finding
    from workloads.models import Session, Workload

    busy = (
        Workload.objects.filter(status="active")
        .annotate(n=Count("sessions"))
        .order_by("-n", "id")
        .values_list("slug", "id")[:1]
    )[0]
    owned = (
        Workload.objects.filter(owner__username=HEAVY_OWNER, status="active")
        .order_by("id")
        .values_list("slug", flat=True)[:1]
    )[0]
    finding = (
        Finding.objects.filter(comments__isnull=False, status="open")
        .order_by("-id")
        .values_list("id", flat=True)[:1]
    )[0]
    from governance.keyset import cursor_of
    from governance.models import AuditEvent, Decision

    # Deep pages: the cursors a user would hold after paging 2,000 and 400 pages back.
    deep_decision = Decision.objects.order_by("-decided_at", "-id")[100_000]
    deep_audit = AuditEvent.objects.filter(actor__username=HEAVY_OWNER).order_by("-id")[:1000]
    return {
        "decisions_deep": cursor_of(deep_decision, ("decided_at", "id")),
        "audit_deep": cursor_of(list(deep_audit)[-1], ("id",)),
        "busy_workload": busy[0],
        "busy_workload_id": busy[1],
        "owned_workload": owned,
        "finding": finding,
        "long_session": Session.objects.get(external_id=LONG_SESSION).pk,
    }


class SqlTimer:
    """execute_wrapper: counts queries and their time, cheaply enough to stay on while timing."""

    def __init__(self):
        self.count = 0
        self.seconds = 0.0

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - started
            self.count += 1


def percentile(values: list[float], fraction: float) -> float:
    """Nearest rank: the smallest value with at least `fraction` of the values at or below."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def watch_full_collections() -> list[float]:
    """Durations (ms) of the garbage collector's full (generation 2) passes: they, not the
    page, are what lands an otherwise ~40 ms request in the p95 tail, so they are counted."""
    pauses: list[float] = []
    started = [0.0]

    def callback(phase, info):
        if info["generation"] != 2:
            return
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append((time.perf_counter() - started[0]) * 1000)

    gc.callbacks.append(callback)
    return pauses


def measure(repeat: int, only: str, show_sql: bool) -> list[dict]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    ids = bench_ids()
    full_gcs = watch_full_collections()
    users = {
        u.username: u for u in get_user_model().objects.filter(username__in=[*STAFF, HEAVY_OWNER])
    }
    clients = {}
    selected = [case for case in cases(ids) if not only or only in f"{case[0]} {case[1]} {case[2]}"]
    for username, *_ in selected:
        if username not in clients:
            clients[username] = Client()
            clients[username].force_login(users[username])
    results = []
    for username, label, url, headers in selected:
        client = clients[username]
        for _ in range(2):
            response = client.get(url, **headers)
            if response.status_code != 200:
                sys.exit(f"{username} {url}: HTTP {response.status_code}")
        with CaptureQueriesContext(connection) as captured:
            client.get(url, **headers)
        queries = captured.captured_queries  # read now: the next request clears the log
        if show_sql:
            for query in queries:
                print(f"    {query['time']}s {query['sql'][:400]}")
        timer = SqlTimer()
        times, sql_times = [], []
        full_gcs.clear()
        with connection.execute_wrapper(timer):
            for _ in range(repeat):
                before = timer.seconds
                started = time.perf_counter()
                client.get(url, **headers)
                times.append((time.perf_counter() - started) * 1000)
                sql_times.append((timer.seconds - before) * 1000)
        row = {
            "user": username.removeprefix("bench-"),
            "page": label,
            "url": url,
            "queries": len(queries),
            "p50": statistics.median(times),
            "p95": percentile(times, 0.95),
            "sql_p50": statistics.median(sql_times),
            "gc2": len(full_gcs),
            "gc2_ms": sum(full_gcs),
        }
        row["ok"] = row["p95"] < TARGET_MS
        results.append(row)
        print(
            f"{row['user']:<9} {label:<30} {row['queries']:>3} q  p50 {row['p50']:7.1f}  "
            f"p95 {row['p95']:7.1f}  sql p50 {row['sql_p50']:6.1f} ms  "
            f"full GCs {row['gc2']:>2} ({row['gc2_ms']:5.0f} ms)  "
            f"{'ok' if row['ok'] else 'MISS'}",
            flush=True,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30, help="timed requests per page")
    parser.add_argument("--only", default="", help="only pages whose user/label/url contain it")
    parser.add_argument("--rebuild", action="store_true", help="drop and rebuild the data")
    parser.add_argument("--sql", action="store_true", help="print each page's queries")
    parser.add_argument(
        "--gc-unfrozen",
        action="store_true",
        help="undo governance/wsgi.py's gc.freeze(), to see what full collections cost "
        "when they scan the whole long-lived heap",
    )
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        sys.exit("Set DATABASE_URL to a PostgreSQL database (it is created if missing).")
    configure_env()
    prepare(url, rebuild=args.rebuild)
    load = os.getloadavg()
    print(
        f"\n{platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores, "
        f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; {args.repeat} requests a page"
    )
    # What a server loads: the WSGI entry point (URLconf imported, loaded heap frozen).
    import governance.wsgi  # noqa: F401

    if args.gc_unfrozen:
        gc.unfreeze()
    print(f"gc: {gc.get_freeze_count():,} objects frozen out of collections")
    results = measure(args.repeat, args.only, args.sql)
    missed = [r for r in results if not r["ok"]]
    print(f"\n{len(results) - len(missed)}/{len(results)} pages with p95 < {TARGET_MS:.0f} ms")
    print("\n| user | page | queries | p50 ms | p95 ms | p95 < 150 ms | SQL p50 ms | full GCs |")
    print("|---|---|---:|---:|---:|---|---:|---:|")
    for r in results:
        print(
            f"| {r['user']} | {r['page']} | {r['queries']} | {r['p50']:.1f} | {r['p95']:.1f} | "
            f"{'yes' if r['ok'] else '**no**'} | {r['sql_p50']:.1f} | {r['gc2']} |"
        )


if __name__ == "__main__":
    main()
