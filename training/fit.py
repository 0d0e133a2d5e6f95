"""Train a text classifier and write an artifact bundle: ``python -m training.fit``.

Example (the BBC News tutorial, 5 classes)::

    python -m training.fit --dataset bbc --data-dir ../shared/datasets --output models/bbc

Steps: load the data → the dataset's own train/test split, or a stratified, seeded one
(80/20) → carve a validation split from train → fit the vocabulary on the fitting rows
only → train with early stopping on validation loss (best weights restored) → evaluate
on the held-out test split, beside a TF-IDF + linear SVM baseline on the same split →
write the bundle (model, vocabulary, label order, preprocessing, metrics, split, report,
figures). ``docs/training.md`` documents every option.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from model.bundle import save_bundle
from model.network import NetworkConfig, build_model, embedding_layer
from model.pipeline import TextPipeline
from model.sequences import SequenceConfig, pad_sequences
from model.text import TextConfig, tokenise_many
from model.vocabulary import Vocabulary
from training.baseline import tfidf_baseline
from training.data import (
    DatasetError,
    TextDataset,
    load_folder,
    load_table,
    stratified_subsample,
)
from training.datasets import NAMED_DATASETS, NEWSGROUP_PARTS, LoadedDataset, load_named
from training.embeddings import (
    WORD2VEC,
    EmbeddingInit,
    check_vector_file,
    embedding_matrix,
    load_word_vectors,
    train_word2vec,
)
from training.evaluate import evaluate, format_confusion_matrix
from training.plots import confusion_matrix_png, history_png
from training.report import (
    CONFUSION_PNG,
    CONFUSION_TXT,
    HISTORY_PNG,
    REPORT_FILE,
    confusion_text,
    machine_facts,
    render_report,
)
from training.splits import Split, find_duplicates, make_split

#: File in the bundle recording the held-out rows, so anyone can re-score the same split.
SPLIT_FILE = "split.json"


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation settings (defaults: the seeds' Adam at 1e-3, batch 32).

    Attributes:
        epochs: Maximum epochs (early stopping may end sooner).
        batch_size: Sequences per gradient step.
        learning_rate: Adam/RMSprop step size.
        optimizer: ``adam`` or ``rmsprop``.
        patience: Epochs without validation-loss improvement before stopping; the weights
            of the best epoch are restored.
        validation_fraction: Share of the training split held out for early stopping.
        test_size: Share of the dataset held out for the final evaluation when the dataset
            has no test split of its own.
        seed: Seeds the splits, weight init, dropout and shuffling
            (``keras.utils.set_random_seed``).
        class_weights: ``"balanced"`` weights each class's loss by
            ``n_rows / (n_classes * n_rows_of_class)`` (scikit-learn's
            ``compute_class_weight``) for imbalanced data; ``None`` for none.
        embeddings: Initial embedding weights: ``None`` random (the seeds), ``"word2vec"``
            skip-gram vectors trained on the fitting rows (:func:`training.embeddings.
            train_word2vec`), or the path of a word2vec/GloVe text file whose vector width
            is the network's ``embedding_dim``.
        freeze_embeddings: Keep the initial embedding weights fixed during training.
        bucket_by_length: Batch rows of similar length and trim each batch to its longest
            row (:class:`training.batches.LengthBucketedBatches`): the same network trains
            several times faster on long, unevenly sized documents. Needs padding masks.
    """

    epochs: int = 12
    batch_size: int = 32
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    patience: int = 3
    validation_fraction: float = 0.1
    test_size: float = 0.2
    seed: int = 42
    class_weights: Literal["balanced"] | None = None
    embeddings: str | None = None
    freeze_embeddings: bool = False
    bucket_by_length: bool = False


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


def check_compatible(network: NetworkConfig, training: TrainingConfig) -> None:
    """Reject training options the network cannot honour.

    Raises:
        ValueError: ``bucket_by_length`` on a network without padding masks (trimming a
            batch would change its predictions).
    """
    if training.bucket_by_length and not network.mask_padding:
        raise ValueError("--bucket-by-length trims padding: it cannot be used with --no-mask")


