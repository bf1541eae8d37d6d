"""Which recent feedback is "similar" to a new item: its interaction group when it has an interaction_id, else
the nearest neighbours of its text (comment and the prediction's input) by TF-IDF cosine, among a bounded
number of recent items."""

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from collector.models import Feedback
from reviews.models import ReviewPolicy


@dataclass(frozen=True)
class Similar:
    items: list[Feedback]  # the new item first
    pattern_key: str


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


MAX_TEXT = 2000  # characters of each item compared; a huge input must not make every evaluation slow


def text_for(comment: str, prediction_input: Any) -> str:
    """The words compared: the comment, then the string values of the prediction's input."""
    return " ".join(part for part in [comment, *_strings(prediction_input)] if part)[:MAX_TEXT]


def feedback_text(feedback: Feedback) -> str:
    return text_for(feedback.comment, feedback.prediction.input if feedback.prediction is not None else None)


def _interaction_key(interaction_id: str) -> str:
    if len(interaction_id) <= 200:
        return f"interaction:{interaction_id}"
    return f"interaction:sha1:{hashlib.sha1(interaction_id.encode(), usedforsecurity=False).hexdigest()}"


def similar_feedback(*, feedback: Feedback, policy: ReviewPolicy) -> Similar:
    same_model = Feedback.objects.filter(registered_model_id=feedback.registered_model_id)
    if feedback.interaction_id:
        group = list(
            same_model.filter(interaction_id=feedback.interaction_id, pk__lte=feedback.pk).order_by("-pk")[
                : policy.window
            ]
        )
        return Similar(group, _interaction_key(feedback.interaction_id))
    alone = Similar([feedback], f"feedback:{feedback.pk}")
    text = feedback_text(feedback)
    if not text.strip():
        return alone
    # Plain tuples: building model instances for hundreds of candidates would cost more than the TF-IDF itself.
    candidates = list(
        same_model.filter(pk__lt=feedback.pk)
        .order_by("-pk")
        .values_list("pk", "comment", "prediction__input")[: policy.candidate_limit]
    )
    if not candidates:
        return alone
    try:
        matrix = TfidfVectorizer(sublinear_tf=True, dtype=np.float32).fit_transform(
            [text, *(text_for(comment, given) for _, comment, given in candidates)]
        )
    except ValueError:  # nothing but punctuation
        return alone
    # TF-IDF rows are L2-normalised, so a dot product is the cosine similarity.
    scores = (matrix[1:] @ matrix[0].T).toarray().ravel()
    nearest = [candidates[i][0] for i in np.argsort(-scores, kind="stable") if scores[i] > policy.similarity_threshold]
    if not nearest:
        return alone
    chosen = nearest[: policy.window - 1]
    neighbours = Feedback.objects.in_bulk(chosen)
    return Similar([feedback, *(neighbours[pk] for pk in chosen)], f"similar:{feedback.pk}")
