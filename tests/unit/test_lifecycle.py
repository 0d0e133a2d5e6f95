"""The micro-batch state machine: every transition in the table passes, every other raises."""

from __future__ import annotations

import threading

import pytest

from consumer.lifecycle import (
    COMPUTED,
    SETTLED,
    TRANSITIONS,
    WORKER_DONE,
    BatchState,
    IllegalTransitionError,
    Lifecycle,
    Lifecycles,
)

S = BatchState

#: The transitions that bring a new batch (COMPUTING) into each state.
_PATHS: dict[BatchState, list[BatchState]] = {
    S.COMPUTING: [],
    S.WAITING: [S.WAITING],
    S.DELIVERING: [S.WAITING, S.DELIVERING],
    S.DELIVERED: [S.WAITING, S.DELIVERING, S.DELIVERED],
    S.ERRORED: [S.ERRORED],
    S.DISCARDING: [S.DISCARDING],
    S.DISCARDED: [S.DISCARDING, S.DISCARDED],
    S.COMMITTED: [S.WAITING, S.DELIVERING, S.DELIVERED, S.COMMITTED],
    S.COMMIT_FAILED: [S.WAITING, S.DELIVERING, S.DELIVERED, S.COMMIT_FAILED],
    S.REWOUND: [S.WAITING, S.DELIVERING, S.DELIVERED, S.REWOUND],
    S.FAILED: [S.WAITING, S.DELIVERING, S.DELIVERED, S.FAILED],
    S.ABANDONED: [S.ABANDONED],
}


def _in(state: BatchState, lives: Lifecycles | None = None) -> Lifecycle:
    life = (lives or Lifecycles()).new()
    for step in _PATHS[state]:
        life.move(step)
    assert life.state is state
    return life


def test_the_table_covers_every_state_and_the_settled_ones_are_final() -> None:
    assert set(TRANSITIONS) == set(BatchState)
    assert set(_PATHS) == set(BatchState)
    assert {S.COMMITTED, S.COMMIT_FAILED, S.REWOUND, S.DISCARDED, S.FAILED, S.ABANDONED} == SETTLED
    assert S.COMPUTING not in COMPUTED
    assert S.DISCARDING not in COMPUTED
    assert {S.DELIVERED, S.ERRORED} <= WORKER_DONE


@pytest.mark.parametrize("current", list(BatchState), ids=lambda s: s.name)
@pytest.mark.parametrize("target", list(BatchState), ids=lambda s: s.name)
def test_allowed_transitions_pass_and_illegal_ones_raise_naming_both_states(
    current: BatchState, target: BatchState
) -> None:
    life = _in(current)
    if target in TRANSITIONS[current]:
        life.move(target)
        assert life.state is target
        return
    with pytest.raises(IllegalTransitionError) as raised:
        life.move(target)
    assert f"{current.name} -> {target.name}" in str(raised.value)
    assert (raised.value.current, raised.value.target) == (current, target)
    assert life.state is current, "an illegal transition changes nothing"


def test_the_worker_and_main_thread_methods_walk_the_table() -> None:
    lives = Lifecycles()
    life = lives.new()
    assert life.advance(S.WAITING)
    assert life.take_turn(None)
    assert life.advance(S.DELIVERED)
    life.settle(S.COMMITTED)
    assert life.state is S.COMMITTED
    with pytest.raises(IllegalTransitionError, match="COMMITTED -> WAITING"):
        life.advance(S.WAITING)
    failing = lives.new()
    failing.fail(RuntimeError("model"))
    assert failing.state is S.ERRORED
    failing.settle(S.FAILED)
    assert isinstance(failing.error, RuntimeError), "the worker's error is kept"


def test_an_illegal_settle_discards_nothing_behind() -> None:
    lives = Lifecycles()
    life, behind = _in(S.COMPUTING, lives), _in(S.COMPUTING, lives)
    with pytest.raises(IllegalTransitionError, match="COMPUTING -> REWOUND"):
        life.settle(S.REWOUND, [behind])
    assert behind.state is S.COMPUTING


def test_a_worker_discarded_while_computing_stops_at_its_next_step() -> None:
    life = _in(S.COMPUTING)
    life.discard()
    assert life.state not in WORKER_DONE, "the main thread waits for the worker to notice"
    assert not life.advance(S.WAITING)
    assert life.state is S.DISCARDED


def test_an_abandoned_worker_stops_and_its_error_is_dropped() -> None:
    lives = Lifecycles()
    life = _in(S.DELIVERING, lives)
    lives.abandon([life])
    assert not life.advance(S.DELIVERED)
    life.fail(RuntimeError("too late"))
    assert life.state is S.ABANDONED
    assert life.error is None


class _Gate:
    """The worker of a batch behind ``ahead``, waiting for its turn in a thread."""

    def __init__(self, lives: Lifecycles, ahead: Lifecycle) -> None:
        self.life = _in(S.WAITING, lives)
        self.turn: list[bool] = []
        self._thread = threading.Thread(
            target=lambda: self.turn.append(self.life.take_turn(ahead)), daemon=True
        )
        self._thread.start()
        self._thread.join(0.05)
        assert self._thread.is_alive(), "it waits while the batch ahead is unsettled"

    def result(self) -> bool:
        self._thread.join(5)
        (turn,) = self.turn
        return turn


@pytest.mark.parametrize("outcome", [S.COMMITTED, S.COMMIT_FAILED])
def test_the_batch_behind_delivers_once_the_one_ahead_is_committed(outcome: BatchState) -> None:
    lives = Lifecycles()
    ahead = _in(S.DELIVERED, lives)
    gate = _Gate(lives, ahead)
    ahead.settle(outcome, [gate.life])
    assert gate.result() is True
    assert gate.life.state is S.DELIVERING


@pytest.mark.parametrize("outcome", [S.REWOUND, S.FAILED])
def test_the_batch_behind_one_not_committed_is_discarded_in_the_same_step(
    outcome: BatchState,
) -> None:
    lives = Lifecycles()
    ahead = _in(S.DELIVERED, lives)
    gate = _Gate(lives, ahead)
    ahead.settle(outcome, [gate.life], error=OSError("commit") if outcome is S.FAILED else None)
    assert gate.result() is False
    assert gate.life.state is S.DISCARDED


def test_a_batch_whose_worker_errored_behind_a_rewound_one_is_discarded_at_once() -> None:
    lives = Lifecycles()
    ahead, behind = _in(S.DELIVERED, lives), lives.new()
    behind.fail(RuntimeError("compute"))
    ahead.settle(S.REWOUND, [behind])
    assert behind.state is S.DISCARDED


def test_abandoning_every_batch_in_one_step_stops_the_worker_waiting_behind() -> None:
    lives = Lifecycles()
    ahead = _in(S.DELIVERING, lives)
    gate = _Gate(lives, ahead)
    lives.abandon([ahead, gate.life])
    assert gate.result() is False
    assert (ahead.state, gate.life.state) == (S.ABANDONED, S.ABANDONED)
