"""Import the seed logger's `feedback.db` (SQLite, table `feedback`) into FeedbackHub.

Every row gets an event_id derived from its own contents, so running the import again (say after the seed
logger wrote more rows) stores only the rows that are new.
"""

import ast
import hashlib
import json
import math
import sqlite3
import warnings
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from django.utils import timezone

from collector.models import MODEL_NAME_VALIDATOR, IngestSource, ModelVersion, RegisteredModel, TaskType
from collector.payloads import storable_problem
from collector.services import Actor, PredictionIn, Recorded, prediction_record_batch
from feedbackhub.errors import Conflict, DomainError, InvalidInput

TABLE = "feedback"
REQUIRED_COLUMNS = ("id", "timestamp", "input_data", "prediction", "actual_value", "model_version", "latency")
CONFIDENCE_COLUMN = "confidence_score"
_SELECT = (
    "SELECT id, timestamp, input_data, prediction, actual_value, model_version, latency, {} FROM feedback ORDER BY id"
)
SELECT_BASIC = _SELECT.format("NULL")
SELECT_EXTENDED = _SELECT.format(CONFIDENCE_COLUMN)
SEED_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
UNVERSIONED = "unversioned"
EVENT_ID_PREFIX = "feedbackdb-"
MAX_LATENCY_SECONDS = 86_400  # the same limit as POST /log-feedback
MAX_VERSION_LENGTH: int = ModelVersion._meta.get_field("version").max_length
MAX_MODEL_NAME_LENGTH: int = RegisteredModel._meta.get_field("name").max_length
DEFAULT_BATCH_SIZE = 500
SHOWN_SKIPS = 10
# Problems found by the services name PredictionIn's fields; the person importing knows the seed's columns.
SEED_COLUMN_OF_FIELD = {
    "input": "input_data",
    "actual": "actual_value",
    "version": "model_version",
    "latency_ms": "latency",
    "confidence": CONFIDENCE_COLUMN,
}


class RowSkipped(Exception):
    """A seed row that cannot be imported; the message says why, naming the seed column."""


@dataclass(frozen=True)
class SeedRow:
    """One row of the seed table as SQLite returned it, before any parsing."""

    row_id: Any
    timestamp: Any
    input_data: Any
    prediction: Any
    actual_value: Any
    model_version: Any
    latency: Any
    confidence_score: Any


@dataclass(frozen=True)
class Candidate:
    row_id: Any
    item: PredictionIn


@dataclass
class Tally:
    created: int = 0
    already_present: int = 0
    processed: int = 0
    skipped: list[tuple[Any, str]] = field(default_factory=list)

    def count(self, results: Sequence[Recorded]) -> None:
        for result in results:
            if result.created:
                self.created += 1
            else:
                self.already_present += 1

    def skip(self, row_id: Any, reason: str) -> None:
        self.skipped.append((row_id, reason))


# --- reading the seed file --------------------------------------------------------------------------


def _decode_text(raw: bytes) -> str:
    # Invalid UTF-8 would make sqlite3 fail the whole fetch; as surrogates it fails only its own row, later.
    return raw.decode("utf-8", errors="surrogateescape")


