"""Consumer settings from environment variables (``CLASSIFIER_*``) and CLI flags.

CLI flags win over environment variables, which win over defaults. Every value is
validated at start-up; a bad one stops the process with a message naming the setting.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator

from consumer.feedback_settings import FeedbackSettings
from consumer.format_settings import WireFormatSettings
from consumer.parsing import (
    DEFAULT_MAX_JSON_DEPTH,
    DEFAULT_MAX_VALUE_BYTES,
    ORJSON_MAX_DEPTH,
    RecordLimits,
)
from consumer.records import DEFAULT_DEAD_LETTER_MAX_VALUE_BYTES
from model.bundle import require_existing
from model.drift.settings import DriftSettings
from schemas import DEFAULT_MAX_TEXT_BYTES
from schemas.settings import command_settings

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]

#: How much longer than ``flush_timeout_s`` a batch or a silent loop may take before the
#: health check reports the process stuck (s).
STUCK_MARGIN_S = 60.0

#: Most worker processes ``--processes`` may start on one host.
MAX_PROCESSES = 256

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
        "group.instance.id",
    }
)


def _default_bootstrap() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


class Settings(WireFormatSettings, FeedbackSettings, DriftSettings):
    """All settings of ``python -m consumer``; env var = ``CLASSIFIER_`` + upper-case name.

    The input/output formats and the Schema Registry client are
    :class:`~consumer.format_settings.WireFormatSettings`; the feedback loop's are
    :class:`~consumer.feedback_settings.FeedbackSettings`; the drift signals' are
    :class:`~model.drift.settings.DriftSettings` (shared with the API).
    """

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
        default=0,
        ge=0,
        le=60_000,
        description="Longest time (ms) to wait for a micro-batch to fill before running it. "
        "0: no fill wait: a batch is whatever arrived while the previous one ran (batches "
        "grow with the load).",
    )
    max_batches_in_flight: int = Field(
        default=2,
        ge=1,
        le=2,
        description="2: the next micro-batch is decoded, tokenised and run through the model "
        "while the previous one is produced and committed; 1: one batch at a time.",
    )
    commit_interval_ms: int = Field(
        default=1000,
        ge=0,
        le=60_000,
        description="At-least-once: least time (ms) between two offset commits; the offsets "
        "of the batches in between wait and are committed together (and at once when the "
        "stream goes idle, in a rebalance and at shutdown). A crash repeats at most this much "
        "output, never loses any. 0: commit after every batch.",
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
    shadow_bundle: Path | None = Field(
        default=None,
        description="A candidate model (model directory or version) evaluated on the live "
        "micro-batches off the delivery path: agreement with the serving model, overall and "
        "per label, and its confidence, as metrics (consumer/shadow.py). Loaded once.",
    )
    shadow_topic: str | None = Field(
        default=None,
        min_length=1,
        description="With --shadow-bundle: also publish the candidate's predictions here "
        "(same key; never part of a transaction).",
    )
    shadow_queue_batches: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Committed micro-batches the shadow may be behind; more are skipped "
        "(counted), never waited for.",
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
        '\'{"fetch.max.bytes": 10485760, "ssl.endpoint.identification.algorithm": "none"}\'; '
        "credentials have their own settings (kafka_sasl_*), sasl.password is refused here.",
    )

    # -- secured clusters: SASL credentials and TLS (issue 13) ----------------------------
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] | None = (
        Field(
            default=None,
            description="librdkafka security.protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or "
            "SASL_SSL (SASL over TLS). Unset: librdkafka's default, PLAINTEXT.",
        )
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None,
        description="SASL mechanism authenticating with a user name and password (needs a "
        "SASL_* security protocol, a user name and a password or password file).",
    )
    kafka_sasl_username: str | None = Field(
        default=None, min_length=1, description="SASL user name."
    )
    kafka_sasl_password: SecretStr | None = Field(
        default=None,
        description="SASL password, kept secret (never logged or printed). Prefer the "
        "environment variable or the password file to the flag, which other local users "
        "can read in the process list.",
    )
    kafka_sasl_password_file: Path | None = Field(
        default=None,
        description="File holding the SASL password, e.g. a mounted Kubernetes secret; read "
        "once at start-up (one trailing newline ignored). Instead of kafka_sasl_password.",
    )
    kafka_ssl_ca_location: Path | None = Field(
        default=None,
        description="CA certificate(s), PEM file or directory, that verify the brokers' TLS "
        "certificates (SSL, SASL_SSL). Unset: the system's CA store.",
    )
    _sasl_password_from_file: SecretStr | None = PrivateAttr(default=None)

    @field_validator("kafka")
    @classmethod
    def _no_password_in_kafka(cls, value: dict[str, Any]) -> dict[str, Any]:
        if "sasl.password" in value:
            raise ValueError(
                "sasl.password is not accepted here (it would be shown in clear): use "
                "CLASSIFIER_KAFKA_SASL_PASSWORD or --kafka-sasl-password-file"
            )
        return value

    @model_validator(mode="after")
    def _kafka_security(self) -> Self:
        """Check the security settings fit together; read the password file (once, here)."""
        dedicated = {
            "security.protocol": self.kafka_security_protocol,
            "sasl.mechanism": self.kafka_sasl_mechanism,
            "sasl.mechanisms": self.kafka_sasl_mechanism,
            "sasl.username": self.kafka_sasl_username,
            "ssl.ca.location": self.kafka_ssl_ca_location,
        }
        clash = sorted(key for key, value in dedicated.items() if value and key in self.kafka)
        if clash:
            raise ValueError(f"{clash} are set both in kafka and by their own kafka_* setting")
        protocol, mechanism = self.kafka_security_protocol, self.kafka_sasl_mechanism
        if mechanism is None:
            given = [self.kafka_sasl_username, self.kafka_sasl_password]
            if any(v is not None for v in [*given, self.kafka_sasl_password_file]):
                raise ValueError("a SASL user name or password needs kafka_sasl_mechanism")
        else:
            if protocol not in ("SASL_PLAINTEXT", "SASL_SSL"):
                raise ValueError(
                    f"kafka_sasl_mechanism {mechanism} needs kafka_security_protocol SASL_SSL "
                    "(or SASL_PLAINTEXT, unencrypted)"
                )
            if self.kafka_sasl_username is None:
                raise ValueError(f"kafka_sasl_mechanism {mechanism} needs kafka_sasl_username")
            if (self.kafka_sasl_password is None) == (self.kafka_sasl_password_file is None):
                raise ValueError(
                    f"kafka_sasl_mechanism {mechanism} needs one of kafka_sasl_password and "
                    "kafka_sasl_password_file"
                )
        ca = self.kafka_ssl_ca_location
        if ca is not None:
            if protocol not in ("SSL", "SASL_SSL"):
                raise ValueError("kafka_ssl_ca_location needs kafka_security_protocol SSL/SASL_SSL")
            if not ca.exists():
                raise ValueError(f"kafka_ssl_ca_location {str(ca)!r} does not exist")
        path = self.kafka_sasl_password_file
        if path is not None:
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(
                    f"kafka_sasl_password_file: cannot read {str(path)!r} ({exc.strerror or exc})"
                ) from None
            except UnicodeDecodeError:
                raise ValueError(f"kafka_sasl_password_file {str(path)!r} is not UTF-8") from None
            password = text.removesuffix("\n").removesuffix("\r")
            if not password:
                raise ValueError(f"kafka_sasl_password_file {str(path)!r} is empty")
            self._sasl_password_from_file = SecretStr(password)
        return self

    @property
    def kafka_sasl_secret(self) -> SecretStr | None:
        """The SASL password: ``kafka_sasl_password``, else the password file's content."""
        return self.kafka_sasl_password or self._sasl_password_from_file

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

    # -- several processes on one host, static group membership (issue 13) ----------------
    processes: Annotated[int, Field(ge=1, le=MAX_PROCESSES)] | Literal["auto"] = Field(
        default=1,
        description="Consumer processes on this host: N > 1 runs a supervisor that starts N "
        "worker processes in the same group (client id, transactional id and group instance "
        "id get the suffix '-<i>') and serves one /metrics, /healthz and /readyz for them; "
        "'auto': one per available core. 1: one process, no supervisor.",
    )
    group_instance_id: str | None = Field(
        default=None,
        min_length=1,
        description="Static group membership (KIP-345, librdkafka group.instance.id), e.g. "
        "the pod name: a restarted member gets its partitions back without a rebalance, but "
        "a dead one's partitions wait for session.timeout.ms. Unset: dynamic membership.",
    )

    @field_validator("processes", mode="before")
    @classmethod
    def _processes_number_or_auto(cls, value: object) -> object:
        text = str(value).strip().lower()
        if text == "auto":
            return "auto"
        if isinstance(value, bool) or not text.isdigit() or not 1 <= int(text) <= MAX_PROCESSES:
            raise ValueError(f"must be a number of processes (1-{MAX_PROCESSES}) or 'auto'")
        return int(text)

    @property
    def process_count(self) -> int:
        """``processes`` as a number: ``auto`` is the cores this process may run on."""
        if self.processes == "auto":
            try:
                cores = len(os.sched_getaffinity(0))
            except (AttributeError, OSError):  # not Linux
                cores = os.cpu_count() or 1
            return max(1, min(cores, MAX_PROCESSES))
        return self.processes

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
        outputs = [
            self.output_topic,
            self.dead_letter_topic,
            *filter(None, [self.review_topic, self.shadow_topic]),
        ]
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

    @field_validator("shadow_bundle")
    @classmethod
    def _shadow_bundle_exists(cls, value: Path | None) -> Path | None:
        return None if value is None else require_existing(value)

    @model_validator(mode="after")
    def _shadow_topic_needs_a_shadow(self) -> Self:
        if self.shadow_topic and self.shadow_bundle is None:
            raise ValueError("shadow_topic needs shadow_bundle")
        return self
