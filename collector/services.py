"""Writes: recording predictions, outcomes and feedback, and managing API keys.

Every write path (REST, /log-feedback, the importer, later the predict endpoint) goes through these functions,
so validation, idempotency and (later) masking and counters happen in exactly one place.
"""

import hashlib
import hmac
import math
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cache
from typing import Any, NamedTuple, TypeVar

import psycopg
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS, IntegrityError, OperationalError, connection, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field
from django.utils import timezone
from psycopg import Pipeline
from psycopg.pq import ConnStatus, PipelineStatus

from collector.counters import OutcomeChange, counters_record, counters_record_feedback
from collector.inserts import adapted_column, insert_rows, row_maker, send_insert
from collector.labels import LabelError, infer_task_type, judge, label_for, outcome_key
from collector.models import (
    MODEL_NAME_VALIDATOR,
    ApiKey,
    Feedback,
    FeedbackKind,
    IngestSource,
    ModelVersion,
    OutcomeRevision,
    PendingOutcome,
    Prediction,
    RegisteredModel,
    TaskType,
)
from collector.payloads import fingerprint, storable_problem
from collector.raw_reads import rows_where
from collector.redaction import RedactionPolicy, bounded
from feedbackhub.errors import Conflict, FieldProblem, Forbidden, InvalidInput, NotFound, problems_summary
from feedbackhub.postgresql.base import sends_coalesced

T = TypeVar("T")
API_KEY_PREFIX = "fbh"
_WRITE_ATTEMPTS = 4
_QUERY_CHUNK = 500


@dataclass(frozen=True)
class Actor:
    """Who writes: an API key (maybe scoped to some models), a user, or a command."""

    label: str
    allowed_model_ids: frozenset[int] | None = None
    # (id, SHA-256) of an all-models API key taken from this process's memory (`api_key_authenticate_for_write`): the
    # write confirms inside its transaction, before anything else, that the key is still stored, active and for every
    # model, and raises ApiKeyNotConfirmed, having written nothing, when it is not. (A revocation committed after that
    # check and before the write's commit does not stop the write, as with a key read before the transaction.)
    unconfirmed_key: tuple[int, str] | None = None

    @property
    def may_register_models(self) -> bool:
        return self.allowed_model_ids is None

    def may_write(self, registered_model_id: int) -> bool:
        return self.allowed_model_ids is None or registered_model_id in self.allowed_model_ids


class ApiKeyNotConfirmed(Exception):  # noqa: N818 - a signal to authenticate again, not a failure of the write
    """The write's key, taken from memory, is revoked, deleted or scoped since: nothing was written. The request is
    to be authenticated again from the database."""


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs several times more, per item of a batch
class PredictionIn:
    version: str
    input: Any
    prediction: Any
    model: str = ""
    actual: Any = None
    latency_ms: float | None = None
    confidence: float | None = None
    interaction_id: str = ""
    event_id: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    timestamp: datetime | None = None
    task_type: str = ""


@dataclass(frozen=True)
class OutcomeIn:
    actual: Any
    prediction_id: int | None = None
    model: str = ""
    event_id: str = ""


@dataclass(frozen=True)
class FeedbackIn:
    kind: str
    model: str = ""
    prediction_id: int | None = None
    prediction_event_id: str = ""
    interaction_id: str = ""
    value: Any = None
    comment: str = ""
    source: str = ""
    event_id: str = ""
    timestamp: datetime | None = None


class Recorded(NamedTuple):
    id: int
    event_id: str
    created: bool


@dataclass(frozen=True)
class OutcomeResult:
    status: str  # recorded | changed | unchanged | pending
    prediction_id: int | None
    event_id: str


# --- shared machinery -------------------------------------------------------------------------------


