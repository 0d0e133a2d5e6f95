"""The drift formulas, counts, window, alert state machine and tracker (model/drift)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from model.drift import (
    AlertState,
    DriftAlert,
    DriftBins,
    DriftCounts,
    DriftMonitor,
    DriftSettings,
    ReferenceProfile,
    SlidingWindow,
    count_documents,
    js_distance,
    load_profile,
    psi,
)
from model.drift.profile import PROFILE_FILE
from model.drift.tracker import DriftTracker

LABELS = ["business", "sport", "tech"]


def test_psi_matches_the_hand_computed_value() -> None:
    # (0.25 - 0.5) ln(0.25/0.5) + (0.75 - 0.5) ln(0.75/0.5) = 0.25 ln 2 + 0.25 ln 1.5
    expected = 0.25 * math.log(2) + 0.25 * math.log(1.5)
    assert psi([0.5, 0.5], [0.25, 0.75], epsilon=0) == pytest.approx(expected, rel=1e-12)
    assert psi([50, 50], [25, 75], epsilon=0) == pytest.approx(expected, rel=1e-12)  # counts
    assert psi([3, 1, 6], [3, 1, 6]) == 0.0


def test_psi_smooths_an_empty_bin_and_refuses_it_unsmoothed() -> None:
    smoothed = psi([100, 0], [99, 1])
    assert 0.04 < smoothed < 0.06  # about 0.01 ln(0.01/1e-4) ≈ 0.046
    with pytest.raises(ValueError, match="epsilon"):
        psi([100, 0], [99, 1], epsilon=0)
    with pytest.raises(ValueError, match="bins"):
        psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="non-negative"):
        psi([1, -2], [1, 2])


def test_js_distance_matches_the_hand_computed_value() -> None:
    # m = (0.75, 0.25); KL(e‖m) = 0.5 log2(2/3) + 0.5 log2 2; KL(a‖m) = log2(4/3)
    kl_e = 0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25)
    kl_a = math.log2(1 / 0.75)
    expected = math.sqrt(0.5 * kl_e + 0.5 * kl_a)
    assert js_distance([0.5, 0.5], [1.0, 0.0], epsilon=0) == pytest.approx(expected, rel=1e-12)
    assert js_distance([1, 0], [0, 1], epsilon=0) == pytest.approx(1.0)  # disjoint: the maximum
    assert js_distance([2, 5, 3], [2, 5, 3]) == 0.0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 1000), min_size=2, max_size=12).flatmap(
        lambda e: st.tuples(
            st.just(e), st.lists(st.integers(0, 1000), min_size=len(e), max_size=len(e))
        )
    )
)
def test_js_distance_equals_scipy_on_the_smoothed_shares(pair: tuple[list[int], list[int]]) -> None:
    from scipy.spatial.distance import jensenshannon

    expected, actual = pair

    def smoothed(c: list[int]) -> npt.NDArray[np.float64]:
        a = np.asarray(c, dtype=np.float64)
        shares = a / a.sum() if a.sum() else np.full(len(a), 1 / len(a))
        out: npt.NDArray[np.float64] = (shares + 1e-4) / (shares + 1e-4).sum()
        return out

    ours = js_distance(expected, actual)
    assert ours == pytest.approx(
        jensenshannon(smoothed(expected), smoothed(actual), base=2), abs=1e-9
    )
    assert 0.0 <= ours <= 1.0
    assert psi(expected, actual) >= 0.0


def _bins() -> DriftBins:
    return DriftBins(tuple(LABELS), max_len=10, length_cuts=(3.0, 6.0))


def test_count_documents_bins_every_quantity() -> None:
    token_ids = [
        [5, 6, 7],  # length 3 (first bin), no OOV
        [1, 5, 6, 7, 8],  # length 5, OOV share 0.2 → (0.1, 0.2]
        [1] * 10,  # fills max_len: truncated, all OOV
        [],  # empty: length 0, OOV share 0
    ]
    probabilities = np.array(
        [[0.9, 0.05, 0.05], [0.1, 0.25, 0.65], [0.34, 0.33, 0.33], [0.2, 0.7, 0.1]],
        dtype=np.float32,
    )
    c = count_documents(token_ids, probabilities, _bins())
    assert (c.documents, c.tokens, c.oov_tokens) == (4, 18, 11)
    assert c.oov_rate == pytest.approx(11 / 18)
    assert c.truncated_share == pytest.approx(0.25)
    assert c.bins["label"].tolist() == [2, 1, 1]
    assert c.bins["length"].tolist() == [2, 1, 1]  # ≤3: [5,6,7] and []; ≤6: 5; >6: 10
    assert c.bins["truncation"].tolist() == [3, 1]
    # OOV bins: {0}, (0,.02], (.02,.05], (.05,.1], (.1,.2], (.2,.3], (.3,.5], (.5,1]
    assert c.bins["oov"].tolist() == [2, 0, 0, 0, 1, 0, 0, 1]
    # confidence bins: ≤.2, (.2,.3], …, (.6,.7], (.7,.8], (.8,.9], (.9,.95], (.95,.99], >.99
    assert c.bins["confidence"].tolist() == [0, 0, 1, 0, 0, 2, 0, 1, 0, 0, 0]  # .34 .65 .7 .9
    with pytest.raises(ValueError, match="shape"):
        count_documents(token_ids, probabilities[:2], _bins())


def test_reference_bins_are_the_deciles_of_the_lengths() -> None:
    bins = DriftBins.from_reference_lengths(LABELS, 200, list(range(1, 101)))
    assert len(bins.length_cuts) == 9
    assert bins.length_cuts[4] == pytest.approx(50.5)
    capped = DriftBins.from_reference_lengths(LABELS, 50, [50] * 90 + [10] * 10)
    assert all(cut < 50 for cut in capped.length_cuts)  # the top bin ends at max_len


def _counts(documents: int) -> DriftCounts:
    c = DriftCounts.zeros(_bins())
    c.documents = documents
    c.bins["label"][0] = documents
    for q in ("confidence", "length", "oov", "truncation"):
        c.bins[q][0] = documents
    return c


def test_the_window_keeps_at_least_its_size_and_drops_whole_old_batches() -> None:
    window = SlidingWindow(_bins(), documents=10)
    for size in (4, 4, 4):
        window.add(_counts(size))
    assert window.documents == 12  # dropping the first 4 would leave 8 < 10
    window.add(_counts(6))
    assert window.documents == 10  # 4 + 6: the two oldest dropped
    window.add(_counts(0))
    assert window.documents == 10
    assert int(window.total.bins["label"].sum()) == 10
    with pytest.raises(ValueError, match="at least one"):
        SlidingWindow(_bins(), documents=0)


def test_the_alert_fires_only_after_the_score_stays_over_the_threshold() -> None:
    alert = DriftAlert(threshold=0.25, alert_after_s=60)
    assert alert.state is AlertState.WARMING_UP
    assert alert.update(None, 0) is None
    assert alert.update(0.1, 1) is AlertState.OK
    assert alert.update(0.5, 10) is AlertState.PENDING
    assert alert.update(0.6, 69) is None  # 59 s over: still pending
    assert alert.update(0.6, 70) is AlertState.FIRING
    assert alert.update(0.7, 500) is None
    assert alert.update(0.2, 501) is AlertState.OK  # resolved
    assert alert.update(0.5, 502) is AlertState.PENDING  # the clock starts again
    assert alert.update(0.1, 503) is AlertState.OK  # a short spike never fired
    assert alert.update(None, 504) is AlertState.WARMING_UP


def _reference(
    rng: np.random.Generator, documents: int = 400
) -> tuple[list[list[int]], np.ndarray]:
    token_ids = [list(rng.integers(2, 50, size=int(rng.integers(5, 40)))) for _ in range(documents)]
    logits = rng.normal(size=(documents, len(LABELS))) * 3
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return token_ids, probabilities.astype(np.float32)


def _profile(rng: np.random.Generator) -> ReferenceProfile:
    token_ids, probabilities = _reference(rng)
    return ReferenceProfile.build(token_ids, probabilities, LABELS, 30, "synthetic")


def test_same_source_stays_ok_and_a_shifted_one_fires_after_the_delay() -> None:
    rng = np.random.default_rng(7)
    profile = _profile(rng)
    now = [0.0]
    monitor = DriftMonitor(profile, "v1", 300, 100, 0.25, 30, clock=lambda: now[0])
    ids, probs = _reference(rng, 300)  # fresh documents from the same source
    assert monitor.observe(ids[:50], probs[:50]) == []  # 50 < min_documents: warming up
    assert monitor.snapshot().psi["oov"] is None
    assert {state for _, state in monitor.observe(ids[50:], probs[50:])} == {AlertState.OK}
    snap = monitor.snapshot()
    assert all(score is not None and score < 0.25 for score in snap.psi.values())
    # The vocabulary shifts: half of every document's ids are OOV, documents are longer.
    shifted = [[1] * 30 for _ in range(300)]
    now[0] = 10.0
    pending = dict(monitor.observe(shifted, probs))
    assert pending["oov"] is AlertState.PENDING
    assert pending["truncation"] is AlertState.PENDING
    now[0] = 41.0
    firing = dict(monitor.observe(shifted[:10], probs[:10]))
    assert firing["oov"] is AlertState.FIRING
    snap = monitor.snapshot()
    assert snap.window.oov_rate == pytest.approx(1.0)
    assert (snap.psi["oov"] or 0.0) > 1.0
    assert snap.states["label"] is AlertState.OK  # the same probabilities: labels did not move


def test_the_profile_round_trips_through_its_file_and_is_checked(tmp_path: Path) -> None:
    profile = _profile(np.random.default_rng(1))
    (tmp_path / PROFILE_FILE).write_text(profile.to_json())
    assert load_profile(tmp_path, LABELS) == profile
    assert load_profile(tmp_path / "missing", LABELS) is None
    with pytest.raises(ValueError, match="labels"):
        load_profile(tmp_path, ["a", "b", "c"])
    broken = profile.model_dump()
    broken["counts"]["oov"] = broken["counts"]["oov"][:-1]
    (tmp_path / PROFILE_FILE).write_text(ReferenceProfile.model_construct(**broken).to_json())
    with pytest.raises(ValueError, match="oov"):
        load_profile(tmp_path, LABELS)


class _Model:
    def __init__(self, version: str, profile: ReferenceProfile | None) -> None:
        self.version, self.labels, self.drift_profile = version, LABELS, profile


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_the_tracker_exports_gauges_per_version_and_forgets_a_swapped_out_one() -> None:
    rng = np.random.default_rng(3)
    registry = CollectorRegistry()
    tracker = DriftTracker(
        DriftSettings(drift_window_documents=200, drift_min_documents=50, drift_alert_after_s=0),
        registry,
        "test",
    )
    v1 = _Model("v1", _profile(rng))
    tracker.serve(v1)
    reference_oov = _sample(
        registry, "classifier_text_oov_rate", model_version="v1", window="reference"
    )
    assert reference_oov == pytest.approx(0.0)  # the synthetic reference has no OOV ids
    assert _sample(registry, "classifier_drift_psi", model_version="v1", quantity="oov") is None
    tracker.observe(
        v1, [[1, 1, 2]] * 60, np.tile(np.array([[0.8, 0.1, 0.1]], dtype=np.float32), (60, 1))
    )
    assert _sample(
        registry, "classifier_text_oov_rate", model_version="v1", window="live"
    ) == pytest.approx(2 / 3)
    assert _sample(registry, "classifier_drift_alert", model_version="v1", quantity="oov") == 1.0
    assert (
        _sample(registry, "classifier_drift_alerts_total", model_version="v1", quantity="oov")
        == 1.0
    )
    assert (
        _sample(
            registry,
            "classifier_drift_alert_state",
            model_version="v1",
            quantity="oov",
            state="firing",
        )
        == 1.0
    )
    label_share = _sample(
        registry,
        "classifier_prediction_label_share",
        model_version="v1",
        window="live",
        label="business",
    )
    assert label_share == pytest.approx(1.0)
    tracker.observe(
        _Model("v2", None), [[2]], np.array([[0.2, 0.3, 0.5]], dtype=np.float32)
    )  # a swap to a bundle without a profile
    assert _sample(registry, "classifier_drift_alert", model_version="v1", quantity="oov") is None
    assert _sample(registry, "classifier_text_oov_rate", model_version="v2", window="live") is None
    assert tracker.monitor is None


def test_the_monitors_combined_scores_equal_the_checked_functions() -> None:
    from model.drift.scores import scores

    rng = np.random.default_rng(11)
    for _ in range(20):
        e, a = rng.integers(0, 50, size=8), rng.integers(0, 50, size=8)
        both = scores(e, a)
        assert both == pytest.approx((psi(e, a), js_distance(e, a)), rel=1e-12)


def test_the_settings_refuse_a_warm_up_longer_than_the_window() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="drift_min_documents"):
        DriftSettings(drift_window_documents=10, drift_min_documents=20)
    off = DriftSettings(drift_window_documents=0)  # off: the warm-up does not matter
    assert off.drift_min_documents == 200
