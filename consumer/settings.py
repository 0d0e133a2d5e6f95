"""Consumer settings from environment variables (``CLASSIFIER_*``) and CLI flags.

CLI flags win over environment variables, which win over defaults. Every value is
validated at start-up; a bad one stops the process with a message naming the setting.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


def _default_bootstrap() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


class Settings(BaseSettings):
    """All settings of ``python -m consumer``; env var = ``CLASSIFIER_`` + upper-case name."""

    model_config = SettingsConfigDict(
        env_prefix="CLASSIFIER_",
        cli_kebab_case=True,
        cli_prog_name="python -m consumer",
        cli_implicit_flags=True,
        extra="forbid",
    )

    bundle: Path = Field(
        description="Model directory written by training.fit (its 'current' version is "
        "served) or one bundle version directory."
    )
    bootstrap_servers: str = Field(
        default_factory=_default_bootstrap,
        min_length=1,
        description="Kafka bootstrap servers, host:port[,host:port]. "
        "Falls back to $KAFKA_BOOTSTRAP_SERVERS, then 127.0.0.1:9092.",
    )
    input_topic: str = Field(default="articles", min_length=1, description="Topic to classify.")
    output_topic: str = Field(default="predictions", min_length=1, description="Predictions topic.")
    dead_letter_topic: str = Field(
        default="articles.dlq", min_length=1, description="Topic for messages that fail."
    )
    group_id: str = Field(default="text-classifier", min_length=1, description="Consumer group.")
    client_id: str = Field(default="text-classifier", description="Kafka client.id.")
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        default="earliest", description="Where a new consumer group starts reading."
    )
    max_batch_size: int = Field(
        default=256, ge=1, le=100_000, description="Most messages in one micro-batch."
    )
    max_wait_ms: int = Field(
        default=50,
        ge=0,
        le=60_000,
        description="Longest time (ms) to wait for a micro-batch to fill before running it.",
    )
    top_k: int = Field(default=3, ge=1, description="Classes listed in each prediction's top_k.")
    flush_timeout_s: float = Field(
        default=30.0, gt=0, description="Longest wait (s) for the broker to ack a batch's output."
    )
    create_topics: bool = Field(
        default=False,
        description="Create missing input/output/dead-letter topics at start-up "
        "(otherwise the consumer refuses to start against missing topics).",
    )
    topic_partitions: int = Field(default=3, ge=1, description="Partitions of created topics.")
    topic_replication_factor: int = Field(
        default=1, ge=1, description="Replication factor of created topics."
    )
    log_level: LogLevel = Field(default="INFO", description="Log level of the JSON logs.")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("bundle")
    @classmethod
    def _bundle_exists(cls, value: Path) -> Path:
        if not value.exists():
            raise ValueError(
                f"{value} does not exist; train a model first: "
                f"python -m training.fit --dataset bbc --output {value}"
            )
        return value
