import json
import sqlite3
from contextlib import closing
from io import StringIO
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from collector.models import Feedback, OutcomeRevision, PendingOutcome, Prediction, RegisteredModel
from collector.redaction import RedactionPolicy, luhn_valid, marker
from tests.conftest import ApiClient, prediction_body

pytestmark = pytest.mark.django_db
EMAIL = "jane.doe+shop@example.co.uk"
CARD = "4111 1111 1111 1111"


def everything_stored() -> str:
    rows = [
        *Prediction.objects.values("input", "prediction", "actual", "attributes", "interaction_id"),
        *Feedback.objects.values("value", "comment", "interaction_id"),
        *OutcomeRevision.objects.values("previous_actual", "actual"),
        *PendingOutcome.objects.values("actual"),
    ]
    return json.dumps(rows, default=str)


def test_an_email_and_a_card_in_a_prediction_are_masked_before_storage(api: ApiClient) -> None:
    body = prediction_body(
        input={"text": f"mail me at {EMAIL}, card {CARD}", "nested": [{"to": EMAIL}]},
        attributes={"customer": EMAIL},
        interaction_id=EMAIL,
    )

    assert api.post_json("/api/v1/predictions/", body).status_code == 201

    row = Prediction.objects.get()
    assert EMAIL not in everything_stored() and "4111" not in everything_stored()
    assert row.input["text"] == f"mail me at {marker('email', EMAIL)}, card {marker('card', '4111111111111111')}"
    assert row.input["nested"][0]["to"].startswith("[masked:email:")
    assert row.interaction_id == marker("email", EMAIL)


def test_masking_is_deterministic_so_retries_stay_idempotent(api: ApiClient) -> None:
    body = prediction_body(event_id="e1", input={"email": EMAIL})

    first = api.post_json("/api/v1/predictions/", body)
    retry = api.post_json("/api/v1/predictions/", body)

    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.json()["status"] == "duplicate"


def test_outcomes_pending_outcomes_and_feedback_are_masked(api: ApiClient) -> None:
    api.post_json("/api/v1/predictions/", prediction_body(model="support", prediction="answer", event_id="p1"))
    api.post_json("/api/v1/outcomes/", {"model": "support", "event_id": "p1", "actual": f"reply to {EMAIL}"})
    api.post_json("/api/v1/outcomes/", {"model": "support", "event_id": "p1", "actual": f"reply to {EMAIL}!"})
    api.post_json("/api/v1/outcomes/", {"model": "support", "event_id": "later", "actual": EMAIL})
    api.post_json(
        "/api/v1/feedback/",
        {"kind": "correction", "model": "support", "interaction_id": EMAIL, "value": EMAIL, "comment": f"{CARD}!"},
    )

    stored = everything_stored()
    assert EMAIL not in stored and "4111 1111" not in stored
    assert stored.count("[masked:email:") >= 5


def test_the_seed_endpoint_and_the_importer_mask_too(api: ApiClient, tmp_path: Path) -> None:
    api.post_json(
        "/log-feedback",
        {"input_data": {"user": EMAIL}, "prediction": 1, "actual_value": None, "model_version": "v1", "latency": 0.1},
    )
    seed = tmp_path / "feedback.db"
    with closing(sqlite3.connect(seed)) as connection:
        connection.execute(
            "CREATE TABLE feedback (id INTEGER PRIMARY KEY, timestamp TEXT, input_data TEXT, prediction TEXT, "
            "actual_value TEXT, model_version TEXT, latency REAL)"
        )
        connection.execute(
            "INSERT INTO feedback (timestamp, input_data, prediction, actual_value, model_version, latency) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            ("2024-01-01 10:00:00", str({"email": EMAIL}), "1", "None", "v1", 0.2),
        )
        connection.commit()

    call_command("import_feedback_db", str(seed), "--model", "legacy", stdout=StringIO(), stderr=StringIO())

    assert Prediction.objects.count() == 2
    assert EMAIL not in everything_stored()


def test_a_model_can_drop_or_hash_keys_and_mask_its_own_patterns(api: ApiClient) -> None:
    RegisteredModel.objects.create(
        name="kyc",
        task_type="binary",
        pii_drop_keys=["ssn", "attributes.notes"],
        pii_hash_keys=["customer_id"],
        pii_patterns=[{"name": "phone", "pattern": r"\+\d{2} \d{3} \d{4}"}],
    )
    body = prediction_body(
        model="kyc",
        input={"ssn": "078-05-1120", "customer_id": "C-991", "deep": {"ssn": "x"}, "text": "call +44 207 1234"},
        attributes={"notes": "free text", "keep": "this"},
    )

    api.post_json("/api/v1/predictions/", body)

    row = Prediction.objects.get()
    assert row.input["ssn"].startswith("[masked:dropped:") and row.input["deep"]["ssn"].startswith("[masked:dropped:")
    assert row.input["customer_id"] == marker("hash", "C-991")
    assert row.input["text"] == f"call {marker('phone', '+44 207 1234')}"
    assert row.attributes == {"notes": row.attributes["notes"], "keep": "this"}
    assert row.attributes["notes"].startswith("[masked:dropped:")


def test_masking_can_be_switched_off_per_model(api: ApiClient) -> None:
    RegisteredModel.objects.create(name="internal", task_type="binary", pii_mask_emails=False)

    api.post_json("/api/v1/predictions/", prediction_body(model="internal", input={"email": EMAIL}))

    assert Prediction.objects.get().input == {"email": EMAIL}


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("4111-1111-1111-1111", True),
        ("5500 0000 0000 0004", True),
        ("order 1234567890123", False),  # 13 digits failing the Luhn check
        ("phone 0123 456 789", False),
        ("id 41111111111111111111111", False),  # too long to be a card
    ],
)
def test_only_digit_runs_that_pass_the_luhn_check_count_as_cards(text: str, masked: bool) -> None:
    policy = RedactionPolicy()

    assert ("[masked:card:" in policy.text(text)) is masked


def test_the_luhn_check() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")


def test_a_bad_pattern_is_refused_when_the_model_is_saved_in_the_admin() -> None:
    model = RegisteredModel(name="m", task_type="binary", pii_patterns=[{"name": "x", "pattern": "("}])

    with pytest.raises(ValidationError, match="not a regular expression"):
        model.full_clean()
