"""Model output made safe to publish: one rule for the consumer and the HTTP API."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


class NonFiniteOutputError(ValueError):
    """The model returned NaN or infinite probabilities for a text."""


def checked_rows(
    probabilities: npt.NDArray[np.float32],
) -> list[npt.NDArray[np.float32] | Exception]:
    """Rows of a ``(batch, n_classes) float32`` probability matrix, made safe to publish.

    A row with NaN or infinite values becomes a :class:`NonFiniteOutputError` (the consumer
    dead-letters its message as ``inference_failed``; the API answers 503); the others are
    clipped to ``[0, 1]``, since a fused softmax can round a certain class to ``1.0000001``
    and the output schemas refuse it.
    """
    finite: list[bool] = np.asarray(np.isfinite(probabilities).all(axis=1), bool).tolist()
    clipped = np.clip(probabilities, 0.0, 1.0)
    return [
        row if ok else NonFiniteOutputError("model returned non-finite probabilities")
        for row, ok in zip(clipped, finite, strict=True)
    ]
