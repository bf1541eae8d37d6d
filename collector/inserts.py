"""`bulk_create` for the ingest path: the same rows and ids, without compiling the INSERT for every batch.

Django builds the statement and prepares every value through the field's methods, row by row; for a batch of
1,000 predictions that costs several times the insert itself. Here the statement is built once per model and
batch size from the model's metadata, and each column gets one adapter chosen from its field (the same
`connection.ops` adaptation Django applies), with the field's own `get_db_prep_save` for any value the adapter
does not expect.

On PostgreSQL, more than a few rows go as one array a column (`INSERT ... SELECT * FROM UNNEST(...)`), as Django's
bulk_create sends them.

Ids: on PostgreSQL, `RETURNING id` as Django's bulk_create does. On SQLite, `executemany` and then the range
ending at `last_insert_rowid()`: inside the write transaction nobody else inserts (SQLite has one writer), and
an AUTOINCREMENT key (what Django creates on SQLite) gives each inserted row the next rowid, so the n rows have
the n consecutive ids ending there.
"""

from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import BooleanField, CharField, DateTimeField, Field, FloatField, JSONField, Model
from django.db.models.base import ModelState
from django.db.models.fields.related import ForeignKey
from django.db.models.signals import post_init, pre_init

M = TypeVar("M", bound=Model)
_POSTGRES_CHUNK = 1000
# Above this many rows an insert sends one array a column (`_unnest`) on PostgreSQL. psycopg dumps a list by finding
# each element's type, which costs the web process more than one placeholder a value for a few rows (a single
# prediction's group): 450 against 300 µs of CPU for 2 rows, the same for 8, 1.1 against 1.3 ms for 16, 3.8
# against 9.3 ms for 100.
_UNNEST_ABOVE = 8
_PLAIN_TYPES: dict[type[Field], tuple[type, ...]] = {
    CharField: (str,),
    FloatField: (float,),
    BooleanField: (bool,),
    ForeignKey: (int,),
}


@cache
def _defaults(model: type[Model]) -> tuple[dict[str, Any], list[tuple[str, Field]], frozenset[str]]:
    """The model's defaults that are the same value every time (a field without a default, or with a constant one,
    as Django itself shares it), the fields whose default is called for each row, and every attribute name."""
    constant: dict[str, Any] = {}
    called: list[tuple[str, Field]] = []
    for field in model._meta.concrete_fields:
        if field.has_default() and callable(field.default):
            called.append((field.attname, field))
        else:
            constant[field.attname] = field.get_default()
    return constant, called, frozenset(field.attname for field in model._meta.concrete_fields)


def row_maker(model: type[M]) -> Callable[..., M]:
    """A function that makes what `model(**values)` makes, for attribute names (`registered_model_id`, not
    `registered_model`), without Model.__init__'s per-field descriptor work, which a batch of a thousand rows
    feels. Models with init signal receivers get the plain constructor; whether there are any is asked once, not
    for each row (Django's look-up of a signal's receivers reads a weak-reference dictionary)."""
    if pre_init.has_listeners(model) or post_init.has_listeners(model):
        return model
    constant, called, attnames = _defaults(model)

    def make(**values: Any) -> M:
        if not values.keys() <= attnames:
            raise TypeError(f"{model.__name__} has no field {', '.join(values.keys() - attnames)}")
        row = model.__new__(model)
        state = row.__dict__
        state["_state"] = ModelState()
        state.update(constant)
        for attname, field in called:
            if attname not in values:
                state[attname] = field.get_default()
        state.update(values)
        return row

    return make


Adapter = Callable[[list, BaseDatabaseWrapper], list]


