"""Schemathesis over the whole OpenAPI schema, in-process: every operation, positive and negative data, a fixed
seed. No answer may be a 5xx, and every answer must conform to the schema (a documented status code, its content
type, a body matching its schema: the one error shape included)."""

import random
from collections import Counter

import pytest
import schemathesis
from django.conf import LazySettings
from hypothesis import HealthCheck, Phase, given, seed
from hypothesis import settings as hypothesis_settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from collector.models import RegisteredModel
from collector.services import Actor, PredictionIn, api_key_create, prediction_record_batch
from feedbackhub.wsgi import application
from loop import services as loop_services

# Transactional: each in-process request ends by closing the connection, as under a real server.
pytestmark = pytest.mark.django_db(transaction=True)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
CASES_PER_STRATEGY = 25
MIN_CASES = 1000
SEED = 20261202


def _seed_a_trained_model() -> dict[str, str]:
    """A binary model with predictions, outcomes and a champion, so that cases naming it reach deep code."""
    rng = random.Random(7)
    items = []
    for index in range(40):
        row = [rng.random(), rng.random()]
        label = int(row[0] + row[1] > 1)
        items.append(
            PredictionIn(
                model="churn", version="v1", input=row, prediction=label, actual=label if index % 3 else None,
                confidence=rng.random(), event_id=f"seed-{index}",
            )
        )  # fmt: skip
    results = prediction_record_batch(items=items, actor=Actor(label="fuzz-seed"))
    run, _ = loop_services.retrain_request(
        registered_model=RegisteredModel.objects.get(name="churn"),
        trigger="api",
        dispatch=False,
    )
    loop_services.training_run_execute(run_id=run.pk)
    return {"name": "churn", "id": str(results[0].id), "run": str(run.pk)}


def _fuzz(strategy: object, label: str, key: str, cases: Counter[str]) -> None:
    @seed(SEED)
    @hypothesis_settings(
        max_examples=CASES_PER_STRATEGY,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def call(case: schemathesis.Case) -> None:
        cases[label] += 1
        case.call_and_validate(headers={"Authorization": f"Bearer {key}"}, checks=CHECKS)

    call()


def test_no_generated_request_gets_a_server_error_or_an_answer_outside_the_schema(settings: LazySettings) -> None:
    settings.ALLOWED_HOSTS = ["localhost"]  # schemathesis' WSGI client sends Host: localhost
    _, key = api_key_create(name="fuzzer")
    known = _seed_a_trained_model()
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
    cases: Counter[str] = Counter()

    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        strategies = [operation.as_strategy(mode) for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]
        path_names = {parameter.name for parameter in operation.path_parameters}
        if path_names:  # also aim at objects that exist: random names and ids mostly meet a 404
            existing = {name: known["run"] if "training-runs" in operation.path else known.get(name, known["id"])
                        for name in path_names}  # fmt: skip
            strategies.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=existing))
        for strategy in strategies:
            _fuzz(strategy, operation.label, key, cases)

    assert len(operations) == len(cases) >= 20
    assert sum(cases.values()) >= MIN_CASES, cases
