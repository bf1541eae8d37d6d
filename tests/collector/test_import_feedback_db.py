import hashlib
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from io import StringIO
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.core.management import CommandError, call_command

from collector.models import ModelVersion, Prediction, RegisteredModel, TaskType

pytestmark = pytest.mark.django_db

# The seed logger's two schemas, exactly as it created them.
BASIC_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS feedback (id INTEGER PRIMARY KEY, timestamp TEXT, input_data TEXT, "
    "prediction TEXT, actual_value TEXT, model_version TEXT, latency REAL)"
)
EXTENDED_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS feedback (id INTEGER PRIMARY KEY, timestamp TEXT, input_data TEXT, "
    "prediction TEXT, actual_value TEXT, model_version TEXT, latency REAL, confidence_score REAL)"
)
SEED_TIME_ZONE = "Europe/Berlin"
WHEN = datetime(2024, 3, 1, 12, 30, 5)


@dataclass(frozen=True)
class Logged:
    """What a client sent the seed logger; it stored each value with str(...)."""

    input_data: Any
    prediction: Any
    actual_value: Any = None
    model_version: Any = "v1"
    latency: float = 0.042
    confidence_score: float | None = None
    timestamp: datetime = WHEN


def write_seed_db(path: Path, rows: list[Logged], *, extended: bool = False) -> Path:
    with closing(sqlite3.connect(path)) as connection:
        connection.execute(EXTENDED_SCHEMA if extended else BASIC_SCHEMA)
        for row in rows:
            values = [
                row.timestamp.strftime("%Y-%m-%d %H:%M:%S"),
                str(row.input_data),
                str(row.prediction),
                str(row.actual_value),
                str(row.model_version),
                row.latency,
            ]
            if extended:
                connection.execute(
                    "INSERT INTO feedback (timestamp, input_data, prediction, actual_value, model_version, latency, "
                    "confidence_score) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [*values, row.confidence_score],
                )
            else:
                connection.execute(
                    "INSERT INTO feedback (timestamp, input_data, prediction, actual_value, model_version, latency) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    values,
                )
        connection.commit()
    return path


