"""Wire formats (pydantic models) of the input, prediction and dead-letter topics."""

from schemas.errors import error_lines
from schemas.messages import (
    DEFAULT_MAX_TEXT_BYTES,
    SUPPORTED_SCHEMA_VERSIONS,
    Classification,
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
    "DEFAULT_MAX_TEXT_BYTES",
    "SUPPORTED_SCHEMA_VERSIONS",
    "ClassProbability",
    "Classification",
    "DeadLetter",
    "EncodedBytes",
    "ErrorCode",
    "Header",
    "InputMessage",
    "Prediction",
    "SourceCoordinates",
    "error_lines",
]
