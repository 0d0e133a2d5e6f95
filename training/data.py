"""Labelled text datasets: CSV loading, named datasets under a data directory, splits."""

from __future__ import annotations

import csv
import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

#: Environment variable naming the data directory (``--data-dir`` wins over it).
DATA_DIR_ENV = "CLASSIFIER_DATA_DIR"


class DatasetError(Exception):
    """A dataset file is missing or malformed; the message says which file and what to do."""


@dataclass(frozen=True)
class TextDataset:
    """Texts with their string labels, in file order.

    Attributes:
        texts: One document per row.
        labels: Class name per row (same length as ``texts``).
        source: File the rows came from.
        sha256: Hex digest of that file, recorded in the bundle for provenance.
    """

    texts: list[str]
    labels: list[str]
    source: Path
    sha256: str

    def __len__(self) -> int:
        return len(self.texts)

    def class_counts(self) -> dict[str, int]:
        """Rows per label, labels sorted by name."""
        return dict(sorted(Counter(self.labels).items()))


@dataclass(frozen=True)
class NamedDataset:
    """Where a named dataset lives inside the data directory and how its CSV is laid out."""

    relative_path: str
    text_column: str
    label_column: str


#: Named datasets: ``bbc`` is the BBC News CSV of the Keras tutorials (Greene & Cunningham 2006).
NAMED_DATASETS: dict[str, NamedDataset] = {
    "bbc": NamedDataset("bbc/bbc-text.csv", text_column="text", label_column="category"),
}


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """The data directory: the argument, else ``$CLASSIFIER_DATA_DIR``.

    Raises:
        DatasetError: if neither is given or the directory does not exist.
    """
    chosen = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    if chosen is None:
        raise DatasetError(
            f"no data directory: pass --data-dir or set {DATA_DIR_ENV} "
            "(in this repository's CI the datasets live in ../shared/datasets)"
        )
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise DatasetError(f"data directory {path} does not exist")
    return path


def named_dataset_path(name: str, data_dir: str | Path | None) -> tuple[Path, NamedDataset]:
    """Path of the named dataset's file in the data directory.

    Raises:
        DatasetError: unknown name, or the file is not where it should be.
    """
    if name not in NAMED_DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(sorted(NAMED_DATASETS))}")
    spec = NAMED_DATASETS[name]
    path = resolve_data_dir(data_dir) / spec.relative_path
    if not path.is_file():
        raise DatasetError(
            f"dataset {name!r} not found: expected the file {path.name} in {path.parent}"
        )
    return path, spec


def load_csv(
    path: str | Path, text_column: str, label_column: str, delimiter: str = ","
) -> TextDataset:
    """Read a CSV (with a header row) of texts and labels.

    Raises:
        DatasetError: missing file, missing column, or a row with an empty text or label.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror}") from exc
    rows = csv.DictReader(raw.decode("utf-8").splitlines(), delimiter=delimiter)
    fields = rows.fieldnames or []
    for column in (text_column, label_column):
        if column not in fields:
            raise DatasetError(f"{path}: no column {column!r}; columns are {fields}")
    texts: list[str] = []
    labels: list[str] = []
    for line, row in enumerate(rows, start=2):
        text, label = (row.get(text_column) or "").strip(), (row.get(label_column) or "").strip()
        if not text or not label:
            raise DatasetError(f"{path}:{line}: empty {text_column!r} or {label_column!r}")
        texts.append(text)
        labels.append(label)
    if not texts:
        raise DatasetError(f"{path} has no data rows")
    return TextDataset(texts, labels, path, hashlib.sha256(raw).hexdigest())


def stratified_split(
    labels: Sequence[str], test_size: float, seed: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Row indices of a stratified train/test split (scikit-learn ``train_test_split``).

    Returns:
        ``(train_indices, test_indices)``, each sorted ascending, ``int64``.
    """
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(labels))
    train, test = train_test_split(
        indices, test_size=test_size, random_state=seed, stratify=list(labels)
    )
    return np.sort(train), np.sort(test)


def stratified_subsample(labels: Sequence[str], n: int, seed: int) -> npt.NDArray[np.int64]:
    """Sorted indices of ``n`` rows keeping class proportions (for quick runs and tests)."""
    if n >= len(labels):
        return np.arange(len(labels))
    kept, _ = stratified_split(labels, test_size=1 - n / len(labels), seed=seed)
    return kept
