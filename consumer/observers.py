"""What watches the committed micro-batches: shadow evaluation, drift, the feedback join.

An observer is offered every micro-batch the service has *committed* (so each record is
seen once per successful delivery; a batch rewound after a failure is offered when it is
processed again and committed). :meth:`BatchObserver.offer` runs on the service's main
thread between two batches: it must return quickly and must never raise for a batch's
contents (an observer that needs more time hands the batch to a thread of its own, as
:class:`consumer.shadow.ShadowEvaluator` does). Observers never change what is published.
"""

from __future__ import annotations

from typing import Protocol

from consumer.batch import Batch


class BatchObserver(Protocol):
    """Offered every committed micro-batch; closed once when the service stops."""

    def offer(self, batch: Batch) -> None:
        """Look at a committed ``batch`` (read-only); never blocks, never raises for it."""
        ...

    def close(self, timeout_s: float) -> None:
        """Finish (at most ``timeout_s`` seconds) and release threads and clients."""
        ...
