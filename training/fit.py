"""Train a text classifier and write an artifact bundle: ``python -m training.fit``.

Example (the BBC News tutorial, 5 classes)::

    python -m training.fit --dataset bbc --data-dir ../shared/datasets --output models/bbc

Steps: load the CSV → stratified, seeded train/test split (80/20) → carve a validation
split from train → fit the vocabulary on the training texts only → train with early
stopping on validation loss (best weights restored) → evaluate on the held-out test split
→ write the bundle (model, vocabulary, label order, preprocessing, metrics, split).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.bundle import save_bundle
from model.network import NetworkConfig, build_model
from model.pipeline import TextPipeline
from model.sequences import SequenceConfig
from model.text import TextConfig
from training.data import (
    DatasetError,
    TextDataset,
    load_csv,
    named_dataset_path,
    stratified_split,
    stratified_subsample,
)
from training.evaluate import evaluate, format_confusion_matrix

#: File in the bundle recording the held-out rows, so anyone can re-score the same split.
SPLIT_FILE = "split.json"


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation settings.

    Attributes:
        epochs: Maximum epochs (early stopping may end sooner).
        batch_size: Sequences per gradient step.
        learning_rate: Adam/RMSprop step size.
        optimizer: ``adam`` or ``rmsprop``.
        patience: Epochs without validation-loss improvement before stopping.
        validation_fraction: Share of the training split held out for early stopping.
        test_size: Share of the dataset held out for the final evaluation.
        seed: Seeds the split, weight init and dropout (``keras.utils.set_random_seed``).
    """

    epochs: int = 12
    batch_size: int = 32
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    patience: int = 3
    validation_fraction: float = 0.1
    test_size: float = 0.2
    seed: int = 42


@dataclass(frozen=True)
class FitResult:
    """What a training run produced: the bundle directory and its held-out metrics."""

    bundle_dir: Path
    metrics: dict[str, Any]
    train_seconds: float


def fit(
    dataset: TextDataset,
    output: Path,
    text: TextConfig,
    sequence: SequenceConfig,
    network: NetworkConfig,
    num_words: int = 5000,
    training: TrainingConfig = TrainingConfig(),
    verbose: int = 2,
) -> FitResult:
    """Train on ``dataset`` and write a bundle version under ``output``.

    Args:
        dataset: Texts and string labels.
        output: Model directory (``current`` is pointed at the new version).
        text, sequence, network: Preprocessing and network shape, recorded in the bundle.
        num_words: Vocabulary cap incl. padding and OOV ids (the seeds' 5,000).
        training: Optimisation settings.
        verbose: Keras ``fit`` verbosity (2 = one line per epoch).

    Raises:
        ValueError: fewer than two classes, or a class too small to stratify.
    """
    import keras

    keras.utils.set_random_seed(training.seed)
    labels = sorted(set(dataset.labels))
    if len(labels) < 2:
        raise ValueError(f"need at least two classes, found {labels}")
    label_ids = {name: i for i, name in enumerate(labels)}
    y = np.array([label_ids[name] for name in dataset.labels], dtype=np.int64)

    train_idx, test_idx = stratified_split(dataset.labels, training.test_size, training.seed)
    train_labels = [dataset.labels[i] for i in train_idx]
    fit_pos, val_pos = stratified_split(train_labels, training.validation_fraction, training.seed)
    fit_idx, val_idx = train_idx[fit_pos], train_idx[val_pos]
    texts = dataset.texts

    pipeline = TextPipeline.fit([texts[i] for i in fit_idx], text, sequence, num_words)
    x_all = pipeline.encode(texts)
    model = build_model(network, num_words, len(labels), sequence.max_len)
    optimizer = (
        keras.optimizers.RMSprop(training.learning_rate)
        if training.optimizer == "rmsprop"
        else keras.optimizers.Adam(training.learning_rate)
    )
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=training.patience, restore_best_weights=True
    )
    started = time.perf_counter()
    history = model.fit(
        x_all[fit_idx],
        y[fit_idx],
        validation_data=(x_all[val_idx], y[val_idx]),
        epochs=training.epochs,
        batch_size=training.batch_size,
        callbacks=[stop],
        shuffle=True,
        verbose=verbose,
    )
    train_seconds = time.perf_counter() - started

    probabilities = keras.ops.convert_to_numpy(model.predict(x_all[test_idx], verbose=0))
    metrics = evaluate(y[test_idx], probabilities, labels)
    metrics["history"] = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    metrics["train_seconds"] = round(train_seconds, 1)
    split = {
        "dataset": str(dataset.source),
        "dataset_sha256": dataset.sha256,
        "seed": training.seed,
        "test_size": training.test_size,
        "test_indices": [int(i) for i in test_idx],
    }
    bundle_dir = save_bundle(
        output,
        model,
        pipeline,
        labels,
        network,
        num_words,
        metrics,
        training={
            "dataset": str(dataset.source),
            "dataset_sha256": dataset.sha256,
            "rows": {"train": len(fit_idx), "validation": len(val_idx), "test": len(test_idx)},
            "epochs_run": len(history.history["loss"]),
            **{k: v for k, v in vars(training).items()},
        },
        extra_files={SPLIT_FILE: json.dumps(split)},
    )
    return FitResult(bundle_dir, metrics, train_seconds)


