"""Distances between a reference distribution and a live one, over the same bins.

Both functions take bin *counts* (or shares) of equal length, normalise them to shares,
and smooth empty bins with ``epsilon`` (added to every share before renormalising), so a
bin that is empty on one side gives a large but finite score instead of infinity.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

#: Share added to every bin before renormalising (empty bins). A common choice in PSI
#: implementations; with it an empty reference bin holding 1 % of the live documents adds
#: about 0.046 to the PSI.
EPSILON = 1e-4

Histogram = npt.ArrayLike


def _shares(counts: Histogram, epsilon: float) -> npt.NDArray[np.float64]:
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 1 or len(c) == 0:
        raise ValueError(f"a histogram is a non-empty 1-D array of counts, got shape {c.shape}")
    if np.any(c < 0) or not np.all(np.isfinite(c)):
        raise ValueError("bin counts must be finite and non-negative")
    total = c.sum()
    shares = c / total if total > 0 else np.full(len(c), 1.0 / len(c))
    shares = shares + epsilon
    return shares / shares.sum()  # type: ignore[no-any-return]


def _pair(
    expected: Histogram, actual: Histogram, epsilon: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    e, a = _shares(expected, epsilon), _shares(actual, epsilon)
    if e.shape != a.shape:
        raise ValueError(f"histograms have {len(e)} and {len(a)} bins; they must match")
    return e, a


def psi(expected: Histogram, actual: Histogram, epsilon: float = EPSILON) -> float:
    """Population stability index of ``actual`` against ``expected``.

    ``PSI = Σ_i (a_i - e_i) · ln(a_i / e_i)`` over the bins' shares ``e`` (reference) and
    ``a`` (live): a symmetrised Kullback-Leibler divergence (Jeffreys' J). Yurdakul (2018),
    *Statistical Properties of Population Stability Index*, Western Michigan University;
    the usual reading (Siddiqi 2006, *Credit Risk Scorecards*, Wiley): below 0.1 no
    significant change, 0.1-0.25 a moderate shift, above 0.25 a significant shift — the
    default alert threshold here.

    Args:
        expected: Reference bin counts or shares, ``(bins,)``.
        actual: Live bin counts or shares over the same bins.
        epsilon: Smoothing share for empty bins.

    Returns:
        ``>= 0``; 0 for identical distributions.

    Raises:
        ValueError: the histograms are empty, of different lengths, or not counts; or a
            bin is empty on one side with ``epsilon = 0`` (the index is then infinite).
    """
    e, a = _pair(expected, actual, epsilon)
    if np.any((e == 0) != (a == 0)):
        raise ValueError("a bin is empty on one side only: smooth with epsilon > 0")
    both = e > 0  # a bin empty on both sides adds nothing
    e, a = e[both], a[both]
    return float(np.sum((a - e) * np.log(a / e)))


def js_distance(expected: Histogram, actual: Histogram, epsilon: float = EPSILON) -> float:
    """Jensen-Shannon distance between ``expected`` and ``actual``, base-2, in ``[0, 1]``.

    ``JSD = ½ KL(e ‖ m) + ½ KL(a ‖ m)`` with ``m = ½ (e + a)`` (Lin 1991, "Divergence
    measures based on the Shannon entropy", IEEE Trans. Inf. Theory 37(1)); the distance
    is ``√JSD``, a metric (Endres & Schindelin 2003), the same number as
    ``scipy.spatial.distance.jensenshannon(e, a, base=2)`` on the smoothed shares.
    Symmetric and bounded, unlike PSI, so it reads the same for any number of bins.

    Raises:
        ValueError: as :func:`psi`.
    """
    e, a = _pair(expected, actual, epsilon)
    m = (e + a) / 2
    divergence = 0.5 * _kl_bits(e, m) + 0.5 * _kl_bits(a, m)
    return float(np.sqrt(max(0.0, divergence)))


def _kl_bits(p: npt.NDArray[np.float64], q: npt.NDArray[np.float64]) -> float:
    """``KL(p ‖ q)`` in bits; a bin with ``p = 0`` adds 0 (``0 · log 0 = 0``)."""
    safe = np.where(p > 0, p, 1.0)
    return float(np.sum(np.where(p > 0, p * np.log2(safe / q), 0.0)))


def scores(
    expected: npt.NDArray[np.int64], actual: npt.NDArray[np.int64], epsilon: float = EPSILON
) -> tuple[float, float]:
    """``(psi, js_distance)`` of two count histograms at once (the monitor's hot path).

    The same numbers as :func:`psi` and :func:`js_distance`, for counts already known to be
    valid (non-negative, same length): no checks, one smoothing.
    """
    e = _smooth(expected, epsilon)
    a = _smooth(actual, epsilon)
    m = (e + a) / 2
    divergence = 0.5 * float(np.sum(e * np.log2(e / m))) + 0.5 * float(np.sum(a * np.log2(a / m)))
    return float(np.sum((a - e) * np.log(a / e))), float(np.sqrt(max(0.0, divergence)))


def _smooth(counts: npt.NDArray[np.int64], epsilon: float) -> npt.NDArray[np.float64]:
    total = counts.sum()
    shares = counts / total if total > 0 else np.full(len(counts), 1.0 / len(counts))
    shares = shares + epsilon
    return shares / shares.sum()  # type: ignore[no-any-return]