def _column_adapter(field: Field) -> Adapter:
    """A function from a column of attribute values (and the connection) to the parameters Django would send."""
    prep_save = field.get_db_prep_save
    if isinstance(field, JSONField):
        adapt_json = connection.ops.adapt_json_value
        encoder = field.encoder
        return lambda values, db: [None if value is None else adapt_json(value, encoder) for value in values]
    if isinstance(field, DateTimeField):
        return lambda values, db: _datetime_column(field, values, db)
    for kind, types in _PLAIN_TYPES.items():
        if type(field) is kind:
            return lambda values, db: (
                values
                if all(value is None or type(value) in types for value in values)
                else [prep_save(value, db) for value in values]
            )
    return lambda values, db: [prep_save(value, db) for value in values]


def _datetime_column(field: Field, values: list, db: BaseDatabaseWrapper) -> list:
    # Each distinct moment once: a batch's rows mostly share their timestamps, and adapting one (on SQLite, to
    # UTC and then to text) is the dearest value of a row. Keyed with the zone too, so equal moments given in
    # different zones each keep their own adaptation.
    adapt = db.ops.adapt_datetimefield_value
    seen: dict[tuple, Any] = {}
    adapted = []
    for value in values:
        if value is not None and not value.tzinfo:
            return [field.get_db_prep_save(value, db) for value in values]
        key = (value, value.tzinfo) if value is not None else (None, None)
        if key not in seen:
            seen[key] = None if value is None else adapt(value)
        adapted.append(seen[key])
    return adapted


@cache
def _plan(model: type[Model], vendor: str) -> tuple[list[Field], list[Adapter], str]:
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    # Identifiers come from model metadata and every value is a parameter.
    insert = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) "  # noqa: S608
    return fields, [_column_adapter(field) for field in fields], insert


@cache
def _unnest(model: type[Model], vendor: str) -> str | None:
    """PostgreSQL: what follows the column list to insert several rows from one array a column, as Django's
    bulk_create sends them: one parameter a column instead of one a value, and one statement text for any number of
    rows (so psycopg keeps its parsed form and prepares it, and the server plans it once). None where a column's
    type is not a plain one, as Django decides."""
    fields, _, _ = _plan(model, vendor)
    targets = [field.target_field if field.is_relation else field for field in fields]
    if any(
        hasattr(field, "get_placeholder") or target.get_internal_type() not in connection.data_types
        for field, target in zip(fields, targets, strict=True)
    ):
        return None
    # Without a type's length (varchar, not varchar(255)), as Django does: the array cast must not cut a value.
    types = [field.db_type(connection).split("(")[0] for field in fields]
    return "SELECT * FROM UNNEST(" + ", ".join(f"(%s)::{db_type}[]" for db_type in types) + ")"  # noqa: S608


@cache
def _values(columns: int, rows: int) -> str:
    row = "(" + ", ".join(["%s"] * columns) + ")"
    return "VALUES " + ", ".join([row] * rows)


def adapted_column(model: type[Model], attname: str, values: list) -> list:
    """The parameters `insert_rows` sends for these values of one column: made beforehand (outside the write
    transaction) and passed to it as `adapted`."""
    db = connections[DEFAULT_DB_ALIAS]
    fields, adapters, _ = _plan(model, db.vendor)
    return next(adapt(values, db) for field, adapt in zip(fields, adapters, strict=True) if field.attname == attname)


def insert_rows(rows: Sequence[Model], *, adapted: Mapping[str, list] | None = None) -> None:
    """Insert unsaved instances of one model in the current transaction and set their primary keys. `adapted`
    holds, by attribute name, columns already made by `adapted_column` (one value a row, in order); they are sent
    as they are, and must hold what the rows' own values would give."""
    if not rows:
        return
    db = connections[DEFAULT_DB_ALIAS]
    if not db.in_atomic_block:
        raise RuntimeError("insert_rows runs inside transaction.atomic(): ids are read back from the transaction")
    with db.cursor() as cursor:
        if db.vendor == "postgresql":
            returned: list[int] = []
            for start in range(0, len(rows), _POSTGRES_CHUNK):
                chunk = rows[start : start + _POSTGRES_CHUNK]
                chunk_adapted = {
                    name: column[start : start + _POSTGRES_CHUNK] for name, column in (adapted or {}).items()
                }
                cursor.execute(*_postgres_insert(chunk, chunk_adapted, db))
                returned += [pk for (pk,) in cursor.fetchall()]
            ids: Sequence[int] = returned
        else:
            fields, insert, columns = _insert_columns(rows, adapted, db)
            params = list(zip(*columns, strict=True))
            if len(params) == 1 and db.features.can_return_columns_from_insert:  # SQLite 3.35+
                # A single event's id comes back with its insert: one statement.
                cursor.execute(insert + _values(len(fields), 1) + _returning(type(rows[0]), db), params[0])
                ids = [cursor.fetchone()[0]]
            else:
                cursor.executemany(insert + _values(len(fields), 1), params)
                cursor.execute("SELECT last_insert_rowid()")
                last = cursor.fetchone()[0]
                ids = range(last - len(rows) + 1, last + 1)
    _set_ids(rows, ids, db)


