"""The environment variables the engine reads, in one place, and how they are parsed.

- ``CLASSIFIER_TF_INTRA_OP_THREADS`` (:data:`INTRA_OP_ENV`): threads inside one TensorFlow
  op, read by :func:`~model.engine.threads.configure_threads`; default 1.
- ``CLASSIFIER_TF_INTER_OP_THREADS`` (:data:`INTER_OP_ENV`): TensorFlow ops run concurrently,
  read by :func:`~model.engine.threads.configure_threads`; default
  :func:`~model.engine.threads.cpu_count`.
- ``CLASSIFIER_ENGINE_WORKERS`` (:data:`WORKERS_ENV`): chunks run concurrently, the default of
  ``EngineConfig.workers``; unset or ``0`` means :func:`~model.engine.threads.cpu_count`.
- ``CLASSIFIER_ENGINE_WARMUP`` (:data:`WARMUP_ENV`): ``1``/``true``/``yes`` compiles every batch
  shape when an engine is built, the default of ``EngineConfig.warmup``; default off.

A variable is only a default: an explicit argument or :class:`~model.engine.EngineConfig`
field always wins. Every reader takes an optional ``environ`` mapping (default
:data:`os.environ`, read at call time) so that callers and tests can pass their own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

INTRA_OP_ENV = "CLASSIFIER_TF_INTRA_OP_THREADS"
INTER_OP_ENV = "CLASSIFIER_TF_INTER_OP_THREADS"
WORKERS_ENV = "CLASSIFIER_ENGINE_WORKERS"
#: ``1``/``true``: compile every batch shape when an engine is built (see ``EngineConfig.warmup``).
WARMUP_ENV = "CLASSIFIER_ENGINE_WARMUP"

_TRUE = ("1", "true", "yes")


def env_int(name: str, environ: Mapping[str, str] | None = None) -> int | None:
    """A non-negative integer variable, or ``None`` when it is unset or blank.

    Args:
        name: The variable, e.g. :data:`WORKERS_ENV`.
        environ: Where to read it; default :data:`os.environ`.

    Raises:
        ValueError: the value is not an integer, or is negative.
    """
    value = (os.environ if environ is None else environ).get(name, "").strip()
    if not value:
        return None
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if number < 0:
        raise ValueError(f"{name} must be >= 0, got {number}")
    return number


def env_flag(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """A boolean variable: ``1``, ``true`` or ``yes`` (any case) is True, anything else False."""
    return (os.environ if environ is None else environ).get(name, "").strip().lower() in _TRUE
