"""Keras model → :class:`NetworkSpec`: the weights the fused path runs, as numpy arrays.

Only the networks :func:`model.network.build_model` makes without a pooled head are read:
a linear chain ``Input → Embedding → [Dropout/SpatialDropout1D]* → (LSTM |
Bidirectional(LSTM, merge_mode='concat'))+ → Dense* → Dense(softmax)``. Anything else raises
:class:`UnsupportedModelError`, and the engine falls back to running the Keras model itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from model.engine.arrays import FloatArray


class UnsupportedModelError(Exception):
    """The Keras model is not a network the fused path knows; the message says why."""


@dataclass(frozen=True)
class LstmDirection:
    """One direction of an LSTM layer, gates reordered to ``i, f, o, g`` (sigmoids first).

    Attributes:
        kernel: ``(in, 4u) float32`` input kernel.
        recurrent: ``(u, 4u) float32`` recurrent kernel.
        bias: ``(4u,) float32`` (zeros for a layer without bias).
    """

    kernel: FloatArray
    recurrent: FloatArray
    bias: FloatArray


@dataclass(frozen=True)
class RecurrentLayer:
    """An ``LSTM`` or ``Bidirectional(LSTM)`` layer.

    Attributes:
        units: ``u``, the state width of each direction.
        directions: Forward first; a second one runs backwards.
        return_sequences: Whether the layer returns every step (all but the last do).
    """

    units: int
    directions: tuple[LstmDirection, ...]
    return_sequences: bool


@dataclass(frozen=True)
class DenseLayer:
    """A ``Dense`` layer: ``(in, out) float32`` kernel, ``(out,) float32`` bias, activation name."""

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
    recurrent: tuple[RecurrentLayer, ...]
    dense: tuple[DenseLayer, ...]

    @property
    def num_classes(self) -> int:
        """Width of the output layer."""
        return int(self.dense[-1].kernel.shape[1])

    def folded_table_bytes(self) -> int:
        """Bytes of the ``(vocab, 4u) float32`` tables folding the embedding into layer 1."""
        first = self.recurrent[0]
        return int(self.embeddings.shape[0]) * 4 * first.units * len(first.directions) * 4

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


def macs_summary(spec: NetworkSpec, folded: bool) -> Mapping[str, int]:
    """Nominal and executed multiply-adds per real token, and the head's per sequence."""
    return {
        "macs_per_token": spec.macs_per_token(),
        "executed_macs_per_token": spec.executed_macs_per_token(folded),
        "head_macs_per_sequence": spec.macs_per_sequence(),
    }


_IDENTITY_LAYERS = {"InputLayer", "Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout"}
_DENSE_ACTIVATIONS = {"linear", "relu", "tanh", "sigmoid", "softmax"}


def extract_network(model: Any) -> NetworkSpec:
    """Read the weights of a model built by :func:`model.network.build_model`.

    Accepted: a linear chain ``Input → Embedding → [Dropout/SpatialDropout1D]* → (LSTM |
    Bidirectional(LSTM, merge_mode='concat'))+ → Dense* → Dense(softmax)``, LSTMs with the
    default ``tanh``/``sigmoid`` activations, intermediate ones returning sequences.

    Raises:
        UnsupportedModelError: any other structure (pooling heads, other layer types,
            custom activations, stateful layers, ...); the message names the layer.
    """
    previous = None
    embeddings: FloatArray | None = None
    mask_zero = False
    recurrent: list[RecurrentLayer] = []
    dense: list[DenseLayer] = []
    for layer in list(model.layers):
        kind = type(layer).__name__
        if previous is not None and not _feeds(previous, layer):
            raise UnsupportedModelError(f"{layer.name}: the model is not a linear chain")
        previous = layer
        if kind in _IDENTITY_LAYERS:
            if dense:
                raise UnsupportedModelError(f"{layer.name}: {kind} inside the dense head")
        elif kind == "Embedding":
            if embeddings is not None:
                raise UnsupportedModelError(f"{layer.name}: a second embedding")
            embeddings = np.asarray(layer.embeddings.numpy(), dtype=np.float32)
            mask_zero = bool(layer.mask_zero)
        elif kind in ("LSTM", "Bidirectional"):
            if embeddings is None or dense:
                raise UnsupportedModelError(f"{layer.name}: recurrent layer out of place")
            recurrent.append(_recurrent_layer(layer))
        elif kind == "Dense":
            if not recurrent:
                raise UnsupportedModelError(f"{layer.name}: dense layer before the recurrent ones")
            dense.append(_dense_layer(layer))
        else:
            raise UnsupportedModelError(f"{layer.name}: layer type {kind} is not supported")
    if embeddings is None or not recurrent or not dense:
        raise UnsupportedModelError("expected an embedding, recurrent layers and a dense head")
    _check_outputs(recurrent, dense)
    return NetworkSpec(embeddings, mask_zero, tuple(recurrent), tuple(dense))


