"""The options of python -m training.fit: generated from FitSettings, validated at start-up."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from model.network import NetworkConfig
from training.cli import FitSettings, parse_settings
from training.config import FitConfig, TrainingConfig
from training.fit import main

DOCS = Path(__file__).resolve().parents[2] / "docs" / "training.md"


def _flag(name: str) -> str:
    """The flag of a field: toggles defaulting to True are switched off with --no-NAME."""
    field = FitSettings.model_fields[name]
    kebab = name.replace("_", "-")
    return f"--no-{kebab}" if field.annotation is bool and field.default is True else f"--{kebab}"


def test_every_option_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for name in FitSettings.model_fields:
        assert f"`{_flag(name)}" in text, name


def test_the_published_flags_reach_the_configs() -> None:
    settings = parse_settings(
        ["--csv", "x.csv", "--output", "out", "--no-header", "--text-column", "1",
         "--text-column", "2", "--label-column", "0", "--limit", "100", "--no-download",
         "--architecture", "stacked-lstm", "--lstm-units", "50,60", "--dense-units", "0",
         "--no-mask", "--pooling", "max", "--epochs", "4", "--optimizer", "rmsprop",
         "--validation-size", "0.2", "--class-weights", "balanced", "--no-baseline",
         "--num-words", "800", "--oov-token", "[UNK]"]
    )  # fmt: skip
    assert (settings.file, settings.output, settings.limit) == (Path("x.csv"), Path("out"), 100)
    assert (settings.text_column, settings.label_column) == (["1", "2"], "0")
    assert not settings.header
    assert not settings.download
    config = settings.fit_config()
    assert config.network == NetworkConfig(
        architecture="stacked-lstm", lstm_units=(50, 60), dense_units=None,
        mask_padding=False, pooling="max",
    )  # fmt: skip
    assert config.training == TrainingConfig(
        epochs=4, optimizer="rmsprop", validation_fraction=0.2, class_weights="balanced"
    )
    assert (config.num_words, config.oov_token, config.baseline) == (800, "[UNK]", False)


def test_defaults_are_the_configs_defaults() -> None:
    config = parse_settings(["--dataset", "bbc", "--output", "out"]).fit_config()
    assert config == FitConfig()


def test_an_unknown_optimizer_is_refused_naming_the_choices() -> None:
    with pytest.raises(ValidationError, match="'adam' or 'rmsprop'"):
        TrainingConfig(optimizer="sgd")
    with pytest.raises(ValidationError, match="extra"):
        TrainingConfig(epoch=3)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--optimizer", "sgd"], "--optimizer: Input should be 'adam' or 'rmsprop'"),
        (["--epochs", "0"], "--epochs: Input should be greater than or equal to 1"),
        (["--dropout", "1.5"], "--dropout: Input should be less than 1"),
        (["--validation-size", "1"], "--validation-size: Input should be less than 1"),
        (["--freeze-embeddings"], "--freeze-embeddings keeps initial vectors fixed"),
        (["--file", "x.csv"], "give exactly one of --dataset, --file (--csv) or --folder"),
    ],
)
def test_bad_options_stop_at_start_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    out = tmp_path / "out"
    assert main(["--dataset", "bbc", "--data-dir", str(tmp_path), "--output", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid options")
    assert message in err
    assert "Traceback" not in err
    assert not out.exists()
