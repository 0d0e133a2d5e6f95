"""``python -m consumer.replay``: republish dead-lettered records to the input topic.

A dead letter keeps its record's exact key, value and headers. Once the cause is fixed — a
limit raised, a producer's schema registered, a model that tokenises the text — the records
can be sent through the service again::

    python -m consumer.replay --error-code text_too_large --dry-run   # what would be sent
    python -m consumer.replay --error-code text_too_large             # send it

It takes the service's own settings (topics, bootstrap servers, security, and
``--output-format`` to read Avro / JSON Schema dead letters) plus filters:

* ``--error-code`` (repeatable): only these codes (default: every code);
* ``--failed-after`` / ``--failed-before``: the dead letter's ``failed_at`` (ISO 8601);
* ``--partition`` with ``--from-offset`` / ``--to-offset`` (inclusive): a range of the
  dead-letter topic.

What it does, per run:

1. reads the dead-letter topic from its **own consumer group's** committed offsets (default
   ``<group-id>.replay``, plus ``.<codes>`` when filtered by error code, so that replaying
   one kind of failure never passes over the letters of another) up to the end offsets at
   start (a run ends; letters written meanwhile wait for the next run);
2. republishes each letter that passes the filters: original key, value and headers, plus
   ``classifier.replay.count`` (previous count + 1) and ``classifier.replay.source``
   (``topic[partition]@offset`` of the letter); a letter whose count has reached
   ``--max-replays`` is **refused** (left where it is), so a record that keeps failing cannot
   loop forever; a letter without a copied value (too large, tombstone) cannot be replayed;
3. waits for the broker's acks, then commits the group's offsets past every letter it read,
   so running it again does not repeat a replay. ``--dry-run`` prints one JSON line per
   letter it would send and sends and commits nothing.

At least once: if the run fails after some records were acknowledged but before the commit,
a second run sends them again (the service predicts them twice; downstream joins by ``id``).
Do not run two replays of the same group at once.

Exit codes: 0 done (the summary line says how many were replayed, refused, filtered out);
2 refused or failed (bad settings, broker or registry unreachable, records not acknowledged;
nothing was committed).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import Field, model_validator

from consumer.clients import (
    ReadStalledError,
    operator_producer_config,
    read_to_ends,
    reader_config,
    topic_partitions,
)
from consumer.registry import RegistryStartupError, reachable_client
from consumer.settings import Settings
from schemas import DeadLetter, ErrorCode
from schemas.settings import command_settings, parse_command_line

#: Header counting how often a record was replayed (decimal ASCII).
REPLAY_COUNT_HEADER = "classifier.replay.count"
#: Header naming the dead letter a record was replayed from (``topic[partition]@offset``).
REPLAY_SOURCE_HEADER = "classifier.replay.source"


class ReplayError(Exception):
    """The replay cannot run or did not complete; nothing was committed."""


class ReplaySettings(Settings):
    """The service's settings plus what to replay."""

    model_config = command_settings("python -m consumer.replay", "CLASSIFIER_")

    error_code: list[ErrorCode] = Field(
        default_factory=list, description="Only dead letters with these codes (default: all)."
    )
    failed_after: datetime | None = Field(
        default=None, description="Only dead letters whose failed_at is at or after this."
    )
    failed_before: datetime | None = Field(
        default=None, description="Only dead letters whose failed_at is before this."
    )
    partition: int | None = Field(
        default=None, ge=0, description="Only this partition of the dead-letter topic."
    )
    from_offset: int | None = Field(
        default=None, ge=0, description="With --partition: first dead-letter offset (inclusive)."
    )
    to_offset: int | None = Field(
        default=None, ge=0, description="With --partition: last dead-letter offset (inclusive)."
    )
    max_replays: int = Field(
        default=3,
        ge=1,
        description="A record already replayed this many times is refused (left in the "
        "dead-letter topic).",
    )
    replay_group_id: str | None = Field(
        default=None,
        min_length=1,
        description="Consumer group of the replay on the dead-letter topic (default: "
        "'<group-id>.replay', plus '.<codes>' with --error-code).",
    )
    dry_run: bool = Field(
        default=False, description="Print what would be replayed; send and commit nothing."
    )
    replay_timeout_s: float = Field(
        default=30.0, gt=0, description="Longest wait for the broker at each step (s)."
    )

    @model_validator(mode="after")
    def _offsets_need_a_partition(self) -> Self:
        if (self.from_offset is not None or self.to_offset is not None) and self.partition is None:
            raise ValueError("--from-offset / --to-offset need --partition")
        return self

    @property
    def effective_replay_group_id(self) -> str:
        """``replay_group_id``, or ``<group_id>.replay[.<code>+<code>…]``."""
        if self.replay_group_id:
            return self.replay_group_id
        codes = "+".join(sorted(code.value for code in self.error_code))
        return f"{self.group_id}.replay" + (f".{codes}" if codes else "")


