"""The three inference paths, one object each behind :class:`InferencePath`.

- :class:`FusedPath` (``"fused"``): the network's weights in one XLA-compiled function
  (:mod:`model.engine.fused`), on sorted, trimmed chunks.
- :class:`KerasTrimmedPath` (``"keras-trimmed"``): the Keras model in a ``tf.function`` on the
  same trimmed chunks; for masked networks the fused path does not know.
- :class:`KerasFullPath` (``"keras-full"``): the Keras model on full-length padded matrices;
  for models without a padding mask, whose results depend on the padding.

The two trimmed paths share :class:`TrimmedPath` (slicing, chunking, the worker pool) and
differ only in how one chunk runs (:class:`~model.engine.scheduler.ChunkKernel`).
:mod:`model.engine.selection` picks one when an engine is built.
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from model.engine.arrays import FloatArray, IntArray
from model.engine.chunks import RaggedIds, check_id_matrix, slice_bounds
from model.engine.config import FULL_LENGTH_CHUNK, TIME_BUCKET, EngineConfig, EngineStats
from model.engine.fused import FusedFunction
from model.engine.scheduler import ChunkScheduler
from model.pipeline import TextPipeline
from model.sequences import pad_sequences

PathName = Literal["fused", "keras-trimmed", "keras-full"]


class KerasFunction:
    """The Keras model as a concrete ``tf.function``: ``(batch, seq_len) int32 → (batch, C)``.

    Calling it returns a TensorFlow tensor (inference mode, ``training=False``).
    """

    def __init__(self, model: Any) -> None:
        import tensorflow as tf

        self.concrete = tf.function(
            lambda ids: model(ids, training=False),
            input_signature=[tf.TensorSpec([None, None], tf.int32, name="ids")],
        ).get_concrete_function()
        self._constant = tf.constant
        self._int32 = tf.int32

    def __call__(self, ids: IntArray) -> Any:
        """Run the model on an id matrix."""
        return self.concrete(self._constant(ids, self._int32))


@dataclass(frozen=True)
class PathContext:
    """What every path shares with its engine.

    Attributes:
        pipeline: Tokenisation, ``max_len`` and the truncation/padding sides.
        config: The engine's tuning knobs.
        stats: The engine's work counters.
        keras_fn: The Keras model (reference and fallback).
        scheduler: The worker pool and planner of the trimmed paths.
        num_classes: Width of the probability rows.
        id_limit: Ids must lie in ``[0, id_limit)`` (the embedding's rows).
    """

    pipeline: TextPipeline
    config: EngineConfig
    stats: EngineStats
    keras_fn: KerasFunction
    scheduler: ChunkScheduler
    num_classes: int
    id_limit: int

    @property
    def max_len(self) -> int:
        """Tokens per sequence the model was trained on."""
        return self.pipeline.sequence.max_len

    def token_ids(self, text: str) -> list[int]:
        """Vocabulary ids of one text, truncated to ``max_len`` like the pipeline, unpadded."""
        return list(self.pipeline.sequence.truncate(self.pipeline.token_ids(text)))

    def empty(self, rows: int) -> FloatArray:
        """A ``(rows, num_classes) float32`` array of zeros to fill."""
        return np.zeros((rows, self.num_classes), dtype=np.float32)


class InferencePath(ABC):
    """One way of computing class probabilities; the engine holds exactly one.

    Every method gets at least one row (the engine answers empty inputs itself) and returns
    ``(rows, n_classes) float32`` probabilities, row ``i`` for input ``i``.

    Attributes:
        name: ``"fused"``, ``"keras-trimmed"`` or ``"keras-full"`` (``InferenceEngine.path``).
        jit: Whether the path runs XLA-compiled code of its own.
    """

    name: ClassVar[PathName]
    jit: bool = False

    def __init__(self, context: PathContext) -> None:
        self.context = context

    @abstractmethod
    def predict_texts(self, texts: Sequence[str]) -> FloatArray:
        """Probabilities of raw texts (tokenised here, timed into ``stats.encode_s``)."""

    @abstractmethod
    def predict_sequences(
        self, sequences: Sequence[Sequence[int]], *, count: bool = True
    ) -> FloatArray:
        """Probabilities of unpadded id sequences (``count``: add the work to the stats)."""

    @abstractmethod
    def predict_padded(self, ids: IntArray) -> FloatArray:
        """Probabilities of a checked ``(batch, seq_len)`` id matrix (0 = padding, any side)."""

    @abstractmethod
    def warmup(self) -> None:
        """Compile every shape the path will run on ``max_len``-long inputs."""


class KerasFullPath(InferencePath):
    """The Keras model on padded ``(rows, max_len)`` matrices, no trimming (unmasked models).

    Runs on the calling thread, :data:`~model.engine.config.FULL_LENGTH_CHUNK` rows per call;
    only tokenisation time is counted in the stats. Sequences are padded and truncated like
    the pipeline does, and checked against the embedding like ``predict_ids`` input.
    """

    name = "keras-full"

    def predict_texts(self, texts: Sequence[str]) -> FloatArray:
        """Encode with ``pipeline.encode`` (timed), then :meth:`predict_padded`."""
        began = time.perf_counter()
        ids = self.context.pipeline.encode(texts)
        self.context.stats.add_encode_time(time.perf_counter() - began)
        return self._checked(ids)

    def predict_sequences(
        self, sequences: Sequence[Sequence[int]], *, count: bool = True
    ) -> FloatArray:
        """Pad/truncate with :func:`model.sequences.pad_sequences`, then :meth:`predict_padded`."""
        return self._checked(pad_sequences(sequences, self.context.pipeline.sequence))

    def predict_padded(self, ids: IntArray) -> FloatArray:
        """Run the matrix as is, :data:`~model.engine.config.FULL_LENGTH_CHUNK` rows a call."""
        ids = ids.astype(np.int32, copy=False)
        parts = [
            np.asarray(self.context.keras_fn(ids[i : i + FULL_LENGTH_CHUNK]), dtype=np.float32)
            for i in range(0, len(ids), FULL_LENGTH_CHUNK)
        ]
        return np.concatenate(parts)

    def warmup(self) -> None:
        """Run one ``(1, max_len)`` matrix."""
        self._checked(np.ones((1, self.context.max_len), dtype=np.int32))

    def _checked(self, ids: IntArray) -> FloatArray:
        """:meth:`predict_padded` after :func:`~model.engine.chunks.check_id_matrix`."""
        return self.predict_padded(check_id_matrix(ids, self.context.id_limit))


class TrimmedPath(InferencePath):
    """Rows sorted by length, cut into bucket-sized chunks trimmed to their longest row.

    Subclasses say how one chunk runs (:meth:`run_chunk`) and how wide its matrix is
    (:meth:`time_bucket`); the chunks run on the shared
    :class:`~model.engine.scheduler.ChunkScheduler`.

    Args:
        context: What the path shares with its engine.
        row_step_cost_us: The planner's cost of one row-step (microseconds).
    """

    def __init__(self, context: PathContext, row_step_cost_us: float) -> None:
        super().__init__(context)
        self.row_step_cost_us = row_step_cost_us

    @abstractmethod
    def run_chunk(self, matrix: IntArray, lengths: IntArray, steps: int) -> FloatArray:
        """Probabilities of one chunk, ``(bucket, C) float32``.

        Args:
            matrix: ``(bucket, width) int32`` ids, each row's real ids left-aligned.
            lengths: ``(bucket,) int32`` real ids per row (0 for padding rows).
            steps: The longest length, at least 1 (at most ``width``).
        """

    @abstractmethod
    def time_bucket(self, steps: int) -> int:
        """Columns of the matrix given to :meth:`run_chunk` for a chunk of ``steps`` steps."""

    def predict_texts(self, texts: Sequence[str]) -> FloatArray:
        """Tokenise in ``config.overlap_slices`` slices, each slice's chunks starting at once.

        So the workers run one slice while the calling thread tokenises the next.
        """
        context = self.context
        config = context.config
        out = context.empty(len(texts))
        pending = []
        for lo, hi in slice_bounds(len(texts), config.overlap_slices, config.min_slice_rows):
            began = time.perf_counter()
            ragged = RaggedIds.from_sequences([context.token_ids(t) for t in texts[lo:hi]])
            context.stats.add_encode_time(time.perf_counter() - began)
            for chunk, future in context.scheduler.submit(ragged, self):
                pending.append((future, chunk.rows + lo))
        for future, rows in pending:
            out[rows] = future.result()[: len(rows)]
        return out

    def predict_sequences(
        self, sequences: Sequence[Sequence[int]], *, count: bool = True
    ) -> FloatArray:
        """Run the sequences as given (longer than ``max_len`` is allowed: wider shapes)."""
        ragged = RaggedIds.from_sequences(sequences)
        return self.context.scheduler.run(
            ragged, self, self.context.empty(len(sequences)), count=count
        )

    def predict_padded(self, ids: IntArray) -> FloatArray:
        """Drop the padding wherever it is and run each row's real ids."""
        ragged = RaggedIds.from_padded(ids)
        return self.context.scheduler.run(ragged, self, self.context.empty(len(ids)))

    def warmup(self) -> None:
        """Run one full chunk of ``max_len``-long rows per row bucket (not counted)."""
        for bucket in self.context.config.row_buckets:
            self.predict_sequences([[1] * self.context.max_len] * bucket, count=False)


class FusedPath(TrimmedPath):
    """The compiled function of :mod:`model.engine.fused` on trimmed chunks.

    With XLA every chunk is ``max_len`` columns wide (one compiled shape per row bucket; the
    cost follows ``steps``, not the width); wider inputs round up to
    :data:`~model.engine.config.TIME_BUCKET`. Each new shape compiles once, not once per worker.

    Args:
        context: What the path shares with its engine.
        function: The traced network.
        jit: Whether ``function`` is XLA-compiled.
        row_step_cost_us: The planner's cost of one row-step (microseconds).
    """

    name = "fused"

    def __init__(
        self, context: PathContext, function: FusedFunction, jit: bool, row_step_cost_us: float
    ) -> None:
        super().__init__(context, row_step_cost_us)
        self.function = function
        self.jit = jit
        self._compiled: set[tuple[int, int]] = set()
        self._compile_lock = threading.Lock()

    def time_bucket(self, steps: int) -> int:
        """``max_len`` under XLA (multiples of ``TIME_BUCKET`` beyond); else ``steps``."""
        if not self.jit:
            return steps  # graph mode: dynamic shapes are free
        if steps <= self.context.max_len:
            return self.context.max_len
        return int(math.ceil(steps / TIME_BUCKET) * TIME_BUCKET)

    def run_chunk(self, matrix: IntArray, lengths: IntArray, steps: int) -> FloatArray:
        """Call the compiled function (the first call of a shape holds the compile lock)."""
        key = matrix.shape
        if key not in self._compiled:
            with self._compile_lock:  # one compilation per shape, not one per worker
                result = self.function(matrix, lengths, steps)
                self._compiled.add((int(key[0]), int(key[1])))
        else:
            result = self.function(matrix, lengths, steps)
        return np.asarray(result, dtype=np.float32)


class KerasTrimmedPath(TrimmedPath):
    """The Keras model on trimmed chunks (masked networks the fused path does not know).

    Exact because a masked step keeps its state: a row's result depends only on its tokens.
    """

    name = "keras-trimmed"

    def time_bucket(self, steps: int) -> int:
        """``steps``: the graph takes any width."""
        return steps

    def run_chunk(self, matrix: IntArray, lengths: IntArray, steps: int) -> FloatArray:
        """The Keras model on the chunk's first ``steps`` columns."""
        return np.asarray(self.context.keras_fn(matrix[:, : max(steps, 1)]), dtype=np.float32)
