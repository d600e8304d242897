"""The workshop server's fair queue, without Ray: round robin across clients, limits, positions, cancel."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbinpaint.serve.errors import QueueFullError
from nbinpaint.serve.fair_queue import FairQueue


def drain(queue: FairQueue) -> list[str]:
    """Start and finish every waiting request; their ids in start order."""
    started = []
    while (ticket := queue.pop()) is not None:
        started.append(ticket.id)
        queue.finish(ticket)
    return started


def test_a_long_sweep_takes_turns_with_single_requests():
    queue = FairQueue(max_outstanding=None)
    for cell in range(12):
        queue.submit("sweep", ticket_id=f"s{cell}")
    first = queue.pop()
    assert first.id == "s0"
    for name in ("ann", "bob", "cy"):
        queue.submit(name, ticket_id=name)
    queue.finish(first)
    order = drain(queue)
    # Each single request starts before the sweep's next cell after it (never served goes first), and the
    # rest of the sweep follows in its own order.
    assert order[:3] == ["ann", "bob", "cy"]
    assert order[3:] == [f"s{cell}" for cell in range(1, 12)]


def test_clients_alternate_in_round_robin():
    queue = FairQueue(max_outstanding=None)
    for index in range(3):
        queue.submit("a", ticket_id=f"a{index}")
        queue.submit("b", ticket_id=f"b{index}")
    queue.submit("c", ticket_id="c0")
    assert drain(queue) == ["a0", "b0", "c0", "a1", "b1", "a2", "b2"]


def test_a_client_that_comes_back_does_not_jump_ahead_of_waiting_ones():
    # A sequential sweep submits its next cell as soon as one finishes: it must still wait its turn.
    queue = FairQueue(max_outstanding=None)
    queue.submit("sweep", ticket_id="s0")
    running = queue.pop()
    queue.submit("ann", ticket_id="ann")
    queue.submit("bob", ticket_id="bob")
    queue.finish(running)
    queue.submit("sweep", ticket_id="s1")
    assert drain(queue) == ["ann", "bob", "s1"]


def test_per_client_limit_counts_waiting_and_running_requests():
    queue = FairQueue(max_outstanding=2)
    queue.submit("ann")
    running = queue.pop()
    queue.submit("ann")
    with pytest.raises(QueueFullError, match="wait for one to finish"):
        queue.submit("ann")
    queue.submit("bob")  # another client is not affected
    assert queue.outstanding("ann") == 2
    queue.finish(running)
    queue.submit("ann")  # room again once one finished
    assert queue.outstanding("ann") == 2


def test_cancel_removes_a_waiting_request_and_moves_the_others_up():
    queue = FairQueue(max_outstanding=None)
    tickets = [queue.submit(name) for name in ("a", "b", "c")]
    assert [queue.position(t) for t in tickets] == [0, 1, 2]
    assert queue.cancel(tickets[1])
    assert tickets[1].state == "cancelled"
    assert queue.position(tickets[1]) is None
    assert [queue.position(t) for t in (tickets[0], tickets[2])] == [0, 1]
    running = queue.pop()
    assert not queue.cancel(running), "a running request is the replica's to stop, not the queue's"
    assert queue.get(running.id) is running


def test_duplicate_ids_and_bad_limits_are_refused():
    queue = FairQueue()
    queue.submit("a", ticket_id="job")
    with pytest.raises(ValueError, match="already queued"):
        queue.submit("b", ticket_id="job")
    with pytest.raises(ValueError, match="at least 1"):
        FairQueue(max_outstanding=0)


def test_clients_summary():
    queue = FairQueue(max_outstanding=None)
    queue.submit("a")
    queue.submit("a")
    queue.submit("b")
    queue.pop()
    assert queue.clients() == {"a": {"queued": 1, "running": 1}, "b": {"queued": 1, "running": 0}}
    assert len(queue) == 2


# A random history of submits, pops and finishes: after it, the positions the queue reports must be exactly
# the order in which `pop` then starts the waiting requests.
actions = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), st.sampled_from(["a", "b", "c", "d"])),
        st.tuples(st.just("pop"), st.none()),
        st.tuples(st.just("finish"), st.none()),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(actions)
def test_reported_positions_are_the_start_order(history):
    queue = FairQueue(max_outstanding=None)
    running = []
    for action, client in history:
        if action == "submit":
            queue.submit(client)
        elif action == "pop" and (ticket := queue.pop()) is not None:
            running.append(ticket)
        elif action == "finish" and running:
            queue.finish(running.pop(0))
    waiting = queue.order()
    promised = {ticket.id: queue.position(ticket) for ticket in waiting}
    client_of = {ticket.id: ticket.client for ticket in waiting}
    started = drain(queue)
    assert [promised[ticket_id] for ticket_id in started] == list(range(len(waiting)))
    # Round robin: while two clients both still wait, neither has started more than one request more.
    remaining = Counter(client_of.values())
    starts: Counter[str] = Counter()
    for ticket_id in started:
        starts[client_of[ticket_id]] += 1
        remaining[client_of[ticket_id]] -= 1
        active = [client for client, left in remaining.items() if left > 0]
        assert all(abs(starts[a] - starts[b]) <= 1 for a in active for b in active), (started, client_of)
