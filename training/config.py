"""Validated settings of a training run: :class:`TrainingConfig` and :class:`FitConfig`.

Both are frozen pydantic models that refuse unknown fields, out-of-range numbers and unknown
choices when they are built, so a bad value stops a run before any data is read. The
preprocessing and network settings are the bundle's own models (``model.TextConfig``,
``model.SequenceConfig``, ``model.NetworkConfig``); the command line of
``python -m training.fit`` (:mod:`training.cli`) is generated from these models' fields.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.fields import FieldInfo

from model.network import NetworkConfig
from model.sequences import SequenceConfig
from model.text import TextConfig

Optimizer = Literal["adam", "rmsprop"]
#: Largest seed: NumPy's legacy seeding (``keras.utils.set_random_seed``) takes ``< 2**32``.
MAX_SEED = 2**32 - 1


class TrainingConfig(BaseModel):
    """Optimisation settings (defaults: the seeds' Adam at 1e-3, batch 32).

    Recorded field by field in the bundle manifest (``training``) and in ``report.md``.

    Raises:
        pydantic.ValidationError: an unknown field, an optimiser other than ``adam`` or
            ``rmsprop``, a number out of its range, or ``freeze_embeddings`` without
            ``embeddings`` (there would be no initial vectors to keep).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    epochs: int = Field(
        default=12, ge=1, description="Maximum epochs (early stopping may end sooner)."
    )
    batch_size: int = Field(default=32, ge=1, description="Sequences per gradient step.")
    learning_rate: float = Field(default=1e-3, gt=0.0, description="Optimiser step size.")
    optimizer: Optimizer = Field(default="adam", description="adam or rmsprop (Keras).")
    patience: int = Field(
        default=3,
        ge=0,
        description="Epochs without validation-loss improvement before stopping; the best "
        "epoch's weights are restored.",
    )
    validation_fraction: float = Field(
        default=0.1,
        gt=0.0,
        lt=1.0,
        description="Share of the training rows held out (stratified, seeded) for early stopping.",
    )
    test_size: float = Field(
        default=0.2,
        gt=0.0,
        lt=1.0,
        description="Share of the rows held out (stratified, seeded) for the final evaluation "
        "when the dataset has no test split of its own.",
    )
    seed: int = Field(
        default=42,
        ge=0,
        le=MAX_SEED,
        description="Seeds the splits, weight init, dropout and shuffling "
        "(keras.utils.set_random_seed).",
    )
    class_weights: Literal["balanced"] | None = Field(
        default=None,
        description="'balanced' weights each class's loss by n_rows / (n_classes * "
        "n_rows_of_class) (scikit-learn's compute_class_weight); None for none.",
    )
    embeddings: str | None = Field(
        default=None,
        min_length=1,
        description="Initial embedding weights: None random (the seeds), 'word2vec' "
        "skip-gram vectors trained on the fitting rows, or the path of a word2vec/GloVe text "
        "file as wide as the network's embedding_dim.",
    )
    freeze_embeddings: bool = Field(
        default=False, description="Keep the initial embedding weights fixed during training."
    )
    bucket_by_length: bool = Field(
        default=False,
        description="Batch rows of similar length, each batch trimmed to its longest row "
        "(training.batches.LengthBucketedBatches); needs padding masks.",
    )

    @model_validator(mode="after")
    def _freezing_needs_vectors(self) -> Self:
        if self.freeze_embeddings and not self.embeddings:
            raise ValueError(
                "--freeze-embeddings keeps initial vectors fixed: give them with --embeddings"
            )
        return self


class FitConfig(BaseModel):
    """Everything a training run is configured by, besides its data and output directory.

    Attributes:
        text, sequence, network: Preprocessing and network shape, stored in the bundle.
        num_words: Vocabulary cap incl. the padding and OOV ids (the seeds' 5,000).
        oov_token: Text of the out-of-vocabulary token (the seeds' ``"<OOV>"``).
        training: Optimisation settings.
        baseline: Also fit and score the TF-IDF + linear SVM baseline.

    Raises:
        pydantic.ValidationError: a field is invalid, or ``training.bucket_by_length`` is set
            for a network without padding masks (trimming a batch would change its
            predictions).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: TextConfig = Field(default_factory=TextConfig)
    sequence: SequenceConfig = Field(default_factory=SequenceConfig)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    num_words: int = Field(
        default=5000, ge=3, description="Vocabulary ids incl. padding (0) and OOV (1)."
    )
    oov_token: str = Field(
        default="<OOV>", min_length=1, description="Text of the out-of-vocabulary token."
    )
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    baseline: bool = Field(default=True, description="Also score the TF-IDF + LinearSVC baseline.")

    @model_validator(mode="after")
    def _bucketing_needs_masks(self) -> Self:
        if self.training.bucket_by_length and not self.network.mask_padding:
            raise ValueError("--bucket-by-length trims padding: it cannot be used with --no-mask")
        return self

    def recorded(self) -> dict[str, Any]:
        """The settings as ``report.md`` lists them (JSON-able; the baseline switch left out)."""
        return {
            "text": self.text.model_dump(),
            "sequence": self.sequence.model_dump(),
            "network": self.network.model_dump(),
            "num_words": self.num_words,
            "training": self.training.model_dump(),
        }


def field_of(model: type[BaseModel], name: str, **overrides: Any) -> Any:
    """A copy of ``model``'s field ``name`` (default and bounds) for another model.

    :mod:`training.cli` declares its flags with it, so a flag has the default and the
    ``ge``/``gt``/``le``/``lt`` bounds of the config field it sets, declared once.

    Args:
        model: The model owning the field, e.g. ``NetworkConfig``.
        name: The field's name, e.g. ``"embedding_dim"``.
        overrides: ``Field`` arguments to change, e.g. ``description``.

    Returns:
        A ``FieldInfo``, to be assigned as a field's default (typed ``Any`` for that).

    Raises:
        KeyError: ``model`` has no field ``name``.
    """
    return FieldInfo.merge_field_infos(model.model_fields[name], **overrides)