def initial_embeddings(
    training: TrainingConfig,
    vocabulary: Vocabulary,
    fit_tokens: Sequence[Sequence[str]],
    rows: int,
    dim: int,
) -> EmbeddingInit:
    """Embedding weights named by ``training.embeddings`` (``"word2vec"`` or a file path).

    Args:
        training: ``embeddings`` and ``seed`` are read.
        vocabulary: The fitted vocabulary.
        fit_tokens: Tokenised fitting rows (word2vec trains on these only).
        rows: Embedding ``input_dim``.
        dim: Embedding width.

    Raises:
        FileNotFoundError: the vector file does not exist.
        ValueError: its vectors are not ``dim`` wide.
    """
    if training.embeddings == WORD2VEC:
        vectors = train_word2vec(fit_tokens, dim, training.seed)
        source = "word2vec on the fitting rows"
    else:
        path = Path(str(training.embeddings))
        vectors, source = load_word_vectors(path, dim), str(path)
    return embedding_matrix(vocabulary, vectors, rows, dim, training.seed, source)


def _class_weights(y: np.ndarray[Any, Any], n_classes: int) -> dict[int, float]:
    from sklearn.utils.class_weight import compute_class_weight

    classes = np.arange(n_classes)
    weights = compute_class_weight("balanced", classes=classes, y=y)
    return {int(c): float(w) for c, w in zip(classes, weights, strict=True)}


