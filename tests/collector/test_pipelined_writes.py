"""On PostgreSQL, new events of known models and versions are written as one psycopg pipeline holding one
transaction (one round trip), whose checks of what the write was prepared with run on the server; everything else,
and anything that fails there, is written again in a transaction of its own, with nothing of the pipelined attempt
left behind."""

import importlib
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from psycopg.pq import PipelineStatus, Trace

from collector import services
from collector.models import (
    ApiKey,
    ModelVersion,
    OutcomeRevision,
    PendingOutcome,
    Prediction,
    RegisteredModel,
    VersionTally,
)
from collector.services import (
    Actor,
    OutcomeIn,
    PredictionIn,
    outcome_record_batch,
    prediction_record,
    prediction_record_batch,
)

pytestmark = pytest.mark.django_db(transaction=True)
expect_function = importlib.import_module("collector.migrations.0012_expect_function")
ACTOR = Actor(label="test")


@pytest.fixture(autouse=True)
def _postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("pipelines are PostgreSQL's")


@pytest.fixture
def churn() -> RegisteredModel:
    # What earlier tests' models were is forgotten: their rows are gone, and these get new ids.
    services._known_versions.models.clear()
    services._known_versions.versions.clear()
    model = RegisteredModel.objects.create(name="churn", task_type="binary")
    ModelVersion.objects.create(registered_model=model, version="v1")
    return model


def record(event_id: str, **fields: Any) -> services.Recorded:
    item = PredictionIn(model="churn", version="v1", input={"event": event_id}, prediction=1, event_id=event_id)
    for name, value in fields.items():
        setattr(item, name, value)
    return prediction_record(item=item, actor=ACTOR)


@pytest.fixture
def statements() -> Iterator[list[tuple[str, bool]]]:
    """Each statement the connection runs, and whether it went in a pipeline."""
    seen: list[tuple[str, bool]] = []

    def note(execute: Callable, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append((sql, connection.connection.pgconn.pipeline_status != PipelineStatus.OFF))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(note):
        yield seen


@contextmanager
def protocol_trace() -> Iterator[list[tuple[str, str]]]:
    """The messages between the connection and the server within the block, in the order libpq sent or read them:
    ("F", type) for the client's, ("B", type) for the server's (libpq's protocol trace); filled when the block ends."""
    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    messages: list[tuple[str, str]] = []
    with tempfile.TemporaryFile("w+") as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS)
        try:
            yield messages
        finally:
            pgconn.untrace()  # flushes what libpq wrote
        trace.seek(0)
        for line in trace:
            direction, _, message = line.split("\t")[:3]
            messages.append((direction, message.split()[0]))


def round_trips(messages: list[tuple[str, str]]) -> int:
    """How many times the client sent something, then read the server's answer before sending more."""
    directions = [direction for direction, _ in messages]
    return sum(1 for sent, read in zip(directions, directions[1:], strict=False) if (sent, read) == ("F", "B"))


def counters_match_a_rebuild() -> bool:
    kept = sorted(VersionTally.objects.values_list("model_version_id", "predictions", "outcomes", "correct"))
    call_command("rebuild_quality_counters", stdout=StringIO())
    return kept == sorted(VersionTally.objects.values_list("model_version_id", "predictions", "outcomes", "correct"))


def test_a_new_event_goes_in_one_pipeline_of_four_statements(churn: RegisteredModel, statements: list) -> None:
    record("warm")  # the model and version, read outside any transaction, are known from now on
    statements.clear()

    recorded = record("e1", actual=1)
    written = list(statements)

    assert recorded.created and Prediction.objects.get(pk=recorded.id).event_id == "e1"
    assert len(written) == 4 and all(in_pipeline for _, in_pipeline in written)
    lock, checks, insert, counters = (sql for sql, _ in written)
    assert "pg_advisory_xact_lock" in lock and "set_config('plan_cache_mode'" in lock
    # One statement checks that no event is stored or awaited, that the model's rules are as read, and that the
    # version is still stored (locking it against deletion).
    assert all(
        part in checks for part in ("feedbackhub_expect", "UNION ALL", '"collector_registeredmodel"', "KEY SHARE")
    )
    assert insert.startswith('INSERT INTO "collector_prediction"') and "WITH counted_0" in counters
    assert VersionTally.objects.get().predictions == 2
    assert counters_match_a_rebuild()