def send_insert(rows: Sequence[Model], *, adapted: Mapping[str, list] | None = None) -> Callable[[], None]:
    """PostgreSQL: send the INSERT of `rows` (at most 1,000, one model) with `RETURNING id`, and return the function
    that sets their primary keys from its answer. In a psycopg pipeline the answer arrives with the pipeline's
    next sync, so the ids are read afterwards. `adapted` as for `insert_rows`."""
    db = connections[DEFAULT_DB_ALIAS]
    if not rows or len(rows) > _POSTGRES_CHUNK or db.vendor != "postgresql":
        raise ValueError(f"send_insert takes 1 to {_POSTGRES_CHUNK} rows, on PostgreSQL")
    cursor = db.cursor()
    cursor.execute(*_postgres_insert(rows, adapted, db))

    def set_ids() -> None:
        with cursor:
            _set_ids(rows, [pk for (pk,) in cursor.fetchall()], db)

    return set_ids


def _postgres_insert(
    rows: Sequence[Model], adapted: Mapping[str, list] | None, db: BaseDatabaseWrapper
) -> tuple[str, list]:
    """The INSERT of `rows` (at most 1,000) with `RETURNING id`, and its parameters: several rows as arrays
    (`_unnest`) where their columns allow, else one placeholder a value."""
    fields, insert, columns = _insert_columns(rows, adapted, db)
    returning = _returning(type(rows[0]), db)
    unnest = _unnest(type(rows[0]), db.vendor) if len(rows) > _UNNEST_ABOVE else None
    if unnest is not None:
        return insert + unnest + returning, [list(column) for column in columns]
    return insert + _values(len(fields), len(rows)) + returning, [
        value for row in zip(*columns, strict=True) for value in row
    ]


def _insert_columns(
    rows: Sequence[Model], adapted: Mapping[str, list] | None, db: BaseDatabaseWrapper
) -> tuple[list[Field], str, list[list]]:
    """The inserted fields, the statement up to its values, and each field's column of parameters."""
    fields, adapters, insert = _plan(type(rows[0]), db.vendor)
    for field in fields:
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            # One moment for the rows inserted together (the field's pre_save would take one per row).
            moment = field.pre_save(rows[0], add=True)
            for row in rows[1:]:
                setattr(row, field.attname, moment)
    states = [row.__dict__ for row in rows]
    adapted = adapted or {}
    columns = [
        adapted[field.attname] if field.attname in adapted else adapt([state[field.attname] for state in states], db)
        for field, adapt in zip(fields, adapters, strict=True)
    ]
    return fields, insert, columns


def _returning(model: type[Model], db: BaseDatabaseWrapper) -> str:
    return f" RETURNING {db.ops.quote_name(model._meta.pk.column)}"


def _set_ids(rows: Sequence[Model], ids: Sequence[int], db: BaseDatabaseWrapper) -> None:
    pk_name = type(rows[0])._meta.pk.attname
    for row, pk in zip(rows, ids, strict=True):
        setattr(row, pk_name, pk)
        row._state.adding = False
        row._state.db = db.alias
