""":class:`InferenceEngine`: the engine's public face (see :mod:`model.engine` for the design)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from model.engine.arrays import FloatArray, IntArray
from model.engine.chunks import check_id_matrix
from model.engine.config import EngineConfig, EngineStats
from model.engine.paths import InferencePath, KerasFunction, PathContext, PathName
from model.engine.scheduler import ChunkScheduler
from model.engine.selection import choose_path, embedding_rows
from model.engine.spec import NetworkSpec
from model.engine.threads import ThreadSettings, configure_threads
from model.pipeline import TextPipeline


class InferenceEngine:
    """Texts or id matrices → ``(batch, n_classes) float32`` probabilities, fast and exact.

    Args:
        model: The bundle's Keras model, ``(batch, seq_len) int32 → (batch, C) float32``.
        pipeline: The bundle's preprocessing (tokenisation, ``max_len``, truncation side).
        config: Tuning knobs.

    Construction sizes TensorFlow's thread pools if nothing has yet
    (:func:`~model.engine.threads.configure_threads`), starts the worker pool, chooses and
    verifies a path (:func:`~model.engine.selection.choose_path`) and, with
    ``config.resolved_warmup()``, compiles every batch shape.

    The chosen path's name is in :attr:`path` (``fused``, ``keras-trimmed`` or ``keras-full``),
    the path object in :attr:`inference_path`, and the reason for any fallback in
    :attr:`fallback_reasons`. Thread-safe: concurrent calls share the worker pool.

    Raises:
        ValueError: a thread-count environment variable is not a non-negative integer.
    """

    def __init__(
        self, model: Any, pipeline: TextPipeline, config: EngineConfig | None = None
    ) -> None:
        self.model = model
        self.pipeline = pipeline
        self.config = config or EngineConfig()
        self.threads: ThreadSettings = configure_threads()
        self.stats = EngineStats()
        self.max_len = pipeline.sequence.max_len
        self.workers = self.config.resolved_workers()
        self._scheduler = ChunkScheduler(self.config, self.workers, self.stats)
        self._context = PathContext(
            pipeline,
            self.config,
            self.stats,
            KerasFunction(model),
            self._scheduler,
            int(model.output_shape[-1]),
            embedding_rows(model, len(pipeline.vocabulary)),
        )
        choice = choose_path(model, self._context)
        self.inference_path: InferencePath = choice.path
        self.spec: NetworkSpec | None = choice.spec
        self.folded = choice.folded
        self.fallback_reasons = choice.fallback_reasons
        if self.config.resolved_warmup():
            self.warmup()

    @property
    def path(self) -> PathName:
        """Name of the chosen path: ``fused``, ``keras-trimmed`` or ``keras-full``."""
        return self.inference_path.name

    @property
    def jit(self) -> bool:
        """Whether the chosen path runs XLA-compiled code (only ``fused`` can)."""
        return self.inference_path.jit

    @property
    def num_classes(self) -> int:
        """Width of the probability rows."""
        return self._context.num_classes

    def describe(self) -> dict[str, Any]:
        """What the engine runs: path, XLA, folding, threads, workers, fallbacks (JSON-ready)."""
        return {
            "path": self.path,
            "jit": self.jit,
            "folded_embedding": self.folded,
            "workers": self.workers,
            "intra_op_threads": self.threads.intra_op,
            "inter_op_threads": self.threads.inter_op,
            "row_buckets": list(self.config.row_buckets),
            "overlap_slices": self.config.overlap_slices,
            "fallback_reasons": list(self.fallback_reasons),
        }

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Vocabulary ids of each text, truncated to ``max_len`` like the pipeline, unpadded.

        Returns:
            One list of ids (each ``>= 1``; possibly empty) per text.
        """
        return [self._context.token_ids(text) for text in texts]

    def token_ids(self, text: str) -> list[int]:
        """Vocabulary ids of one text, truncated to ``max_len`` like the pipeline, unpadded."""
        return self._context.token_ids(text)

    def predict_proba(self, texts: Sequence[str]) -> FloatArray:
        """Class probabilities of raw texts.

        Args:
            texts: Documents (``title + " " + text`` as the consumer builds them).

        Returns:
            ``(len(texts), n_classes) float32``; rows sum to 1; row ``i`` belongs to
            ``texts[i]``. Equal within ``1e-5`` to the Keras model on
            ``pipeline.encode(texts)``.
        """
        if len(texts) == 0:
            return self._context.empty(0)
        return self.inference_path.predict_texts(texts)

    def predict_token_ids(self, sequences: Sequence[Sequence[int]]) -> FloatArray:
        """Probabilities of already-encoded, unpadded id sequences.

        Sequences longer than ``max_len`` are only valid on the trimmed paths (``keras-full``
        pads and truncates them like the pipeline).

        Returns:
            ``(len(sequences), n_classes) float32`` in input order.
        """
        if len(sequences) == 0:
            return self._context.empty(0)
        return self.inference_path.predict_sequences(sequences)

    def predict_ids(self, ids: IntArray) -> FloatArray:
        """Probabilities of a padded ``(batch, seq_len) int32`` id matrix (0 = padding).

        With a masked model the padding (pre, post or anywhere) is dropped and the real ids
        run trimmed; otherwise the matrix runs as is, in chunks of
        :data:`~model.engine.config.FULL_LENGTH_CHUNK` rows.

        Returns:
            ``(batch, n_classes) float32``.

        Raises:
            ValueError: ``ids`` is not two-dimensional, or an id is outside the embedding.
        """
        ids = check_id_matrix(ids, self._context.id_limit)
        if len(ids) == 0:
            return self._context.empty(0)
        return self.inference_path.predict_padded(ids)

    def warmup(self) -> float:
        """Compile every row bucket at ``max_len`` columns now rather than on first use.

        Returns:
            Seconds spent.
        """
        began = time.perf_counter()
        self.inference_path.warmup()
        return time.perf_counter() - began

    def close(self) -> None:
        """Stop the worker threads (idempotent); later calls fail."""
        self._scheduler.close()
