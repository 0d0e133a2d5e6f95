"""Train/validation/test splits and the train/test duplicate check."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from training.data import TextDataset, stratified_split


@dataclass(frozen=True)
class Split:
    """Rows for fitting, early stopping and the held-out evaluation.

    Attributes:
        train: All training rows (fit + validation).
        test: Held-out rows, never used for fitting, early stopping or model selection.
        fit_idx: ``int64`` indices into ``train`` that the model is fitted on.
        val_idx: ``int64`` indices into ``train`` for early stopping (validation loss).
        test_rows: ``int64`` row numbers of ``test`` in the source file when the test split
            was carved out of one file; ``None`` when the dataset has its own test file.
        own_test_split: The test rows are the dataset's own test split.
    """

    train: TextDataset
    test: TextDataset
    fit_idx: npt.NDArray[np.int64]
    val_idx: npt.NDArray[np.int64]
    test_rows: npt.NDArray[np.int64] | None
    own_test_split: bool


def make_split(
    dataset: TextDataset,
    test: TextDataset | None,
    test_size: float,
    validation_fraction: float,
    seed: int,
) -> Split:
    """Split rows for training.

    Args:
        dataset: Training rows, or all rows when ``test`` is ``None``.
        test: The dataset's own test split, if it has one.
        test_size: Share of ``dataset`` held out (stratified, seeded) when ``test`` is None.
        validation_fraction: Share of the training rows carved out (stratified, seeded) for
            early stopping.
        seed: Seed of both stratified splits (scikit-learn ``train_test_split``).

    Raises:
        ValueError: ``test`` has labels that the training rows lack, or a class is too small
            to stratify.
    """
    if test is None:
        train_rows, test_rows = stratified_split(dataset.labels, test_size, seed)
        train, held_out = dataset.subset(train_rows), dataset.subset(test_rows)
        rows: npt.NDArray[np.int64] | None = test_rows
    else:
        train, held_out, rows = dataset, test, None
        unseen = set(test.labels) - set(dataset.labels)
        if unseen:
            raise ValueError(f"test labels missing from the training data: {sorted(unseen)}")
    fit_idx, val_idx = stratified_split(train.labels, validation_fraction, seed)
    return Split(train, held_out, fit_idx, val_idx, rows, test is not None)


@dataclass(frozen=True)
class Duplicates:
    """Test texts that also occur in the training rows (whitespace-normalised, exact).

    Attributes:
        test_rows: Positions in the test split whose text is also a training text.
        examples: Up to five such texts, shortened to 100 characters.
    """

    test_rows: list[int]
    examples: list[str]

    @property
    def count(self) -> int:
        """Number of duplicated test rows."""
        return len(self.test_rows)


def find_duplicates(train_texts: Sequence[str], test_texts: Sequence[str]) -> Duplicates:
    """Find test texts equal to a training text after collapsing whitespace.

    A model can score such rows by memory, so the report states how many there are
    (BBC News has some: the tutorial CSV holds a few articles twice).
    """
    seen = {" ".join(t.split()) for t in train_texts}
    rows = [i for i, t in enumerate(test_texts) if " ".join(t.split()) in seen]
    examples = [" ".join(test_texts[i].split())[:100] for i in rows[:5]]
    return Duplicates(rows, examples)