def run_import(path: Path, *options: str) -> tuple[str, str]:
    stdout, stderr = StringIO(), StringIO()
    call_command("import_feedback_db", str(path), "--model", "legacy", *options, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


def summary(new: int, present: int, skipped: int) -> str:
    return f"Imported {new} new predictions into model 'legacy'; {present} were already present; {skipped} skipped."


def seed_time(moment: datetime) -> datetime:
    return moment.replace(tzinfo=ZoneInfo(SEED_TIME_ZONE))


@pytest.fixture(autouse=True)
def _seed_time_zone(settings: Any) -> None:
    # Not UTC, so a timestamp read as UTC instead of local time would show.
    settings.TIME_ZONE = SEED_TIME_ZONE


@pytest.fixture
def seed_path(tmp_path: Path) -> Path:
    return tmp_path / "feedback.db"


def test_it_imports_the_basic_schema_restoring_the_python_values(seed_path: Path) -> None:
    write_seed_db(
        seed_path,
        [
            Logged(input_data=[0.5, 1.0, 2.1], prediction=1, actual_value=1, latency=0.042),
            Logged(input_data={"a": 1, "b": [True, None]}, prediction=0, actual_value=1, model_version="v2"),
            Logged(input_data="hello", prediction=1, timestamp=datetime(2024, 7, 14, 23, 59, 59)),
        ],
    )

    stdout, _ = run_import(seed_path)

    assert stdout.splitlines()[0] == summary(3, 0, 0)
    first, second, third = Prediction.objects.order_by("created_at", "id")
    assert (first.input, first.prediction, first.actual, first.is_correct) == ([0.5, 1.0, 2.1], 1, 1, True)
    assert (second.input, second.prediction, second.actual, second.is_correct) == (
        {"a": 1, "b": [True, None]},
        0,
        1,
        False,
    )
    assert (third.input, third.prediction, third.actual, third.is_correct) == ("hello", 1, None, None)
    assert first.latency_ms == pytest.approx(42.0)
    assert {row.confidence for row in (first, second, third)} == {None}
    assert {row.source for row in (first, second, third)} == {"import"}
    assert (first.created_at, third.created_at) == (seed_time(WHEN), seed_time(datetime(2024, 7, 14, 23, 59, 59)))
    assert sorted(ModelVersion.objects.values_list("version", flat=True)) == ["v1", "v2"]
    assert RegisteredModel.objects.get().name == "legacy"
    assert RegisteredModel.objects.get().task_type == TaskType.BINARY


def test_it_imports_the_extended_schema_with_confidence(seed_path: Path) -> None:
    write_seed_db(
        seed_path,
        [
            Logged(input_data=[1, 2], prediction=1, actual_value=1, confidence_score=0.91),
            Logged(input_data=[3, 4], prediction=0, confidence_score=None),
        ],
        extended=True,
    )

    run_import(seed_path)

    confident, unsure = Prediction.objects.order_by("id")
    assert (confident.confidence, confident.is_correct, confident.source) == (0.91, True, "import")
    assert (unsure.confidence, unsure.actual, unsure.is_correct) == (None, None, None)
    assert confident.created_at == seed_time(WHEN)


def test_it_keeps_text_that_is_not_a_python_literal_as_a_string(seed_path: Path) -> None:
    write_seed_db(
        seed_path,
        [
            Logged(input_data="What is 2 + 2?", prediction="Four, I think.", actual_value="Four, I think."),
            Logged(input_data=(1, 2), prediction="print('hi')"),
        ],
    )

    run_import(seed_path)

    answered, other = Prediction.objects.order_by("id")
    assert (answered.input, answered.prediction, answered.is_correct) == ("What is 2 + 2?", "Four, I think.", True)
    assert (other.input, other.prediction) == ([1, 2], "print('hi')")


def test_it_uses_the_default_model_and_unversioned_when_none_is_named(seed_path: Path, settings: Any) -> None:
    settings.FEEDBACKHUB_DEFAULT_MODEL = "seed-default"
    write_seed_db(seed_path, [Logged(input_data=[1], prediction=1, model_version="")])
    stdout = StringIO()

    call_command("import_feedback_db", str(seed_path), stdout=stdout, stderr=StringIO())

    row = Prediction.objects.get()
    assert (row.registered_model.name, row.model_version.version) == ("seed-default", "unversioned")
    assert "into model 'seed-default'" in stdout.getvalue()


def test_a_second_run_imports_nothing_new_and_reports_the_rows_as_already_present(seed_path: Path) -> None:
    write_seed_db(seed_path, [Logged(input_data=[index], prediction=index % 2) for index in range(7)])
    run_import(seed_path, "--batch-size", "3")

    stdout, _ = run_import(seed_path, "--batch-size", "3")

    assert stdout.splitlines()[0] == summary(0, 7, 0)
    assert Prediction.objects.count() == 7


def test_a_second_run_imports_only_the_rows_the_seed_logger_added_since(seed_path: Path) -> None:
    write_seed_db(seed_path, [Logged(input_data=[1], prediction=1)])
    run_import(seed_path)
    write_seed_db(seed_path, [Logged(input_data=[2], prediction=0)])

    stdout, _ = run_import(seed_path)

    assert stdout.splitlines()[0] == summary(1, 1, 0)
    assert sorted(Prediction.objects.values_list("input", flat=True)) == [[1], [2]]


def test_a_row_changed_since_an_earlier_import_is_skipped_and_the_first_import_kept(seed_path: Path) -> None:
    write_seed_db(seed_path, [Logged(input_data=[1], prediction=1), Logged(input_data=[2], prediction=0)])
    run_import(seed_path)
    with closing(sqlite3.connect(seed_path)) as connection:
        connection.execute("UPDATE feedback SET actual_value = '0' WHERE id = 1")
        connection.commit()

    stdout, _ = run_import(seed_path)

    assert stdout.splitlines()[0] == summary(0, 1, 1)
    assert "row 1: was imported before with other values" in stdout
    assert Prediction.objects.get(input=[1]).actual is None


def test_a_row_with_confidence_outside_0_to_1_is_skipped_and_the_others_imported(seed_path: Path) -> None:
    write_seed_db(
        seed_path,
        [
            Logged(input_data=[1], prediction=1, confidence_score=0.8),
            Logged(input_data=[2], prediction=1, confidence_score=1.7),
            Logged(input_data=[3], prediction=0, confidence_score=0.3),
        ],
        extended=True,
    )

    stdout, _ = run_import(seed_path)

    assert stdout.splitlines() == [
        summary(2, 0, 1),
        "  row 2: confidence_score: 1.7 is outside 0 to 1",
    ]
    assert sorted(Prediction.objects.values_list("confidence", flat=True)) == [0.3, 0.8]


def test_a_prediction_the_models_task_type_rejects_is_skipped_and_the_others_imported(seed_path: Path) -> None:
    RegisteredModel.objects.create(name="legacy", task_type=TaskType.BINARY)
    write_seed_db(
        seed_path,
        [
            Logged(input_data=[1], prediction=1),
            Logged(input_data=[2], prediction="cat"),
            Logged(input_data=[3], prediction=0, actual_value="dog"),
            Logged(input_data=[4], prediction=0),
        ],
    )

    stdout, _ = run_import(seed_path)

    lines = stdout.splitlines()
    assert lines[0] == summary(2, 0, 2)
    assert lines[1].startswith("  row 2: prediction: a binary model takes 0 or 1")
    assert lines[2].startswith("  row 3: actual_value: a binary model takes 0 or 1")
    assert sorted(Prediction.objects.values_list("input", flat=True)) == [[1], [4]]


def test_rows_with_values_that_cannot_be_stored_are_skipped_with_the_reason(seed_path: Path) -> None:
    write_seed_db(
        seed_path,
        [
            Logged(input_data="a\x00b", prediction=1),
            Logged(input_data=[1], prediction=1, timestamp=WHEN),
            Logged(input_data=[2], prediction=None),
            Logged(input_data=[3], prediction=1, latency=-0.5),
        ],
    )
    with closing(sqlite3.connect(seed_path)) as connection:
        connection.execute("UPDATE feedback SET timestamp = 'yesterday' WHERE id = 2")
        connection.commit()

    stdout, _ = run_import(seed_path)

    assert stdout.splitlines() == [
        summary(0, 0, 4),
        "  row 1: input_data: contains a NUL character (\\u0000), which cannot be stored",
        "  row 2: timestamp: 'yesterday' is not a date and time like 2024-03-01 12:30:00",
        "  row 3: prediction: is empty (None); there is nothing to import",
        "  row 4: latency: -0.5 seconds is outside 0 to 86400",
    ]
    assert Prediction.objects.count() == 0


def test_it_lists_at_most_ten_skip_reasons_and_says_how_many_more(seed_path: Path) -> None:
    rows = [Logged(input_data=[index], prediction=1, confidence_score=2.0) for index in range(12)]
    write_seed_db(seed_path, [*rows, Logged(input_data=[99], prediction=1)], extended=True)

    stdout, _ = run_import(seed_path)

    lines = stdout.splitlines()
    assert lines[0] == summary(1, 0, 12)
    assert lines[1] == "  row 1: confidence_score: 2 is outside 0 to 1"
    assert len(lines) == 1 + 10 + 1
    assert lines[-1] == "  ... and 2 more"


def test_it_reports_progress_on_stderr_once_per_batch(seed_path: Path) -> None:
    write_seed_db(seed_path, [Logged(input_data=[index], prediction=index % 2) for index in range(35)])

    stdout, stderr = run_import(seed_path, "--batch-size", "10")

    assert [line.split(":")[0] for line in stderr.splitlines()] == [
        "processed 10/35 rows (28%)",
        "processed 20/35 rows (57%)",
        "processed 30/35 rows (85%)",
        "processed 35/35 rows (100%)",
    ]
    assert stdout.startswith("Imported 35 new predictions")
    assert Prediction.objects.count() == 35


def test_it_leaves_the_seed_file_untouched(seed_path: Path) -> None:
    write_seed_db(seed_path, [Logged(input_data=[1], prediction=1)])
    before = hashlib.sha256(seed_path.read_bytes()).hexdigest()

    run_import(seed_path)

    assert hashlib.sha256(seed_path.read_bytes()).hexdigest() == before
    assert sorted(path.name for path in seed_path.parent.iterdir()) == ["feedback.db"]


def test_an_empty_feedback_table_imports_nothing(seed_path: Path) -> None:
    write_seed_db(seed_path, [])

    stdout, _ = run_import(seed_path)

    assert stdout == summary(0, 0, 0) + "\n"


def test_a_missing_file_raises_a_command_error_saying_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"does not exist\. Pass the path of the seed logger's feedback\.db"):
        run_import(tmp_path / "nowhere.db")