Verdict = Literal["replay", "filtered", "refused", "not_replayable"]


@dataclass(frozen=True)
class Decision:
    """What happens to one dead letter.

    Attributes:
        verdict: ``replay``, ``filtered`` (outside the filters), ``refused`` (replay limit)
            or ``not_replayable`` (no copy of the value).
        why: A short reason, for the dry-run lines and the summary.
        key, value, headers: The record to produce (``replay`` only).
    """

    verdict: Verdict
    why: str = ""
    key: bytes | None = None
    value: bytes | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def decide(letter: DeadLetter, where: str, settings: ReplaySettings) -> Decision:
    """The :class:`Decision` for ``letter``, read at ``where`` (``topic[partition]@offset``)."""
    if settings.error_code and letter.error_code not in settings.error_code:
        return Decision("filtered", f"error code {letter.error_code.value}")
    failed = letter.failed_at
    if settings.failed_after is not None and failed < settings.failed_after:
        return Decision("filtered", "failed before --failed-after")
    if settings.failed_before is not None and failed >= settings.failed_before:
        return Decision("filtered", "failed at or after --failed-before")
    if letter.value is None:
        why = "tombstone" if letter.value_size == 0 else "value not copied (too large)"
        return Decision("not_replayable", f"{why}; the original is at {_source(letter)}")
    headers: list[tuple[str, bytes]] = []
    count = 0
    for header in letter.headers:
        raw = b"" if header.value is None else header.value.to_bytes()
        if header.key == REPLAY_COUNT_HEADER:
            count = _count(raw)
            continue
        if header.key == REPLAY_SOURCE_HEADER:
            continue
        headers.append((header.key, raw))
    if count >= settings.max_replays:
        return Decision("refused", f"already replayed {count} times (--max-replays)")
    headers += [
        (REPLAY_COUNT_HEADER, str(count + 1).encode()),
        (REPLAY_SOURCE_HEADER, where.encode()),
    ]
    key = None if letter.key is None else letter.key.to_bytes()
    return Decision("replay", f"replay #{count + 1}", key, letter.value.to_bytes(), headers)


def _count(raw: bytes) -> int:
    try:
        return max(0, int(raw.decode("ascii")))
    except (UnicodeDecodeError, ValueError):
        return 0


def _source(letter: DeadLetter) -> str:
    s = letter.source
    return f"{s.topic}[{s.partition}]@{s.offset}"


def _letter_reader(settings: ReplaySettings) -> Any:
    """``(value bytes, topic) → DeadLetter`` in the service's output format.

    Raises:
        ReplayError: the registry (Avro / JSON Schema dead letters) is unreachable.
    """
    if settings.output_format == "json":
        return lambda value, _topic: DeadLetter.model_validate_json(value)
    try:
        client = reachable_client(settings)
    except RegistryStartupError as exc:
        raise ReplayError(str(exc)) from None
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.schema_registry.json_schema import JSONDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    deserialize: Any = (
        AvroDeserializer(client)
        if settings.output_format == "avro"
        else JSONDeserializer(None, schema_registry_client=client)
    )

    def read(value: bytes, topic: str) -> DeadLetter:
        ctx = SerializationContext(topic, MessageField.VALUE)
        return DeadLetter.model_validate(deserialize(value, ctx))

    return read


@dataclass
class Summary:
    """What one run did (counts of dead letters)."""

    replayed: int = 0
    filtered: int = 0
    refused: int = 0
    not_replayable: int = 0
    unreadable: int = 0

    def count(self, verdict: Verdict) -> None:
        """Count one dead letter's verdict."""
        if verdict == "replay":
            self.replayed += 1
        elif verdict == "filtered":
            self.filtered += 1
        elif verdict == "refused":
            self.refused += 1
        else:
            self.not_replayable += 1

    def line(self, settings: ReplaySettings) -> str:
        """The run's one-line summary."""
        verb = "would replay" if settings.dry_run else "replayed"
        return (
            f"{verb} {self.replayed} to {settings.input_topic!r}; refused {self.refused} "
            f"(--max-replays {settings.max_replays}); filtered out {self.filtered}; "
            f"not replayable {self.not_replayable}; unreadable {self.unreadable} "
            f"(group {settings.effective_replay_group_id!r})"
        )


