"""Which words pushed a prediction toward its class: ``python -m training.explain``.

LIME (Ribeiro, Singh & Guestrin 2016, the ``lime`` package, as in the AG News seed) removes
random subsets of the words, re-runs the bundle's own preprocessing and model on each
variant, and fits a local linear model: a word's weight is how much its presence raises
the probability of the class. Example::

    python -m training.explain --bundle artifacts/models/bbc "Chelsea won the league..."
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from model.bundle import Bundle, BundleError, load_bundle
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


def format_explanation(explanation: Explanation) -> str:
    """The ranked word list as text, one word per line."""
    lines = [f"class {explanation.label} (probability {explanation.probability:.4f})"]
    lines += ["words, ranked by how much they pushed toward it (negative: away from it):"]
    for rank, (word, weight) in enumerate(explanation.weights, start=1):
        lines.append(f"{rank:>3}. {weight:+.4f}  {word}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for a bad bundle, label or text)."""
    p = argparse.ArgumentParser(
        prog="python -m training.explain",
        description="Explain a bundle's prediction for one text with LIME.",
    )
    p.add_argument("text", help="the text to classify and explain")
    p.add_argument("--bundle", type=Path, required=True, help="model or version directory")
    p.add_argument("--label", help="class to explain (default: the predicted one)")
    p.add_argument("--num-features", type=int, default=DEFAULT_FEATURES)
    p.add_argument("--num-samples", type=int, default=DEFAULT_SAMPLES)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--html", type=Path, default=Path("explanation.html"), help="HTML output")
    args = p.parse_args(argv)
    try:
        bundle = load_bundle(args.bundle)
        result = explain_text(
            bundle, args.text, args.label, args.num_features, args.num_samples, args.seed
        )
    except (BundleError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_explanation(result))
    args.html.write_text(result.html, encoding="utf-8")
    print(f"HTML: {args.html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
