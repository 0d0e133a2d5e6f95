"""``python -m consumer.export_feedback``: the labels topic + the original texts → a training CSV.

The verdicts the feedback loop collects (:mod:`consumer.feedback`) become training data::

    python -m consumer.export_feedback --bundle models/bbc --labels-topic labels --output f.csv
    python -m training.fit --file f.csv --output models/bbc-refresh

It takes the service's own settings (brokers, security, topics, ``--input-format`` and
``--input-fields``, so Avro / JSON Schema / Protobuf inputs decode as the service decodes
them; ``--bundle`` is checked to exist, as for the service, and never loaded) plus
``--output``. One run:

1. reads the labels topic (``read_committed``) from its beginning to its end offsets at
   start; a record that is not a verdict (:func:`consumer.feedback.parse_verdict`) is
   counted as invalid and skipped; **the latest verdict per id wins** (verdicts of one id
   share its key, so its partition, where offset order is time order);
2. reads the input topic from its beginning to its end offsets at start, decoding each
   record with the service's own input decoder and per-record guard
   (:func:`consumer.steps.prepare`); a record the service would dead-letter is skipped;
   the latest input record of an id wins;
3. writes ``--output`` (atomically: a temporary file renamed into place) with the header
   ``id,text,label`` and one row per verdict whose input record was found, sorted by id:
   ``text`` is the document the service classifies (``title + " " + text``), ``label`` the
   verdict. ``python -m training.fit --file FILE`` reads it as it is (its default
   ``--text-column text --label-column label``).

Verdicts whose input record is gone (the input topic's retention) are counted as
unmatched. Labels are not checked against a model's labels here: a class the humans added
is training data too. Nothing is committed; no consumer group is joined.

Exit codes: 0 done (one summary line on stdout); 2 bad settings, broker or registry
unreachable, a topic missing, a read that stalled, or the file could not be written.
"""

from __future__ import annotations

import csv
import os
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from pydantic import Field, model_validator

from consumer.clients import ReadStalledError, read_to_ends, reader_config, topic_partitions
from consumer.decoding import InputDecoder, input_decoder
from consumer.feedback import InvalidVerdictError, parse_verdict
from consumer.isolation import DependencyUnavailableError
from consumer.records import RawRecord
from consumer.registry import RegistryStartupError, reachable_client
from consumer.settings import Settings
from consumer.steps import Accepted, prepare
from schemas.settings import command_settings, parse_command_line

#: The CSV's columns; ``training.fit``'s defaults read ``text`` and ``label``.
COLUMNS = ("id", "text", "label")


class ExportError(Exception):
    """The export cannot run or did not complete; ``--output`` was not written."""


class ExportSettings(Settings):
    """The service's settings (``--labels-topic`` required) plus where to write the CSV."""

    model_config = command_settings("python -m consumer.export_feedback", "CLASSIFIER_")

    output: Path = Field(
        description="CSV file to write (columns id,text,label; python -m training.fit "
        "--file FILE reads it). Replaced atomically."
    )
    export_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest wait for the broker (metadata, offsets, or no new record) (s).",
    )

    @model_validator(mode="after")
    def _needs_a_labels_topic(self) -> Self:
        if self.labels_topic is None:
            raise ValueError("the export needs --labels-topic (CLASSIFIER_LABELS_TOPIC)")
        return self


@dataclass
class ExportSummary:
    """What one export read and wrote (counts of records and ids).

    Attributes:
        labels: Labels-topic records read.
        invalid: Of those, records that are not verdicts, per reason.
        superseded: Verdicts replaced by a later one for the same id.
        inputs: Input records read; ``unreadable``: of those, refused by the decoder.
        matched: Verdicts written (their input record was found): the CSV's rows.
        unmatched: Verdicts whose id has no input record (gone, or never an input id).
        rows_per_label: The CSV's rows per label (a typo in a verdict shows up as a class).
    """

    labels: int = 0
    invalid: dict[str, int] = field(default_factory=dict)
    superseded: int = 0
    inputs: int = 0
    unreadable: int = 0
    matched: int = 0
    unmatched: int = 0
    rows_per_label: dict[str, int] = field(default_factory=dict)

    def line(self, output: Path) -> str:
        """The run's one-line summary."""
        invalid = sum(self.invalid.values())
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.invalid.items()))
        per_label = ", ".join(f"{k} {v}" for k, v in sorted(self.rows_per_label.items()))
        return (
            f"exported {self.matched} verdicts to {str(output)!r}; labels {self.labels}: "
            f"matched {self.matched}, unmatched {self.unmatched} (no input record), "
            f"invalid {invalid}{f' ({reasons})' if reasons else ''}, superseded "
            f"{self.superseded}; input records {self.inputs} (unreadable {self.unreadable}); "
            f"rows per label: {per_label or 'none'}"
        )


