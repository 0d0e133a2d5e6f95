"""Held-out evaluation: accuracy, macro-F1, per-class report and confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt


def evaluate(
    y_true: npt.NDArray[np.int64], probabilities: npt.NDArray[np.float32], labels: Sequence[str]
) -> dict[str, Any]:
    """Score predictions against true class ids with scikit-learn's metrics.

    Args:
        y_true: ``(n,)`` true class ids (indices into ``labels``).
        probabilities: ``(n, n_classes) float32`` predicted probabilities.
        labels: Class names in id order.

    Returns:
        JSON-serialisable dict: ``accuracy``, ``macro_f1``, ``n``, ``labels``,
        ``confusion_matrix`` (rows = true, columns = predicted), ``classification_report``
        (per-class precision/recall/F1/support) and ``classification_report_text``.
    """
    from sklearn.metrics import (
        accuracy_score,
        classification_report,
        confusion_matrix,
        f1_score,
    )

    y_pred = probabilities.argmax(axis=1)
    ids = list(range(len(labels)))
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", labels=ids, zero_division=0)),
        "labels": list(labels),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=ids).tolist(),
        "classification_report": classification_report(
            y_true, y_pred, labels=ids, target_names=list(labels), output_dict=True, zero_division=0
        ),
        "classification_report_text": classification_report(
            y_true, y_pred, labels=ids, target_names=list(labels), digits=4, zero_division=0
        ),
    }


def format_confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> str:
    """Render a confusion matrix as an aligned text table (rows = true, columns = predicted)."""
    width = (
        max(max(len(label) for label in labels), max(len(str(v)) for r in matrix for v in r)) + 1
    )
    header = " " * width + "".join(f"{label[: width - 1]:>{width}}" for label in labels)
    lines = [header]
    for label, row in zip(labels, matrix, strict=True):
        lines.append(f"{label:>{width}}" + "".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines)
