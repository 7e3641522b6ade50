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
