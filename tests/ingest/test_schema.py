"""Both plain hot-path views appear in the OpenAPI schema, documented like the rest."""

import ast
from pathlib import Path

import pytest
from drf_spectacular.generators import SchemaGenerator

from governance.ingest.records import MAX_INT, REJECTION_CODES
from governance.ingest.urls import events_ingest, otlp_traces
from tests.ingest.conftest import event


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def test_the_events_endpoint_is_documented_with_its_errors(schema):
    operation = schema["paths"]["/api/v1/events"]["post"]
    assert operation["operationId"] == "events_ingest"
    assert set(operation["responses"]) >= {"200", "400", "401", "403", "413", "429", "503"}
    assert "examples" in operation["requestBody"]["content"]["application/json"]
    assert {"ServiceToken": []} in operation["security"]


def test_the_otlp_endpoint_is_documented_in_both_encodings(schema):
    operation = schema["paths"]["/v1/traces"]["post"]
    assert set(operation["requestBody"]["content"]) == {
        "application/x-protobuf",
        "application/json",
    }
    assert set(operation["responses"]) >= {"200", "400", "413", "429", "503"}
    # OTLP answers in the request's content type: a protobuf export gets protobuf back.
    for code, response in operation["responses"].items():
        assert set(response["content"]) == {"application/json", "application/x-protobuf"}, code


def test_the_json_hot_paths_document_json_bodies_only(schema):
    for path in ("/api/v1/events", "/api/v1/decisions"):
        assert set(schema["paths"][path]["post"]["requestBody"]["content"]) == {"application/json"}


def test_the_served_views_stay_plain_functions():
    for view in (events_ingest, otlp_traces):
        assert not hasattr(view, "view_class")
        assert view.required_scope == "ingest"


def _strings(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and type(n.value) is str}


def _emitted_codes(source: str) -> set[str]:
    """Rejection codes a module can produce: the `code` of each `Rejection(...)` it builds
    (a literal, or the literals assigned to the variable it passes), and the first item of the
    tuples its `(code, …)` helpers return (functions annotated `-> tuple[str, …]`)."""
    codes: set[str] = set()
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, ast.FunctionDef):
            continue
        assigned: dict[str, set[str]] = {}
        for node in ast.walk(function):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        assigned.setdefault(target.id, set()).update(_strings(node.value))
        for node in ast.walk(function):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Rejection":
                keyword = [k.value for k in node.keywords if k.arg == "code"]
                code = node.args[2] if len(node.args) > 2 else (keyword or [None])[0]
                if isinstance(code, ast.Name):
                    codes |= assigned.get(code.id, set())
                elif code is not None:
                    codes |= _strings(code)
        if function.returns is not None and ast.unparse(function.returns).startswith("tuple[str"):
            for node in ast.walk(function):
                if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple):
                    codes |= _strings(node.value.elts[0])
    return codes


# The modules POST /api/v1/events runs (OTLP's own mapping reports in partialSuccess text).
_NATIVE_PATH = ("native", "store", "views", "records", "access", "handoff")


def test_every_rejection_code_the_events_endpoint_can_emit_is_documented(schema):
    """The documented enum is the ingest code's own list, and every code the native path
    builds a rejection with is on that list: a new code cannot ship undocumented."""
    import governance.ingest

    package = Path(governance.ingest.__file__).parent
    emitted = set().union(
        *(_emitted_codes((package / f"{name}.py").read_text()) for name in _NATIVE_PATH)
    )
    # The scan sees the inline codes as well as the helpers' (it is not reading nothing).
    assert {"duplicate_event_id", "missing_field", "workload_not_bound"} <= emitted
    documented = schema["components"]["schemas"]["RejectionDocCodeEnum"]["enum"]
    assert documented == list(REJECTION_CODES)
    assert emitted - set(documented) == set()


def test_the_event_schema_states_the_limits_the_decoder_applies(schema):
    event = schema["components"]["schemas"]["NativeEventDocRequest"]["properties"]
    for name in ("tool", "tool_call_id", "content"):  # "" is the decoder's default
        assert "minLength" not in event[name], name
    for name in ("event_id", "session_id", "workload"):
        assert event[name]["minLength"] == 1, name
    for name in ("input_tokens", "output_tokens", "reasoning_tokens", "duration_ms"):
        assert (event[name]["minimum"], event[name]["maximum"]) == (0, MAX_INT), name


def test_the_events_endpoint_takes_what_the_schema_allows_and_refuses_past_it(
    post_events, workload
):
    blank = event(1, "tool_result", tool_call_id="", content="", input_tokens=MAX_INT)
    response = post_events([blank, event(2, output_tokens=MAX_INT + 1)])
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 1
    assert [(r["index"], r["code"]) for r in body["rejected"]] == [(1, "invalid_field")]
    assert post_events([event(3, "tool_call", tool="")]).json()["rejected"][0]["code"] == (
        "missing_field"
    )


def test_the_events_answer_documents_duplicates_and_reused_ids(schema):
    components = schema["components"]["schemas"]
    result = components["BatchResultDoc"]
    assert set(result["properties"]) == {"accepted", "rejected", "duplicates"}
    assert set(result["required"]) == {"accepted", "rejected", "duplicates"}
    codes = components["RejectionDoc"]["properties"]["code"]
    codes = components[codes["$ref"].rsplit("/", 1)[1]]["enum"] if "$ref" in codes else codes
    assert {"event_id_reused", "duplicate_event_id"} <= set(codes)
