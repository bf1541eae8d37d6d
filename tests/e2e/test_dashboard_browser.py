"""The dashboard in headless Chromium: a reviewer logs in and sees every chart drawn with data."""

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from tests.conftest import ApiClient
from tests.e2e.test_reviewer_browser import ARTIFACTS, chromium_page, chromium_path, reviewers_group  # noqa: F401
from tests.loop.dashboard_data import seed_dashboard_data

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
PASSWORD = "Look-at-the-Charts-5q!"
CHARTS = ("quality", "latency", "volume", "feedback", "drift", "retrains")


@pytest.fixture
def seeded(api_key) -> None:
    seed_dashboard_data(ApiClient(api_key[1]))
    User.objects.create_user("rita", password=PASSWORD, is_staff=True).groups.add(reviewers_group())


def log_in(page: Page, base: str) -> None:
    page.goto(f"{base}/")  # the dashboard asks for a login first
    page.get_by_label("Username").fill("rita")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{base}/")


def test_the_dashboard_draws_every_chart_with_data(live_server, chromium_path: str, seeded: None) -> None:  # noqa: F811
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium_page(chromium_path) as page:
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        log_in(page, live_server.url)
        expect(page.locator("table.dashboard-models tbody tr")).to_have_count(1)
        page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)

        page.get_by_role("link", name="churn").click()
        for chart in CHARTS:
            plot = page.locator(f"#chart-{chart}.js-plotly-plot")
            expect(plot).to_be_visible()
            # Each chart's traces hold drawn points: markers of lines, or bars.
            drawn = plot.locator(".scatterlayer .trace .points path, .barlayer .trace .point path")
            expect(drawn.first).to_be_attached()
            assert drawn.count() > 0, chart
        assert page.locator("#chart-volume .barlayer .point path").count() == 72
        expect(page.locator("#chart-quality .legendtext")).to_have_count(8)
        page.screenshot(path=str(ARTIFACTS / "dashboard-model.png"), full_page=True)

        page.get_by_role("button", name="1 day").click()
        expect(page).to_have_url(f"{live_server.url}/models/churn/?days=1")
        expect(page.locator("#chart-volume.js-plotly-plot")).to_be_visible()
        assert page.locator("#chart-volume .barlayer .point path").count() in (24, 25)
    assert errors == []