def fit(
    dataset: TextDataset,
    output: Path,
    text: TextConfig,
    sequence: SequenceConfig,
    network: NetworkConfig,
    num_words: int = 5000,
    training: TrainingConfig = TrainingConfig(),
    verbose: int = 2,
    test: TextDataset | None = None,
    oov_token: str = "<OOV>",
    name: str | None = None,
    notes: Sequence[str] = (),
    baseline: bool = True,
    command: str | None = None,
) -> FitResult:
    """Train on ``dataset`` and write a bundle version under ``output``.

    Args:
        dataset: Training texts and string labels (all rows when ``test`` is ``None``).
        output: Model directory (``current`` is pointed at the new version).
        text, sequence, network: Preprocessing and network shape, recorded in the bundle.
        num_words: Vocabulary cap incl. padding and OOV ids (the seeds' 5,000).
        training: Optimisation settings.
        oov_token: Text of the out-of-vocabulary token (the seeds' ``"<OOV>"``).
        verbose: Keras ``fit`` verbosity (2 = one line per epoch, 0 = silent).
        test: The dataset's own test split; ``None`` holds out a stratified
            ``training.test_size`` share of ``dataset``.
        name: Dataset name for the report (default: the file name).
        notes: Caveats for the report (e.g. training on a subset).
        baseline: Also fit and score the TF-IDF + linear SVM baseline.
        command: Command line recorded in the report.

    Raises:
        ValueError: fewer than two classes, test labels unseen in training, a class too
            small to stratify, ``bucket_by_length`` without padding masks, or an embeddings
            file whose vectors are not ``embedding_dim`` wide.
        FileNotFoundError: the embeddings file does not exist.
    """
    import keras

    check_compatible(network, training)
    keras.utils.set_random_seed(training.seed)
    split = make_split(
        dataset, test, training.test_size, training.validation_fraction, training.seed
    )
    labels = sorted(set(split.train.labels))
    if len(labels) < 2:
        raise ValueError(f"need at least two classes, found {labels}")
    label_ids = {label: i for i, label in enumerate(labels)}
    y_train = np.array([label_ids[label] for label in split.train.labels], dtype=np.int64)
    y_test = np.array([label_ids[label] for label in split.test.labels], dtype=np.int64)

    started = time.perf_counter()
    train_tokens = tokenise_many(split.train.texts, text)
    test_tokens = tokenise_many(split.test.texts, text)
    fit_tokens = [train_tokens[i] for i in split.fit_idx]
    vocabulary = Vocabulary.fit(fit_tokens, num_words, oov_token)
    pipeline = TextPipeline(text, sequence, vocabulary)
    x_train = pad_sequences([vocabulary.encode(t) for t in train_tokens], sequence)
    x_test = pad_sequences([vocabulary.encode(t) for t in test_tokens], sequence)
    preprocess_seconds = time.perf_counter() - started
    if verbose:
        print(
            f"preprocessed {len(train_tokens) + len(test_tokens)} texts in "
            f"{preprocess_seconds:.1f} s; vocabulary {vocabulary.size} ids; "
            f"fit {len(split.fit_idx)}, validation {len(split.val_idx)}, test {len(y_test)}",
            flush=True,
        )

    model = build_model(network, num_words, len(labels), sequence.max_len)
    initial, embedding_seconds = None, 0.0
    if training.embeddings:
        started = time.perf_counter()
        initial = initial_embeddings(
            training, vocabulary, fit_tokens, num_words, network.embedding_dim
        )
        embedding_seconds = time.perf_counter() - started
        embedding = embedding_layer(model)
        assert embedding is not None  # build_model always has one
        embedding.set_weights([initial.matrix[: embedding.input_dim]])
        embedding.trainable = not training.freeze_embeddings
        if verbose:
            print(
                f"embedding initialised from {initial.source}: {initial.covered} of "
                f"{initial.words} vocabulary words have a vector ({initial.coverage:.1%}) "
                f"in {embedding_seconds:.0f} s",
                flush=True,
            )
    optimizer = (
        keras.optimizers.RMSprop(training.learning_rate)
        if training.optimizer == "rmsprop"
        else keras.optimizers.Adam(training.learning_rate)
    )
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=training.patience, restore_best_weights=True
    )
    weights = (
        _class_weights(y_train[split.fit_idx], len(labels)) if training.class_weights else None
    )
    started = time.perf_counter()
    x_fit, y_fit = x_train[split.fit_idx], y_train[split.fit_idx]
    x_val, y_val = x_train[split.val_idx], y_train[split.val_idx]
    data: dict[str, Any]
    if training.bucket_by_length:
        from training.batches import LengthBucketedBatches

        def batches(x: np.ndarray, y: np.ndarray) -> LengthBucketedBatches:
            return LengthBucketedBatches(x, y, training.batch_size, sequence.padding, training.seed)

        data = {"x": batches(x_fit, y_fit), "validation_data": batches(x_val, y_val)}
    else:
        data = {
            "x": x_fit,
            "y": y_fit,
            "validation_data": (x_val, y_val),
            "batch_size": training.batch_size,
            "shuffle": True,
        }
    history = model.fit(
        **data, epochs=training.epochs, callbacks=[stop], class_weight=weights, verbose=verbose
    )
    train_seconds = time.perf_counter() - started

    probabilities = keras.ops.convert_to_numpy(model.predict(x_test, verbose=0))
    metrics = evaluate(y_test, probabilities, labels)
    val_loss = history.history.get("val_loss", [])
    metrics["history"] = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    metrics["epochs_run"] = len(history.history["loss"])
    metrics["best_epoch"] = int(np.argmin(val_loss)) + 1 if val_loss else None
    metrics["train_seconds"] = round(train_seconds, 1)
    metrics["preprocess_seconds"] = round(preprocess_seconds, 1)
    duplicates = find_duplicates(split.train.texts, split.test.texts)
    metrics["duplicates"] = {
        "count": duplicates.count,
        "test_rows": duplicates.test_rows,
        "examples": duplicates.examples,
    }
    if baseline:
        metrics["baseline"] = tfidf_baseline(
            train_tokens, y_train, test_tokens, y_test, labels, training.seed
        )
    if initial is not None:
        metrics["embeddings"] = {
            "source": initial.source,
            "covered": initial.covered,
            "words": initial.words,
            "frozen": training.freeze_embeddings,
            "seconds": round(embedding_seconds, 1),
        }
    metrics["machine"] = machine_facts()

    data_facts = _data_facts(split, dataset, test, name, training)
    configuration = {
        "text": text.model_dump(),
        "sequence": sequence.model_dump(),
        "network": network.model_dump(),
        "num_words": num_words,
        "training": asdict(training),
    }
    report = render_report(
        title=f"{data_facts['dataset']}: {network.architecture}",
        metrics=metrics,
        data=data_facts,
        configuration=configuration,
        notes=notes,
        command=command,
    )
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
            "test_dataset": str(test.source) if test is not None else None,
            "test_dataset_sha256": test.sha256 if test is not None else None,
            "rows": data_facts["rows"],
            "epochs_run": metrics["epochs_run"],
            "notes": list(notes),
            "command": command,
            "trained_at": datetime.now(UTC).isoformat(),
            **asdict(training),
        },
        extra_files={
            SPLIT_FILE: json.dumps(_split_record(split, dataset, test, training)),
            REPORT_FILE: report,
            CONFUSION_TXT: confusion_text(metrics),
            CONFUSION_PNG: confusion_matrix_png(metrics["confusion_matrix"], labels),
            HISTORY_PNG: history_png(metrics["history"]),
        },
    )
    return FitResult(bundle_dir, metrics, train_seconds)


