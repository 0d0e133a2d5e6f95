"""The inference engine gives the Keras model's probabilities (within 1e-5) on real text."""

from __future__ import annotations

import csv
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model import NetworkConfig, SequenceConfig, TextConfig, TextPipeline, load_bundle
from model.engine import EngineConfig, InferenceEngine, extract_network, plan_chunks
from model.network import build_model

TOLERANCE = 1e-5


def _ag_news_test(data_dir: Path, n: int) -> list[str]:
    with (data_dir / "ag_news" / "test.csv").open(newline="", encoding="utf-8") as f:
        rows = [row for _, row in zip(range(n), csv.reader(f), strict=False)]
    return [f"{title} {description}" for _, title, description in rows]


def _bbc(data_dir: Path) -> list[str]:
    with (data_dir / "bbc" / "bbc-text.csv").open(newline="", encoding="utf-8") as f:
        return [row["text"] for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def short_texts(data_dir: Path) -> list[str]:
    """400 AG News test snippets (about 27 ids each after stopwords) and some edge cases."""
    return [*_ag_news_test(data_dir, 400), "", "the of and", "Reuters"]


@pytest.fixture(scope="module")
def long_texts(data_dir: Path) -> list[str]:
    """BBC News articles: 150 from the file, the 10 longest and 10 shortest included."""
    texts = _bbc(data_dir)
    by_length = sorted(texts, key=len)
    return texts[:150] + by_length[:10] + by_length[-10:]


@pytest.fixture(scope="module")
def bundle(bbc_bundle: Path) -> Any:
    """The BBC test bundle, loaded once: its engine compiles each batch shape once."""
    return load_bundle(bbc_bundle)


def _reference(model: Any, pipeline: TextPipeline, texts: list[str]) -> np.ndarray:
    """Plain Keras ``model.predict`` on the full-length padded matrix."""
    return np.asarray(model.predict(pipeline.encode(texts), batch_size=64, verbose=0))


def _assert_same(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.shape == expected.shape
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


def _spread_weights(model: Any, seed: int) -> None:
    """Replace the initial weights with larger random ones so outputs depend on the input
    (freshly initialised models predict nearly uniform probabilities, a weak test)."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        shape = tuple(weight.shape)
        weight.assign(rng.normal(0.0, 0.6, size=shape).astype(np.float32))


def _tiny(
    texts: list[str], padding: str, architecture: str, units: tuple[int, ...], mask: bool = True
) -> tuple[Any, TextPipeline]:
    sequence = SequenceConfig(max_len=80, padding=padding, truncating=padding)
    pipeline = TextPipeline.fit(texts, TextConfig(), sequence, num_words=2000)
    network = NetworkConfig(
        architecture=architecture,
        embedding_dim=16,
        lstm_units=units,
        dense_units=12,
        mask_padding=mask,
    )
    model = build_model(network, 2000, 4, sequence.max_len)
    _spread_weights(model, seed=len(units) * 10 + len(padding))
    return model, pipeline


# ----------------------------------------------------------------------------- the bundle


def test_bundle_engine_matches_model_predict_on_bbc_articles(
    bundle: Any, long_texts: list[str]
) -> None:
    assert bundle.engine.path == "fused", bundle.engine.fallback_reasons
    expected = _reference(bundle.model, bundle.pipeline, long_texts)
    got = bundle.predict_proba(long_texts)
    _assert_same(got, expected)
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)


def test_bundle_engine_matches_model_predict_on_short_news(
    bundle: Any, short_texts: list[str]
) -> None:
    before = bundle.engine.stats.as_dict()
    _assert_same(
        bundle.predict_proba(short_texts), _reference(bundle.model, bundle.pipeline, short_texts)
    )
    after = bundle.engine.stats.as_dict()
    rows = after["rows"] - before["rows"]
    real = after["real_tokens"] - before["real_tokens"]
    computed = after["computed_tokens"] - before["computed_tokens"]
    assert rows == len(short_texts)
    assert real <= computed
    # short snippets padded to max_len would waste most of the compute; trimmed, little
    assert computed < 0.5 * rows * bundle.pipeline.sequence.max_len


def test_predict_ids_drops_padding_on_either_side(bundle: Any, short_texts: list[str]) -> None:
    post = bundle.pipeline.encode(short_texts)
    expected = np.asarray(bundle.model.predict(post, verbose=0))
    pre = np.zeros_like(post)
    for row, ids in enumerate(post):
        real = ids[ids != 0]
        pre[row, len(ids) - len(real) :] = real
    _assert_same(bundle.predict_ids(post), expected)
    _assert_same(bundle.predict_ids(pre), expected)
    assert bundle.predict_ids(post[:0]).shape == (0, len(bundle.labels))
    with pytest.raises(ValueError, match="ids must lie in"):
        bundle.predict_ids(np.full((1, 3), 10**6, dtype=np.int32))


def test_batch_composition_and_order_do_not_change_a_row(
    bundle: Any, short_texts: list[str], long_texts: list[str]
) -> None:
    mixed = [t for pair in zip(short_texts, long_texts, strict=False) for t in pair]
    together = bundle.predict_proba(mixed)
    one_by_one = np.concatenate([bundle.predict_proba([t]) for t in mixed[:20]])
    np.testing.assert_allclose(together[:20], one_by_one, rtol=0, atol=TOLERANCE)
    reversed_rows = bundle.predict_proba(mixed[::-1])[::-1]
    np.testing.assert_allclose(together, reversed_rows, rtol=0, atol=TOLERANCE)
    assert bundle.predict_proba([]).shape == (0, len(bundle.labels))


def test_concurrent_callers_get_their_own_rows(bundle: Any, short_texts: list[str]) -> None:
    expected = bundle.predict_proba(short_texts)
    results: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        results[i] = bundle.predict_proba(short_texts[i::3])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(3):
        np.testing.assert_allclose(results[i], expected[i::3], rtol=0, atol=TOLERANCE)


def test_top_k_orders_by_probability_and_keeps_ties_in_label_order(bundle: Any) -> None:
    row = np.array([[0.1, 0.3, 0.3, 0.2, 0.1]], dtype=np.float32)
    labels = bundle.labels
    expected = [(labels[1], 0.3), (labels[2], 0.3), (labels[3], 0.2)]
    (single,) = bundle.top_k(row, 3)
    assert [lbl for lbl, _ in single] == [lbl for lbl, _ in expected]
    assert bundle.top_k(np.repeat(row, 2, axis=0), 3) == [single, single]
    assert len(bundle.top_k(row, 99)[0]) == len(labels)


# ----------------------------------------------------------------------------- other networks


@pytest.mark.parametrize(
    ("padding", "architecture", "units"),
    [
        ("pre", "bilstm", (12,)),
        ("post", "lstm", (12,)),
        ("pre", "stacked-bilstm", (12, 8)),
        ("post", "stacked-lstm", (8, 8)),
    ],
)
def test_fused_path_matches_keras_for_each_architecture(
    short_texts: list[str],
    long_texts: list[str],
    padding: str,
    architecture: str,
    units: tuple[int, ...],
) -> None:
    model, pipeline = _tiny(short_texts[:300], padding, architecture, units)
    engine = InferenceEngine(model, pipeline)
    try:
        assert engine.path == "fused", engine.fallback_reasons
        texts = short_texts[:120] + long_texts[:40]
        expected = _reference(model, pipeline, texts)
        assert expected.std(axis=0).max() > 0.02, "the test model must not predict a constant"
        _assert_same(engine.predict_proba(texts), expected)
    finally:
        engine.close()


def test_unmasked_model_runs_full_length(short_texts: list[str]) -> None:
    model, pipeline = _tiny(short_texts[:300], "post", "bilstm", (8,), mask=False)
    engine = InferenceEngine(model, pipeline)
    try:
        assert engine.path == "keras-full"
        texts = short_texts[:50]
        _assert_same(engine.predict_proba(texts), _reference(model, pipeline, texts))
    finally:
        engine.close()


def test_a_failed_self_check_falls_back_to_full_length(short_texts: list[str]) -> None:
    model, pipeline = _tiny(short_texts[:300], "post", "bilstm", (8,))
    engine = InferenceEngine(model, pipeline, EngineConfig(tolerance=-1.0))
    try:
        assert engine.path == "keras-full"
        assert any("differs" in reason for reason in engine.fallback_reasons)
    finally:
        engine.close()


def test_unknown_layers_use_the_trimmed_keras_path(short_texts: list[str]) -> None:
    import keras

    inputs = keras.Input(shape=(None,), dtype="int32")
    x = keras.layers.Embedding(2000, 16, mask_zero=True, name="embedding")(inputs)
    x = keras.layers.LSTM(8, return_sequences=True)(x)
    x = keras.layers.GlobalAveragePooling1D()(x)  # mask-aware mean: trimming is still exact
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))
    _spread_weights(model, seed=3)
    pipeline = TextPipeline.fit(short_texts[:300], TextConfig(), SequenceConfig(max_len=80), 2000)
    engine = InferenceEngine(model, pipeline)
    try:
        assert engine.path == "keras-trimmed"
        with pytest.raises(Exception, match="GlobalAveragePooling1D"):
            extract_network(model)
        texts = short_texts[:80]
        _assert_same(engine.predict_proba(texts), _reference(model, pipeline, texts))
    finally:
        engine.close()


# ----------------------------------------------------------------------------- planning


def test_plan_covers_every_row_once_longest_first() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 200, size=300).astype(np.int32)
    chunks = plan_chunks(lengths, (8, 16, 32, 64, 128, 256), 150.0, 6.0, 1.1)
    rows = np.concatenate([c.rows for c in chunks])
    assert sorted(rows.tolist()) == list(range(300))
    for chunk in chunks:
        assert chunk.bucket in (8, 16, 32, 64, 128, 256)
        assert 0 < len(chunk.rows) <= chunk.bucket
        assert chunk.steps == max(1, int(lengths[chunk.rows].max()))
    steps = [c.steps for c in chunks]
    assert steps == sorted(steps, reverse=True)
    # sorting + cutting computes far fewer steps than one batch at the longest length
    assert sum(c.bucket * c.steps for c in chunks) < 0.75 * 300 * int(lengths.max())
    assert plan_chunks(np.zeros(0, dtype=np.int32), (8,), 1.0, 1.0, 1.0) == []


def test_plan_respects_the_largest_bucket() -> None:
    lengths = np.full(256, 30, dtype=np.int32)
    chunks = plan_chunks(lengths, (8, 16, 32, 64, 128, 256), 150.0, 6.0, 1.1, max_bucket=128)
    assert [c.bucket for c in chunks] == [128, 128]
