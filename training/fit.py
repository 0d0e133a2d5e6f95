"""Train a text classifier and write an artifact bundle: ``python -m training.fit``.

Example (the BBC News tutorial, 5 classes)::

    python -m training.fit --dataset bbc --data-dir ../shared/datasets --output models/bbc

Steps (:mod:`training.steps`): prepare the data (the dataset's own train/test split, or a
stratified, seeded one (80/20), and a validation split carved from train) → build the
vocabulary on the fitting rows only and encode the sequences → train with early stopping on
validation loss (best weights restored) → evaluate on the held-out test split, beside a
TF-IDF + linear SVM baseline on the same split → write the bundle (model, vocabulary, label
order, preprocessing, metrics, split, report, figures). The options are the fields of
:class:`training.cli.FitSettings`; ``docs/training.md`` documents every one.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from model.extras import missing_extra
from training.cli import load_data, parse_settings, settings_error
from training.config import FitConfig, TrainingConfig
from training.data import DatasetError, TextDataset
from training.datasets import LoadedDataset
from training.evaluate import format_confusion_matrix
from training.report import REPORT_FILE
from training.steps.assess import assess_model
from training.steps.bundle import SPLIT_FILE, write_bundle
from training.steps.encode import encode_texts
from training.steps.prepare import prepare_data
from training.steps.train import train_model

__all__ = ["SPLIT_FILE", "FitConfig", "FitResult", "TrainingConfig", "fit", "main"]


@dataclass(frozen=True)
class FitResult:
    """What a training run produced.

    Attributes:
        bundle_dir: The new bundle version directory.
        metrics: Held-out metrics as written to ``metrics.json`` (``baseline`` included).
        train_seconds: Wall time of ``model.fit`` (s).
    """

    bundle_dir: Path
    metrics: dict[str, Any]
    train_seconds: float


def fit(
    data: LoadedDataset | TextDataset,
    output: Path,
    config: FitConfig,
    *,
    verbose: int = 2,
    command: str | None = None,
) -> FitResult:
    """Train on ``data`` and write a bundle version under ``output``.

    Args:
        data: The rows: a named dataset as loaded (name, rows, own test split, notes for
            the report), or one file's rows (named after the file; a stratified
            ``config.training.test_size`` share is held out).
        output: Model directory (``current`` is pointed at the new version).
        config: Preprocessing, network, vocabulary, optimisation and baseline settings.
        verbose: Keras ``fit`` verbosity (2 = one line per epoch, 0 = silent); non-zero
            also prints the preprocessing and embedding progress lines.
        command: Command line recorded in the report.

    Raises:
        ValueError: fewer than two classes, test labels unseen in training, a class too
            small to stratify, or an embeddings file whose vectors are not
            ``embedding_dim`` wide.
        FileNotFoundError: the embeddings file does not exist.
    """
    if isinstance(data, TextDataset):
        data = LoadedDataset(data.source.name, data, None)
    prepared = prepare_data(data, config.training)
    encoded = encode_texts(prepared.split, config)
    if verbose:
        print(encoded.summary(prepared.split), flush=True)
    trained = train_model(prepared, encoded, config, verbose)
    assessment = assess_model(prepared, encoded, trained, config)
    bundle_dir = write_bundle(
        output,
        config=config,
        prepared=prepared,
        encoded=encoded,
        trained=trained,
        assessment=assessment,
        command=command,
    )
    return FitResult(bundle_dir, assessment.metrics, trained.seconds)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (2 for bad options or data).

    Raises:
        SystemExit: ``--help`` (code 0), an unknown flag or a flag missing its value (2).
    """
    args = list(argv) if argv is not None else sys.argv[1:]
    command = shlex.join(["python", "-m", "training.fit", *args])
    try:
        settings = parse_settings(args)
    except ValidationError as exc:
        print(settings_error(exc), file=sys.stderr)
        return 2
    problem = missing_extra("train", ("sklearn", "matplotlib"))
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        loaded = load_data(settings)
    except ValidationError as exc:
        print(settings_error(exc), file=sys.stderr)
        return 2
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for note in loaded.notes:
        print(f"NOTE: {note}", flush=True)
    test_info = f"; own test split {len(loaded.test)} rows" if loaded.test is not None else ""
    print(
        f"dataset {loaded.name}: {len(loaded.train)} rows{test_info}, "
        f"{len(set(loaded.train.labels))} classes",
        flush=True,
    )
    try:
        result = fit(loaded, settings.output, settings.fit_config(), command=command)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _print_summary(result)
    return 0


def _print_summary(result: FitResult) -> None:
    """The per-class report, confusion matrix, duplicates, scores and where the bundle is."""
    m = result.metrics
    print(m["classification_report_text"])
    if len(m["labels"]) <= 20:
        print(format_confusion_matrix(m["confusion_matrix"], m["labels"]))
    if m["duplicates"]["count"]:
        print(f"note: {m['duplicates']['count']} test texts also occur in the training rows")
    print(
        f"held-out accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}  "
        f"(n={m['n']}, trained {result.train_seconds:.0f} s, "
        f"{m['epochs_run']} epochs, best {m['best_epoch']})"
    )
    if "baseline" in m:
        b = m["baseline"]
        print(
            f"TF-IDF + LinearSVC baseline: accuracy {b['accuracy']:.4f}  "
            f"macro-F1 {b['macro_f1']:.4f}  ({b['train_seconds']:.0f} s)"
        )
    print(f"bundle: {result.bundle_dir}  (report: {result.bundle_dir / REPORT_FILE})")


if __name__ == "__main__":
    sys.exit(main())
