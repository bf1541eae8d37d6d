from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from collector.models import ApiKey, RegisteredModel
from tests.conftest import ApiClient, prediction_body

pytestmark = pytest.mark.django_db


def run_create_api_key(*args: str) -> str:
    out, err = StringIO(), StringIO()
    call_command("create_api_key", *args, stdout=out, stderr=err)
    return out.getvalue().strip().splitlines()[-1]


def test_it_prints_a_working_key_as_the_last_line() -> None:
    raw = run_create_api_key("scorer")

    response = ApiClient(raw).post_json("/api/v1/predictions/", prediction_body())

    assert response.status_code == 201
    key = ApiKey.objects.get()
    assert (key.name, key.all_models) == ("scorer", True)
    assert raw not in key.key_sha256


def test_it_scopes_a_key_to_named_models_registering_new_ones() -> None:
    RegisteredModel.objects.create(name="churn", task_type="binary")

    raw = run_create_api_key("two-models", "--model", "churn", "--model", "price", "--task-type", "regression")

    key = ApiKey.objects.get()
    assert key.all_models is False
    assert sorted(key.allowed_models.values_list("name", "task_type")) == [("churn", "binary"), ("price", "regression")]
    assert ApiClient(raw).post_json("/api/v1/predictions/", prediction_body(model="other")).status_code == 403


def test_it_refuses_an_invalid_model_name_and_creates_nothing() -> None:
    with pytest.raises(CommandError, match="Nothing was created"):
        run_create_api_key("bad", "--model", "no spaces please")

    assert ApiKey.objects.count() == 0
    assert RegisteredModel.objects.count() == 0
