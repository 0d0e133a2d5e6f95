"""The command-line and environment format every service command shares (pydantic-settings).

``python -m consumer``, ``python -m consumer.skip`` and ``python -m api`` read their settings
the same way: flags (``--max-batch-size``, kebab case, ``--x/--no-x`` for booleans) win over
environment variables (``PREFIX`` + upper-case name), which win over the defaults; unknown
settings are refused; a bad value stops the command with one line per setting and exit code 2.
This module is that contract, in one place, as :mod:`schemas.messages` is the topics'.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, CliApp, SettingsConfigDict

from schemas.errors import error_lines

SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def command_settings(prog: str, env_prefix: str = "") -> SettingsConfigDict:
    """The ``model_config`` of a command's settings class.

    Args:
        prog: The command as users type it (``"python -m consumer"``), for ``--help``.
        env_prefix: Prefix of the environment variables (``"CLASSIFIER_"``); empty: the
            command reads no environment variables of its own.
    """
    return SettingsConfigDict(
        env_prefix=env_prefix,
        cli_kebab_case=True,
        cli_prog_name=prog,
        cli_implicit_flags=True,
        extra="forbid",
        hide_input_in_errors=True,  # a rejected value may be a secret (a SASL password)
    )


def parse_command_line(settings: type[SettingsT], argv: Sequence[str] | None) -> SettingsT | str:
    """The settings from ``argv`` (default ``sys.argv[1:]``), the environment and defaults.

    Errors are values: a bad or unknown setting returns the message to print (then exit 2),
    naming each setting as its field and its environment variable's suffix.

    Raises:
        SystemExit: ``--help`` (code 0), or a flag argparse cannot parse (code 2).
    """
    try:
        return CliApp.run(settings, cli_args=list(argv) if argv is not None else sys.argv[1:])
    except ValidationError as exc:
        prefix = settings.model_config.get("env_prefix") or ""
        source = f"flag --NAME or environment variable {prefix}NAME" if prefix else "flag --NAME"
        lines = error_lines(exc, "settings")
        return "\n".join([f"invalid settings ({source}):", *(f"  {line}" for line in lines)])
