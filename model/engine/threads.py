"""TensorFlow's thread pools: sized once per process, before TensorFlow's first operation.

TensorFlow's intra-op and inter-op pools belong to the process and are fixed as soon as its
eager context exists (loading a model creates it). So the first request decides and later
ones only learn what is in effect. That once-per-process fact is the only state here, held
by the :class:`TensorFlowThreads` instance :data:`TENSORFLOW_THREADS`; :func:`configure_threads`
is its shorthand. Which sizes are requested, in order: the arguments, then the environment
variables of :mod:`model.engine.env`, then the defaults below.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from model.engine.env import INTER_OP_ENV, INTRA_OP_ENV, env_int

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ThreadSettings:
    """TensorFlow thread-pool sizes in effect (``0`` means TensorFlow's own default).

    Attributes:
        intra_op: Threads inside one op.
        inter_op: Ops run concurrently.
        applied: False when TensorFlow had already started and kept its own pools.
    """

    intra_op: int
    inter_op: int
    applied: bool


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def requested_threads(
    intra_op: int | None = None,
    inter_op: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[int, int]:
    """The ``(intra_op, inter_op)`` sizes asked for: arguments, else environment, else defaults.

    The defaults are ``intra_op = 1`` and ``inter_op = cpu_count()``: the compiled engine runs
    each chunk single-threaded (XLA's per-step matmuls are too small to split well) and gets
    its parallelism from running chunks concurrently.

    Raises:
        ValueError: a negative count or a non-integer environment variable.
    """
    intra = intra_op if intra_op is not None else env_int(INTRA_OP_ENV, environ)
    inter = inter_op if inter_op is not None else env_int(INTER_OP_ENV, environ)
    intra = 1 if intra is None else intra
    inter = cpu_count() if inter is None else inter
    if intra < 0 or inter < 0:
        raise ValueError(f"thread counts must be >= 0, got intra={intra} inter={inter}")
    return intra, inter


class TensorFlowThreads:
    """The process's TensorFlow thread-pool sizes: set by the first :meth:`configure`, then fixed.

    Thread-safe. There is one per process, :data:`TENSORFLOW_THREADS`; a second instance would
    not know what the first applied.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settings: ThreadSettings | None = None

    @property
    def settings(self) -> ThreadSettings | None:
        """What the first :meth:`configure` put in effect; ``None`` before it was called."""
        return self._settings

    def configure(
        self,
        intra_op: int | None = None,
        inter_op: int | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> ThreadSettings:
        """Apply :func:`requested_threads` on the first call; later calls return its result.

        Raises:
            ValueError: on the first call only, as :func:`requested_threads`.
        """
        with self._lock:
            if self._settings is None:
                self._settings = _apply(*requested_threads(intra_op, inter_op, environ))
            return self._settings


def _apply(intra: int, inter: int) -> ThreadSettings:
    """Size TensorFlow's pools, or report the ones it started with (and warn if they differ)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
        return ThreadSettings(intra, inter, applied=True)
    except RuntimeError:  # the eager context already exists
        current = ThreadSettings(
            tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads(),
            applied=False,
        )
    if (current.intra_op, current.inter_op) != (intra, inter):
        log.warning(
            "TensorFlow already started with intra_op=%d inter_op=%d threads; "
            "wanted %d/%d (call model.engine.configure_threads before loading)",
            current.intra_op,
            current.inter_op,
            intra,
            inter,
        )
    return current


#: The process's thread-pool record (see :class:`TensorFlowThreads`).
TENSORFLOW_THREADS = TensorFlowThreads()


def configure_threads(intra_op: int | None = None, inter_op: int | None = None) -> ThreadSettings:
    """Size TensorFlow's thread pools once, before its first operation.

    Keras' own ``model.predict`` prefers more intra-op threads than the engine's defaults
    (see :func:`requested_threads`): benchmarks of it run in a separate process.

    Args:
        intra_op: Threads inside one op; default ``$CLASSIFIER_TF_INTRA_OP_THREADS`` else 1.
        inter_op: Ops run concurrently; default ``$CLASSIFIER_TF_INTER_OP_THREADS`` else
            :func:`cpu_count`.

    Returns:
        The settings in effect. ``applied`` is False when TensorFlow had already started
        (e.g. a model was loaded first), in which case its existing pools are kept and a
        warning is logged if they differ from the request. Calling again is a no-op that
        returns the first call's result.

    Raises:
        ValueError: a negative count or a non-integer environment variable.
    """
    return TENSORFLOW_THREADS.configure(intra_op, inter_op)
