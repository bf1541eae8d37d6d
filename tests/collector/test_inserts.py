"""insert_rows stores exactly what bulk_create stores, and gives each instance its id."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from collector.inserts import adapted_column, insert_rows, row_maker
from collector.models import ModelVersion, Prediction, RegisteredModel

pytestmark = pytest.mark.django_db


def predictions(version: ModelVersion, prefix: str, *, times: int = 1) -> list[Prediction]:
    moment = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
    shapes: list[dict[str, Any]] = [
        {"input": {"tenure": 3, "plan": "basic"}, "prediction": 1},
        {"input": [1, 2.5, None], "prediction": "yes", "actual": "no", "actual_label": "no", "is_correct": False},
        {"input": "café ☃", "prediction": 0.25, "latency_ms": 12.5, "confidence": 1.0, "error": -0.5},
        {"input": {"nested": {"a": [True, False]}}, "prediction": [0.1, 0.9], "attributes": {"k": "v"}},
        {"input": 0, "prediction": "", "actual": None, "interaction_id": "chat-1", "training_label": {"x": 1}},
        {"input": {}, "prediction": False, "actual_recorded_at": moment + timedelta(hours=1), "is_correct": True},
        {"input": [None], "prediction": {"x": "x" * 300}, "predicted_label": "é" * 255, "interaction_id": "i" * 255},
    ] * times
    return [
        Prediction(
            registered_model_id=version.registered_model_id,
            model_version_id=version.pk,
            event_id=f"{prefix}-{n}",
            created_at=moment + timedelta(seconds=n),
            payload_sha256="0" * 64,
            **shape,
        )
        for n, shape in enumerate(shapes)
    ]


def stored(ids: list[int]) -> list[tuple]:
    columns = [f.column for f in Prediction._meta.concrete_fields if f.column not in ("id", "event_id", "received_at")]
    placeholders = ", ".join(["%s"] * len(ids))
    table = Prediction._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(columns)} FROM {table} WHERE id IN ({placeholders}) ORDER BY id", ids)  # noqa: S608
        return cursor.fetchall()


def test_it_stores_what_bulk_create_stores_and_sets_the_ids() -> None:
    model = RegisteredModel.objects.create(name="churn", task_type="binary")
    version = ModelVersion.objects.create(registered_model=model, version="v1")
    by_django = Prediction.objects.bulk_create(predictions(version, "django"))
    ours = predictions(version, "ours")

    with transaction.atomic():
        insert_rows(ours)

    assert stored([row.pk for row in ours]) == stored([row.pk for row in by_django])
    for row in ours:
        assert Prediction.objects.get(pk=row.pk).event_id == row.event_id
        assert row.received_at is not None and not row._state.adding
    assert [row.pk for row in ours] == sorted(row.pk for row in ours)


def test_a_batch_goes_as_one_array_a_column_on_postgresql_and_stores_what_bulk_create_stores() -> None:
    model = RegisteredModel.objects.create(name="churn", task_type="binary")
    version = ModelVersion.objects.create(registered_model=model, version="v1")
    by_django = Prediction.objects.bulk_create(predictions(version, "django", times=3))
    ours = predictions(version, "ours", times=3)

    with CaptureQueriesContext(connection) as logged, transaction.atomic():
        insert_rows(ours)

    # On SQLite, one executemany (which the log shows as one entry).
    [insert] = [query["sql"] for query in logged if "INSERT" in query["sql"]]
    assert len(ours) == 21 and ("UNNEST" in insert) is (connection.vendor == "postgresql")
    assert stored([row.pk for row in ours]) == stored([row.pk for row in by_django])
    assert [Prediction.objects.get(pk=row.pk).event_id for row in ours] == [row.event_id for row in ours]


def test_more_rows_than_one_statement_takes_keep_their_order_ids_and_values_sent_beforehand() -> None:
    model = RegisteredModel.objects.create(name="churn", task_type="binary")
    version = ModelVersion.objects.create(registered_model=model, version="v1")
    rows = predictions(version, "many", times=300)  # 2,100 rows: three statements on PostgreSQL
    inputs = adapted_column(Prediction, "input", [{"row": n} for n in range(len(rows))])

    with transaction.atomic():
        insert_rows(rows, adapted={"input": inputs})

    stored_rows = Prediction.objects.in_bulk([row.pk for row in rows])
    assert [stored_rows[row.pk].event_id for row in rows] == [f"many-{n}" for n in range(len(rows))]
    assert [stored_rows[row.pk].input for row in rows] == [{"row": n} for n in range(len(rows))]


def test_a_single_row_stores_what_bulk_create_stores_and_gets_its_id() -> None:
    model = RegisteredModel.objects.create(name="churn", task_type="binary")
    version = ModelVersion.objects.create(registered_model=model, version="v1")
    by_django = Prediction.objects.bulk_create(predictions(version, "django"))
    ours = predictions(version, "ours")

    for row in ours:  # one statement each, the id read back from it
        with transaction.atomic():
            insert_rows([row])

    assert stored([row.pk for row in ours]) == stored([row.pk for row in by_django])
    assert [Prediction.objects.get(pk=row.pk).event_id for row in ours] == [row.event_id for row in ours]


def test_it_gives_ids_in_order_across_batches() -> None:
    model = RegisteredModel.objects.create(name="churn", task_type="binary")
    version = ModelVersion.objects.create(registered_model=model, version="v1")
    for batch in range(3):
        rows = predictions(version, f"batch-{batch}")
        with transaction.atomic():
            insert_rows(rows)
        assert [Prediction.objects.get(pk=row.pk).event_id for row in rows] == [row.event_id for row in rows]


def test_row_maker_makes_what_the_constructor_makes() -> None:
    values = {
        "registered_model_id": 3,
        "model_version_id": 4,
        "event_id": "e-1",
        "created_at": datetime(2026, 3, 4, tzinfo=UTC),
        "input": {"a": 1},
        "prediction": 1,
        "latency_ms": 2.5,
        "payload_sha256": "0" * 64,
    }
    by_constructor = Prediction(**values)
    new_row = row_maker(Prediction)
    ours = new_row(**values)

    def state(row: Prediction) -> dict[str, Any]:
        return {name: value for name, value in row.__dict__.items() if name != "_state"}

    assert state(ours) == state(by_constructor)
    assert (ours._state.adding, ours._state.db) == (True, None)
    assert ours.attributes == {} and ours.attributes is not new_row(**values).attributes
    with pytest.raises(TypeError):
        new_row(no_such_field=1)
