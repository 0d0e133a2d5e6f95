"""Model hot reload off the hot path (shared by the Kafka consumer and the HTTP API).

Watches a model directory's ``current`` pointer, loads new versions in a background thread
and hands them to the serving loop, which swaps them in between micro-batches.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from model.bundle import CURRENT, BundleError, resolve_version_dir

#: Text run through a candidate model before it is accepted.
SMOKE_TEXT = "Shares rose after the company reported record profits for the quarter."


class ModelWatcher:
    """Polls ``model_dir/current``; loads and checks each new version in a daemon thread.

    A version that fails to load (missing/corrupt file, incompatible format) or whose smoke
    prediction is not a probability vector over its labels is refused with a log line and
    not retried until ``current`` moves again; the old model keeps serving.

    Args:
        model_dir: Directory holding the ``current`` pointer and version directories.
        serving: Version directory of the model already being served.
        load: Loads a bundle from a version directory (``model.load_bundle``).
        interval_s: Seconds between checks.
        on_refused: Called after a refusal (e.g. to count it in metrics).

    Attributes:
        last_refused: ``"<version dir name>: <error>"`` of the latest refused version
            (``None`` until one is refused); readable from any thread.
    """

    def __init__(
        self,
        model_dir: Path,
        serving: Path,
        load: Callable[[Path], Any],
        interval_s: float,
        on_refused: Callable[[], None] = lambda: None,
    ) -> None:
        self.model_dir = model_dir
        self._known = serving.resolve()
        self._load = load
        self._interval_s = interval_s
        self._on_refused = on_refused
        self._pending: Any = None
        self.last_refused: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._log = structlog.get_logger("model")
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)

    @staticmethod
    def watchable(path: Path) -> bool:
        """True when ``path`` is a model directory with a ``current`` pointer."""
        return (path / CURRENT).exists()

    def start(self) -> None:
        """Start polling in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop polling (returns at once)."""
        self._stop.set()

    def take(self) -> Any:
        """The newly loaded bundle, once; ``None`` when there is nothing new."""
        with self._lock:
            bundle, self._pending = self._pending, None
        return bundle

    def check_now(self) -> None:
        """Check the pointer once (the background thread calls this every interval)."""
        try:
            target = resolve_version_dir(self.model_dir).resolve()
        except (BundleError, OSError) as exc:
            self._log.warning("model_pointer_unreadable", error=str(exc))
            return
        if target == self._known:
            return
        self._known = target  # refused versions are not retried until the pointer moves
        try:
            bundle = self._load(target)
            self._smoke_test(bundle)
        except Exception as exc:  # any failure means: keep serving the old model
            self._log.error("model_refused", path=str(target), error=str(exc))
            self.last_refused = f"{target.name}: {exc}"
            self._on_refused()
            return
        self._log.info("model_loaded", model_version=bundle.version, path=str(target))
        with self._lock:
            self._pending = bundle

    @staticmethod
    def _smoke_test(bundle: Any) -> None:
        # The service's own path: one record's tokenisation, then the model on its ids.
        probabilities = np.asarray(bundle.predict_token_ids([bundle.token_ids(SMOKE_TEXT)]))
        if probabilities.shape != (1, len(bundle.labels)):
            raise BundleError(f"smoke prediction has shape {probabilities.shape}")
        if not np.all(np.isfinite(probabilities)) or abs(float(probabilities.sum()) - 1) > 1e-3:
            raise BundleError("smoke prediction is not a probability distribution")

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.check_now()
