from model.stopwords import NLTK_ENGLISH_STOPWORDS
from model.text import TextConfig, normalise, tokenise


def test_normalise_lowercases_and_applies_cleanup_rules() -> None:
    raw = "Visit https://example.com/x?y=1 or WWW.Foo.org -- mail Jo.Doe+news@bbc.co.uk  now"
    assert normalise(raw, TextConfig()) == "visit or mail now"


def test_digits_to_zero_is_optional() -> None:
    assert normalise("Profits rose 12% in 2004", TextConfig()) == "profits rose 12% in 2004"
    assert normalise("Profits rose 12% in 2004", TextConfig(digits_to_zero=True)) == (
        "profits rose 00% in 0000"
    )


def test_tokenise_splits_on_keras_filters_and_keeps_apostrophes() -> None:
    config = TextConfig(remove_stopwords=False)
    assert tokenise("U.K. firm's (shares) fell: 5%!", config) == [
        "u",
        "k",
        "firm's",
        "shares",
        "fell",
        "5",
    ]


def test_stopwords_removed_including_contractions() -> None:
    tokens = tokenise("The firm didn't say why it is selling its shares", TextConfig())
    assert tokens == ["firm", "say", "selling", "shares"]


def test_stopwords_kept_when_disabled() -> None:
    assert tokenise("The firm", TextConfig(remove_stopwords=False)) == ["the", "firm"]


def test_nltk_list_is_the_179_word_english_list() -> None:
    assert len(NLTK_ENGLISH_STOPWORDS) == 179
    assert {"the", "won't", "mightn", "should've", "ourselves"} <= NLTK_ENGLISH_STOPWORDS
    assert "firm" not in NLTK_ENGLISH_STOPWORDS


def test_no_lowercase_keeps_case_and_case_sensitive_stopwords() -> None:
    assert tokenise("The Firm", TextConfig(lowercase=False)) == ["The", "Firm"]
