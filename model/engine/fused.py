"""The fused path's one compiled function: a :class:`NetworkSpec` as a single ``tf.function``.

The weights are constants of the function, which XLA compiles once per input shape:

- **Trimmed recurrence.** Rows arrive left-aligned with their lengths; each layer's
  ``tf.while_loop`` runs ``steps`` times (the chunk's longest row), not the matrix width, and
  a row whose length is ``<= t`` keeps its state (exactly what Keras' mask does).
- **Folded embedding.** With ``fold`` the embedding and the first layer's input kernel become
  one ``(vocab, 4u)`` table per direction (``E @ W + b``), so the first layer's input
  projection is a gather instead of multiply-adds.
- **Both directions at once.** A bidirectional layer's directions advance in one batched
  matmul per step (state ``(D, B, u)``); the backward direction reads each row's real tokens
  reversed (:func:`_reverse_valid`), so its padding stays at the end like the forward one's.
- **Fused gates.** Gates are reordered ``i, f, o, g`` (see :mod:`model.engine.spec`): one
  sigmoid over the first three quarters, one tanh over the last.

Tensor shapes in this module: ``B`` rows, ``T`` columns (the compiled width), ``D``
directions, ``u`` units, ``E`` embedding width; time-major tensors are ``(T, B, ...)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from model.engine.arrays import FloatArray, IntArray
from model.engine.spec import NetworkSpec


class FusedFunction:
    """``(ids (B, T) int32, lengths (B,) int32, steps int) → (B, C) float32`` probabilities.

    ``ids`` holds each row's real tokens left-aligned (zeros after ``lengths[b]``); ``steps``
    is the number of recurrent steps to run (``max(lengths)``, at least 1, at most ``T``).
    Calling it returns a TensorFlow tensor; :attr:`concrete` is the traced function.
    """

    def __init__(self, concrete: Any) -> None:
        import tensorflow as tf

        self.concrete = concrete
        self._constant = tf.constant
        self._int32 = tf.int32

    def __call__(self, ids: IntArray, lengths: IntArray, steps: int) -> Any:
        """Run the compiled function on one chunk (see the class docstring)."""
        # a concrete function skips tf.function's per-call signature matching (~0.3 ms)
        return self.concrete(
            self._constant(ids), self._constant(lengths), self._constant(steps, self._int32)
        )


def build_fused_function(spec: NetworkSpec, jit: bool, fold: bool) -> FusedFunction:
    """Trace (and with ``jit`` XLA-compile, on first call per shape) the fused network.

    Args:
        spec: The network's weights.
        jit: Compile with XLA (``jit_compile=True``); else a plain TensorFlow graph.
        fold: Fold the embedding into the first layer's input kernel (lookup tables).

    Raises:
        Exception: whatever TensorFlow raises while tracing (the engine then falls back).
    """
    import tensorflow as tf

    weights = _constants(spec, fold)

    def run(ids: Any, lengths: Any, steps: Any) -> Any:
        return _forward(weights, ids, lengths, steps)

    signature = [
        tf.TensorSpec([None, None], tf.int32, name="ids"),
        tf.TensorSpec([None], tf.int32, name="lengths"),
        tf.TensorSpec([], tf.int32, name="steps"),
    ]
    concrete = tf.function(run, input_signature=signature, jit_compile=jit).get_concrete_function()
    return FusedFunction(concrete)


# ----------------------------------------------------------------------------- constants


@dataclass(frozen=True)
class _LayerConstants:
    """One recurrent layer's weights as tensors (gates ``i, f, o, g``)."""

    units: int
    kernels: list[Any]  # per direction: (in, 4u)
    recurrent: Any  # (D, u, 4u)
    biases: list[Any]  # per direction: (4u,)
    return_sequences: bool

    @property
    def directions(self) -> int:
        """``D``: 1, or 2 for a bidirectional layer."""
        return len(self.kernels)


@dataclass(frozen=True)
class _Constants:
    """All weights of the network as tensors, captured by the traced function."""

    embeddings: Any  # (vocab, E)
    tables: list[Any] | None  # per direction of layer 1: (vocab, 4u) = E @ W + b; None unfolded
    layers: list[_LayerConstants]
    head: list[tuple[Any, Any, str]]  # (kernel, bias, activation) per dense layer


