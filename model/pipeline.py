"""Text → ``(batch, max_len) int32`` ids: the one preprocessing path of training and serving."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from model.sequences import SequenceConfig, pad_sequences
from model.text import TextConfig, split_words, stopwords, tokenise_many
from model.vocabulary import Vocabulary


class TextPipeline:
    """Normalise → tokenise → drop stopwords → vocabulary ids → pad/truncate.

    Args:
        text: Normalisation and tokenisation options.
        sequence: Fixed length and padding/truncation sides.
        vocabulary: Token → id mapping fitted on the training texts.
    """

    def __init__(self, text: TextConfig, sequence: SequenceConfig, vocabulary: Vocabulary) -> None:
        self.text = text
        self.sequence = sequence
        self.vocabulary = vocabulary
        self._stopwords = stopwords(text)

    @classmethod
    def fit(
        cls,
        texts: Sequence[str],
        text: TextConfig,
        sequence: SequenceConfig,
        num_words: int,
        oov_token: str = "<OOV>",
    ) -> TextPipeline:
        """Fit the vocabulary on ``texts`` (training texts only, never test texts)."""
        vocabulary = Vocabulary.fit(tokenise_many(texts, text), num_words, oov_token)
        return cls(text, sequence, vocabulary)

    def token_ids(self, text: str) -> list[int]:
        """Vocabulary ids of one text, before padding/truncation (may be empty).

        Equal to ``vocabulary.encode(tokenise(text, config))``, with the stopwords dropped
        during the id lookup (one pass; this is the serving hot path).
        """
        return self.vocabulary.encode(split_words(text, self.text), drop=self._stopwords)

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.int32]:
        """Encode texts into a ``(batch, max_len) int32`` matrix; 0 is padding."""
        return pad_sequences([self.token_ids(t) for t in texts], self.sequence)
