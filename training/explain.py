"""Which words pushed a prediction toward its class: ``python -m training.explain``.

The explanation itself is :func:`model.explain.explain_text` (LIME); this is its command
line. Example::

    python -m training.explain --bundle artifacts/models/bbc "Chelsea won the league..."
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from model.bundle import BundleError, load_bundle
from model.explain import DEFAULT_FEATURES, DEFAULT_SAMPLES, Explanation, explain_text

__all__ = ["Explanation", "explain_text", "format_explanation", "main"]


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
