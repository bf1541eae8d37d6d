import csv
import io
import json
import tracemalloc
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from collector.exports import export_lines, export_rows
from collector.models import Prediction
from collector.services import Actor, PredictionIn, api_key_create, prediction_record_batch
from tests.conftest import ApiClient, prediction_body

pytestmark = pytest.mark.django_db
URL = "/api/v1/predictions/export/"


@pytest.fixture
def some_predictions(api: ApiClient) -> None:
    api.post_json(
        "/api/v1/predictions/",
        [
            prediction_body(event_id="a", input={"text": 'héllo, "quoted"\nline'}, actual=1),
            prediction_body(event_id="b", interaction_id="=HYPERLINK(1)", timestamp="2026-01-01T00:00:00Z"),
            prediction_body(model="other", event_id="c"),
        ],
    )


def test_the_api_streams_jsonl_with_the_list_filters(api: ApiClient, some_predictions: None) -> None:
    response = api.get(URL, {"format": "jsonl", "model": "churn"})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert [row["event_id"] for row in rows] == ["a", "b"]
    assert rows[0]["input"] == {"text": 'héllo, "quoted"\nline'}
    assert rows[0]["is_correct"] is True


def test_the_api_streams_csv_that_spreadsheets_cannot_run(api: ApiClient, some_predictions: None) -> None:
    response = api.get(URL, {"model": "churn", "since": "2025-12-31T00:00:00Z", "until": "2026-01-02T00:00:00Z"})

    assert response["Content-Disposition"] == 'attachment; filename="predictions.csv"'
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["event_id"] for row in rows] == ["b"]
    assert rows[0]["interaction_id"] == "'=HYPERLINK(1)"


def test_the_export_respects_the_keys_scope(some_predictions: None) -> None:
    _, raw = api_key_create(name="other-only", model_names=["other"])

    body = b"".join(ApiClient(raw).get(URL, {"format": "jsonl"}).streaming_content).decode()

    assert [json.loads(line)["model"] for line in body.splitlines()] == ["other"]


def test_the_export_refuses_an_unknown_format(api: ApiClient) -> None:
    response = api.get(URL, {"format": "xlsx"})

    assert response.status_code == 400
    assert response.json()["error"]["fields"][0]["field"] == "format"


def test_the_command_writes_a_file_and_shows_progress(some_predictions: None, tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    err = StringIO()

    call_command("export_predictions", "--model", "churn", "--format", "jsonl", "-o", str(target), stderr=err)

    assert [json.loads(line)["event_id"] for line in target.read_text().splitlines()] == ["a", "b"]
    assert "Exported 2 predictions of 'churn'" in err.getvalue()
    with pytest.raises(CommandError, match="No model named"):
        call_command("export_predictions", "--model", "nope")


def peak_memory_of_export(count: int) -> int:
    tracemalloc.start()
    try:
        for _ in export_lines("csv", export_rows(Prediction.objects.all(), chunk_size=500)):
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_exporting_a_large_table_keeps_memory_bounded() -> None:
    actor = Actor(label="test")
    text = "x" * 200
    for start in range(0, 12_000, 1000):
        items = [
            PredictionIn(model="big", version="v1", input={"n": n, "text": text}, prediction=n % 2)
            for n in range(start, start + 1000)
        ]
        prediction_record_batch(items=items, actor=actor)
        if start == 1000:
            small = peak_memory_of_export(2000)
    large = peak_memory_of_export(12_000)

    assert large < small * 1.5, (small, large)
