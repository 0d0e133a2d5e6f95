"""Wire formats (pydantic models) of the input, prediction and dead-letter topics."""

from schemas.messages import (
    ClassProbability,
    DeadLetter,
    EncodedBytes,
    ErrorCode,
    Header,
    InputMessage,
    Prediction,
    SourceCoordinates,
)

__all__ = [
    "ClassProbability",
    "DeadLetter",
    "EncodedBytes",
    "ErrorCode",
    "Header",
    "InputMessage",
    "Prediction",
    "SourceCoordinates",
]
