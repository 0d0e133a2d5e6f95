"""Step 3: build the network, initialise its embedding, and fit it with early stopping."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from model.network import build_model, embedding_layer
from training.config import FitConfig, TrainingConfig
from training.embeddings import EmbeddingInit, initial_embeddings
from training.steps.encode import EncodedData
from training.steps.prepare import PreparedData


@dataclass(frozen=True)
class InitialEmbeddings:
    """Where the embedding started from (``TrainingConfig.embeddings``).

    Attributes:
        init: The initial ``(rows, dim) float32`` weights and their vocabulary coverage.
        frozen: The weights were kept fixed during training.
        seconds: Time to read or train the vectors (s).
    """

    init: EmbeddingInit
    frozen: bool
    seconds: float

    def summary(self) -> str:
        """One progress line: source and coverage."""
        init = self.init
        return (
            f"embedding initialised from {init.source}: {init.covered} of {init.words} "
            f"vocabulary words have a vector ({init.coverage:.1%}) in {self.seconds:.0f} s"
        )

    def record(self) -> dict[str, Any]:
        """``metrics.json: embeddings``: source, coverage, frozen, seconds."""
        return {
            "source": self.init.source,
            "covered": self.init.covered,
            "words": self.init.words,
            "frozen": self.frozen,
            "seconds": round(self.seconds, 1),
        }


@dataclass(frozen=True)
class TrainedModel:
    """The fitted network and how training went.

    Attributes:
        model: Compiled ``keras.Model``, ``(batch, seq_len) int32`` ids →
            ``(batch, n_classes) float32`` probabilities, best epoch's weights restored.
        history: Per-epoch ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``.
        seconds: Wall time of ``model.fit`` (s).
        embeddings: The initial embedding, ``None`` when it started random.
    """

    model: Any
    history: dict[str, list[float]]
    seconds: float
    embeddings: InitialEmbeddings | None

    def record(self) -> dict[str, Any]:
        """``metrics.json`` facts of training: history, epochs run, best epoch, seconds."""
        val_loss = self.history.get("val_loss", [])
        return {
            "history": self.history,
            "epochs_run": len(self.history["loss"]),
            "best_epoch": int(np.argmin(val_loss)) + 1 if val_loss else None,
            "train_seconds": round(self.seconds, 1),
        }


def train_model(
    prepared: PreparedData, encoded: EncodedData, config: FitConfig, verbose: int = 2
) -> TrainedModel:
    """Seed everything, build ``config.network`` and fit it on the fitting rows.

    Early stopping watches the validation rows' loss (``config.training.patience``) and
    restores the best epoch's weights.

    Args:
        prepared: Split and class ids (step 1).
        encoded: Padded sequences and the vocabulary (step 2).
        config: Network, vocabulary size and optimisation settings.
        verbose: Keras ``fit`` verbosity (2 = one line per epoch, 0 = silent); non-zero also
            prints where the embedding started from.

    Raises:
        FileNotFoundError: the embeddings file does not exist.
        ValueError: its vectors are not ``config.network.embedding_dim`` wide.
    """
    import keras

    training, n_classes = config.training, len(prepared.labels)
    keras.utils.set_random_seed(training.seed)
    model = build_model(config.network, config.num_words, n_classes, config.sequence.max_len)
    embeddings = _initialise_embedding(model, encoded, config) if training.embeddings else None
    if embeddings is not None and verbose:
        print(embeddings.summary(), flush=True)
    model.compile(
        optimizer=_optimizer(training),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=training.patience, restore_best_weights=True
    )
    weights = _class_weights(prepared.y_fit, n_classes) if training.class_weights else None
    started = time.perf_counter()
    history = model.fit(
        **_fit_data(prepared, encoded, config),
        epochs=training.epochs,
        callbacks=[stop],
        class_weight=weights,
        verbose=verbose,
    )
    seconds = time.perf_counter() - started
    record = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    return TrainedModel(model, record, seconds, embeddings)


def _initialise_embedding(model: Any, encoded: EncodedData, config: FitConfig) -> InitialEmbeddings:
    training = config.training
    assert training.embeddings is not None
    started = time.perf_counter()
    init = initial_embeddings(
        training.embeddings,
        encoded.pipeline.vocabulary,
        encoded.fit_tokens,
        config.num_words,
        config.network.embedding_dim,
        training.seed,
    )
    seconds = time.perf_counter() - started
    embedding = embedding_layer(model)
    assert embedding is not None  # build_model always has one
    embedding.set_weights([init.matrix[: embedding.input_dim]])
    embedding.trainable = not training.freeze_embeddings
    return InitialEmbeddings(init, training.freeze_embeddings, seconds)


def _optimizer(training: TrainingConfig) -> Any:
    import keras

    if training.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(training.learning_rate)
    return keras.optimizers.Adam(training.learning_rate)


def _class_weights(y: npt.NDArray[np.int64], n_classes: int) -> dict[int, float]:
    from sklearn.utils.class_weight import compute_class_weight

    classes = np.arange(n_classes)
    weights = compute_class_weight("balanced", classes=classes, y=y)
    return {int(c): float(w) for c, w in zip(classes, weights, strict=True)}


def _fit_data(prepared: PreparedData, encoded: EncodedData, config: FitConfig) -> dict[str, Any]:
    """``model.fit`` arguments for the fitting and validation rows (bucketed or not)."""
    split, training = prepared.split, config.training
    x_fit, x_val = encoded.x_train[split.fit_idx], encoded.x_train[split.val_idx]
    if training.bucket_by_length:
        from training.batches import LengthBucketedBatches

        def batches(x: npt.NDArray[np.int32], y: npt.NDArray[np.int64]) -> LengthBucketedBatches:
            padding = config.sequence.padding
            return LengthBucketedBatches(x, y, training.batch_size, padding, training.seed)

        return {
            "x": batches(x_fit, prepared.y_fit),
            "validation_data": batches(x_val, prepared.y_val),
        }
    return {
        "x": x_fit,
        "y": prepared.y_fit,
        "validation_data": (x_val, prepared.y_val),
        "batch_size": training.batch_size,
        "shuffle": True,
    }
