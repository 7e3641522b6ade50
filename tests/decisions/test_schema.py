import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_the_plain_decision_view_is_documented_with_examples(client):
    schema = client.get(reverse("schema"), HTTP_ACCEPT="application/json").json()
    operation = schema["paths"]["/api/v1/decisions"]["post"]
    assert operation["operationId"] == "decide"
    examples = operation["requestBody"]["content"]["application/json"]["examples"]
    assert {"SessionCheck", "Batch"} <= set(examples)
    answers = operation["responses"]["200"]["content"]["application/json"]["examples"]
    assert {"Allow", "Deny", "BatchAnswer"} <= set(answers)
    assert {"401", "403", "413", "503"} <= set(operation["responses"])
    assert "token_not_bound" in operation["description"]


def test_the_request_is_one_of_a_single_check_or_a_batch_and_so_is_the_answer(client):
    """A body mixing the forms, or with neither, is a 400: the schema says exactly that."""
    schema = client.get(reverse("schema"), HTTP_ACCEPT="application/json").json()
    components = schema["components"]["schemas"]
    operation = schema["paths"]["/api/v1/decisions"]["post"]

    def resolve(ref_holder):
        return components[ref_holder["$ref"].rsplit("/", 1)[1]]

    request = resolve(operation["requestBody"]["content"]["application/json"]["schema"])
    single, batch = (resolve(choice) for choice in request["oneOf"])
    assert set(single["required"]) == {"workload", "tool"} and "checks" not in single["properties"]
    assert batch["required"] == ["checks"] and set(batch["properties"]) == {"checks"}
    assert single["additionalProperties"] is batch["additionalProperties"] is False

    answer = resolve(operation["responses"]["200"]["content"]["application/json"]["schema"])
    one, many = (resolve(choice) for choice in answer["oneOf"])
    assert "id" not in one["properties"] and "decision" in one["required"]
    assert set(many["required"]) == {"policy_version", "results"}


def test_a_batch_result_is_an_answer_or_a_malformed_checks_error_and_415_is_documented(client):
    schema = client.get(reverse("schema"), HTTP_ACCEPT="application/json").json()
    components = schema["components"]["schemas"]
    results = components["BatchAnswerOutput"]["properties"]["results"]["items"]
    choices = components[results["$ref"].rsplit("/", 1)[1]]["oneOf"]
    assert [c["$ref"].rsplit("/", 1)[1] for c in choices] == ["AnswerOutput", "CheckErrorOutput"]
    error = components["CheckErrorOutput"]
    assert set(error["required"]) == {"id", "error"} and error["properties"]["id"]["nullable"]
    operation = schema["paths"]["/api/v1/decisions"]["post"]
    assert "415" in operation["responses"]
    answers = operation["responses"]["200"]["content"]["application/json"]["examples"]
    assert "error" in answers["BatchAnswerWithAMalformedCheck"]["value"]["results"][1]
