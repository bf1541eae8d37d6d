"""Model instances read by a plain statement, for look-ups on every ingest request.

A `QuerySet` compiles its SQL on each evaluation and `Manager.raw` maps columns to fields on each; for a one-row
look-up both cost several times the query. Here the column list and each column's converters (the same ones the
ORM applies: the backend's for dates and booleans, the field's own for JSON) are worked out once per model and
database vendor, and rows become instances through `Model.from_db`, as the ORM makes them.
"""

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, TypeVar

from django.db import connection
from django.db.models import Model

M = TypeVar("M", bound=Model)
Converter = Callable[[Any, Any, Any], Any]


@cache
def _reader(model: type[Model], vendor: str) -> tuple[str, list[str], list[tuple[Any, list[Converter]]]]:
    fields = model._meta.concrete_fields
    quote = connection.ops.quote_name
    table = model._meta.db_table
    select = f"SELECT {', '.join(quote(field.column) for field in fields)} FROM {quote(table)}"  # noqa: S608
    converters = []
    for field in fields:
        column = field.get_col(table)
        converters.append((column, connection.ops.get_db_converters(column) + field.get_db_converters(connection)))
    return select, [field.attname for field in fields], converters


def rows_where(model: type[M], where: str, params: Sequence[Any]) -> list[M]:
    """Instances of `model` whose rows match `where` (SQL with %s placeholders; column names quoted by the caller)."""
    select, attnames, converters = _reader(model, connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(f"{select} WHERE {where}", params)
        rows = cursor.fetchall()
    loaded = []
    for row in rows:
        values = list(row)
        for index, (column, functions) in enumerate(converters):
            for convert in functions:
                values[index] = convert(values[index], column, connection)
        loaded.append(model.from_db(connection.alias, attnames, values))
    return loaded
