"""Length-aware micro-batches: ragged id rows → sorted, bucket-sized, trimmed chunks.

Rows are sorted by length (longest first) and cut into chunks whose row counts come from a
few fixed buckets (8 … 256). A small dynamic program (:func:`plan_chunks`) picks the cut
points that minimise the estimated cost ``Σ call + T_chunk * step(rows)``, so padding is
only computed where it is cheaper than another call. Each chunk is trimmed to its longest
member (:meth:`RaggedIds.chunk_matrix`); outputs are written back in input order.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from model.engine.arrays import IntArray, RowArray
from model.vocabulary import PAD_INDEX


@dataclass(frozen=True)
class Chunk:
    """One compiled call: ``rows`` (indices into the call's inputs) padded to ``bucket`` rows.

    Attributes:
        rows: ``(n,) int64`` input positions, longest first.
        bucket: Row count of the compiled shape (``>= len(rows)``).
        steps: Recurrent steps (longest row's length, at least 1).
    """

    rows: RowArray
    bucket: int
    steps: int


def plan_chunks(
    lengths: IntArray,
    row_buckets: Sequence[int],
    call_cost: float,
    step_cost: float,
    row_step_cost: float,
    max_bucket: int | None = None,
) -> list[Chunk]:
    """Sort rows by length and cut them into bucket-sized chunks of least estimated cost.

    A chunk of ``b`` rows starting at sorted position ``i`` costs
    ``call_cost + max(L_i, 1) * (step_cost + b * row_step_cost)``; a dynamic program over the
    sorted positions picks the cheapest sequence of bucket sizes (``O(n * buckets)``).

    Args:
        lengths: ``(n,) int32`` real-token counts.
        row_buckets: Allowed row counts, ascending.
        call_cost, step_cost, row_step_cost: Cost model (any consistent unit).
        max_bucket: Largest bucket to use (e.g. to leave work for every worker).

    Returns:
        Chunks covering every row exactly once, longest rows first.
    """
    n = len(lengths)
    if n == 0:
        return []
    order = np.argsort(-lengths, kind="stable")
    sorted_len = np.maximum(lengths[order], 1).astype(np.float64)
    buckets = [b for b in row_buckets if max_bucket is None or b <= max_bucket] or [row_buckets[0]]
    best = np.full(n + 1, np.inf)
    best[n] = 0.0
    choice = np.zeros(n + 1, dtype=np.int64)
    for i in range(n - 1, -1, -1):
        steps = sorted_len[i]
        for b in buckets:
            j = min(n, i + b)
            cost = call_cost + steps * (step_cost + b * row_step_cost) + best[j]
            if cost < best[i]:
                best[i] = cost
                choice[i] = b
            if i + b >= n:
                break  # bigger buckets only add padding rows
    chunks = []
    i = 0
    while i < n:
        b = int(choice[i])
        rows = order[i : i + b]
        chunks.append(Chunk(rows, b, int(sorted_len[i])))
        i += b
    return chunks


def largest_bucket(rows: int, workers: int, row_buckets: Sequence[int]) -> int | None:
    """The largest bucket that still leaves a chunk for every worker, or ``None`` (no limit).

    Only limits batches of more than ``row_buckets[0]`` rows run by more than one worker.
    """
    if workers <= 1 or rows <= row_buckets[0]:
        return None
    per_worker = -(-rows // workers)
    fitting = [b for b in row_buckets if b <= max(per_worker, 1)]
    return fitting[-1] if fitting else row_buckets[0]


def slice_bounds(rows: int, slices: int, min_slice_rows: int) -> Iterator[tuple[int, int]]:
    """``[lo, hi)`` bounds of at most ``slices`` near-equal slices of ``rows`` texts.

    Only slices of at least ``min_slice_rows`` texts are made (always at least one slice).
    """
    count = max(1, min(slices, rows // max(1, min_slice_rows)))
    bounds = np.linspace(0, rows, count + 1).round().astype(int)
    for lo, hi in itertools.pairwise(bounds.tolist()):
        if hi > lo:
            yield int(lo), int(hi)


def check_id_matrix(ids: IntArray, id_limit: int) -> IntArray:
    """``ids`` as an array, after checking it is a ``(batch, seq_len)`` matrix of valid ids.

    Raises:
        ValueError: ``ids`` is not two-dimensional, or an id is outside ``[0, id_limit)``
            (XLA clamps out-of-range gathers instead of failing like Keras, so they are
            refused here).
    """
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise ValueError(f"expected a (batch, seq_len) matrix, got shape {ids.shape}")
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= id_limit):
        raise ValueError(f"ids must lie in [0, {id_limit}), got [{ids.min()}, {ids.max()}]")
    return ids


@dataclass(frozen=True)
class RaggedIds:
    """Unpadded id rows, stored flat.

    Attributes:
        flat: ``(total,) int32`` all rows' ids concatenated, in row order.
        starts: ``(n,) int64`` where each row begins in ``flat``.
        lengths: ``(n,) int32`` each row's length.
    """

    flat: IntArray
    starts: RowArray
    lengths: IntArray

    @classmethod
    def from_sequences(cls, sequences: Sequence[Sequence[int]]) -> RaggedIds:
        """Rows of ids as given (already truncated; possibly empty)."""
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int32, count=len(sequences))
        total = int(lengths.sum())
        flat = np.fromiter(itertools.chain.from_iterable(sequences), dtype=np.int32, count=total)
        return cls(flat, _starts(lengths), lengths)

    @classmethod
    def from_padded(cls, ids: IntArray) -> RaggedIds:
        """The non-padding ids of each row of a ``(batch, seq_len)`` matrix, padding anywhere."""
        real = ids != PAD_INDEX
        lengths = real.sum(axis=1).astype(np.int32)
        flat = ids[real].astype(np.int32)  # row-major: each row's real ids in order
        return cls(flat, _starts(lengths), lengths)

    def chunk_matrix(self, chunk: Chunk, width: int) -> tuple[IntArray, IntArray]:
        """The chunk's ``(bucket, width) int32`` left-aligned id matrix and ``(bucket,)`` lengths.

        Rows beyond ``len(chunk.rows)`` are empty (length 0, all padding).
        """
        lengths = np.zeros(chunk.bucket, dtype=np.int32)
        k = len(chunk.rows)
        lengths[:k] = self.lengths[chunk.rows]
        columns = np.arange(width, dtype=np.int64)
        starts = np.zeros(chunk.bucket, dtype=np.int64)
        starts[:k] = self.starts[chunk.rows]
        valid = columns[np.newaxis, :] < lengths[:, np.newaxis]
        index = np.where(valid, starts[:, np.newaxis] + columns[np.newaxis, :], 0)
        source = self.flat if len(self.flat) else np.zeros(1, dtype=np.int32)
        matrix = np.where(valid, source[index], PAD_INDEX).astype(np.int32, copy=False)
        return matrix, lengths


def _starts(lengths: IntArray) -> RowArray:
    """``(n,) int64`` offsets of rows of the given lengths laid end to end."""
    starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return starts
