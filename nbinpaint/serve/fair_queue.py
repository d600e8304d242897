"""Fair queueing across participants: round robin over clients, with a limit on each one's outstanding requests.

A workshop's server runs one request per replica at a time. Served first come, first served, one
participant's 20-image sweep would make everyone else wait for all of it. Here the next request always comes
from the client served least recently that has something waiting (a client never served goes first; ties go
to the earlier request), so a sweep takes turns with single requests. A worked example, one replica:

1. ``sweep`` queues cells s1..s12; s1 starts at once (the sweep is served at turn 1).
2. ``ann`` and ``bob`` each queue one request while s1 runs.
3. Turn 2 goes to ``ann`` (never served), turn 3 to ``bob``, turn 4 back to ``sweep`` (s2): both single
   requests finish after at most one sweep cell, whatever the sweep's length.

`position` answers "how many requests run before this one", simulating the same rule, so the number shown
in a participant's panel is the number of turns they will actually wait (if nothing new arrives first).

Pure Python with no locking: the gateway calls it from its one event loop; tests drive it directly.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from nbinpaint.serve.errors import QueueFullError

__all__ = ["FairQueue", "Ticket"]

State = Literal["queued", "running", "done", "cancelled"]


@dataclass(eq=False)
class Ticket:
    """One request's place: who sent it, what it carries, and where it is (queued, running, done, cancelled)."""

    id: str
    client: str
    item: Any = None
    seq: int = 0
    state: State = "queued"
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None


class FairQueue:
    """Round robin across clients, each client's own requests in order.

    Parameters
    ----------
    max_outstanding:
        Requests one client may have queued or running at once; one more raises `QueueFullError`.
        None for no limit.
    """

    def __init__(self, max_outstanding: int | None = 4) -> None:
        if max_outstanding is not None and max_outstanding < 1:
            raise ValueError(f"max_outstanding must be at least 1 (or None), not {max_outstanding}")
        self.max_outstanding = max_outstanding
        self._waiting: dict[str, deque[Ticket]] = {}
        self._running: dict[str, Ticket] = {}
        self._tickets: dict[str, Ticket] = {}
        self._last_served: dict[str, int] = {}  # client -> turn number of its last start (0: never)
        self._turn = 0
        self._seq = itertools.count()
        self._ids = itertools.count()

    # ------------------------------------------------------------------ changing
    def submit(self, client: str, item: Any = None, *, ticket_id: str | None = None) -> Ticket:
        """Queue a request of ``client``; raises `QueueFullError` past the client's limit."""
        outstanding = self.outstanding(client)
        if self.max_outstanding is not None and outstanding >= self.max_outstanding:
            raise QueueFullError(
                f"you already have {outstanding} requests waiting or running on the workshop server, the most "
                f"one participant may have: wait for one to finish (or cancel one), then send this again."
            )
        ticket_id = ticket_id or f"t{next(self._ids)}"
        if ticket_id in self._tickets:
            raise ValueError(f"a request with id {ticket_id!r} is already queued or running")
        ticket = Ticket(ticket_id, client, item, seq=next(self._seq))
        self._waiting.setdefault(client, deque()).append(ticket)
        self._tickets[ticket_id] = ticket
        return ticket

    def pop(self) -> Ticket | None:
        """Start the next request by the round-robin rule (it becomes running), or None if none waits."""
        client = self._next_client(self._waiting, self._last_served)
        if client is None:
            return None
        ticket = self._waiting[client].popleft()
        if not self._waiting[client]:
            del self._waiting[client]
        self._turn += 1
        self._last_served[client] = self._turn
        ticket.state, ticket.started = "running", time.monotonic()
        self._running[ticket.id] = ticket
        return ticket

    def finish(self, ticket: Ticket) -> None:
        """A running request ended (result, error or cancel): it no longer counts against its client."""
        if self._running.pop(ticket.id, None) is not None:
            ticket.state = "done" if ticket.state == "running" else ticket.state
            ticket.finished = time.monotonic()
        self._tickets.pop(ticket.id, None)

    def cancel(self, ticket: Ticket) -> bool:
        """Remove a waiting request; True if it was waiting (a running one is the worker's to stop)."""
        queue = self._waiting.get(ticket.client)
        if ticket.state != "queued" or queue is None or ticket not in queue:
            return False
        queue.remove(ticket)
        if not queue:
            del self._waiting[ticket.client]
        ticket.state, ticket.finished = "cancelled", time.monotonic()
        self._tickets.pop(ticket.id, None)
        return True

    # ------------------------------------------------------------------ reading
    def get(self, ticket_id: str) -> Ticket | None:
        """The queued or running ticket with this id."""
        return self._tickets.get(ticket_id)

    def order(self) -> list[Ticket]:
        """Every waiting request in the order `pop` would start them."""
        waiting = {client: deque(queue) for client, queue in self._waiting.items()}
        served = dict(self._last_served)
        turn = self._turn
        ordered = []
        while (client := self._next_client(waiting, served)) is not None:
            ordered.append(waiting[client].popleft())
            if not waiting[client]:
                del waiting[client]
            turn += 1
            served[client] = turn
        return ordered

    def position(self, ticket: Ticket) -> int | None:
        """How many requests start before ``ticket``; None if it is not waiting."""
        if ticket.state != "queued":
            return None
        for index, other in enumerate(self.order()):
            if other is ticket:
                return index
        return None

    def outstanding(self, client: str) -> int:
        """Requests of ``client`` waiting or running."""
        running = sum(1 for ticket in self._running.values() if ticket.client == client)
        return len(self._waiting.get(client, ())) + running

    def running(self) -> list[Ticket]:
        """The requests started and not finished, oldest first."""
        return sorted(self._running.values(), key=lambda ticket: ticket.seq)

    def clients(self) -> dict[str, dict[str, int]]:
        """Per client: how many requests wait and how many run."""
        names = set(self._waiting) | {ticket.client for ticket in self._running.values()}
        return {
            name: {
                "queued": len(self._waiting.get(name, ())),
                "running": sum(1 for t in self._running.values() if t.client == name),
            }
            for name in sorted(names)
        }

    def __len__(self) -> int:
        """Requests waiting (not running)."""
        return sum(len(queue) for queue in self._waiting.values())

    def __iter__(self) -> Iterator[Ticket]:
        return iter(self.order())

    @staticmethod
    def _next_client(waiting: dict[str, deque[Ticket]], served: dict[str, int]) -> str | None:
        """The waiting client served least recently; never served first; ties to the earliest request."""
        if not waiting:
            return None
        return min(waiting, key=lambda client: (served.get(client, 0), waiting[client][0].seq))