def open_seed_database(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise CommandError(f"{path} does not exist. Pass the path of the seed logger's feedback.db.")
    if not path.is_file():
        raise CommandError(f"{path} is not a file. Pass the path of the seed logger's feedback.db itself.")
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as error:
        raise CommandError(f"Cannot open {path} read-only: {error}. Check that you may read the file.") from None
    connection.text_factory = _decode_text
    return connection


def seed_columns(connection: sqlite3.Connection, path: Path) -> set[str]:
    """The columns of the seed table; raises CommandError when the file is not a seed feedback.db."""
    try:
        tables = [name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        if TABLE not in tables:
            found = ", ".join(sorted(tables)) or "none"
            raise CommandError(
                f"{path} has no '{TABLE}' table (tables found: {found}). Pass the feedback.db the seed logger wrote."
            )
        columns = {row[1] for row in connection.execute("PRAGMA table_info(feedback)")}
    except sqlite3.DatabaseError as error:
        raise CommandError(
            f"{path} is not a readable SQLite database ({error}). Pass the feedback.db the seed logger wrote."
        ) from None
    missing = [column for column in REQUIRED_COLUMNS if column not in columns]
    if missing:
        raise CommandError(
            f"The '{TABLE}' table in {path} lacks the column(s) {', '.join(missing)}; the import needs "
            f"{', '.join(REQUIRED_COLUMNS)} (and uses {CONFIDENCE_COLUMN} when present). "
            "Is this the seed logger's feedback.db?"
        )
    return columns


def count_seed_rows(connection: sqlite3.Connection) -> int:
    (total,) = connection.execute("SELECT COUNT(*) FROM feedback").fetchone()
    return int(total)


def read_seed_rows(connection: sqlite3.Connection, has_confidence: bool, batch_size: int) -> Iterator[list[SeedRow]]:
    """The seed rows in id order, a batch at a time, without loading the table into memory."""
    with closing(connection.cursor()) as cursor:
        cursor.execute(SELECT_EXTENDED if has_confidence else SELECT_BASIC)
        while rows := cursor.fetchmany(batch_size):
            yield [SeedRow(*row) for row in rows]


# --- turning a seed row into a prediction -----------------------------------------------------------


def python_literal_or_text(text: str) -> Any:
    """The value the seed logger wrote with str(...): the Python literal when it is one, else the text itself.

    Literals JSON cannot hold (sets, bytes, infinity...) stay text too, so nothing is lost.
    """
    try:
        with warnings.catch_warnings():
            # Old reprs hold escapes like '\d' that Python warns about but still parses.
            warnings.simplefilter("ignore")
            value = ast.literal_eval(text)
        # The round trip turns tuples into lists and non-string keys into strings, as storing would.
        return json.loads(json.dumps(value, allow_nan=False))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return text


def _text(value: Any, column: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        raise RowSkipped(f"{column}: holds binary data (a BLOB), not the text the seed logger wrote")
    return str(value)


def _parsed(text: str | None, column: str) -> Any:
    value = None if text is None else python_literal_or_text(text)
    problem = storable_problem(value, column)
    if problem:
        raise RowSkipped(f"{problem[0]}: {problem[1]}")
    return value


def _required(value: Any, column: str, why: str) -> Any:
    if value is None:
        raise RowSkipped(f"{column}: is empty (None); {why}")
    return value


def parse_timestamp(text: str | None) -> datetime:
    """The seed's local naive time as an aware datetime in settings.TIME_ZONE."""
    if text is None or not text.strip():
        raise RowSkipped("timestamp: is empty; every prediction needs the time it was made")
    try:
        moment = datetime.strptime(text.strip(), SEED_TIMESTAMP_FORMAT)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text.strip())
        except ValueError:
            raise RowSkipped(f"timestamp: '{text}' is not a date and time like 2024-03-01 12:30:00") from None
    if timezone.is_aware(moment):
        return moment
    return timezone.make_aware(moment, timezone.get_default_timezone())


def _number(value: Any, column: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RowSkipped(f"{column}: {value!r} is not a finite number")
    return float(value)


def latency_ms(value: Any) -> float | None:
    seconds = _number(value, "latency")
    if seconds is not None and not 0 <= seconds <= MAX_LATENCY_SECONDS:
        raise RowSkipped(f"latency: {seconds:g} seconds is outside 0 to {MAX_LATENCY_SECONDS}")
    return None if seconds is None else seconds * 1000.0


def confidence(value: Any) -> float | None:
    score = _number(value, CONFIDENCE_COLUMN)
    if score is not None and not 0 <= score <= 1:
        raise RowSkipped(f"{CONFIDENCE_COLUMN}: {score:g} is outside 0 to 1")
    return score


def version(text: str | None) -> str:
    # The seed wrote str(None) when a client sent no version.
    name = "" if text is None or text.strip() == "None" else text.strip()
    if not name:
        return UNVERSIONED
    if len(name) > MAX_VERSION_LENGTH:
        raise RowSkipped(f"model_version: has {len(name)} characters; at most {MAX_VERSION_LENGTH} fit")
    problem = storable_problem(name, "model_version")
    if problem:
        raise RowSkipped(f"{problem[0]}: {problem[1]}")
    return name


def seed_event_id(row_id: Any, texts: Sequence[str | None]) -> str:
    """The same id for the same seed row on every run, so a second import recognises what it stored."""
    canonical = json.dumps([row_id, *texts], separators=(",", ":"))
    return EVENT_ID_PREFIX + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:40]


def prediction_from_row(row: SeedRow, model_name: str, task_type: str = "") -> PredictionIn:
    """The prediction a seed row records; raises RowSkipped saying which column is wrong."""
    timestamp_text = _text(row.timestamp, "timestamp")
    input_text = _text(row.input_data, "input_data")
    prediction_text = _text(row.prediction, "prediction")
    version_text = _text(row.model_version, "model_version")
    actual_text = _text(row.actual_value, "actual_value")
    return PredictionIn(
        model=model_name,
        task_type=task_type,
        version=version(version_text),
        input=_required(_parsed(input_text, "input_data"), "input_data", "the model's input is needed"),
        prediction=_required(_parsed(prediction_text, "prediction"), "prediction", "there is nothing to import"),
        actual=_parsed(actual_text, "actual_value"),
        latency_ms=latency_ms(row.latency),
        confidence=confidence(row.confidence_score),
        event_id=seed_event_id(row.row_id, [timestamp_text, input_text, prediction_text, version_text]),
        timestamp=parse_timestamp(timestamp_text),
    )


def problem_reason(error: DomainError) -> str:
    """A service error as 'column: message', naming the seed's column rather than the API field."""
    if isinstance(error, Conflict):
        return "was imported before with other values (the row changed in feedback.db since); the first import is kept"
    if not error.problems:
        return error.message
    problem = error.problems[0]
    name = problem.field.split(".", 1)[1] if problem.field.startswith("[") else problem.field
    return f"{SEED_COLUMN_OF_FIELD.get(name, name)}: {problem.message}"


# --- the command ------------------------------------------------------------------------------------


def positive_int(text: str) -> int:
    number = int(text)
    if number < 1:
        raise ValueError(text)
    return number


def check_model_name(name: str) -> None:
    try:
        MODEL_NAME_VALIDATOR(name)
    except ValidationError as error:
        raise CommandError(f"'{name}' is not a valid model name. {error.messages[0]} Pass another --model.") from None
    if len(name) > MAX_MODEL_NAME_LENGTH:
        raise CommandError(f"A model name has at most {MAX_MODEL_NAME_LENGTH} characters. Pass another --model.")
    if not settings.FEEDBACKHUB_AUTO_REGISTER and not RegisteredModel.objects.filter(name=name).exists():
        raise CommandError(
            f"Model '{name}' is not registered and FEEDBACKHUB_AUTO_REGISTER is off. "
            "Register it in the admin first, or pass a registered model with --model."
        )


class Command(BaseCommand):
    help = (
        "Import the seed logger's feedback.db (SQLite table 'feedback') as predictions of one model. "
        "Safe to run again: rows already imported are recognised and not stored twice."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, help="The seed logger's SQLite file, e.g. feedback.db.")
        parser.add_argument(
            "--model",
            default="",
            metavar="NAME",
            help="Registered model to import into (default: FEEDBACKHUB_DEFAULT_MODEL). A new name is registered, "
            "with --task-type or, without it, the task type guessed from the first prediction.",
        )
        parser.add_argument(
            "--task-type",
            choices=TaskType.values,
            default="",
            help="Task type of the model when this import registers it (ignored for a model already registered).",
        )
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            default=DEFAULT_BATCH_SIZE,
            metavar="N",
            help=f"Rows read and stored per transaction (default: {DEFAULT_BATCH_SIZE}).",
        )

    def handle(self, *args: object, **options: Any) -> None:
        path: Path = options["path"]
        model_name = options["model"] or settings.FEEDBACKHUB_DEFAULT_MODEL
        check_model_name(model_name)
        actor = Actor(label=f"import:{path.name}")
        tally = Tally()
        with closing(open_seed_database(path)) as connection:
            has_confidence = CONFIDENCE_COLUMN in seed_columns(connection, path)
            try:
                total = count_seed_rows(connection)
                for rows in read_seed_rows(connection, has_confidence, options["batch_size"]):
                    self._import_rows(rows, model_name, options["task_type"], actor, tally)
                    self._write_progress(tally, total)
            except (sqlite3.Error, DatabaseError, DomainError) as error:
                raise CommandError(
                    f"The import stopped after {tally.processed} rows: {error}. {tally.created} new predictions "
                    "were stored; run the command again to go on (rows already imported are recognised)."
                ) from error
        self._write_summary(tally, model_name)

    def _import_rows(
        self, rows: Sequence[SeedRow], model_name: str, task_type: str, actor: Actor, tally: Tally
    ) -> None:
        candidates: list[Candidate] = []
        for row in rows:
            try:
                candidates.append(Candidate(row.row_id, prediction_from_row(row, model_name, task_type)))
            except RowSkipped as skipped:
                tally.skip(row.row_id, str(skipped))
        tally.processed += len(rows)
        if not candidates:
            return
        try:
            results = prediction_record_batch(
                items=[candidate.item for candidate in candidates], actor=actor, source=IngestSource.IMPORT
            )
        except (InvalidInput, Conflict):
            # The batch is all or nothing: store its rows one by one so only the bad ones stay out.
            for candidate in candidates:
                self._import_one(candidate, actor, tally)
            return
        tally.count(results)

    def _import_one(self, candidate: Candidate, actor: Actor, tally: Tally) -> None:
        try:
            results = prediction_record_batch(
                items=[candidate.item], actor=actor, source=IngestSource.IMPORT, single=True
            )
        except (InvalidInput, Conflict) as error:
            tally.skip(candidate.row_id, problem_reason(error))
            return
        tally.count(results)

    def _write_progress(self, tally: Tally, total: int) -> None:
        # Rows the seed logger adds while the import runs can take `processed` past the count taken at the start.
        total = max(total, tally.processed)
        percent = tally.processed * 100 // total if total else 100
        self.stderr.write(
            f"processed {tally.processed}/{total} rows ({percent}%): {tally.created} new, "
            f"{tally.already_present} already present, {len(tally.skipped)} skipped"
        )

    def _write_summary(self, tally: Tally, model_name: str) -> None:
        self.stdout.write(
            f"Imported {tally.created} new predictions into model '{model_name}'; "
            f"{tally.already_present} were already present; {len(tally.skipped)} skipped."
        )
        for row_id, reason in tally.skipped[:SHOWN_SKIPS]:
            self.stdout.write(f"  row {row_id}: {reason}")
        if len(tally.skipped) > SHOWN_SKIPS:
            self.stdout.write(f"  ... and {len(tally.skipped) - SHOWN_SKIPS} more")
