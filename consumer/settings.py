"""Consumer settings from environment variables (``CLASSIFIER_*``) and CLI flags.

CLI flags win over environment variables, which win over defaults. Every value is
validated at start-up; a bad one stops the process with a message naming the setting.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings

from consumer.parsing import (
    DEFAULT_MAX_JSON_DEPTH,
    DEFAULT_MAX_VALUE_BYTES,
    ORJSON_MAX_DEPTH,
    RecordLimits,
)
from consumer.records import DEFAULT_DEAD_LETTER_MAX_VALUE_BYTES
from model.bundle import require_existing
from schemas import DEFAULT_MAX_TEXT_BYTES
from schemas.settings import command_settings

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]

#: How much longer than ``flush_timeout_s`` a batch or a silent loop may take before the
#: health check reports the process stuck (s).
STUCK_MARGIN_S = 60.0

#: librdkafka properties the service sets itself; overriding them would break its guarantees.
PROTECTED_KAFKA_PROPERTIES = frozenset(
    {
        "enable.auto.commit",
        "enable.auto.offset.store",
        "enable.idempotence",
        "transactional.id",
        "isolation.level",
        "group.id",
        "bootstrap.servers",
        "partition.assignment.strategy",
    }
)


def _default_bootstrap() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


class Settings(BaseSettings):
    """All settings of ``python -m consumer``; env var = ``CLASSIFIER_`` + upper-case name."""

    model_config = command_settings("python -m consumer", "CLASSIFIER_")

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
    max_batches_in_flight: int = Field(
        default=2,
        ge=1,
        le=2,
        description="2: the next micro-batch is decoded, tokenised and run through the model "
        "while the previous one is produced and committed; 1: one batch at a time.",
    )
    top_k: int = Field(default=3, ge=1, description="Classes listed in each prediction's top_k.")
    flush_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="Longest wait (s) for the broker to acknowledge a batch's output (rides "
        "out short broker outages); past it the process exits with code 1, uncommitted.",
    )
    shutdown_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="On SIGTERM/SIGINT, longest wait (s) for the in-flight batch to finish "
        "and commit before the process gives up on it (uncommitted) and exits with code 1.",
    )
    pause_after_ms: int = Field(
        default=1000,
        ge=0,
        description="A batch running longer than this (ms) pauses the assigned partitions "
        "and keeps polling, so max.poll.interval.ms is never exceeded.",
    )
    exactly_once: bool = Field(
        default=False,
        description="Consume-transform-produce in Kafka transactions: a read_committed "
        "reader sees exactly one prediction or dead letter per input.",
    )
    transactional_id: str | None = Field(
        default=None,
        description="With --exactly-once: this instance's transactional.id, stable across "
        "restarts and unique per instance (default: '<group-id>-<client-id>').",
    )
    max_value_bytes: int = Field(
        default=DEFAULT_MAX_VALUE_BYTES,
        ge=1,
        description="Largest record value (bytes) read at all; larger ones are dead-lettered "
        "as value_too_large before any parsing. At least max_text_bytes.",
    )
    max_json_depth: int = Field(
        default=DEFAULT_MAX_JSON_DEPTH,
        ge=1,
        le=ORJSON_MAX_DEPTH,
        description="Deepest JSON nesting (levels; the input object is 1) accepted; deeper "
        "values are dead-lettered as nesting_too_deep before parsing.",
    )
    max_text_bytes: int = Field(
        default=DEFAULT_MAX_TEXT_BYTES,
        ge=1,
        description="Largest title + text (UTF-8 bytes) classified; larger messages are "
        "dead-lettered as text_too_large.",
    )
    dead_letter_max_value_bytes: int = Field(
        default=DEFAULT_DEAD_LETTER_MAX_VALUE_BYTES,
        ge=0,
        description="Largest original value copied into a dead-letter record; larger ones "
        "are identified by size, sha256 and source coordinates instead.",
    )
    low_confidence_threshold: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Predictions with confidence below this are flagged low_confidence.",
    )
    review_topic: str | None = Field(
        default=None,
        description="If set, low-confidence predictions are also published here "
        "(for routing uncertain tickets to a person).",
    )
    reload_interval_s: float = Field(
        default=5.0,
        ge=0,
        description="How often (s) to check the model directory's 'current' pointer for a "
        "new bundle version; 0 disables hot reload.",
    )
    metrics_port: int = Field(
        default=9464,
        ge=0,
        le=65535,
        description="Port of the HTTP server for /metrics (Prometheus), /healthz and /readyz; "
        "0 disables it.",
    )
    metrics_host: str = Field(default="0.0.0.0", description="Address the HTTP server binds.")
    stats_interval_ms: int = Field(
        default=5000,
        ge=0,
        description="librdkafka statistics interval (ms), source of the consumer-lag metric; "
        "0 disables it.",
    )
    kafka: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra librdkafka properties for all clients, as JSON, e.g. "
        '\'{"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN", '
        '"sasl.username": "u", "sasl.password": "p", "fetch.max.bytes": 10485760}\'.',
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

    @field_validator("kafka")
    @classmethod
    def _no_protected_properties(cls, value: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(PROTECTED_KAFKA_PROPERTIES & value.keys())
        if clash:
            raise ValueError(
                f"{clash} are set by the service itself; use the dedicated settings "
                "(--bootstrap-servers, --group-id, --exactly-once, ...)"
            )
        return value

    @model_validator(mode="after")
    def _topics_distinct(self) -> Self:
        outputs = [self.output_topic, self.dead_letter_topic, *filter(None, [self.review_topic])]
        if self.input_topic in outputs:
            raise ValueError(f"input topic {self.input_topic!r} is also an output topic")
        return self

    @model_validator(mode="after")
    def _value_cap_fits_text_cap(self) -> Self:
        if self.max_value_bytes < self.max_text_bytes:
            raise ValueError(
                f"max_value_bytes ({self.max_value_bytes}) is below max_text_bytes "
                f"({self.max_text_bytes}): no text at the text limit could ever be read"
            )
        return self

    @property
    def record_limits(self) -> RecordLimits:
        """The per-record caps (value size, JSON depth, text size) as one value."""
        return RecordLimits(self.max_value_bytes, self.max_json_depth, self.max_text_bytes)

    @property
    def stuck_after_s(self) -> float:
        """When ``/healthz`` reports the loop stuck (s): ``flush_timeout_s`` + 60 s.

        A batch may legitimately wait ``flush_timeout_s`` for the broker's acks; the margin
        covers its compute and commit.
        """
        return self.flush_timeout_s + STUCK_MARGIN_S

    @property
    def effective_transactional_id(self) -> str:
        """``transactional_id`` or its default ``<group_id>-<client_id>``."""
        return self.transactional_id or f"{self.group_id}-{self.client_id}"

    @field_validator("bundle")
    @classmethod
    def _bundle_exists(cls, value: Path) -> Path:
        return require_existing(value)
