"""Runs the chunks of the trimmed paths on a small thread pool and counts the work.

Compiled calls release the GIL, so chunks run on the cores while the calling thread
tokenises the next slice of the batch (see :meth:`model.engine.paths.TrimmedPath.predict_texts`).
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from model.engine.arrays import FloatArray, IntArray
from model.engine.chunks import Chunk, RaggedIds, largest_bucket, plan_chunks
from model.engine.config import EngineConfig, EngineStats


class ChunkKernel(Protocol):
    """What runs one chunk: its cost for the planner, its compiled width, and the call itself.

    Attributes:
        row_step_cost_us: The planner's cost of one row-step (microseconds).
    """

    row_step_cost_us: float

    def time_bucket(self, steps: int) -> int:
        """Columns of the matrix handed to :meth:`run_chunk` for a chunk of ``steps`` steps."""
        ...

    def run_chunk(self, matrix: IntArray, lengths: IntArray, steps: int) -> FloatArray:
        """Left-aligned ids ``(bucket, width) int32`` and lengths ``(bucket,) int32`` → probs.

        Returns ``(bucket, C) float32``; ``steps`` is the longest length (at least 1).
        """
        ...


class ChunkScheduler:
    """Plans ragged rows into chunks and runs each on a worker thread.

    Args:
        config: Row buckets and the planner's cost model.
        workers: Worker threads (chunks run concurrently).
        stats: Where rows, tokens, chunks and inference time are counted.
    """

    def __init__(self, config: EngineConfig, workers: int, stats: EngineStats) -> None:
        self.config = config
        self.workers = workers
        self.stats = stats
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="inference")

    def submit(
        self, ragged: RaggedIds, kernel: ChunkKernel, *, count: bool = True
    ) -> list[tuple[Chunk, Future[FloatArray]]]:
        """Plan ``ragged``'s rows into chunks and start each on the pool.

        Args:
            ragged: The rows (each at most as long as the compiled width allows).
            kernel: Runs the chunks.
            count: Add the rows, tokens and chunks to :attr:`stats` (False for self-checks
                and warm-up; inference time is always counted).

        Returns:
            Each chunk with the future of its ``(bucket, C) float32`` probabilities; row ``i``
            of a result belongs to input row ``chunk.rows[i]`` (rows past ``len(chunk.rows)``
            are padding).
        """
        config = self.config
        chunks = plan_chunks(
            ragged.lengths,
            config.row_buckets,
            config.call_cost_us,
            config.step_cost_us,
            kernel.row_step_cost_us,
            largest_bucket(len(ragged.lengths), self.workers, config.row_buckets),
        )
        submitted = []
        for chunk in chunks:
            matrix, lengths = ragged.chunk_matrix(chunk, kernel.time_bucket(chunk.steps))
            if count:
                self.stats.add_chunk(
                    len(chunk.rows), int(lengths.sum()), chunk.bucket * chunk.steps
                )
            future = self._pool.submit(self._run, kernel, matrix, lengths, chunk.steps)
            submitted.append((chunk, future))
        return submitted

    def run(
        self, ragged: RaggedIds, kernel: ChunkKernel, out: FloatArray, *, count: bool = True
    ) -> FloatArray:
        """:meth:`submit`, then write each row's probabilities to ``out[row]``; returns ``out``."""
        for chunk, future in self.submit(ragged, kernel, count=count):
            out[chunk.rows] = future.result()[: len(chunk.rows)]
        return out

    def close(self) -> None:
        """Stop the worker threads (idempotent); later submissions fail."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(
        self, kernel: ChunkKernel, matrix: IntArray, lengths: IntArray, steps: int
    ) -> FloatArray:
        """One chunk on a worker thread, timed into ``stats.infer_s``."""
        began = time.perf_counter()
        probs = kernel.run_chunk(matrix, lengths, steps)
        self.stats.add_infer_time(time.perf_counter() - began)
        return probs
