"""Clear start-up errors when an optional dependency group (a pip "extra") is not installed.

``pip install .`` gives the stream consumer only; ``python -m api`` needs ``[api]`` and
``python -m training.fit`` needs ``[train]`` (pyproject.toml). Without this check a missing
extra surfaces as a bare ``ModuleNotFoundError`` deep in an import.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence


def missing_extra(extra: str, modules: Sequence[str]) -> str | None:
    """A message saying how to install ``extra`` if any of ``modules`` is missing, else ``None``.

    Args:
        extra: The extra's name in pyproject.toml (``"api"``, ``"train"``).
        modules: Top-level import names the command needs (e.g. ``"sklearn"``).
    """
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return (
        f"this command needs the '{extra}' extra: pip install 'stream-text-classifier[{extra}]' "
        f"(or pip install '.[{extra}]' from a clone); missing: {', '.join(missing)}"
    )
