"""The life of one micro-batch as an explicit state machine.

A batch is moved by its **worker** thread (compute, then deliver) and by the **main** thread:
the poll loop and the rebalance callbacks inside ``consume()``, which commit, rewind, discard
or abandon it. Every state change is checked against :data:`TRANSITIONS` under the one lock
of :class:`Lifecycles`; an illegal one raises :class:`IllegalTransitionError` naming both
states. What the threads wait for is a set of states (:data:`COMPUTED`, :data:`WORKER_DONE`,
:data:`SETTLED`), never an event or flag kept beside the state::

                 worker thread                        ┆  main thread
    COMPUTING ─▶ WAITING ─▶ DELIVERING ─▶ DELIVERED ──┆─▶ COMMITTED
     │  │         │  │        │                       ┆─▶ COMMIT_FAILED
     │  │         │  │        │                       ┆─▶ REWOUND
     │  │         │  │        │                       ┆─▶ FAILED
     │  └─────────┼──┴────────┴─▶ ERRORED ────────────┆─▶ FAILED, or DISCARDED
     └────────────┴─(main)─▶ DISCARDING ─(worker)─▶ DISCARDED
    any state not yet SETTLED ─(main: the service stops)─▶ ABANDONED

* ``COMPUTING``: decode, validate, tokenise and run the model (no output yet).
* ``WAITING``: computed; the worker waits until the batch ahead of it is settled, so output
  order, commit order and transactions stay one batch at a time.
* ``DELIVERING`` → ``DELIVERED``: its predictions and dead letters are produced and (at
  least once) acknowledged by the broker; the main thread commits it next.
* ``ERRORED``: the worker raised (broker, producer or model as a whole); the main thread
  turns it into ``FAILED`` and the service stops.
* ``DISCARDING`` → ``DISCARDED``: the batch ahead was not committed (``REWOUND`` or
  ``FAILED``), so this one is never delivered; its records are read again. ``DISCARDING``
  is set by the main thread while the worker may still be computing; the worker moves on
  to ``DISCARDED`` when it notices, so the main thread never starts another compute
  beside it.
* ``COMMITTED``: offsets committed (or the transaction committed with them); at least
  once with a commit interval, possibly still waiting for the interval's commit
  (:class:`consumer.delivery.AtLeastOnce`).
* ``COMMIT_FAILED``: at-least-once only: the output is durable but the offset commit
  failed. Nothing is rewound and the batch behind it still delivers; the records are read
  again after a restart or rebalance unless a later commit of their partitions covers
  them (repeated, never lost).
* ``REWOUND``: not committed (transaction aborted, or a partition lost while in flight);
  its partitions were sought back and the batch behind it is discarded.
* ``FAILED``: the error that stops the service (:attr:`Lifecycle.error`); nothing of it
  was committed and the batch behind it is discarded.
* ``ABANDONED``: the service stopped (shutdown timeout or a fatal error) with the batch in
  flight: nothing of it is committed; a worker still running stops at its next step.

A batch behind a ``COMMITTED``, ``COMMIT_FAILED`` or ``DISCARDED`` one delivers; behind a
``REWOUND`` or ``FAILED`` one it was discarded in the same locked step that settled the
batch ahead (:meth:`Lifecycle.settle`), so no worker can slip through in between (one whose
worker had ``ERRORED`` meanwhile is ``DISCARDED`` at once: its records are read again).

What the batch's former flags and events became: ``computed`` → :data:`COMPUTED`; ``done``
→ :data:`WORKER_DONE`; ``settled`` → :data:`SETTLED`; ``committed`` → ``COMMITTED`` (and
``COMMIT_FAILED``, which used to pass for committed); ``discarded`` → ``DISCARDING`` /
``DISCARDED`` / ``ABANDONED``; ``error`` → ``ERRORED`` / ``FAILED`` with
:attr:`Lifecycle.error`; ``completed`` → the batch has left the service's list of batches
in flight; ``lost`` → partition bookkeeping (:meth:`consumer.fetch.Fetcher.lost_since`),
which turns the batch into ``REWOUND`` when it is committed; ``previous`` → the ``ahead``
argument of :meth:`Lifecycle.take_turn`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from enum import Enum


class BatchState(Enum):
    """Where a micro-batch is in its life (see the module docstring)."""

    COMPUTING = "computing"
    WAITING = "waiting"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    ERRORED = "errored"
    DISCARDING = "discarding"
    DISCARDED = "discarded"
    COMMITTED = "committed"
    COMMIT_FAILED = "commit_failed"
    REWOUND = "rewound"
    FAILED = "failed"
    ABANDONED = "abandoned"


S = BatchState

#: Every allowed transition: state → the states it may move to. A state with none is final.
TRANSITIONS: Mapping[BatchState, frozenset[BatchState]] = {
    S.COMPUTING: frozenset({S.WAITING, S.ERRORED, S.DISCARDING, S.ABANDONED}),
    S.WAITING: frozenset({S.DELIVERING, S.ERRORED, S.DISCARDING, S.ABANDONED}),
    S.DELIVERING: frozenset({S.DELIVERED, S.ERRORED, S.ABANDONED}),
    S.DELIVERED: frozenset({S.COMMITTED, S.COMMIT_FAILED, S.REWOUND, S.FAILED, S.ABANDONED}),
    S.ERRORED: frozenset({S.FAILED, S.DISCARDED, S.ABANDONED}),
    S.DISCARDING: frozenset({S.DISCARDED, S.ABANDONED}),
    S.DISCARDED: frozenset(),
    S.COMMITTED: frozenset(),
    S.COMMIT_FAILED: frozenset(),
    S.REWOUND: frozenset(),
    S.FAILED: frozenset(),
    S.ABANDONED: frozenset(),
}

#: Final states: the batch is done with (the batch behind it may take its turn).
SETTLED = frozenset(s for s, following in TRANSITIONS.items() if not following)
#: Outcomes after which the batch behind still delivers (its input is committed or durable).
LETS_NEXT_DELIVER = frozenset({S.COMMITTED, S.COMMIT_FAILED, S.DISCARDED})
#: The worker has finished computing (what the poll loop waits for before prefetching on).
COMPUTED = frozenset(TRANSITIONS) - {S.COMPUTING, S.DISCARDING}
#: The worker has stopped touching the batch: the main thread may commit or drop it.
WORKER_DONE = SETTLED | {S.DELIVERED, S.ERRORED}


class IllegalTransitionError(RuntimeError):
    """A batch was asked to move to a state :data:`TRANSITIONS` does not allow (a bug).

    Attributes:
        current: The batch's state.
        target: The state it was asked to move to.
    """

    def __init__(self, current: BatchState, target: BatchState) -> None:
        super().__init__(f"illegal micro-batch transition {current.name} -> {target.name}")
        self.current = current
        self.target = target


class Lifecycles:
    """The states of one service's micro-batches, all changed under one lock.

    The lock is a :class:`threading.Condition`: every transition notifies it, and every
    wait is for a set of states of one batch.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()

    def new(self) -> Lifecycle:
        """The lifecycle of a batch about to be computed (``COMPUTING``)."""
        return Lifecycle(self._changed)

    def abandon(self, lives: Iterable[Lifecycle]) -> None:
        """Move every unsettled batch of ``lives`` to ``ABANDONED``, all in one locked step.

        One step, so a worker woken by the first cannot deliver before the next is marked.
        """
        with self._changed:
            for life in lives:
                if life.state not in SETTLED:
                    life._move(S.ABANDONED)


