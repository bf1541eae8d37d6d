"""The look-ups every prediction write runs inside its transaction (the prediction stored under the event, an outcome
that arrived before it, feedback waiting for it) go by index, however much else is stored."""

import pytest
from django.db import connection

from collector.services import _events_known_sql

pytestmark = pytest.mark.django_db


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite names the index each part of a statement uses")
def test_each_part_of_the_event_look_up_searches_its_index() -> None:
    sql = _events_known_sql(connection.vendor, 2).replace("%s", "?")

    with connection.cursor() as cursor:
        plan = "\n".join(row[-1] for row in cursor.execute(f"EXPLAIN QUERY PLAN {sql}", [1, "a", "b"] * 3).fetchall())

    assert "SEARCH collector_prediction USING INDEX sqlite_autoindex_collector_prediction_1" in plan, plan
    assert "SEARCH collector_pendingoutcome USING COVERING INDEX sqlite_autoindex_collector_pendingoutcome_1" in plan
    # The partial index of unlinked feedback, not every feedback row of the model.
    assert "SEARCH collector_feedback USING INDEX feedback_unlinked" in plan, plan
