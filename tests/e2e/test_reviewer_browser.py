"""A reviewer works the queue end to end in headless Chromium, through the real admin and a live server."""

import importlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.utils import timezone
from playwright.sync_api import Locator, Page, expect, sync_playwright

from collector.models import Prediction, RegisteredModel
from reviews.models import Correction, CorrectionStatus, Priority, ReviewEvent, ReviewTask, TaskStatus
from tests.conftest import ApiClient, prediction_body

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

REPO_DIR = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_DIR / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000
expect.set_options(timeout=TIMEOUT_MS)
PASSWORD = "Rev1ew-the-Queue-7xk!"


@pytest.fixture(scope="module")
def chromium_path() -> str:
    path = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is not installed (no /usr/bin/chromium, none on PATH): install it for CI")
        pytest.skip("Chromium is not installed (no /usr/bin/chromium, none on PATH)")
    return path


@contextmanager
def chromium_page(executable: str) -> Iterator[Page]:
    """A fresh page in headless Chromium, closed on the way out.

    Playwright's sync API runs an event loop in this thread, and Django refuses ORM calls while one runs: the
    test sets up its data before the browser starts and checks the database after it closed.
    """
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.set_default_timeout(TIMEOUT_MS)
            context.set_default_navigation_timeout(TIMEOUT_MS)
            yield context.new_page()
        finally:
            browser.close()


@pytest.fixture
def task(api_key) -> ReviewTask:
    """An API client posts a prediction and a thumbs-down on it; the trigger rule opens the task."""
    model = RegisteredModel.objects.create(name="assistant", task_type="binary")
    api = ApiClient(api_key[1])
    response = api.post_json("/api/v1/predictions/", prediction_body(model="assistant", actual=1))
    assert response.status_code == 201, response.content
    response = api.post_json(
        "/api/v1/feedback/",
        {
            "model": "assistant",
            "kind": "thumbs_down",
            "prediction_id": response.json()["id"],
            "interaction_id": "chat-9",
            "comment": "the answer contradicts the plan's terms",
        },
    )
    assert response.status_code == 201, response.content
    opened = ReviewTask.objects.get()
    # An older task of lower priority: the queue lists by priority first, so it comes second.
    older = ReviewTask.objects.create(
        registered_model=model,
        pattern_key="interaction:older",
        priority=Priority.LOW,
        priority_rank=2,
        suggested_action="review and update prompt/instructions",
    )
    ReviewTask.objects.filter(pk=older.pk).update(created_at=timezone.now() - timedelta(days=2))
    return opened


def reviewers_group() -> Group:
    """The group the data migration makes. The flush after an earlier transactional test removes it (and
    serialized_rollback clashes with the content types that flush recreates), so it is made again from the
    migration's own permission list."""
    migration = importlib.import_module("reviews.migrations.0002_reviewers_group")
    group, created = Group.objects.get_or_create(name=migration.REVIEWERS)
    if created:
        for app_label, codenames in migration.PERMISSIONS.items():
            permissions = Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames)
            assert permissions.count() == len(codenames), f"missing permissions in {app_label}"
            group.permissions.add(*permissions)
    return group


@pytest.fixture
def rita() -> User:
    user = User.objects.create_user("rita", password=PASSWORD, is_staff=True)
    user.groups.add(reviewers_group())
    return user


def submit(page: Page, button: Locator) -> None:
    """Click a form's submit button; the admin answers a good POST with a redirect (an error page fails here)."""
    with page.expect_response(lambda response: response.request.method == "POST") as posted:
        button.click()
    response = posted.value
    assert response.status == 302, f"POST {response.url} answered {response.status}: {response.status_text}"
    page.wait_for_load_state()


def run_action(page: Page, label: str) -> None:
    page.locator("select[name=action]").select_option(label=label)
    submit(page, page.get_by_role("button", name="Go"))


def row_of(page: Page, pk: int) -> Locator:
    return page.locator("#result_list tbody tr").filter(has=page.locator(f"input.action-select[value='{pk}']"))