def test_a_new_event_costs_one_round_trip_with_one_sync_and_no_transaction_statements(churn: RegisteredModel) -> None:
    record("warm")

    with protocol_trace() as messages:
        recorded = record("e1", actual=1)

    assert recorded.created
    sent = [message for direction, message in messages if direction == "F"]
    assert round_trips(messages) == 1, messages
    assert sent.count("Sync") == 1 and [m for m in sent if m != "Flush"][-1] == "Sync", sent
    # Four statements, each bound and executed (prepared ones are parsed once per connection); no simple query, so no
    # BEGIN or COMMIT (which Django's query log does not show either).
    assert sent.count("Execute") == 4 and "Query" not in sent, sent
    assert ("B", "ErrorResponse") not in messages


def test_a_batch_of_several_models_and_versions_is_checked_and_written_in_the_pipeline(
    churn: RegisteredModel, statements: list
) -> None:
    fraud = RegisteredModel.objects.create(name="fraud", task_type="binary")
    ModelVersion.objects.bulk_create(
        [ModelVersion(registered_model=churn, version="v2"), ModelVersion(registered_model=fraud, version="v1")]
    )
    pairs = [("churn", "v1"), ("churn", "v2"), ("fraud", "v1")]
    services._known_versions.read(set(pairs))  # as a preparation outside any transaction reads them
    items = [
        PredictionIn(model=model, version=version, input={"n": n}, prediction=1, event_id=f"e{n}")
        for n, (model, version) in enumerate(pairs * 2)
    ]
    statements.clear()

    recorded = prediction_record_batch(items=items, actor=ACTOR)

    assert all(in_pipeline for _, in_pipeline in statements) and len(statements) == 4
    stored = Prediction.objects.values_list("registered_model__name", "model_version__version", "event_id")
    assert sorted(stored) == sorted((model, version, f"e{n}") for n, (model, version) in enumerate(pairs * 2))
    assert [r.created for r in recorded] == [True] * 6
    assert counters_match_a_rebuild()


def test_before_the_migration_that_adds_the_check_function_writes_go_through_the_transaction(
    churn: RegisteredModel,
) -> None:
    # New code serving before `migrate` has run, as in a rolling deploy.
    record("warm")
    with connection.cursor() as cursor:
        cursor.execute("DROP FUNCTION feedbackhub_expect(boolean, text, text)")
    try:
        with CaptureQueriesContext(connection) as logged:
            recorded = record("e1")
    finally:
        with connection.cursor() as cursor:
            cursor.execute(expect_function.CREATE)

    assert recorded.created and Prediction.objects.filter(event_id="e1").count() == 1
    assert [q["sql"] for q in logged].count("COMMIT") == 1  # the transaction's
    assert VersionTally.objects.get().predictions == 2
    assert record("e2").created  # through the pipeline again


