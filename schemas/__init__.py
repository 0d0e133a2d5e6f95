"""Wire formats (pydantic models) of the input, prediction and dead-letter topics."""

from schemas.messages import (
    SUPPORTED_SCHEMA_VERSIONS,
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
    "SUPPORTED_SCHEMA_VERSIONS",
    "ClassProbability",
    "DeadLetter",
    "EncodedBytes",
    "ErrorCode",
    "Header",
    "InputMessage",
    "Prediction",
    "SourceCoordinates",
]
