"""Smoke test of the peers stage (``python -m bench.peers --peers-smoke``) on the real broker.

The project's consumer, Quix Streams, faust-streaming and MLServer each label the short
stream's first 40 messages with the same bundle; every label must equal the project's own.
Nothing here is timed. The peers run in ``.venv-peers``: CI builds it (``make peers-venv``,
from ``.ci/run``) and fails without it; a developer's run without it skips, saying how to
build it. About a minute and a half on two cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.peers.harness import BUILD_HINT, PEERS, PEERS_VENV, REPO


@pytest.fixture(scope="module")
def peers_python() -> Path:
    python = PEERS_VENV / "bin" / "python"
    if not python.exists():
        message = f"{PEERS_VENV} is missing; build it with: {BUILD_HINT}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return python


@pytest.mark.timeout(420)
def test_every_peer_labels_like_the_project(
    peers_python: Path, kafka_bootstrap: str, bbc_bundle: Path, data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "peers"
    command = [
        sys.executable, "-m", "bench.peers", "--peers-smoke",
        "--data-dir", str(data_dir), "--bundle", str(bbc_bundle),
        "--bootstrap-servers", kafka_bootstrap, "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=400)
    assert out.with_suffix(".json").exists(), done.stderr[-3000:]
    results = json.loads(out.with_suffix(".json").read_text())
    assert not results.get("failed"), results.get("failed")
    runs = results["runs"]["short"]
    assert set(runs) == {"project", *PEERS}
    for name, run in runs.items():
        agreement = run["agreement"]
        assert agreement["answered"] == agreement["of"] == 40, (name, agreement)
        assert agreement["equal"] == 40, (name, agreement)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| mlserver |" in out.with_suffix(".md").read_text()