def _constants(spec: NetworkSpec, fold: bool) -> _Constants:
    """The spec's arrays as constants; the folded tables are computed in float64."""
    import tensorflow as tf

    embeddings = tf.constant(spec.embeddings)
    tables = None
    if fold:
        tables = [
            _folded_table(spec.embeddings, d.kernel, d.bias) for d in spec.recurrent[0].directions
        ]
    layers = [
        _LayerConstants(
            layer.units,
            [tf.constant(d.kernel) for d in layer.directions],
            tf.constant(np.stack([d.recurrent for d in layer.directions])),
            [tf.constant(d.bias) for d in layer.directions],
            layer.return_sequences,
        )
        for layer in spec.recurrent
    ]
    head = [(tf.constant(d.kernel), tf.constant(d.bias), d.activation) for d in spec.dense]
    return _Constants(embeddings, tables, layers, head)


def _folded_table(embeddings: FloatArray, kernel: FloatArray, bias: FloatArray) -> Any:
    """``(vocab, 4u) float32`` table ``E @ W + b``: row ``id`` is that token's gate input."""
    import tensorflow as tf

    return tf.constant((embeddings.astype(np.float64) @ kernel + bias).astype(np.float32))


# ----------------------------------------------------------------------------- traced graph


@dataclass(frozen=True)
class _Positions:
    """Shapes and index tensors of one batch, shared by all layers."""

    batch: Any  # () B
    width: Any  # () T
    rev_pos: Any  # (T, B): lengths[b] - 1 - t, clamped at 0
    ids_tm: Any  # (T, B) ids, time-major
    rev_ids_tm: Any  # (T, B) each row's real ids reversed (then padding garbage)


def _positions(ids: Any, lengths: Any) -> _Positions:
    """Time-major ids in real and reversed order, and the reversal index."""
    import tensorflow as tf

    batch = tf.shape(ids)[0]
    width = tf.shape(ids)[1]
    time_idx = tf.range(width)
    rev_pos = tf.maximum(lengths[tf.newaxis, :] - 1 - time_idx[:, tf.newaxis], 0)  # (T, B)
    ids_tm = tf.transpose(ids)  # (T, B)
    rev_ids_tm = tf.transpose(tf.gather(ids, tf.transpose(rev_pos), axis=1, batch_dims=1))
    return _Positions(batch, width, rev_pos, ids_tm, rev_ids_tm)


def _forward(weights: _Constants, ids: Any, lengths: Any, steps: Any) -> Any:
    """The traced body: ids → each recurrent layer in turn → dense head → ``(B, C)``."""
    import tensorflow as tf

    pos = _positions(ids, lengths)
    seq = None  # (T, B, d) input sequence of the current layer, real order
    final_h = None
    for index, layer in enumerate(weights.layers):
        x_at: _TableInputs | _ProjectedInputs
        if index == 0 and weights.tables is not None:
            x_at = _TableInputs(weights.tables, [pos.ids_tm, pos.rev_ids_tm][: layer.directions])
        else:
            if seq is None:
                seq = tf.gather(weights.embeddings, pos.ids_tm)  # (T, B, E)
            x_at = _projected_inputs(seq, layer, pos.rev_pos)
        h0 = tf.zeros(tf.stack([layer.directions, pos.batch, layer.units]))
        loop = _LstmLoop(_LstmStep(x_at, layer.recurrent, layer.units, lengths), steps)
        if layer.return_sequences:
            seq = _run_returning_sequence(loop, h0, layer, pos)
        else:
            final_h = _run_returning_state(loop, h0, layer, pos)
    return _dense_head(final_h, weights.head)


def _reverse_valid(seq: Any, rev_pos: Any) -> Any:
    """``result[t, b] = seq[len_b - 1 - t, b]`` for time-major ``seq (T, B, d)``.

    ``rev_pos`` is :attr:`_Positions.rev_pos` (clamped at 0: positions past a row's length are
    garbage that is never used). Applied twice it restores a row's real steps.
    """
    import tensorflow as tf

    batch_major = tf.transpose(seq, [1, 0, 2])
    flipped = tf.gather(batch_major, tf.transpose(rev_pos), axis=1, batch_dims=1)
    return tf.transpose(flipped, [1, 0, 2])


@dataclass(frozen=True)
class _TableInputs:
    """Step inputs of a folded first layer: ``t → (D, B, 4u)`` rows of each direction's table."""

    tables: list[Any]  # per direction: (vocab, 4u)
    dir_ids: list[Any]  # per direction: (T, B) ids in that direction's order

    def __call__(self, t: Any) -> Any:
        """The gate inputs of step ``t``."""
        import tensorflow as tf

        return tf.stack(
            [
                tf.gather(table, ids[t])
                for table, ids in zip(self.tables, self.dir_ids, strict=True)
            ],
            axis=0,
        )


