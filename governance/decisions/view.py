"""POST /api/v1/decisions — the hot path. A plain Django view: no DRF, no ORM, no middleware
(see middleware.py), at most one Redis round trip, and the log written by another thread.

Single: {"workload", "tool", "session"?, "context"?, "id"?} → one answer.
Batch:  {"checks": [ ...up to DECISIONS_BATCH_MAX of the above... ]} → {"results": [...]},
        each result carrying its check's `id` (or a generated one) as correlation id. A
        malformed check gets an `error` of its own in its place (no decision, not logged);
        the others are answered. A malformed envelope is a 400, too many checks a 413.

Auth: `Authorization: Bearer <token>` with the decide scope. The token is found in the
snapshot by its SHA-256 (tokens are compiled in; issuing or revoking one bumps the policy
version). A token not bound to the asked workload gets a *deny* with reason
`token_not_bound` (logged like any answer), not a 403: in a batch the other checks still get
their answers, and the answer does not reveal whether the workload exists.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Sequence

import msgspec
from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt

from governance.api_common import UNKNOWN_FIELD, error_body, error_response
from governance.decisions.evaluator import (
    SessionPlan,
    Verdict,
    reasons_json,
    session_outcome,
    static_verdict,
)
from governance.decisions.log import decision_row
from governance.decisions.runtime import runtime
from governance.decisions.snapshot import PolicyUnavailable
from governance.decisions.state import StaleVersion, StateUnavailable
from governance.permissions import view_marks
from governance.tokens import bearer_secret

_encode = msgspec.json.encode
_decode = msgspec.json.decode
_WORKLOAD_MAX, _TOOL_MAX, _SESSION_MAX, _ID_MAX = 80, 80, 200, 64  # the log's column sizes
_FIELD_LIMITS = {
    "workload": _WORKLOAD_MAX,
    "tool": _TOOL_MAX,
    "session": _SESSION_MAX,
    "id": _ID_MAX,
}
# A field the endpoint does not know is refused, not ignored: a misspelt "sesion" would
# otherwise turn a session check into a sessionless one without a word.
_CHECK_FIELDS = frozenset((*_FIELD_LIMITS, "context"))


class BadRequest(Exception):
    def __init__(self, fields: dict):
        super().__init__("invalid")
        self.fields = fields


def _json(body: dict, status: int = 200) -> HttpResponse:
    return HttpResponse(_encode(body), content_type="application/json", status=status)


def _unavailable(message: str) -> HttpResponse:
    response = error_response(503, "unavailable", message)
    response["Retry-After"] = "1"
    return response


def _parse_check(item) -> tuple:
    """(workload, tool, session, id, context as JSON text) of a well-formed check, or
    BadRequest naming the fields at fault."""
    # The common, valid case in one expression; anything else goes to the field-by-field
    # pass below, which says what is wrong with each field.
    if type(item) is dict:
        workload, tool = item.get("workload"), item.get("tool")
        session, check_id, context = item.get("session"), item.get("id"), item.get("context")
        if (
            type(workload) is str
            and 0 < len(workload) <= _WORKLOAD_MAX
            and type(tool) is str
            and 0 < len(tool) <= _TOOL_MAX
            and (session is None or (type(session) is str and 0 < len(session) <= _SESSION_MAX))
            and (check_id is None or (type(check_id) is str and 0 < len(check_id) <= _ID_MAX))
            and (context is None or type(context) is dict)
            and item.keys() <= _CHECK_FIELDS
        ):
            return workload, tool, session, check_id, _context_json(context)
    return _invalid_check(item)


def _context_json(context: dict | None) -> str:
    """The context as the log stores it, within DECISIONS_CONTEXT_MAX bytes: every answer is
    logged with its context, and the log buffers entries in memory while the database is
    away, so an unbounded context would let one token fill a web process's memory."""
    if not context:
        return "{}"
    encoded = _encode(context)
    limit = settings.DECISIONS_CONTEXT_MAX
    if len(encoded) > limit:
        raise BadRequest({"context": [f"At most {limit} bytes of JSON."]})
    return encoded.decode()


