import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from collector.models import Feedback, FeedbackKind, ModelVersion, Prediction, RegisteredModel
from collector.payloads import fingerprint
from reviews.insights import CLUSTERED_NEGATIVES_MAX, NO_TEXT_ISSUE, insights_for
from reviews.models import Correction, CorrectionStatus, ReviewPolicy

pytestmark = pytest.mark.django_db
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
EVENT_IDS = itertools.count(1)

THEMES = {
    "refund": [
        "I asked for a refund and never got my money back",
        "Refund still not processed after two weeks",
        "Where is my refund? The money was never returned",
        "the assistant refused my refund request",
        "refund amount was wrong, I want my money back",
        "No refund after cancelling the order",
        "Refund policy answer was useless",
        "It said a refund takes ninety days, that is not right",
    ],
    "delivery": [
        "My delivery is late again",
        "Package delivery arrived three days late",
        "Late delivery and the bot said it was on time",
        "delivery was late and the courier never called",
        "why is my delivery so late",
        "the delivery estimate was wrong, parcel came late",
        "Still waiting, delivery late by a week",
        "late delivery not acknowledged at all",
    ],
    "password": [
        "Password reset link does not work",
        "I cannot reset my password",
        "reset password email never arrived",
        "The password reset instructions were wrong",
        "password reset code expired immediately",
        "Asked how to reset my password, got nonsense",
        "It keeps asking me to reset my password again",
        "Password reset page crashes",
    ],
}


@pytest.fixture
def model() -> RegisteredModel:
    return RegisteredModel.objects.create(name="support-bot", task_type="binary")


def make_prediction(model: RegisteredModel, *, input: dict[str, Any]) -> Prediction:
    version, _ = ModelVersion.objects.get_or_create(registered_model=model, version="v1")
    return Prediction.objects.create(
        registered_model=model,
        model_version=version,
        event_id=f"p-{next(EVENT_IDS)}",
        created_at=NOW - timedelta(days=1),
        input=input,
        prediction=1,
        payload_sha256="x",
    )


def feedback_row(
    model: RegisteredModel,
    *,
    kind: str,
    value: Any = None,
    comment: str = "",
    prediction: Prediction | None = None,
    interaction_id: str = "",
    age: timedelta = timedelta(hours=1),
) -> Feedback:
    return Feedback(
        registered_model=model,
        prediction=prediction,
        input_sha256=fingerprint(prediction.input) if prediction is not None else "",
        interaction_id=interaction_id,
        kind=kind,
        value=value,
        comment=comment,
        event_id=f"f-{next(EVENT_IDS)}",
        created_at=NOW - age,
        actor="test",
        payload_sha256="x",
    )


def make_feedback(model: RegisteredModel, **fields: Any) -> Feedback:
    row = feedback_row(model, **fields)
    row.save()
    return row


def test_negative_feedback_is_clustered_into_its_known_themes(model: RegisteredModel) -> None:
    asked = make_prediction(model, input={"channel": "chat"})
    ids_by_theme = {
        theme: {
            make_feedback(model, kind=FeedbackKind.THUMBS_DOWN, comment=comment, prediction=asked).pk
            for comment in comments
        }
        for theme, comments in THEMES.items()
    }
    make_feedback(model, kind=FeedbackKind.THUMBS_UP, comment="refund was quick, thanks")

    issues = insights_for(registered_model=model, now=NOW).common_issues

    assert len(issues) == 3
    assert sorted(map(frozenset, (issue.feedback_ids for issue in issues)), key=min) == sorted(
        map(frozenset, ids_by_theme.values()), key=min
    )
    for issue in issues:
        theme = next(theme for theme, ids in ids_by_theme.items() if set(issue.feedback_ids) == ids)
        assert issue.frequency == 8
        assert theme in issue.issue.lower()
        assert 1 <= len(issue.sample_comments) <= 3
        assert set(issue.sample_comments) <= set(THEMES[theme])


def test_feedback_without_words_forms_one_no_text_issue(model: RegisteredModel) -> None:
    for comment in ["", "!!!", "?"]:
        make_feedback(model, kind=FeedbackKind.THUMBS_DOWN, comment=comment)
    for comment in THEMES["refund"][:4]:
        make_feedback(model, kind=FeedbackKind.THUMBS_DOWN, comment=comment)

    issues = insights_for(registered_model=model, now=NOW).common_issues

    no_text = [issue for issue in issues if issue.issue == NO_TEXT_ISSUE]
    assert len(no_text) == 1
    assert (no_text[0].frequency, sorted(no_text[0].sample_comments)) == (3, ["!!!", "?"])
    assert sum(issue.frequency for issue in issues) == 7


