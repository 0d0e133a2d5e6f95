"""Request and response bodies of the API routes other than ``/v1/classify``.

``/v1/classify`` takes and answers the stream's own formats (:class:`schemas.InputMessage`,
:class:`schemas.Classification`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from schemas import InputMessage


class ModelInfo(BaseModel):
    """What ``GET /v1/model`` answers."""

    version: str
    created_at: datetime
    labels: list[str]
    preprocessing: dict[str, Any] = Field(description="Text and sequence settings.")
    network: dict[str, Any]
    held_out: dict[str, float | int | None] = Field(
        description="Accuracy, macro-F1 and test size from the bundle's metrics.json."
    )


class ExplainRequest(InputMessage):
    """An input message plus what to explain (``POST /v1/explain``)."""

    label: str | None = Field(default=None, description="Class to explain; default: predicted.")
    num_features: int = Field(default=10, ge=1, le=50, description="Words to report.")
    num_samples: int = Field(
        default=500, ge=50, description="LIME variants (capped by explain_max_samples)."
    )


class WordWeight(BaseModel):
    """One word and how much its presence raised (positive) the class's probability."""

    word: str
    weight: float


class ExplanationOut(BaseModel):
    """What ``POST /v1/explain`` answers."""

    id: str
    label: str
    probability: float
    weights: list[WordWeight] = Field(description="Highest weight first.")
    model_version: str
    num_samples: int
    seconds: float
