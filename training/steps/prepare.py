"""Step 1: prepare the data: train/validation/test split and class ids."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from training.config import TrainingConfig
from training.datasets import LoadedDataset
from training.splits import Split, make_split


@dataclass(frozen=True)
class PreparedData:
    """The split rows and their class ids.

    Attributes:
        data: The rows the run was given (name, training rows, own test split, notes).
        split: Fitting, validation and held-out test rows.
        labels: Class names in class-id order (sorted), the model's output order.
        y_train: ``(len(split.train),) int64`` class ids of all training rows.
        y_test: ``(len(split.test),) int64`` class ids of the held-out rows.
    """

    data: LoadedDataset
    split: Split
    labels: tuple[str, ...]
    y_train: npt.NDArray[np.int64]
    y_test: npt.NDArray[np.int64]

    @property
    def y_fit(self) -> npt.NDArray[np.int64]:
        """``(len(split.fit_idx),) int64`` class ids of the rows the model is fitted on."""
        return self.y_train[self.split.fit_idx]

    @property
    def y_val(self) -> npt.NDArray[np.int64]:
        """``(len(split.val_idx),) int64`` class ids of the early-stopping rows."""
        return self.y_train[self.split.val_idx]


def prepare_data(data: LoadedDataset, training: TrainingConfig) -> PreparedData:
    """Split ``data`` and number its classes.

    The test rows are ``data.test`` when the dataset has its own test split, else a
    stratified, seeded ``training.test_size`` share of ``data.train``; a stratified, seeded
    ``training.validation_fraction`` of the training rows is kept for early stopping.

    Raises:
        ValueError: fewer than two classes, test labels unseen in training, or a class too
            small to stratify.
    """
    split = make_split(
        data.train, data.test, training.test_size, training.validation_fraction, training.seed
    )
    labels = tuple(sorted(set(split.train.labels)))
    if len(labels) < 2:
        raise ValueError(f"need at least two classes, found {list(labels)}")
    ids = {label: i for i, label in enumerate(labels)}
    y_train = np.array([ids[label] for label in split.train.labels], dtype=np.int64)
    y_test = np.array([ids[label] for label in split.test.labels], dtype=np.int64)
    return PreparedData(data, split, labels, y_train, y_test)
