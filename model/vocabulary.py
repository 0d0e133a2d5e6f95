"""Word vocabulary with a size cap and an out-of-vocabulary (OOV) token.

Index conventions follow ``keras.preprocessing.text.Tokenizer`` (the seeds' tokenizer):
index 0 is reserved for padding, index 1 is the OOV token, then words by descending
frequency in the training texts, ties broken by first occurrence. ``num_words`` counts all
indices including 0 and 1, so the embedding layer's ``input_dim`` is ``num_words``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

PAD_INDEX = 0
OOV_INDEX = 1


class Vocabulary:
    """Maps tokens to integer ids in ``[0, size)``; unknown or rare tokens map to ``OOV_INDEX``.

    Args:
        words: Vocabulary words in index order, starting at index 2 (no padding/OOV entries).
        oov_token: The OOV token's text (stored for inspection, e.g. ``"<OOV>"``).

    Raises:
        ValueError: if ``words`` has duplicates or contains ``oov_token``.
    """

    def __init__(self, words: Sequence[str], oov_token: str = "<OOV>") -> None:
        self.oov_token = oov_token
        self.words: tuple[str, ...] = tuple(words)
        self._index = {w: i for i, w in enumerate(self.words, start=2)}
        if len(self._index) != len(self.words):
            raise ValueError("vocabulary words must be unique")
        if oov_token in self._index:
            raise ValueError(f"the OOV token {oov_token!r} is also a vocabulary word")

    @classmethod
    def fit(
        cls, token_lists: Iterable[Sequence[str]], num_words: int, oov_token: str = "<OOV>"
    ) -> Vocabulary:
        """Build a vocabulary of the ``num_words - 2`` most frequent tokens.

        Args:
            token_lists: Tokenised training texts.
            num_words: Total number of ids, padding and OOV included (the seeds use 5,000).

        Raises:
            ValueError: if ``num_words < 3``.
        """
        if num_words < 3:
            raise ValueError(
                f"num_words must be at least 3 (padding, OOV, one word), got {num_words}"
            )
        counts: Counter[str] = Counter()
        for tokens in token_lists:
            counts.update(tokens)
        counts.pop(oov_token, None)
        ranked = sorted(counts.items(), key=lambda item: -item[1])  # stable: first seen wins ties
        return cls([w for w, _ in ranked[: num_words - 2]], oov_token=oov_token)

    @property
    def size(self) -> int:
        """Number of ids in use, padding and OOV included (``<= num_words`` of :meth:`fit`)."""
        return len(self.words) + 2

    def index(self, token: str) -> int:
        """Id of ``token``; ``OOV_INDEX`` when it is not in the vocabulary."""
        return self._index.get(token, OOV_INDEX)

    def encode(self, tokens: Iterable[str], drop: Collection[str] = ()) -> list[int]:
        """Ids of ``tokens`` in order (never ``PAD_INDEX``), skipping those in ``drop``.

        ``drop`` lets the serving path remove stopwords and look up ids in one pass.
        """
        get = self._index.get
        if drop:
            return [get(t, OOV_INDEX) for t in tokens if t not in drop]
        return [get(t, OOV_INDEX) for t in tokens]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (see :meth:`from_dict`)."""
        return {"oov_token": self.oov_token, "words": list(self.words)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vocabulary:
        """Inverse of :meth:`to_dict`.

        Raises:
            KeyError, TypeError, ValueError: on a malformed mapping.
        """
        words = data["words"]
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise TypeError("vocabulary 'words' must be a list of strings")
        return cls(words, oov_token=str(data["oov_token"]))

    def save(self, path: Path) -> None:
        """Write the vocabulary as UTF-8 JSON to ``path``."""
        path.write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        """Read a vocabulary written by :meth:`save`."""
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def __len__(self) -> int:
        return self.size

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Vocabulary)
            and self.words == other.words
            and self.oov_token == other.oov_token
        )

    __hash__ = None  # type: ignore[assignment]
