"""Preprocessing options: each one changes tokens as documented and is recorded in the bundle."""

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from model.sequences import SequenceConfig, pad_sequences
from model.text import TextConfig, segment_japanese, tokenise
from model.vocabulary import OOV_INDEX, Vocabulary
from training.cli import parse_settings

LIVEDOOR_TITLE_FILE = "sports-watch/sports-watch-4597641.txt"


def _livedoor_title(data_dir: Path) -> str:
    return (data_dir / "japanese" / "text" / LIVEDOOR_TITLE_FILE).read_text("utf-8").split("\n")[2]


def test_japanese_segmentation_of_a_real_title(data_dir: Path) -> None:
    title = _livedoor_title(data_dir)
    assert title == "【Sports Watch】秋山成勲、メールで吉田に対戦迫った!?"
    config = TextConfig(tokenizer="fugashi", remove_stopwords=False, unicode_nfkc=True)
    assert tokenise(title, config) == [
        "sports", "watch", "秋山", "成勲", "メール", "で", "吉田", "に", "対戦", "迫っ", "た",
    ]  # fmt: skip
    # the whitespace tokenizer cannot split Japanese: the sentence stays a few long chunks
    assert tokenise(title, TextConfig(remove_stopwords=False)) == [
        "【sports", "watch】秋山成勲、メールで吉田に対戦迫った",
    ]  # fmt: skip


def test_japanese_content_words_only(data_dir: Path) -> None:
    config = TextConfig(tokenizer="fugashi", remove_stopwords=False, unicode_nfkc=True,
                        keep_pos=("名詞", "動詞", "形容詞"))  # fmt: skip
    assert tokenise(_livedoor_title(data_dir), config) == [
        "sports",
        "watch",
        "秋山",
        "成勲",
        "メール",
        "吉田",
        "対戦",
        "迫っ",
    ]  # the particles で, に and the auxiliary た are gone
    with pytest.raises(ValueError, match="keep_pos needs tokenizer='fugashi'"):
        TextConfig(keep_pos=("名詞",))


def test_segment_japanese_keeps_every_character_but_whitespace(data_dir: Path) -> None:
    title = _livedoor_title(data_dir)
    parts = segment_japanese(title)
    assert "".join(parts) == title.replace(" ", "")
    assert "、" in parts
    assert "、" not in segment_japanese(title, words_only=True)


def test_nfkc_turns_full_width_letters_and_digits_into_ascii() -> None:
    text = "ＩＴ２０１２年"
    ja = TextConfig(unicode_nfkc=True, tokenizer="fugashi", remove_stopwords=False)
    assert tokenise(text, ja) == ["it", "2012", "年"]
    no_nfkc = TextConfig(unicode_nfkc=False, tokenizer="fugashi", remove_stopwords=False)
    assert tokenise(text, no_nfkc) == ["ｉｔ", "２０１２", "年"]  # noqa: RUF001


def test_cleanup_rules_are_switchable() -> None:
    raw = "Mail jo@bbc.co.uk or see https://bbc.co.uk/x -- 2004 results"
    keep = TextConfig(remove_stopwords=False, strip_urls=False, strip_emails=False,
                      collapse_dashes=False)  # fmt: skip
    assert "bbc" in tokenise(raw, keep)
    default = tokenise(raw, TextConfig(remove_stopwords=False))
    assert default == ["mail", "or", "see", "2004", "results"]
    zero = tokenise(raw, TextConfig(remove_stopwords=False, digits_to_zero=True))
    assert zero == ["mail", "or", "see", "0000", "results"]


def test_padding_and_truncating_sides() -> None:
    ids = [[5, 6, 7, 8]]
    np.testing.assert_array_equal(
        pad_sequences(ids, SequenceConfig(max_len=6)), [[5, 6, 7, 8, 0, 0]]
    )
    np.testing.assert_array_equal(
        pad_sequences(ids, SequenceConfig(max_len=6, padding="pre")), [[0, 0, 5, 6, 7, 8]]
    )
    np.testing.assert_array_equal(pad_sequences(ids, SequenceConfig(max_len=3)), [[5, 6, 7]])
    np.testing.assert_array_equal(
        pad_sequences(ids, SequenceConfig(max_len=3, truncating="pre")), [[6, 7, 8]]
    )


def test_vocabulary_size_and_oov_token() -> None:
    vocab = Vocabulary.fit([["a", "a", "b", "c"]], num_words=3, oov_token="[UNK]")
    assert vocab.words == ("a",)
    assert vocab.oov_token == "[UNK]"
    assert vocab.encode(["a", "b"]) == [2, OOV_INDEX]


def test_bundles_written_before_the_new_options_still_load() -> None:
    old = {"lowercase": True, "strip_urls": True, "strip_emails": True,
           "digits_to_zero": False, "collapse_dashes": True, "remove_stopwords": True}  # fmt: skip
    config = TextConfig.model_validate(old)
    assert config.tokenizer == "keras"
    assert config.unicode_nfkc is False


def _configs(*argv: str) -> tuple[TextConfig, SequenceConfig]:
    config = parse_settings([*argv, "--output", "unused"]).fit_config()
    return config.text, config.sequence


def test_cli_language_presets() -> None:
    ja, _ = _configs("--dataset", "livedoor")
    assert (ja.tokenizer, ja.unicode_nfkc, ja.remove_stopwords) == ("fugashi", True, False)
    en, _ = _configs("--dataset", "bbc")
    assert (en.tokenizer, en.unicode_nfkc, en.remove_stopwords) == ("keras", False, True)
    forced, _ = _configs("--file", "x.csv", "--lang", "ja", "--remove-stopwords")
    assert (forced.tokenizer, forced.remove_stopwords) == ("fugashi", True)
    content, _ = _configs("--dataset", "livedoor", "--keep-pos", "名詞,動詞")
    assert content.keep_pos == ("名詞", "動詞")


def test_cli_preprocessing_flags_reach_the_configs() -> None:
    text, sequence = _configs(
        "--dataset", "bbc", "--keep-urls", "--keep-emails", "--keep-dashes", "--digits-to-zero",
        "--no-lowercase", "--keep-stopwords", "--max-len", "50", "--padding", "pre",
        "--truncating", "pre",
    )  # fmt: skip
    assert text == TextConfig(
        lowercase=False, strip_urls=False, strip_emails=False, digits_to_zero=True,
        collapse_dashes=False, remove_stopwords=False,
    )  # fmt: skip
    assert sequence == SequenceConfig(max_len=50, padding="pre", truncating="pre")


def test_unknown_newsgroup_part_is_rejected_by_the_cli() -> None:
    with pytest.raises(ValidationError):
        parse_settings(["--dataset", "20newsgroups", "--newsgroups-remove",
                        "signatures", "--output", "x"])  # fmt: skip
