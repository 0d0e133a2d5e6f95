"""What every peer shares: its command line and the project's bundle behind one call.

Imported by the peers' entry points, which run in ``.venv-peers`` (``make peers-venv``), and
by the harness in ``.venv``; it needs only the project's ``model`` package and numpy.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

Inference = Literal["keras", "engine"]
INFERENCE_MODES: tuple[Inference, ...] = ("keras", "engine")
#: What a peer writes to stderr when it is about to start its framework (the harness's cue).
READY_LINE = '{"event": "peer_ready"}'


def peer_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The command line every peer takes (the harness passes the same flags to each)."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--bundle", required=True, help="model directory or bundle version")
    p.add_argument("--bootstrap-servers", required=True)
    p.add_argument("--input-topic", required=True)
    p.add_argument("--output-topic", required=True)
    p.add_argument("--group-id", required=True, help="consumer group / application id")
    p.add_argument("--inference", choices=INFERENCE_MODES, default="keras")
    p.add_argument("--max-batch-size", type=int, default=256, help="micro-batch cap (messages)")
    p.add_argument("--max-wait-ms", type=int, default=50, help="micro-batch time cap (ms)")
    return p


class Classifier:
    """The project's bundle, called the way a framework's docs run a Keras model.

    ``keras``: ``bundle.pipeline.encode(texts)`` (the project's preprocessing: normalise,
    stopwords, vocabulary, pad to ``max_len``) then ``model.predict_on_batch`` (the fastest
    ordinary Keras call: a compiled predict step; ``model(x, training=False)`` runs eagerly
    and was ~100x slower here). ``engine``: the project's own ``Bundle.predict_proba``
    (length-aware engine), to separate the framework's cost from the engine's.

    Args:
        bundle: Model directory or bundle version.
        inference: ``keras`` or ``engine``.
    """

    def __init__(self, bundle: str, inference: Inference = "keras") -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from model import load_bundle

        self.bundle = load_bundle(bundle)
        self.inference = inference
        if inference == "engine":
            self.bundle.warmup()
        else:
            self.probabilities(["warm up"])

    def probabilities(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """``(len(texts), n_classes)`` class probabilities (rows sum to 1)."""
        if self.inference == "engine":
            return self.bundle.predict_proba(texts)
        ids = self.bundle.pipeline.encode(texts)
        return np.asarray(self.bundle.model.predict_on_batch(ids), dtype=np.float32)

    def labels(self, texts: Sequence[str]) -> list[str]:
        """The most probable label of each text."""
        names = self.bundle.labels
        return [names[int(i)] for i in np.argmax(self.probabilities(texts), axis=1)]

    def classify(self, messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Predictions of input messages ``{"id", "text"}``, in order.

        Each is ``{"id", "label", "confidence", "top_k", "model_version"}``, the fields of the
        project's prediction that depend on the model.
        """
        probs = self.probabilities([str(m["text"]) for m in messages])
        top = self.bundle.top_k(probs, 3)
        return [
            {
                "id": m["id"],
                "label": pairs[0][0],
                "confidence": pairs[0][1],
                "top_k": [{"label": lab, "probability": p} for lab, p in pairs],
                "model_version": self.bundle.version,
            }
            for m, pairs in zip(messages, top, strict=True)
        ]

    def classify_one(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """:meth:`classify` of one message (for frameworks that apply a function per message)."""
        return self.classify([message])[0]
