"""The evaluation written into the bundle: metrics, baseline, report.md, figures, split."""

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from model import load_bundle
from model.bundle import CURRENT, MANIFEST
from training.fit import SPLIT_FILE, main
from training.report import CONFUSION_PNG, CONFUSION_TXT, HISTORY_PNG, REPORT_FILE

pytestmark = pytest.mark.filterwarnings(
    "ignore:Layer 'max_pool' \\(of type GlobalMaxPooling1D\\):UserWarning"
)

BBC_LABELS = ["business", "entertainment", "politics", "sport", "tech"]


def _png_shape(path: Path) -> tuple[int, ...]:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return tuple(imread(io.BytesIO(path.read_bytes()), format="png").shape)


def test_bundle_holds_report_figures_and_baseline(bbc_bundle: Path) -> None:
    version = (bbc_bundle / CURRENT).resolve()
    manifest = json.loads((version / MANIFEST).read_text())
    for name in (REPORT_FILE, CONFUSION_PNG, HISTORY_PNG, CONFUSION_TXT):
        assert name in manifest["files"], f"{name} must be checksummed in the manifest"
    metrics = json.loads((version / "metrics.json").read_text())
    baseline = metrics["baseline"]
    assert baseline["n"] == metrics["n"] == 445  # same held-out rows
    assert baseline["accuracy"] > 0.95  # TF-IDF + linear SVM is strong on BBC News
    assert 0.0 < baseline["macro_f1"] <= 1.0
    assert metrics["epochs_run"] == len(metrics["history"]["loss"])
    assert 1 <= metrics["best_epoch"] <= metrics["epochs_run"]
    assert metrics["duplicates"]["count"] > 0  # BBC News holds some articles twice
    assert metrics["machine"]["machine"].startswith(("x86_64", "aarch64", "arm64"))

    height, width, _ = _png_shape(version / CONFUSION_PNG)
    assert height > 200
    assert width > 200
    height, width, _ = _png_shape(version / HISTORY_PNG)
    assert width > 2 * height > 0  # two panels side by side

    table = (version / CONFUSION_TXT).read_text().splitlines()
    assert table[1].split() == BBC_LABELS
    counts = [[int(v) for v in line.split()[1:]] for line in table[2:]]
    assert counts == metrics["confusion_matrix"]


def test_report_md_ties_it_together(bbc_bundle: Path) -> None:
    version = (bbc_bundle / CURRENT).resolve()
    report = (version / REPORT_FILE).read_text(encoding="utf-8")
    metrics = json.loads((version / "metrics.json").read_text())
    assert report.startswith("# Training report: bbc-text.csv: bilstm")
    rows = [line for line in report.splitlines() if line.startswith("| ")]
    lstm_row = next(r for r in rows if r.startswith("| LSTM family"))
    assert f"| {metrics['accuracy']:.4f} | {metrics['macro_f1']:.4f} |" in lstm_row
    baseline_row = next(r for r in rows if r.startswith("| baseline: TF-IDF"))
    assert f"| {metrics['baseline']['accuracy']:.4f} |" in baseline_row
    assert f"]({CONFUSION_PNG})" in report
    assert f"]({HISTORY_PNG})" in report
    assert "stratified 20% of the rows, seed 42" in report
    assert metrics["classification_report_text"].strip() in report
    epochs = [r for r in rows if r[2:3].isdigit()]
    assert len(epochs) == metrics["epochs_run"]


def test_cli_on_a_dataset_with_its_own_test_split(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "banking77"
    code = main(
        ["--dataset", "banking77", "--data-dir", str(data_dir), "--output", str(out),
         "--limit", "1500", "--test-limit", "385", "--max-len", "16", "--embedding-dim", "8",
         "--lstm-units", "8", "--dense-units", "0", "--pooling", "max", "--epochs", "1",
         "--batch-size", "128", "--keep-stopwords", "--class-weights", "balanced"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert "- val_accuracy:" in printed  # the per-epoch progress line
    assert "TF-IDF + LinearSVC baseline: accuracy" in printed
    bundle = load_bundle(out)
    assert len(bundle.labels) == 77
    assert bundle.manifest.training["class_weights"] == "balanced"
    report = (bundle.path / REPORT_FILE).read_text(encoding="utf-8")
    assert "the dataset's own test split" in report
    assert "python -m training.fit --dataset banking77" in report

    # Re-score the held-out rows straight from the original file through the bundle:
    # the serving path reproduces the training-time evaluation exactly.
    split = json.loads((bundle.path / SPLIT_FILE).read_text())
    assert Path(split["test_dataset"]).name == "test.csv"
    with (data_dir / "banking77" / "test.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    held_out = [rows[i] for i in split["test_indices"]]
    assert len(held_out) == 385
    predicted = bundle.predict_proba([r["text"] for r in held_out]).argmax(axis=1)
    truth = np.array([bundle.labels.index(r["category"]) for r in held_out])
    metrics = json.loads((bundle.path / "metrics.json").read_text())
    assert float(np.mean(predicted == truth)) == pytest.approx(metrics["accuracy"], abs=1e-9)


def test_cli_offline_without_the_data_says_where_to_put_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CLASSIFIER_CACHE_DIR", str(tmp_path / "cache"))
    empty = tmp_path / "datasets"
    empty.mkdir()
    code = main(["--dataset", "banking77", "--data-dir", str(empty), "--no-download",
                 "--output", str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "train.csv not found" in err
    assert f"Put train.csv into {empty / 'banking77'} or {tmp_path / 'cache' / 'banking77'}" in err
    assert not (tmp_path / "out").exists()
