import pytest
from pydantic import Field
from pydantic_settings import BaseSettings

from schemas.settings import command_settings, parse_command_line


class _Example(BaseSettings):
    model_config = command_settings("python -m example", "EXAMPLE_")

    max_batch_size: int = Field(default=8, ge=1)
    verbose: bool = False


def test_flags_win_over_the_environment_which_wins_over_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert parse_command_line(_Example, []) == _Example()
    monkeypatch.setenv("EXAMPLE_MAX_BATCH_SIZE", "16")
    parsed = parse_command_line(_Example, ["--verbose"])
    assert isinstance(parsed, _Example)
    assert parsed.max_batch_size == 16
    assert parsed.verbose
    parsed = parse_command_line(_Example, ["--max-batch-size", "32", "--no-verbose"])
    assert isinstance(parsed, _Example)
    assert parsed.max_batch_size == 32
    assert not parsed.verbose


def test_a_bad_value_is_a_message_naming_the_setting_and_its_variable() -> None:
    message = parse_command_line(_Example, ["--max-batch-size", "0"])
    assert isinstance(message, str)
    assert message.splitlines() == [
        "invalid settings (flag --NAME or environment variable EXAMPLE_NAME):",
        "  max_batch_size: Input should be greater than or equal to 1",
    ]
