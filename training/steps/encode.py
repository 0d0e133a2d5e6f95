"""Step 2: tokenise the texts, fit the vocabulary on the fitting rows, pad the sequences."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from model.pipeline import TextPipeline
from model.sequences import pad_sequences
from model.text import tokenise_many
from model.vocabulary import Vocabulary
from training.config import FitConfig
from training.splits import Split

Tokens = list[list[str]]


@dataclass(frozen=True)
class EncodedData:
    """The texts as tokens and as padded id sequences.

    Attributes:
        pipeline: The fitted preprocessing (text rules, sequence length, vocabulary) that
            the bundle serves with.
        train_tokens: Tokens of every training row (fit + validation), in split order.
        test_tokens: Tokens of every held-out row.
        fit_tokens: Tokens of the fitting rows only (the vocabulary's and word2vec's input).
        x_train: ``(len(train_tokens), max_len) int32`` padded ids (0 = padding).
        x_test: ``(len(test_tokens), max_len) int32`` padded ids.
        seconds: Wall time of this step (s).
    """

    pipeline: TextPipeline
    train_tokens: Tokens
    test_tokens: Tokens
    fit_tokens: Tokens
    x_train: npt.NDArray[np.int32]
    x_test: npt.NDArray[np.int32]
    seconds: float

    def summary(self, split: Split) -> str:
        """One progress line: texts, time, vocabulary size and the rows of each split."""
        return (
            f"preprocessed {len(self.train_tokens) + len(self.test_tokens)} texts in "
            f"{self.seconds:.1f} s; vocabulary {self.pipeline.vocabulary.size} ids; "
            f"fit {len(split.fit_idx)}, validation {len(split.val_idx)}, "
            f"test {len(self.test_tokens)}"
        )


def encode_texts(split: Split, config: FitConfig) -> EncodedData:
    """Tokenise every row and encode it with a vocabulary fitted on the fitting rows only.

    Tokens follow ``config.text``; the vocabulary keeps ``config.num_words`` ids (padding
    and ``config.oov_token`` included) and never sees validation or test text; sequences
    are padded/truncated to ``config.sequence``.

    Raises:
        ImportError: ``tokenizer="fugashi"`` without the ``fugashi``/``unidic-lite`` packages.
    """
    started = time.perf_counter()
    train_tokens = tokenise_many(split.train.texts, config.text)
    test_tokens = tokenise_many(split.test.texts, config.text)
    fit_tokens = [train_tokens[i] for i in split.fit_idx]
    vocabulary = Vocabulary.fit(fit_tokens, config.num_words, config.oov_token)
    pipeline = TextPipeline(config.text, config.sequence, vocabulary)
    x_train = pad_sequences([vocabulary.encode(t) for t in train_tokens], config.sequence)
    x_test = pad_sequences([vocabulary.encode(t) for t in test_tokens], config.sequence)
    seconds = time.perf_counter() - started
    return EncodedData(pipeline, train_tokens, test_tokens, fit_tokens, x_train, x_test, seconds)
