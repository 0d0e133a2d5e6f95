"""The benchmark's message streams and its model bundle (trained once, cached)."""

from __future__ import annotations

import csv
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from model.bundle import sha256_of

StreamName = Literal["short", "long"]
STREAMS: tuple[StreamName, ...] = ("short", "long")

#: Bundle trained by the benchmark (the seeds' defaults: BiLSTM 64, max_len 200, 5,000 words).
DEFAULT_BUNDLE_DIR = Path("artifacts") / "bench" / "model-ag-news-bilstm-len200"
AG_NEWS_CLASSES = {"1": "World", "2": "Sports", "3": "Business", "4": "Sci/Tech"}


class DataError(Exception):
    """A dataset file is missing or malformed; the message names the file."""


@dataclass(frozen=True)
class Stream:
    """Documents as the consumer's model sees them (``title + " " + text``), in stream order.

    Attributes:
        name: ``short`` (AG News test) or ``long`` (BBC News).
        texts: ``messages`` documents: the source repeated (cycled) to the requested count.
        source: The file read.
        distinct: The source's documents, once each (``texts`` cycles through them).
    """

    name: StreamName
    texts: list[str]
    source: Path
    distinct: list[str]


def _require(path: Path) -> Path:
    if not path.is_file():
        raise DataError(f"{path} not found; pass --data-dir (the folder holding ag_news/ and bbc/)")
    return path


def ag_news_rows(path: Path) -> list[tuple[str, str]]:
    """``(label, document)`` rows of an AG News CSV (no header: class, title, description).

    Raises:
        DataError: missing file or a row without three columns.
    """
    rows = []
    with _require(path).open(newline="", encoding="utf-8") as f:
        for number, row in enumerate(csv.reader(f), start=1):
            if len(row) != 3:
                raise DataError(f"{path}:{number}: expected class,title,description")
            label, title, description = row
            rows.append((AG_NEWS_CLASSES.get(label, label), f"{title} {description}"))
    return rows


def bbc_texts(path: Path) -> list[str]:
    """Article texts of the BBC News CSV (header ``category,text``).

    Raises:
        DataError: missing file or no ``text`` column.
    """
    with _require(path).open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "text" not in reader.fieldnames:
            raise DataError(f"{path}: no 'text' column")
        return [row["text"] for row in reader]


def load_stream(name: StreamName, data_dir: Path, messages: int) -> Stream:
    """The ``short`` or ``long`` stream, cycled to exactly ``messages`` documents.

    Raises:
        DataError: missing or malformed source file.
        ValueError: ``messages < 1`` or an unknown stream name.
    """
    if messages < 1:
        raise ValueError(f"messages must be >= 1, got {messages}")
    if name == "short":
        source = data_dir / "ag_news" / "test.csv"
        distinct = [doc for _, doc in ag_news_rows(source)]
    elif name == "long":
        source = data_dir / "bbc" / "bbc-text.csv"
        distinct = bbc_texts(source)
    else:
        raise ValueError(f"unknown stream {name!r}; expected one of {STREAMS}")
    if not distinct:
        raise DataError(f"{source} has no rows")
    texts = list(itertools.islice(itertools.cycle(distinct), messages))
    return Stream(name, texts, source, distinct)


def ensure_bundle(
    data_dir: Path,
    bundle_dir: Path = DEFAULT_BUNDLE_DIR,
    epochs: int = 1,
    limit: int | None = None,
) -> Path:
    """The benchmark bundle's model directory, training it first if it has no ``current``.

    Trains the seeds' default network (BiLSTM 64, max_len 200, 5,000 words, stopwords
    removed) on the AG News 20k training subset with ``training.fit.fit`` for ``epochs``
    epochs. The weights do not change the cost of inference, only that it is a real model.

    Args:
        data_dir: Folder holding ``ag_news/train-subset-20k.csv``.
        bundle_dir: Model directory (reused when it holds a ``current`` bundle).
        epochs: Training epochs.
        limit: Train on ``limit`` rows spread over the file only (quick runs).

    Returns:
        ``bundle_dir``.

    Raises:
        DataError: the training CSV is missing or malformed.
    """
    if (bundle_dir / "current").exists():
        return bundle_dir
    from model import NetworkConfig, SequenceConfig, TextConfig
    from training import fit as fit_module
    from training.data import TextDataset
    from training.datasets import LoadedDataset

    source = data_dir / "ag_news" / "train-subset-20k.csv"
    rows = ag_news_rows(source)
    if limit and limit < len(rows):  # every k-th row: the file is grouped by class
        rows = rows[:: len(rows) // limit][:limit]
    dataset = TextDataset(
        [doc for _, doc in rows], [label for label, _ in rows], source, sha256_of(source)
    )
    config = fit_module.FitConfig(
        text=TextConfig(),
        sequence=SequenceConfig(max_len=200),
        network=NetworkConfig(),
        num_words=5000,
        training=fit_module.TrainingConfig(epochs=epochs, batch_size=64, patience=1),
        baseline=False,
    )
    print(
        f"» training the benchmark bundle on {len(rows)} AG News rows ({epochs} epoch(s)) "
        f"into {bundle_dir}",
        file=sys.stderr,
        flush=True,
    )
    data = LoadedDataset("ag_news train-subset-20k (benchmark)", dataset, None)
    fit_module.fit(data, bundle_dir, config, verbose=0)
    return bundle_dir


def mean_real_tokens(stream: Stream, pipeline: Any) -> float:
    """Average non-padding ids per message of ``stream`` after truncation to ``max_len``.

    Tokenises each distinct document once and weights it by how often the stream repeats it.
    """
    n, d = len(stream.texts), len(stream.distinct)
    if n == 0:
        return 0.0
    max_len = pipeline.sequence.max_len
    lengths = [min(len(pipeline.token_ids(t)), max_len) for t in stream.distinct]
    full, rest = divmod(n, d)
    return float(full * sum(lengths) + sum(lengths[:rest])) / n
