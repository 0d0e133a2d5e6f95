"""Step 5: write the bundle: model, preprocessing, metrics, split record, report, figures."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model.bundle import save_bundle
from model.drift.profile import PROFILE_FILE
from training.config import FitConfig
from training.plots import confusion_matrix_png, history_png
from training.report import (
    CONFUSION_PNG,
    CONFUSION_TXT,
    HISTORY_PNG,
    REPORT_FILE,
    confusion_text,
    render_report,
)
from training.steps.assess import Assessment
from training.steps.encode import EncodedData
from training.steps.prepare import PreparedData
from training.steps.profile import reference_profile
from training.steps.train import TrainedModel

#: File in the bundle recording the held-out rows, so anyone can re-score the same split.
SPLIT_FILE = "split.json"


def write_bundle(
    output: Path,
    *,
    config: FitConfig,
    prepared: PreparedData,
    encoded: EncodedData,
    trained: TrainedModel,
    assessment: Assessment,
    command: str | None = None,
) -> Path:
    """Write a new bundle version under ``output`` and point ``current`` at it.

    Besides the model, vocabulary, manifest and ``metrics.json``
    (:func:`model.bundle.save_bundle`), the version holds ``split.json``, ``report.md``,
    ``confusion_matrix.txt``/``.png``, ``history.png`` and ``drift_profile.json`` (the
    validation split's drift reference, :mod:`training.steps.profile`); the manifest's ``training``
    records the data files, their sha256, the row counts and every training setting.

    Args:
        output: Model directory (created if missing).
        config: The run's settings.
        prepared, encoded, trained, assessment: The results of steps 1-4.
        command: Command line recorded in the report and manifest.

    Returns:
        The new version directory.
    """
    data = prepared.data
    facts = _data_facts(prepared, config)
    metrics = assessment.metrics
    report = render_report(
        title=f"{facts['dataset']}: {config.network.architecture}",
        metrics=metrics,
        data=facts,
        configuration=config.recorded(),
        notes=data.notes,
        command=command,
    )
    test = data.test
    return save_bundle(
        output,
        trained.model,
        encoded.pipeline,
        prepared.labels,
        config.network,
        config.num_words,
        metrics,
        training={
            "dataset": str(data.train.source),
            "dataset_sha256": data.train.sha256,
            "test_dataset": str(test.source) if test is not None else None,
            "test_dataset_sha256": test.sha256 if test is not None else None,
            "rows": facts["rows"],
            "epochs_run": metrics["epochs_run"],
            "notes": list(data.notes),
            "command": command,
            "trained_at": datetime.now(UTC).isoformat(),
            **config.training.model_dump(),
        },
        extra_files={
            SPLIT_FILE: json.dumps(_split_record(prepared, config)),
            REPORT_FILE: report,
            CONFUSION_TXT: confusion_text(metrics),
            CONFUSION_PNG: confusion_matrix_png(metrics["confusion_matrix"], prepared.labels),
            HISTORY_PNG: history_png(metrics["history"]),
            PROFILE_FILE: reference_profile(prepared, encoded, trained).to_json(),
        },
    )


def _data_facts(prepared: PreparedData, config: FitConfig) -> dict[str, Any]:
    """The report's "Data" section: dataset, source, sha256, how it was split, row counts."""
    data, split, training = prepared.data, prepared.split, config.training
    how = (
        f"the dataset's own test split ({data.test.source})"
        if data.test is not None
        else f"stratified {training.test_size:.0%} of the rows, seed {training.seed}"
    )
    return {
        "dataset": data.name,
        "source": str(data.train.source),
        "sha256": data.train.sha256,
        "split": how + f"; validation: stratified {training.validation_fraction:.0%} of train",
        "rows": {
            "train": len(split.fit_idx),
            "validation": len(split.val_idx),
            "test": len(split.test),
        },
        "classes": ", ".join(f"{k} {v}" for k, v in split.train.class_counts().items()),
    }


def _split_record(prepared: PreparedData, config: FitConfig) -> dict[str, Any]:
    """``split.json``: which rows were held out, so the evaluation can be repeated."""
    data, split, training = prepared.data, prepared.split, config.training
    record: dict[str, Any] = {
        "dataset": str(data.train.source),
        "dataset_sha256": data.train.sha256,
        "seed": training.seed,
        "validation_fraction": training.validation_fraction,
    }
    if split.test_rows is not None:
        record["test_size"] = training.test_size
        record["test_indices"] = [data.train.source_row(int(i)) for i in split.test_rows]
    else:
        assert data.test is not None
        record["test_dataset"] = str(data.test.source)
        record["test_dataset_sha256"] = data.test.sha256
        record["test_indices"] = [data.test.source_row(i) for i in range(len(data.test))]
    return record
