import itertools
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from collector.models import Feedback, ModelVersion, Prediction, RegisteredModel
from loop.prioritize import label_queue

pytestmark = pytest.mark.django_db

MakePrediction = Callable[..., Prediction]
_sequence = itertools.count()


@pytest.fixture
def churn() -> RegisteredModel:
    return RegisteredModel.objects.create(name="churn", task_type="binary")


def _prediction_maker(model: RegisteredModel) -> MakePrediction:
    version = ModelVersion.objects.create(registered_model=model, version="v1")
    start = timezone.now() - timedelta(days=1)

    def make(**fields: Any) -> Prediction:
        number = next(_sequence)
        values = {
            "model_version": version,
            "prediction": 1,
            "predicted_label": "1",
            "confidence": 0.99,
            "attributes": {},
            **fields,
        }
        return Prediction.objects.create(
            registered_model=model,
            event_id=f"evt-{number}",
            created_at=start + timedelta(seconds=number),
            input={"tenure": number},
            payload_sha256="x",
            **values,
        )

    return make


@pytest.fixture
def make_prediction(churn: RegisteredModel) -> MakePrediction:
    return _prediction_maker(churn)


def give_feedback(prediction: Prediction, kind: str, value: Any = None) -> Feedback:
    return Feedback.objects.create(
        registered_model_id=prediction.registered_model_id,
        prediction=prediction,
        kind=kind,
        value=value,
        event_id=f"fb-{next(_sequence)}",
        created_at=timezone.now(),
        actor="t",
        payload_sha256="x",
    )


def queued_ids(model: RegisteredModel, **options: Any) -> list[int]:
    return [item.prediction_id for item in label_queue(registered_model=model, **options)]


def test_predictions_with_an_outcome_or_a_reviewer_label_never_appear(
    churn: RegisteredModel, make_prediction: MakePrediction
) -> None:
    unlabelled = make_prediction(confidence=0.99)
    with_outcome = make_prediction(confidence=0.5, actual=0)
    with_training_label = make_prediction(confidence=0.5, training_label=0)
    give_feedback(with_outcome, "thumbs_down")
    give_feedback(with_training_label, "correction", 0)

    assert queued_ids(churn) == [unlabelled.pk]


def test_another_models_predictions_never_appear(churn: RegisteredModel, make_prediction: MakePrediction) -> None:
    other = RegisteredModel.objects.create(name="fraud", task_type="binary")
    _prediction_maker(other)(confidence=0.5)
    mine = make_prediction()

    assert queued_ids(churn) == [mine.pk]


def test_a_model_without_versions_has_an_empty_queue(churn: RegisteredModel) -> None:
    assert label_queue(registered_model=churn) == []


def test_a_thumbs_down_outranks_a_confident_prediction(churn: RegisteredModel, make_prediction: MakePrediction) -> None:
    disliked = make_prediction(confidence=0.99)
    confident = make_prediction(confidence=0.99)  # newer, so only the feedback can put `disliked` first
    give_feedback(disliked, "thumbs_down")

    first, second = label_queue(registered_model=churn)

    assert (first.prediction_id, second.prediction_id) == (disliked.pk, confident.pk)
    assert (first.disagreement, second.disagreement) == (1.0, 0.0)


def test_an_uncertain_binary_prediction_outranks_a_confident_one(
    churn: RegisteredModel, make_prediction: MakePrediction
) -> None:
    uncertain = make_prediction(confidence=0.51)
    confident = make_prediction(confidence=0.99)

    first, second = label_queue(registered_model=churn)

    assert (first.prediction_id, second.prediction_id) == (uncertain.pk, confident.pk)
    assert first.uncertainty == pytest.approx(0.98)
    assert second.uncertainty == pytest.approx(0.02)


def test_binary_uncertainty_is_twice_the_distance_from_certainty_clipped_to_one(
    churn: RegisteredModel, make_prediction: MakePrediction
) -> None:
    for confidence in (1.0, 0.75, 0.5, 0.3):
        make_prediction(confidence=confidence)

    uncertainties = sorted(item.uncertainty for item in label_queue(registered_model=churn))

    assert uncertainties == pytest.approx([0.0, 0.5, 1.0, 1.0])


