from pathlib import Path

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


def _reference_tokens(text: str, config: TextConfig) -> list[str]:
    """Tokens by the documented definition, every rule applied unconditionally.

    Clean up, replace the Keras filters, split, drop stopwords; independent of the
    prefilters under test.
    """
    import re
    import unicodedata

    from model.text import KERAS_TOKENIZER_FILTERS

    if config.unicode_nfkc:
        text = unicodedata.normalize("NFKC", text)
    if config.lowercase:
        text = text.lower()
    if config.strip_urls:
        text = re.sub(r"(?:https?://|ftp://|www\.)\S+", " ", text, flags=re.IGNORECASE)
    if config.strip_emails:
        text = re.sub(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", " ", text)
    if config.digits_to_zero:
        text = re.sub(r"\d", "0", text)
    if config.collapse_dashes:
        text = re.sub(r"-{2,}", " ", text)
    table = str.maketrans(dict.fromkeys(KERAS_TOKENIZER_FILTERS, " "))
    tokens = text.translate(table).split()
    if config.remove_stopwords:
        tokens = [t for t in tokens if t not in NLTK_ENGLISH_STOPWORDS]
    return tokens


_CONFIGS = [
    TextConfig(),
    TextConfig(lowercase=False),
    TextConfig(digits_to_zero=True, collapse_dashes=False, remove_stopwords=False),
    TextConfig(strip_urls=False, strip_emails=False, unicode_nfkc=True),
]


def test_fast_tokenise_equals_the_documented_definition_on_real_text(bbc_csv: Path) -> None:
    """The serving hot path skips redundant steps; the tokens must stay exactly the same."""
    import csv

    with bbc_csv.open(encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)][:300]
    texts += [
        "Mail Bob@Example.COM or see HTTPS://Example.com/x?y=1 -- and WWW.bbc.co.uk/news now",
        "costs £2,004.50 -- up 3%--from\t\n1999's high; ftp://host/file.txt e-mail a.b+c@d-e.org",
        "".join(c if c == " " else chr(ord(c) + 0xFEE0) for c in "Full-width WWW.example.com @"),
        "",
        "   ---   ",
        "lone surrogate \ud800 from JSON, £5 — naïve café, 東京 (news)",
    ]
    for config in _CONFIGS:
        for text in texts:
            assert tokenise(text, config) == _reference_tokens(text, config), (config, text)


def test_serving_token_ids_equal_encoding_the_tokens(bbc_csv: Path) -> None:
    """``TextPipeline.token_ids`` (one-pass stopword drop + lookup) matches encode(tokenise())."""
    import csv

    from model.pipeline import TextPipeline
    from model.sequences import SequenceConfig

    with bbc_csv.open(encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)][:300]
    texts += ["Ünïcödé café -- naïve résumé", "the and of", ""]
    for config in _CONFIGS:
        pipeline = TextPipeline.fit(texts[:200], config, SequenceConfig(), num_words=2000)
        for text in texts:
            expected = pipeline.vocabulary.encode(tokenise(text, config))
            assert pipeline.token_ids(text) == expected, (config, text)