def _is_write_race(error: Exception) -> bool:
    """A unique-key collision or deadlock with a concurrent writer, as opposed to a bad value."""
    sqlstate = getattr(error.__cause__, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate in ("23505", "40P01", "40001")
    return "UNIQUE constraint failed" in str(error)


def _is_missing_reference(error: Exception) -> bool:
    """A foreign key to a row deleted meanwhile (checked at commit: the keys are deferred on both databases)."""
    sqlstate = getattr(error.__cause__, "sqlstate", None)
    return sqlstate == "23503" if sqlstate is not None else "FOREIGN KEY constraint failed" in str(error)


def _with_write_retries(write: Callable[[], T]) -> T:
    """Run `write` in a transaction, again if a concurrent writer got in first.

    On PostgreSQL two requests can race to create the same model, version or event; the loser's transaction
    fails on a unique constraint (or a deadlock) and its retry then finds the winner's rows.
    """
    for attempt in range(1, _WRITE_ATTEMPTS + 1):
        try:
            with transaction.atomic():
                return write()
        except (IntegrityError, OperationalError) as error:
            if not _is_write_race(error) or attempt == _WRITE_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


_LOCKS = "SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k"
_LOCKS_SETTING_PLAN_CACHE_MODE = (
    f"SELECT set_config('plan_cache_mode', %s, true), (SELECT count(*) FROM ({_LOCKS}) AS locked)"  # noqa: S608
)


def lock_events(namespace: str, keys: Sequence[tuple[int, str]], *, plan_cache_mode: str | None = None) -> None:
    """Serialise writers of the same (model, event_id) on PostgreSQL; SQLite already has a single writer.
    `plan_cache_mode`: the same statement sets it for the rest of the transaction (a statement fewer to send)."""
    if connection.vendor != "postgresql" or not keys:
        return
    lock_ids = sorted(
        {
            int.from_bytes(hashlib.sha256(f"{namespace}:{mid}:{eid}".encode()).digest()[:8], "big", signed=True)
            for mid, eid in keys
        }
    )
    with connection.cursor() as cursor:
        if plan_cache_mode is None:
            cursor.execute(_LOCKS, [bigint_array(lock_ids)])
        else:
            cursor.execute(_LOCKS_SETTING_PLAN_CACHE_MODE, [plan_cache_mode, bigint_array(lock_ids)])


def bigint_array(values: Iterable[int]) -> str:
    """A PostgreSQL bigint[] parameter as text, for a statement that casts it (`%s::bigint[]`): psycopg's list
    dumper, which finds each element's type, cost more than the statement it was sent with."""
    return "{" + ",".join(str(int(value)) for value in values) + "}"


def _raise_if(problems: list[FieldProblem], error: type[InvalidInput | Forbidden | NotFound | Conflict]) -> None:
    if problems:
        raise error(problems_summary(problems), problems)


def _field(index: int | None, name: str) -> str:
    return name if index is None else f"[{index}].{name}"


def _chunks(values: Sequence[T]) -> list[Sequence[T]]:
    return [values[start : start + _QUERY_CHUNK] for start in range(0, len(values), _QUERY_CHUNK)]


def _select_by_event(model_class: type, columns: Sequence[str], model_id: int, event_ids: Sequence[str]) -> list[tuple]:
    """Rows of `model_class` for one model and some event ids, by a statement written here: the ORM's compile of
    an IN lookup costs more than the query, on the path every ingest request takes."""
    found: list[tuple] = []
    for chunk in _chunks(event_ids):
        sql = _select_by_event_sql(connection.vendor, model_class, tuple(columns), len(chunk))
        with connection.cursor() as cursor:
            cursor.execute(sql, [model_id, *chunk])
            found += cursor.fetchall()
    return found


@cache
def _select_by_event_sql(vendor: str, model_class: type, columns: tuple[str, ...], count: int) -> str:
    quote = connection.ops.quote_name
    # Identifiers come from model metadata and every value is a parameter.
    return (
        f"SELECT {', '.join(quote(c) for c in columns)} FROM {quote(model_class._meta.db_table)} "  # noqa: S608
        f"WHERE {quote('registered_model_id')} = %s AND {quote('event_id')} IN ({', '.join(['%s'] * count)})"
    )


def _default_model_name(name: str) -> str:
    return name or settings.FEEDBACKHUB_DEFAULT_MODEL


def _resolve_models(
    names: Sequence[str],
    actor: Actor,
    *,
    paths: Sequence[str],
    task_types: Sequence[str] | None = None,
) -> dict[str, RegisteredModel]:
    """Registered models by name for a write, registering new ones where allowed; checks the actor's scope."""
    found = {model.name: model for model in _models_named(sorted(set(names)))}
    invalid: list[FieldProblem] = []
    forbidden: list[FieldProblem] = []
    to_register: dict[str, str] = {}
    for position, name in enumerate(names):
        path = paths[position]
        model = found.get(name)
        if model is not None:
            if not actor.may_write(model.pk):
                forbidden.append(FieldProblem(path, f"this API key may not write to model '{name}'"))
            continue
        if task_types is None or not settings.FEEDBACKHUB_AUTO_REGISTER:
            invalid.append(FieldProblem(path, f"unknown model '{name}': register it in the admin first"))
        elif not actor.may_register_models:
            forbidden.append(FieldProblem(path, f"this API key may not register the new model '{name}'"))
        else:
            try:
                MODEL_NAME_VALIDATOR(name)
            except ValidationError as error:
                invalid.append(FieldProblem(path, f"'{name}' is not a valid model name. {error.messages[0]}"))
                continue
            to_register.setdefault(name, task_types[position])
    _raise_if(forbidden, Forbidden)
    _raise_if(invalid, InvalidInput)
    for name, task_type in to_register.items():
        found[name] = RegisteredModel.objects.create(name=name, task_type=task_type)
    return found


def _models_named(names: Sequence[str]) -> list[RegisteredModel]:
    # A plain statement: compiling the ORM's IN lookup costs more than running it, on every ingest request.
    if not names:
        return []
    placeholders = ", ".join(["%s"] * len(names))
    return rows_where(RegisteredModel, f"{connection.ops.quote_name('name')} IN ({placeholders})", names)


def _versions_of(wanted: set[tuple[RegisteredModel, str]]) -> dict[tuple[int, str], ModelVersion]:
    """The stored versions among `wanted` (and others of the same models and names), by (model id, version)."""
    if not wanted:
        return {}
    quote = connection.ops.quote_name
    model_ids = sorted({model.pk for model, _ in wanted})
    names = sorted({version for _, version in wanted})
    where = (
        f"{quote('registered_model_id')} IN ({', '.join(['%s'] * len(model_ids))}) "
        f"AND {quote('version')} IN ({', '.join(['%s'] * len(names))})"
    )
    versions = rows_where(ModelVersion, where, [*model_ids, *names])
    return {(row.registered_model_id, row.version): row for row in versions}


def _resolve_versions(wanted: set[tuple[RegisteredModel, str]], paths: dict[tuple[int, str], str]) -> dict:
    """ModelVersion rows by (model id, version), creating new versions where registration is automatic."""
    versions = _versions_of(wanted)
    missing = [(model, version) for model, version in wanted if (model.pk, version) not in versions]
    if missing and not settings.FEEDBACKHUB_AUTO_REGISTER:
        problems = [
            FieldProblem(paths[(model.pk, version)], f"unknown version '{version}' of model '{model.name}'")
            for model, version in missing
        ]
        raise InvalidInput(problems_summary(problems), problems)
    created = ModelVersion.objects.bulk_create(
        [ModelVersion(registered_model=model, version=version) for model, version in missing]
    )
    versions.update({(row.registered_model_id, row.version): row for row in created})
    return versions


class _Keyed(NamedTuple):  # a tuple: a batch makes a thousand of them in its write transaction
    index: int
    model_id: int
    event_id: str
    sha: str


@dataclass
class _InsertPlan:
    new: list[_Keyed]
    existing_ids: dict[int, int]  # item index -> id of the row already stored
    same_as_index: dict[int, int]  # item index -> index of an earlier identical item in this batch


def _plan_idempotent_insert(
    model_class: type[Prediction | Feedback],
    keyed: list[_Keyed],
    path: Callable[[int, str], str],
    stored: dict[tuple[int, str], tuple[int, str]] | None = None,
) -> _InsertPlan:
    """Split a batch into rows to insert and retries of rows already stored; a reused event_id with a
    different body is a conflict. `stored`: the (id, payload hash) of the rows stored under the batch's keys, when
    the caller has read them already."""
    if stored is None:
        stored = {}
        by_model: dict[int, list[str]] = {}
        for item in keyed:
            by_model.setdefault(item.model_id, []).append(item.event_id)
        for model_id, event_ids in by_model.items():
            columns = ["id", "event_id", "payload_sha256"]
            for pk, event_id, sha in _select_by_event(model_class, columns, model_id, sorted(set(event_ids))):
                stored[(model_id, event_id)] = (pk, sha)
    plan = _InsertPlan(new=[], existing_ids={}, same_as_index={})
    first_in_batch: dict[tuple[int, str], _Keyed] = {}
    conflicts: list[FieldProblem] = []
    for item in keyed:
        key = (item.model_id, item.event_id)
        if key in stored:
            pk, sha = stored[key]
            if sha == item.sha:
                plan.existing_ids[item.index] = pk
            else:
                conflicts.append(
                    FieldProblem(path(item.index, "event_id"), f"'{item.event_id}' was already used for another body")
                )
        elif key in first_in_batch:
            earlier = first_in_batch[key]
            if earlier.sha == item.sha:
                plan.same_as_index[item.index] = earlier.index
            else:
                conflicts.append(
                    FieldProblem(
                        path(item.index, "event_id"),
                        f"'{item.event_id}' is used by item {earlier.index} of this batch with another body",
                    )
                )
        else:
            first_in_batch[key] = item
            plan.new.append(item)
    _raise_if(conflicts, Conflict)
    return plan


def _results(plan: _InsertPlan, keyed: list[_Keyed], new_ids: dict[int, int]) -> list[Recorded]:
    results: list[Recorded] = []
    for item in keyed:
        if item.index in new_ids:
            results.append(Recorded(new_ids[item.index], item.event_id, created=True))
        elif item.index in plan.existing_ids:
            results.append(Recorded(plan.existing_ids[item.index], item.event_id, created=False))
        else:
            results.append(Recorded(new_ids[plan.same_as_index[item.index]], item.event_id, created=False))
    return results


# --- predictions ------------------------------------------------------------------------------------


def prediction_record_batch(
    *,
    items: Sequence[PredictionIn],
    actor: Actor,
    source: str = IngestSource.API,
    single: bool = False,
    parsed_storable: bool = False,
) -> list[Recorded]:
    """Record predictions all or nothing. A retry of an event already stored returns the stored id.

    `parsed_storable`: the items' JSON values come from a body the API's parser has already found storable
    (collector.payloads.storable_problem's rules), so they are not walked again here."""
    if not items:
        raise InvalidInput("send at least one prediction", [FieldProblem("body", "send at least one prediction")])
    path = _path_naming(single)
    problems = [
        FieldProblem(path(index, name), message)
        for index, item in enumerate(items)
        for name, message in _prediction_value_problems(item, parsed_storable=parsed_storable)
    ]
    _raise_if(problems, InvalidInput)
    prepared = _prepare_predictions(items, path)
    if prepared is not None and _may_pipeline():
        recorded = _new_predictions_pipelined(prepared, actor, source)
        if recorded is not None:
            return recorded
    try:
        return _with_write_retries(lambda: _prediction_record_batch(items, actor, source, path, prepared))
    except IntegrityError as error:
        if prepared is None or not _is_missing_reference(error):
            raise
        # A model or version read before the transaction was deleted meanwhile: read everything inside it.
        _known_versions.forget(prepared.rules)
        return _with_write_retries(lambda: _prediction_record_batch(items, actor, source, path, None))


def prediction_record(
    *, item: PredictionIn, actor: Actor, source: str = IngestSource.API, parsed_storable: bool = False
) -> Recorded:
    """Record one prediction sent on its own; errors name its fields without an index."""
    [recorded] = prediction_record_batch(
        items=[item], actor=actor, source=source, single=True, parsed_storable=parsed_storable
    )
    return recorded


def _path_naming(single: bool) -> Callable[[int, str], str]:
    return lambda index, name: name if single else _field(index, name)


@dataclass(frozen=True)
class _Prepared:
    """The work of a write done before its transaction, so that on SQLite, where that transaction holds the one
    write lock, other web processes can write meanwhile: the versions read, and the items masked, labelled,
    fingerprinted and encoded under the models as they were read. Used only if the transaction reads the same task
    types and masking rules (so a rule saved in the admin applies to every write committed after it); a version
    deleted meanwhile fails the insert, which is then done again with everything read inside."""

    rules: dict[int, tuple[str, RedactionPolicy]]
    models: dict[str, RegisteredModel]  # as read, by name
    versions: dict[tuple[int, str], ModelVersion]
    items: list[PredictionIn]
    labels: list[str]
    shas: list[str]
    json_columns: dict[str, list]  # the JSON columns of the items, as insert_rows would send them


_PREPARED_JSON_COLUMNS = ("input", "prediction", "attributes")


class _KnownVersions:
    """The models and versions that this process's earlier preparations read, so that a preparation mostly runs no
    statement. They stand only where a read before the transaction would: the transaction reads each model again
    and compares its rules, and a version deleted since fails the insert's foreign key; either way the models are
    forgotten here and read afresh next time. Only rows read outside any transaction are kept (inside one, they
    might be rolled back, and their ids given again to other rows)."""

    _LIMIT = 10_000

    def __init__(self) -> None:
        self.models: dict[str, RegisteredModel] = {}
        self.versions: dict[tuple[int, str], ModelVersion] = {}

    def read(self, pairs: set[tuple[str, str]]) -> tuple[dict[str, RegisteredModel], dict]:
        """The models named in `pairs` of (model name, version) by name, and their versions by (model id, version):
        known, or read now. Names and versions not stored are left out."""
        names = {name for name, _ in pairs}
        # .get throughout: another thread may forget an entry between a test and a read.
        models = {name: model for name in names if (model := self.models.get(name)) is not None}
        unknown = sorted(name for name in names if name not in models)
        models.update({model.name: model for model in _models_named(unknown)})
        versions = {}
        unknown_versions = set()
        for name, version in pairs:
            model = models.get(name)
            if model is None:
                continue
            remembered = self.versions.get((model.pk, version))
            if remembered is None:
                unknown_versions.add((model, version))
            else:
                versions[(model.pk, version)] = remembered
        versions.update(_versions_of(unknown_versions))
        if not connection.in_atomic_block:
            if len(self.versions) > self._LIMIT:
                self.models.clear()
                self.versions.clear()
            self.models.update(models)
            self.versions.update(versions)
        return models, versions

    def forget(self, model_ids: Iterable[int]) -> None:
        ids = set(model_ids)
        for name, model in list(self.models.items()):
            if model.pk in ids:
                self.models.pop(name, None)
        for key in [key for key in list(self.versions) if key[0] in ids]:
            self.versions.pop(key, None)


_known_versions = _KnownVersions()


def _prepare_predictions(items: Sequence[PredictionIn], path: Callable[[int, str], str]) -> _Prepared | None:
    """None when a model or version is new or anything is wrong: the transaction then does it all and raises what
    there is to raise."""
    names = [_default_model_name(item.model) for item in items]
    models, versions = _known_versions.read({(name, item.version) for name, item in zip(names, items, strict=True)})
    if any(name not in models for name in names):
        return None
    wanted = {(models[name], item.version) for name, item in zip(names, items, strict=True)}
    if any((model.pk, version) not in versions for model, version in wanted):
        return None
    policies = _policies(models.values())
    masked, labels, problems = _masked_and_labelled(items, [models[name] for name in names], policies, path)
    if problems:
        return None
    return _Prepared(
        rules={model.pk: (model.task_type, policies[model.pk]) for model in models.values()},
        models=models,
        versions=versions,
        items=masked,
        labels=labels,
        shas=[_prediction_sha(names[index], item) for index, item in enumerate(masked)],
        json_columns={
            name: adapted_column(Prediction, name, [getattr(item, name) for item in masked])
            for name in _PREPARED_JSON_COLUMNS
        },
    )


def _masked_and_labelled(
    items: Sequence[PredictionIn],
    models: Sequence[RegisteredModel],
    policies: dict[int, RedactionPolicy],
    path: Callable[[int, str], str],
) -> tuple[list[PredictionIn], list[str], list[FieldProblem]]:
    """Items with PII masked, their predicted labels, and what does not fit their model's task type."""
    masked = [_masked_prediction(item, policies[models[index].pk]) for index, item in enumerate(items)]
    labels: list[str] = []
    problems: list[FieldProblem] = []
    for index, item in enumerate(masked):
        model = models[index]
        try:
            labels.append(label_for(model.task_type, item.prediction))
        except LabelError as error:
            labels.append("")
            problems.append(FieldProblem(path(index, "prediction"), _label_problem(model, error)))
            continue
        if item.actual is not None:
            try:
                judge(model.task_type, item.prediction, item.actual)
            except LabelError as error:
                problems.append(FieldProblem(path(index, "actual"), _label_problem(model, error)))
    return masked, labels, problems


def _prediction_record_batch(
    items: Sequence[PredictionIn],
    actor: Actor,
    source: str,
    path: Callable[[int, str], str],
    prepared: _Prepared | None,
) -> list[Recorded]:
    if actor.unconfirmed_key is not None and not _key_confirmed(actor.unconfirmed_key):
        raise ApiKeyNotConfirmed
    names = [_default_model_name(item.model) for item in items]
    models = _resolve_models(
        names,
        actor,
        paths=[path(index, "model") for index in range(len(items))],
        task_types=[item.task_type or infer_task_type(item.prediction) for item in items],
    )
    policies = _policies(models.values())
    rules = {model.pk: (model.task_type, policies[model.pk]) for model in models.values()}
    json_columns: dict[str, list] = {}
    if prepared is not None and all(prepared.rules.get(pk) == rule for pk, rule in rules.items()):
        items, predicted_labels, shas = prepared.items, prepared.labels, prepared.shas
        versions, json_columns = prepared.versions, prepared.json_columns
    else:
        if prepared is not None:
            _known_versions.forget([*prepared.rules, *rules])
        by_index = [models[name] for name in names]
        items, predicted_labels, problems = _masked_and_labelled(items, by_index, policies, path)
        _raise_if(problems, InvalidInput)
        shas = [_prediction_sha(names[index], item) for index, item in enumerate(items)]
        version_paths = {(models[names[i]].pk, item.version): path(i, "version") for i, item in enumerate(items)}
        wanted = {(models[names[i]], item.version) for i, item in enumerate(items)}
        versions = _resolve_versions(wanted, version_paths)
    event_ids = [item.event_id or uuid.uuid4().hex for item in items]
    keyed = [_Keyed(index, models[names[index]].pk, event_ids[index], shas[index]) for index in range(len(items))]
    lock_events("prediction", [(k.model_id, k.event_id) for k in keyed])
    known = _events_known([(k.model_id, k.event_id) for k in keyed])
    plan = _plan_idempotent_insert(Prediction, keyed, path, stored=known.predictions)
    pending = _pending_outcomes(known.pending_outcome_ids, plan.new)
    task_types = {model.pk: model.task_type for model in models.values()}
    rows = _new_prediction_rows(plan.new, items, predicted_labels, versions, task_types, source, pending)
    adapted = {name: [column[entry.index] for entry in plan.new] for name, column in json_columns.items()}
    insert_rows(rows, adapted=adapted)
    _count_new_predictions(rows)
    new_ids = {entry.index: row.pk for entry, row in zip(plan.new, rows, strict=True)}
    if pending:
        OutcomeRevision.objects.bulk_create(
            OutcomeRevision(prediction=row, previous_actual=None, actual=row.actual, actor=early.actor)
            for row in rows
            if (early := pending.get((row.registered_model_id, row.event_id))) is not None
        )
        PendingOutcome.objects.filter(pk__in=[p.pk for p in pending.values()]).delete()
    _link_waiting_feedback(rows, known.waiting_feedback_ids)
    return _results(plan, keyed, new_ids)


def _may_pipeline() -> bool:
    """Whether this write may run as a psycopg pipeline: on PostgreSQL, with values bound on the server (the
    pipeline's protocol), in autocommit and outside any transaction of the caller's."""
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor != "postgresql" or db.in_atomic_block or not db.get_autocommit():
        return False
    return db.settings_dict["OPTIONS"].get("server_side_binding") is True and Pipeline.is_supported()


# A pipelined write of up to this many events (single predictions grouped by a web process's threads) lets PostgreSQL
# reuse one plan for each of its statements, all look-ups by unique keys, instead of the connection's force_custom_plan
# (feedbackhub/settings.py), which plans them again on every execution: 0.66-0.76 against 1.11-1.39 ms of server CPU
# a single write on a table with statistics. Batches keep custom plans, which a plan made once for all values slowed.
# A plan_cache_mode chosen in DATABASE_URL's options applies to these writes too.
_GENERIC_PLANS_UP_TO = 16


# The SQLSTATEs a pipelined write's checks raise on the server (feedbackhub_expect, migration 0012).
_MODELS_CHANGED = "FH001"  # a model's rules, or a version, changed since the write was prepared
_EVENT_NOT_NEW = "FH002"  # an event is stored already, or an outcome or feedback waits for it
_KEY_NOT_CONFIRMED = "FH003"  # a key taken from memory is revoked or scoped since
_ABANDONED = "FH004"  # the web process gave up the write before sending all of it (an exception in the pipeline)
# PostgreSQL's undefined_function: new code serving before `migrate` has added feedbackhub_expect (a rolling deploy)
# writes through the transaction path meanwhile.
_NOT_MIGRATED_YET = "42883"
# The columns of a model that the rows prepared outside the transaction follow (its masking rules and task type).
_MODEL_RULE_FIELDS = ("name", "task_type", "pii_mask_emails", "pii_mask_cards", "pii_drop_keys", "pii_hash_keys",
                      "pii_patterns")  # fmt: skip


def _new_predictions_pipelined(prepared: _Prepared, actor: Actor, source: str) -> list[Recorded] | None:
    """New events of models and versions already known, written in one round trip instead of seven: one psycopg
    pipeline of four statements in one transaction, the implicit one that the pipeline's sync commits. They take the
    events' locks (setting the plan cache mode of the rest), check on the server that what the write was prepared
    with still holds, insert the rows and add the counters. A check that fails raises there (feedbackhub_expect),
    which aborts the transaction: nothing sent after it runs, and the sync rolls it back. The statements reach the
    server together, in as few TCP segments as their size allows (`sends_coalesced`).

    None, with nothing written, when the write needs more than that: a retry of a stored event, an outcome or
    feedback waiting for an event, an event twice in the batch, a model changed (or a key's scope) since it was
    read, a key taken from memory and revoked since, or a write race; `prediction_record_batch` then writes it in a
    transaction of its own, where each of those is handled."""
    items = prepared.items
    names = [_default_model_name(item.model) for item in items]
    model_ids = [prepared.models[name].pk for name in names]
    if not all(actor.may_write(model_id) for model_id in set(model_ids)):
        return None
    keyed = [
        _Keyed(index, model_ids[index], item.event_id or uuid.uuid4().hex, prepared.shas[index])
        for index, item in enumerate(items)
    ]
    keys = [(entry.model_id, entry.event_id) for entry in keyed]
    if len(set(keys)) != len(keys) or len(keys) > _QUERY_CHUNK:
        return None
    version_ids = {prepared.versions[(entry.model_id, items[entry.index].version)].pk for entry in keyed}
    task_types = {model_id: task_type for model_id, (task_type, _) in prepared.rules.items()}
    rows = _new_prediction_rows(keyed, items, prepared.labels, prepared.versions, task_types, source, pending={})
    # The request's health check of a kept connection, which Django runs with its first cursor: here, not as a
    # `SELECT 1` inside the pipeline, where the connection is in a transaction and always checked that way.
    db = connections[DEFAULT_DB_ALIAS]
    db.close_if_health_check_failed()
    db.ensure_connection()
    raw = db.connection
    plan_cache_mode = (
        "auto" if len(items) <= _GENERIC_PLANS_UP_TO and not db.settings_dict.get("PLAN_CACHE_MODE_IN_URL") else None
    )
    try:
        with db.wrap_database_errors, raw.pipeline(), sends_coalesced(raw):
            # One transaction, the implicit one that the pipeline's sync ends: no BEGIN or COMMIT to send. The sync
            # goes out even when an exception leaves the block, so an exception first sends a statement that fails,
            # and the sync then rolls back whatever was sent before it.
            try:
                lock_events("prediction", keys, plan_cache_mode=plan_cache_mode)
                _send_expectations(
                    [
                        *_events_new(keys),
                        _models_unchanged(list(prepared.models.values()), db),
                        _versions_kept(version_ids),
                        *([_key_still_confirmed(actor.unconfirmed_key)] if actor.unconfirmed_key is not None else []),
                    ]
                )
                set_ids = send_insert(rows, adapted=prepared.json_columns)
                _count_new_predictions(rows)
            except BaseException:
                _abandon_pipelined_transaction(raw)
                raise
        set_ids()
    except BaseException as error:
        _settle_failed_pipeline()
        sqlstate = getattr(error.__cause__, "sqlstate", None)
        if sqlstate == _MODELS_CHANGED:
            _known_versions.forget(prepared.rules)
        if sqlstate in (_MODELS_CHANGED, _EVENT_NOT_NEW, _KEY_NOT_CONFIRMED, _NOT_MIGRATED_YET):
            return None
        if isinstance(error, IntegrityError | OperationalError) and (
            _is_write_race(error) or _is_missing_reference(error)
        ):
            return None
        raise
    return [Recorded(row.pk, row.event_id, created=True) for row in rows]


class _Expectation(NamedTuple):
    condition: str  # SQL, true when the write may go on
    params: list
    sqlstate: str
    what: str


def _send_expectations(expectations: Sequence[_Expectation]) -> None:
    """One statement that aborts the transaction with the SQLSTATE of an expectation that fails (the first: PostgreSQL
    evaluates a select list in order; which one it is decides only whether the models read are forgotten)."""
    checks = ", ".join(f"feedbackhub_expect({e.condition}, %s::text, %s::text)" for e in expectations)
    params = [
        value
        for e in expectations
        for value in (*e.params, e.sqlstate, f"{e.what} changed since the write was prepared")
    ]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {checks}", params)


def _events_new(keys: Sequence[tuple[int, str]]) -> list[_Expectation]:
    """No event of `keys` is stored, and no outcome or feedback waits for one of them."""
    return [
        _Expectation(
            f"NOT EXISTS ({_events_known_sql(connection.vendor, len(chunk))})",
            [model_id, *chunk] * 3,
            _EVENT_NOT_NEW,
            "an event",
        )
        for model_id, chunk in _event_chunks(keys)
    ]


def _models_unchanged(models: Sequence[RegisteredModel], db: BaseDatabaseWrapper) -> _Expectation:
    """The models hold the rules they were read with."""
    fields = _model_rule_fields()
    return _Expectation(
        f"({_models_matching_sql(db.vendor, len(models))}) = %s",
        [field.get_db_prep_save(getattr(model, field.attname), db) for model in models for field in fields]
        + [len(models)],
        _MODELS_CHANGED,
        "a model",
    )


@cache
def _models_matching_sql(vendor: str, count: int) -> str:
    quote = connection.ops.quote_name
    same_row = " AND ".join(f"{quote(field.column)} = %s" for field in _model_rule_fields())
    # Identifiers come from model metadata and every value is a parameter.
    return (
        f"SELECT count(*) FROM {quote(RegisteredModel._meta.db_table)} "  # noqa: S608
        f"WHERE {' OR '.join([f'({same_row})'] * count)}"
    )


@cache
def _model_rule_fields() -> list[Field]:
    return [RegisteredModel._meta.get_field(name) for name in ("id", *_MODEL_RULE_FIELDS)]


def _versions_kept(version_ids: set[int]) -> _Expectation:
    """The versions are stored, and locked (with their models) against deletion until the write commits, so that
    the foreign keys, checked at its commit, hold."""
    quote = connection.ops.quote_name
    version, model = quote(ModelVersion._meta.db_table), quote(RegisteredModel._meta.db_table)
    kept = (
        f"SELECT {version}.{quote('id')} FROM {version} JOIN {model} "  # noqa: S608 - identifiers from metadata
        f"ON {model}.{quote('id')} = {version}.{quote('registered_model_id')} "
        f"WHERE {version}.{quote('id')} = ANY(%s::bigint[]) FOR KEY SHARE"
    )
    count = f"SELECT count(*) FROM ({kept}) AS kept"  # noqa: S608 - identifiers from metadata
    return _Expectation(
        f"({count}) = %s", [bigint_array(sorted(version_ids)), len(version_ids)], _MODELS_CHANGED, "a version"
    )


def _key_still_confirmed(key: tuple[int, str]) -> _Expectation:
    return _Expectation(f"EXISTS ({_key_confirmed_sql()})", list(key), _KEY_NOT_CONFIRMED, "the key")


def _key_confirmed_sql() -> str:
    quote = connection.ops.quote_name
    # Identifiers come from model metadata and every value is a parameter.
    return (
        f"SELECT 1 FROM {quote(ApiKey._meta.db_table)} WHERE {quote('id')} = %s "  # noqa: S608
        f"AND {quote('key_sha256')} = %s AND {quote('revoked_at')} IS NULL AND {quote('all_models')}"
    )


def _key_confirmed(key: tuple[int, str]) -> bool:
    """Whether the key (id, SHA-256) is still stored, active and for every model (see Actor.unconfirmed_key). The
    hash too, not the id alone: ids can be given again to other keys (a restored or emptied table)."""
    with connection.cursor() as cursor:
        cursor.execute(_key_confirmed_sql(), list(key))
        return cursor.fetchone() is not None


def _abandon_pipelined_transaction(raw: psycopg.Connection) -> None:
    """Make the pipeline's implicit transaction fail, so that its sync rolls back the statements sent so far. (When
    the transaction failed already, the server skips this statement as it skips every other until the sync.)"""
    with suppress(psycopg.Error):
        raw.execute(
            "SELECT feedbackhub_expect(false, %s::text, %s::text)",
            [_ABANDONED, "the write was abandoned"],
            prepare=False,
        )


def _settle_failed_pipeline() -> None:
    """After a pipelined write failed: roll back what its transaction holds (its locks, any row sent), or close the
    connection when psycopg could not leave pipeline mode (a commit failing at a pipeline's sync leaves it so, taking
    no further statement). A closed connection is opened again by the next statement."""
    raw = connection.connection
    if raw is None or raw.closed:
        return
    if raw.pgconn.pipeline_status == PipelineStatus.OFF and raw.pgconn.status == ConnStatus.OK:
        try:
            raw.rollback()
        except psycopg.Error:
            pass
        else:
            return
    connection.close()


def _new_prediction_rows(
    new: Sequence[_Keyed],
    items: Sequence[PredictionIn],
    predicted_labels: Sequence[str],
    versions: dict[tuple[int, str], ModelVersion],
    task_types: dict[int, str],
    source: str,
    pending: dict[tuple[int, str], PendingOutcome],
) -> list[Prediction]:
    """The unsaved rows of the new events, with the outcome sent along or recorded before them judged."""
    now = timezone.now()
    new_prediction = row_maker(Prediction)
    rows = []
    for entry in new:
        item = items[entry.index]
        row = new_prediction(
            registered_model_id=entry.model_id,
            model_version_id=versions[(entry.model_id, item.version)].pk,
            event_id=entry.event_id,
            created_at=item.timestamp or now,
            source=source,
            input=item.input,
            prediction=item.prediction,
            predicted_label=predicted_labels[entry.index],
            latency_ms=item.latency_ms,
            confidence=item.confidence,
            interaction_id=item.interaction_id,
            attributes=item.attributes,
            payload_sha256=entry.sha,
        )
        early = pending.get((entry.model_id, entry.event_id))
        actual = early.actual if early is not None else item.actual
        if actual is not None:
            _set_outcome(row, task_types[entry.model_id], actual, now)
        rows.append(row)
    return rows


def _count_new_predictions(rows: Sequence[Prediction]) -> None:
    counters_record(
        new_predictions=rows,
        outcome_changes=[_outcome_change(row, +1) for row in rows if row.actual is not None],
    )


def _length_problem(name: str, value: str, limit: int) -> list[tuple[str, str]]:
    return [(name, f"is at most {limit} characters, this has {len(value)}")] if len(value) > limit else []


def _prediction_value_problems(item: PredictionIn, *, parsed_storable: bool) -> list[tuple[str, str]]:
    """What the database would refuse, said in the client's terms (the API's serializers check most of it first;
    the importer and other callers rely on this)."""
    problems = [(name, "is required") for name in ("input", "prediction") if getattr(item, name) is None]
    if not item.version:
        problems.append(("version", "is required"))
    problems += _length_problem("version", item.version, 100) + _length_problem("model", item.model, 100)
    problems += _length_problem("event_id", item.event_id, 128)
    problems += _length_problem("interaction_id", item.interaction_id, 255)
    if item.confidence is not None and not (0 <= item.confidence <= 1):
        problems.append(("confidence", "is a number from 0 to 1"))
    if item.latency_ms is not None and not (0 <= item.latency_ms < math.inf):
        problems.append(("latency_ms", "is a finite number of 0 or more"))
    if not isinstance(item.attributes, dict):
        problems.append(("attributes", "is a JSON object"))
    if parsed_storable:
        return problems
    for name in ("input", "prediction", "actual", "attributes"):
        found = storable_problem(getattr(item, name), name)
        if found:
            problems.append(found)
    return problems


def _policies(models: Iterable[RegisteredModel]) -> dict[int, RedactionPolicy]:
    return {model.pk: model.redaction_policy() for model in models}


def _masked_prediction(item: PredictionIn, policy: RedactionPolicy) -> PredictionIn:
    return replace(
        item,
        input=policy.value(item.input, "input"),
        prediction=policy.value(item.prediction, "prediction"),
        actual=policy.value(item.actual, "actual"),
        attributes=policy.value(item.attributes, "attributes"),
        interaction_id=bounded(policy.text(item.interaction_id), 255),
    )


def _prediction_sha(model_name: str, item: PredictionIn) -> str:
    return fingerprint(
        {
            "model": model_name,
            "version": item.version,
            "input": item.input,
            "prediction": item.prediction,
            "actual": item.actual,
            "latency_ms": item.latency_ms,
            "confidence": item.confidence,
            "interaction_id": item.interaction_id,
            "attributes": item.attributes,
            "timestamp": item.timestamp.isoformat() if item.timestamp else None,
        }
    )


def _label_problem(model: RegisteredModel, error: LabelError) -> str:
    return (
        f"{error}; model '{model.name}' is registered as {model.task_type} "
        "(change its task type in the admin if that is wrong)"
    )


def _outcome_key_or_none(task_type: str, value: Any) -> str | None:
    """None when a stored outcome no longer fits (the model's task type was changed since)."""
    try:
        return outcome_key(task_type, value)
    except LabelError:
        return None


def _outcome_change(row: Prediction, sign: int) -> OutcomeChange:
    return OutcomeChange(
        model_version_id=row.model_version_id,
        sign=sign,
        actual_label=row.actual_label,
        predicted_label=row.predicted_label,
        is_correct=row.is_correct,
        error=row.error,
        recorded_at=row.actual_recorded_at,
        predicted_at=row.created_at,
        confidence=row.confidence,
    )


def _set_outcome(row: Prediction, task_type: str, actual: Any, now: datetime) -> None:
    judgement = judge(task_type, row.prediction, actual)
    row.actual = actual
    row.actual_label = judgement.actual_label
    row.is_correct = judgement.is_correct
    row.error = judgement.error
    row.actual_recorded_at = now


@dataclass
class _EventsKnown:
    """What a prediction write must know of the events it is given: the predictions already stored under them (id,
    payload hash), the outcomes that arrived before them, the feedback that names them and waits to be linked."""

    predictions: dict[tuple[int, str], tuple[int, str]]
    pending_outcome_ids: dict[tuple[int, str], int]
    waiting_feedback_ids: dict[tuple[int, str], list[int]]


def _events_known(keys: Sequence[tuple[int, str]]) -> _EventsKnown:
    """One statement a model (and 500 events), not three: on the path every ingest request takes, each statement
    costs more in Django's cursor and, on PostgreSQL, a round trip than the index look-up it runs."""
    known = _EventsKnown({}, {}, {})
    for model_id, chunk in _event_chunks(keys):
        with connection.cursor() as cursor:
            cursor.execute(_events_known_sql(connection.vendor, len(chunk)), [model_id, *chunk] * 3)
            rows = cursor.fetchall()
        for table, pk, sha, event_id in rows:
            key = (model_id, event_id)
            if table == 0:
                known.predictions[key] = (pk, sha)
            elif table == 1:
                known.pending_outcome_ids[key] = pk
            else:
                known.waiting_feedback_ids.setdefault(key, []).append(pk)
    return known


def _event_chunks(keys: Sequence[tuple[int, str]]) -> list[tuple[int, Sequence[str]]]:
    """The event ids of `keys` by model, in chunks of at most 500, as `_events_known_sql` takes them."""
    by_model: dict[int, set[str]] = {}
    for model_id, event_id in keys:
        by_model.setdefault(model_id, set()).add(event_id)
    return [(model_id, chunk) for model_id, event_ids in by_model.items() for chunk in _chunks(sorted(event_ids))]


@cache
def _events_known_sql(vendor: str, count: int) -> str:
    quote = connection.ops.quote_name
    events = ", ".join(["%s"] * count)

    def select(table: int, model: type, sha: str, event_column: str, where: str = "") -> str:
        # Identifiers come from model metadata and every value is a parameter.
        return (
            f"SELECT {table}, {quote('id')}, {sha}, {quote(event_column)} FROM {quote(model._meta.db_table)} "  # noqa: S608
            f"WHERE {quote('registered_model_id')} = %s AND {quote(event_column)} IN ({events}){where}"
        )

    # Feedback waiting for its prediction is found by the partial index `feedback_unlinked`; SQLite uses a partial
    # index only for a query that repeats its condition term for term (`<> ''` would not do).
    waiting = f" AND {quote('prediction_id')} IS NULL AND NOT ({quote('prediction_event_id')} = '')"
    return " UNION ALL ".join(
        [
            select(0, Prediction, quote("payload_sha256"), "event_id"),
            select(1, PendingOutcome, "''", "event_id"),
            select(2, Feedback, "''", "prediction_event_id", waiting),
        ]
    )


def _pending_outcomes(ids: dict[tuple[int, str], int], new: list[_Keyed]) -> dict[tuple[int, str], PendingOutcome]:
    """The outcomes that arrived before the predictions about to be inserted (rare: the ORM only for those)."""
    wanted = [ids[key] for item in new if (key := (item.model_id, item.event_id)) in ids]
    if not wanted:
        return {}
    return {(row.registered_model_id, row.event_id): row for row in PendingOutcome.objects.filter(pk__in=wanted)}


def _link_waiting_feedback(predictions: Sequence[Prediction], waiting: dict[tuple[int, str], list[int]]) -> None:
    """Attach feedback that named a prediction's event_id before the prediction arrived."""
    for prediction in predictions:
        feedback_ids = waiting.get((prediction.registered_model_id, prediction.event_id))
        if feedback_ids:
            Feedback.objects.filter(pk__in=feedback_ids).update(
                prediction_id=prediction.pk, input_sha256=fingerprint(prediction.input)
            )


def feedback_input_keys_fill(*, batch_size: int = 2_000) -> int:
    """Key linked feedback that has no input hash yet (linked by a release older than the key); how many were."""
    filled = 0
    while batch := list(
        Feedback.objects.filter(prediction__isnull=False, input_sha256="")
        .order_by("pk")
        .values_list("pk", "prediction__input")[:batch_size]
    ):
        by_key: dict[str, list[int]] = {}
        for pk, value in batch:
            by_key.setdefault(fingerprint(value), []).append(pk)
        for key, feedback_ids in by_key.items():
            Feedback.objects.filter(pk__in=feedback_ids).update(input_sha256=key)
        filled += len(batch)
    return filled


# --- outcomes ---------------------------------------------------------------------------------------


def outcome_record_batch(*, items: Sequence[OutcomeIn], actor: Actor, single: bool = False) -> list[OutcomeResult]:
    """Attach real outcomes to predictions, by id or by (model, event_id), all or nothing.

    A changed outcome keeps its history in OutcomeRevision; an outcome whose prediction has not arrived yet
    is kept as pending and applied when it does.
    """
    if not items:
        raise InvalidInput("send at least one outcome", [FieldProblem("body", "send at least one outcome")])
    return _with_write_retries(lambda: _outcome_record_batch(items, actor, single))


def _outcome_record_batch(items: Sequence[OutcomeIn], actor: Actor, single: bool) -> list[OutcomeResult]:
    def path(index: int, name: str) -> str:
        return name if single else _field(index, name)

    by_id = {item.prediction_id for item in items if item.prediction_id is not None}
    predictions = {row.pk: row for row in Prediction.objects.select_for_update().filter(pk__in=by_id).order_by("pk")}
    missing = [
        FieldProblem(path(i, "prediction_id"), f"no prediction with id {item.prediction_id}")
        for i, item in enumerate(items)
        if item.prediction_id is not None and item.prediction_id not in predictions
    ]
    _raise_if(missing, NotFound)

    event_positions = [i for i, item in enumerate(items) if item.prediction_id is None]
    event_names = [_default_model_name(items[i].model) for i in event_positions]
    models_by_name = _resolve_models(
        event_names,
        actor,
        paths=[path(i, "model") for i in event_positions],
        task_types=[infer_task_type(items[i].actual) for i in event_positions],
    )
    models_by_id = {model.pk: model for model in models_by_name.values()}
    for model in RegisteredModel.objects.filter(pk__in={p.registered_model_id for p in predictions.values()}):
        models_by_id[model.pk] = model
    hidden = [
        FieldProblem(path(index, "prediction_id"), f"no prediction with id {item.prediction_id}")
        for index, item in enumerate(items)
        if item.prediction_id is not None and not actor.may_write(predictions[item.prediction_id].registered_model_id)
    ]
    _raise_if(hidden, NotFound)

    policies = _policies(models_by_id.values())
    model_of_item = [
        predictions[item.prediction_id].registered_model_id
        if item.prediction_id is not None
        else models_by_name[_default_model_name(item.model)].pk
        for item in items
    ]
    items = [
        replace(item, actual=policies[model_of_item[index]].value(item.actual, "actual"))
        for index, item in enumerate(items)
    ]
    event_keys = [
        (models_by_name[name].pk, items[i].event_id) for i, name in zip(event_positions, event_names, strict=True)
    ]
    lock_events("prediction", event_keys)
    by_event: dict[tuple[int, str], Prediction] = {}
    for model_id, event_id in event_keys:
        by_event.setdefault((model_id, event_id), None)  # type: ignore[arg-type]
    for model_id in {key[0] for key in event_keys}:
        wanted = [event_id for mid, event_id in event_keys if mid == model_id]
        for chunk in _chunks(wanted):
            rows = Prediction.objects.select_for_update().filter(registered_model_id=model_id, event_id__in=chunk)
            for row in rows.order_by("pk"):
                by_event[(model_id, row.event_id)] = row
                predictions[row.pk] = row

    now = timezone.now()
    problems: list[FieldProblem] = []
    results: list[OutcomeResult] = []
    changed: dict[int, Prediction] = {}
    revisions: list[OutcomeRevision] = []
    counter_changes: list[OutcomeChange] = []
    pending: dict[tuple[int, str], Any] = {}
    event_lookup = dict(zip(event_positions, event_keys, strict=True))
    for index, item in enumerate(items):
        row = predictions[item.prediction_id] if item.prediction_id is not None else by_event[event_lookup[index]]
        if row is None:
            model_id, event_id = event_lookup[index]
            try:
                outcome_key(models_by_id[model_id].task_type, item.actual)
            except LabelError as error:
                problems.append(FieldProblem(path(index, "actual"), _label_problem(models_by_id[model_id], error)))
                continue
            pending[(model_id, event_id)] = item.actual
            results.append(OutcomeResult("pending", None, event_id))
            continue
        model = models_by_id[row.registered_model_id]
        try:
            new_key = outcome_key(model.task_type, item.actual)
            judge(model.task_type, row.prediction, item.actual)
        except LabelError as error:
            problems.append(FieldProblem(path(index, "actual"), _label_problem(model, error)))
            continue
        if row.actual is not None and _outcome_key_or_none(model.task_type, row.actual) == new_key:
            results.append(OutcomeResult("unchanged", row.pk, row.event_id))
            continue
        status = "recorded" if row.actual is None else "changed"
        if row.actual is not None:
            counter_changes.append(_outcome_change(row, -1))
        revisions.append(
            OutcomeRevision(prediction=row, previous_actual=row.actual, actual=item.actual, actor=actor.label)
        )
        _set_outcome(row, model.task_type, item.actual, now)
        counter_changes.append(_outcome_change(row, +1))
        changed[row.pk] = row
        results.append(OutcomeResult(status, row.pk, row.event_id))
    _raise_if(problems, InvalidInput)

    Prediction.objects.bulk_update(
        list(changed.values()), ["actual", "actual_label", "is_correct", "error", "actual_recorded_at"]
    )
    OutcomeRevision.objects.bulk_create(revisions)
    counters_record(new_predictions=[], outcome_changes=counter_changes)
    for (model_id, event_id), actual in pending.items():
        PendingOutcome.objects.update_or_create(
            registered_model_id=model_id, event_id=event_id, defaults={"actual": actual, "actor": actor.label}
        )
    return results


# --- human feedback ---------------------------------------------------------------------------------


def _feedback_value_problem(item: FeedbackIn) -> tuple[str, str] | None:
    if item.kind == FeedbackKind.RATING:
        if isinstance(item.value, bool) or not isinstance(item.value, int) or not 1 <= item.value <= 5:
            return "value", "a rating is a whole number from 1 to 5"
    elif item.kind == FeedbackKind.CORRECTION:
        if item.value is None:
            return "value", "a correction needs the corrected output in value"
    elif item.kind == FeedbackKind.COMMENT:
        if not item.comment.strip():
            return "comment", "a comment needs some text"
    elif item.kind not in FeedbackKind.values:
        return "kind", f"is one of {', '.join(FeedbackKind.values)}"
    elif item.value is not None:
        return "value", f"{item.kind} takes no value (put words in comment)"
    for name, limit in (("event_id", 128), ("prediction_event_id", 128), ("interaction_id", 255), ("source", 100)):
        if len(getattr(item, name)) > limit:
            return name, f"is at most {limit} characters"
    for name in ("value", "comment"):
        found = storable_problem(getattr(item, name), name)
        if found:
            return found
    if not (item.prediction_id or item.prediction_event_id or item.interaction_id):
        return (
            "prediction_id",
            "name the prediction (prediction_id or prediction_event_id) or an interaction_id",
        )
    return None


def feedback_record_batch(*, items: Sequence[FeedbackIn], actor: Actor, single: bool = False) -> list[Recorded]:
    """Record human feedback all or nothing, idempotent by event_id like predictions."""
    if not items:
        raise InvalidInput("send at least one feedback item", [FieldProblem("body", "send at least one item")])
    return _with_write_retries(lambda: _feedback_record_batch(items, actor, single))


def _feedback_record_batch(items: Sequence[FeedbackIn], actor: Actor, single: bool) -> list[Recorded]:
    def path(index: int, name: str) -> str:
        return name if single else _field(index, name)

    problems = []
    for index, item in enumerate(items):
        problem = _feedback_value_problem(item)
        if problem:
            problems.append(FieldProblem(path(index, problem[0]), problem[1]))
    _raise_if(problems, InvalidInput)

    by_id = {
        row.pk: row for row in Prediction.objects.filter(pk__in={i.prediction_id for i in items if i.prediction_id})
    }
    missing = [
        FieldProblem(path(i, "prediction_id"), f"no prediction with id {item.prediction_id}")
        for i, item in enumerate(items)
        if item.prediction_id
        and (item.prediction_id not in by_id or not actor.may_write(by_id[item.prediction_id].registered_model_id))
    ]
    _raise_if(missing, NotFound)
    model_ids_of_predictions = {row.registered_model_id for row in by_id.values()}
    known_by_id = {model.pk: model for model in RegisteredModel.objects.filter(pk__in=model_ids_of_predictions)}
    names = [
        known_by_id[by_id[item.prediction_id].registered_model_id].name
        if item.prediction_id
        else _default_model_name(item.model)
        for item in items
    ]
    for index, item in enumerate(items):
        if item.prediction_id and item.model and item.model != names[index]:
            problems.append(
                FieldProblem(path(index, "model"), f"prediction {item.prediction_id} belongs to model '{names[index]}'")
            )
    _raise_if(problems, InvalidInput)
    models = _resolve_models(names, actor, paths=[path(i, "model") for i in range(len(items))])
    policies = _policies(models.values())
    items = [_masked_feedback(item, policies[models[names[i]].pk]) for i, item in enumerate(items)]

    by_event: dict[tuple[int, str], Prediction] = {}
    for index, item in enumerate(items):
        if item.prediction_event_id and not item.prediction_id:
            by_event.setdefault((models[names[index]].pk, item.prediction_event_id), None)  # type: ignore[arg-type]
    # Same lock as the prediction's writer: either it committed (found below) or it will link this feedback.
    lock_events("prediction", list(by_event))
    for model_id in {key[0] for key in by_event}:
        wanted = [event_id for mid, event_id in by_event if mid == model_id]
        for chunk in _chunks(wanted):
            for row in Prediction.objects.filter(registered_model_id=model_id, event_id__in=chunk):
                by_event[(model_id, row.event_id)] = row

    event_ids = [item.event_id or uuid.uuid4().hex for item in items]
    keyed = [
        _Keyed(index, models[names[index]].pk, event_ids[index], _feedback_sha(names[index], item))
        for index, item in enumerate(items)
    ]
    lock_events("feedback", [(k.model_id, k.event_id) for k in keyed])
    plan = _plan_idempotent_insert(Feedback, keyed, path)
    now = timezone.now()
    rows = []
    for entry in plan.new:
        item = items[entry.index]
        model = models[names[entry.index]]
        prediction = by_id.get(item.prediction_id) if item.prediction_id else None
        if prediction is None and item.prediction_event_id:
            prediction = by_event.get((model.pk, item.prediction_event_id))
        rows.append(
            Feedback(
                registered_model=model,
                prediction=prediction,
                prediction_event_id=prediction.event_id if prediction else item.prediction_event_id,
                input_sha256=fingerprint(prediction.input) if prediction else "",
                interaction_id=item.interaction_id or (prediction.interaction_id if prediction else ""),
                kind=item.kind,
                value=item.value,
                comment=item.comment,
                source=item.source,
                event_id=entry.event_id,
                created_at=item.timestamp or now,
                actor=actor.label,
                payload_sha256=entry.sha,
            )
        )
    Feedback.objects.bulk_create(rows)
    counters_record_feedback(rows=rows)
    return _results(plan, keyed, {entry.index: row.pk for entry, row in zip(plan.new, rows, strict=True)})


def _masked_feedback(item: FeedbackIn, policy: RedactionPolicy) -> FeedbackIn:
    return replace(
        item,
        value=policy.value(item.value, "value"),
        comment=policy.text(item.comment),
        interaction_id=bounded(policy.text(item.interaction_id), 255),
        source=bounded(policy.text(item.source), 100),
    )


def _feedback_sha(model_name: str, item: FeedbackIn) -> str:
    return fingerprint(
        {
            "model": model_name,
            "kind": item.kind,
            "prediction_id": item.prediction_id,
            "prediction_event_id": item.prediction_event_id,
            "interaction_id": item.interaction_id,
            "value": item.value,
            "comment": item.comment,
            "source": item.source,
            "timestamp": item.timestamp.isoformat() if item.timestamp else None,
        }
    )


# --- API keys ---------------------------------------------------------------------------------------


def api_key_hash(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()


def api_key_create(
    *, name: str, model_names: Sequence[str] = (), task_type_for_new: str = TaskType.BINARY
) -> tuple[ApiKey, str]:
    """Create a key and return it with its raw value, which is never stored and cannot be shown again.

    A key scoped to models that are not registered yet registers them with `task_type_for_new`.
    """
    with transaction.atomic():
        models = []
        for model_name in model_names:
            MODEL_NAME_VALIDATOR(model_name)
            model, _ = RegisteredModel.objects.get_or_create(name=model_name, defaults={"task_type": task_type_for_new})
            models.append(model)
        prefix = secrets.token_hex(6)
        raw_key = f"{API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
        api_key = ApiKey.objects.create(
            name=name, prefix=prefix, key_sha256=api_key_hash(raw_key), all_models=not models
        )
        api_key.allowed_models.set(models)
    return api_key, raw_key


def api_key_authenticate(raw_key: str) -> ApiKey | None:
    """The active key with this raw value, or None. Compares hashes in constant time."""
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX:
        return None
    now = timezone.now()
    found = _active_key_row(parts[1], used_since=now - timedelta(minutes=1))
    if found is None:
        return None
    api_key, used_lately = found
    if not hmac.compare_digest(api_key.key_sha256, api_key_hash(raw_key)):
        return None
    if not used_lately:
        # At most one write a minute per key, so authentication does not turn every read into a write.
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    return api_key


# Keys that authenticated in this process lately, by the SHA-256 of their raw value: the key and until when
# (time.monotonic) it may be taken from here. A minute, after which the key is read again (and its last_used_at,
# written at most once a minute, brought up to date).
_recent_keys: dict[str, tuple[ApiKey, float]] = {}
_RECENT_KEY_SECONDS = 60.0
_RECENT_KEYS_LIMIT = 1000


def api_key_authenticate_for_write(raw_key: str) -> tuple[ApiKey, bool] | None:
    """As `api_key_authenticate`, for a write that confirms its key in its own transaction (Actor.unconfirmed_key):
    the key and whether it was read from the database just now. An all-models key that authenticated in this process
    within the last minute is taken from memory, which saves the write a statement; scoped keys are always read."""
    digest = api_key_hash(raw_key)
    remembered = _recent_keys.get(digest)
    if remembered is not None and remembered[1] > time.monotonic():
        return remembered[0], False
    api_key = api_key_authenticate(raw_key)
    if api_key is None:
        _recent_keys.pop(digest, None)
        return None
    if api_key.all_models:
        if len(_recent_keys) >= _RECENT_KEYS_LIMIT:
            _recent_keys.clear()
        _recent_keys[digest] = (api_key, time.monotonic() + _RECENT_KEY_SECONDS)
    return api_key, True


def api_key_confirmed(key: tuple[int, str]) -> bool:
    """Whether a key taken from memory (Actor.unconfirmed_key) is still active and for every model."""
    return _key_confirmed(key)


def api_key_forget(raw_key: str) -> None:
    """Read the key from the database next time (its write found it revoked or scoped since)."""
    _recent_keys.pop(api_key_hash(raw_key), None)


def _active_key_row(prefix: str, *, used_since: datetime) -> tuple[ApiKey, bool] | None:
    """The unrevoked key with this prefix (its id, name, prefix, hash and scope loaded), and whether it was used
    since `used_since`. A plain statement: every API request runs it, and the ORM's compile costs more."""
    quote = connection.ops.quote_name
    columns = ["id", "name", "prefix", "key_sha256", "all_models"]
    # Identifiers come from model metadata and every value is a parameter.
    sql = (
        f"SELECT {', '.join(quote(c) for c in columns)}, "  # noqa: S608
        f"{quote('last_used_at')} IS NOT NULL AND {quote('last_used_at')} >= %s "
        f"FROM {quote(ApiKey._meta.db_table)} WHERE {quote('prefix')} = %s AND {quote('revoked_at')} IS NULL"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [connection.ops.adapt_datetimefield_value(used_since), prefix])
        row = cursor.fetchone()
    if row is None:
        return None
    pk, name, prefix, key_sha256, all_models, used_lately = row
    api_key = ApiKey.from_db(connection.alias, columns, [pk, name, prefix, key_sha256, bool(all_models)])
    return api_key, bool(used_lately)


def api_key_revoke(*, api_key: ApiKey) -> bool:
    """Revoke a key; False when it was already revoked."""
    updated = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    return updated == 1


def binary_outcome_record(
    *, model: str, version: str, prediction: int, actual: int, event_id: str, actor: Actor
) -> Recorded:
    """A binary prediction and its outcome at once (the seed monitor's `POST /feedback`)."""
    name = _default_model_name(model)
    registered = RegisteredModel.objects.filter(name=name).first()
    if registered is not None and not actor.may_write(registered.pk):
        message = f"this API key may not write to model '{name}'"
        raise Forbidden(message, [FieldProblem("model", message)])
    if registered is not None and registered.task_type != TaskType.BINARY:
        message = f"model '{name}' is registered as {registered.task_type}; /feedback counts binary models only"
        raise InvalidInput(f"model: {message}", [FieldProblem("model", message)])
    item = PredictionIn(
        model=name,
        version=version,
        input={},
        prediction=prediction,
        actual=actual,
        event_id=event_id,
        task_type=TaskType.BINARY,
    )
    return prediction_record(item=item, actor=actor, source=IngestSource.SEED_FEEDBACK)
