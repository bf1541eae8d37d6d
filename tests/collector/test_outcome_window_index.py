"""The last-N-outcomes window that every /metrics scrape reads comes from an index alone (no row fetches)."""

import pytest
from django.db import connection

from collector.models import Prediction

pytestmark = pytest.mark.django_db


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite says plainly when an index covers a query")
def test_the_outcome_window_is_read_from_a_covering_index() -> None:
    window = (
        Prediction.objects.filter(model_version_id=1, actual_recorded_at__isnull=False)
        .order_by("-actual_recorded_at")
        .values_list("is_correct", "error")[:1000]
    )

    plan = window.explain()

    assert "COVERING INDEX prediction_outcome_window" in plan, plan