def replay(settings: ReplaySettings, out: Any = sys.stdout) -> Summary:
    """Run one replay (see the module docstring).

    Args:
        settings: What to replay, and the service's topics and clients.
        out: Where ``--dry-run`` lines and refusals are printed.

    Raises:
        ReplayError: the broker or registry failed, or records were not acknowledged;
            nothing was committed.
    """
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

    read_letter = _letter_reader(settings)
    topic, timeout = settings.dead_letter_topic, settings.replay_timeout_s
    # read_committed: never replay an aborted transaction's letter
    consumer = Consumer(reader_config(settings, settings.effective_replay_group_id))
    summary = Summary()
    try:
        ends = _assign(consumer, settings, timeout)
        producer = None if settings.dry_run else Producer(operator_producer_config(settings))
        failures: list[str] = []

        def on_delivery(error: Any, _message: Any) -> None:
            if error is not None:
                failures.append(str(error))

        done: dict[int, int] = {}  # partition → next offset to commit
        for message in _read_until(consumer, topic, ends, timeout):
            partition, offset = message.partition(), message.offset()
            done[partition] = offset + 1
            where = f"{topic}[{partition}]@{offset}"
            if not _in_range(settings, partition, offset):
                summary.count("filtered")
                continue
            try:
                letter = read_letter(message.value(), topic)
            except Exception as exc:  # not a dead letter of this format: say so, go on
                summary.unreadable += 1
                print(json.dumps({"dead_letter": where, "unreadable": str(exc)[:300]}), file=out)
                continue
            decision = decide(letter, where, settings)
            summary.count(decision.verdict)
            if decision.verdict in ("refused", "not_replayable") or (
                settings.dry_run and decision.verdict == "replay"
            ):
                print(_line(where, letter, decision, settings), file=out)
            if decision.verdict == "replay" and producer is not None:
                _produce(producer, settings.input_topic, decision, on_delivery)
        if settings.dry_run:
            return summary
        if producer is not None and (producer.flush(timeout) or failures):
            raise ReplayError(
                f"replayed records not acknowledged ({failures[:3] or 'timed out'}); nothing "
                "committed: run it again (records already acknowledged are sent twice)"
            )
        if done:
            try:
                consumer.commit(
                    offsets=[TopicPartition(topic, p, o) for p, o in done.items()],
                    asynchronous=False,
                )
            except KafkaException as exc:
                raise ReplayError(
                    f"replayed, but the replay group's offsets were not committed ({exc}): "
                    "a second run would replay them again"
                ) from exc
        return summary
    finally:
        consumer.close()


def _line(where: str, letter: DeadLetter, decision: Decision, settings: ReplaySettings) -> str:
    line: dict[str, Any] = {
        "dead_letter": where,
        "error_code": letter.error_code.value,
        "source": _source(letter),
        "verdict": decision.verdict,
        "why": decision.why,
    }
    if decision.verdict == "replay":
        line |= {
            "to": settings.input_topic,
            "key": None if decision.key is None else decision.key.decode("utf-8", "replace"),
            "value_bytes": len(decision.value or b""),
            "headers": [k for k, _ in decision.headers],
        }
    return json.dumps(line)


def _in_range(settings: ReplaySettings, partition: int, offset: int) -> bool:
    if settings.partition is not None and partition != settings.partition:
        return False
    if settings.from_offset is not None and offset < settings.from_offset:
        return False
    return not (settings.to_offset is not None and offset > settings.to_offset)


def _assign(consumer: Any, settings: ReplaySettings, timeout_s: float) -> dict[int, int]:
    """Assign every partition of the dead-letter topic at the group's committed offsets.

    Returns:
        Per partition with something to read, its end offset at start.

    Raises:
        ReplayError: the topic does not exist or the broker does not answer.
    """
    from confluent_kafka import KafkaException, TopicPartition

    topic = settings.dead_letter_topic
    try:
        partitions = topic_partitions(consumer, topic, timeout_s)
        if partitions is None:
            raise ReplayError(f"dead-letter topic {topic!r} not found")
        committed = consumer.committed(
            [TopicPartition(topic, p) for p in partitions], timeout=timeout_s
        )
        starts, ends = [], {}
        for tp in committed:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, tp.partition), timeout=timeout_s
            )
            start = tp.offset if tp.offset >= 0 else low
            start = max(start, low)
            if start < high:
                starts.append(TopicPartition(topic, tp.partition, start))
                ends[tp.partition] = high
    except KafkaException as exc:
        raise ReplayError(f"cannot read {topic!r}: {exc}") from exc
    consumer.assign(starts)
    return ends


def _read_until(consumer: Any, topic: str, ends: dict[int, int], timeout_s: float) -> Iterable[Any]:
    """:func:`consumer.clients.read_to_ends`, a stall as a :class:`ReplayError`."""
    try:
        yield from read_to_ends(consumer, topic, ends, timeout_s)
    except ReadStalledError as exc:
        raise ReplayError(str(exc)) from None


def _produce(producer: Any, topic: str, decision: Decision, on_delivery: Any) -> None:
    while True:
        try:
            producer.produce(
                topic,
                key=decision.key,
                value=decision.value,
                headers=decision.headers,
                on_delivery=on_delivery,
            )
            return
        except BufferError:
            producer.poll(0.1)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code (see module docstring)."""
    settings = parse_command_line(ReplaySettings, argv)
    if isinstance(settings, str):
        print(settings, file=sys.stderr)
        return 2
    try:
        summary = replay(settings)
    except ReplayError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    print(summary.line(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
