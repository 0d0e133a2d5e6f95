"""Labelled text datasets: generic loaders (CSV/TSV/JSONL tables, one folder per class), splits.

The named datasets (``bbc``, ``ag_news``, …) are in :mod:`training.datasets`; they use
these loaders.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

#: Environment variable naming the data directory (``--data-dir`` wins over it).
DATA_DIR_ENV = "CLASSIFIER_DATA_DIR"

TableFormat = Literal["csv", "tsv", "jsonl"]
_SUFFIX_FORMATS: dict[str, TableFormat] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


class DatasetError(Exception):
    """A dataset file is missing or malformed; the message says which file and what to do."""


@dataclass(frozen=True)
class TextDataset:
    """Texts with their string labels, in file order.

    Attributes:
        texts: One document per row.
        labels: Class name per row (same length as ``texts``).
        source: File or folder the rows came from.
        sha256: Hex digest of that file (of all files, for a folder), recorded in the bundle.
        rows: Row number in ``source`` of each row, when this is a subset of the file
            (``None``: all rows, in file order).
    """

    texts: list[str]
    labels: list[str]
    source: Path
    sha256: str
    rows: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def class_counts(self) -> dict[str, int]:
        """Rows per label, labels sorted by name."""
        return dict(sorted(Counter(self.labels).items()))

    def source_row(self, index: int) -> int:
        """Row number in ``source`` of row ``index`` of this dataset."""
        return self.rows[index] if self.rows is not None else index

    def subset(self, indices: Sequence[int] | npt.NDArray[np.int64]) -> TextDataset:
        """The rows at ``indices`` (same source and sha256; ``rows`` tracks the file rows)."""
        return TextDataset(
            [self.texts[i] for i in indices],
            [self.labels[i] for i in indices],
            self.source,
            self.sha256,
            tuple(self.source_row(int(i)) for i in indices),
        )


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


def table_format(path: Path, explicit: TableFormat | None = None) -> TableFormat:
    """The format of a table file: ``explicit``, else from its suffix (.csv/.tsv/.jsonl).

    Raises:
        DatasetError: the suffix is not one of :data:`_SUFFIX_FORMATS`.
    """
    if explicit is not None:
        return explicit
    try:
        return _SUFFIX_FORMATS[path.suffix.lower()]
    except KeyError:
        raise DatasetError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}; "
            f"use one of {sorted(_SUFFIX_FORMATS)} or pass the format (csv, tsv, jsonl)"
        ) from None


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror}") from exc


def _rows(raw: bytes, path: Path, fmt: TableFormat, header: bool) -> list[dict[str, Any]]:
    """Rows as dicts; header-less CSV/TSV columns are named by position (``"0"``, ``"1"``)."""
    text = raw.decode("utf-8-sig")
    if fmt == "jsonl":
        rows: list[dict[str, Any]] = []
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{line_no}: invalid JSON: {exc.msg}") from exc
            if not isinstance(row, dict):
                raise DatasetError(f"{path}:{line_no}: expected a JSON object per line")
            rows.append(row)
        return rows
    delimiter = "\t" if fmt == "tsv" else ","
    # newline="" semantics: quoted fields may contain newlines (BANKING77 has some).
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    records = list(reader)
    if header:
        if not records:
            return []
        names = records[0]
        return [dict(zip(names, r, strict=False)) for r in records[1:]]
    return [{str(i): v for i, v in enumerate(r)} for r in records]


def load_table(
    path: str | Path,
    text_columns: str | Sequence[str],
    label_column: str,
    fmt: TableFormat | None = None,
    header: bool = True,
    label_names: dict[str, str] | None = None,
) -> TextDataset:
    """Read labelled texts from a CSV, TSV or JSON-lines file.

    Args:
        path: The file (UTF-8; a BOM is ignored).
        text_columns: Column(s) holding the text; several are joined with a space
            (e.g. AG News ``title`` + ``description``).
        label_column: Column holding the label (any JSON scalar in JSONL, made a string).
        fmt: ``csv``, ``tsv`` or ``jsonl``; ``None`` infers it from the suffix.
        header: CSV/TSV has a header row; without one, columns are named by position
            ``"0"``, ``"1"``, … (ignored for JSONL).
        label_names: Optional mapping of raw label values to class names (AG News' ``1``
            → ``World``); values not in it are kept as they are.

    Raises:
        DatasetError: missing file, unknown format, missing column, or a row with an empty
            text or label.
    """
    path = Path(path)
    columns = [text_columns] if isinstance(text_columns, str) else list(text_columns)
    fmt = table_format(path, fmt)
    raw = _read_bytes(path)
    rows = _rows(raw, path, fmt, header)
    if not rows:
        raise DatasetError(f"{path} has no data rows")
    first = 2 if header and fmt != "jsonl" else 1
    texts: list[str] = []
    labels: list[str] = []
    names = label_names or {}
    for line, row in enumerate(rows, start=first):
        for column in (*columns, label_column):
            if column not in row:
                raise DatasetError(
                    f"{path}:{line}: no column {column!r}; columns are {sorted(row)}"
                    + ("" if header else " (header-less: columns are named by position)")
                )
        text = " ".join(str(row[c] or "").strip() for c in columns).strip()
        label = str(row[label_column] if row[label_column] is not None else "").strip()
        if not text or not label:
            raise DatasetError(f"{path}:{line}: empty text {columns} or label {label_column!r}")
        texts.append(text)
        labels.append(names.get(label, label))
    return TextDataset(texts, labels, path, hashlib.sha256(raw).hexdigest())


def load_csv(
    path: str | Path, text_column: str, label_column: str, delimiter: str = ","
) -> TextDataset:
    """Read a CSV (or, with a tab ``delimiter``, a TSV) with a header row of texts and labels.

    Raises:
        DatasetError: missing file, missing column, or a row with an empty text or label.
    """
    fmt: TableFormat = "tsv" if delimiter == "\t" else "csv"
    return load_table(path, text_column, label_column, fmt=fmt)


def load_folder(
    path: str | Path,
    encoding: str = "utf-8",
    exclude: Collection[str] = (),
    categories: Sequence[str] | None = None,
) -> TextDataset:
    """Read a directory-per-class corpus (``<path>/<label>/<any file>``), one text per file.

    The layout and reader are scikit-learn's ``sklearn.datasets.load_files``; files are
    taken in sorted order (no shuffling).

    Args:
        path: Folder whose sub-folders are the classes.
        encoding: Text encoding of the files (20 Newsgroups: ``latin-1``).
        exclude: File names to skip in every class folder (livedoor's ``LICENSE.txt``).
        categories: Only these class folders (default: all).

    Returns:
        A dataset whose ``sha256`` covers every kept file's relative path and bytes.

    Raises:
        DatasetError: the folder is missing or holds no files; a file does not decode.
    """
    from sklearn.datasets import load_files

    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"folder {path} does not exist")
    try:
        bunch = load_files(
            str(path),
            categories=list(categories) if categories is not None else None,
            encoding=encoding,
            shuffle=False,
        )
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: a file is not valid {encoding}: {exc}") from exc
    texts: list[str] = []
    labels: list[str] = []
    digest = hashlib.sha256()
    skip = set(exclude)
    for text, target, filename in zip(bunch.data, bunch.target, bunch.filenames, strict=True):
        file = Path(filename)
        if file.name in skip:
            continue
        digest.update(file.relative_to(path).as_posix().encode("utf-8") + b"\0")
        digest.update(hashlib.sha256(_read_bytes(file)).digest())
        texts.append(str(text))
        labels.append(str(bunch.target_names[target]))
    if not texts:
        raise DatasetError(f"{path} has no class folders with files in them")
    return TextDataset(texts, labels, path, digest.hexdigest())


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