def test_rates_and_totals_count_only_the_feedback_of_the_period(model: RegisteredModel) -> None:
    for kind, value in [
        (FeedbackKind.THUMBS_UP, None),
        (FeedbackKind.RATING, 5),
        (FeedbackKind.RATING, 4),
        (FeedbackKind.RATING, 3),
        (FeedbackKind.RATING, 2),
        (FeedbackKind.RATING, 1),
        (FeedbackKind.THUMBS_DOWN, None),
        (FeedbackKind.CORRECTION, 0),
    ]:
        make_feedback(model, kind=kind, value=value)
    make_feedback(model, kind=FeedbackKind.COMMENT, comment="no opinion, just a remark")
    make_feedback(model, kind=FeedbackKind.THUMBS_DOWN, age=timedelta(days=31))
    make_feedback(model, kind=FeedbackKind.RATING, value=1, age=timedelta(days=40))

    insights = insights_for(registered_model=model, days=30, now=NOW)

    assert insights.total_feedback == 9
    assert insights.positive_rate == pytest.approx(3 / 8)
    assert insights.negative_rate == pytest.approx(4 / 8)
    assert insights.as_dict()["period"] == {"days": 30, "since": NOW - timedelta(days=30), "until": NOW}
    assert insights.as_dict()["model"] == "support-bot"


def test_the_models_review_policy_decides_what_counts_as_negative(model: RegisteredModel) -> None:
    ReviewPolicy.objects.create(registered_model=model, negative_rating_max=3, negative_kinds=["thumbs_down"])
    for kind, value in [(FeedbackKind.RATING, 3), (FeedbackKind.CORRECTION, 1), (FeedbackKind.THUMBS_UP, None)]:
        make_feedback(model, kind=kind, value=value, comment="the shipping answer was wrong")

    insights = insights_for(registered_model=model, now=NOW)

    assert insights.negative_rate == pytest.approx(1 / 3)
    assert [issue.frequency for issue in insights.common_issues] == [1]


def test_a_model_without_a_policy_is_judged_by_the_default_without_writing_one(model: RegisteredModel) -> None:
    make_feedback(model, kind=FeedbackKind.RATING, value=2)

    assert insights_for(registered_model=model, now=NOW).negative_rate == 1.0
    assert not ReviewPolicy.objects.exists()


@pytest.mark.parametrize("scope", ["one model", "all models"])
def test_an_empty_period_gives_zeros_not_an_error(model: RegisteredModel, scope: str) -> None:
    make_feedback(model, kind=FeedbackKind.THUMBS_DOWN, age=timedelta(days=90))

    insights = insights_for(registered_model=model if scope == "one model" else None, days=7, now=NOW).as_dict()

    assert insights == {
        "model": "support-bot" if scope == "one model" else None,
        "period": {"days": 7, "since": NOW - timedelta(days=7), "until": NOW},
        "total_feedback": 0,
        "positive_rate": 0.0,
        "negative_rate": 0.0,
        "common_issues": [],
        "improvement_opportunities": {
            "interactions": [],
            "inputs": [],
            "pending_corrections": {"count": 0, "oldest": []},
        },
        "user_corrections": [],
    }


def test_all_models_are_summed_when_no_model_is_named(model: RegisteredModel) -> None:
    other = RegisteredModel.objects.create(name="other-bot", task_type="binary")
    make_feedback(model, kind=FeedbackKind.THUMBS_UP)
    make_feedback(other, kind=FeedbackKind.THUMBS_DOWN, comment="wrong answer")

    insights = insights_for(registered_model=None, now=NOW)

    assert (insights.model, insights.total_feedback, insights.positive_rate) == (None, 2, 0.5)


def test_improvement_opportunities_rank_the_worst_interaction_first_and_skip_small_groups(
    model: RegisteredModel,
) -> None:
    for interaction_id, kinds in {
        "chat-mostly-fine": ["thumbs_up", "thumbs_up", "thumbs_up", "thumbs_down"],
        "chat-worst": ["thumbs_down", "thumbs_down", "thumbs_down", "thumbs_up"],
        "chat-too-small": ["thumbs_down", "thumbs_down"],
        "chat-all-fine": ["thumbs_up", "thumbs_up", "thumbs_up"],
    }.items():
        for kind in kinds:
            make_feedback(model, kind=kind, interaction_id=interaction_id)
    spots = insights_for(registered_model=model, now=NOW).improvement_opportunities.interactions

    assert [(spot.key, spot.count, spot.negative_rate) for spot in spots] == [
        ("chat-worst", 4, 0.75),
        ("chat-mostly-fine", 4, 0.25),
    ]


