"""The LSTM-family classifiers of the seeds, built with Keras 3.

Default (the BBC News / AG News tutorials):
``Embedding(5000, 64) → Dropout → Bidirectional(LSTM(64)) → Dense(64, relu) →
Dense(n_classes, softmax)`` on sequences of 200 ids.

Options beyond the seeds (off by default, so the default network is the seeds'):
``SpatialDropout1D`` on the embeddings, and a pooled head over all time steps of the last
recurrent layer instead of its final state (``pooling="max"``/``"mean"``), the usual
remedy for long documents where the final state forgets the beginning (e.g. the
"BiLSTM + max pooling" text classifiers of Lai et al. 2015, Conneau et al. 2017).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    import keras

Architecture = Literal["lstm", "bilstm", "stacked-lstm", "stacked-bilstm"]
Pooling = Literal["last", "max", "mean"]

#: Name of the max-pooling layer. Keras warns on every call that it "destroys the mask";
#: that is intended (see :func:`build_model`), so that one warning is silenced.
MAX_POOL_LAYER = "max_pool"
warnings.filterwarnings(
    "ignore",
    message=rf"Layer '{MAX_POOL_LAYER}' \(of type GlobalMaxPooling1D\) was passed an input "
    "with a mask",
    category=UserWarning,
)


class NetworkConfig(BaseModel):
    """Shape of the network (stored in the bundle).

    Attributes:
        architecture: ``lstm``/``bilstm`` use one recurrent layer, ``stacked-*`` two or more.
        embedding_dim: Width of the learned word vectors.
        lstm_units: Units per recurrent layer, input side first (e.g. ``(50, 60, 75)``).
        dropout: Dropout rate after the embedding (and between stacked layers).
        dense_units: Width of the ReLU hidden layer before the softmax; ``None`` for none.
        mask_padding: Mask padding ids (0) so they do not change the recurrent state; then
            pre- or post-padding and the amount of padding do not change predictions.
        pooling: What the classifier head sees of the last recurrent layer: ``"last"`` its
            final state (the seeds), ``"max"`` the element-wise maximum over the time steps
            of ``ReLU(outputs)``, ``"mean"`` the masked average over the time steps.
        spatial_dropout: Rate of ``SpatialDropout1D`` on the embeddings (drops whole
            embedding channels); ``0`` for none.
        head_dropout: Dropout rate before the hidden/softmax layers; ``0`` for none.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    architecture: Architecture = "bilstm"
    embedding_dim: int = Field(default=64, ge=1)
    lstm_units: tuple[int, ...] = (64,)
    dropout: float = Field(default=0.5, ge=0.0, lt=1.0)
    dense_units: int | None = Field(default=64, ge=1)
    mask_padding: bool = True
    pooling: Pooling = "last"
    spatial_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    head_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _check_layers(self) -> Self:
        stacked = self.architecture.startswith("stacked-")
        if not self.lstm_units or any(u < 1 for u in self.lstm_units):
            raise ValueError("lstm_units must list at least one positive layer width")
        if stacked and len(self.lstm_units) < 2:
            raise ValueError(f"{self.architecture} needs two or more lstm_units, e.g. 64,64")
        if not stacked and len(self.lstm_units) != 1:
            raise ValueError(f"{self.architecture} has one recurrent layer; use stacked-* for more")
        return self


def build_model(
    config: NetworkConfig, vocab_size: int, num_classes: int, max_len: int
) -> keras.Model:
    """Build an uncompiled Keras model.

    Args:
        config: Network shape.
        vocab_size: Embedding ``input_dim`` (vocabulary size incl. padding and OOV ids).
        num_classes: Width of the softmax output.
        max_len: Training sequence length (only recorded in the model's name/summary; the
            input accepts any length so serving can trim padding).

    Returns:
        ``keras.Model`` mapping ``(batch, seq_len) int32`` ids to ``(batch, num_classes)
        float32`` class probabilities.

    Masked max pooling uses only built-in layers, so bundles load without custom objects:
    Keras' ``GlobalMaxPooling1D`` ignores masks, but a masked LSTM step emits zeros or a
    copy of an earlier output, and after ``ReLU`` every value is ``>= 0``, so padded steps
    can never raise the maximum: ``max_t ReLU(h_t)`` over all steps equals the maximum
    over the real tokens only.
    """
    import keras
    from keras import layers

    bidirectional = config.architecture.endswith("bilstm")
    inputs = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    x = layers.Embedding(
        vocab_size, config.embedding_dim, mask_zero=config.mask_padding, name="embedding"
    )(inputs)
    if config.spatial_dropout > 0:
        x = layers.SpatialDropout1D(config.spatial_dropout, name="spatial_dropout")(x)
    x = layers.Dropout(config.dropout, name="embedding_dropout")(x)
    pooled = config.pooling != "last"
    for i, units in enumerate(config.lstm_units):
        last = i == len(config.lstm_units) - 1
        lstm = layers.LSTM(units, return_sequences=pooled or not last, name=f"lstm_{i}")
        x = layers.Bidirectional(lstm, name=f"bilstm_{i}")(x) if bidirectional else lstm(x)
        if not last and config.dropout > 0:
            x = layers.Dropout(config.dropout, name=f"lstm_dropout_{i}")(x)
    if config.pooling == "max":
        x = layers.Activation("relu", name="relu_outputs")(x)
        x = layers.GlobalMaxPooling1D(name=MAX_POOL_LAYER)(x)
    elif config.pooling == "mean":
        x = layers.GlobalAveragePooling1D(name="mean_pool")(x)
    if config.head_dropout > 0:
        x = layers.Dropout(config.head_dropout, name="head_dropout")(x)
    if config.dense_units:
        x = layers.Dense(config.dense_units, activation="relu", name="hidden")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"{config.architecture}_len{max_len}")


def embedding_layer(model: keras.Model) -> keras.layers.Embedding | None:
    """The model's (first) ``Embedding`` layer, or ``None`` if it has none.

    The one rule for finding it, used by the bundle loader (vocabulary size check), the
    inference engine (masking, table size) and training (initial embedding weights): by
    type, not by the layer name :func:`build_model` gives it, so models built elsewhere and
    older bundles are found too.
    """
    from keras import layers

    return next((x for x in model.layers if isinstance(x, layers.Embedding)), None)
