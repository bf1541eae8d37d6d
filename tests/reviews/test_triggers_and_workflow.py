import uuid
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from collector.models import Feedback, RegisteredModel
from feedbackhub.errors import Conflict, InvalidInput
from reviews import services
from reviews.models import Correction, Instruction, KnowledgeEntry, ReviewEvent, ReviewTask, TaskStatus
from tests.conftest import ApiClient, prediction_body

pytestmark = pytest.mark.django_db


@pytest.fixture
def model() -> RegisteredModel:
    return RegisteredModel.objects.create(name="assistant", task_type="binary")


def stored_feedback(
    model: RegisteredModel, kind: str, *, interaction: str = "", comment: str = "", **extra
) -> Feedback:
    """Feedback written directly, without running the trigger (to set up history)."""
    return Feedback.objects.create(
        registered_model=model, kind=kind, interaction_id=interaction, comment=comment, event_id=uuid.uuid4().hex,
        created_at=datetime.now(UTC), actor="test", payload_sha256="x", **extra,
    )  # fmt: skip


def post_feedback(api: ApiClient, **body) -> int:
    response = api.post_json("/api/v1/feedback/", {"model": "assistant", **body})
    assert response.status_code == 201, response.content
    return response.json()["id"]


@pytest.mark.parametrize(("earlier_negatives", "opens"), [(2, False), (3, True)])
def test_the_rule_triggers_above_three_negatives_in_ten(api: ApiClient, model, earlier_negatives, opens) -> None:
    for n in range(9):
        stored_feedback(model, "thumbs_down" if n < earlier_negatives else "thumbs_up", interaction="chat-1")

    post_feedback(api, kind="thumbs_down", interaction_id="chat-1")  # 3 of 10 (0.3) or 4 of 10 (0.4)

    assert ReviewTask.objects.exists() is opens


def test_only_the_last_ten_similar_items_count(api: ApiClient, model) -> None:
    for kind in ["thumbs_down"] * 5 + ["thumbs_up"] * 9:
        stored_feedback(model, kind, interaction="chat-1")

    post_feedback(api, kind="thumbs_down", interaction_id="chat-1")  # the window holds 9 up and this one

    assert not ReviewTask.objects.exists()


@pytest.mark.parametrize(("group_size", "priority"), [(5, "medium"), (6, "high")])
def test_priority_is_high_with_more_than_five_related_items(api: ApiClient, model, group_size, priority) -> None:
    for _ in range(group_size - 1):
        stored_feedback(model, "thumbs_down", interaction="chat-1")

    post_feedback(api, kind="thumbs_down", interaction_id="chat-1")

    task = ReviewTask.objects.get()
    assert (task.priority, task.related_feedback.count()) == (priority, group_size)


def test_the_suggested_action_follows_whether_corrections_are_among_the_feedback(api: ApiClient, model) -> None:
    post_feedback(api, kind="thumbs_down", interaction_id="a")
    stored_feedback(model, "thumbs_down", interaction="b")
    post_feedback(api, kind="correction", interaction_id="b", value=0)

    actions = dict(ReviewTask.objects.values_list("pattern_key", "suggested_action"))
    assert actions == {
        "interaction:a": "review and update prompt/instructions",
        "interaction:b": "update knowledge base with corrections",
    }


def test_ratings_of_two_or_less_count_as_negative(api: ApiClient, model) -> None:
    post_feedback(api, kind="rating", value=3, interaction_id="x")
    assert not ReviewTask.objects.exists()

    post_feedback(api, kind="rating", value=2, interaction_id="y")
    assert ReviewTask.objects.count() == 1


def test_more_negative_feedback_on_the_same_pattern_joins_the_open_task(api: ApiClient, model) -> None:
    for _ in range(3):
        post_feedback(api, kind="thumbs_down", interaction_id="chat-1")

    task = ReviewTask.objects.get()
    assert task.related_feedback.count() == 3
    assert [e.action for e in task.events.all()] == ["opened", "feedback added", "feedback added"]

    services.review_task_resolve(task=task, user=User.objects.create(username="r"))
    post_feedback(api, kind="thumbs_down", interaction_id="chat-1")
    assert ReviewTask.objects.filter(status=TaskStatus.OPEN).count() == 1
    assert ReviewTask.objects.count() == 2


def test_feedback_with_similar_text_joins_one_task_and_other_text_opens_another(api: ApiClient, model) -> None:
    post_feedback(
        api, kind="thumbs_down", prediction_event_id="p1", comment="the refund amount was wrong on my invoice"
    )
    post_feedback(api, kind="thumbs_down", prediction_event_id="p2", comment="wrong refund amount shown on the invoice")
    post_feedback(api, kind="thumbs_down", prediction_event_id="p3", comment="password reset link never arrives")

    tasks = list(ReviewTask.objects.order_by("pk"))
    assert len(tasks) == 2
    assert tasks[0].related_feedback.count() == 2
    assert "refund" in tasks[0].trigger_feedback.comment


