"""The array types the engine's modules pass around."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

#: Token ids, lengths and id matrices (``0`` is padding).
IntArray = npt.NDArray[np.int32]
#: Weights and probabilities.
FloatArray = npt.NDArray[np.float32]
#: Row positions inside a call's inputs.
RowArray = npt.NDArray[np.int64]
