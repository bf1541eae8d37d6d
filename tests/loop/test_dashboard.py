"""The dashboard pages: who may see them, and what they show from the rollups."""

import json
import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.contrib.staticfiles import finders

from collector.models import RegisteredModel
from reviews.models import ACTIVE_STATUSES, ReviewTask
from tests.conftest import ApiClient
from tests.loop.dashboard_data import seed_dashboard_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewer() -> ApiClient:
    user = User.objects.create_user("rita", password="unused-password", is_staff=True)
    user.groups.add(Group.objects.get(name="Reviewers"))
    client = ApiClient()
    client.force_login(user)
    return client


def chart_data(html: str) -> dict:
    match = re.search(r'<script id="chart-data" type="application/json">(.*?)</script>', html, re.S)
    assert match, html
    return json.loads(match.group(1))


@pytest.mark.parametrize("path", ["/", "/models/churn/"])
def test_the_pages_ask_for_a_staff_login(anonymous: ApiClient, django_user_model, path: str) -> None:
    RegisteredModel.objects.create(name="churn", task_type="binary")
    response = anonymous.get(path)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/?next=")

    outsider = django_user_model.objects.create_user("outsider", password="unused-password")
    anonymous.force_login(outsider)
    assert anonymous.get(path).status_code == 302  # not staff: the admin login again

    bare_staff = django_user_model.objects.create_user("bare", password="unused-password", is_staff=True)
    anonymous.force_login(bare_staff)
    assert anonymous.get(path).status_code == 403  # staff, but may not read the collected data


def test_names_from_clients_reach_the_charts_escaped(api: ApiClient, reviewer: ApiClient) -> None:
    version = '<a href="https://evil.example/">login</a>'
    body = {"model": "churn", "version": version, "input": [0.1], "prediction": 1, "actual": 1, "latency_ms": 3.0}
    assert api.post_json("/api/v1/predictions/", body).status_code == 201

    charts = chart_data(reviewer.get("/models/churn/").content.decode())

    names = {trace["name"] for trace in charts["volume"]["traces"] + charts["quality"]["traces"]}
    assert '&lt;a href="https://evil.example/"&gt;login&lt;/a&gt;' in names
    assert not any("<a" in name for name in names)


def test_the_overview_lists_every_model_with_its_figures(api: ApiClient, reviewer: ApiClient) -> None:
    seed_dashboard_data(api, hours=30, per_hour=8)
    RegisteredModel.objects.create(name="quiet", task_type="regression")

    response = reviewer.get("/")

    assert response.status_code == 200
    html = response.content.decode()
    assert '<a href="/models/churn/">churn</a>' in html and '<a href="/models/quiet/">quiet</a>' in html
    churn = response.context["rows"][0]
    assert churn["predictions"] == 30 * 8 and churn["predictions_24h"] in range(8 * 23, 8 * 25)
    assert churn["champion"].version.startswith("hub-")
    assert churn["open_tasks"] == ReviewTask.objects.filter(status__in=ACTIVE_STATUSES).count() > 1
    assert churn["feedback_7d"].total == 80 and 0 < churn["feedback_7d"].negative < 80
    assert "no outcomes yet" in html and "not checked yet" in html  # the quiet model
    assert "x[0]" in churn["drift"].drifted and "x[1]" not in churn["drift"].drifted


def test_the_model_page_charts_quality_latency_traffic_feedback_and_retrains(
    api: ApiClient, reviewer: ApiClient
) -> None:
    seed_dashboard_data(api)

    response = reviewer.get("/models/churn/?days=7")

    assert response.status_code == 200
    charts = chart_data(response.content.decode())
    assert set(charts) == {"quality", "latency", "volume", "feedback", "drift", "retrains"}
    quality_names = {trace["name"] for trace in charts["quality"]["traces"]}
    assert {"v0 accuracy", "v0 f1"} <= quality_names and len(quality_names) == 8  # two versions, four measures
    assert sum(len(trace["x"]) for trace in charts["volume"]["traces"]) == 72
    assert sum(sum(trace["y"]) for trace in charts["volume"]["traces"]) == 72 * 6
    p50, p95, p99 = (trace["y"] for trace in charts["latency"]["traces"])
    assert all(a <= b <= c for a, b, c in zip(p50, p95, p99, strict=True)) and 5 < sorted(p50)[36] < 60
    negative_rates = charts["feedback"]["traces"][1]["y"]
    assert all(0 <= rate <= 1 for rate in negative_rates) and any(rate > 0 for rate in negative_rates)
    assert len(charts["retrains"]["traces"][0]["y"]) == 1
    html = response.content.decode()
    assert "interaction:billing" in html and "promoted" in html
    drift_bars = dict(zip(charts["drift"]["traces"][0]["x"], charts["drift"]["traces"][0]["y"], strict=True))
    assert drift_bars["x[0]"] > 0.2 > drift_bars["x[1]"]  # the shifted input, and the one that stayed
    assert [row.feature for row in response.context["drift"] if row.drifted][0] == "x[0]"
    assert "Estimated accuracy" in html


def test_a_short_period_shows_less_and_an_unknown_period_falls_back(api: ApiClient, reviewer: ApiClient) -> None:
    seed_dashboard_data(api, hours=72, per_hour=2)

    one_day = chart_data(reviewer.get("/models/churn/?days=1").content.decode())
    fallback = reviewer.get("/models/churn/?days=abc")

    assert sum(len(trace["x"]) for trace in one_day["volume"]["traces"]) in (24, 25)
    assert fallback.status_code == 200 and fallback.context["days"] == 7


def test_long_periods_are_summed_per_day(api: ApiClient, reviewer: ApiClient) -> None:
    seed_dashboard_data(api, hours=72, per_hour=2)

    month = chart_data(reviewer.get("/models/churn/?days=30").content.decode())

    days = {x for trace in month["volume"]["traces"] for x in trace["x"]}
    assert len(days) in (3, 4) and all(x.endswith("T00:00:00+00:00") for x in days)
    assert sum(sum(trace["y"]) for trace in month["volume"]["traces"]) == 144
    assert all(len(trace["x"]) <= 4 for trace in month["quality"]["traces"] + month["latency"]["traces"])


def test_an_unknown_model_is_a_404(reviewer: ApiClient) -> None:
    assert reviewer.get("/models/nope/").status_code == 404


def test_a_model_without_data_says_so_instead_of_drawing_empty_charts(reviewer: ApiClient) -> None:
    RegisteredModel.objects.create(name="fresh", task_type="multiclass")

    response = reviewer.get("/models/fresh/")

    assert response.status_code == 200
    assert chart_data(response.content.decode()) == {}
    assert "No outcomes in this period." in response.content.decode()


def test_plotly_is_served_from_the_installed_package() -> None:
    location = finders.find("vendor/plotly.min.js")
    assert location and Path(location).stat().st_size > 1_000_000
    assert Path(location).read_text(errors="replace")[:400].lower().count("plotly") >= 1
