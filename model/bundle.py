"""Artifact bundle: everything serving needs, versioned, written atomically.

Layout of a model directory (``--output`` of ``training.fit``, ``--bundle`` of the consumer)::

    models/bbc/
      current -> 20261121T193000Z-3f2a9c1d     # symlink, swapped atomically
      20261121T193000Z-3f2a9c1d/
        manifest.json     # version, labels (= output order), preprocessing, network, sha256s
        model.keras       # Keras 3 model (architecture + weights)
        vocabulary.json   # vocabulary words in id order and the OOV token
        metrics.json      # held-out evaluation
        drift_profile.json  # reference of the drift signals (model/drift/profile.py)
        ...               # any extra files training adds (split, report)

A version directory is first written under a hidden temporary name in the same parent and
then renamed, and ``current`` is replaced with ``os.replace`` of a fresh symlink, so a
reader sees either the old bundle or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from model.drift.profile import ReferenceProfile, load_profile
from model.engine import FULL_LENGTH_CHUNK, EngineConfig, InferenceEngine, configure_threads
from model.network import NetworkConfig, embedding_layer
from model.pipeline import TextPipeline
from model.sequences import SequenceConfig
from model.text import TextConfig
from model.vocabulary import Vocabulary

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MODEL_FILE = "model.keras"
VOCABULARY_FILE = "vocabulary.json"
METRICS_FILE = "metrics.json"
CURRENT = "current"
#: Rows per forward pass of the unmasked (``keras-full``) path (bounds memory on large inputs);
#: the other paths cut batches into length-sorted chunks of at most 256 rows.
PREDICT_CHUNK = FULL_LENGTH_CHUNK


class BundleError(Exception):
    """A bundle is missing, incomplete, corrupt or incompatible; the message says what to fix."""


class BundleManifest(BaseModel):
    """Contents of ``manifest.json``."""

    model_config = ConfigDict(frozen=True)

    format_version: int = FORMAT_VERSION
    version: str
    created_at: datetime
    labels: list[str] = Field(min_length=2, description="Class names in model output order.")
    text: TextConfig
    sequence: SequenceConfig
    network: NetworkConfig
    num_words: int
    files: dict[str, str] = Field(description="File name → sha256 hex digest.")
    training: dict[str, Any] = Field(default_factory=dict)
    libraries: dict[str, str] = Field(default_factory=dict)


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes (streamed; ``hashlib.file_digest``).

    Raises:
        OSError: the file cannot be read.
    """
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class Bundle:
    """A loaded model with its preprocessing; turns texts into class probabilities.

    Attributes:
        path: The version directory the bundle was loaded from.
        manifest: Parsed ``manifest.json``.
        pipeline: Text → ids preprocessing identical to training.
        model: The Keras model, ``(batch, seq_len) int32 → (batch, n_classes) float32``.
        drift_profile: The reference profile of the drift signals (``drift_profile.json``,
            :mod:`model.drift`), or ``None`` for a bundle trained before it existed.
    """

    def __init__(
        self,
        path: Path,
        manifest: BundleManifest,
        pipeline: TextPipeline,
        model: Any,
        engine_config: EngineConfig | None = None,
        drift_profile: ReferenceProfile | None = None,
    ):
        self.path = path
        self.drift_profile = drift_profile
        self.manifest = manifest
        self.pipeline = pipeline
        self.model = model
        self.engine_config = engine_config
        self._engine: InferenceEngine | None = None
        self._engine_lock = threading.Lock()

    @property
    def version(self) -> str:
        """Version id, e.g. ``20261121T193000Z-3f2a9c1d`` (UTC time of training + weights hash)."""
        return self.manifest.version

    @property
    def labels(self) -> list[str]:
        """Class names in the order of the model's output columns."""
        return self.manifest.labels

    @property
    def engine(self) -> InferenceEngine:
        """The compiled, length-aware inference engine (built and self-checked on first use).

        See :mod:`model.engine`: on the first call it verifies its path against the Keras
        model (about a second); :meth:`warmup` also compiles every batch shape up front.
        """
        engine = self._engine
        if engine is None:
            with self._engine_lock:
                if self._engine is None:
                    self._engine = InferenceEngine(self.model, self.pipeline, self.engine_config)
                engine = self._engine
        return engine

    def warmup(self) -> float:
        """Build the engine and compile all its batch shapes now (not on the first batches).

        Returns:
            Seconds spent (a few on a 2-core machine).
        """
        began = time.perf_counter()
        self.engine.warmup()
        return time.perf_counter() - began

    def predict_ids(self, ids: npt.NDArray[np.int32]) -> npt.NDArray[np.float32]:
        """Padded ``(batch, seq_len) int32`` ids → ``(batch, n_classes) float32`` probabilities.

        0 is padding, on either side; rows sum to 1. Equal within ``1e-5`` to ``model(ids)``;
        with a masked model the padding is not computed.

        Raises:
            ValueError: ``ids`` is not two-dimensional, or an id is outside the embedding.
        """
        if len(ids) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self.engine.predict_ids(ids)

    def predict_proba(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Class probabilities of raw texts → ``(len(texts), n_classes) float32``, rows sum to 1.

        Same numbers (within ``1e-5``) as ``model.predict(pipeline.encode(texts))``, computed
        by the length-aware engine: sorted, trimmed micro-batches through one compiled function.
        """
        if len(texts) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self.engine.predict_proba(texts)

    def token_ids(self, text: str) -> list[int]:
        """Vocabulary ids of one raw text, truncated to ``max_len``, unpadded (may be empty).

        The per-text half of :meth:`predict_proba`, for callers that tokenise each text on
        its own (the consumer does, so that one text's failure is that text's alone).
        """
        return self.engine.token_ids(text)

    def predict_token_ids(self, sequences: Sequence[Sequence[int]]) -> npt.NDArray[np.float32]:
        """Probabilities of :meth:`token_ids` outputs → ``(len(sequences), n_classes) float32``.

        ``predict_token_ids([token_ids(t) for t in texts])`` equals ``predict_proba(texts)``.
        """
        if len(sequences) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self.engine.predict_token_ids(sequences)

    def top_k(
        self, probabilities: npt.NDArray[np.float32], k: int
    ) -> list[list[tuple[str, float]]]:
        """The ``k`` most probable ``(label, probability)`` pairs per row, highest first.

        Args:
            probabilities: ``(batch, n_classes)`` rows from :meth:`predict_proba`.
            k: Pairs per row; capped at the number of classes.

        Returns:
            ``batch`` lists of ``min(k, n_classes)`` pairs; ties keep label order.
        """
        k = min(k, len(self.labels))
        labels = self.labels
        if len(probabilities) == 1:  # the consumer's per-message call: no numpy sort overhead
            row = probabilities[0].tolist()
            best = sorted(range(len(row)), key=row.__getitem__, reverse=True)[:k]
            return [[(labels[j], float(row[j])) for j in best]]
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        return [
            [(labels[j], float(row[j])) for j in idx]
            for row, idx in zip(probabilities, order, strict=True)
        ]


def require_existing(path: Path) -> Path:
    """``path`` if it exists, for settings validators of the services that load bundles.

    Raises:
        ValueError: it does not exist; the message says how to train one there.
    """
    if not path.exists():
        raise ValueError(
            f"{path} does not exist; train a model first: "
            f"python -m training.fit --dataset bbc --output {path}"
        )
    return path


def resolve_version_dir(path: Path) -> Path:
    """Return the version directory ``path`` names: itself, or what its ``current`` points to.

    Raises:
        BundleError: if neither ``path/manifest.json`` nor ``path/current`` exists.
    """
    if (path / MANIFEST).is_file():
        return path
    current = path / CURRENT
    if current.exists():
        return current.resolve()
    raise BundleError(
        f"no model bundle at {path}: expected {path / MANIFEST} or a '{CURRENT}' pointer. "
        "Train one with: python -m training.fit --dataset bbc --output " + str(path)
    )


def load_bundle(path: Path | str) -> Bundle:
    """Load and verify a bundle from a version directory or a model directory with ``current``.

    Every file listed in the manifest is checked against its sha256 before use.

    Raises:
        BundleError: missing directory or file, checksum mismatch, unknown format version,
            or a model whose shapes disagree with the labels/vocabulary.
    """
    version_dir = resolve_version_dir(Path(path))
    try:
        manifest = BundleManifest.model_validate_json((version_dir / MANIFEST).read_bytes())
    except (OSError, ValidationError) as exc:
        raise BundleError(f"unreadable manifest in {version_dir}: {exc}") from exc
    if manifest.format_version != FORMAT_VERSION:
        raise BundleError(
            f"bundle {version_dir} has format {manifest.format_version}; "
            f"this code reads format {FORMAT_VERSION}. Retrain it with this version."
        )
    for name, expected in manifest.files.items():
        file = version_dir / name
        if not file.is_file():
            raise BundleError(f"bundle {version_dir} is incomplete: {name} is missing")
        if sha256_of(file) != expected:
            raise BundleError(f"bundle {version_dir} is corrupt: sha256 of {name} does not match")
    try:
        vocabulary = Vocabulary.load(version_dir / VOCABULARY_FILE)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"unreadable vocabulary in {version_dir}: {exc}") from exc

    configure_threads()  # TensorFlow's thread pools are sized before its first operation
    import keras

    try:
        model = keras.saving.load_model(version_dir / MODEL_FILE, compile=False)
    except Exception as exc:  # Keras raises many types for a bad file
        raise BundleError(f"cannot load {version_dir / MODEL_FILE}: {exc}") from exc
    n_out = model.output_shape[-1]
    if n_out != len(manifest.labels):
        raise BundleError(
            f"bundle {version_dir}: model has {n_out} outputs but {len(manifest.labels)} labels"
        )
    embedding = embedding_layer(model)
    if embedding is None:
        raise BundleError(f"bundle {version_dir}: the model has no Embedding layer")
    embedding_rows = embedding.input_dim
    if vocabulary.size > embedding_rows:
        raise BundleError(
            f"bundle {version_dir}: vocabulary has {vocabulary.size} ids, "
            f"the embedding only {embedding_rows}"
        )
    try:
        profile = load_profile(version_dir, manifest.labels)
    except ValueError as exc:
        raise BundleError(f"bundle {version_dir}: {exc}") from exc
    pipeline = TextPipeline(manifest.text, manifest.sequence, vocabulary)
    return Bundle(version_dir, manifest, pipeline, model, drift_profile=profile)


def save_bundle(
    model_dir: Path | str,
    model: Any,
    pipeline: TextPipeline,
    labels: Sequence[str],
    network: NetworkConfig,
    num_words: int,
    metrics: Mapping[str, Any],
    training: Mapping[str, Any] | None = None,
    extra_files: Mapping[str, str | bytes] | None = None,
) -> Path:
    """Write a new bundle version under ``model_dir`` and point ``current`` at it.

    Args:
        model_dir: Model directory; created if missing.
        model: Trained Keras model whose output columns follow ``labels``.
        pipeline: The fitted preprocessing.
        labels: Class names in output order.
        network: Configuration the model was built from.
        num_words: Vocabulary cap used when fitting (``Embedding`` input_dim).
        metrics: Held-out evaluation, written to ``metrics.json``.
        training: Free-form training facts (dataset, sha256, seed, epochs) for the manifest.
        extra_files: More files to place in the bundle (name → text or bytes).

    Returns:
        The new version directory.
    """
    import keras
    import tensorflow as tf

    root = Path(model_dir)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        model.save(tmp / MODEL_FILE)
        pipeline.vocabulary.save(tmp / VOCABULARY_FILE)
        (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        for name, content in (extra_files or {}).items():
            data = content.encode("utf-8") if isinstance(content, str) else content
            (tmp / name).write_bytes(data)
        files = {p.name: sha256_of(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        now = datetime.now(UTC)
        version = f"{now:%Y%m%dT%H%M%S}Z-{files[MODEL_FILE][:8]}"
        manifest = BundleManifest(
            version=version,
            created_at=now,
            labels=list(labels),
            text=pipeline.text,
            sequence=pipeline.sequence,
            network=network,
            num_words=num_words,
            files=files,
            training=dict(training or {}),
            libraries={"keras": keras.__version__, "tensorflow": tf.__version__},
        )
        (tmp / MANIFEST).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
        _fsync_dir(tmp)
        final = root / version
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    point_current(root, version)
    return final


def point_current(model_dir: Path, version: str) -> None:
    """Atomically make ``model_dir/current`` a relative symlink to ``version``."""
    link_tmp = model_dir / f".current-{uuid.uuid4().hex}"
    os.symlink(version, link_tmp)
    os.replace(link_tmp, model_dir / CURRENT)
    _fsync_dir(model_dir)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
