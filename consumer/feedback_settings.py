"""Settings of the feedback loop (part of ``consumer.settings.Settings``).

``labels_topic`` turns the join on: human verdicts ``{"id", "label"}`` read from that topic
are matched to the predictions this process made (:mod:`consumer.feedback`). The
predictions are remembered in memory, at most ``feedback_max_predictions`` of them and
for at most ``feedback_retention_s`` seconds; a verdict for one forgotten counts as
unmatched.
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings

#: The other topic settings of ``Settings`` a labels topic must differ from.
_OTHER_TOPICS = ("input_topic", "output_topic", "dead_letter_topic", "review_topic", "shadow_topic")


class FeedbackSettings(BaseSettings):
    """The labels topic and the bounds of the remembered predictions (module docstring)."""

    labels_topic: str | None = Field(
        default=None,
        min_length=1,
        description='Topic of human verdicts, JSON {"id": ..., "label": ...} keyed like '
        "the input (e.g. from the review queue). If set, they are joined by id to this "
        "process's predictions: live accuracy and confusion counts per model version as "
        "metrics (consumer/feedback.py). Must exist at start-up unless --create-topics.",
    )
    feedback_max_predictions: int = Field(
        default=100_000,
        ge=1,
        le=10_000_000,
        description="With --labels-topic: most predictions remembered for the join (about "
        "250 bytes each); past it the oldest is forgotten first.",
    )
    feedback_retention_s: float = Field(
        default=86_400.0,
        gt=0,
        description="With --labels-topic: a prediction older than this (s) is forgotten; a "
        "verdict for it counts as unmatched.",
    )

    @model_validator(mode="after")
    def _labels_topic_is_its_own(self) -> Self:
        if self.labels_topic is None:
            return self
        for name in _OTHER_TOPICS:
            if getattr(self, name, None) == self.labels_topic:
                raise ValueError(f"labels_topic {self.labels_topic!r} is also the {name}")
        return self
