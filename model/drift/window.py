"""The sliding window: counts of the most recent documents, kept per micro-batch."""

from __future__ import annotations

from collections import deque

from model.drift.counts import DriftBins, DriftCounts


class SlidingWindow:
    """Running counts over (about) the last ``documents`` documents.

    The window keeps one :class:`DriftCounts` per observed micro-batch and drops whole
    batches from the old end while what is left still holds at least ``documents``, so it
    holds between ``documents`` and ``documents + last batch - 1`` documents once full.
    Adding and dropping are O(bins), whatever the window size.

    Args:
        bins: The reference's bins.
        documents: Window size (documents), ``>= 1``.

    Raises:
        ValueError: ``documents < 1``.
    """

    def __init__(self, bins: DriftBins, documents: int) -> None:
        if documents < 1:
            raise ValueError(f"a window holds at least one document, not {documents}")
        self.size = documents
        self.total = DriftCounts.zeros(bins)
        self._batches: deque[DriftCounts] = deque()

    def add(self, counts: DriftCounts) -> None:
        """Add a micro-batch's counts; drop the oldest batches that are no longer needed."""
        if counts.documents == 0:
            return
        self._batches.append(counts)
        self.total.add(counts)
        while self.total.documents - self._batches[0].documents >= self.size:
            self.total.subtract(self._batches.popleft())

    @property
    def documents(self) -> int:
        """Documents in the window now."""
        return self.total.documents
