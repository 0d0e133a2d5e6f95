"""The packages' allowed imports (pyproject.toml [tool.importlinter], docs/architecture.md)."""

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept() -> None:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports is not None, "install the dev extra (import-linter)"
    run = subprocess.run(
        [lint_imports, "--no-cache"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout


def test_a_forbidden_import_is_caught(tmp_path: Path) -> None:
    # The contracts are live: a consumer module importing training breaks one.
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "pyproject.toml", project)
    for package in ("schemas", "model", "training", "consumer", "api"):
        shutil.copytree(REPO / package, project / package)
    (project / "consumer" / "_violation.py").write_text("import training.fit\n")
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports is not None
    run = subprocess.run(
        [lint_imports, "--no-cache"], cwd=project, capture_output=True, text=True, check=False
    )
    assert run.returncode != 0
    assert "consumer._violation -> training.fit" in run.stdout


def test_every_file_named_in_the_architecture_page_exists() -> None:
    import re

    page = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:[a-z_]+/)+[a-z_]+\.(?:py|toml|md))`", page))
    assert len(named) > 30
    missing = sorted(p for p in named if not (REPO / p).exists())
    assert missing == []
    folders = set(re.findall(r"`((?:[a-z_]+/)+)`", page))
    assert sorted(f for f in folders if not (REPO / f).is_dir()) == []