@dataclass(frozen=True)
class _ProjectedInputs:
    """Step inputs of a layer fed by a sequence: ``t → dir_inputs[:, t] @ kernel + bias``.

    Projected step by step, so the work follows ``steps``, not the compiled width.
    """

    dir_inputs: Any  # (D, T, B, in): each direction's input sequence in its own order
    kernels: Any  # (D, in, 4u)
    biases: Any  # (D, 4u)

    def __call__(self, t: Any) -> Any:
        """The gate inputs of step ``t``: ``(D, B, 4u)``."""
        import tensorflow as tf

        return tf.matmul(self.dir_inputs[:, t], self.kernels) + self.biases[:, tf.newaxis, :]


def _projected_inputs(seq: Any, layer: _LayerConstants, rev_pos: Any) -> _ProjectedInputs:
    """Step inputs of ``layer`` fed by the time-major sequence ``seq (T, B, in)``."""
    import tensorflow as tf

    # the reversed copy is traced for one direction too (unused there, so never run)
    dir_inputs = tf.stack([seq, _reverse_valid(seq, rev_pos)][: layer.directions])
    return _ProjectedInputs(dir_inputs, tf.stack(layer.kernels), tf.stack(layer.biases))


@dataclass(frozen=True)
class _LstmStep:
    """One LSTM step for all directions at once: ``(t, h, c) → (h, c)``, each ``(D, B, u)``.

    Gates are ordered i, f, o, g; rows whose length is ``<= t`` keep their state (the mask).
    """

    x_at: _TableInputs | _ProjectedInputs
    recurrent: Any  # (D, u, 4u)
    units: int
    lengths: Any  # (B,)

    def __call__(self, t: Any, h: Any, c: Any) -> tuple[Any, Any]:
        """Advance every row still inside its length by one step."""
        import tensorflow as tf

        units = self.units
        z = self.x_at(t) + tf.matmul(h, self.recurrent)  # (D, B, 4u)
        gates = tf.sigmoid(z[..., : 3 * units])
        g = tf.tanh(z[..., 3 * units :])
        i, f, o = gates[..., :units], gates[..., units : 2 * units], gates[..., 2 * units :]
        c_new = f * c + i * g
        h_new = o * tf.tanh(c_new)
        active = tf.reshape(t < self.lengths, [1, -1, 1])
        return tf.where(active, h_new, h), tf.where(active, c_new, c)


@dataclass(frozen=True)
class _LstmLoop:
    """Condition and bodies of a layer's ``tf.while_loop``: ``step`` for ``t < steps``."""

    step: _LstmStep
    steps: Any

    def running(self, t: Any, *_: Any) -> Any:
        """Loop condition."""
        return t < self.steps

    def advance(self, t: Any, h: Any, c: Any) -> tuple[Any, Any, Any]:
        """Body of a layer returning its final state."""
        h, c = self.step(t, h, c)
        return t + 1, h, c

    def advance_and_record(self, t: Any, h: Any, c: Any, out: Any) -> tuple[Any, Any, Any, Any]:
        """Body of a layer returning its sequence: also writes ``h`` to ``out[t]``."""
        h, c = self.step(t, h, c)
        return t + 1, h, c, out.write(t, h)


def _run_returning_sequence(
    loop: _LstmLoop, h0: Any, layer: _LayerConstants, pos: _Positions
) -> Any:
    """Run the layer; its ``(T, B, D * u)`` outputs, each direction back in real order."""
    import tensorflow as tf

    outputs = tf.TensorArray(
        tf.float32,
        size=pos.width,
        element_shape=tf.TensorShape([layer.directions, None, layer.units]),
    )
    _, _, _, outputs = tf.while_loop(
        loop.running,
        loop.advance_and_record,
        [tf.constant(0), h0, h0, outputs],
        maximum_iterations=pos.width,
    )
    stacked = outputs.stack()  # (T, D, B, u): direction d in its own order
    parts = [stacked[:, 0]]
    if layer.directions == 2:
        parts.append(_reverse_valid(stacked[:, 1], pos.rev_pos))
    return tf.concat(parts, axis=-1)


def _run_returning_state(loop: _LstmLoop, h0: Any, layer: _LayerConstants, pos: _Positions) -> Any:
    """Run the layer; its final states ``(B, D * u)``, directions concatenated."""
    import tensorflow as tf

    _, h, _ = tf.while_loop(
        loop.running, loop.advance, [tf.constant(0), h0, h0], maximum_iterations=pos.width
    )
    return tf.concat([h[d] for d in range(layer.directions)], axis=-1)


def _dense_head(x: Any, head: list[tuple[Any, Any, str]]) -> Any:
    """The dense layers on the final states ``(B, D * u)`` → ``(B, C)`` probabilities."""
    import tensorflow as tf

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
