"""Initial word vectors for the embedding layer: pretrained files or word2vec on the training rows.

Small labelled corpora (BBC News: 1,780 training articles) leave most embedding rows with a
handful of gradient updates. Starting the embedding from word vectors that already place
related words together is the standard remedy: the keras-io example "Using pre-trained word
embeddings" loads GloVe into a 20 Newsgroups classifier the same way. Two sources:

* ``load_word_vectors``: a word2vec/GloVe **text** file (one ``word v1 v2 …`` line per word;
  an optional ``count dim`` header line), e.g. ``glove.6B.100d.txt``;
* ``train_word2vec``: skip-gram word2vec (gensim) on the **training rows only**, for offline
  use when no pretrained file is at hand (the test split never reaches it).

:func:`embedding_matrix` lays the vectors out in vocabulary id order for
``Embedding.set_weights``. On this project's data, word2vec on the training rows lifted the
BBC News BiLSTM from 0.951 to 0.964 (mean test accuracy of four seeds), and was about half of
the 20 Newsgroups gain from 0.774 to 0.839 (a wider network the other half; ``docs/results.md``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import numpy.typing as npt

from model.vocabulary import OOV_INDEX, PAD_INDEX, Vocabulary

FloatMatrix = npt.NDArray[np.float32]
#: The ``--embeddings`` value that trains word2vec on the fitting rows instead of reading a file.
WORD2VEC = "word2vec"


@dataclass(frozen=True)
class EmbeddingInit:
    """Embedding weights and how many vocabulary words had a vector.

    Attributes:
        matrix: ``(rows, dim) float32``: row ``i`` is the vector of id ``i``; padding
            row zero; words without a vector (and the OOV id) drawn from
            ``uniform(-0.05, 0.05)``, Keras' default embedding initialiser.
        covered: Vocabulary words (padding and OOV excluded) that had a vector.
        words: Vocabulary words (padding and OOV excluded).
        source: Where the vectors came from (a path, or word2vec on the fitting rows).
    """

    matrix: FloatMatrix
    covered: int
    words: int
    source: str

    @property
    def coverage(self) -> float:
        """``covered / words`` (0 for an empty vocabulary)."""
        return self.covered / self.words if self.words else 0.0


def check_vector_file(path: Path, dim: int) -> None:
    """Fail fast on a missing vector file or one of the wrong width (reads its first lines).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the first vector is not ``dim`` numbers wide.
    """
    with _open_vectors(path) as lines:
        _parse_lines(path, itertools.islice(lines, 2), dim)


def _open_vectors(path: Path) -> TextIO:
    if not path.is_file():
        raise FileNotFoundError(
            f"word vector file {path} does not exist: pass --embeddings {WORD2VEC}, or the path "
            "of a word2vec/GloVe text file"
        )
    return path.open(encoding="utf-8", errors="replace")


def _parse_lines(path: Path, lines: Iterable[str], dim: int) -> dict[str, FloatMatrix]:
    vectors: dict[str, FloatMatrix] = {}
    for number, line in enumerate(lines, start=1):
        parts = line.rstrip().split(" ")
        if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
            continue
        if len(parts) != dim + 1:
            raise ValueError(
                f"{path}:{number}: expected a word and {dim} numbers (the embedding "
                f"dimension), found {len(parts) - 1} numbers; pass --embedding-dim to match"
            )
        try:
            vector = np.asarray(parts[1:], dtype=np.float32)
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: {exc}") from exc
        vectors.setdefault(parts[0], vector)
    return vectors


def load_word_vectors(path: Path, dim: int) -> dict[str, FloatMatrix]:
    """Read a word2vec/GloVe text file.

    Args:
        path: Text file, UTF-8, one ``word v1 … v_dim`` line per word; a first line of two
            integers (word2vec's ``count dim`` header) is skipped.
        dim: Expected vector width (the network's ``embedding_dim``).

    Returns:
        Word → ``(dim,) float32`` vector (the first occurrence of a word wins).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a line's vector is not ``dim`` numbers (message gives the line number).
    """
    with _open_vectors(path) as lines:
        return _parse_lines(path, lines, dim)


def train_word2vec(
    documents: Sequence[Sequence[str]], dim: int, seed: int, epochs: int = 10
) -> dict[str, FloatMatrix]:
    """Skip-gram word2vec (gensim) on tokenised training documents.

    Settings: window 5, 5 negative samples, words seen fewer than 2 times dropped, one worker
    thread so the same seed gives the same vectors (gensim's documented requirement for
    reproducible runs); Mikolov et al. 2013's defaults otherwise.

    Args:
        documents: One token list per training row (after the pipeline's preprocessing).
        dim: Vector width.
        seed: gensim's ``seed``.
        epochs: Passes over the documents.

    Returns:
        Word → ``(dim,) float32`` vector.
    """
    from gensim.models import Word2Vec

    model = Word2Vec(
        sentences=[list(doc) for doc in documents if doc],
        vector_size=dim,
        window=5,
        min_count=2,
        sg=1,
        negative=5,
        epochs=epochs,
        seed=seed,
        workers=1,
    )
    return {word: model.wv[word].astype(np.float32) for word in model.wv.index_to_key}


def embedding_matrix(
    vocabulary: Vocabulary,
    vectors: Mapping[str, FloatMatrix],
    rows: int,
    dim: int,
    seed: int,
    source: str,
) -> EmbeddingInit:
    """Lay ``vectors`` out in vocabulary id order.

    Args:
        vocabulary: Ids ``0`` (padding) and ``1`` (OOV), then its words by frequency.
        vectors: Word → ``(dim,)`` vector.
        rows: The embedding layer's ``input_dim`` (at least ``vocabulary.size``).
        dim: Embedding width.
        seed: Seeds the random rows of words without a vector.
        source: Recorded in the result (for the report).

    Returns:
        The ``(rows, dim)`` matrix and its coverage (see :class:`EmbeddingInit`).
    """
    rng = np.random.default_rng(seed)
    matrix = rng.uniform(-0.05, 0.05, (max(rows, vocabulary.size), dim)).astype(np.float32)
    matrix[PAD_INDEX] = 0.0
    covered = 0
    for index, word in enumerate(vocabulary.words, start=OOV_INDEX + 1):
        vector = vectors.get(word)
        if vector is not None:
            matrix[index] = vector
            covered += 1
    return EmbeddingInit(matrix, covered, len(vocabulary.words), source)


def initial_embeddings(
    source: str,
    vocabulary: Vocabulary,
    fit_tokens: Sequence[Sequence[str]],
    rows: int,
    dim: int,
    seed: int,
) -> EmbeddingInit:
    """The embedding weights named by ``source``: ``"word2vec"`` or a vector file's path.

    Args:
        source: :data:`WORD2VEC` (train word2vec on ``fit_tokens``) or a word2vec/GloVe
            text file (see :func:`load_word_vectors`).
        vocabulary: The fitted vocabulary.
        fit_tokens: Tokenised fitting rows (word2vec trains on these only).
        rows: Embedding ``input_dim``.
        dim: Embedding width.
        seed: Seeds word2vec and the random rows of words without a vector.

    Returns:
        The ``(max(rows, vocabulary.size), dim) float32`` matrix and its coverage.

    Raises:
        FileNotFoundError: the vector file does not exist.
        ValueError: its vectors are not ``dim`` wide.
    """
    if source == WORD2VEC:
        vectors = train_word2vec(fit_tokens, dim, seed)
        described = "word2vec on the fitting rows"
    else:
        path = Path(source)
        vectors, described = load_word_vectors(path, dim), str(path)
    return embedding_matrix(vocabulary, vectors, rows, dim, seed, described)