def test_a_reviewer_works_a_task_through_the_admin(
    live_server, chromium_path: str, task: ReviewTask, rita: User
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    prediction_pk = task.trigger_feedback.prediction_id
    with chromium_page(chromium_path) as page:
        correction_pk = work_the_task(page, live_server.url, task.pk, task.trigger_feedback_id, prediction_pk)

    task.refresh_from_db()
    assert (task.status, task.assignee) == (TaskStatus.RESOLVED, rita)
    correction = Correction.objects.get()
    assert (correction.pk, correction.status, correction.prediction_id, correction.author, correction.decided_by) == (
        correction_pk, CorrectionStatus.APPLIED, prediction_pk, rita, rita,
    )  # fmt: skip
    prediction = Prediction.objects.get(pk=prediction_pk)
    assert (prediction.training_label, prediction.actual) == (0, 1)  # the outcome stays; training uses the label
    actions = list(ReviewEvent.objects.filter(task=task).values_list("action", "actor_label"))
    assert actions == [
        ("opened", "system"), ("assigned", "rita"), ("correction proposed", "rita"),
        ("correction applied", "rita"), ("resolved", "rita"),
    ]  # fmt: skip


def work_the_task(page: Page, base: str, task_pk: int, feedback_pk: int, prediction_pk: int) -> int:
    """Rita's session in the browser; returns the id of the correction she proposed."""
    # Log in with the form.
    page.goto(f"{base}/admin/login/")
    page.get_by_label("Username").fill("rita")
    page.get_by_label("Password").fill(PASSWORD)
    submit(page, page.get_by_role("button", name="Log in"))
    expect(page).to_have_url(f"{base}/admin/")
    expect(page.locator("#user-tools")).to_contain_text("Welcome, rita.")

    # The queue: the opened task first; assign it to me.
    page.goto(f"{base}/admin/reviews/reviewtask/")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first.locator("input.action-select")).to_have_value(str(task_pk))
    row_of(page, task_pk).locator("input.action-select").check()
    run_action(page, "Assign to me")
    expect(page.locator("ul.messagelist li.success")).to_have_text("1 task(s) assigned to you.")
    expect(row_of(page, task_pk).locator("td.field-assignee")).to_have_text("rita")
    expect(row_of(page, task_pk).locator("td.field-status")).to_have_text("In progress")
    page.screenshot(path=ARTIFACTS / "reviewer-queue.png", full_page=True)

    # The task page: trigger, related feedback (read-only) and history.
    row_of(page, task_pk).locator("th.field-id a").click()
    expect(page).to_have_url(f"{base}/admin/reviews/reviewtask/{task_pk}/change/")
    expect(page.locator(".field-trigger")).to_contain_text(f"Thumbs down #{feedback_pk}")
    related = page.get_by_role("group", name="Related feedback (read-only)")
    expect(related.locator("td.field-kind")).to_have_text(["Thumbs down"])
    expect(related.locator("td.field-prediction_link")).to_contain_text(f"#{prediction_pk}")
    expect(related.locator("input, select, textarea").filter(visible=True)).to_have_count(0)
    history = page.get_by_role("group", name="History")
    expect(history.locator("td.field-action")).to_have_text(["opened", "assigned"])

    # Propose a label correction in the inline (its "Add another" link is added by the admin's JavaScript).
    page.get_by_role("button", name="Add another Correction").click()
    form = page.locator("#corrections-0")
    form.get_by_label("Kind").select_option("label")
    form.get_by_label("Prediction").fill(str(prediction_pk))
    form.get_by_label("Value").fill("0")
    form.get_by_label("Note").fill("the customer's plan allows it")
    submit(page, page.get_by_role("button", name="Save and continue editing"))
    expect(page.locator("ul.messagelist li.success")).to_contain_text("was changed successfully")
    expect(page.locator("ul.errorlist")).to_have_count(0)
    saved = page.get_by_role("group", name="Corrections").locator(".inline-related.has_original")
    expect(saved).to_have_count(1)
    expect(saved.locator(".field-kind .readonly")).to_have_text("Label (the right output for a prediction)")
    expect(saved.locator(".field-value .readonly")).to_have_text("0")
    expect(saved.locator(".field-status .readonly")).to_have_text("Proposed")
    expect(saved.locator(".field-author .readonly")).to_have_text("rita")
    expect(history.locator("td.field-action")).to_have_text(["opened", "assigned", "correction proposed"])
    page.screenshot(path=ARTIFACTS / "reviewer-task.png", full_page=True)

    # Approve it from the corrections list.
    page.goto(f"{base}/admin/reviews/correction/")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    checkbox = page.locator("#result_list input.action-select")
    correction_pk = int(checkbox.get_attribute("value") or 0)
    checkbox.check()
    run_action(page, "Approve and apply")
    expect(page.locator("ul.messagelist li.success")).to_have_text("1 correction(s) approved and applied.")
    expect(page.locator("ul.messagelist li.warning")).to_have_count(0)
    expect(row_of(page, correction_pk).locator("td.field-status")).to_have_text("Applied")

    # Resolve the task; the status filter finds it.
    page.goto(f"{base}/admin/reviews/reviewtask/")
    row_of(page, task_pk).locator("input.action-select").check()
    run_action(page, "Resolve")
    expect(page.locator("ul.messagelist li.success")).to_have_text("1 task(s) resolved.")
    page.locator("#changelist-filter").get_by_role("link", name="Resolved", exact=True).click()
    expect(page).to_have_url(f"{base}/admin/reviews/reviewtask/?status__exact=resolved")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(row_of(page, task_pk).locator("td.field-status")).to_have_text("Resolved")

    # A reviewer has no business with users or API keys.
    for path in ["/admin/auth/user/", "/admin/collector/apikey/"]:
        response = page.goto(f"{base}{path}")
        assert response is not None and response.status == 403, path
    return correction_pk
