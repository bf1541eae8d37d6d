import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from collector.services import api_key_create
from tests.collector.test_quality_counters import SEED_RUN_1, SEED_RUN_2

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
LINE = re.compile(r"Current Metrics: Accuracy=([\d.]+), Precision=([\d.]+), Recall=([\d.]+), F1=([\d.]+)")


def test_it_prints_the_seed_simulations_figures_over_http(live_server) -> None:
    _, key = api_key_create(name="simulator")
    out = StringIO()

    call_command("simulate_feedback", "--url", live_server.url, "--key", key, "--delay", "0", stdout=out)

    printed = [tuple(float(v) for v in match) for match in LINE.findall(out.getvalue())]
    expected = [figures for _, _, figures in SEED_RUN_1 + SEED_RUN_2]
    assert len(printed) == 40
    for got, want in zip(printed, expected, strict=True):
        if want is not None:
            assert got == pytest.approx(want, abs=1e-9)
    assert "=== Scenario 4: Recovery ===" in out.getvalue()


def test_it_says_what_to_do_when_the_hub_is_not_there() -> None:
    err = StringIO()

    with pytest.raises(CommandError, match="sends failed"):
        call_command(
            "simulate_feedback", "--url", "http://127.0.0.1:9", "--key", "k", "--delay", "0", "--runs", "1", stderr=err
        )

    assert "is the hub running at http://127.0.0.1:9?" in err.getvalue()