def _data_facts(
    split: Split,
    dataset: TextDataset,
    test: TextDataset | None,
    name: str | None,
    training: TrainingConfig,
) -> dict[str, Any]:
    how = (
        f"the dataset's own test split ({test.source})"
        if test is not None
        else f"stratified {training.test_size:.0%} of the rows, seed {training.seed}"
    )
    return {
        "dataset": name or dataset.source.name,
        "source": str(dataset.source),
        "sha256": dataset.sha256,
        "split": how + f"; validation: stratified {training.validation_fraction:.0%} of train",
        "rows": {
            "train": len(split.fit_idx),
            "validation": len(split.val_idx),
            "test": len(split.test),
        },
        "classes": ", ".join(f"{k} {v}" for k, v in split.train.class_counts().items()),
    }


def _split_record(
    split: Split, dataset: TextDataset, test: TextDataset | None, training: TrainingConfig
) -> dict[str, Any]:
    """``split.json``: which rows were held out, so the evaluation can be repeated."""
    record: dict[str, Any] = {
        "dataset": str(dataset.source),
        "dataset_sha256": dataset.sha256,
        "seed": training.seed,
        "validation_fraction": training.validation_fraction,
    }
    if split.test_rows is not None:
        record["test_size"] = training.test_size
        record["test_indices"] = [dataset.source_row(int(i)) for i in split.test_rows]
    else:
        assert test is not None
        record["test_dataset"] = str(test.source)
        record["test_dataset_sha256"] = test.sha256
        record["test_indices"] = [test.source_row(i) for i in range(len(test))]
    return record


def _units(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {value!r}"
        ) from None


