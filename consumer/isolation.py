"""The per-record guard: whatever one record's processing raises becomes a value, never a crash.

Every step of the consumer that reads one record's bytes (header decoding, size and depth
checks, JSON, schema validation, building the document, tokenisation, building its output)
runs inside :func:`isolate`. The guard turns an exception into a :class:`Rejection` — the
dead-letter error code and reason of that record — and the rest of the micro-batch goes on.
It deliberately catches every :class:`Exception` instead of listing the ones seen so far
(``json`` raising ``RecursionError`` or ``ValueError`` instead of ``JSONDecodeError`` is
how a 2 kB message once crash-looped the service), so a step added later cannot reopen
the hole. What is not an ``Exception`` (``KeyboardInterrupt``, ``SystemExit``) still stops
the process: it is not about the record. Nor is a :class:`DependencyUnavailableError`: a
service the step needs (the Schema Registry) could not answer, which says nothing about the
record, so the guard lets it through and the micro-batch is retried (:mod:`consumer.worker`)
instead of dead-lettering good records.

Errors-as-values in the style of Bytewax's Kafka connector: the worker thread collects
``T | Rejection`` per record and decides what to publish; only failures of the broker, the
producer or the model as a whole escape the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from schemas import ErrorCode

T = TypeVar("T")

#: Longest reason kept in a dead letter (characters); an exception message can echo an
#: arbitrarily large input.
MAX_REASON_CHARS = 1_000


class InvalidRecordError(Exception):
    """A record that cannot be classified; carries the dead-letter error code and reason."""

    def __init__(self, code: ErrorCode, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class DependencyUnavailableError(Exception):
    """A step could not run because a service it depends on is unreachable (not the record's fault).

    :func:`isolate` re-raises it instead of turning it into a rejection; the worker retries
    the micro-batch with back-off until the dependency answers again.

    Attributes:
        dependency: What is unreachable, as a metric label (``"schema_registry"``).
        reason: What failed, for the logs (no credentials).
    """

    def __init__(self, dependency: str, reason: str) -> None:
        super().__init__(f"{dependency} unavailable: {reason}")
        self.dependency = dependency
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one record is dead-lettered instead of predicted.

    Attributes:
        code: Stable, machine-readable error code.
        reason: Human-readable explanation, valid UTF-8, at most :data:`MAX_REASON_CHARS`.
    """

    code: ErrorCode
    reason: str

    @classmethod
    def of(cls, code: ErrorCode, reason: str) -> Rejection:
        """A rejection with ``reason`` made safe for JSON (surrogates escaped, length capped)."""
        return cls(code, safe_text(reason, MAX_REASON_CHARS))

    @classmethod
    def from_exception(cls, error: Exception) -> Rejection:
        """The rejection for ``error``.

        An :class:`InvalidRecordError` keeps its own code and reason; any other exception is
        ``unprocessable`` with its type and message.
        """
        if isinstance(error, InvalidRecordError):
            return cls.of(error.code, error.reason)
        return cls.of(ErrorCode.UNPROCESSABLE, describe_exception(error))


def isolate(step: Callable[[], T]) -> T | Rejection:
    """Run one record's ``step``; any :class:`Exception` it raises becomes its :class:`Rejection`.

    Returns:
        ``step()``'s result, or the rejection built from what it raised.

    Raises:
        DependencyUnavailableError: passed through: not the record's fault.
    """
    try:
        return step()
    except DependencyUnavailableError:
        raise
    except Exception as exc:  # the guard: one record's failure, whatever it is, is its own
        return Rejection.from_exception(exc)


def describe_exception(error: BaseException) -> str:
    """``"TypeName: message"``; never raises, even for an exception whose ``str()`` does."""
    name = type(error).__name__
    try:
        message = str(error)
    except Exception:  # an exception object can be as hostile as the record behind it
        message = "<message unavailable>"
    return f"{name}: {message}" if message else name


def safe_text(text: str, limit: int) -> str:
    """``text`` as valid UTF-8 (lone surrogates backslash-escaped), cut to ``limit`` characters."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"