def export(settings: ExportSettings) -> ExportSummary:
    """Run one export (see the module docstring); writes ``settings.output``.

    Raises:
        ExportError: the broker or registry failed, a topic is missing, a read stalled, or
            the file could not be written; ``settings.output`` is then unchanged.
    """
    from confluent_kafka import Consumer, KafkaException

    decode = _decoder(settings)
    try:
        consumer = Consumer(reader_config(settings, f"{settings.group_id}.export-feedback"))
    except KafkaException as exc:
        raise ExportError(f"cannot create the Kafka consumer: {exc}") from None
    summary = ExportSummary()
    try:
        verdicts = _verdicts(consumer, settings, summary)
        documents = _documents(consumer, settings, decode, set(verdicts), summary)
    finally:
        consumer.close()
    rows = [(i, documents[i], verdicts[i]) for i in sorted(verdicts) if i in documents]
    summary.matched = len(rows)
    summary.unmatched = len(verdicts) - len(rows)
    summary.rows_per_label = dict(Counter(label for _, _, label in rows))
    _write(settings.output, rows)
    return summary


def _decoder(settings: ExportSettings) -> InputDecoder:
    """The service's input decoder; with a registry input format, the registry answered.

    Raises:
        ExportError: the registry is unreachable or the Protobuf class cannot be imported.
    """
    if settings.input_format == "json":
        return input_decoder(settings, None)
    try:
        return input_decoder(settings, reachable_client(settings))
    except (RegistryStartupError, ValueError) as exc:
        raise ExportError(str(exc)) from None


def _verdicts(consumer: Any, settings: ExportSettings, summary: ExportSummary) -> dict[str, str]:
    """Each id → its latest verdict's label, from the whole labels topic."""
    verdicts: dict[str, str] = {}
    for message in _read_all(consumer, settings.labels_topic or "", settings.export_timeout_s):
        summary.labels += 1
        try:
            verdict = parse_verdict(message.value())
        except InvalidVerdictError as exc:
            summary.invalid[exc.reason] = summary.invalid.get(exc.reason, 0) + 1
            continue
        summary.superseded += verdict.id in verdicts
        verdicts[verdict.id] = verdict.label
    return verdicts


def _documents(
    consumer: Any,
    settings: ExportSettings,
    decode: InputDecoder,
    wanted: set[str],
    summary: ExportSummary,
) -> dict[str, str]:
    """Each wanted id → the document of its latest input record.

    Raises:
        ExportError: the registry became unreachable while decoding.
    """
    documents: dict[str, str] = {}
    if not wanted:
        return documents
    for message in _read_all(consumer, settings.input_topic, settings.export_timeout_s):
        summary.inputs += 1
        try:
            prepared = prepare(RawRecord.from_message(message), decode, _no_tokens)
        except DependencyUnavailableError as exc:
            raise ExportError(f"{exc}; nothing written: run it again") from None
        if not isinstance(prepared, Accepted):
            summary.unreadable += 1
            continue
        message_id = prepared.message.id
        if message_id in wanted:
            documents[message_id] = prepared.message.document
    return documents


def _no_tokens(_document: str) -> list[int]:
    return []  # the export never tokenises (no model)


def _read_all(consumer: Any, topic: str, timeout_s: float) -> Iterator[Any]:
    """Every record of ``topic``, from its beginning to its end offsets at start.

    Raises:
        ExportError: the topic is missing, the broker does not answer, or the read stalled.
    """
    from confluent_kafka import KafkaException, TopicPartition

    try:
        partitions = topic_partitions(consumer, topic, timeout_s)
        if partitions is None:
            raise ExportError(f"topic {topic!r} not found")
        starts, ends = [], {}
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            if low < high:
                starts.append(TopicPartition(topic, p, low))
                ends[p] = high
        consumer.assign(starts)
        yield from read_to_ends(consumer, topic, ends, timeout_s)
    except KafkaException as exc:
        raise ExportError(f"cannot read {topic!r}: {exc}") from None
    except ReadStalledError as exc:
        raise ExportError(str(exc)) from None


def _write(path: Path, rows: Sequence[tuple[str, str, str]]) -> None:
    """Write the CSV to a temporary file beside ``path``, then rename it into place.

    Raises:
        ExportError: the file cannot be written.
    """
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with temporary.open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            writer.writerows(rows)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise ExportError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code (see the module docstring)."""
    settings = parse_command_line(ExportSettings, argv)
    if isinstance(settings, str):
        print(settings, file=sys.stderr)
        return 2
    try:
        summary = export(settings)
    except ExportError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    print(summary.line(settings.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
