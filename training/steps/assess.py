"""Step 4: score the model on the held-out rows, check duplicates, score the baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from training.baseline import tfidf_baseline
from training.config import FitConfig
from training.evaluate import evaluate
from training.report import machine_facts
from training.splits import Duplicates, find_duplicates
from training.steps.encode import EncodedData
from training.steps.prepare import PreparedData
from training.steps.train import TrainedModel


@dataclass(frozen=True)
class Assessment:
    """The held-out evaluation of a run, as written to the bundle's ``metrics.json``.

    Attributes:
        metrics: :func:`training.evaluate.evaluate`'s scores (``accuracy``, ``macro_f1``,
            ``n``, ``labels``, ``confusion_matrix``, ``classification_report``…), then
            ``history``, ``epochs_run``, ``best_epoch``, ``train_seconds`` (s),
            ``preprocess_seconds`` (s), ``duplicates``, ``baseline`` (when scored),
            ``embeddings`` (when initialised) and ``machine``.
        duplicates: Held-out texts that also occur in the training rows.
    """

    metrics: dict[str, Any]
    duplicates: Duplicates


def assess_model(
    prepared: PreparedData, encoded: EncodedData, trained: TrainedModel, config: FitConfig
) -> Assessment:
    """Evaluate ``trained`` on the test rows, beside the baseline when ``config.baseline``.

    The test rows are used here only. Test texts that also occur in the training rows
    (after collapsing whitespace) are counted, since a model can score them by memory. The
    TF-IDF + LinearSVC baseline (:func:`training.baseline.tfidf_baseline`) is fitted on the
    same training tokens (fit + validation rows) and scored on the same test rows.
    """
    import keras

    probabilities = keras.ops.convert_to_numpy(trained.model.predict(encoded.x_test, verbose=0))
    metrics = evaluate(prepared.y_test, probabilities, prepared.labels)
    metrics.update(trained.record())
    metrics["preprocess_seconds"] = round(encoded.seconds, 1)
    duplicates = find_duplicates(prepared.split.train.texts, prepared.split.test.texts)
    metrics["duplicates"] = {
        "count": duplicates.count,
        "test_rows": duplicates.test_rows,
        "examples": duplicates.examples,
    }
    if config.baseline:
        metrics["baseline"] = tfidf_baseline(
            encoded.train_tokens,
            prepared.y_train,
            encoded.test_tokens,
            prepared.y_test,
            prepared.labels,
            config.training.seed,
        )
    if trained.embeddings is not None:
        metrics["embeddings"] = trained.embeddings.record()
    metrics["machine"] = machine_facts()
    return Assessment(metrics, duplicates)
