"""Which words pushed a prediction toward its class: LIME over a bundle.

LIME (Ribeiro, Singh & Guestrin 2016, the ``lime`` package, as in the AG News seed) removes
random subsets of the words, re-runs the bundle's own preprocessing and model on each
variant, and fits a local linear model: a word's weight is how much its presence raises
the probability of the class. Used by ``python -m training.explain`` and the HTTP API's
``POST /v1/explain``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from model.bundle import Bundle
from model.text import segment_japanese

#: Perturbed copies of the text LIME scores (the ``lime`` package's default is 5,000;
#: 1,000 keeps one explanation to a few seconds on a CPU with a stable top-10).
DEFAULT_SAMPLES = 1000
DEFAULT_FEATURES = 10


@dataclass(frozen=True)
class Explanation:
    """LIME's answer for one text.

    Attributes:
        label: The class explained (the predicted one unless another was asked for).
        probability: The bundle's probability of ``label`` for the unmodified text.
        weights: ``(word, weight)`` pairs, highest weight first; a positive weight pushed
            the prediction toward ``label``, a negative one away from it.
        html: LIME's stand-alone HTML rendering (text with highlighted words and bars).
    """

    label: str
    probability: float
    weights: list[tuple[str, float]]
    html: str


def _splitter(bundle: Bundle) -> str | Callable[[str], list[str]]:
    """How LIME cuts the raw text into removable words (surface forms of the raw text)."""
    if bundle.pipeline.text.tokenizer == "fugashi":
        return lambda text: segment_japanese(text, words_only=True)
    return r"\W+"  # LIME's default: runs of word characters


def explain_text(
    bundle: Bundle,
    text: str,
    label: str | None = None,
    num_features: int = DEFAULT_FEATURES,
    num_samples: int = DEFAULT_SAMPLES,
    seed: int = 42,
) -> Explanation:
    """Explain the bundle's prediction for ``text`` with LIME.

    Args:
        bundle: A loaded model bundle.
        text: The raw text, as the stream would carry it.
        label: Class to explain; default: the predicted class.
        num_features: Words to report (at most).
        num_samples: Perturbed variants LIME scores (more: slower, more stable).
        seed: LIME's random state (the same seed gives the same weights).

    Raises:
        ValueError: ``label`` is not one of the bundle's classes, or ``text`` has no words.
    """
    from lime.lime_text import LimeTextExplainer

    probabilities = bundle.predict_proba([text])[0]
    index = int(probabilities.argmax()) if label is None else _label_index(bundle, label)
    explainer = LimeTextExplainer(
        class_names=bundle.labels, split_expression=_splitter(bundle), random_state=seed
    )
    try:
        explanation = explainer.explain_instance(
            text,
            bundle.predict_proba,
            labels=(index,),
            num_features=num_features,
            num_samples=num_samples,
        )
    except (ValueError, IndexError) as exc:  # lime fails on texts without any word
        raise ValueError(f"cannot explain this text: {exc}") from exc
    weights = sorted(
        ((str(w), float(v)) for w, v in explanation.as_list(label=index)), key=lambda p: -p[1]
    )
    return Explanation(
        bundle.labels[index],
        float(probabilities[index]),
        weights,
        explanation.as_html(labels=(index,)),
    )


def _label_index(bundle: Bundle, label: str) -> int:
    try:
        return bundle.labels.index(label)
    except ValueError:
        raise ValueError(f"unknown label {label!r}; the bundle has {bundle.labels}") from None
