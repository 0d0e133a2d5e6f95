"""Adaptive micro-batching of concurrent HTTP requests into one model call.

The pattern of TF Serving's batching, Triton's dynamic batcher and Ray Serve's
``@serve.batch``: the texts of all requests queued when the model is free (up to
``max_batch_size``) are tokenised and run through the engine as **one** call in a worker
thread, so the event loop keeps accepting requests. The batch adapts to the load: while one
call runs, the next batch queues. With ``max_wait_ms > 0`` the first request also waits up to
that long for others (larger batches, added latency); the default 0 is Triton's default
(``max_queue_delay_microseconds: 0``): one client waits for nothing, 64 clients still fill
batches. Between batches, a newly loaded bundle version is swapped in (hot reload).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from model import Bundle
from model.probabilities import checked_rows

Probabilities = npt.NDArray[np.float32]
#: ``(bundle, token_ids, (n, n_classes) float32 rows)`` of the documents a model call predicted.
Observer = Callable[[Bundle, list[list[int]], Probabilities], None]

_log = structlog.get_logger("api")


class TextFailedError(Exception):
    """A text that could not be tokenised (its request answers 422; the batch goes on)."""


@dataclass
class _Request:
    documents: list[str]
    future: asyncio.Future[tuple[Bundle, list[Probabilities | Exception]]]
    arrived: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """Merges concurrent requests' texts into one engine call.

    Args:
        bundle: The model served at start.
        max_batch_size: Most texts per model call (a larger single request runs alone).
        max_wait_ms: Longest extra wait (ms) of a batch's first request for others; 0: run
            with whatever is queued when the model is free.
        on_batch: Called with each model call's size (metrics).
        take_new_bundle: Returns a newly loaded bundle or ``None`` (hot reload); polled
            between batches.
        on_predicted: Called in the inference thread with each model call's bundle, the
            documents' ``token_ids`` and their ``(n, n_classes) float32`` rows (the drift
            signals); its exceptions are logged, never a request's failure.
    """

    def __init__(
        self,
        bundle: Bundle,
        max_batch_size: int,
        max_wait_ms: float,
        on_batch: Callable[[int], None] = lambda _: None,
        take_new_bundle: Callable[[], Bundle | None] = lambda: None,
        on_predicted: Observer | None = None,
    ) -> None:
        self.bundle = bundle
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000
        self._on_batch = on_batch
        self._take_new_bundle = take_new_bundle
        self._on_predicted = on_predicted
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="api-batch")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the batching loop on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        """Stop the loop; requests still queued are failed."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while not self._queue.empty():
            request = self._queue.get_nowait()
            if not request.future.done():
                request.future.set_exception(RuntimeError("server shutting down"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def running(self) -> bool:
        """True while the batching loop runs."""
        return self._task is not None and not self._task.done()

    async def classify(
        self, documents: list[str]
    ) -> tuple[Bundle, list[Probabilities | Exception]]:
        """Probabilities of ``documents`` (``(n_classes,) float32`` rows) and the bundle used.

        A document that cannot be tokenised gets a :class:`TextFailedError` in its place, one
        the model answered with NaN or infinity a ``model.probabilities.NonFiniteOutputError``.

        Raises:
            Exception: the model failed on the batch as a whole.
        """
        loop = asyncio.get_running_loop()
        request = _Request(documents, loop.create_future())
        await self._queue.put(request)
        return await request.future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            batch = [first]
            size = len(first.documents)
            deadline = first.arrived + self.max_wait_s
            while size < self.max_batch_size:
                if not self._queue.empty():  # queued meanwhile: always taken, even past the wait
                    request = self._queue.get_nowait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        request = await asyncio.wait_for(self._queue.get(), remaining)
                    except TimeoutError:
                        break
                batch.append(request)
                size += len(request.documents)
            new = self._take_new_bundle()
            if new is not None:
                self.bundle = new
            bundle = self.bundle
            try:
                rows = await loop.run_in_executor(
                    self._executor, _predict, bundle, batch, self._on_predicted
                )
            except Exception as exc:  # the model failed as a whole: every request learns it
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(exc)
                continue
            self._on_batch(size)
            start = 0
            for request in batch:
                end = start + len(request.documents)
                if not request.future.done():
                    request.future.set_result((bundle, rows[start:end]))
                start = end


def _predict(bundle: Bundle, batch: list[_Request], observe: Observer | None) -> list[Any]:
    """Tokenise every document (each on its own) and run the valid ones as one call."""
    sequences: list[list[int]] = []
    slots: list[int | Exception] = []
    for request in batch:
        for document in request.documents:
            try:
                sequences.append(bundle.token_ids(document))
                slots.append(len(sequences) - 1)
            except Exception as exc:  # one text's failure is its own
                slots.append(TextFailedError(f"{type(exc).__name__}: {exc}"))
    rows = checked_rows(bundle.predict_token_ids(sequences))  # clipped, or non-finite errors
    if observe is not None:
        _observe(observe, bundle, sequences, rows)
    return [s if isinstance(s, Exception) else rows[s] for s in slots]


def _observe(
    observe: Observer,
    bundle: Bundle,
    sequences: list[list[int]],
    rows: list[Probabilities | Exception],
) -> None:
    """Hand the predicted documents to ``observe``; its failure is logged, never raised."""
    good = [(i, row) for i, row in enumerate(rows) if not isinstance(row, Exception)]
    if not good:
        return
    try:
        observe(bundle, [sequences[i] for i, _ in good], np.stack([row for _, row in good]))
    except Exception as exc:  # the drift signals must never fail a request
        _log.warning("observer_failed", error=f"{type(exc).__name__}: {exc}")
