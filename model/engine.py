"""Length-aware, compiled inference for the LSTM classifiers: texts → class probabilities.

Why it exists: calling ``model.predict`` once per message costs tens of milliseconds of Keras
overhead, and the usual batched baseline computes every sequence at the full ``max_len``
although most news snippets have a few dozen real tokens. The engine removes both costs and
returns the same probabilities (within ``1e-5``) as the Keras model on full-length padded input.

How:

1. **Ragged encoding.** Each text becomes its vocabulary ids with
   :meth:`model.pipeline.TextPipeline.token_ids` (the one preprocessing path), truncated like
   :func:`model.sequences.pad_sequences` would, but never padded to ``max_len``.
2. **Length-aware micro-batches.** Rows are sorted by length (longest first) and cut into
   chunks whose row counts come from a few fixed buckets (8 … 256). A small dynamic program
   picks the cut points that minimise the estimated cost ``Σ call + T_chunk * step(rows)``,
   so padding is only computed where it is cheaper than another call. Each chunk is trimmed
   to its longest member; outputs are written back in input order.
3. **Masking makes trimming exact.** With ``Embedding(mask_zero=True)`` a masked LSTM step
   keeps its state, so a sequence's result depends only on its real tokens, whatever the
   padding side or amount. The engine feeds real tokens left-aligned and stops each row's
   recurrence at its own length.
4. **One compiled function per model** (the *fused* path). The weights of the network built by
   :func:`model.network.build_model` (embedding → (Bi)LSTM layers → dense head) are lifted
   into a ``tf.function`` with a fixed input signature, compiled by XLA once per row bucket
   (the matrix is ``max_len`` wide; the recurrence runs only to the chunk's longest row):
   the embedding and the first LSTM layer's input kernel are folded into one lookup table
   (``E @ W + b``: half of the first layer's multiply-adds become a gather), both directions
   of a bidirectional layer advance in one batched matmul per step, and the gate arithmetic
   is fused. Chunks run on a small thread pool (compiled calls release the GIL), so inference
   runs on the cores while the calling thread tokenises the next slice of the batch.
5. **Verified, with fallbacks.** On construction the engine compares its path against the
   Keras model on full-length padded random sequences (all lengths, empty ones included). A
   network it does not recognise, or a mismatch, falls back to ``keras-trimmed`` (the Keras
   model in a ``tf.function`` on the same trimmed chunks, verified the same way), and a model
   without padding masks to ``keras-full`` (the padded ``max_len`` matrix, no trimming).

TensorFlow's thread pools must be sized before its first operation:
:func:`configure_threads` does that (``model.bundle.load_bundle`` calls it before loading).
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from model.network import embedding_layer
from model.pipeline import TextPipeline
from model.vocabulary import PAD_INDEX

log = logging.getLogger(__name__)

IntArray = npt.NDArray[np.int32]
FloatArray = npt.NDArray[np.float32]
Path_ = Literal["fused", "keras-trimmed", "keras-full"]

#: Environment variables read by :func:`configure_threads` when no argument is given.
INTRA_OP_ENV = "CLASSIFIER_TF_INTRA_OP_THREADS"
INTER_OP_ENV = "CLASSIFIER_TF_INTER_OP_THREADS"
WORKERS_ENV = "CLASSIFIER_ENGINE_WORKERS"
#: ``1``/``true``: compile every batch shape when an engine is built (see ``EngineConfig.warmup``).
WARMUP_ENV = "CLASSIFIER_ENGINE_WARMUP"

#: Row counts a chunk may have (padded up with empty rows at the tail of a batch).
ROW_BUCKETS: tuple[int, ...] = (8, 16, 32, 64, 128, 256)
#: Column granularity of compiled shapes wider than ``max_len`` (only ``predict_ids`` makes them).
TIME_BUCKET = 32
#: Rows per call of the unmasked (``keras-full``) path, which runs full-length matrices.
FULL_LENGTH_CHUNK = 512
#: Largest embedding-table * input-kernel product folded into a lookup table (bytes).
MAX_FOLDED_TABLE_BYTES = 256 << 20


# ----------------------------------------------------------------------------- threads


@dataclass(frozen=True)
class ThreadSettings:
    """TensorFlow thread-pool sizes in effect (``0`` means TensorFlow's own default)."""

    intra_op: int
    inter_op: int
    applied: bool


_threads_lock = threading.Lock()
_threads: ThreadSettings | None = None


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if number < 0:
        raise ValueError(f"{name} must be >= 0, got {number}")
    return number


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def configure_threads(intra_op: int | None = None, inter_op: int | None = None) -> ThreadSettings:
    """Size TensorFlow's thread pools once, before its first operation.

    The compiled engine runs each chunk single-threaded (XLA's per-step matmuls are too small
    to split well) and gets parallelism from running chunks concurrently, so the defaults are
    ``intra_op = 1`` and ``inter_op = cpu_count()``. Keras' own ``model.predict`` prefers
    more intra-op threads: benchmarks of it run in a separate process.

    Args:
        intra_op: Threads inside one op; default ``$CLASSIFIER_TF_INTRA_OP_THREADS`` else 1.
        inter_op: Ops run concurrently; default ``$CLASSIFIER_TF_INTER_OP_THREADS`` else
            :func:`cpu_count`.

    Returns:
        The settings in effect. ``applied`` is False when TensorFlow had already started
        (e.g. a model was loaded first), in which case its existing pools are kept and a
        warning is logged if they differ from the request. Calling again is a no-op that
        returns the first call's result.

    Raises:
        ValueError: a negative count or a non-integer environment variable.
    """
    global _threads
    with _threads_lock:
        if _threads is not None:
            return _threads
        intra = intra_op if intra_op is not None else _env_int(INTRA_OP_ENV)
        inter = inter_op if inter_op is not None else _env_int(INTER_OP_ENV)
        intra = 1 if intra is None else intra
        inter = cpu_count() if inter is None else inter
        if intra < 0 or inter < 0:
            raise ValueError(f"thread counts must be >= 0, got intra={intra} inter={inter}")
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(intra)
            tf.config.threading.set_inter_op_parallelism_threads(inter)
            _threads = ThreadSettings(intra, inter, applied=True)
        except RuntimeError:  # the eager context already exists
            current = ThreadSettings(
                tf.config.threading.get_intra_op_parallelism_threads(),
                tf.config.threading.get_inter_op_parallelism_threads(),
                applied=False,
            )
            if (current.intra_op, current.inter_op) != (intra, inter):
                log.warning(
                    "TensorFlow already started with intra_op=%d inter_op=%d threads; "
                    "wanted %d/%d (call model.engine.configure_threads before loading)",
                    current.intra_op,
                    current.inter_op,
                    intra,
                    inter,
                )
            _threads = current
        return _threads


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class EngineConfig:
    """Tuning knobs of :class:`InferenceEngine` (the defaults suit a 2-core x86 server).

    Attributes:
        workers: Chunks run concurrently; default ``$CLASSIFIER_ENGINE_WORKERS`` else
            :func:`cpu_count`.
        jit: Compile the fused path with XLA (falls back to a plain graph if XLA fails).
        row_buckets: Allowed chunk row counts, ascending.
        overlap_slices: Tokenise a call's texts in this many slices and start inference on
            each slice while the next is tokenised (1 = tokenise everything first). Only
            slices of at least ``min_slice_rows`` texts are made.
        min_slice_rows: Smallest slice worth its own sort-and-plan.
        call_cost_us, step_cost_us, row_step_cost_us: The planner's cost model of one chunk,
            ``call + T * (step + rows * row_step)`` in microseconds; ``row_step_cost_us``
            ``None`` derives it from the network's multiply-adds per token.
        tolerance: Largest absolute probability difference accepted by the self-check.
        self_check: Verify the chosen path against the Keras model at construction.
        warmup: Compile every row bucket at construction (a few seconds) instead of on first
            use; default ``$CLASSIFIER_ENGINE_WARMUP`` (``1``/``true``) else False.
    """

    workers: int | None = None
    jit: bool = True
    row_buckets: tuple[int, ...] = ROW_BUCKETS
    overlap_slices: int = 2
    min_slice_rows: int = 64
    call_cost_us: float = 150.0
    step_cost_us: float = 6.0
    row_step_cost_us: float | None = None
    tolerance: float = 1e-5
    self_check: bool = True
    warmup: bool | None = None

    def resolved_workers(self) -> int:
        """``workers`` or its default; at least 1."""
        if self.workers is not None:
            return max(1, self.workers)
        env = _env_int(WORKERS_ENV)
        return max(1, env if env else cpu_count())

    def resolved_warmup(self) -> bool:
        """``warmup`` or its default from ``$CLASSIFIER_ENGINE_WARMUP``."""
        if self.warmup is not None:
            return self.warmup
        return os.environ.get(WARMUP_ENV, "").strip().lower() in ("1", "true", "yes")


@dataclass
class EngineStats:
    """Work done since construction (for throughput and useful-work reporting).

    Attributes:
        rows: Sequences predicted.
        real_tokens: Non-padding tokens in those sequences (after truncation).
        computed_tokens: Row-steps the recurrent layers actually ran (``rows * steps`` per
            chunk, bucket padding rows included); ``real_tokens / computed_tokens`` is the
            share of recurrent compute spent on real tokens.
        chunks: Compiled calls made.
        encode_s, infer_s: Wall seconds spent tokenising (caller thread) and inside compiled
            calls (summed over workers, so it can exceed elapsed time).
    """

    rows: int = 0
    real_tokens: int = 0
    computed_tokens: int = 0
    chunks: int = 0
    encode_s: float = 0.0
    infer_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def as_dict(self) -> dict[str, float | int]:
        """A JSON-ready copy of the counters."""
        with self.lock:
            return {
                "rows": self.rows,
                "real_tokens": self.real_tokens,
                "computed_tokens": self.computed_tokens,
                "chunks": self.chunks,
                "encode_s": round(self.encode_s, 6),
                "infer_s": round(self.infer_s, 6),
            }


# ----------------------------------------------------------------------------- network spec


class UnsupportedModelError(Exception):
    """The Keras model is not a network the fused path knows; the message says why."""


@dataclass(frozen=True)
class _Direction:
    kernel: FloatArray  # (in, 4u), gates reordered to i, f, o, g
    recurrent: FloatArray  # (u, 4u)
    bias: FloatArray  # (4u,)


@dataclass(frozen=True)
class _Recurrent:
    units: int
    directions: tuple[_Direction, ...]  # forward first; a second one runs backwards
    return_sequences: bool


@dataclass(frozen=True)
class _DenseSpec:
    kernel: FloatArray
    bias: FloatArray
    activation: str


@dataclass(frozen=True)
class NetworkSpec:
    """Weights of an embedding → (Bi)LSTM stack → dense head classifier, as numpy arrays.

    Attributes:
        embeddings: ``(vocab, embedding_dim) float32``.
        mask_zero: Whether id 0 is masked (padding-invariant network).
        recurrent: The recurrent layers, input side first.
        dense: The dense layers after the last recurrent layer, the softmax last.
    """

    embeddings: FloatArray
    mask_zero: bool
    recurrent: tuple[_Recurrent, ...]
    dense: tuple[_DenseSpec, ...]

    @property
    def num_classes(self) -> int:
        """Width of the output layer."""
        return int(self.dense[-1].kernel.shape[1])

    def macs_per_token(self) -> int:
        """Multiply-adds of the recurrent layers per real token (nominal model cost).

        ``Σ_layers directions * 4 * (input_dim + units) * units``; the embedding lookup is free.
        """
        total = 0
        width = int(self.embeddings.shape[1])
        for layer in self.recurrent:
            total += len(layer.directions) * 4 * (width + layer.units) * layer.units
            width = layer.units * len(layer.directions)
        return total

    def executed_macs_per_token(self, folded: bool) -> int:
        """Multiply-adds the fused path actually runs per token.

        When ``folded`` the first layer's input kernel is a table lookup, not multiply-adds.
        """
        total = self.macs_per_token()
        if folded and self.recurrent:
            first = self.recurrent[0]
            total -= len(first.directions) * 4 * int(self.embeddings.shape[1]) * first.units
        return total

    def macs_per_sequence(self) -> int:
        """Multiply-adds of the dense head per sequence."""
        return sum(int(d.kernel.shape[0] * d.kernel.shape[1]) for d in self.dense)


_IDENTITY_LAYERS = {"InputLayer", "Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout"}
_DENSE_ACTIVATIONS = {"linear", "relu", "tanh", "sigmoid", "softmax"}


def _reorder_gates(w: npt.NDArray[Any], units: int) -> FloatArray:
    """Keras gate order i, f, c(g), o → i, f, o, g (the three sigmoids contiguous)."""
    i, f, g, o = (w[..., k * units : (k + 1) * units] for k in range(4))
    return np.ascontiguousarray(np.concatenate([i, f, o, g], axis=-1), dtype=np.float32)


def _activation_name(fn: Any) -> str:
    return str(getattr(fn, "__name__", repr(fn)))


def _lstm_direction(lstm: Any, backwards: bool) -> _Direction:
    name = lstm.name
    if type(lstm).__name__ != "LSTM":
        raise UnsupportedModelError(f"{name}: {type(lstm).__name__} is not an LSTM")
    if bool(lstm.go_backwards) != backwards:
        raise UnsupportedModelError(f"{name}: unexpected go_backwards={lstm.go_backwards}")
    if lstm.stateful or lstm.return_state:
        raise UnsupportedModelError(f"{name}: stateful/return_state LSTMs are not supported")
    if _activation_name(lstm.activation) != "tanh":
        raise UnsupportedModelError(f"{name}: activation {_activation_name(lstm.activation)}")
    if _activation_name(lstm.recurrent_activation) != "sigmoid":
        raise UnsupportedModelError(
            f"{name}: recurrent_activation {_activation_name(lstm.recurrent_activation)}"
        )
    units = int(lstm.units)
    cell = lstm.cell
    kernel = np.asarray(cell.kernel.numpy(), dtype=np.float32)
    recurrent = np.asarray(cell.recurrent_kernel.numpy(), dtype=np.float32)
    bias = (
        np.asarray(cell.bias.numpy(), dtype=np.float32)
        if lstm.use_bias
        else np.zeros(4 * units, dtype=np.float32)
    )
    return _Direction(
        _reorder_gates(kernel, units), _reorder_gates(recurrent, units), _reorder_gates(bias, units)
    )


def _feeds(previous: Any, layer: Any) -> bool:
    """True when ``layer``'s only call takes ``previous``'s only output as its first input.

    (A ``Bidirectional`` layer's call also lists the mask among its inputs.)
    """
    try:
        (node,) = layer._inbound_nodes
        (prev_node,) = previous._inbound_nodes
        return node.input_tensors[0] is prev_node.output_tensors[0]
    except (AttributeError, ValueError, IndexError):
        return False


def extract_network(model: Any) -> NetworkSpec:
    """Read the weights of a model built by :func:`model.network.build_model`.

    Accepted: a linear chain ``Input → Embedding → [Dropout/SpatialDropout1D]* → (LSTM |
    Bidirectional(LSTM, merge_mode='concat'))+ → Dense* → Dense(softmax)``, LSTMs with the
    default ``tanh``/``sigmoid`` activations, intermediate ones returning sequences.

    Raises:
        UnsupportedModelError: any other structure (pooling heads, other layer types,
            custom activations, stateful layers, ...); the message names the layer.
    """
    layers = list(model.layers)
    previous = None
    embeddings: FloatArray | None = None
    mask_zero = False
    recurrent: list[_Recurrent] = []
    dense: list[_DenseSpec] = []
    for layer in layers:
        kind = type(layer).__name__
        if previous is not None:
            chained = _feeds(previous, layer)
            if not chained:
                raise UnsupportedModelError(f"{layer.name}: the model is not a linear chain")
        previous = layer
        if kind in _IDENTITY_LAYERS:
            if dense:
                raise UnsupportedModelError(f"{layer.name}: {kind} inside the dense head")
            continue
        if kind == "Embedding":
            if embeddings is not None:
                raise UnsupportedModelError(f"{layer.name}: a second embedding")
            embeddings = np.asarray(layer.embeddings.numpy(), dtype=np.float32)
            mask_zero = bool(layer.mask_zero)
        elif kind in ("LSTM", "Bidirectional"):
            if embeddings is None or dense:
                raise UnsupportedModelError(f"{layer.name}: recurrent layer out of place")
            dirs: tuple[_Direction, ...]
            if kind == "Bidirectional":
                if layer.merge_mode != "concat":
                    raise UnsupportedModelError(f"{layer.name}: merge_mode {layer.merge_mode}")
                dirs = (
                    _lstm_direction(layer.forward_layer, backwards=False),
                    _lstm_direction(layer.backward_layer, backwards=True),
                )
                units, seqs = int(layer.forward_layer.units), bool(layer.return_sequences)
            else:
                dirs = (_lstm_direction(layer, backwards=False),)
                units, seqs = int(layer.units), bool(layer.return_sequences)
            recurrent.append(_Recurrent(units, dirs, seqs))
        elif kind == "Dense":
            if not recurrent:
                raise UnsupportedModelError(f"{layer.name}: dense layer before the recurrent ones")
            activation = _activation_name(layer.activation)
            if activation not in _DENSE_ACTIVATIONS:
                raise UnsupportedModelError(f"{layer.name}: activation {activation}")
            kernel = np.asarray(layer.kernel.numpy(), dtype=np.float32)
            bias = (
                np.asarray(layer.bias.numpy(), dtype=np.float32)
                if layer.use_bias
                else np.zeros(kernel.shape[1], dtype=np.float32)
            )
            dense.append(_DenseSpec(kernel, bias, activation))
        else:
            raise UnsupportedModelError(f"{layer.name}: layer type {kind} is not supported")
    if embeddings is None or not recurrent or not dense:
        raise UnsupportedModelError("expected an embedding, recurrent layers and a dense head")
    if any(r.return_sequences for r in recurrent[-1:]) or not all(
        r.return_sequences for r in recurrent[:-1]
    ):
        raise UnsupportedModelError("only the last recurrent layer may return its final state")
    if dense[-1].activation != "softmax":
        raise UnsupportedModelError("the output layer is not a softmax")
    return NetworkSpec(embeddings, mask_zero, tuple(recurrent), tuple(dense))


# ----------------------------------------------------------------------------- fused graph


def _table_inputs(tables: Sequence[Any], dir_ids: Sequence[Any]) -> Callable[[Any], Any]:
    """Step inputs of a folded first layer: ``t → (D, B, 4u)`` rows of each direction's table."""
    import tensorflow as tf

    def x_at(t: Any) -> Any:
        return tf.stack(
            [tf.gather(table, ids[t]) for table, ids in zip(tables, dir_ids, strict=True)], axis=0
        )

    return x_at


def _projected_inputs(dir_inputs: Any, kernels: Any, biases: Any) -> Callable[[Any], Any]:
    """Step inputs of a layer fed by a sequence: ``t → dir_inputs[:, t] @ kernel + bias``.

    Args:
        dir_inputs: ``(D, T, B, in)`` each direction's input sequence in its own order.
        kernels: ``(D, in, 4u)``; biases: ``(D, 4u)``.
    """
    import tensorflow as tf

    def x_at(t: Any) -> Any:
        return tf.matmul(dir_inputs[:, t], kernels) + biases[:, tf.newaxis, :]

    return x_at


def _make_step(
    x_at: Callable[[Any], Any], recurrent: Any, units: int, lengths: Any
) -> Callable[[Any, Any, Any], tuple[Any, Any]]:
    """One LSTM step for all directions at once: ``(t, h, c) → (h, c)``, each ``(D, B, u)``.

    Gates are ordered i, f, o, g; rows whose length is ``<= t`` keep their state (the mask).
    """
    import tensorflow as tf

    def step(t: Any, h: Any, c: Any) -> tuple[Any, Any]:
        z = x_at(t) + tf.matmul(h, recurrent)  # (D, B, 4u)
        gates = tf.sigmoid(z[..., : 3 * units])
        g = tf.tanh(z[..., 3 * units :])
        i, f, o = gates[..., :units], gates[..., units : 2 * units], gates[..., 2 * units :]
        c_new = f * c + i * g
        h_new = o * tf.tanh(c_new)
        active = tf.reshape(t < lengths, [1, -1, 1])
        return tf.where(active, h_new, h), tf.where(active, c_new, c)

    return step


def _build_fused_function(spec: NetworkSpec, jit: bool, fold: bool) -> Callable[..., Any]:
    """A ``tf.function(ids (B, T) int32, lengths (B,) int32, steps () int32) → (B, C) float32``.

    ``ids`` holds each row's real tokens left-aligned (zeros after ``lengths[b]``); ``steps``
    is the number of recurrent steps to run (``max(lengths)``, at least 1, at most ``T``).
    """
    import tensorflow as tf

    first = spec.recurrent[0]
    emb = tf.constant(spec.embeddings)
    tables = (
        [
            tf.constant((spec.embeddings.astype(np.float64) @ d.kernel + d.bias).astype(np.float32))
            for d in first.directions
        ]
        if fold
        else None
    )
    layers = [
        (
            layer.units,
            [tf.constant(d.kernel) for d in layer.directions],
            tf.constant(np.stack([d.recurrent for d in layer.directions])),
            [tf.constant(d.bias) for d in layer.directions],
            layer.return_sequences,
        )
        for layer in spec.recurrent
    ]
    head = [(tf.constant(d.kernel), tf.constant(d.bias), d.activation) for d in spec.dense]

    def reverse_valid(seq: Any, rev_pos: Any) -> Any:
        # seq (T, B, d) time-major; rev_pos (T, B): result[t, b] = seq[len_b - 1 - t, b]
        # (clamped at 0; positions past a row's length are garbage that is never used).
        batch_major = tf.transpose(seq, [1, 0, 2])
        flipped = tf.gather(batch_major, tf.transpose(rev_pos), axis=1, batch_dims=1)
        return tf.transpose(flipped, [1, 0, 2])

    def run(ids: Any, lengths: Any, steps: Any) -> Any:
        batch = tf.shape(ids)[0]
        width = tf.shape(ids)[1]
        time_idx = tf.range(width)
        rev_pos = tf.maximum(lengths[tf.newaxis, :] - 1 - time_idx[:, tf.newaxis], 0)  # (T, B)
        ids_tm = tf.transpose(ids)  # (T, B)
        rev_ids_tm = tf.transpose(tf.gather(ids, tf.transpose(rev_pos), axis=1, batch_dims=1))
        seq = None  # (T, B, d) input sequence of the current layer, real order
        final_h = None
        for index, (units, kernels, recurrent, biases, return_sequences) in enumerate(layers):
            n_dir = len(kernels)
            x_at: Callable[[Any], Any]
            if index == 0 and tables is not None:
                x_at = _table_inputs(tables, [ids_tm, rev_ids_tm][:n_dir])
            else:
                if seq is None:
                    seq = tf.gather(emb, ids_tm)  # (T, B, E)
                # each direction's inputs in its own order; projected step by step, so the
                # work follows `steps`, not the compiled width
                dir_inputs = tf.stack([seq, reverse_valid(seq, rev_pos)][:n_dir])
                x_at = _projected_inputs(dir_inputs, tf.stack(kernels), tf.stack(biases))

            h0 = tf.zeros(tf.stack([n_dir, batch, units]))
            step = _make_step(x_at, recurrent, units, lengths)
            if return_sequences:
                outputs = tf.TensorArray(
                    tf.float32, size=width, element_shape=tf.TensorShape([n_dir, None, units])
                )

                def body_seq(t: Any, h: Any, c: Any, out: Any, step: Any = step) -> Any:
                    h, c = step(t, h, c)
                    return t + 1, h, c, out.write(t, h)

                _, h, _, outputs = tf.while_loop(
                    lambda t, *_: t < steps,
                    body_seq,
                    [tf.constant(0), h0, h0, outputs],
                    maximum_iterations=width,
                )
                stacked = outputs.stack()  # (T, D, B, u): direction d in its own order
                parts = [stacked[:, 0]]
                if n_dir == 2:
                    parts.append(reverse_valid(stacked[:, 1], rev_pos))
                seq = tf.concat(parts, axis=-1)
            else:

                def body(t: Any, h: Any, c: Any, step: Any = step) -> Any:
                    h, c = step(t, h, c)
                    return t + 1, h, c

                _, h, _ = tf.while_loop(
                    lambda t, *_: t < steps,
                    body,
                    [tf.constant(0), h0, h0],
                    maximum_iterations=width,
                )
                final_h = tf.concat([h[d] for d in range(n_dir)], axis=-1)
        x = final_h
        for kernel, bias, activation in head:
            x = tf.matmul(x, kernel) + bias
            if activation == "relu":
                x = tf.nn.relu(x)
            elif activation == "tanh":
                x = tf.tanh(x)
            elif activation == "sigmoid":
                x = tf.sigmoid(x)
            elif activation == "softmax":
                x = tf.nn.softmax(x, axis=-1)
        return x

    signature = [
        tf.TensorSpec([None, None], tf.int32, name="ids"),
        tf.TensorSpec([None], tf.int32, name="lengths"),
        tf.TensorSpec([], tf.int32, name="steps"),
    ]
    concrete = tf.function(run, input_signature=signature, jit_compile=jit).get_concrete_function()

    def call(ids: IntArray, lengths: IntArray, steps: int) -> Any:
        # a concrete function skips tf.function's per-call signature matching (~0.3 ms)
        return concrete(tf.constant(ids), tf.constant(lengths), tf.constant(steps, tf.int32))

    return call


# ----------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Chunk:
    """One compiled call: ``rows`` (indices into the call's inputs) padded to ``bucket`` rows.

    Attributes:
        rows: ``(n,) int64`` input positions, longest first.
        bucket: Row count of the compiled shape (``>= len(rows)``).
        steps: Recurrent steps (longest row's length, at least 1).
    """

    rows: npt.NDArray[np.int64]
    bucket: int
    steps: int


def plan_chunks(
    lengths: IntArray,
    row_buckets: Sequence[int],
    call_cost: float,
    step_cost: float,
    row_step_cost: float,
    max_bucket: int | None = None,
) -> list[Chunk]:
    """Sort rows by length and cut them into bucket-sized chunks of least estimated cost.

    A chunk of ``b`` rows starting at sorted position ``i`` costs
    ``call_cost + max(L_i, 1) * (step_cost + b * row_step_cost)``; a dynamic program over the
    sorted positions picks the cheapest sequence of bucket sizes (``O(n * buckets)``).

    Args:
        lengths: ``(n,) int32`` real-token counts.
        row_buckets: Allowed row counts, ascending.
        call_cost, step_cost, row_step_cost: Cost model (any consistent unit).
        max_bucket: Largest bucket to use (e.g. to leave work for every worker).

    Returns:
        Chunks covering every row exactly once, longest rows first.
    """
    n = len(lengths)
    if n == 0:
        return []
    order = np.argsort(-lengths, kind="stable")
    sorted_len = np.maximum(lengths[order], 1).astype(np.float64)
    buckets = [b for b in row_buckets if max_bucket is None or b <= max_bucket] or [row_buckets[0]]
    best = np.full(n + 1, np.inf)
    best[n] = 0.0
    choice = np.zeros(n + 1, dtype=np.int64)
    for i in range(n - 1, -1, -1):
        steps = sorted_len[i]
        for b in buckets:
            j = min(n, i + b)
            cost = call_cost + steps * (step_cost + b * row_step_cost) + best[j]
            if cost < best[i]:
                best[i] = cost
                choice[i] = b
            if i + b >= n:
                break  # bigger buckets only add padding rows
    chunks = []
    i = 0
    while i < n:
        b = int(choice[i])
        rows = order[i : i + b]
        chunks.append(Chunk(rows, b, int(sorted_len[i])))
        i += b
    return chunks


# ----------------------------------------------------------------------------- engine


@dataclass(frozen=True)
class _Encoded:
    flat: IntArray  # all rows' ids concatenated
    starts: npt.NDArray[np.int64]
    lengths: IntArray


class InferenceEngine:
    """Texts or id matrices → ``(batch, n_classes) float32`` probabilities, fast and exact.

    Args:
        model: The bundle's Keras model, ``(batch, seq_len) int32 → (batch, C) float32``.
        pipeline: The bundle's preprocessing (tokenisation, ``max_len``, truncation side).
        config: Tuning knobs.

    The chosen path is in :attr:`path` (``fused``, ``keras-trimmed`` or ``keras-full``) with the
    reason for any fallback in :attr:`fallback_reasons`. Thread-safe: concurrent calls share
    the worker pool.
    """

    def __init__(
        self, model: Any, pipeline: TextPipeline, config: EngineConfig | None = None
    ) -> None:
        self.model = model
        self.pipeline = pipeline
        self.config = config or EngineConfig()
        self.threads = configure_threads()
        self.stats = EngineStats()
        self.fallback_reasons: list[str] = []
        self.max_len = pipeline.sequence.max_len
        self.workers = self.config.resolved_workers()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="inference")
        self._compiled: set[tuple[int, int]] = set()
        self._compile_lock = threading.Lock()
        self.spec: NetworkSpec | None = None
        self.folded = False
        self.jit = False
        self.path: Path_ = "keras-full"
        self._keras_fn = self._build_keras_function()
        self._fused_fn: Callable[..., Any] | None = None
        self._choose_path()
        if self.config.resolved_warmup():
            self.warmup()

    # -- construction -------------------------------------------------------------------

    def _build_keras_function(self) -> Callable[..., Any]:
        import tensorflow as tf

        model = self.model
        concrete = tf.function(
            lambda ids: model(ids, training=False),
            input_signature=[tf.TensorSpec([None, None], tf.int32, name="ids")],
        ).get_concrete_function()

        def call(ids: IntArray) -> Any:
            return concrete(tf.constant(ids, tf.int32))

        return call

    def _choose_path(self) -> None:
        try:
            spec = extract_network(self.model)
        except UnsupportedModelError as exc:
            spec = None
            self.fallback_reasons.append(f"fused: {exc}")
        mask_zero = spec.mask_zero if spec is not None else self._embedding_masks()
        if not mask_zero:
            self.fallback_reasons.append("no padding mask: results depend on padding")
            self.path = "keras-full"
            return
        if spec is not None:
            self.spec = spec
            first = spec.recurrent[0]
            table_bytes = spec.embeddings.shape[0] * 4 * first.units * len(first.directions) * 4
            self.folded = table_bytes <= MAX_FOLDED_TABLE_BYTES
            for jit in (True, False) if self.config.jit else (False,):
                try:
                    self._fused_fn = _build_fused_function(spec, jit, self.folded)
                    self.jit = jit
                    self.path = "fused"
                    self._compiled.clear()
                    if self.config.self_check:
                        self._self_check()
                    return
                except Exception as exc:  # XLA or graph build errors, self-check mismatch
                    self.fallback_reasons.append(f"fused(jit={jit}): {exc}")
                    log.warning("fused inference path refused: %s", exc)
            self._fused_fn = None
            self.jit = False
        self.path = "keras-trimmed"
        try:
            if self.config.self_check:
                self._self_check()
        except Exception as exc:
            self.fallback_reasons.append(f"keras-trimmed: {exc}")
            log.warning("trimmed Keras inference refused, using full length: %s", exc)
            self.path = "keras-full"

    def _embedding_masks(self) -> bool:
        embedding = embedding_layer(self.model)
        return embedding is not None and bool(embedding.mask_zero)

    def _self_check(self) -> None:
        """Compare the current path with Keras on full-length padded random sequences.

        Raises:
            AssertionError: a probability differs by more than ``config.tolerance``.
        """
        vocab = int(self._embedding_rows())
        rng = np.random.default_rng(20261121)
        lengths = [0, 1, 2, 3, 5, self.max_len, self.max_len - 1, self.max_len // 2, 7, 40]
        lengths = [min(max(0, n), self.max_len) for n in lengths]
        seqs = [rng.integers(2, max(3, vocab), size=n).astype(np.int32).tolist() for n in lengths]
        reference = self._keras_reference(seqs)
        got = self.predict_token_ids(seqs, _count=False)
        both_nan = np.isnan(got) & np.isnan(reference)  # e.g. a masked mean of nothing
        diff = float(np.max(np.where(both_nan, 0.0, np.abs(got - reference))))
        if not diff <= self.config.tolerance:
            raise AssertionError(
                f"{self.path} differs from the Keras model by {diff:.3g} "
                f"(> {self.config.tolerance:g})"
            )

    def _embedding_rows(self) -> int:
        if self.spec is not None:
            return int(self.spec.embeddings.shape[0])
        embedding = embedding_layer(self.model)
        return len(self.pipeline.vocabulary) if embedding is None else int(embedding.input_dim)

    def _keras_reference(self, seqs: Sequence[Sequence[int]]) -> FloatArray:
        from model.sequences import pad_sequences

        padded = pad_sequences(seqs, self.pipeline.sequence)
        return np.asarray(self._keras_fn(padded), dtype=np.float32)

    # -- public API -----------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        """Width of the probability rows."""
        return int(self.model.output_shape[-1])

    def describe(self) -> dict[str, Any]:
        """What the engine runs: path, XLA, folding, threads, workers, fallbacks (JSON-ready)."""
        return {
            "path": self.path,
            "jit": self.jit,
            "folded_embedding": self.folded,
            "workers": self.workers,
            "intra_op_threads": self.threads.intra_op,
            "inter_op_threads": self.threads.inter_op,
            "row_buckets": list(self.config.row_buckets),
            "overlap_slices": self.config.overlap_slices,
            "fallback_reasons": list(self.fallback_reasons),
        }

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Vocabulary ids of each text, truncated to ``max_len`` like the pipeline, unpadded.

        Returns:
            One list of ids (each ``>= 1``; possibly empty) per text.
        """
        return [self.token_ids(text) for text in texts]

    def token_ids(self, text: str) -> list[int]:
        """Vocabulary ids of one text, truncated to ``max_len`` like the pipeline, unpadded."""
        return list(self.pipeline.sequence.truncate(self.pipeline.token_ids(text)))

    def predict_proba(self, texts: Sequence[str]) -> FloatArray:
        """Class probabilities of raw texts.

        Args:
            texts: Documents (``title + " " + text`` as the consumer builds them).

        Returns:
            ``(len(texts), n_classes) float32``; rows sum to 1; row ``i`` belongs to
            ``texts[i]``. Equal within ``1e-5`` to the Keras model on
            ``pipeline.encode(texts)``.
        """
        n = len(texts)
        out = np.zeros((n, self.num_classes), dtype=np.float32)
        if n == 0:
            return out
        if self.path == "keras-full":
            began = time.perf_counter()
            ids = self.pipeline.encode(texts)
            self._add_encode_time(time.perf_counter() - began)
            return self.predict_ids(ids)
        futures: list[tuple[Future[FloatArray], npt.NDArray[np.int64]]] = []
        for lo, hi in self._slices(n):
            began = time.perf_counter()
            encoded = self._flatten(self.encode(texts[lo:hi]))
            self._add_encode_time(time.perf_counter() - began)
            for chunk, fut in self._submit(encoded):
                futures.append((fut, chunk.rows + lo))
        for fut, rows in futures:
            out[rows] = fut.result()[: len(rows)]
        return out

    def predict_token_ids(
        self, sequences: Sequence[Sequence[int]], *, _count: bool = True
    ) -> FloatArray:
        """Probabilities of already-encoded, unpadded id sequences.

        Sequences longer than ``max_len`` are only valid on the trimmed paths (``keras-full``
        pads and truncates them like the pipeline).

        Returns:
            ``(len(sequences), n_classes) float32`` in input order.
        """
        n = len(sequences)
        out = np.zeros((n, self.num_classes), dtype=np.float32)
        if n == 0:
            return out
        if self.path == "keras-full":
            from model.sequences import pad_sequences

            return self.predict_ids(pad_sequences(sequences, self.pipeline.sequence))
        for chunk, fut in self._submit(self._flatten(sequences), count=_count):
            out[chunk.rows] = fut.result()[: len(chunk.rows)]
        return out

    def predict_ids(self, ids: IntArray) -> FloatArray:
        """Probabilities of a padded ``(batch, seq_len) int32`` id matrix (0 = padding).

        With a masked model the padding (pre, post or anywhere) is dropped and the real ids
        run trimmed; otherwise the matrix runs as is, in chunks of :data:`FULL_LENGTH_CHUNK` rows.

        Returns:
            ``(batch, n_classes) float32``.

        Raises:
            ValueError: ``ids`` is not two-dimensional, or an id is outside the embedding.
        """
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ValueError(f"expected a (batch, seq_len) matrix, got shape {ids.shape}")
        if len(ids) == 0:
            return np.zeros((0, self.num_classes), dtype=np.float32)
        rows = self._embedding_rows()
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= rows):
            # XLA clamps out-of-range gathers instead of failing like Keras; refuse them here
            raise ValueError(f"ids must lie in [0, {rows}), got [{ids.min()}, {ids.max()}]")
        if self.path == "keras-full":
            ids = ids.astype(np.int32, copy=False)
            parts = [
                np.asarray(self._keras_fn(ids[i : i + FULL_LENGTH_CHUNK]), dtype=np.float32)
                for i in range(0, len(ids), FULL_LENGTH_CHUNK)
            ]
            return np.concatenate(parts)
        real = ids != PAD_INDEX
        lengths = real.sum(axis=1).astype(np.int32)
        flat = ids[real].astype(np.int32)  # row-major: each row's real ids in order
        starts = np.zeros(len(ids), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        out = np.zeros((len(ids), self.num_classes), dtype=np.float32)
        for chunk, fut in self._submit(_Encoded(flat, starts, lengths)):
            out[chunk.rows] = fut.result()[: len(chunk.rows)]
        return out

    def warmup(self) -> float:
        """Compile every row bucket at ``max_len`` columns now rather than on first use.

        Returns:
            Seconds spent.
        """
        began = time.perf_counter()
        if self.path == "keras-full":
            self.predict_ids(np.ones((1, self.max_len), dtype=np.int32))
        else:
            for bucket in self.config.row_buckets:
                seqs = [[1] * self.max_len] * bucket
                self.predict_token_ids(seqs, _count=False)
        return time.perf_counter() - began

    def close(self) -> None:
        """Stop the worker threads (idempotent); later calls fail."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- internals ------------------------------------------------------------------------

    def _add_encode_time(self, seconds: float) -> None:
        with self.stats.lock:
            self.stats.encode_s += seconds

    def _slices(self, n: int) -> Iterator[tuple[int, int]]:
        slices = max(1, min(self.config.overlap_slices, n // max(1, self.config.min_slice_rows)))
        bounds = np.linspace(0, n, slices + 1).round().astype(int)
        for lo, hi in itertools.pairwise(bounds.tolist()):
            if hi > lo:
                yield int(lo), int(hi)

    @staticmethod
    def _flatten(sequences: Sequence[Sequence[int]]) -> _Encoded:
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int32, count=len(sequences))
        total = int(lengths.sum())
        flat = np.fromiter(itertools.chain.from_iterable(sequences), dtype=np.int32, count=total)
        starts = np.zeros(len(sequences), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        return _Encoded(flat, starts, lengths)

    def _row_step_cost(self) -> float:
        if self.config.row_step_cost_us is not None:
            return self.config.row_step_cost_us
        if self.spec is None:
            return 1.0
        # ~60 GFLOP/s per core in the fused loop on the reference machine
        return 2.0 * self.spec.executed_macs_per_token(self.folded) / 60e3

    def _time_bucket(self, steps: int) -> int:
        """Columns of the compiled shape for a chunk of ``steps`` steps."""
        if self.path == "fused" and self.jit:
            if steps <= self.max_len:
                return self.max_len  # cost follows `steps`, not the width: one shape per bucket
            return int(math.ceil(steps / TIME_BUCKET) * TIME_BUCKET)
        return steps  # graph mode / Keras: dynamic shapes are free

    def _submit(
        self, encoded: _Encoded, count: bool = True
    ) -> list[tuple[Chunk, Future[FloatArray]]]:
        n = len(encoded.lengths)
        max_bucket = None
        if self.workers > 1 and n > self.config.row_buckets[0]:
            # leave a chunk for every worker when the batch is big enough
            per_worker = -(-n // self.workers)
            fitting = [b for b in self.config.row_buckets if b <= max(per_worker, 1)]
            max_bucket = fitting[-1] if fitting else self.config.row_buckets[0]
        chunks = plan_chunks(
            encoded.lengths,
            self.config.row_buckets,
            self.config.call_cost_us,
            self.config.step_cost_us,
            self._row_step_cost(),
            max_bucket,
        )
        submitted = []
        for chunk in chunks:
            width = self._time_bucket(chunk.steps)
            matrix, lengths = _chunk_matrix(encoded, chunk, width)
            if count:
                with self.stats.lock:
                    self.stats.rows += len(chunk.rows)
                    self.stats.real_tokens += int(lengths.sum())
                    self.stats.computed_tokens += chunk.bucket * chunk.steps
                    self.stats.chunks += 1
            fut = self._pool.submit(self._run_chunk, matrix, lengths, chunk.steps)
            submitted.append((chunk, fut))
        return submitted

    def _run_chunk(self, matrix: IntArray, lengths: IntArray, steps: int) -> FloatArray:
        began = time.perf_counter()
        if self.path == "fused":
            assert self._fused_fn is not None
            key = matrix.shape
            if key not in self._compiled:
                with self._compile_lock:  # one compilation per shape, not one per worker
                    result = self._fused_fn(matrix, lengths, steps)
                    self._compiled.add((int(key[0]), int(key[1])))
            else:
                result = self._fused_fn(matrix, lengths, steps)
        else:
            result = self._keras_fn(matrix[:, : max(steps, 1)])
        probs = np.asarray(result, dtype=np.float32)
        with self.stats.lock:
            self.stats.infer_s += time.perf_counter() - began
        return probs


def _chunk_matrix(encoded: _Encoded, chunk: Chunk, width: int) -> tuple[IntArray, IntArray]:
    """The chunk's ``(bucket, width) int32`` left-aligned id matrix and ``(bucket,)`` lengths.

    Rows beyond ``len(chunk.rows)`` are empty (length 0, all padding).
    """
    lengths = np.zeros(chunk.bucket, dtype=np.int32)
    k = len(chunk.rows)
    lengths[:k] = encoded.lengths[chunk.rows]
    columns = np.arange(width, dtype=np.int64)
    starts = np.zeros(chunk.bucket, dtype=np.int64)
    starts[:k] = encoded.starts[chunk.rows]
    valid = columns[np.newaxis, :] < lengths[:, np.newaxis]
    index = np.where(valid, starts[:, np.newaxis] + columns[np.newaxis, :], 0)
    source = encoded.flat if len(encoded.flat) else np.zeros(1, dtype=np.int32)
    matrix = np.where(valid, source[index], PAD_INDEX).astype(np.int32, copy=False)
    return matrix, lengths


def macs_summary(spec: NetworkSpec, folded: bool) -> Mapping[str, int]:
    """Nominal and executed multiply-adds per real token, and the head's per sequence."""
    return {
        "macs_per_token": spec.macs_per_token(),
        "executed_macs_per_token": spec.executed_macs_per_token(folded),
        "head_macs_per_sequence": spec.macs_per_sequence(),
    }