def _invalid_check(item) -> tuple:
    if not isinstance(item, dict):
        raise BadRequest({"non_field_errors": ["Expected an object."]})
    fields = {}
    values: list[str | None] = []
    for name in ("workload", "tool", "session", "id"):
        value = item.get(name)
        required = name in ("workload", "tool")
        if value is None and not required:
            values.append(None)
            continue
        if not isinstance(value, str) or not value or len(value) > _FIELD_LIMITS[name]:
            fields[name] = [
                f"A non-empty string of at most {_FIELD_LIMITS[name]} characters is required."
            ]
        values.append(value)
    context = item.get("context")
    if context is not None and not isinstance(context, dict):
        fields["context"] = ["Expected an object."]
    for name in sorted(item.keys() - _CHECK_FIELDS):
        fields[str(name)] = [UNKNOWN_FIELD]
    if fields:
        raise BadRequest(fields)
    return (*values, _context_json(context))


def _parse_each(items: list) -> tuple[list[tuple], dict[int, dict]]:
    """The slow path of a batch with a malformed check: the well-formed checks, and the
    result each malformed one gets in its place, by position."""
    checks: list[tuple] = []
    refused: dict[int, dict] = {}
    for position, item in enumerate(items):
        try:
            checks.append(_parse_check(item))
        except BadRequest as exc:
            check_id = item.get("id") if isinstance(item, dict) else None
            usable = isinstance(check_id, str) and 0 < len(check_id) <= _ID_MAX
            refused[position] = {
                "id": check_id if usable else None,
                **error_body("invalid", "The check has invalid fields.", fields=exc.fields),
            }
    return checks, refused


def _in_place(answers: list[dict], refused: dict[int, dict]) -> list[dict]:
    """The answers to the well-formed checks with each refused check's result put back at
    its position in the batch."""
    remaining = iter(answers)
    total = len(answers) + len(refused)
    return [refused[n] if n in refused else next(remaining) for n in range(total)]


def _decide(snapshot, token, checks, now: float, store):
    """Verdicts for the parsed checks; raises StaleVersion / StateUnavailable."""
    verdicts: list = [
        static_verdict(snapshot, token, workload, tool, session, now)
        for workload, tool, session, _id, _context in checks
    ]
    pending = [i for i, v in enumerate(verdicts) if isinstance(v, SessionPlan)]
    if pending:
        results = store.check([(verdicts[i], now) for i in pending], snapshot.version)
        for i, (code, detail, started_at, calls) in zip(pending, results, strict=True):
            verdicts[i] = session_outcome(code, verdicts[i], started_at, calls, now, detail)
    return verdicts


def _answer(verdict: Verdict, version: int) -> dict:
    return {
        "decision": verdict.decision,
        "reasons": verdict.reasons,
        "policy_version": version,
        "obligations": verdict.obligations,
    }


