import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model import BundleError, load_bundle
from model.bundle import CURRENT, MANIFEST, MODEL_FILE, VOCABULARY_FILE, point_current
from training.data import load_csv
from training.fit import SPLIT_FILE

TEXTS = [
    "chelsea won the league after a late goal at stamford bridge",
    "shares in the bank fell sharply as profits dropped",
    "the new mobile phone has a faster chip and better screen",
    "",  # empty after preprocessing: must still get a valid distribution
]


def test_bundle_has_everything_serving_needs(bbc_bundle: Path) -> None:
    version_dir = (bbc_bundle / CURRENT).resolve()
    assert version_dir.parent == bbc_bundle
    manifest = json.loads((version_dir / MANIFEST).read_text())
    assert manifest["labels"] == ["business", "entertainment", "politics", "sport", "tech"]
    assert manifest["version"] == version_dir.name
    assert {MODEL_FILE, VOCABULARY_FILE, "metrics.json", SPLIT_FILE} <= set(manifest["files"])
    assert manifest["sequence"]["max_len"] == 120
    assert manifest["text"]["remove_stopwords"] is True
    metrics = json.loads((version_dir / "metrics.json").read_text())
    assert metrics["n"] == 445
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert np.array(metrics["confusion_matrix"]).sum() == 445
    assert not list(bbc_bundle.glob(".tmp-*")), "temporary directories must not remain"


def test_round_trip_gives_identical_probabilities(bbc_bundle: Path) -> None:
    bundle = load_bundle(bbc_bundle)
    first = bundle.predict_proba(TEXTS)
    assert first.shape == (4, 5)
    assert first.dtype == np.float32
    np.testing.assert_allclose(first.sum(axis=1), 1.0, rtol=1e-5)
    again = load_bundle(bundle.path).predict_proba(TEXTS)
    np.testing.assert_array_equal(first, again)


def test_fresh_process_reproduces_the_probabilities(bbc_bundle: Path, tmp_path: Path) -> None:
    """A separate interpreter (as on another machine) loads the bundle and gets the same numbers."""
    expected = load_bundle(bbc_bundle).predict_proba(TEXTS)
    out = tmp_path / "p.npy"
    code = (
        "import sys, numpy as np; from model import load_bundle;"
        "np.save(sys.argv[2], load_bundle(sys.argv[1]).predict_proba(" + repr(TEXTS) + "))"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run([sys.executable, "-c", code, str(bbc_bundle), str(out)], check=True, env=env)
    np.testing.assert_allclose(np.load(out), expected, rtol=0, atol=1e-6)


def test_held_out_split_rescored_from_bundle_matches_metrics(
    bbc_bundle: Path, bbc_csv: Path
) -> None:
    bundle = load_bundle(bbc_bundle)
    split = json.loads((bundle.path / SPLIT_FILE).read_text())
    data = load_csv(bbc_csv, "text", "category")
    idx = split["test_indices"]
    pred = bundle.predict_proba([data.texts[i] for i in idx]).argmax(axis=1)
    truth = [bundle.labels.index(data.labels[i]) for i in idx]
    accuracy = float(np.mean(pred == np.array(truth)))
    metrics = json.loads((bundle.path / "metrics.json").read_text())
    assert accuracy == pytest.approx(metrics["accuracy"], abs=1e-9)


def _copy_version(bbc_bundle: Path, tmp_path: Path) -> Path:
    import shutil

    src = (bbc_bundle / CURRENT).resolve()
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def test_corrupt_file_is_refused(bbc_bundle: Path, tmp_path: Path) -> None:
    version = _copy_version(bbc_bundle, tmp_path)
    with (version / VOCABULARY_FILE).open("a") as f:
        f.write(" ")
    with pytest.raises(BundleError, match=r"corrupt: sha256 of vocabulary\.json"):
        load_bundle(version)


def test_missing_file_is_refused(bbc_bundle: Path, tmp_path: Path) -> None:
    version = _copy_version(bbc_bundle, tmp_path)
    (version / MODEL_FILE).unlink()
    with pytest.raises(BundleError, match=r"incomplete: model\.keras is missing"):
        load_bundle(version)


def test_missing_bundle_says_how_to_train(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"python -m training\.fit"):
        load_bundle(tmp_path)


def test_current_pointer_is_replaced_atomically(bbc_bundle: Path, tmp_path: Path) -> None:
    version = _copy_version(bbc_bundle, tmp_path)
    point_current(tmp_path, version.name)
    assert (tmp_path / CURRENT).resolve() == version.resolve()
    assert os.readlink(tmp_path / CURRENT) == version.name  # relative: the directory can move
    assert load_bundle(tmp_path).version == version.name