def _parts(value: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in value.split(",") if p.strip())
    unknown = set(parts) - set(NEWSGROUP_PARTS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown parts {sorted(unknown)}; use {NEWSGROUP_PARTS}")
    return parts


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of ``python -m training.fit`` (documented in docs/training.md)."""
    defaults_net, defaults_seq, defaults_fit = NetworkConfig(), SequenceConfig(), TrainingConfig()
    p = argparse.ArgumentParser(
        prog="python -m training.fit",
        description="Train an LSTM text classifier and write an artifact bundle.",
    )
    d = p.add_argument_group("data")
    src = d.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", choices=sorted(NAMED_DATASETS), help="a named dataset")
    src.add_argument(
        "--file", "--csv", dest="file", type=Path, help="CSV/TSV/JSONL file of labelled texts"
    )
    src.add_argument("--folder", type=Path, help="one sub-folder per class, one text per file")
    d.add_argument("--test-file", type=Path, help="the data's own test split (same layout)")
    d.add_argument("--test-folder", type=Path, help="the data's own test split (folders)")
    d.add_argument("--data-dir", help="folder holding the named datasets (env CLASSIFIER_DATA_DIR)")
    d.add_argument("--no-download", action="store_true", help="never download missing files")
    d.add_argument("--format", choices=["csv", "tsv", "jsonl"], help="default: from the suffix")
    d.add_argument("--no-header", action="store_true", help="CSV/TSV without a header row")
    d.add_argument(
        "--text-column",
        action="append",
        help="text column (repeat to join several; header-less files: 0, 1, …; default text)",
    )
    d.add_argument("--label-column", default=None, help="label column (default: label)")
    d.add_argument("--encoding", default="utf-8", help="encoding of --folder files")
    d.add_argument(
        "--newsgroups-remove",
        type=_parts,
        default=(),
        help="20newsgroups: strip any of headers,footers,quotes from each message",
    )
    d.add_argument("--limit", type=int, default=None, help="stratified subsample of N train rows")
    d.add_argument("--test-limit", type=int, default=None, help="stratified subsample of test")
    d.add_argument("--output", type=Path, required=True, help="model directory to write into")
    g = p.add_argument_group("preprocessing")
    g.add_argument(
        "--lang",
        choices=["en", "ja"],
        default=None,
        help="ja: MeCab word segmentation (fugashi + unidic-lite), NFKC, no stopword removal "
        "(default: the named dataset's language, else en)",
    )
    g.add_argument("--tokenizer", choices=["keras", "fugashi"], default=None)
    g.add_argument("--num-words", type=int, default=5000, help="vocabulary size incl. pad+OOV")
    g.add_argument("--oov-token", default="<OOV>")
    g.add_argument("--max-len", type=int, default=defaults_seq.max_len)
    g.add_argument("--padding", choices=["pre", "post"], default=defaults_seq.padding)
    g.add_argument("--truncating", choices=["pre", "post"], default=defaults_seq.truncating)
    g.add_argument("--keep-stopwords", action="store_true", help="do not remove stopwords")
    g.add_argument("--remove-stopwords", action="store_true", help="remove them even for ja")
    g.add_argument("--digits-to-zero", action="store_true")
    g.add_argument("--no-lowercase", action="store_true")
    g.add_argument("--keep-urls", action="store_true", help="do not strip URLs")
    g.add_argument("--keep-emails", action="store_true", help="do not strip e-mail addresses")
    g.add_argument("--keep-dashes", action="store_true", help="do not collapse runs of dashes")
    g.add_argument("--nfkc", action="store_true", help="Unicode NFKC normalisation (ja: on)")
    g.add_argument(
        "--keep-pos",
        type=lambda v: tuple(p for p in v.split(",") if p),
        default=(),
        help="fugashi: keep only these UniDic parts of speech, e.g. 名詞,動詞,形容詞",
    )
    n = p.add_argument_group("network")
    n.add_argument(
        "--architecture",
        choices=["lstm", "bilstm", "stacked-lstm", "stacked-bilstm"],
        default=defaults_net.architecture,
    )
    n.add_argument("--embedding-dim", type=int, default=defaults_net.embedding_dim)
    n.add_argument(
        "--lstm-units", type=_units, default=defaults_net.lstm_units, help="e.g. 64 or 50,60,75"
    )
    n.add_argument("--dropout", type=float, default=defaults_net.dropout)
    n.add_argument("--spatial-dropout", type=float, default=defaults_net.spatial_dropout)
    n.add_argument("--dense-units", type=int, default=defaults_net.dense_units, help="0 for none")
    n.add_argument("--head-dropout", type=float, default=defaults_net.head_dropout)
    n.add_argument("--pooling", choices=["last", "max", "mean"], default=defaults_net.pooling)
    n.add_argument("--no-mask", action="store_true", help="let padding reach the LSTM")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=defaults_fit.epochs)
    t.add_argument("--batch-size", type=int, default=defaults_fit.batch_size)
    t.add_argument("--learning-rate", type=float, default=defaults_fit.learning_rate)
    t.add_argument("--optimizer", choices=["adam", "rmsprop"], default=defaults_fit.optimizer)
    t.add_argument("--patience", type=int, default=defaults_fit.patience)
    t.add_argument("--test-size", type=float, default=defaults_fit.test_size)
    t.add_argument("--validation-size", type=float, default=defaults_fit.validation_fraction)
    t.add_argument("--seed", type=int, default=defaults_fit.seed)
    t.add_argument("--class-weights", choices=["none", "balanced"], default="none")
    t.add_argument(
        "--embeddings",
        metavar="word2vec|FILE",
        help="initial word vectors: word2vec trained on the fitting rows, or a "
        "word2vec/GloVe text file as wide as --embedding-dim (default: random)",
    )
    t.add_argument(
        "--freeze-embeddings", action="store_true", help="keep the initial vectors fixed"
    )
    t.add_argument(
        "--bucket-by-length",
        action="store_true",
        help="batch rows of similar length, each batch trimmed to its longest row (faster)",
    )
    t.add_argument("--no-baseline", action="store_true", help="skip the TF-IDF baseline")
    return p


def load_data(args: argparse.Namespace) -> LoadedDataset:
    """The data named by ``--dataset``, ``--file`` or ``--folder``, subsampled by the limits.

    Raises:
        DatasetError: missing files (the message says where to put them), bad rows.
    """
    if args.dataset:
        loaded = load_named(
            args.dataset,
            args.data_dir,
            allow_download=not args.no_download,
            newsgroups_remove=args.newsgroups_remove,
        )
    else:
        if args.test_file and args.test_folder:
            raise DatasetError("give --test-file or --test-folder, not both")
        train, test = _generic(args)
        loaded = LoadedDataset(str(args.file or args.folder), train, test)
    train, test = loaded.train, loaded.test
    if args.limit:
        train = train.subset(stratified_subsample(train.labels, args.limit, args.seed))
    if args.test_limit and test is not None:
        test = test.subset(stratified_subsample(test.labels, args.test_limit, args.seed))
    return LoadedDataset(loaded.name, train, test, loaded.notes)


def _generic(args: argparse.Namespace) -> tuple[TextDataset, TextDataset | None]:
    columns = args.text_column or ["text"]
    label = args.label_column or "label"

    def table(path: Path) -> TextDataset:
        return load_table(path, columns, label, fmt=args.format, header=not args.no_header)

    train = load_folder(args.folder, args.encoding) if args.folder else table(args.file)
    if args.test_file:
        return train, table(args.test_file)
    if args.test_folder:
        return train, load_folder(args.test_folder, args.encoding)
    return train, None


def configs_from_args(
    args: argparse.Namespace,
) -> tuple[TextConfig, SequenceConfig, NetworkConfig, TrainingConfig]:
    """Preprocessing, network and training settings from the parsed options.

    Raises:
        ValueError: inconsistent settings (pydantic validation messages), or an
            --embeddings file that is missing or not --embedding-dim wide.
    """
    spec = NAMED_DATASETS.get(args.dataset or "")
    lang = args.lang or (spec.lang if spec else "en")
    japanese = lang == "ja"
    text = TextConfig(
        lowercase=not args.no_lowercase,
        strip_urls=not args.keep_urls,
        strip_emails=not args.keep_emails,
        digits_to_zero=args.digits_to_zero,
        collapse_dashes=not args.keep_dashes,
        remove_stopwords=args.remove_stopwords or not (args.keep_stopwords or japanese),
        unicode_nfkc=args.nfkc or japanese,
        tokenizer=args.tokenizer or ("fugashi" if japanese else "keras"),
        keep_pos=args.keep_pos,
    )
    sequence = SequenceConfig(
        max_len=args.max_len, padding=args.padding, truncating=args.truncating
    )
    network = NetworkConfig(
        architecture=args.architecture,
        embedding_dim=args.embedding_dim,
        lstm_units=args.lstm_units,
        dropout=args.dropout,
        spatial_dropout=args.spatial_dropout,
        dense_units=args.dense_units or None,
        head_dropout=args.head_dropout,
        pooling=args.pooling,
        mask_padding=not args.no_mask,
    )
    training = TrainingConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        optimizer=args.optimizer,
        patience=args.patience,
        validation_fraction=args.validation_size,
        test_size=args.test_size,
        seed=args.seed,
        class_weights="balanced" if args.class_weights == "balanced" else None,
        embeddings=args.embeddings,
        freeze_embeddings=args.freeze_embeddings,
        bucket_by_length=args.bucket_by_length,
    )
    check_compatible(network, training)
    if training.embeddings and training.embeddings != WORD2VEC:
        try:
            check_vector_file(Path(training.embeddings), network.embedding_dim)
        except FileNotFoundError as exc:
            raise ValueError(str(exc)) from exc
    return text, sequence, network, training


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (2 for bad options or data)."""
    args = build_parser().parse_args(argv)
    command = shlex.join(["python", "-m", "training.fit", *(argv or sys.argv[1:])])
    try:
        text, sequence, network, training = configs_from_args(args)
        loaded = load_data(args)
    except (DatasetError, ValueError) as exc:
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
        result = fit(
            loaded.train,
            args.output,
            text,
            sequence,
            network,
            num_words=args.num_words,
            training=training,
            test=loaded.test,
            oov_token=args.oov_token,
            name=loaded.name,
            notes=loaded.notes,
            baseline=not args.no_baseline,
            command=command,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
