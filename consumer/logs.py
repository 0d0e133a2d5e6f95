"""Structured JSON logging (structlog) for the consumer, librdkafka's own logs included."""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

import structlog


def configure_logging(level: str, **fields: Any) -> None:
    """Send one JSON object per line to stderr for structlog and stdlib loggers alike.

    Args:
        level: Minimum level name, e.g. ``"INFO"``.
        fields: Added to every line of every thread (e.g. ``worker=1`` under a supervisor).
    """
    numeric = logging.getLevelNamesMapping()[level.upper()]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fields:
        shared.append(_add_fields(fields))
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=structlog.processors.JSONRenderer(),
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    threading.excepthook = _log_thread_exception


def _add_fields(fields: dict[str, Any]) -> Any:
    """A processor adding ``fields`` to each event (the event's own keys win)."""

    def add(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
        return {**fields, **event}

    return add


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    """A thread's uncaught exception as one JSON error line instead of a plain traceback."""
    if args.exc_value is None:
        return
    structlog.get_logger("consumer").error(
        "thread_failed",
        thread=None if args.thread is None else args.thread.name,
        error_type=args.exc_type.__name__,
        error=str(args.exc_value),
        exc_info=args.exc_value,
    )


def kafka_logger() -> logging.Logger:
    """Stdlib logger handed to confluent-kafka clients (``logger`` config) for librdkafka logs."""
    return logging.getLogger("librdkafka")
