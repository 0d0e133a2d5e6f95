"""The engine's tuning knobs (:class:`EngineConfig`), fixed sizes, and work counters."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from model.engine.env import WARMUP_ENV, WORKERS_ENV, env_flag, env_int
from model.engine.threads import cpu_count

#: Row counts a chunk may have (padded up with empty rows at the tail of a batch).
ROW_BUCKETS: tuple[int, ...] = (8, 16, 32, 64, 128, 256)
#: Column granularity of compiled shapes wider than ``max_len`` (only ``predict_ids`` makes them).
TIME_BUCKET = 32
#: Rows per call of the unmasked (``keras-full``) path, which runs full-length matrices.
FULL_LENGTH_CHUNK = 512
#: Largest embedding-table * input-kernel product folded into a lookup table (bytes).
MAX_FOLDED_TABLE_BYTES = 256 << 20


@dataclass(frozen=True)
class EngineConfig:
    """Tuning knobs of :class:`~model.engine.InferenceEngine` (defaults suit a 2-core x86 server).

    Attributes:
        workers: Chunks run concurrently; default ``$CLASSIFIER_ENGINE_WORKERS`` else
            :func:`~model.engine.threads.cpu_count`.
        jit: Compile the fused path with XLA (falls back to a plain graph if XLA fails).
        row_buckets: Allowed chunk row counts, ascending.
        overlap_slices: Tokenise a call's texts in this many slices and start inference on
            each slice while the next is tokenised (1 = tokenise everything first). Only
            slices of at least ``min_slice_rows`` texts are made.
        min_slice_rows: Smallest slice worth its own sort-and-plan.
        call_cost_us, step_cost_us, row_step_cost_us: The planner's cost model of one chunk,
            ``call + T * (step + rows * row_step)`` in microseconds; ``row_step_cost_us``
            ``None`` derives it from the network's multiply-adds per token.
        tolerance: Largest absolute probability difference accepted by the self-check.
        self_check: Verify the chosen path against the Keras model at construction.
        warmup: Compile every row bucket at construction (a few seconds) instead of on first
            use; default ``$CLASSIFIER_ENGINE_WARMUP`` (``1``/``true``) else False.
    """

    workers: int | None = None
    jit: bool = True
    row_buckets: tuple[int, ...] = ROW_BUCKETS
    overlap_slices: int = 2
    min_slice_rows: int = 64
    call_cost_us: float = 150.0
    step_cost_us: float = 6.0
    row_step_cost_us: float | None = None
    tolerance: float = 1e-5
    self_check: bool = True
    warmup: bool | None = None

    def resolved_workers(self, environ: Mapping[str, str] | None = None) -> int:
        """``workers``, else ``$CLASSIFIER_ENGINE_WORKERS`` (0 = unset), else the CPU count; >= 1.

        Raises:
            ValueError: the environment variable is not a non-negative integer.
        """
        if self.workers is not None:
            return max(1, self.workers)
        env = env_int(WORKERS_ENV, environ)
        return max(1, env if env else cpu_count())

    def resolved_warmup(self, environ: Mapping[str, str] | None = None) -> bool:
        """``warmup``, else ``$CLASSIFIER_ENGINE_WARMUP`` (``1``/``true``/``yes``)."""
        if self.warmup is not None:
            return self.warmup
        return env_flag(WARMUP_ENV, environ)


@dataclass
class EngineStats:
    """Work done since construction (for throughput and useful-work reporting); thread-safe.

    Attributes:
        rows: Sequences predicted.
        real_tokens: Non-padding tokens in those sequences (after truncation).
        computed_tokens: Row-steps the recurrent layers actually ran (``rows * steps`` per
            chunk, bucket padding rows included); ``real_tokens / computed_tokens`` is the
            share of recurrent compute spent on real tokens.
        chunks: Compiled calls made.
        encode_s, infer_s: Wall seconds spent tokenising (caller thread) and inside compiled
            calls (summed over workers, so it can exceed elapsed time).
    """

    rows: int = 0
    real_tokens: int = 0
    computed_tokens: int = 0
    chunks: int = 0
    encode_s: float = 0.0
    infer_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add_chunk(self, rows: int, real_tokens: int, computed_tokens: int) -> None:
        """Count one compiled call of ``rows`` sequences."""
        with self.lock:
            self.rows += rows
            self.real_tokens += real_tokens
            self.computed_tokens += computed_tokens
            self.chunks += 1

    def add_encode_time(self, seconds: float) -> None:
        """Add wall seconds spent tokenising."""
        with self.lock:
            self.encode_s += seconds

    def add_infer_time(self, seconds: float) -> None:
        """Add wall seconds spent inside one compiled call."""
        with self.lock:
            self.infer_s += seconds

    def as_dict(self) -> dict[str, float | int]:
        """A JSON-ready copy of the counters."""
        with self.lock:
            return {
                "rows": self.rows,
                "real_tokens": self.real_tokens,
                "computed_tokens": self.computed_tokens,
                "chunks": self.chunks,
                "encode_s": round(self.encode_s, 6),
                "infer_s": round(self.infer_s, 6),
            }
