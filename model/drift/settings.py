"""The drift settings the consumer and the API share (a pydantic-settings mixin)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings


class DriftSettings(BaseSettings):
    """Window, threshold and alert delay of the drift signals (:mod:`model.drift`)."""

    drift_window_documents: int = Field(
        default=1000,
        ge=0,
        description="Most recent documents the drift window holds (0 turns the text-health "
        "and drift metrics off).",
    )
    drift_min_documents: int = Field(
        default=200,
        ge=1,
        description="Documents the window needs before drift scores are computed.",
    )
    drift_psi_threshold: float = Field(
        default=0.25,
        gt=0,
        description="Population stability index above which a quantity counts as drifted "
        "(0.25: 'significant shift', Siddiqi 2006).",
    )
    drift_alert_after_s: float = Field(
        default=300.0,
        ge=0,
        description="How long (s) a score must stay above the threshold before drift_alert "
        "fires (like a Prometheus rule's for:).",
    )

    @model_validator(mode="after")
    def _min_fits_window(self) -> Self:
        if self.drift_window_documents and self.drift_min_documents > self.drift_window_documents:
            raise ValueError("drift_min_documents must not exceed drift_window_documents")
        return self
