"""A TF-IDF + linear SVM baseline, trained and scored on the same split as the network.

It shows whether the LSTM earns its cost: on topic classification a bag of words with a
linear model is famously strong (e.g. Joachims 1998; Wang & Manning 2012).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from training.evaluate import evaluate

#: What the baseline is, for reports.
BASELINE_DESCRIPTION = (
    "TF-IDF of word 1-2-grams (sublinear tf, min_df 2) over the same tokens as the LSTM, "
    "+ LinearSVC (C=1), scikit-learn"
)


def _identity(tokens: list[str]) -> list[str]:
    return tokens


def tfidf_baseline(
    train_tokens: Sequence[list[str]],
    y_train: npt.NDArray[np.int64],
    test_tokens: Sequence[list[str]],
    y_test: npt.NDArray[np.int64],
    labels: Sequence[str],
    seed: int,
) -> dict[str, Any]:
    """Fit TF-IDF + ``LinearSVC`` on the training tokens and score it on the test tokens.

    Args:
        train_tokens, test_tokens: Tokenised texts (the network's preprocessing, without its
            vocabulary cap).
        y_train, y_test: ``(n,) int64`` class ids into ``labels``.
        labels: Class names in id order.
        seed: ``LinearSVC`` random state.

    Returns:
        ``model`` (description), ``accuracy``, ``macro_f1``, ``n``, ``features`` (TF-IDF
        columns), ``train_seconds`` and ``classification_report_text``.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    started = time.perf_counter()
    vectorizer = TfidfVectorizer(
        tokenizer=_identity,
        preprocessor=_identity,
        lowercase=False,
        token_pattern=None,
        ngram_range=(1, 2),
        min_df=2,
        sublinear_tf=True,
    )
    x_train = vectorizer.fit_transform(list(train_tokens))
    classifier = LinearSVC(C=1.0, random_state=seed).fit(x_train, y_train)
    seconds = time.perf_counter() - started
    predicted = classifier.predict(vectorizer.transform(list(test_tokens)))
    one_hot = np.eye(len(labels), dtype=np.float32)[predicted]
    scores = evaluate(y_test, one_hot, labels)
    return {
        "model": BASELINE_DESCRIPTION,
        "accuracy": scores["accuracy"],
        "macro_f1": scores["macro_f1"],
        "n": scores["n"],
        "features": int(x_train.shape[1]),
        "train_seconds": round(seconds, 1),
        "classification_report_text": scores["classification_report_text"],
    }