def test_the_requests_health_check_runs_before_the_pipeline_not_inside_it(
    churn: RegisteredModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Inside the pipeline the connection is in a transaction, so the check would be Django's `SELECT 1`.
    record("warm")
    checked_in_pipeline_mode: list[PipelineStatus] = []
    wrapper = connections["default"]
    is_usable = type(wrapper).is_usable

    def noting_is_usable(self: Any) -> bool:
        checked_in_pipeline_mode.append(self.connection.pgconn.pipeline_status)
        return is_usable(self)

    monkeypatch.setattr(type(wrapper), "is_usable", noting_is_usable)
    assert wrapper.health_check_enabled
    wrapper.health_check_done = False  # as at the start of each request (close_old_connections)

    record("e1")

    assert checked_in_pipeline_mode == [PipelineStatus.OFF]


def test_a_key_taken_from_memory_is_confirmed_in_the_pipeline_or_nothing_is_written(
    churn: RegisteredModel, statements: list
) -> None:
    api_key, _ = services.api_key_create(name="svc")
    remembered = Actor(label="key:svc", unconfirmed_key=(api_key.pk, api_key.key_sha256))
    record("warm")
    statements.clear()

    item = PredictionIn(model="churn", version="v1", input={}, prediction=1, event_id="e1")
    prediction_record(item=item, actor=remembered)
    written = list(statements)
    ApiKey.objects.filter(pk=api_key.pk).update(revoked_at=timezone.now())
    with pytest.raises(services.ApiKeyNotConfirmed):
        prediction_record(item=replace(item, event_id="e2"), actor=remembered)

    assert [in_pipeline for sql, in_pipeline in written if '"all_models"' in sql] == [True]
    assert len(written) == 4 and all(in_pipeline for _, in_pipeline in written)
    assert sorted(Prediction.objects.values_list("event_id", flat=True)) == ["e1", "warm"]
    assert VersionTally.objects.get().predictions == 2


def statement_plans(*, like: str, unlike: str = "-") -> tuple[int, int]:
    """How often the statements prepared on this connection whose text is like `like` (and not like `unlike`) ran on a
    plan made once, and on one made for their values."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(generic_plans), 0), coalesce(sum(custom_plans), 0) FROM pg_prepared_statements "
            "WHERE statement LIKE %s AND statement NOT LIKE %s",
            [f"%{like}%", f"%{unlike}%"],
        )
        return cursor.fetchone()


def lock_statement_plans() -> tuple[int, int]:
    """The plans of the events' lock statement as batches and the transaction path send it (the same text for any
    number of events); single events set plan_cache_mode in theirs."""
    return statement_plans(like="pg_advisory_xact_lock", unlike="set_config")


def test_single_events_reuse_their_plans_and_batches_are_planned_for_their_values(churn: RegisteredModel) -> None:
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # as autovacuum would have: plans made from statistics, as on a live database
    for n in range(30):
        record(f"single-{n}")
    singles = statement_plans(like="feedbackhub_expect")
    before = lock_statement_plans()
    for n in range(10):
        items = [
            PredictionIn(model="churn", version="v1", input={}, prediction=1, event_id=f"b{n}-{i}") for i in range(20)
        ]
        prediction_record_batch(items=items, actor=ACTOR)
    generic, custom = lock_statement_plans()

    # The checks of a single event: prepared from their 5th use, then planned for their values 5 times before
    # PostgreSQL may keep one plan. The batches' lock statement, prepared from its 5th use too, never keeps one.
    assert singles[0] > 15
    assert generic == before[0] and custom - before[1] >= 5


def test_a_plan_cache_mode_chosen_in_the_url_applies_to_single_events_too(
    churn: RegisteredModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(connection.settings_dict, "PLAN_CACHE_MODE_IN_URL", True)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    record("warm")
    before = statement_plans(like="feedbackhub_expect")
    for n in range(30):
        record(f"single-{n}")

    assert statement_plans(like="feedbackhub_expect")[0] == before[0]
    assert statement_plans(like="set_config") == (0, 0)


def test_a_retry_and_a_waiting_outcome_are_written_by_a_transaction(churn: RegisteredModel) -> None:
    first = record("e1")
    outcome_record_batch(items=[OutcomeIn(actual=0, model="churn", event_id="e2")], actor=ACTOR)

    with CaptureQueriesContext(connection) as logged:
        again = record("e1")
        late = record("e2")

    assert again == services.Recorded(first.id, "e1", created=False)
    assert [q["sql"] for q in logged].count("COMMIT") == 2
    assert Prediction.objects.get(pk=late.id).actual == 0
    assert not PendingOutcome.objects.exists() and OutcomeRevision.objects.count() == 1
    assert counters_match_a_rebuild()


def test_a_version_deleted_since_it_was_read_is_noticed_before_anything_is_inserted(churn: RegisteredModel) -> None:
    services._known_versions.read({("churn", "v1")})  # as a preparation outside any transaction reads it
    ModelVersion.objects.filter(version="v1").delete()  # its id, still known, would fail the foreign key

    recorded = record("e1")  # by the transaction, which registers v1 again

    assert list(Prediction.objects.values_list("pk", flat=True)) == [recorded.id]
    assert Prediction.objects.get().model_version.version == "v1"
    assert VersionTally.objects.get().predictions == 1
    assert counters_match_a_rebuild()


def test_a_write_whose_checks_fail_on_the_server_leaves_nothing_and_the_connection_serves_the_next(
    churn: RegisteredModel,
) -> None:
    record("warm")
    RegisteredModel.objects.filter(pk=churn.pk).update(task_type="multiclass")
    before = services._known_versions.models.get("churn")

    with CaptureQueriesContext(connection) as logged:
        recorded = record("e1", prediction="yes")  # labelled "yes" by a multiclass model, "1" by a binary one

    assert before is not None and services._known_versions.models.get("churn") is not before
    assert [q["sql"] for q in logged].count("COMMIT") == 1  # the transaction's, after the pipeline's rolled back
    assert Prediction.objects.get(pk=recorded.id).predicted_label == "yes"
    assert Prediction.objects.count() == 2 and VersionTally.objects.get().predictions == 2
    assert counters_match_a_rebuild()
    assert record("e2", prediction="no").created


@pytest.mark.parametrize("explicit", [True, False], ids=["in-a-transaction", "implicit-transaction"])
def test_a_pipeline_whose_commit_failed_is_settled_and_the_connection_serves_the_next_write(
    churn: RegisteredModel, explicit: bool
) -> None:
    connection.ensure_connection()
    raw = connection.connection
    missing_version = ModelVersion.objects.get().pk + 1000
    # When the implicit transaction's commit fails at the sync, psycopg (3.3) at times loses count of the results
    # under load and raises IndexError instead of the database's error; the connection must be settled either way.
    raised = DatabaseError if explicit else (DatabaseError, IndexError)
    with pytest.raises(raised), connection.wrap_database_errors, raw.pipeline():  # noqa: PT012
        if explicit:
            raw.execute("BEGIN")
        raw.execute(  # the foreign key is checked at the commit
            'INSERT INTO "collector_versiontally" ("model_version_id", "predictions", "outcomes", "correct", '
            '"error_sum", "abs_error_sum", "squared_error_sum", "confident", "confidence_sum", '
            '"confident_outcomes", "confident_outcomes_confidence_sum", "confident_outcomes_correct") '
            "VALUES (%s, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)",
            [missing_version],
        )
        if explicit:
            raw.execute("COMMIT")

    services._settle_failed_pipeline()

    assert record("e1").created
    assert not VersionTally.objects.filter(model_version_id=missing_version).exists()


@pytest.mark.parametrize("counters_sent", [False, True], ids=["before-the-counters", "after-the-counters"])
def test_an_exception_in_the_pipeline_leaves_nothing(
    churn: RegisteredModel, monkeypatch: pytest.MonkeyPatch, counters_sent: bool
) -> None:
    record("warm")
    count_new_predictions = services._count_new_predictions

    def counting_fails(rows: list[Prediction]) -> None:
        if counters_sent:
            count_new_predictions(rows)
        raise RuntimeError("the web process gave up")

    monkeypatch.setattr(services, "_count_new_predictions", counting_fails)
    # The insert was sent (and the counters too, or not): the pipeline's sync, which goes out anyway, must not
    # commit them.
    with pytest.raises(RuntimeError):
        record("e1")
    monkeypatch.undo()

    assert not Prediction.objects.filter(event_id="e1").exists()
    assert record("e2").created  # the same connection, usable
    assert VersionTally.objects.get().predictions == 2
    assert counters_match_a_rebuild()


def test_a_model_edited_since_it_was_read_is_written_by_the_transaction_under_its_new_rules(
    churn: RegisteredModel, monkeypatch: pytest.MonkeyPatch, statements: list
) -> None:
    record("warm")
    prepare = services._prepare_predictions

    def prepare_then_edit(*args: Any, **kwargs: Any) -> Any:
        prepared = prepare(*args, **kwargs)
        RegisteredModel.objects.filter(name="churn").update(pii_mask_emails=False)  # an admin saving meanwhile
        return prepared

    monkeypatch.setattr(services, "_prepare_predictions", prepare_then_edit)
    statements.clear()

    recorded = record("e1", input="write to ann@example.com")

    assert Prediction.objects.get(pk=recorded.id).input == "write to ann@example.com"
    # The pipelined insert was sent after the check that failed, so it did not run; the transaction's did.
    inserts = [in_pipeline for sql, in_pipeline in statements if sql.startswith('INSERT INTO "collector_prediction"')]
    assert inserts == [True, False] and Prediction.objects.count() == 2


def test_outcomes_racing_their_pipelined_predictions_all_land(churn: RegisteredModel) -> None:
    record("warm")
    events = [f"race-{n}" for n in range(150)]
    failures: list[BaseException] = []
    together = threading.Barrier(2, timeout=30)

    def run(write: Callable[[str], object]) -> None:
        try:
            for event_id in events:
                together.wait()  # both writers start on the same event at the same moment
                write(event_id)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            failures.append(error)
        finally:
            connections.close_all()

    def outcome(event_id: str) -> object:
        return outcome_record_batch(items=[OutcomeIn(actual=1, model="churn", event_id=event_id)], actor=ACTOR)

    threads = [threading.Thread(target=run, args=(record,)), threading.Thread(target=run, args=(outcome,))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not failures
    assert Prediction.objects.filter(event_id__in=events, actual=1).count() == len(events)
    assert not PendingOutcome.objects.exists()
    assert VersionTally.objects.get().outcomes == len(events)
    assert counters_match_a_rebuild()


def test_without_server_side_binding_every_write_is_a_transaction(churn: RegisteredModel, monkeypatch) -> None:
    connection.close()
    monkeypatch.setitem(connection.settings_dict, "OPTIONS", {"server_side_binding": False})
    try:
        record("warm")
        with CaptureQueriesContext(connection) as logged:
            recorded = record("e1")
        assert recorded.created
        assert [q["sql"] for q in logged].count("COMMIT") == 1
    finally:
        connection.close()