def test_similarity_reads_the_predictions_input_too(api: ApiClient, model) -> None:
    ids = [
        api.post_json("/api/v1/predictions/", prediction_body(model="assistant", input={"q": q})).json()["id"]
        for q in ["how do I change my billing address", "change billing address please"]
    ]
    for prediction_id in ids:
        post_feedback(api, kind="thumbs_down", prediction_id=prediction_id)

    assert ReviewTask.objects.get().related_feedback.count() == 2


def test_positive_feedback_never_opens_a_task(api: ApiClient, model) -> None:
    post_feedback(api, kind="thumbs_up", interaction_id="a")
    post_feedback(api, kind="comment", comment="ok", interaction_id="a")

    assert not ReviewTask.objects.exists()


@pytest.fixture
def task(api: ApiClient, model) -> ReviewTask:
    prediction_id = api.post_json("/api/v1/predictions/", prediction_body(model="assistant", actual=1)).json()["id"]
    post_feedback(api, kind="thumbs_down", prediction_id=prediction_id, interaction_id="chat-9")
    return ReviewTask.objects.get()


def test_two_reviewers_cannot_both_claim_a_task(task: ReviewTask) -> None:
    alice, bob = User.objects.create(username="alice"), User.objects.create(username="bob")

    assert services.review_task_claim(task=task, user=alice) is True
    assert services.review_task_claim(task=ReviewTask.objects.get(), user=bob) is False

    task.refresh_from_db()
    assert (task.assignee, task.status) == (alice, TaskStatus.IN_PROGRESS)
    assert [(e.actor_label, e.action) for e in ReviewEvent.objects.order_by("id")][-1] == ("alice", "assigned")


def test_a_closed_task_stays_closed(task: ReviewTask) -> None:
    user = User.objects.create(username="alice")
    assert services.review_task_dismiss(task=task, user=user, note="noise") is True
    assert services.review_task_resolve(task=task, user=user) is False
    assert ReviewTask.objects.get().status == TaskStatus.DISMISSED


def test_an_approved_label_correction_becomes_the_training_label_and_keeps_the_outcome(task: ReviewTask) -> None:
    user = User.objects.create(username="alice")
    prediction = task.trigger_feedback.prediction
    correction = services.correction_propose(
        registered_model=task.registered_model, task=task, prediction=prediction, kind="label", value=0, author=user
    )

    services.correction_approve(correction=correction, user=user)

    prediction.refresh_from_db()
    assert (prediction.training_label, prediction.actual) == (0, 1)
    assert Correction.objects.get().status == "applied"
    with pytest.raises(Conflict):
        services.correction_approve(correction=correction, user=user)


def test_a_label_correction_must_fit_the_model(task: ReviewTask) -> None:
    with pytest.raises(InvalidInput, match="binary"):
        services.correction_propose(
            registered_model=task.registered_model, prediction=task.trigger_feedback.prediction, kind="label",
            value="cat", author=None,
        )  # fmt: skip


def test_knowledge_and_behaviour_corrections_make_new_versions(task: ReviewTask, api: ApiClient) -> None:
    user = User.objects.create(username="alice")
    for text in ["Refunds take 5 days.", "Refunds take 3 days."]:
        correction = services.correction_propose(
            registered_model=task.registered_model, kind="knowledge", topic="refunds", value=text, author=user
        )
        services.correction_approve(correction=correction, user=user)
    for text in ["Be brief.", "Be brief and cite the policy."]:
        correction = services.correction_propose(
            registered_model=task.registered_model, kind="behaviour", value=text, author=user
        )
        services.correction_approve(correction=correction, user=user)

    assert list(KnowledgeEntry.objects.values_list("version", "content")) == [
        (2, "Refunds take 3 days."), (1, "Refunds take 5 days."),
    ]  # fmt: skip
    assert api.get("/api/v1/knowledge/", {"model": "assistant"}).json() == [
        {**api.get("/api/v1/knowledge/").json()[0], "topic": "refunds", "version": 2, "content": "Refunds take 3 days."}
    ]
    active = api.get("/api/v1/models/assistant/instructions/active/").json()
    assert (active["version"], active["content"]) == (2, "Be brief and cite the policy.")

    services.instruction_restore(instruction=Instruction.objects.get(version=1), user=user)
    services.knowledge_entry_restore(entry=KnowledgeEntry.objects.get(version=1), user=user)
    assert api.get("/api/v1/models/assistant/instructions/active/").json()["content"] == "Be brief."
    assert api.get("/api/v1/knowledge/").json()[0]["content"] == "Refunds take 5 days."
    assert Instruction.objects.filter(is_active=True).count() == 1


