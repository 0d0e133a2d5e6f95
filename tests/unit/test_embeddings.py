"""Initial word vectors: text files, word2vec on the fitting rows, and their use by fit."""

from pathlib import Path

import numpy as np
import pytest

from model.network import NetworkConfig
from model.sequences import SequenceConfig
from model.text import TextConfig
from model.vocabulary import Vocabulary
from training.data import TextDataset, load_csv, stratified_subsample
from training.embeddings import embedding_matrix, load_word_vectors, train_word2vec
from training.fit import FitConfig, TrainingConfig, fit


@pytest.fixture(scope="module")
def bbc_small(bbc_csv: Path) -> TextDataset:
    data = load_csv(bbc_csv, "text", "category")
    return data.subset(stratified_subsample(data.labels, 150, seed=0))


def test_reads_glove_and_word2vec_text_files(tmp_path: Path) -> None:
    glove = tmp_path / "glove.txt"
    glove.write_text("market 0.5 -1 2\nfootball 1 2 3\nmarket 9 9 9\n", encoding="utf-8")
    word2vec = tmp_path / "w2v.txt"
    word2vec.write_text("2 3\nmarket 0.5 -1 2\nfootball 1 2 3\n", encoding="utf-8")
    for path in (glove, word2vec):
        vectors = load_word_vectors(path, 3)
        assert sorted(vectors) == ["football", "market"]
        np.testing.assert_array_equal(vectors["market"], [0.5, -1.0, 2.0])  # first one wins


def test_a_vector_of_the_wrong_width_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "glove.txt"
    path.write_text("market 1 2 3\nfootball 1 2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"glove.txt:2: expected a word and 3 numbers"):
        load_word_vectors(path, 3)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_word_vectors(tmp_path / "missing.txt", 3)


def test_matrix_rows_follow_the_vocabulary_ids() -> None:
    vocabulary = Vocabulary(["market", "football", "shares"])  # ids 2, 3, 4
    vectors = {"football": np.full(4, 7.0, np.float32), "unused": np.ones(4, np.float32)}
    init = embedding_matrix(vocabulary, vectors, rows=8, dim=4, seed=0, source="test")
    assert init.matrix.shape == (8, 4)
    np.testing.assert_array_equal(init.matrix[0], 0.0)  # padding
    np.testing.assert_array_equal(init.matrix[3], 7.0)  # football
    assert np.all(np.abs(init.matrix[[1, 2, 4, 5]]) <= 0.05)  # OOV, no vector, unused rows
    assert (init.covered, init.words) == (1, 3)


def test_word2vec_is_seeded_and_covers_frequent_words(bbc_small: TextDataset) -> None:
    from model.text import tokenise_many

    documents = tokenise_many(bbc_small.texts, TextConfig())
    first = train_word2vec(documents, 16, seed=3, epochs=2)
    assert first.keys() == train_word2vec(documents, 16, seed=3, epochs=2).keys()
    np.testing.assert_array_equal(
        first["said"], train_word2vec(documents, 16, seed=3, epochs=2)["said"]
    )
    assert {"government", "market", "film"} <= first.keys()
    assert first["said"].shape == (16,)


def test_fit_starts_from_the_file_and_can_freeze_it(bbc_small: TextDataset, tmp_path: Path) -> None:
    import keras

    from model import load_bundle

    words = ["said", "market", "film", "government"]
    rng = np.random.default_rng(0)
    vectors = {w: rng.normal(size=8).round(3).astype(np.float32) for w in words}
    path = tmp_path / "vectors.txt"
    path.write_text(
        "".join(f"{w} {' '.join(str(v) for v in vec)}\n" for w, vec in vectors.items()),
        encoding="utf-8",
    )
    config = FitConfig(
        text=TextConfig(),
        sequence=SequenceConfig(max_len=24),
        network=NetworkConfig(embedding_dim=8, lstm_units=(8,), dense_units=8),
        num_words=800,
        training=TrainingConfig(
            epochs=1, batch_size=32, embeddings=str(path), freeze_embeddings=True
        ),
        baseline=False,
    )
    result = fit(bbc_small, tmp_path / "bundle", config, verbose=0)
    assert result.metrics["embeddings"]["covered"] == 4
    report = (result.bundle_dir / "report.md").read_text(encoding="utf-8")
    assert f"Embedding initialised from {path} (frozen): 4 of " in report
    bundle = load_bundle(tmp_path / "bundle")
    table = keras.ops.convert_to_numpy(bundle.model.get_layer("embedding").embeddings)
    for word, vector in vectors.items():  # frozen: still the file's vectors after training
        np.testing.assert_allclose(table[bundle.pipeline.vocabulary.index(word)], vector)


def test_a_bad_vector_file_stops_the_command_before_loading_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.fit import main

    missing = tmp_path / "glove.6B.100d.txt"
    args = ["--dataset", "bbc", "--data-dir", str(tmp_path), "--output", str(tmp_path / "out")]
    assert main([*args, "--embeddings", str(missing)]) == 2
    assert f"word vector file {missing} does not exist" in capsys.readouterr().err
    missing.write_text("market 1 2 3\n", encoding="utf-8")
    assert main([*args, "--embeddings", str(missing), "--embedding-dim", "100"]) == 2
    assert "expected a word and 100 numbers" in capsys.readouterr().err
