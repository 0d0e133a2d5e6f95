"""LIME explanations of real texts, English and Japanese."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from model import load_bundle
from model.bundle import Bundle
from model.text import segment_japanese
from training.explain import explain_text, format_explanation, main
from training.fit import SPLIT_FILE

pytestmark = pytest.mark.filterwarnings(
    "ignore:Layer 'max_pool' \\(of type GlobalMaxPooling1D\\):UserWarning"
)
SAMPLES = 300  # LIME variants per explanation: enough for a stable ranking, fast in CI


@pytest.fixture(scope="module")
def bbc_article(bbc_bundle: Path, bbc_csv: Path) -> str:
    """A real held-out BBC News article (first row of the bundle's test split)."""
    bundle = load_bundle(bbc_bundle)
    row = json.loads((bundle.path / SPLIT_FILE).read_text())["test_indices"][0]
    lines = bbc_csv.read_text(encoding="utf-8").splitlines()
    article: str = lines[row + 1].split(",", 1)[1]
    return article


def test_explains_the_predicted_class_with_words_of_the_text(
    bbc_bundle: Path, bbc_article: str
) -> None:
    bundle = load_bundle(bbc_bundle)
    result = explain_text(bundle, bbc_article, num_features=8, num_samples=SAMPLES)
    probabilities = bundle.predict_proba([bbc_article])[0]
    assert result.label == bundle.labels[int(probabilities.argmax())]
    assert result.probability == pytest.approx(float(probabilities.max()))
    assert len(result.weights) == 8
    words = set(re.findall(r"\w+", bbc_article))  # LIME's default split: runs of \w
    assert all(word in words for word, _ in result.weights)
    values = [w for _, w in result.weights]
    assert values == sorted(values, reverse=True)
    assert any(abs(v) > 1e-4 for v in values)
    assert "<html>" in result.html
    assert result.weights[0][0] in result.html
    assert format_explanation(result).splitlines()[2].startswith("  1. ")


def test_same_seed_same_weights_and_other_labels_can_be_asked(
    bbc_bundle: Path, bbc_article: str
) -> None:
    bundle = load_bundle(bbc_bundle)
    first = explain_text(bundle, bbc_article, num_samples=SAMPLES, seed=3)
    again = explain_text(bundle, bbc_article, num_samples=SAMPLES, seed=3)
    assert first.weights == again.weights
    other = next(label for label in bundle.labels if label != first.label)
    asked = explain_text(bundle, bbc_article, label=other, num_samples=SAMPLES)
    assert asked.label == other
    assert asked.probability < first.probability
    with pytest.raises(ValueError, match="unknown label"):
        explain_text(bundle, bbc_article, label="weather")


def test_cli_prints_the_ranking_and_writes_html(
    bbc_bundle: Path, bbc_article: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    html = tmp_path / "why.html"
    argv = ["--bundle", str(bbc_bundle), "--num-samples", str(SAMPLES), "--html", str(html)]
    assert main([*argv, bbc_article]) == 0
    out = capsys.readouterr().out
    assert out.startswith("class ")
    assert "  1. " in out
    assert html.read_text(encoding="utf-8").startswith("<html>")
    assert main([*argv, "--label", "weather", bbc_article]) == 2


def test_japanese_bundle_reloads_and_explains_in_words(
    livedoor_bundle: Bundle, data_dir: Path
) -> None:
    assert livedoor_bundle.pipeline.text.tokenizer == "fugashi"
    assert len(livedoor_bundle.labels) == 9
    vocabulary = set(livedoor_bundle.pipeline.vocabulary.words)
    assert {"の", "に", "は"} <= vocabulary  # segmented words, not whole sentences
    path = data_dir / "japanese" / "text" / "sports-watch" / "sports-watch-4597641.txt"
    text = "\n".join(path.read_text(encoding="utf-8").split("\n")[2:])
    result = explain_text(livedoor_bundle, text, num_features=6, num_samples=SAMPLES)
    assert len(result.weights) == 6
    segments = set(segment_japanese(text, words_only=True))
    assert all(word in segments for word, _ in result.weights)
    probabilities = livedoor_bundle.predict_proba([text])
    assert np.isclose(probabilities.sum(), 1.0)
