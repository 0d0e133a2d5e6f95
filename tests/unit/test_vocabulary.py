from pathlib import Path

import numpy as np
import pytest

from model.pipeline import TextPipeline
from model.sequences import SequenceConfig, pad_sequences
from model.text import TextConfig
from model.vocabulary import OOV_INDEX, PAD_INDEX, Vocabulary


def test_fit_orders_by_frequency_then_first_occurrence_and_caps_size() -> None:
    vocab = Vocabulary.fit([["b", "a", "c"], ["a", "c", "d"], ["a"]], num_words=4)
    # counts: a=3, b=1, c=2, d=1 -> a, c (then b/d tie, b first) ; num_words=4 keeps 2 words
    assert vocab.words == ("a", "c")
    assert vocab.size == 4
    assert [vocab.index(w) for w in ["a", "c", "b", "zzz"]] == [2, 3, OOV_INDEX, OOV_INDEX]


def test_encode_maps_unknown_and_rare_words_to_oov_never_padding() -> None:
    vocab = Vocabulary.fit([["x", "x", "y"]], num_words=10)
    ids = vocab.encode(["x", "y", "never-seen"])
    assert ids == [2, 3, OOV_INDEX]
    assert PAD_INDEX not in ids


def test_oov_token_in_training_text_does_not_take_an_index() -> None:
    vocab = Vocabulary.fit([["<OOV>", "a"]], num_words=10)
    assert vocab.words == ("a",)


def test_fit_rejects_too_small_num_words() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        Vocabulary.fit([["a"]], num_words=2)


def test_save_load_round_trip(tmp_path: Path) -> None:
    vocab = Vocabulary.fit([["héllo", "wörld", "héllo"]], num_words=100, oov_token="[UNK]")
    vocab.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json") == vocab


SEQS = [[1, 2, 3, 4, 5], [7, 8], []]


@pytest.mark.parametrize(
    ("padding", "truncating", "expected"),
    [
        ("post", "post", [[1, 2, 3], [7, 8, 0], [0, 0, 0]]),
        ("pre", "post", [[1, 2, 3], [0, 7, 8], [0, 0, 0]]),
        ("post", "pre", [[3, 4, 5], [7, 8, 0], [0, 0, 0]]),
        ("pre", "pre", [[3, 4, 5], [0, 7, 8], [0, 0, 0]]),
    ],
)
def test_padding_and_truncation_sides(
    padding: str, truncating: str, expected: list[list[int]]
) -> None:
    config = SequenceConfig(max_len=3, padding=padding, truncating=truncating)
    out = pad_sequences(SEQS, config)
    assert out.dtype == np.int32
    assert out.tolist() == expected


@pytest.mark.parametrize("side", ["pre", "post"])
def test_pad_sequences_matches_keras(side: str) -> None:
    import keras

    rng = np.random.default_rng(0)
    seqs = [list(rng.integers(1, 50, size=n)) for n in rng.integers(0, 12, size=40)]
    config = SequenceConfig(max_len=7, padding=side, truncating=side)
    expected = keras.utils.pad_sequences(seqs, maxlen=7, padding=side, truncating=side, value=0)
    np.testing.assert_array_equal(pad_sequences(seqs, config), expected)


def test_pipeline_encodes_text_to_fixed_shape_ids() -> None:
    pipe = TextPipeline.fit(
        ["Shares rose sharply", "Shares fell", "The match was won"],
        TextConfig(),
        SequenceConfig(max_len=4),
        num_words=50,
    )
    ids = pipe.encode(["shares rose in the match yesterday", ""])
    assert ids.shape == (2, 4)
    assert ids.dtype == np.int32
    shares, rose, match = (pipe.vocabulary.index(w) for w in ("shares", "rose", "match"))
    assert ids[0].tolist() == [shares, rose, match, OOV_INDEX]  # "in", "the" are stopwords
    assert ids[1].tolist() == [0, 0, 0, 0]
