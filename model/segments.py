"""A recurrent encoder that reads a long document as fixed-length segments.

An LSTM reading a 500-token newsgroup post or news article runs 500 sequential steps per
layer, and its gradients have to cross all of them. :class:`SegmentedLSTM` cuts the real
tokens of each document into consecutive segments of ``segment_length`` tokens and runs the
(bi)directional LSTM stack on every segment independently: the state starts from zero at each
segment boundary, all segments of a micro-batch advance in one batched recurrence, and
segments that hold only padding are skipped. It returns every step's output, so a pooling
layer summarises the whole document. This is the "chopping" of Johnson & Zhang, *Supervised
and Semi-Supervised Text Categorization using LSTM for Region Embeddings* (ICML 2016,
arXiv:1602.02373): the LSTM embeds text regions of up to ``segment_length`` words, and
pooling over the document combines them.

Padding never changes a prediction: the real tokens of each row are first moved to the front
in their original order (so pre- and post-padded inputs give the same segments, always counted
from the first real token), and each output step is moved back to its input position and
zeroed at padding, so the input's mask still tells the pooling layer which steps are real.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="classifier")
class SegmentedLSTM(layers.Layer):  # type: ignore[misc]  # Keras ships no type stubs
    """(Bi)LSTM stack applied to consecutive ``segment_length``-token segments of each row.

    Args:
        units: Units per recurrent layer, input side first.
        segment_length: Tokens per segment (Johnson & Zhang used 50-100 words per region).
        bidirectional: Wrap each LSTM in ``Bidirectional`` (outputs concatenated).
        dropout: Dropout rate between stacked recurrent layers; ``0`` for none.

    Call:
        ``inputs``: ``(batch, steps, features) float32``; ``mask``: ``(batch, steps) bool``
        (``True`` for real tokens), usually propagated from ``Embedding(mask_zero=True)``.

    Returns:
        ``(batch, steps, out) float32``, ``out`` the last layer's units (doubled when
        bidirectional): each real token's output at its input position, zeros at padding;
        the input's mask still applies (so masked pooling layers skip the padding).
    """

    def __init__(
        self,
        units: tuple[int, ...] | list[int],
        segment_length: int,
        bidirectional: bool = True,
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if segment_length < 1:
            raise ValueError(f"segment_length must be positive, got {segment_length}")
        self.units = tuple(int(u) for u in units)
        self.segment_length = int(segment_length)
        self.bidirectional = bool(bidirectional)
        self.dropout = float(dropout)
        self.supports_masking = True
        self.recurrent: list[layers.Layer] = []
        for i, width in enumerate(self.units):
            lstm = layers.LSTM(width, return_sequences=True, name=f"lstm_{i}")
            self.recurrent.append(
                layers.Bidirectional(lstm, name=f"bilstm_{i}") if self.bidirectional else lstm
            )
        self.between = [
            layers.Dropout(self.dropout, name=f"lstm_dropout_{i}")
            for i in range(len(self.units) - 1)
        ]

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        """Create the recurrent weights for ``features = input_shape[-1]``."""
        features = input_shape[-1]
        for layer in self.recurrent:
            layer.build((None, self.segment_length, features))
            features = layer.compute_output_shape((None, self.segment_length, features))[-1]
        self.built = True

    def call(self, inputs: Any, mask: Any = None, training: bool | None = None) -> Any:
        """Run the stack on every segment; see the class docstring for shapes."""
        shape = ops.shape(inputs)
        batch, steps = shape[0], shape[1]
        if mask is None:
            mask = ops.ones((batch, steps), "bool")
        mask = ops.cast(mask, "bool")
        position = ops.arange(steps, dtype="int32")[None, :]
        # Sort key: real tokens keep their position, padding goes after every real token.
        order = ops.argsort(ops.where(mask, position, position + steps), axis=1)
        values = ops.take_along_axis(inputs, order[:, :, None], axis=1)
        aligned_mask = ops.take_along_axis(mask, order, axis=1)
        # At least one segment, so an empty (batch, 0) input still runs.
        segments = ops.maximum((steps + self.segment_length - 1) // self.segment_length, 1)
        pad = segments * self.segment_length - steps
        values = ops.concatenate([values, ops.zeros((batch, pad, shape[2]), values.dtype)], 1)
        aligned_mask = ops.concatenate([aligned_mask, ops.zeros((batch, pad), "bool")], 1)
        x = ops.reshape(values, (batch * segments, self.segment_length, shape[2]))
        segment_mask = ops.reshape(aligned_mask, (batch * segments, self.segment_length))
        # Only segments holding a real token run (padding is most of a long max_len), and
        # the first one always does: a recurrent layer cannot run on zero rows.
        first = ops.arange(ops.shape(segment_mask)[0]) == 0
        used = ops.nonzero(ops.logical_or(ops.any(segment_mask, axis=1), first))[0]
        x, used_mask = ops.take(x, used, axis=0), ops.take(segment_mask, used, axis=0)
        for i, layer in enumerate(self.recurrent):
            x = layer(x, mask=used_mask, training=training)
            if i < len(self.between):
                x = self.between[i](x, training=training)
        out = self.units[-1] * (2 if self.bidirectional else 1)
        x = ops.scatter(used[:, None], x, (batch * segments, self.segment_length, out))
        x = ops.reshape(x, (batch, steps + pad, out))[:, :steps]
        # Back to the input's positions, so the input's mask describes the output.
        x = ops.take_along_axis(x, ops.argsort(order, axis=1)[:, :, None], axis=1)
        return x * ops.cast(mask, x.dtype)[:, :, None]

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        """``(batch, steps, out)``."""
        out = self.units[-1] * (2 if self.bidirectional else 1)
        return (input_shape[0], input_shape[1], out)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments, for saving in the ``.keras`` file."""
        return {
            **super().get_config(),
            "units": list(self.units),
            "segment_length": self.segment_length,
            "bidirectional": self.bidirectional,
            "dropout": self.dropout,
        }