def _check_outputs(recurrent: list[RecurrentLayer], dense: list[DenseLayer]) -> None:
    """Refuse stacks whose last layer returns sequences or whose head is not a softmax."""
    if any(r.return_sequences for r in recurrent[-1:]) or not all(
        r.return_sequences for r in recurrent[:-1]
    ):
        raise UnsupportedModelError("only the last recurrent layer may return its final state")
    if dense[-1].activation != "softmax":
        raise UnsupportedModelError("the output layer is not a softmax")


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


def _recurrent_layer(layer: Any) -> RecurrentLayer:
    """An ``LSTM`` or ``Bidirectional(LSTM, merge_mode='concat')`` layer's weights."""
    directions: tuple[LstmDirection, ...]
    if type(layer).__name__ != "Bidirectional":
        directions = (_lstm_direction(layer, backwards=False),)
        return RecurrentLayer(int(layer.units), directions, bool(layer.return_sequences))
    if layer.merge_mode != "concat":
        raise UnsupportedModelError(f"{layer.name}: merge_mode {layer.merge_mode}")
    directions = (
        _lstm_direction(layer.forward_layer, backwards=False),
        _lstm_direction(layer.backward_layer, backwards=True),
    )
    return RecurrentLayer(int(layer.forward_layer.units), directions, bool(layer.return_sequences))


def _lstm_direction(lstm: Any, backwards: bool) -> LstmDirection:
    """One LSTM's kernels and bias, gates reordered, after checking it runs the standard cell."""
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
    bias = _bias(cell.bias if lstm.use_bias else None, 4 * units)
    return LstmDirection(
        _reorder_gates(kernel, units), _reorder_gates(recurrent, units), _reorder_gates(bias, units)
    )


def _dense_layer(layer: Any) -> DenseLayer:
    """A ``Dense`` layer's weights, after checking its activation is one the fused head runs."""
    activation = _activation_name(layer.activation)
    if activation not in _DENSE_ACTIVATIONS:
        raise UnsupportedModelError(f"{layer.name}: activation {activation}")
    kernel = np.asarray(layer.kernel.numpy(), dtype=np.float32)
    bias = _bias(layer.bias if layer.use_bias else None, int(kernel.shape[1]))
    return DenseLayer(kernel, bias, activation)


def _bias(variable: Any, width: int) -> FloatArray:
    """A bias variable as ``(width,) float32``, or zeros for a layer without one."""
    if variable is None:
        return np.zeros(width, dtype=np.float32)
    return np.asarray(variable.numpy(), dtype=np.float32)


def _reorder_gates(w: npt.NDArray[Any], units: int) -> FloatArray:
    """Keras gate order i, f, c(g), o → i, f, o, g (the three sigmoids contiguous)."""
    i, f, g, o = (w[..., k * units : (k + 1) * units] for k in range(4))
    return np.ascontiguousarray(np.concatenate([i, f, o, g], axis=-1), dtype=np.float32)


def _activation_name(fn: Any) -> str:
    """The name of a Keras activation function (``"tanh"``, ``"softmax"``, ...)."""
    return str(getattr(fn, "__name__", repr(fn)))
