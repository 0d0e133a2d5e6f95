"""The options of ``python -m training.fit``, generated from one pydantic-settings model.

Every flag is one field of :class:`FitSettings`: its name (``embedding_dim`` →
``--embedding-dim``), type, default, bounds and help text are declared there once, and the
fields that set a config field take their default and bounds from that field
(:func:`training.config.field_of`). Booleans are toggle flags: a field defaulting to
``True`` is switched off with ``--no-NAME`` (``baseline`` → ``--no-baseline``), one
defaulting to ``False`` is switched on with ``--NAME``. :meth:`FitSettings.fit_config`
maps the options onto the run's :class:`~training.config.FitConfig`, and
:func:`load_data` reads the data they name. docs/training.md documents every option.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    CliApp,
    CliToggleFlag,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from model.network import Architecture, NetworkConfig, Pooling
from model.sequences import SequenceConfig, Side
from model.text import TextConfig, Tokenizer
from training.config import FitConfig, Optimizer, TrainingConfig, field_of
from training.data import DatasetError, TableFormat, TextDataset, load_folder, load_table
from training.data import stratified_subsample as subsample
from training.datasets import NAMED_DATASETS, LoadedDataset, load_named
from training.embeddings import WORD2VEC, check_vector_file

PROG = "python -m training.fit"
#: What ``--help`` says above the options.
DESCRIPTION = """\
Train an LSTM text classifier and write an artifact bundle.
Options are checked before any data is read: a bad one stops the command
with exit code 2 and a message naming the flag. docs/training.md documents
every option."""
NewsgroupPart = Literal["headers", "footers", "quotes"]


class FitSettings(BaseSettings):
    """Every option of ``python -m training.fit``: field ``name`` is flag ``--name``.

    Read from the command line only (:func:`parse_settings`; no environment variables, but
    ``--data-dir`` falls back to ``$CLASSIFIER_DATA_DIR`` in :mod:`training.datasets`).
    ``--help`` shows :data:`DESCRIPTION` above the options.

    Raises:
        pydantic.ValidationError: an unknown dataset or choice (e.g. ``--optimizer sgd``),
            a number out of range, not exactly one of ``--dataset``/``--file``/``--folder``,
            options that contradict each other (the rules of
            :class:`~training.config.FitConfig` and its parts), or an ``--embeddings`` file
            that is missing or not ``--embedding-dim`` wide.
    """

    model_config = SettingsConfigDict(
        json_schema_extra={"description": DESCRIPTION},
        cli_prog_name=PROG,
        cli_kebab_case=True,
        cli_implicit_flags="toggle",
        cli_hide_none_type=True,
        cli_avoid_json=True,
        cli_shortcuts={"file": "csv"},
        extra="forbid",
        frozen=True,
    )

    # data
    dataset: str | None = Field(
        default=None, description=f"a named dataset: {', '.join(sorted(NAMED_DATASETS))}"
    )
    file: Path | None = Field(default=None, description="CSV/TSV/JSONL file of labelled texts")
    folder: Path | None = Field(
        default=None, description="one sub-folder per class, one text per file"
    )
    test_file: Path | None = Field(
        default=None, description="the data's own test split (same layout)"
    )
    test_folder: Path | None = Field(
        default=None, description="the data's own test split (folders)"
    )
    data_dir: str | None = Field(
        default=None, description="folder holding the named datasets (env CLASSIFIER_DATA_DIR)"
    )
    download: CliToggleFlag[bool] = Field(default=True, description="never download missing files")
    format: TableFormat | None = Field(default=None, description="default: from the suffix")
    header: CliToggleFlag[bool] = Field(default=True, description="CSV/TSV without a header row")
    text_column: list[str] = Field(
        default=["text"],
        min_length=1,
        description="text column (repeat to join several; header-less files: 0, 1, ...)",
    )
    label_column: str = Field(default="label", description="label column")
    encoding: str = Field(default="utf-8", description="encoding of --folder files")
    newsgroups_remove: tuple[NewsgroupPart, ...] = Field(
        default=(), description="20newsgroups: strip any of headers,footers,quotes"
    )
    limit: int | None = Field(default=None, ge=1, description="stratified subsample of N rows")
    test_limit: int | None = Field(
        default=None, ge=1, description="stratified subsample of N test rows"
    )
    output: Path = Field(description="model directory to write into")

    # preprocessing
    lang: Literal["en", "ja"] | None = Field(
        default=None,
        description="ja: MeCab word segmentation (fugashi + unidic-lite), NFKC, no stopword "
        "removal (default: the named dataset's language, else en)",
    )
    tokenizer: Tokenizer | None = Field(default=None, description="default: from --lang")
    num_words: int = field_of(FitConfig, "num_words")
    oov_token: str = field_of(FitConfig, "oov_token")
    max_len: int = field_of(SequenceConfig, "max_len", description="tokens per sequence")
    padding: Side = field_of(SequenceConfig, "padding", description="where padding goes")
    truncating: Side = field_of(SequenceConfig, "truncating", description="which end is cut")
    keep_stopwords: CliToggleFlag[bool] = Field(
        default=False, description="do not remove stopwords"
    )
    remove_stopwords: CliToggleFlag[bool] = Field(
        default=False, description="remove them even for ja"
    )
    digits_to_zero: CliToggleFlag[bool] = field_of(
        TextConfig, "digits_to_zero", description="digits → 0"
    )
    lowercase: CliToggleFlag[bool] = field_of(TextConfig, "lowercase", description="keep case")
    keep_urls: CliToggleFlag[bool] = Field(default=False, description="do not strip URLs")
    keep_emails: CliToggleFlag[bool] = Field(
        default=False, description="do not strip e-mail addresses"
    )
    keep_dashes: CliToggleFlag[bool] = Field(
        default=False, description="do not collapse runs of dashes"
    )
    nfkc: CliToggleFlag[bool] = Field(
        default=False, description="Unicode NFKC normalisation (ja: on)"
    )
    keep_pos: tuple[str, ...] = field_of(
        TextConfig,
        "keep_pos",
        description="fugashi: keep only these UniDic parts of speech, e.g. 名詞,動詞,形容詞",
    )

    # network
    architecture: Architecture = field_of(
        NetworkConfig, "architecture", description="(bi)LSTM, one layer or stacked-*"
    )
    embedding_dim: int = field_of(NetworkConfig, "embedding_dim", description="vector width")
    lstm_units: tuple[int, ...] = field_of(
        NetworkConfig, "lstm_units", description="units per layer, e.g. 64 or 50,60,75"
    )
    dropout: float = field_of(NetworkConfig, "dropout", description="after the embedding")
    spatial_dropout: float = field_of(
        NetworkConfig, "spatial_dropout", description="SpatialDropout1D rate on the embeddings"
    )
    dense_units: int = Field(
        default=NetworkConfig().dense_units or 0, ge=0, description="0 for none"
    )
    head_dropout: float = field_of(
        NetworkConfig, "head_dropout", description="dropout before the hidden/softmax layers"
    )
    pooling: Pooling = field_of(
        NetworkConfig, "pooling", description="the final state, or max/mean over time steps"
    )
    mask: CliToggleFlag[bool] = field_of(
        NetworkConfig, "mask_padding", description="let padding reach the LSTM"
    )

    # training
    epochs: int = field_of(TrainingConfig, "epochs")
    batch_size: int = field_of(TrainingConfig, "batch_size")
    learning_rate: float = field_of(TrainingConfig, "learning_rate")
    optimizer: Optimizer = field_of(TrainingConfig, "optimizer")
    patience: int = field_of(TrainingConfig, "patience")
    test_size: float = field_of(TrainingConfig, "test_size")
    validation_size: float = field_of(TrainingConfig, "validation_fraction")
    seed: int = field_of(TrainingConfig, "seed")
    class_weights: Literal["none", "balanced"] = Field(
        default="none", description="balanced: weight each class's loss by n / (k * n_class)"
    )
    embeddings: str | None = field_of(
        TrainingConfig,
        "embeddings",
        description="initial word vectors: word2vec trained on the fitting rows, or a "
        "word2vec/GloVe text file as wide as --embedding-dim (default: random)",
    )
    freeze_embeddings: CliToggleFlag[bool] = field_of(TrainingConfig, "freeze_embeddings")
    bucket_by_length: CliToggleFlag[bool] = field_of(TrainingConfig, "bucket_by_length")
    baseline: CliToggleFlag[bool] = field_of(
        FitConfig, "baseline", description="skip the TF-IDF baseline"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments only (the command line is added by ``CliApp.run``): no environment."""
        return (init_settings,)

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, value: str | None) -> str | None:
        if value is not None and value not in NAMED_DATASETS:
            raise ValueError(f"unknown dataset {value!r}; use one of {sorted(NAMED_DATASETS)}")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        given = [f for f in ("dataset", "file", "folder") if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of --dataset, --file (--csv) or --folder")
        if self.test_file is not None and self.test_folder is not None:
            raise ValueError("give --test-file or --test-folder, not both")
        return self

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        config = self.fit_config()  # the configs' own cross-field rules
        vectors = config.training.embeddings
        if vectors and vectors != WORD2VEC:
            try:
                check_vector_file(Path(vectors), config.network.embedding_dim)
            except FileNotFoundError as exc:
                raise ValueError(str(exc)) from exc
        return self

    def fit_config(self) -> FitConfig:
        """The run's settings; the language presets follow ``--lang`` or the dataset's.

        A config field takes the option of the same name (``--max-len`` → ``max_len``)
        unless its option differs in name or meaning; those are mapped here.

        Raises:
            pydantic.ValidationError: settings that contradict each other.
        """
        spec = NAMED_DATASETS.get(self.dataset or "")
        japanese = (self.lang or (spec.lang if spec else "en")) == "ja"
        text = TextConfig(
            **self._options_for(
                TextConfig,
                strip_urls=not self.keep_urls,
                strip_emails=not self.keep_emails,
                collapse_dashes=not self.keep_dashes,
                remove_stopwords=self.remove_stopwords or not (self.keep_stopwords or japanese),
                unicode_nfkc=self.nfkc or japanese,
                tokenizer=self.tokenizer or ("fugashi" if japanese else "keras"),
            )
        )
        network = NetworkConfig(
            **self._options_for(
                NetworkConfig, dense_units=self.dense_units or None, mask_padding=self.mask
            )
        )
        training = TrainingConfig(
            **self._options_for(
                TrainingConfig,
                validation_fraction=self.validation_size,
                class_weights="balanced" if self.class_weights == "balanced" else None,
            )
        )
        return FitConfig(
            **self._options_for(
                FitConfig,
                text=text,
                sequence=SequenceConfig(**self._options_for(SequenceConfig)),
                network=network,
                training=training,
            )
        )

    def _options_for(self, model: type[BaseModel], **mapped: Any) -> dict[str, Any]:
        """``model``'s fields from the options of the same name, updated with ``mapped``."""
        options = type(self).model_fields
        same = {name: getattr(self, name) for name in model.model_fields if name in options}
        return same | mapped


def parse_settings(argv: Sequence[str]) -> FitSettings:
    """Parse and validate the command line (``--help`` prints the options and exits).

    Raises:
        pydantic.ValidationError: a bad value (see :class:`FitSettings`).
        SystemExit: ``--help`` (code 0), or an unknown flag or a flag without its value
            (code 2, argparse's usage message).
    """
    return CliApp.run(FitSettings, cli_args=list(argv))


def settings_error(error: ValidationError) -> str:
    """The validation errors as lines naming each flag (``embedding_dim`` → ``--embedding-dim``)."""
    lines = [f"error: invalid options (see {PROG} --help):"]
    for e in error.errors():
        message = e["msg"].removeprefix("Value error, ")
        where = [str(part) for part in e["loc"]]
        if where:  # a field: name its flag (and the item of a list)
            flag = "--" + where[0].replace("_", "-") + "".join(f"[{p}]" for p in where[1:])
            message = f"{flag}: {message}"
        lines.append(f"  {message}")
    return "\n".join(lines)


def load_data(settings: FitSettings) -> LoadedDataset:
    """The data named by ``--dataset``, ``--file`` or ``--folder``, subsampled by the limits.

    Raises:
        DatasetError: missing files (the message says where to put them), bad rows.
    """
    if settings.dataset:
        loaded = load_named(
            settings.dataset,
            settings.data_dir,
            allow_download=settings.download,
            newsgroups_remove=settings.newsgroups_remove,
        )
    else:
        train, test = _own_files(settings)
        loaded = LoadedDataset(str(settings.file or settings.folder), train, test)
    train, test = loaded.train, loaded.test
    if settings.limit:
        train = train.subset(subsample(train.labels, settings.limit, settings.seed))
    if settings.test_limit and test is not None:
        test = test.subset(subsample(test.labels, settings.test_limit, settings.seed))
    return LoadedDataset(loaded.name, train, test, loaded.notes)


def _own_files(settings: FitSettings) -> tuple[TextDataset, TextDataset | None]:
    """``--file``/``--folder`` and ``--test-file``/``--test-folder`` (the test split or None)."""

    def table(path: Path) -> TextDataset:
        return load_table(
            path,
            settings.text_column,
            settings.label_column,
            fmt=settings.format,
            header=settings.header,
        )

    if settings.folder is not None:
        train = load_folder(settings.folder, settings.encoding)
    elif settings.file is not None:
        train = table(settings.file)
    else:
        raise DatasetError("give --file or --folder")
    if settings.test_file is not None:
        return train, table(settings.test_file)
    if settings.test_folder is not None:
        return train, load_folder(settings.test_folder, settings.encoding)
    return train, None
