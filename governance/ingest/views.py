"""The two hot-path views, plain Django for speed (documented in `openapi`).

Order of checks, both views: bearer token (401) → `ingest` scope (403) → rate (429 with
Retry-After) → size (413) → decoding (400) → per item → store. A database that cannot be
reached or a full connection pool answers 503 with Retry-After; bad input never answers 5xx.
"""

from __future__ import annotations

import logging
import zlib
from operator import attrgetter

import msgspec
from django.db import DataError, IntegrityError, InterfaceError, OperationalError
from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from governance.api_common import error_response
from governance.ingest import native, otlp
from governance.ingest import otlp_wire as wire
from governance.ingest.access import ingest_caches_clear, ingest_token_for, throttle_wait
from governance.ingest.store import usage_events_store
from governance.ingest.traces import trace_links, traces_link
from governance.numbers import whole_number
from workloads.models import Session

MAX_BYTES = 5 * 1024 * 1024  # per request, before and after gzip
RETRY_AFTER_UNAVAILABLE = 5
log = logging.getLogger(__name__)


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None):
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


_GRPC_CODES = {400: 3, 401: 16, 403: 7, 405: 12, 413: 8, 415: 3, 429: 8, 503: 14}


def _authorize(request):
    token = ingest_token_for(request.headers.get("Authorization", ""))
    if token is None:
        raise _Refused(401, "not_authenticated", "A valid service token is required.")
    if "ingest" not in token.scopes:
        raise _Refused(403, "forbidden", "This token lacks the ingest scope.")
    if (wait := throttle_wait(request, token)) is not None:
        raise _Refused(429, "throttled", f"Too many requests; retry in {wait} s.", wait)
    return token


def _read_body(request) -> bytes:
    declared = whole_number(request.META.get("CONTENT_LENGTH")) or 0
    if declared > MAX_BYTES:
        raise _Refused(413, "too_large", f"The body is over {MAX_BYTES} bytes.")
    body = request.read(MAX_BYTES + 1)
    if len(body) > MAX_BYTES:
        raise _Refused(413, "too_large", f"The body is over {MAX_BYTES} bytes.")
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding == "gzip":
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, MAX_BYTES + 1)
        except zlib.error:
            raise _Refused(400, "invalid", "The body is not valid gzip.") from None
        if len(body) > MAX_BYTES or inflater.unconsumed_tail:
            raise _Refused(413, "too_large", f"The body inflates to over {MAX_BYTES} bytes.")
        if not inflater.eof:
            raise _Refused(400, "invalid", "The gzip body is truncated.")
    elif encoding not in ("identity", ""):
        raise _Refused(415, "unsupported_media_type", f"Unsupported Content-Encoding {encoding}.")
    return body


def _unavailable(error: Exception):
    if isinstance(error, IntegrityError):
        # A workload deleted while still in the slug cache: forget the cache, ask for a retry
        # (which then rejects its events as unknown_workload).
        ingest_caches_clear()
        return _Refused(503, "unavailable", "The catalogue changed; retry.", 1)
    log.warning("Ingestion refused, database unavailable: %s", error)
    return _Refused(
        503, "unavailable", "The service is overloaded; retry later.", RETRY_AFTER_UNAVAILABLE
    )


def _unstorable(error: DataError) -> _Refused:
    # Validation should have caught it: the batch is refused as bad input, and we are told.
    log.error("Ingestion refused a batch the database would not store: %s", error)
    return _Refused(400, "invalid", "A value in the batch cannot be stored.")


def _json_error(refused: _Refused) -> HttpResponse:
    response = error_response(refused.status, refused.code, refused.message)
    if refused.retry_after is not None:
        response["Retry-After"] = str(refused.retry_after)
    if refused.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="mandate"'
    return response


@csrf_exempt
def events_ingest(request):
    """POST /api/v1/events: a batch of native events, per-item results."""
    if request.method != "POST":
        response = error_response(405, "method_not_allowed", "Use POST.")
        response["Allow"] = "POST"
        return response
    try:
        token = _authorize(request)
        if request.content_type not in ("application/json", "") and not (
            request.content_type.endswith("+json")
        ):
            raise _Refused(415, "unsupported_media_type", "Send application/json.")
        body = _read_body(request)
        try:
            records, rejected, total = native.decode_native_batch(
                body, token=token, now=timezone.now()
            )
        except native.BatchInvalid as error:
            raise _Refused(400, "invalid", str(error)) from None
        except native.BatchTooLarge as error:
            message = f"{error.args[0]} events; a batch holds at most {native.MAX_EVENTS}."
            raise _Refused(413, "too_large", message) from None
        stored = usage_events_store(records=records, source=Session.Source.NATIVE)
    except _Refused as refused:
        return _json_error(refused)
    except DataError as error:
        return _json_error(_unstorable(error))
    except (OperationalError, InterfaceError, IntegrityError) as error:
        return _json_error(_unavailable(error))
    payload = native.batch_answer(
        total=total, rejected=rejected, records=records, repeats=stored.repeats
    )
    return HttpResponse(msgspec.json.encode(payload), content_type="application/json")


@csrf_exempt
def otlp_traces(request):
    """POST /v1/traces: OTLP/HTTP, protobuf or JSON, answered in the request's content type."""
    as_json = request.content_type == "application/json"
    content_type = "application/json" if as_json else "application/x-protobuf"
    try:
        if request.method != "POST":
            raise _Refused(405, "method_not_allowed", "Use POST.")
        token = _authorize(request)
        if request.content_type not in ("application/json", "application/x-protobuf"):
            raise _Refused(
                415,
                "unsupported_media_type",
                "Send application/x-protobuf or application/json.",
            )
        body = _read_body(request)
        decode = wire.spans_from_json if as_json else wire.spans_from_protobuf
        try:
            spans, rejected = decode(body)
        except wire.OtlpInvalid as error:
            raise _Refused(400, "invalid", str(error)) from None
        except wire.OtlpTooLarge:
            raise _Refused(413, "too_large", f"At most {wire.MAX_SPANS} spans a request.") from None
        records, unmapped = otlp.spans_to_records(spans, token=token, now=timezone.now())
        stored = usage_events_store(records=records, source=Session.Source.OTLP)
        reused = wire.reused_spans(spans, records, stored.repeats)
        if reused:  # their events name no session: link only what was stored
            refused = {position for position, problem in stored.repeats if problem}
            records = [record for n, record in enumerate(records) if n not in refused]
        traces_link(trace_links(records))  # after the commit: see governance/ingest/traces
    except _Refused as refused:
        return _otlp_error(refused, as_json=as_json, content_type=content_type)
    except DataError as error:
        return _otlp_error(_unstorable(error), as_json=as_json, content_type=content_type)
    except (OperationalError, InterfaceError, IntegrityError) as error:
        return _otlp_error(_unavailable(error), as_json=as_json, content_type=content_type)
    answer = sorted(rejected + unmapped + reused, key=attrgetter("position"))
    body = wire.export_response(answer, as_json=as_json)
    return HttpResponse(body, content_type=content_type)


def _otlp_error(refused: _Refused, *, as_json: bool, content_type: str) -> HttpResponse:
    body = wire.status_body(_GRPC_CODES.get(refused.status, 2), refused.message, as_json=as_json)
    response = HttpResponse(body, status=refused.status, content_type=content_type)
    if refused.retry_after is not None:
        response["Retry-After"] = str(refused.retry_after)
    if refused.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="mandate"'
    if refused.status == 405:
        response["Allow"] = "POST"
    return response
