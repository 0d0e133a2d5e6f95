"""The feedback loop: human verdicts joined to the live predictions, as accuracy metrics.

A labels topic (``--labels-topic``) carries verdicts, one JSON object per record, keyed like
the input (e.g. from the low-confidence review queue)::

    {"id": "bbc-0042", "label": "business"}      # extra fields are allowed and ignored

:class:`FeedbackJoin` is a :class:`~consumer.observers.BatchObserver`. Its
:meth:`~FeedbackJoin.offer` remembers, for every prediction of a committed micro-batch, the
message id → (predicted label, model version, time) in a :class:`PredictionLog` (bounded:
``feedback_max_predictions``, oldest forgotten first, and ``feedback_retention_s``). A thread
of its own reads the labels topic with a consumer that is *not* a member of the service's
group: every member of the service reads *all* partitions of the labels topic
(``assign()``), from their end offsets at start (a verdict for a prediction made before the
process started cannot match its memory anyway), looks for new partitions every
``refresh_interval_s``, and joins each verdict to the predictions *this* process made.

Each verdict is counted once in ``classifier_feedback_labels_total{outcome}``:

* ``matched`` — this process predicted the id (and still remembers it): counted in
  ``classifier_feedback_predictions_total{model_version,predicted,actual}`` (the live
  confusion counts) and, when right, ``classifier_feedback_correct_total{model_version}``;
  live accuracy = correct / Σ predictions per version;
* ``unmatched`` — no remembered prediction of that id: another member (or another worker of
  ``--processes N``) predicted it, it was forgotten (retention, bound), it was predicted
  before this process started, or the verdict arrived before the service had settled the
  prediction's micro-batch (milliseconds after the prediction was published). Summed over
  N members, a verdict is matched by at most one and unmatched by the others, so the sum
  of ``unmatched`` is inflated; ``matched`` is exact;
* ``duplicate`` — a later verdict for a prediction already judged: a prediction is counted
  once, with its first verdict (a corrected verdict does reach the training data:
  ``python -m consumer.export_feedback`` keeps the latest verdict per id);
* ``invalid`` — not a verdict: reason in ``classifier_feedback_invalid_labels_total{reason}``
  (see :data:`INVALID_REASONS`); ``unknown_label`` is a label the model version that made
  that prediction does not have (a hot swap may change the labels: each prediction is
  checked against its own version's).

No record can stop the thread: a bad one is counted and skipped, broker errors are logged
(rate-limited) and retried. ``classifier_feedback_remembered_predictions`` is the log's size.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import orjson
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from consumer.batch import Batch
from consumer.clients import reader_config, topic_partitions
from consumer.settings import Settings

Outcome = Literal["matched", "unmatched", "duplicate", "invalid"]
#: Every outcome of a labels-topic record (``classifier_feedback_labels_total{outcome}``).
OUTCOMES: tuple[Outcome, ...] = ("matched", "unmatched", "duplicate", "invalid")
#: Why a record is not a verdict (``classifier_feedback_invalid_labels_total{reason}``).
INVALID_REASONS = (
    "null_value",  # a tombstone
    "too_large",  # over MAX_VERDICT_BYTES
    "invalid_json",  # not UTF-8 JSON
    "not_an_object",
    "bad_id",  # no "id", or not a non-blank string
    "bad_label",  # no "label", or not a non-blank string
    "unknown_label",  # not a label of the model version that made the prediction
)
#: Largest labels-topic value read (bytes); a verdict is a few dozen.
MAX_VERDICT_BYTES = 65_536
#: How often the labels topic's partitions are listed again, to read added ones (s).
REFRESH_INTERVAL_S = 30.0
#: Least time between two warnings of one kind from the labels thread (s).
WARNING_INTERVAL_S = 10.0


class InvalidVerdictError(ValueError):
    """A labels-topic record that is not a verdict; ``reason`` is one of :data:`INVALID_REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Verdict:
    """One human verdict: the message ``id`` and its true ``label``."""

    id: str
    label: str


def parse_verdict(value: bytes | None) -> Verdict:
    """One labels-topic value → its :class:`Verdict` (extra fields ignored).

    Raises:
        InvalidVerdictError: a tombstone, over :data:`MAX_VERDICT_BYTES`, not JSON, not an
            object, or ``id`` / ``label`` missing, not strings or blank (``reason`` says
            which). Never anything else, whatever the bytes.
    """
    if value is None:
        raise InvalidVerdictError("null_value", "a tombstone (null value)")
    if len(value) > MAX_VERDICT_BYTES:
        raise InvalidVerdictError("too_large", f"{len(value)} bytes > {MAX_VERDICT_BYTES}")
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidVerdictError("invalid_json", str(exc)[:200]) from None
    if not isinstance(parsed, dict):
        raise InvalidVerdictError("not_an_object", f"a JSON {type(parsed).__name__}")
    fields: dict[str, str] = {}
    for name in ("id", "label"):
        item = parsed.get(name)
        if not isinstance(item, str) or not item.strip():
            raise InvalidVerdictError(f"bad_{name}", f"{name!r} must be a non-blank string")
        fields[name] = item
    return Verdict(fields["id"], fields["label"].strip())


class Remembered(NamedTuple):  # a tuple: 4x cheaper to build than a frozen dataclass
    """A prediction kept for the join.

    Attributes:
        label: The label the model published.
        version: The model version that made it.
        labels: That version's labels (one shared set per version).
        at: The log's clock when it was remembered (s; ``time.monotonic`` by default).
        judged: A verdict for it was counted already.
    """

    label: str
    version: str
    labels: frozenset[str]
    at: float
    judged: bool = False


class PredictionLog:
    """Bounded, thread-safe memory of predictions: message id → :class:`Remembered`.

    At most ``max_predictions`` entries; remembering one more forgets the oldest first
    (insertion order; predicting an id again makes it the newest). An entry older than
    ``retention_s`` is forgotten too (checked whenever the log is used). Every method takes
    one lock: the service's main thread remembers, the labels thread claims.

    Args:
        max_predictions: Most entries kept (at least 1).
        retention_s: Age (s, of ``clock``) past which an entry is forgotten (> 0).
        clock: Seconds, never decreasing (tests inject their own).
    """

    def __init__(
        self,
        max_predictions: int,
        retention_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_predictions < 1 or retention_s <= 0:
            raise ValueError("max_predictions must be >= 1 and retention_s > 0")
        self.max_predictions = max_predictions
        self.retention_s = retention_s
        self._clock = clock
        self._entries: OrderedDict[str, Remembered] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._expire(self._clock())
            return len(self._entries)

    def remember(
        self, predictions: Iterable[tuple[str, str]], version: str, labels: frozenset[str]
    ) -> None:
        """Remember ``(message id, predicted label)`` pairs made by model ``version``.

        An id already remembered is replaced (its new prediction, not yet judged).
        """
        with self._lock:
            now = self._clock()
            entries = self._entries
            for message_id, label in predictions:
                entries.pop(message_id, None)  # predicted again: re-inserted as the newest
                entries[message_id] = Remembered(label, version, labels, now)
            while len(entries) > self.max_predictions:
                entries.popitem(last=False)
            self._expire(now)

    def get(self, message_id: str) -> Remembered | None:
        """The remembered prediction of ``message_id``, or ``None`` (never or no longer)."""
        with self._lock:
            self._expire(self._clock())
            return self._entries.get(message_id)

    def claim(self, message_id: str, actual: str) -> tuple[Outcome, Remembered | None]:
        """Judge the prediction of ``message_id`` with the true label ``actual``, once.

        Returns:
            ``("matched", entry)`` — first verdict, ``actual`` is one of the version's
            labels; the entry is now judged. ``("duplicate", entry)`` — it was judged
            before. ``("invalid", entry)`` — ``actual`` is not a label of its version
            (nothing changes). ``("unmatched", None)`` — no such prediction remembered.
        """
        with self._lock:
            self._expire(self._clock())
            entry = self._entries.get(message_id)
            if entry is None:
                return "unmatched", None
            if actual not in entry.labels:
                return "invalid", entry
            if entry.judged:
                return "duplicate", entry
            self._entries[message_id] = entry._replace(judged=True)  # keeps its place
            return "matched", entry

    def _expire(self, now: float) -> None:
        """Forget the entries older than ``retention_s`` (the oldest are first); lock held."""
        entries, horizon = self._entries, now - self.retention_s
        while entries:
            oldest = next(iter(entries.values()))
            if oldest.at >= horizon:
                return
            entries.popitem(last=False)


class FeedbackMetrics:
    """The join's Prometheus metrics (see the module docstring), in the service's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.labels = Counter(
            "classifier_feedback_labels",
            "Labels-topic records by outcome: matched, unmatched, duplicate, invalid.",
            ["outcome"],
            registry=registry,
        )
        self.invalid = Counter(
            "classifier_feedback_invalid_labels",
            "Labels-topic records that are not verdicts, by reason.",
            ["reason"],
            registry=registry,
        )
        self.predictions = Counter(
            "classifier_feedback_predictions",
            "Predictions judged by a verdict: the live confusion counts per model version.",
            ["model_version", "predicted", "actual"],
            registry=registry,
        )
        self.correct = Counter(
            "classifier_feedback_correct",
            "Judged predictions whose label equals the verdict, per model version.",
            ["model_version"],
            registry=registry,
        )
        self.remembered = Gauge(
            "classifier_feedback_remembered_predictions",
            "Predictions remembered for the join (bounded by feedback_max_predictions).",
            registry=registry,
            multiprocess_mode="livesum",  # --processes N: the workers' sum
        )
        for outcome in OUTCOMES:
            self.labels.labels(outcome)  # every series exists from the start, at 0
        for reason in INVALID_REASONS:
            self.invalid.labels(reason)


class _RateLimited:
    """At most one warning per kind every ``interval_s``; the rest are counted in the next."""

    def __init__(self, interval_s: float = WARNING_INTERVAL_S) -> None:
        self._interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._log = structlog.get_logger("consumer")

    def warning(self, event: str, kind: str, **fields: Any) -> None:
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval_s:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last[kind] = now
        suppressed = self._suppressed.pop(kind, 0)
        self._log.warning(event, kind=kind, suppressed_since_last=suppressed, **fields)


class FeedbackJoin:
    """Joins the labels topic to this process's predictions (see the module docstring).

    Args:
        predictions: Where the committed predictions are remembered.
        metrics: Where the outcomes and confusion counts go.
        consumer: A ``confluent_kafka.Consumer`` for ``topic`` (:func:`feedback_consumer_config`),
            or ``None``: no thread; :meth:`judge` is then called by the owner (tests).
        topic: The labels topic (with ``consumer``).
        refresh_interval_s: How often the topic's partitions are listed again (s).
        timeout_s: Timeout of one metadata or watermark request (s).
    """

    def __init__(
        self,
        predictions: PredictionLog,
        metrics: FeedbackMetrics,
        consumer: Any = None,
        topic: str | None = None,
        refresh_interval_s: float = REFRESH_INTERVAL_S,
        timeout_s: float = 10.0,
    ) -> None:
        self.predictions = predictions
        self.metrics = metrics
        self._consumer = consumer
        self._topic = topic
        self._refresh_interval_s = refresh_interval_s
        self._timeout_s = timeout_s
        self._labels_of: dict[str, frozenset[str]] = {}  # one per model version served
        self._assigned: set[int] = set()
        self._stop = threading.Event()
        self._warn = _RateLimited()
        self._log = structlog.get_logger("consumer")
        self._thread: threading.Thread | None = None
        if consumer is not None and topic is not None:
            self._thread = threading.Thread(target=self._run, name="feedback", daemon=True)
            self._thread.start()

    @classmethod
    def from_settings(cls, settings: Settings, registry: CollectorRegistry) -> FeedbackJoin:
        """The join of ``settings.labels_topic``, its thread started.

        Raises:
            ValueError: ``labels_topic`` is not set.
            confluent_kafka.KafkaException: bad client configuration.
        """
        from confluent_kafka import Consumer

        if settings.labels_topic is None:
            raise ValueError("the feedback join needs labels_topic")
        return cls(
            PredictionLog(settings.feedback_max_predictions, settings.feedback_retention_s),
            FeedbackMetrics(registry),
            Consumer(feedback_consumer_config(settings)),
            settings.labels_topic,
        )

    # -- the service's main thread --------------------------------------------------------

    def offer(self, batch: Batch) -> None:
        """Remember every prediction of a committed ``batch`` (id → label, version, time).

        Fast (one lock, one ``argmax`` per record); ``batch`` is only read.
        """
        classifier = batch.classifier
        labels, version = classifier.labels, classifier.version
        known = self._labels_of.get(version)
        if known is None:
            known = self._labels_of[version] = frozenset(labels)
        predicted = batch.predictions()
        if predicted:
            tops = np.argmax(np.stack([p.probabilities for p in predicted]), axis=1).tolist()
            pairs = [
                (p.accepted.message.id, labels[i]) for p, i in zip(predicted, tops, strict=True)
            ]
            self.predictions.remember(pairs, version, known)
        self.metrics.remembered.set(len(self.predictions))

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the labels thread (at most ``timeout_s``); it closes its consumer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    # -- the labels thread ----------------------------------------------------------------

    def judge(self, value: bytes | None) -> Outcome:
        """Count one labels-topic record (its value); never raises for its bytes."""
        m = self.metrics
        try:
            verdict = parse_verdict(value)
        except InvalidVerdictError as exc:
            return self._invalid(exc.reason, str(exc))
        outcome, entry = self.predictions.claim(verdict.id, verdict.label)
        if outcome == "invalid":
            version = entry.version if entry is not None else "?"
            return self._invalid("unknown_label", f"{verdict.label!r} is not a label of {version}")
        m.labels.labels(outcome).inc()
        if outcome == "matched" and entry is not None:
            m.predictions.labels(entry.version, entry.label, verdict.label).inc()
            correct = m.correct.labels(entry.version)  # exists at 0 until one is right
            if entry.label == verdict.label:
                correct.inc()
        self.metrics.remembered.set(len(self.predictions))
        return outcome

    def _invalid(self, reason: str, detail: str) -> Outcome:
        self.metrics.labels.labels("invalid").inc()
        self.metrics.invalid.labels(reason).inc()
        self._warn.warning("feedback_label_invalid", reason, detail=detail[:300])
        return "invalid"

    def _run(self) -> None:
        """Read the labels topic until :meth:`close`; nothing escapes (logged instead)."""
        next_refresh = 0.0
        try:
            while not self._stop.is_set():
                try:
                    if time.monotonic() >= next_refresh:
                        self._refresh()
                        wait = self._refresh_interval_s if self._assigned else 1.0
                        next_refresh = time.monotonic() + wait
                    if not self._assigned:
                        self._stop.wait(0.5)
                        continue
                    for message in self._consumer.consume(500, 0.5):
                        error = message.error()
                        if error is not None:
                            self._warn.warning("feedback_read_error", "read", error=str(error))
                            continue
                        self.judge(message.value())
                except Exception as exc:  # the broker, a bug: log, wait, go on
                    self._warn.warning(
                        "feedback_failed", "loop", error=f"{type(exc).__name__}: {exc}"
                    )
                    self._stop.wait(1.0)
        finally:
            try:
                self._consumer.close()
            except Exception as exc:  # closing must not raise out of the thread either
                self._log.warning("feedback_close_failed", error=str(exc))

    def _refresh(self) -> None:
        """Assign the labels topic's partitions not assigned yet.

        The first partitions start at their end offsets (what is there predates this
        process); partitions added later start at their beginning (all of them is newer).

        Raises:
            confluent_kafka.KafkaException: the broker did not answer.
        """
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        topic = self._topic or ""
        partitions = topic_partitions(self._consumer, topic, self._timeout_s)
        if partitions is None:
            self._warn.warning("feedback_topic_missing", "topic", topic=topic)
            return
        new = [p for p in partitions if p not in self._assigned]
        if not new:
            return
        starts: dict[int, int] = {}
        for p in new:
            if self._assigned:
                starts[p] = OFFSET_BEGINNING
            else:
                _, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=self._timeout_s
                )
                starts[p] = high
        self._consumer.incremental_assign([TopicPartition(topic, p, o) for p, o in starts.items()])
        self._assigned.update(new)
        self._log.info(
            "feedback_reading", topic=topic, offsets={str(p): o for p, o in starts.items()}
        )


def feedback_consumer_config(settings: Settings) -> dict[str, Any]:
    """The labels thread's consumer configuration (:func:`~consumer.clients.reader_config`).

    Never a member of the service's group: its group ``<group-id>.feedback`` is never
    joined (``assign()`` only) nor committed to; client id ``<client-id>.feedback``.
    """
    config = reader_config(settings, f"{settings.group_id}.feedback")
    config["client.id"] = f"{settings.client_id}.feedback"
    return config
