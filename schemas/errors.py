"""Pydantic validation errors as short, human-readable lines (dead-letter reasons, settings)."""

from __future__ import annotations

from pydantic import ValidationError


def error_lines(error: ValidationError, default_location: str = "value") -> list[str]:
    """One ``"location: message"`` line per error, e.g. ``"text: Field required"``.

    The offending input is not repeated (it can be large or secret).
    """
    lines = []
    for e in error.errors():
        where = ".".join(str(p) for p in e["loc"]) or default_location
        lines.append(f"{where}: {e['msg']}")
    return lines
