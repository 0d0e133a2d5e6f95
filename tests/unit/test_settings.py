from pathlib import Path

import pytest
from pydantic import ValidationError

from consumer.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_documented_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    for name in Settings.model_fields:
        assert f"`--{name.replace('_', '-')}`" in text, name
        assert f"`CLASSIFIER_{name.upper()}`" in text, name


def test_environment_and_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    monkeypatch.setenv("CLASSIFIER_MAX_BATCH_SIZE", "64")
    monkeypatch.setenv("CLASSIFIER_LOG_LEVEL", "debug")
    s = Settings(bundle=tmp_path)
    assert s.bootstrap_servers == "broker:9092"
    assert s.max_batch_size == 64
    assert s.log_level == "DEBUG"
    monkeypatch.setenv("CLASSIFIER_BOOTSTRAP_SERVERS", "other:9093")
    assert Settings(bundle=tmp_path).bootstrap_servers == "other:9093"


def test_missing_bundle_says_how_to_train(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"python -m training\.fit"):
        Settings(bundle=tmp_path / "nope")


def test_unknown_setting_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="max_batch"):
        Settings(bundle=tmp_path, max_batch=3)  # type: ignore[call-arg]


def test_every_api_setting_is_documented_in_the_readme() -> None:
    from api.settings import ApiSettings

    text = README.read_text(encoding="utf-8")
    for name in ApiSettings.model_fields:
        assert f"`CLASSIFIER_API_{name.upper()}`" in text, name
