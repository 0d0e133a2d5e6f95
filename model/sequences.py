"""Padding and truncation of id sequences to a fixed length."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from model.vocabulary import PAD_INDEX

Side = Literal["pre", "post"]


class SequenceConfig(BaseModel):
    """Fixed length of the model input and where padding/truncation happen.

    Attributes:
        max_len: Tokens per sequence after padding/truncation (the seeds use 200).
        padding: ``"post"`` appends padding ids (0) after the text, ``"pre"`` before it.
        truncating: ``"post"`` keeps the first ``max_len`` tokens, ``"pre"`` the last.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_len: int = Field(default=200, ge=1)
    padding: Side = "post"
    truncating: Side = "post"

    def truncate(self, ids: Sequence[int]) -> Sequence[int]:
        """``ids`` cut to ``max_len``: the first ones kept (``"post"``) or the last (``"pre"``)."""
        if len(ids) <= self.max_len:
            return ids
        return ids[: self.max_len] if self.truncating == "post" else ids[-self.max_len :]


def pad_sequences(
    sequences: Sequence[Sequence[int]], config: SequenceConfig
) -> npt.NDArray[np.int32]:
    """Pad/truncate id sequences into a ``(batch, max_len) int32`` matrix.

    Same result as ``keras.utils.pad_sequences(sequences, maxlen=max_len, dtype="int32",
    padding=..., truncating=..., value=0)``, without importing Keras.
    """
    out = np.full((len(sequences), config.max_len), PAD_INDEX, dtype=np.int32)
    for row, seq in enumerate(sequences):
        if not seq:
            continue
        kept = config.truncate(seq)
        if config.padding == "post":
            out[row, : len(kept)] = kept
        else:
            out[row, config.max_len - len(kept) :] = kept
    return out