@csrf_exempt
def decide_view(request):
    started = time.perf_counter_ns()
    response: HttpResponse
    if request.method != "POST":
        response = error_response(405, "method_not_allowed", "Use POST.")
        response["Allow"] = "POST"
        return response
    secret = bearer_secret(request.META.get("HTTP_AUTHORIZATION", ""))
    if secret is None:
        return _not_authenticated()
    rt = runtime()
    try:
        snapshot = rt.holder.current()
    except PolicyUnavailable:
        return _unavailable("The policy cannot be confirmed right now; try again.")
    token_hash = hashlib.sha256(secret.encode()).hexdigest()
    now = time.time()
    token = snapshot.tokens.get(token_hash)
    if token is None or now >= token.expires_at:
        return _not_authenticated()
    if "decide" not in token.scopes:
        return error_response(403, "forbidden", "This token lacks the decide scope.")
    content_type = request.content_type  # parsed once by Django when the request was built
    if content_type != "application/json" and content_type and not content_type.endswith("+json"):
        return error_response(415, "unsupported_media_type", "Send application/json.")
    max_body = settings.DECISIONS_MAX_BODY
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return error_response(400, "invalid", "The Content-Length header is not a number.")
    if length > max_body:
        return error_response(413, "too_large", "The request body is too large.")
    if length > 0:
        # Read straight from the server's stream, already bounded by Content-Length:
        # `request.body` adds two wrappers and a copy (about 2 µs a decision).
        body = request.environ["wsgi.input"].read(length)
    else:
        body = request.body
        if len(body) > max_body:  # a body sent without Content-Length
            return error_response(413, "too_large", "The request body is too large.")
    try:
        data = _decode(body)
    except msgspec.DecodeError:
        return error_response(400, "invalid", "The body is not valid JSON.")
    except RecursionError:
        return error_response(400, "invalid", "The body nests too deeply.")
    batch = isinstance(data, dict) and "checks" in data
    refused: dict[int, dict] | None = None  # a batch's malformed checks, by position
    try:
        if batch:
            items = data["checks"]
            if not isinstance(items, list) or not items:
                raise BadRequest({"checks": ["Give a non-empty list of checks."]})
            if len(data) > 1:
                raise BadRequest({str(name): [UNKNOWN_FIELD] for name in data if name != "checks"})
            if len(items) > settings.DECISIONS_BATCH_MAX:
                return error_response(
                    413,
                    "too_large",
                    f"A batch takes at most {settings.DECISIONS_BATCH_MAX} checks.",
                    max_checks=settings.DECISIONS_BATCH_MAX,
                )
            try:
                checks = [_parse_check(item) for item in items]
            except BadRequest:
                checks, refused = _parse_each(items)
        else:
            checks = [_parse_check(data)]
    except BadRequest as exc:
        return error_response(400, "invalid", "The request has invalid fields.", fields=exc.fields)

    for attempt in (1, 2):
        try:
            verdicts = _decide(snapshot, token, checks, now, rt.store)
            break
        except StateUnavailable:
            return _unavailable("Session state is unreachable; try again.")
        except StaleVersion:
            if attempt == 2:
                return _unavailable("The policy version is changing; try again.")
            try:
                snapshot = rt.holder.refresh(authoritative=True)
            except PolicyUnavailable:
                return _unavailable("The policy cannot be confirmed right now; try again.")
            token = snapshot.tokens.get(token_hash)
            if token is None or "decide" not in token.scopes:
                return _not_authenticated()

    version = snapshot.version
    ids: Sequence[str]
    if batch:
        ids = [check[3] or uuid.uuid4().hex for check in checks]
        results = []
        for verdict, correlation_id in zip(verdicts, ids, strict=True):
            answer = _answer(verdict, version)
            answer["id"] = correlation_id
            results.append(answer)
        if refused:
            results = _in_place(results, refused)
        response = _json({"policy_version": version, "results": results})
    else:
        ids = (checks[0][3] or "",)
        response = _json(_answer(verdicts[0], version))
    latency_us = (time.perf_counter_ns() - started) // 1000
    request_id = getattr(request, "request_id", "")
    record = rt.log.record
    for (workload, tool, session, _id, context_json), verdict, correlation_id in zip(
        checks, verdicts, ids, strict=True
    ):
        record(
            decision_row(
                decided_at=now,
                workload=workload,
                tool=tool,
                session=session,
                decision=verdict.decision,
                reasons_json=reasons_json(verdict),
                reason_code=verdict.code,
                policy_version=version,
                latency_us=latency_us,
                token_id=token.id,
                correlation_id=correlation_id,
                request_id=request_id,
                context_json=context_json,
            )
        )
    return response


# Token-only: the permission matrix reads these; no console permission opens this view.
view_marks(decide_view).required_scope = "decide"
view_marks(decide_view).required_permission = None


def _not_authenticated() -> HttpResponse:
    response = error_response(
        401, "not_authenticated", "Give a valid service token: Authorization: Bearer <token>."
    )
    response["WWW-Authenticate"] = 'Bearer realm="mandate"'
    return response
