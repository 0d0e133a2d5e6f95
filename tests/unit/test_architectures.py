"""Each architecture and head builds, trains one step on real text, and ignores padding."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model import load_bundle, save_bundle
from model.network import NetworkConfig, build_model
from model.pipeline import TextPipeline
from model.sequences import SequenceConfig
from model.text import TextConfig
from training.data import TextDataset, load_csv, stratified_subsample
from training.fit import FitConfig, TrainingConfig, fit

pytestmark = pytest.mark.filterwarnings(
    "ignore:Layer 'max_pool' \\(of type GlobalMaxPooling1D\\):UserWarning"
)

ARCHITECTURES = [
    ("lstm", (8,), "last"),
    ("bilstm", (8,), "last"),
    ("stacked-lstm", (8, 6), "last"),
    ("stacked-bilstm", (8, 6, 4), "last"),  # three layers, like the seed's 50,60,75
    ("bilstm", (8,), "max"),
    ("bilstm", (8,), "mean"),
    ("stacked-bilstm", (8, 6), "max"),
    ("lstm", (8,), "max"),
]


@pytest.fixture(scope="module")
def bbc_small(bbc_csv: Path) -> TextDataset:
    data = load_csv(bbc_csv, "text", "category")
    return data.subset(stratified_subsample(data.labels, 150, seed=0))


@pytest.fixture(scope="module")
def encoded(bbc_small: TextDataset) -> tuple[TextPipeline, np.ndarray, np.ndarray]:
    pipeline = TextPipeline.fit(bbc_small.texts, TextConfig(), SequenceConfig(max_len=24), 800)
    labels = sorted(set(bbc_small.labels))
    y = np.array([labels.index(label) for label in bbc_small.labels])
    return pipeline, pipeline.encode(bbc_small.texts), y


@pytest.mark.parametrize(("architecture", "units", "pooling"), ARCHITECTURES)
def test_builds_and_trains_one_step(
    architecture: str,
    units: tuple[int, ...],
    pooling: str,
    encoded: tuple[TextPipeline, np.ndarray, np.ndarray],
) -> None:
    import keras

    keras.utils.set_random_seed(0)
    _, x, y = encoded
    config = NetworkConfig.model_validate(
        {"architecture": architecture, "lstm_units": units, "pooling": pooling,
         "embedding_dim": 8, "dense_units": 8, "spatial_dropout": 0.1, "head_dropout": 0.1}
    )  # fmt: skip
    model = build_model(config, vocab_size=800, num_classes=5, max_len=24)
    recurrent = [layer for layer in model.layers if "lstm" in layer.name and "dropout" not in
                 layer.name]  # fmt: skip
    assert len(recurrent) == len(units)
    assert any(layer.name.startswith("bilstm") for layer in recurrent) == ("bilstm" in architecture)
    # eager: one step does not pay for tracing a graph (seconds per model on 2 cores)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", run_eagerly=True)
    before = [w.copy() for w in model.get_weights()]
    loss = float(model.train_on_batch(x[:32], y[:32]))
    assert np.isfinite(loss)
    assert loss == pytest.approx(np.log(5), rel=0.2)  # untrained: close to uniform
    changed = [not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True)]
    assert all(changed), "every weight tensor must receive a gradient"
    probabilities = keras.ops.convert_to_numpy(model(x[:4], training=False))
    assert probabilities.shape == (4, 5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("pooling", ["last", "max", "mean"])
@pytest.mark.parametrize("architecture", ["lstm", "stacked-bilstm"])
def test_padding_does_not_change_predictions(
    pooling: str, architecture: str, encoded: tuple[TextPipeline, np.ndarray, np.ndarray]
) -> None:
    import keras

    keras.utils.set_random_seed(1)
    pipeline, _, _ = encoded
    units = (8,) if architecture == "lstm" else (8, 6)
    config = NetworkConfig.model_validate(
        {"architecture": architecture, "lstm_units": units, "pooling": pooling,
         "embedding_dim": 8, "dense_units": 8}
    )  # fmt: skip
    model = build_model(config, vocab_size=800, num_classes=5, max_len=24)
    ids = pipeline.token_ids("chelsea won the league after a late goal at stamford bridge")
    assert len(ids) > 3
    bare = np.array([ids], dtype=np.int32)
    post = np.array([ids + [0] * 9], dtype=np.int32)
    pre = np.array([[0] * 4 + ids], dtype=np.int32)
    expected = keras.ops.convert_to_numpy(model(bare, training=False))
    for padded in (post, pre):
        got = keras.ops.convert_to_numpy(model(padded, training=False))
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    unmasked = build_model(config.model_copy(update={"mask_padding": False}), 800, 5, 24)
    unmasked.set_weights(model.get_weights())
    assert not np.allclose(  # without the mask the padding does change the output
        keras.ops.convert_to_numpy(unmasked(pre, training=False)), expected, atol=1e-6
    )


def test_pooled_bundle_loads_without_custom_objects(
    encoded: tuple[TextPipeline, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    """The consumer loads bundles with plain ``keras.saving.load_model``: built-ins only."""
    pipeline, x, _ = encoded
    config = NetworkConfig(pooling="max", embedding_dim=8, lstm_units=(8,), dense_units=8)
    model = build_model(config, 800, 5, 24)
    labels = ["business", "entertainment", "politics", "sport", "tech"]
    save_bundle(tmp_path, model, pipeline, labels, config, 800, {"accuracy": 0.0})
    bundle = load_bundle(tmp_path)
    assert bundle.manifest.network.pooling == "max"
    np.testing.assert_allclose(
        bundle.predict_ids(x[:8]), np.asarray(model(x[:8], training=False)), atol=1e-5
    )


@pytest.mark.parametrize("bucket_by_length", [False, True])
def test_runs_with_the_same_seed_are_identical(
    bbc_small: TextDataset, tmp_path: Path, bucket_by_length: bool
) -> None:
    def run(out: Path) -> dict[str, Any]:
        config = FitConfig(
            text=TextConfig(),
            sequence=SequenceConfig(max_len=24),
            network=NetworkConfig(embedding_dim=8, lstm_units=(8,), dense_units=8),
            num_words=800,
            training=TrainingConfig(
                epochs=2, batch_size=32, seed=7, bucket_by_length=bucket_by_length
            ),
            baseline=False,
        )
        result = fit(bbc_small, out, config, verbose=0)
        return {k: result.metrics[k] for k in ("history", "accuracy", "confusion_matrix")}

    first, second = run(tmp_path / "a"), run(tmp_path / "b")
    assert first == second
    assert first["history"]["loss"][0] != first["history"]["loss"][1]  # it did train
