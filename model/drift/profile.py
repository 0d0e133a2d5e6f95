"""The reference profile: the drift quantities of held-out documents, stored in the bundle.

``python -m training.fit`` writes ``drift_profile.json`` into every bundle version from the
validation split (rows the weights were not fitted on and whose words did not build the
vocabulary, so its OOV rate is what unseen text of the same source shows; the fitting rows
would understate it). The consumer and the API compare their live window with it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from model.drift.counts import QUANTITIES, DriftBins, DriftCounts, Quantity, count_documents

#: File name of the profile inside a bundle version directory.
PROFILE_FILE = "drift_profile.json"
PROFILE_FORMAT = 1


class ReferenceProfile(BaseModel):
    """Contents of ``drift_profile.json``.

    Attributes:
        documents: Reference documents counted.
        source: Where they came from (``"validation split of bbc"``).
        labels: Class names in the model's output order.
        max_len: The model input length.
        length_cuts: Inner cut points of the token-length bins (the reference's deciles).
        tokens, oov_tokens: Model-input tokens, and OOV ids among them.
        counts: Per quantity, document counts per bin.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: int = PROFILE_FORMAT
    documents: int = Field(ge=1)
    source: str
    labels: list[str] = Field(min_length=2)
    max_len: int = Field(ge=1)
    length_cuts: list[float]
    tokens: int = Field(ge=0)
    oov_tokens: int = Field(ge=0)
    counts: dict[Quantity, list[int]]

    @classmethod
    def build(
        cls,
        token_ids: Sequence[Sequence[int]],
        probabilities: npt.NDArray[np.floating],
        labels: Sequence[str],
        max_len: int,
        source: str,
    ) -> ReferenceProfile:
        """The profile of reference documents.

        Args:
            token_ids: Per document, its model-input ids (truncated to ``max_len``,
                unpadded: ``pipeline.sequence.truncate(pipeline.token_ids(text))``).
            probabilities: ``(documents, n_classes)`` the model's rows for them.
            labels: The model's labels in output order.
            max_len: The model input length.
            source: What the documents are, for people reading the file.

        Raises:
            ValueError: no documents, or shapes that do not match.
        """
        bins = DriftBins.from_reference_lengths(labels, max_len, [len(t) for t in token_ids])
        counts = count_documents(token_ids, probabilities, bins)
        return cls(
            documents=counts.documents,
            source=source,
            labels=list(labels),
            max_len=max_len,
            length_cuts=list(bins.length_cuts),
            tokens=counts.tokens,
            oov_tokens=counts.oov_tokens,
            counts={q: [int(c) for c in counts.bins[q]] for q in QUANTITIES},
        )

    @property
    def bins(self) -> DriftBins:
        """The bins live documents are counted in."""
        return DriftBins(tuple(self.labels), self.max_len, tuple(self.length_cuts))

    def as_counts(self) -> DriftCounts:
        """The reference as :class:`DriftCounts` (for the scores)."""
        return DriftCounts(
            self.documents,
            self.tokens,
            self.oov_tokens,
            {q: np.asarray(self.counts[q], dtype=np.int64) for q in QUANTITIES},
        )

    def check(self) -> None:
        """Raise ``ValueError`` unless every quantity has its bins and sums to ``documents``."""
        sizes = self.bins.sizes()
        for q in QUANTITIES:
            if q not in self.counts or len(self.counts[q]) != sizes[q]:
                raise ValueError(f"quantity {q!r} needs {sizes[q]} bins")
            if sum(self.counts[q]) != self.documents:
                raise ValueError(f"the counts of {q!r} do not sum to {self.documents}")

    def to_json(self) -> str:
        """The file's text (indented JSON)."""
        return json.dumps(self.model_dump(mode="json"), indent=1)


def load_profile(version_dir: Path, labels: Sequence[str]) -> ReferenceProfile | None:
    """The profile of a bundle version, or ``None`` if it has none (trained before it existed).

    Raises:
        ValueError: the file exists but is unreadable, inconsistent, or for other labels
            (the bundle loader turns this into a ``BundleError``).
    """
    path = version_dir / PROFILE_FILE
    if not path.is_file():
        return None
    try:
        profile = ReferenceProfile.model_validate_json(path.read_bytes())
        profile.check()
    except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise ValueError(f"unreadable {PROFILE_FILE}: {exc}") from exc
    if profile.labels != list(labels):
        raise ValueError(f"{PROFILE_FILE} lists labels {profile.labels}, the model {list(labels)}")
    return profile