def test_other_tasks_take_one_minus_the_confidence() -> None:
    sentiment = RegisteredModel.objects.create(name="sentiment", task_type="multiclass")
    _prediction_maker(sentiment)(prediction="pos", predicted_label="pos", confidence=0.8)

    (item,) = label_queue(registered_model=sentiment)

    assert item.uncertainty == pytest.approx(0.2)


def test_multiclass_uncertainty_comes_from_the_probabilities_when_present() -> None:
    sentiment = RegisteredModel.objects.create(name="sentiment", task_type="multiclass")
    make = _prediction_maker(sentiment)
    # Both claim confidence 0.99; only the probabilities tell them apart.
    torn = make(confidence=0.99, attributes={"probabilities": {"pos": 0.34, "neg": 0.33, "neutral": 0.33}})
    sure = make(confidence=0.99, attributes={"probabilities": {"pos": 0.98, "neg": 0.01, "neutral": 0.01}})
    uniform = make(confidence=0.99, attributes={"probabilities": {"pos": 0.25, "neg": 0.25, "a": 0.25, "b": 0.25}})

    items = {item.prediction_id: item for item in label_queue(registered_model=sentiment)}

    assert items[uniform.pk].uncertainty == pytest.approx(1.0)
    assert items[torn.pk].uncertainty == pytest.approx(0.99)
    assert items[sure.pk].uncertainty == pytest.approx(0.03)
    assert queued_ids(sentiment) == [uniform.pk, torn.pk, sure.pk]
    assert items[torn.pk].reasons == ["uncertain: top probability 0.34 over 3 classes"]


@pytest.mark.parametrize(
    "probabilities",
    [{"pos": 1.0}, {"pos": "high", "neg": 0.1}, {"pos": 1.5, "neg": -0.5}, {"pos": True, "neg": False}, [0.5, 0.5]],
)
def test_unusable_probabilities_fall_back_to_the_confidence(
    churn: RegisteredModel, make_prediction: MakePrediction, probabilities: Any
) -> None:
    make_prediction(confidence=0.9, attributes={"probabilities": probabilities, "region": "eu"})

    (item,) = label_queue(registered_model=churn)

    assert item.uncertainty == pytest.approx(0.2)
    assert item.reasons == ["confident: confidence 0.90"]


def test_without_confidence_or_probabilities_the_uncertainty_is_one_half(
    churn: RegisteredModel, make_prediction: MakePrediction
) -> None:
    make_prediction(confidence=None)

    (item,) = label_queue(registered_model=churn)

    assert (item.uncertainty, item.reasons) == (0.5, ["confidence unknown"])


@pytest.mark.parametrize(
    ("feedback", "disagreement"),
    [
        ([("thumbs_down", None)], 1.0),
        ([("correction", 0)], 1.0),
        ([("rating", 1)], 1.0),
        ([("rating", 2)], 1.0),
        ([("rating", 3)], 0.5),
        ([("comment", None)], 0.5),
        ([("comment", None), ("thumbs_up", None)], 0.0),
        ([("comment", None), ("rating", 5)], 0.0),
        ([("rating", 4)], 0.0),
        ([("thumbs_up", None)], 0.0),
        ([("thumbs_up", None), ("thumbs_down", None)], 1.0),
        ([], 0.0),
    ],
)
def test_disagreement_follows_what_people_said(
    churn: RegisteredModel, make_prediction: MakePrediction, feedback: list[tuple[str, Any]], disagreement: float
) -> None:
    prediction = make_prediction(confidence=0.99)
    for kind, value in feedback:
        give_feedback(prediction, kind, value)

    (item,) = label_queue(registered_model=churn)

    assert item.disagreement == disagreement
    assert item.score == pytest.approx(0.5 * item.uncertainty + 0.4 * disagreement)


def test_reasons_say_in_words_why_a_prediction_is_queued(
    churn: RegisteredModel, make_prediction: MakePrediction
) -> None:
    prediction = make_prediction(confidence=0.52)
    give_feedback(prediction, "thumbs_down")
    give_feedback(prediction, "rating", 2)
    give_feedback(prediction, "comment")
    neutral = make_prediction(confidence=None)
    give_feedback(neutral, "rating", 3)
    twice = make_prediction(confidence=0.95)
    give_feedback(twice, "thumbs_down")
    give_feedback(twice, "thumbs_down")

    reasons = {item.prediction_id: item.reasons for item in label_queue(registered_model=churn)}

    assert reasons == {
        prediction.pk: ["uncertain: confidence 0.52", "thumbs down from a user", "low rating 2/5"],
        neutral.pk: ["confidence unknown", "neutral rating 3/5"],
        twice.pk: ["confident: confidence 0.95", "thumbs down 2 times"],
    }


