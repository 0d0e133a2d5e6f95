"""Text normalisation and tokenisation shared by training and serving.

The defaults reproduce the preprocessing of the Keras tutorials this project grew from:
lower-casing, the customer-service seed's regex clean-up (URLs and e-mail addresses
removed, runs of dashes and whitespace collapsed, optionally digits → ``0``), splitting
on whitespace after replacing the punctuation that ``keras.preprocessing.text.Tokenizer``
filters by default, and removal of NLTK's English stopwords.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict

from model.stopwords import NLTK_ENGLISH_STOPWORDS

#: Characters removed by ``keras.preprocessing.text.Tokenizer`` (its ``filters`` default).
#: The apostrophe is kept, so "don't" stays one token and matches the stopword list.
KERAS_TOKENIZER_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'

_URL = re.compile(r"(?:https?://|ftp://|www\.)\S+", re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_DIGIT = re.compile(r"\d")
_DASHES = re.compile(r"-{2,}")
_WHITESPACE = re.compile(r"\s+")
_FILTER_TABLE = str.maketrans(dict.fromkeys(KERAS_TOKENIZER_FILTERS, " "))


class TextConfig(BaseModel):
    """How raw text becomes tokens. Stored in every bundle, so serving matches training.

    Attributes:
        lowercase: Lower-case before anything else.
        strip_urls: Replace ``http(s)://…``, ``ftp://…`` and ``www.…`` with a space.
        strip_emails: Replace e-mail addresses with a space.
        digits_to_zero: Replace every digit with ``0`` (so "2004" and "1999" share a token).
        collapse_dashes: Replace runs of two or more dashes with one space.
        remove_stopwords: Drop tokens in NLTK's English stopword list.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    lowercase: bool = True
    strip_urls: bool = True
    strip_emails: bool = True
    digits_to_zero: bool = False
    collapse_dashes: bool = True
    remove_stopwords: bool = True


def normalise(text: str, config: TextConfig) -> str:
    """Apply lower-casing and the regex clean-up rules of ``config`` to one text.

    Returns the cleaned text with single spaces between words (punctuation kept).
    """
    if config.lowercase:
        text = text.lower()
    if config.strip_urls:
        text = _URL.sub(" ", text)
    if config.strip_emails:
        text = _EMAIL.sub(" ", text)
    if config.digits_to_zero:
        text = _DIGIT.sub("0", text)
    if config.collapse_dashes:
        text = _DASHES.sub(" ", text)
    return _WHITESPACE.sub(" ", text).strip()


def tokenise(text: str, config: TextConfig) -> list[str]:
    """Normalise ``text``, split it into tokens and drop stopwords when configured.

    Splitting follows ``keras.preprocessing.text.text_to_word_sequence``: every character
    of :data:`KERAS_TOKENIZER_FILTERS` becomes a space, then the text is split on whitespace.
    """
    tokens = normalise(text, config).translate(_FILTER_TABLE).split()
    if config.remove_stopwords:
        return [t for t in tokens if t not in NLTK_ENGLISH_STOPWORDS]
    return tokens


def tokenise_many(texts: Iterable[str], config: TextConfig) -> list[list[str]]:
    """Tokenise each text of ``texts`` (see :func:`tokenise`)."""
    return [tokenise(t, config) for t in texts]
