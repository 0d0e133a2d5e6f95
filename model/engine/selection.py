"""Choosing an engine's inference path once, verified against the Keras model.

In order of preference:

1. ``fused`` when :func:`~model.engine.spec.extract_network` reads the network and it masks
   padding; XLA first (if ``EngineConfig.jit``), then a plain graph.
2. ``keras-trimmed`` when the network masks padding but the fused path is refused.
3. ``keras-full`` when the network has no padding mask (trimming would change its results),
   or the trimmed Keras path fails its self-check.

Each candidate is verified by :func:`self_check` (when ``EngineConfig.self_check``) before it
is taken; every refusal is recorded in ``PathChoice.fallback_reasons`` and logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from model.engine.config import MAX_FOLDED_TABLE_BYTES, EngineConfig
from model.engine.fused import build_fused_function
from model.engine.paths import (
    FusedPath,
    InferencePath,
    KerasFullPath,
    KerasTrimmedPath,
    PathContext,
)
from model.engine.spec import NetworkSpec, UnsupportedModelError, extract_network
from model.network import embedding_layer
from model.sequences import pad_sequences

log = logging.getLogger(__name__)

#: Seed of the self-check's random sequences (fixed: the check is reproducible).
SELF_CHECK_SEED = 20261121


@dataclass(frozen=True)
class PathChoice:
    """The path chosen for a model, and what was learnt on the way.

    Attributes:
        path: The verified path.
        spec: The network's weights when :func:`extract_network` read them and the network
            masks padding (even if the fused path was then refused), else ``None``.
        folded: Whether the fused path folds (or would fold) the embedding into layer 1.
        fallback_reasons: Why each preferred path was refused, in order.
    """

    path: InferencePath
    spec: NetworkSpec | None
    folded: bool
    fallback_reasons: list[str]


def choose_path(model: Any, context: PathContext) -> PathChoice:
    """The first path of the module's order that can run ``model`` and passes its self-check.

    Args:
        model: The Keras model.
        context: What the paths share with the engine (``context.config`` decides XLA, the
            self-check and its tolerance).

    Returns:
        The choice; never raises for a model the Keras path can run.
    """
    reasons: list[str] = []
    try:
        spec: NetworkSpec | None = extract_network(model)
    except UnsupportedModelError as exc:
        spec = None
        reasons.append(f"fused: {exc}")
    mask_zero = spec.mask_zero if spec is not None else _embedding_masks(model)
    if not mask_zero:
        reasons.append("no padding mask: results depend on padding")
        return PathChoice(KerasFullPath(context), None, False, reasons)
    folded = False
    if spec is not None:
        folded = spec.folded_table_bytes() <= MAX_FOLDED_TABLE_BYTES
        fused = _verified_fused(spec, folded, context, reasons)
        if fused is not None:
            return PathChoice(fused, spec, folded, reasons)
    trimmed = KerasTrimmedPath(context, row_step_cost_us(context.config, spec, folded))
    try:
        if context.config.self_check:
            self_check(trimmed, context)
    except Exception as exc:
        reasons.append(f"keras-trimmed: {exc}")
        log.warning("trimmed Keras inference refused, using full length: %s", exc)
        return PathChoice(KerasFullPath(context), spec, folded, reasons)
    return PathChoice(trimmed, spec, folded, reasons)


def _verified_fused(
    spec: NetworkSpec, folded: bool, context: PathContext, reasons: list[str]
) -> FusedPath | None:
    """The fused path, with XLA if allowed and it works, else as a plain graph; else None."""
    config = context.config
    for jit in (True, False) if config.jit else (False,):
        try:
            function = build_fused_function(spec, jit, folded)
            path = FusedPath(context, function, jit, row_step_cost_us(config, spec, folded))
            if config.self_check:
                self_check(path, context)
            return path
        except Exception as exc:  # XLA or graph build errors, self-check mismatch
            reasons.append(f"fused(jit={jit}): {exc}")
            log.warning("fused inference path refused: %s", exc)
    return None


def row_step_cost_us(config: EngineConfig, spec: NetworkSpec | None, folded: bool) -> float:
    """The planner's cost of one row-step in microseconds.

    ``config.row_step_cost_us`` if set; else from the network's executed multiply-adds per
    token at ~60 GFLOP/s per core (the fused loop on the reference machine); 1.0 without a spec.
    """
    if config.row_step_cost_us is not None:
        return config.row_step_cost_us
    if spec is None:
        return 1.0
    return 2.0 * spec.executed_macs_per_token(folded) / 60e3


def self_check(path: InferencePath, context: PathContext) -> None:
    """Compare ``path`` with the Keras model on full-length padded random sequences.

    Ten sequences of lengths 0 … ``max_len`` (empty ones included), random ids in
    ``[2, id_limit)``; run unpadded through ``path`` (not counted in the stats) and padded
    like the pipeline through the Keras model.

    Raises:
        AssertionError: a probability differs by more than ``config.tolerance``.
    """
    max_len = context.max_len
    tolerance = context.config.tolerance
    rng = np.random.default_rng(SELF_CHECK_SEED)
    lengths = [0, 1, 2, 3, 5, max_len, max_len - 1, max_len // 2, 7, 40]
    lengths = [min(max(0, n), max_len) for n in lengths]
    high = max(3, context.id_limit)
    seqs = [rng.integers(2, high, size=n).astype(np.int32).tolist() for n in lengths]
    padded = pad_sequences(seqs, context.pipeline.sequence)
    reference = np.asarray(context.keras_fn(padded), dtype=np.float32)
    got = path.predict_sequences(seqs, count=False)
    both_nan = np.isnan(got) & np.isnan(reference)  # e.g. a masked mean of nothing
    diff = float(np.max(np.where(both_nan, 0.0, np.abs(got - reference))))
    if not diff <= tolerance:
        raise AssertionError(
            f"{path.name} differs from the Keras model by {diff:.3g} (> {tolerance:g})"
        )


def embedding_rows(model: Any, vocabulary_size: int) -> int:
    """Rows of the model's embedding (ids must be below it); the vocabulary's size without one."""
    embedding = embedding_layer(model)
    return vocabulary_size if embedding is None else int(embedding.input_dim)


def _embedding_masks(model: Any) -> bool:
    """Whether the model's embedding masks id 0 (``mask_zero``); False without an embedding."""
    embedding = embedding_layer(model)
    return embedding is not None and bool(embedding.mask_zero)