def _units(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {value!r}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of ``python -m training.fit``."""
    defaults_net, defaults_seq, defaults_fit = NetworkConfig(), SequenceConfig(), TrainingConfig()
    p = argparse.ArgumentParser(
        prog="python -m training.fit",
        description="Train an LSTM text classifier and write an artifact bundle.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="named dataset in the data directory: bbc")
    src.add_argument("--csv", type=Path, help="CSV file with a header row")
    p.add_argument("--data-dir", help="folder holding the named datasets (env CLASSIFIER_DATA_DIR)")
    p.add_argument("--text-column", default=None, help="CSV text column (default: text)")
    p.add_argument("--label-column", default=None, help="CSV label column (default: label)")
    p.add_argument("--output", type=Path, required=True, help="model directory to write into")
    p.add_argument("--limit", type=int, default=None, help="stratified subsample of N rows")
    g = p.add_argument_group("preprocessing")
    g.add_argument("--num-words", type=int, default=5000, help="vocabulary size incl. pad+OOV")
    g.add_argument("--oov-token", default="<OOV>")
    g.add_argument("--max-len", type=int, default=defaults_seq.max_len)
    g.add_argument("--padding", choices=["pre", "post"], default=defaults_seq.padding)
    g.add_argument("--truncating", choices=["pre", "post"], default=defaults_seq.truncating)
    g.add_argument("--keep-stopwords", action="store_true", help="do not remove stopwords")
    g.add_argument("--digits-to-zero", action="store_true")
    g.add_argument("--no-lowercase", action="store_true")
    n = p.add_argument_group("network")
    n.add_argument(
        "--architecture",
        choices=["lstm", "bilstm", "stacked-lstm", "stacked-bilstm"],
        default=defaults_net.architecture,
    )
    n.add_argument("--embedding-dim", type=int, default=defaults_net.embedding_dim)
    n.add_argument(
        "--lstm-units", type=_units, default=defaults_net.lstm_units, help="e.g. 64 or 50,60"
    )
    n.add_argument("--dropout", type=float, default=defaults_net.dropout)
    n.add_argument("--dense-units", type=int, default=defaults_net.dense_units, help="0 for none")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=defaults_fit.epochs)
    t.add_argument("--batch-size", type=int, default=defaults_fit.batch_size)
    t.add_argument("--learning-rate", type=float, default=defaults_fit.learning_rate)
    t.add_argument("--optimizer", choices=["adam", "rmsprop"], default=defaults_fit.optimizer)
    t.add_argument("--patience", type=int, default=defaults_fit.patience)
    t.add_argument("--test-size", type=float, default=defaults_fit.test_size)
    t.add_argument("--seed", type=int, default=defaults_fit.seed)
    return p


def load_dataset(args: argparse.Namespace) -> TextDataset:
    """The dataset named by ``--dataset`` or ``--csv``, subsampled by ``--limit``."""
    if args.dataset:
        path, spec = named_dataset_path(args.dataset, args.data_dir)
        dataset = load_csv(
            path, args.text_column or spec.text_column, args.label_column or spec.label_column
        )
    else:
        dataset = load_csv(args.csv, args.text_column or "text", args.label_column or "label")
    if args.limit:
        keep = stratified_subsample(dataset.labels, args.limit, args.seed)
        dataset = TextDataset(
            [dataset.texts[i] for i in keep],
            [dataset.labels[i] for i in keep],
            dataset.source,
            dataset.sha256,
        )
    return dataset


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (2 for bad options or data)."""
    args = build_parser().parse_args(argv)
    try:
        dataset = load_dataset(args)
        network = NetworkConfig(
            architecture=args.architecture,
            embedding_dim=args.embedding_dim,
            lstm_units=args.lstm_units,
            dropout=args.dropout,
            dense_units=args.dense_units or None,
        )
        text = TextConfig(
            lowercase=not args.no_lowercase,
            remove_stopwords=not args.keep_stopwords,
            digits_to_zero=args.digits_to_zero,
        )
        sequence = SequenceConfig(
            max_len=args.max_len, padding=args.padding, truncating=args.truncating
        )
    except (DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"dataset {dataset.source}: {len(dataset)} rows, classes {dataset.class_counts()}",
        flush=True,
    )
    result = fit(
        dataset,
        args.output,
        text,
        sequence,
        network,
        num_words=args.num_words,
        training=TrainingConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            optimizer=args.optimizer,
            patience=args.patience,
            test_size=args.test_size,
            seed=args.seed,
        ),
    )
    m = result.metrics
    print(m["classification_report_text"])
    print(format_confusion_matrix(m["confusion_matrix"], m["labels"]))
    print(
        f"held-out accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}  "
        f"(n={m['n']}, trained {result.train_seconds:.0f} s)\nbundle: {result.bundle_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
