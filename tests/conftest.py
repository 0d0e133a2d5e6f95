"""Shared fixtures: the data directory holding the real datasets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from model import Bundle

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``$CLASSIFIER_DATA_DIR``, else ``../shared/datasets`` beside the repository (CI layout)."""
    chosen = os.environ.get("CLASSIFIER_DATA_DIR") or str(REPO.parent / "shared" / "datasets")
    path = Path(chosen)
    if not (path / "bbc" / "bbc-text.csv").is_file():
        pytest.fail(
            f"datasets not found in {path}: set CLASSIFIER_DATA_DIR to the folder holding bbc/",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def bbc_csv(data_dir: Path) -> Path:
    return data_dir / "bbc" / "bbc-text.csv"


@pytest.fixture(scope="session")
def bbc_bundle(bbc_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small BiLSTM trained for a few epochs on the real BBC News train split (model dir)."""
    from model import NetworkConfig, SequenceConfig, TextConfig
    from training.data import load_csv
    from training.fit import FitConfig, TrainingConfig, fit

    out = tmp_path_factory.mktemp("models") / "bbc"
    config = FitConfig(
        text=TextConfig(),
        sequence=SequenceConfig(max_len=120),
        network=NetworkConfig(embedding_dim=32, lstm_units=(16,), dense_units=16, dropout=0.2),
        num_words=3000,
        training=TrainingConfig(epochs=3, batch_size=64, patience=3),
    )
    fit(load_csv(bbc_csv, "text", "category"), out, config, verbose=0)
    return out


@pytest.fixture(scope="session")
def bbc_candidate_bundle(bbc_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deliberately weaker BBC model (smaller vocabulary and network, one epoch): a shadow
    candidate that disagrees with :func:`bbc_bundle` on some articles."""
    from model import NetworkConfig, SequenceConfig, TextConfig
    from training.data import load_csv
    from training.fit import FitConfig, TrainingConfig, fit

    out = tmp_path_factory.mktemp("models") / "bbc-candidate"
    config = FitConfig(
        text=TextConfig(),
        sequence=SequenceConfig(max_len=40),
        network=NetworkConfig(embedding_dim=8, lstm_units=(8,), dense_units=None, dropout=0.0),
        num_words=400,
        training=TrainingConfig(epochs=1, batch_size=64, patience=1),
        baseline=False,
    )
    fit(load_csv(bbc_csv, "text", "category"), out, config, verbose=0)
    return out


@pytest.fixture(scope="session")
def livedoor_bundle(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """A small Japanese model: MeCab-segmented livedoor articles, BiLSTM with max pooling."""
    from model import NetworkConfig, SequenceConfig, TextConfig, load_bundle
    from training.data import stratified_subsample
    from training.datasets import load_named
    from training.fit import FitConfig, TrainingConfig, fit

    data = load_named("livedoor", data_dir).train
    data = data.subset(stratified_subsample(data.labels, 360, seed=0))
    out = tmp_path_factory.mktemp("models") / "livedoor"
    config = FitConfig(
        text=TextConfig(tokenizer="fugashi", unicode_nfkc=True, remove_stopwords=False),
        sequence=SequenceConfig(max_len=48),
        network=NetworkConfig(embedding_dim=16, lstm_units=(16,), dense_units=None, pooling="max"),
        num_words=3000,
        training=TrainingConfig(epochs=2, batch_size=32),
        baseline=False,
    )
    fit(data, out, config, verbose=0)
    return load_bundle(out)
