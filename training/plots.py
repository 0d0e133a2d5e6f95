"""PNG figures for the bundle: confusion matrix and training history (matplotlib, Agg).

Figures are drawn on ``matplotlib.figure.Figure`` objects with the Agg canvas, never
through ``pyplot``, so no display and no global figure state are involved.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Above this many classes the confusion-matrix cells carry no numbers (unreadable).
ANNOTATE_MAX_CLASSES = 20


def _png(fig: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def confusion_matrix_png(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> bytes:
    """Confusion matrix as a PNG (rows = true class, columns = predicted class).

    Drawn with scikit-learn's ``ConfusionMatrixDisplay``; cells are annotated with counts
    up to :data:`ANNOTATE_MAX_CLASSES` classes. The figure grows with the class count.

    Returns:
        PNG file bytes.
    """
    import numpy as np
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay

    n = len(labels)
    side = min(max(5.0, 0.45 * n + 2.5), 30.0)
    fig = Figure(figsize=(side, side))
    ax = fig.add_subplot()
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=list(labels)).plot(
        ax=ax,
        include_values=n <= ANNOTATE_MAX_CLASSES,
        xticks_rotation="vertical",
        colorbar=False,
        cmap="Blues",
    )
    ax.set_title("Confusion matrix (held-out test split)")
    return _png(fig)


def history_png(history: Mapping[str, Sequence[float]]) -> bytes:
    """Training curves as a PNG: accuracy and loss per epoch, train vs validation.

    Args:
        history: Keras ``History.history``: ``accuracy``, ``loss``, ``val_accuracy``,
            ``val_loss`` lists, one value per epoch (missing keys are skipped).

    Returns:
        PNG file bytes.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11, 4))
    for i, metric in enumerate(("accuracy", "loss")):
        ax = fig.add_subplot(1, 2, i + 1)
        for key, name in ((metric, "train"), (f"val_{metric}", "validation")):
            values = history.get(key)
            if values:
                ax.plot(range(1, len(values) + 1), values, marker="o", label=name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric}: train vs validation")
        ax.grid(alpha=0.3)
        ax.legend()
    return _png(fig)
