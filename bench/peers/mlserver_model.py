"""MLServer peer, the runtime: a custom ``MLModel`` wrapping the project's bundle.

As MLServer's docs teach a custom inference runtime: ``load()`` reads the model from the
model settings' ``parameters.uri``, ``predict()`` decodes the V2 request's ``BYTES`` input
with ``StringCodec`` and answers the labels (``BYTES``) and probabilities (``FP32``).
Adaptive batching (``max_batch_size``/``max_batch_time`` in the model settings) merges the
requests of many Kafka messages into one ``predict()`` call. Imported by MLServer in
``.venv-peers``; started by :mod:`bench.peers.mlserver_app`.
"""

from __future__ import annotations

from typing import Any

from mlserver import MLModel
from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.types import InferenceRequest, InferenceResponse

from bench.peers.common import Classifier

#: Name of the request's text input and of the ``--inference`` model-settings parameter.
TEXT_INPUT = "text"


class TextClassifier(MLModel):  # type: ignore[misc]
    """The bundle at ``parameters.uri``; ``parameters.extra.inference`` is keras or engine."""

    async def load(self) -> bool:
        """Load the bundle (and compile its predict step); True when ready."""
        params: Any = self.settings.parameters
        extra = params.extra or {}
        self._classifier = Classifier(str(params.uri), extra.get("inference", "keras"))
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        """Labels (``label``, BYTES) and ``probabilities`` (FP32) of the request's texts."""
        texts = StringCodec.decode_input(payload.inputs[0])
        probs = self._classifier.probabilities(texts)
        names = self._classifier.bundle.labels
        labels = [names[int(i)] for i in probs.argmax(axis=1)]
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[
                StringCodec.encode_output("label", labels),
                NumpyCodec.encode_output("probabilities", probs),
            ],
        )