class Lifecycle:
    """One micro-batch's state (see the module docstring); created by :meth:`Lifecycles.new`.

    Args:
        changed: The lock shared by every batch of the service.
    """

    def __init__(self, changed: threading.Condition) -> None:
        self._changed = changed
        self._state = S.COMPUTING
        self._error: BaseException | None = None

    @property
    def state(self) -> BatchState:
        """The current state (may change at once unless the caller holds the lock)."""
        return self._state

    @property
    def error(self) -> BaseException | None:
        """What the worker or the commit raised (``ERRORED`` / ``FAILED``), else ``None``."""
        return self._error

    def __repr__(self) -> str:
        return f"Lifecycle({self._state.name})"

    def move(self, target: BatchState) -> None:
        """One checked transition, the step every other method is made of.

        Raises:
            IllegalTransitionError: :data:`TRANSITIONS` does not allow ``target`` from the
                current state; the state is unchanged.
        """
        with self._changed:
            self._move(target)

    # -- worker thread -------------------------------------------------------------------

    def advance(self, target: BatchState) -> bool:
        """Worker: move on to ``target`` unless the main thread took the batch out of its hands.

        Returns:
            True when moved; False when the batch was discarded (it is then moved from
            ``DISCARDING`` to ``DISCARDED``) or abandoned: the worker stops.

        Raises:
            IllegalTransitionError: ``target`` is not allowed from the current state.
        """
        with self._changed:
            return self._advance(target)

    def take_turn(self, ahead: Lifecycle | None) -> bool:
        """Worker: wait (no timeout) until the batch ahead is settled, then start delivering.

        Args:
            ahead: The batch started before this one, or ``None``. It is always settled
                eventually: committed, rewound or failed by the main thread, or abandoned.

        Returns:
            True in ``DELIVERING``; False when discarded or abandoned meanwhile.

        Raises:
            IllegalTransitionError: this batch is not ``WAITING``.
        """
        with self._changed:
            if ahead is not None:
                self._changed.wait_for(lambda: ahead._state in SETTLED)
            return self._advance(S.DELIVERING)

    def fail(self, error: BaseException) -> None:
        """Worker: record what the worker raised (``ERRORED``); dropped if no longer wanted.

        A batch being discarded ends ``DISCARDED`` (its records are read again) and an
        abandoned one stays ``ABANDONED``: the error is then beside the point.

        Raises:
            IllegalTransitionError: the batch was past its worker's part (a bug).
        """
        with self._changed:
            if self._advance(S.ERRORED):
                self._error = error

    # -- main thread ---------------------------------------------------------------------

    def wait_until(self, states: frozenset[BatchState], timeout_s: float | None) -> bool:
        """Wait until the batch is in one of ``states``; False if ``timeout_s`` passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: self._state in states, timeout_s)

    def discard(self) -> None:
        """Main: the batch ahead was not committed; this one must never deliver.

        Raises:
            IllegalTransitionError: the batch is past ``WAITING``.
        """
        with self._changed:
            self._move(S.DISCARDING)

    def settle(
        self,
        outcome: BatchState,
        behind: Iterable[Lifecycle] = (),
        error: BaseException | None = None,
    ) -> None:
        """Main: give the batch its final ``outcome``, discarding ``behind`` first if need be.

        Args:
            outcome: A :data:`SETTLED` state other than ``DISCARDED``/``ABANDONED``.
            behind: The batches in flight after this one; unless ``outcome`` is in
                :data:`LETS_NEXT_DELIVER` they are discarded in the same locked step
                (``DISCARDING``, or ``DISCARDED`` at once if ``ERRORED``).
            error: With ``FAILED``: the error that stops the service (default: the
                worker's, from ``ERRORED``).

        Raises:
            IllegalTransitionError: ``outcome`` is not allowed from the current state, or
                a batch behind is past ``WAITING`` (and not ``ERRORED``).
        """
        with self._changed:
            if outcome not in TRANSITIONS[self._state]:  # checked before anything changes
                raise IllegalTransitionError(self._state, outcome)
            if outcome not in LETS_NEXT_DELIVER:
                for life in behind:  # an errored worker is done: its error goes with it
                    life._move(S.DISCARDED if life._state is S.ERRORED else S.DISCARDING)
            if error is not None:
                self._error = error
            self._move(outcome)

    # -- under the lock ------------------------------------------------------------------

    def _advance(self, target: BatchState) -> bool:
        if self._state is S.DISCARDING:
            self._move(S.DISCARDED)
            return False
        if self._state is S.ABANDONED:
            return False
        self._move(target)
        return True

    def _move(self, target: BatchState) -> None:
        if target not in TRANSITIONS[self._state]:
            raise IllegalTransitionError(self._state, target)
        self._state = target
        self._changed.notify_all()
