"""The five text-health quantities of a set of documents, as bin counts.

Every quantity is measured on what the model sees: a document's ``token_ids`` after
stopwords and the vocabulary lookup, truncated to ``max_len``, unpadded (what
:meth:`model.Bundle.token_ids` returns), and its probabilities:

============== ================================================= ==========================
quantity        per document                                      bins
============== ================================================= ==========================
``label``       top (published) label                             the model's labels
``confidence``  top probability                                   :data:`CONFIDENCE_CUTS`
``length``      tokens in the model input (``0 … max_len``)       deciles of the reference
``oov``         share of its tokens that are the OOV id           :data:`OOV_CUTS`
``truncation``  whether it fills ``max_len`` (tokens were cut)     no / yes
============== ================================================= ==========================

A document of exactly ``max_len`` tokens counts as truncated (rare; the model input alone
cannot tell the two apart, and the reference counts it the same way).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from model.vocabulary import OOV_INDEX

Quantity = Literal["label", "confidence", "length", "oov", "truncation"]
#: In the order dashboards and logs list them.
QUANTITIES: tuple[Quantity, ...] = ("label", "confidence", "length", "oov", "truncation")

#: Inner cut points of the confidence bins: [0, .2], (.2, .3], … (.99, 1].
CONFIDENCE_CUTS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
#: Inner cut points of the per-document OOV share: {0}, (0, .02], (.02, .05], … (.5, 1].
OOV_CUTS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
#: Length bins are the reference's deciles (at most 10 bins; fewer when lengths tie).
LENGTH_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class DriftBins:
    """How documents are binned: the same for the reference and the live window.

    Attributes:
        labels: Class names in the model's output order.
        max_len: The model input length (``sequence.max_len``).
        length_cuts: Inner cut points of the token-length bins (``x <= cut`` goes left).
    """

    labels: tuple[str, ...]
    max_len: int
    length_cuts: tuple[float, ...]

    @classmethod
    def from_reference_lengths(
        cls, labels: Sequence[str], max_len: int, lengths: Sequence[int]
    ) -> DriftBins:
        """Bins whose length cuts are the deciles of the reference ``lengths`` (tokens)."""
        if len(lengths) == 0:
            raise ValueError("a reference needs at least one document")
        cuts = np.unique(np.quantile(np.asarray(lengths, dtype=np.float64), LENGTH_QUANTILES))
        cuts = cuts[cuts < max_len]  # the top bin always ends at max_len
        return cls(tuple(labels), max_len, tuple(float(c) for c in cuts))

    def sizes(self) -> dict[Quantity, int]:
        """Number of bins per quantity."""
        return {
            "label": len(self.labels),
            "confidence": len(CONFIDENCE_CUTS) + 1,
            "length": len(self.length_cuts) + 1,
            "oov": len(OOV_CUTS) + 1,
            "truncation": 2,
        }


@dataclass
class DriftCounts:
    """Bin counts of some documents, plus the token totals behind the OOV rate.

    Attributes:
        documents: Documents counted.
        tokens: Their model-input tokens in all.
        oov_tokens: Of those, OOV ids.
        bins: Per quantity, ``(bins,) int64`` document counts (they sum to ``documents``).
    """

    documents: int
    tokens: int
    oov_tokens: int
    bins: dict[Quantity, IntArray]

    @classmethod
    def zeros(cls, bins: DriftBins) -> DriftCounts:
        """No documents, over ``bins``."""
        return cls(0, 0, 0, {q: np.zeros(n, dtype=np.int64) for q, n in bins.sizes().items()})

    def add(self, other: DriftCounts) -> None:
        """Add ``other``'s counts to these (same bins)."""
        self._combine(other, 1)

    def subtract(self, other: DriftCounts) -> None:
        """Remove ``other``'s counts, earlier added, from these."""
        self._combine(other, -1)

    def _combine(self, other: DriftCounts, sign: int) -> None:
        self.documents += sign * other.documents
        self.tokens += sign * other.tokens
        self.oov_tokens += sign * other.oov_tokens
        for q, counts in other.bins.items():
            self.bins[q] += sign * counts

    @property
    def oov_rate(self) -> float:
        """OOV tokens / tokens (0 with no tokens)."""
        return self.oov_tokens / self.tokens if self.tokens else 0.0

    @property
    def truncated_share(self) -> float:
        """Documents that fill ``max_len`` / documents (0 with none)."""
        return int(self.bins["truncation"][1]) / self.documents if self.documents else 0.0

    def shares(self, quantity: Quantity) -> npt.NDArray[np.float64]:
        """``(bins,) float64`` shares of ``quantity`` (zeros with no documents)."""
        counts = self.bins[quantity].astype(np.float64)
        return counts / self.documents if self.documents else counts


def count_documents(
    token_ids: Sequence[Sequence[int]],
    probabilities: npt.NDArray[np.floating],
    bins: DriftBins,
) -> DriftCounts:
    """Bin ``len(token_ids)`` documents (see the module docstring).

    Args:
        token_ids: Per document, its model-input ids (unpadded, at most ``max_len``; 0 is
            never among them).
        probabilities: ``(documents, n_classes)`` rows in the order of ``bins.labels``.
        bins: The reference's bins.

    Raises:
        ValueError: ``probabilities`` does not have one row per document and one column
            per label.
    """
    n = len(token_ids)
    probs = np.asarray(probabilities)
    if probs.shape != (n, len(bins.labels)):
        raise ValueError(
            f"probabilities have shape {probs.shape}; expected ({n}, {len(bins.labels)})"
        )
    lengths = np.fromiter((len(ids) for ids in token_ids), dtype=np.int64, count=n)
    oov = np.fromiter((ids.count(OOV_INDEX) for ids in token_ids), dtype=np.int64, count=n)
    top = np.argmax(probs, axis=1) if n else np.zeros(0, dtype=np.int64)
    confidence = probs[np.arange(n), top] if n else np.zeros(0)
    oov_share = np.divide(oov, lengths, out=np.zeros(n), where=lengths > 0)
    sizes = bins.sizes()

    def histogram(indices: npt.NDArray[np.intp], size: int) -> IntArray:
        return np.bincount(indices, minlength=size).astype(np.int64)

    return DriftCounts(
        documents=n,
        tokens=int(lengths.sum()),
        oov_tokens=int(oov.sum()),
        bins={
            "label": histogram(top, sizes["label"]),
            "confidence": histogram(
                np.searchsorted(CONFIDENCE_CUTS, confidence, side="left"), sizes["confidence"]
            ),
            "length": histogram(
                np.searchsorted(bins.length_cuts, lengths, side="left"), sizes["length"]
            ),
            "oov": histogram(np.searchsorted(OOV_CUTS, oov_share, side="left"), sizes["oov"]),
            "truncation": histogram((lengths >= bins.max_len).astype(np.intp), 2),
        },
    )
