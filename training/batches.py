"""Length-bucketed training batches: each mini-batch is trimmed to its longest sequence.

``model.fit`` on a ``(rows, max_len)`` matrix runs every recurrent layer for ``max_len`` steps
on every batch, although most rows are mostly padding (20 Newsgroups at ``max_len`` 500: a
third of the cells hold tokens). Here each epoch shuffles the rows, sorts them by length within
pools of ``pool_batches`` batches, cuts the pools into batches and shuffles the batch order,
then trims every batch to its longest row (rounded up to a multiple of ``width_multiple``
columns, so only a few shapes get compiled). This is the bucketing of
``tf.data.Dataset.bucket_by_sequence_length`` and of the "sortish" samplers common in NLP
training loops. Masked networks give the same outputs on trimmed rows (padding never changes a
prediction), so only the batch composition changes, not what a row contributes.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import numpy.typing as npt

from model.sequences import Side
from model.vocabulary import PAD_INDEX


class LengthBucketedBatches(keras.utils.PyDataset):  # type: ignore[misc]  # Keras ships no stubs
    """Seeded, reshuffled-every-epoch batches of similar-length rows, trimmed to fit.

    Args:
        x: ``(rows, max_len) int32`` padded token ids (padding id 0).
        y: ``(rows,) int64`` class ids.
        batch_size: Rows per batch (the last batch may be smaller).
        padding: The side ``x`` was padded on: ``"post"`` keeps the first columns of a
            batch, ``"pre"`` the last.
        seed: Seeds the per-epoch shuffles (the same seed gives the same batches).
        pool_batches: Batches per sorting pool: larger pools waste less padding but make
            batches less random.
        width_multiple: Batch widths are rounded up to a multiple of this (columns).

    Raises:
        ValueError: ``x`` and ``y`` disagree in length, or ``batch_size < 1``.
    """

    def __init__(
        self,
        x: npt.NDArray[np.int32],
        y: npt.NDArray[np.int64],
        batch_size: int,
        padding: Side,
        seed: int,
        pool_batches: int = 50,
        width_multiple: int = 16,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.padding = padding
        self.pool = batch_size * pool_batches
        self.width_multiple = width_multiple
        self.lengths = np.count_nonzero(x != PAD_INDEX, axis=1)
        self._rng = np.random.default_rng(seed)
        self._batches: list[npt.NDArray[np.intp]] = []
        self.on_epoch_end()

    def __len__(self) -> int:
        """Batches per epoch."""
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
        """Batch ``index`` of this epoch: ``((rows, width) int32, (rows,) int64)``."""
        rows = self._batches[index]
        longest = max(int(self.lengths[rows].max()), 1)
        width = min(-(-longest // self.width_multiple) * self.width_multiple, self.x.shape[1])
        columns = slice(None, width) if self.padding == "post" else slice(-width, None)
        return self.x[rows, columns], self.y[rows]

    def on_epoch_end(self) -> None:
        """Draw the next epoch's batches (also called once on construction)."""
        order = self._rng.permutation(len(self.x))
        batches: list[npt.NDArray[np.intp]] = []
        for start in range(0, len(order), self.pool):
            pool = order[start : start + self.pool]
            pool = pool[np.argsort(-self.lengths[pool], kind="stable")]
            batches.extend(
                pool[i : i + self.batch_size] for i in range(0, len(pool), self.batch_size)
            )
        self._batches = [batches[i] for i in self._rng.permutation(len(batches))]
