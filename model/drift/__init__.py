"""Text-health and drift signals: a reference profile from training, live windows, scores.

* :mod:`model.drift.counts` — the five quantities of a set of documents as bin counts;
* :mod:`model.drift.profile` — the reference profile stored in the bundle
  (``drift_profile.json``);
* :mod:`model.drift.scores` — population stability index and Jensen-Shannon distance;
* :mod:`model.drift.window` — the sliding window of the most recent documents;
* :mod:`model.drift.alert` — the per-quantity alert state machine;
* :mod:`model.drift.monitor` — all of it for one serving model version;
* :mod:`model.drift.prometheus` — its Prometheus gauges (consumer and API alike).

No Kafka and no HTTP here: the consumer and the API feed a :class:`DriftMonitor` the
``token_ids`` and probabilities they already computed.
"""

from model.drift.alert import AlertState, DriftAlert
from model.drift.counts import QUANTITIES, DriftBins, DriftCounts, Quantity, count_documents
from model.drift.monitor import DriftMonitor, DriftSnapshot
from model.drift.profile import PROFILE_FILE, ReferenceProfile, load_profile
from model.drift.scores import js_distance, psi
from model.drift.settings import DriftSettings
from model.drift.window import SlidingWindow

__all__ = [
    "PROFILE_FILE",
    "QUANTITIES",
    "AlertState",
    "DriftAlert",
    "DriftBins",
    "DriftCounts",
    "DriftMonitor",
    "DriftSettings",
    "DriftSnapshot",
    "Quantity",
    "ReferenceProfile",
    "SlidingWindow",
    "count_documents",
    "js_distance",
    "load_profile",
    "psi",
]
