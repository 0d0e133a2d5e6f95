"""Step 4b: the reference profile of the drift signals, from the validation split."""

from __future__ import annotations

import numpy as np

from model.drift.profile import ReferenceProfile
from training.steps.encode import EncodedData
from training.steps.prepare import PreparedData
from training.steps.train import TrainedModel


def reference_profile(
    prepared: PreparedData, encoded: EncodedData, trained: TrainedModel
) -> ReferenceProfile:
    """The drift reference (:mod:`model.drift.profile`) of the validation rows.

    The rows are tokenised by the serving path (``pipeline.token_ids``, truncated to
    ``max_len``), so the reference counts exactly what the consumer and the API will count;
    the probabilities are the trained model's on the same rows.

    Raises:
        ValueError: the validation split is empty.
    """
    split, pipeline = prepared.split, encoded.pipeline
    texts = [split.train.texts[int(i)] for i in split.val_idx]
    if not texts:
        raise ValueError("the validation split is empty: no reference profile can be built")
    token_ids = [list(pipeline.sequence.truncate(pipeline.token_ids(t))) for t in texts]
    probabilities = np.asarray(
        trained.model.predict(encoded.x_train[split.val_idx], verbose=0), dtype=np.float32
    )
    return ReferenceProfile.build(
        token_ids,
        probabilities,
        prepared.labels,
        pipeline.sequence.max_len,
        source=f"validation split of {prepared.data.name} ({len(texts)} rows)",
    )
