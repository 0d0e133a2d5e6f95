"""HTTP API settings from environment variables (``CLASSIFIER_API_*``) and CLI flags.

Same conventions as the consumer's settings: flags win over the environment, which wins over
the defaults; every value is validated at start-up and a bad one stops the process with a
message naming the setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator

from model.bundle import require_existing
from model.drift.settings import DriftSettings
from schemas import DEFAULT_MAX_TEXT_BYTES
from schemas.settings import command_settings

#: Header carrying the API key when one is configured.
API_KEY_HEADER = "X-API-Key"


class ApiSettings(DriftSettings):
    """All settings of ``python -m api``; env var = ``CLASSIFIER_API_`` + upper-case name."""

    model_config = command_settings("python -m api", "CLASSIFIER_API_")

    bundle: Path = Field(
        description="Model directory written by training.fit (its 'current' version is "
        "served and hot-reloaded) or one bundle version directory."
    )
    host: str = Field(default="127.0.0.1", description="Address the HTTP server binds.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port of the HTTP server.")
    max_batch_size: int = Field(
        default=64,
        ge=1,
        le=4096,
        description="Most texts merged from concurrent requests into one model call "
        "(1 turns batching off).",
    )
    max_wait_ms: float = Field(
        default=0.0,
        ge=0,
        le=1000,
        description="Longest time (ms) the first request of a batch waits for others; 0 "
        "(default, as Triton's dynamic batcher): run as soon as the model is free, with "
        "every request that queued while it was busy.",
    )
    max_texts_per_request: int = Field(
        default=64, ge=1, le=10_000, description="Most texts in one /v1/classify request."
    )
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Largest request body (bytes); larger is 413."
    )
    max_text_bytes: int = Field(
        default=DEFAULT_MAX_TEXT_BYTES,
        ge=1,
        description="Largest title + text (UTF-8 bytes) of one input; larger is 413.",
    )
    top_k: int = Field(default=3, ge=1, description="Classes listed in each answer's top_k.")
    explain_max_samples: int = Field(
        default=1000,
        ge=50,
        le=20_000,
        description="Most LIME variants one /v1/explain request may ask for.",
    )
    explain_timeout_s: float = Field(
        default=15.0,
        gt=0,
        description="Longest wait (s) for an explanation (they run one at a time); past it 503.",
    )
    low_confidence_threshold: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Answers below this are low_confidence."
    )
    reload_interval_s: float = Field(
        default=5.0,
        ge=0,
        description="How often (s) to check the model directory for a new version; 0 disables.",
    )
    api_key: SecretStr | None = Field(
        default=None,
        description=f"If set, every /v1 request must carry it in the {API_KEY_HEADER} header "
        "(/healthz, /readyz and /metrics stay open).",
    )
    api_key_file: Path | None = Field(
        default=None, description="Read the API key from this file instead (e.g. a secret mount)."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS (none by default)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Log level."
    )

    @field_validator("bundle")
    @classmethod
    def _bundle_exists(cls, value: Path) -> Path:
        return require_existing(value)

    @model_validator(mode="after")
    def _one_key_source(self) -> Self:
        if self.api_key is not None and self.api_key_file is not None:
            raise ValueError("set api_key or api_key_file, not both")
        if self.api_key_file is not None and not self.api_key_file.is_file():
            raise ValueError(f"api_key_file {self.api_key_file} is not a readable file")
        return self

    def resolved_api_key(self) -> str | None:
        """The API key from ``api_key`` or ``api_key_file`` (stripped), or ``None``.

        Raises:
            ValueError: the key file is empty.
        """
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self.api_key_file is None:
            return None
        key = self.api_key_file.read_text(encoding="utf-8").strip()
        if not key:
            raise ValueError(f"api_key_file {self.api_key_file} is empty")
        return key