def test_a_file_that_is_not_sqlite_raises_a_command_error(seed_path: Path) -> None:
    seed_path.write_text("id,timestamp\n1,2024-03-01\n" * 100)

    with pytest.raises(CommandError, match=r"is not a readable SQLite database .*Pass the feedback\.db"):
        run_import(seed_path)


def test_a_database_without_a_feedback_table_raises_a_command_error_naming_the_tables(seed_path: Path) -> None:
    with closing(sqlite3.connect(seed_path)) as connection:
        connection.execute("CREATE TABLE predictions (id INTEGER PRIMARY KEY)")

    with pytest.raises(CommandError, match=r"has no 'feedback' table \(tables found: predictions\)"):
        run_import(seed_path)


def test_a_feedback_table_without_required_columns_names_the_missing_ones(seed_path: Path) -> None:
    with closing(sqlite3.connect(seed_path)) as connection:
        connection.execute("CREATE TABLE feedback (id INTEGER PRIMARY KEY, timestamp TEXT, input_data TEXT)")

    with pytest.raises(CommandError, match=r"lacks the column\(s\) prediction, actual_value, model_version, latency"):
        run_import(seed_path)


def test_an_invalid_model_name_raises_a_command_error_before_reading(seed_path: Path) -> None:
    write_seed_db(seed_path, [Logged(input_data=[1], prediction=1)])

    with pytest.raises(CommandError, match=r"'-bad name' is not a valid model name"):
        call_command("import_feedback_db", str(seed_path), "--model", "-bad name", stdout=StringIO())
    assert Prediction.objects.count() == 0


def test_the_task_type_option_decides_a_new_models_type(seed_path: Path) -> None:
    write_seed_db(seed_path, [Logged(input_data=[1.0], prediction="cat")])

    run_import(seed_path, "--task-type", "generative")

    assert RegisteredModel.objects.get(name="legacy").task_type == TaskType.GENERATIVE