def test_the_review_tasks_api_filters_by_status_and_priority(task: ReviewTask, api: ApiClient) -> None:
    rows = api.get("/api/v1/review-tasks/", {"status": "open", "model": "assistant"}).json()["results"]

    assert [row["id"] for row in rows] == [task.pk]
    assert rows[0]["suggested_action"] == "review and update prompt/instructions"
    assert api.get("/api/v1/review-tasks/", {"priority": "high"}).json()["results"] == []
    assert api.get("/api/v1/models/nope/instructions/active/").status_code == 404


@pytest.fixture
def reviewer() -> Client:
    user = User.objects.create_user("rita", password="unused-password", is_staff=True)
    user.groups.add(Group.objects.get(name="Reviewers"))
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/admin/", 200),
        ("/admin/reviews/reviewtask/", 200),
        ("/admin/reviews/reviewtask/?assigned=me", 200),
        ("/admin/reviews/correction/", 200),
        ("/admin/reviews/correction/add/", 200),
        ("/admin/reviews/knowledgeentry/", 200),
        ("/admin/collector/prediction/", 200),
        ("/admin/collector/feedback/", 200),
        ("/admin/auth/user/", 403),
        ("/admin/auth/group/", 403),
        ("/admin/collector/apikey/", 403),
        ("/admin/collector/apikey/add/", 403),
        ("/admin/django_celery_beat/periodictask/", 403),
        ("/admin/reviews/reviewpolicy/", 403),
    ],
)
def test_reviewers_can_work_tasks_but_not_touch_users_or_keys(reviewer: Client, task, path: str, status: int) -> None:
    assert reviewer.get(path).status_code == status


def test_a_reviewer_sees_the_task_page_with_trigger_related_feedback_and_history(reviewer: Client, task) -> None:
    page = reviewer.get(f"/admin/reviews/reviewtask/{task.pk}/change/").content.decode()

    assert "review and update prompt/instructions" in page
    assert "related feedback (read-only)" in page.lower()
    assert "opened" in page


def test_a_reviewer_works_the_queue_with_the_actions(reviewer: Client, task: ReviewTask) -> None:
    reviewer.post("/admin/reviews/reviewtask/", {"action": "assign_to_me", "_selected_action": [task.pk]})
    task.refresh_from_db()
    assert task.assignee.username == "rita"

    reviewer.post("/admin/reviews/reviewtask/", {"action": "resolve", "_selected_action": [task.pk]})
    assert ReviewTask.objects.get().status == TaskStatus.RESOLVED


def test_the_queue_lists_high_priority_first_then_oldest(api: ApiClient, model, reviewer: Client) -> None:
    post_feedback(api, kind="thumbs_down", interaction_id="first")
    for _ in range(5):
        stored_feedback(model, "thumbs_down", interaction="second")
    post_feedback(api, kind="thumbs_down", interaction_id="second")

    page = reviewer.get("/admin/reviews/reviewtask/").content.decode()

    high, medium = ReviewTask.objects.get(priority="high"), ReviewTask.objects.get(priority="medium")
    assert page.index(f"/admin/reviews/reviewtask/{high.pk}/change/") < page.index(
        f"/admin/reviews/reviewtask/{medium.pk}/change/"
    )


def test_the_insights_api_and_admin_page(task: ReviewTask, api: ApiClient, reviewer: Client) -> None:
    body = api.get("/api/v1/insights/", {"model": "assistant", "days": 7}).json()

    assert (body["model"], body["total_feedback"], body["positive_rate"]) == ("assistant", 1, 0.0)
    assert body["common_issues"][0]["frequency"] == 1
    assert api.get("/api/v1/insights/").json()["total_feedback"] == 1
    assert api.get("/api/v1/insights/", {"days": "0"}).status_code == 400
    assert api.get("/api/v1/insights/", {"model": "nope"}).status_code == 404
    page = reviewer.get("/admin/reviews/reviewtask/insights/", {"model": "assistant"})
    assert page.status_code == 200
    assert "Common issues" in page.content.decode()
    assert 'href="/admin/reviews/reviewtask/insights/"' in reviewer.get("/admin/reviews/reviewtask/").content.decode()


def test_a_scoped_key_must_name_its_model_for_insights(task: ReviewTask) -> None:
    from collector.services import api_key_create

    _, raw = api_key_create(name="scoped", model_names=["assistant"])

    assert ApiClient(raw).get("/api/v1/insights/").status_code == 400
    assert ApiClient(raw).get("/api/v1/insights/", {"model": "assistant"}).status_code == 200