def test_drift_scores_add_a_tenth_of_the_drift(churn: RegisteredModel, make_prediction: MakePrediction) -> None:
    drifted = make_prediction(confidence=0.99)
    make_prediction(confidence=0.99)

    first, second = label_queue(registered_model=churn, drift_scores={drifted.pk: 0.8})

    assert first.prediction_id == drifted.pk
    assert (first.drift, second.drift) == (0.8, 0.0)
    assert first.score == pytest.approx(0.5 * 0.02 + 0.1 * 0.8)
    assert "drift: 0.80" in first.reasons


def test_the_limit_keeps_the_best_and_breaks_ties_newest_first(
    churn: RegisteredModel, make_prediction: MakePrediction
) -> None:
    same = [make_prediction(confidence=0.9) for _ in range(6)]
    best = make_prediction(confidence=0.6)

    assert queued_ids(churn, limit=3) == [best.pk, same[-1].pk, same[-2].pk]


def test_only_the_most_recent_candidates_are_scored(churn: RegisteredModel, make_prediction: MakePrediction) -> None:
    old_and_disputed = [make_prediction(confidence=0.5) for _ in range(2)]
    for prediction in old_and_disputed:
        give_feedback(prediction, "thumbs_down")
    recent = [make_prediction(confidence=0.99) for _ in range(3)]

    assert sorted(queued_ids(churn, candidates=3)) == sorted(prediction.pk for prediction in recent)


def test_the_queue_costs_a_fixed_number_of_queries(
    churn: RegisteredModel, make_prediction: MakePrediction, django_assert_max_num_queries: Any
) -> None:
    for number in range(200):
        prediction = make_prediction(confidence=0.5 + number / 400)
        if number % 3 == 0:
            give_feedback(prediction, "rating", number % 5 + 1)
        if number % 7 == 0:
            give_feedback(prediction, "comment")

    with django_assert_max_num_queries(4):  # versions, candidates, feedback, drifted references
        queue = label_queue(registered_model=churn, limit=200)

    assert len(queue) == 200


def test_inputs_from_the_region_that_drifted_come_first(churn: RegisteredModel) -> None:
    from django.db.models import F

    from collector.drift import drift_check_all, drift_reference_record, drift_windows_update

    version = ModelVersion.objects.create(registered_model=churn, version="v1")
    drift_reference_record(model_version=version, inputs=[{"tenure": n % 100, "plan": "basic"} for n in range(500)])
    now = timezone.now()
    rows = [
        Prediction(
            registered_model=churn, model_version=version, event_id=f"d{n}", created_at=now - timedelta(minutes=n + 1),
            input={"tenure": 250 + n % 50 if n % 2 else n % 100, "plan": "basic"}, prediction=1, predicted_label="1",
            confidence=0.9, attributes={}, payload_sha256="x",
        )
        for n in range(400)
    ]  # fmt: skip
    Prediction.objects.bulk_create(rows)
    Prediction.objects.filter(registered_model=churn).update(received_at=F("created_at"))  # past the counting lag
    drift_windows_update()
    assert drift_check_all(force=True)[0].drifted

    queue = label_queue(registered_model=churn, limit=400)

    tenure = {row.pk: row.input["tenure"] for row in rows}
    drift = {item.prediction_id: item.drift for item in queue}
    # The shifted values fall past the reference's top decile, a bin that grew from 10% to 55%: lift 1 - 0.1/0.55.
    assert all(drift[pk] == pytest.approx(1 - 0.1 / 0.55, abs=0.02) for pk in tenure if tenure[pk] >= 90)
    assert all(drift[pk] == 0.0 for pk in tenure if tenure[pk] < 90)  # bins that shrank
    assert all(tenure[item.prediction_id] >= 90 for item in queue[:200])  # same uncertainty: drift decides


def test_every_version_of_the_model_is_queued(churn: RegisteredModel, make_prediction: MakePrediction) -> None:
    old_version = make_prediction()
    new_version = ModelVersion.objects.create(registered_model=churn, version="v2")
    newer = make_prediction(model_version=new_version)

    assert queued_ids(churn) == [newer.pk, old_version.pk]
