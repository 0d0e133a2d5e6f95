"""The drift alert of one quantity: a state machine driven by its score over time.

::

    WARMING_UP ──window has min_documents──▶ OK ──score > threshold──▶ PENDING
                                            ▲  ◀──score <= threshold──   │
                                            │                  over for >= alert_after_s
                                            └────score <= threshold──── FIRING

Like a Prometheus rule's ``for:``, a score must *stay* above the threshold for
``alert_after_s`` before the alert fires, so one odd micro-batch does not page anyone.
Only :meth:`DriftAlert.update` changes the state; the monitor calls it under its lock.
"""

from __future__ import annotations

import enum


class AlertState(enum.Enum):
    """Where one quantity's alert is."""

    WARMING_UP = "warming_up"  # fewer than min_documents in the window: no score yet
    OK = "ok"
    PENDING = "pending"  # over the threshold, not yet for alert_after_s
    FIRING = "firing"


class DriftAlert:
    """One quantity's alert.

    Args:
        threshold: Score above which the quantity counts as drifted.
        alert_after_s: How long (s) the score must stay above it before the alert fires.
    """

    def __init__(self, threshold: float, alert_after_s: float) -> None:
        self.threshold = threshold
        self.alert_after_s = alert_after_s
        self.state = AlertState.WARMING_UP
        self._over_since: float | None = None

    def update(self, score: float | None, now: float) -> AlertState | None:
        """Move on with the latest ``score`` (``None``: not enough documents) at ``now`` (s).

        Returns:
            The new state if it changed (for the caller to log), else ``None``.
        """
        before = self.state
        if score is None:
            self.state, self._over_since = AlertState.WARMING_UP, None
        elif score <= self.threshold:
            self.state, self._over_since = AlertState.OK, None
        else:
            if self._over_since is None:
                self._over_since = now
            over_for = now - self._over_since
            self.state = AlertState.FIRING if over_for >= self.alert_after_s else AlertState.PENDING
        return self.state if self.state is not before else None