def test_improvement_opportunities_rank_inputs_by_their_negative_rate(model: RegisteredModel) -> None:
    hard = make_prediction(model, input={"question": "how do I reset my password", "lang": "en"})
    easy = make_prediction(model, input={"question": "opening hours"})
    for kind in ["thumbs_down", "thumbs_down", "thumbs_up"]:
        make_feedback(model, kind=kind, prediction=hard)
    for kind in ["thumbs_down", "thumbs_up", "thumbs_up", "thumbs_up"]:
        make_feedback(model, kind=kind, prediction=easy)

    spots = insights_for(registered_model=model, now=NOW).improvement_opportunities.inputs

    assert [(spot.key, spot.count, spot.negative_rate) for spot in spots] == [
        ('{"lang": "en", "question": "how do I reset my password"}', 3, pytest.approx(2 / 3)),
        ('{"question": "opening hours"}', 4, 0.25),
    ]


def test_corrections_awaiting_approval_are_listed_oldest_first(model: RegisteredModel) -> None:
    prediction = make_prediction(model, input={"question": "refund"})
    first = Correction.objects.create(registered_model=model, kind="label", value=1, prediction=prediction)
    second = Correction.objects.create(registered_model=model, kind="label", value=0, prediction=prediction)
    Correction.objects.create(
        registered_model=model, kind="label", value=1, prediction=prediction, status=CorrectionStatus.APPLIED
    )

    pending = insights_for(registered_model=model, now=NOW).as_dict()["improvement_opportunities"]
    pending = pending["pending_corrections"]

    assert pending["count"] == 2
    assert [(item["id"], item["kind"], item["model"]) for item in pending["oldest"]] == [
        (first.pk, "label", "support-bot"),
        (second.pk, "label", "support-bot"),
    ]


def test_user_corrections_list_correction_feedback_newest_first(model: RegisteredModel) -> None:
    prediction = make_prediction(model, input={"question": "refund"})
    older = make_feedback(
        model, kind=FeedbackKind.CORRECTION, value=0, comment="not spam", age=timedelta(days=2), prediction=prediction
    )
    newer = make_feedback(model, kind=FeedbackKind.CORRECTION, value={"label": "late"}, interaction_id="chat-1")
    make_feedback(model, kind=FeedbackKind.CORRECTION, value=1, age=timedelta(days=60))
    make_feedback(model, kind=FeedbackKind.THUMBS_DOWN)

    corrections = insights_for(registered_model=model, now=NOW).as_dict()["user_corrections"]

    assert corrections == [
        {
            "id": newer.pk,
            "prediction_id": None,
            "interaction_id": "chat-1",
            "value": {"label": "late"},
            "comment": "",
            "created_at": NOW - timedelta(hours=1),
        },
        {
            "id": older.pk,
            "prediction_id": prediction.pk,
            "interaction_id": "",
            "value": 0,
            "comment": "not spam",
            "created_at": NOW - timedelta(days=2),
        },
    ]


def test_clustering_takes_only_the_most_recent_negatives_and_stays_fast(
    model: RegisteredModel, django_assert_max_num_queries: Any
) -> None:
    comments = [comment for comments in THEMES.values() for comment in comments]
    Feedback.objects.bulk_create(
        feedback_row(
            model,
            kind=FeedbackKind.THUMBS_DOWN,
            comment=f"{comments[n % len(comments)]} (case {n})",
            interaction_id=f"chat-{n % 50}",
            age=timedelta(minutes=n + 1),
        )
        for n in range(3_000)
    )
    oldest_ids = set(Feedback.objects.order_by("created_at").values_list("pk", flat=True)[:1_000])

    started = time.perf_counter()
    with django_assert_max_num_queries(10):
        insights = insights_for(registered_model=model, now=NOW)
    elapsed = time.perf_counter() - started

    assert insights.total_feedback == 3_000
    assert sum(issue.frequency for issue in insights.common_issues) == CLUSTERED_NEGATIVES_MAX
    assert not oldest_ids & {pk for issue in insights.common_issues for pk in issue.feedback_ids}
    assert elapsed < 5
