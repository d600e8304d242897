"""The workshop gateway without Ray: routes, tokens, queue positions, cancel, clients that vanish, dead replicas.

A scripted `Workers` stands in for the pipeline replicas: each job reports "started" and then waits for the
test to release it, so the tests decide exactly what runs when.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from typing import Any

import pytest

from nbinpaint.requests import InpaintRequest
from nbinpaint.serve.config import ServerConfig
from nbinpaint.serve.errors import ReplicaDiedError
from nbinpaint.serve.gateway import Gateway
from nbinpaint.serve.policy import Limits
from nbinpaint.serve.protocol import read_event, request_to_wire
from tests.conftest import make_scene


def run(scenario: Any) -> None:
    """Run ``scenario()`` on a fresh event loop in its own thread.

    A thread, because the browser tests' Playwright (sync API, session-scoped) keeps an event loop running
    in the main thread for the whole session, and ``asyncio.run`` refuses to start beside a running loop.
    """
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, scenario()).result(timeout=120)


BACKEND = "classical/telea"  # allowed on every server; the scripted replicas never run it anyway


class ScriptedWorkers:
    """Replicas whose jobs start at once and end when the test says how (`finish`)."""

    capacity = 1

    def __init__(self) -> None:
        self.started: list[str] = []
        self.endings: dict[str, asyncio.Future[str]] = {}

    async def stream(self, kind: str, payload: dict[str, Any]):
        job = payload["job"]
        self.started.append(job)
        ending = self.endings.setdefault(job, asyncio.get_running_loop().create_future())
        yield {"event": "started", "replica": "fake", "pid": 0}
        how = await ending
        if how == "die":
            raise ReplicaDiedError("the server's replica fake running your request stopped")
        yield {"event": "result", "job": job}

    def finish(self, job: str, how: str = "result") -> None:
        self.endings.setdefault(job, asyncio.get_running_loop().create_future()).set_result(how)

    async def call(self, method: str, **kwargs: Any) -> Any:
        return {"replica": "fake", "device": "cpu", "models": []}

    def deployments(self) -> dict[str, Any]:
        return {}


PARTICIPANTS = ("ann", "bob", "cy")


def gateway(**limits: Any) -> tuple[Gateway, ScriptedWorkers]:
    """A gateway over scripted replicas; each of `PARTICIPANTS` has a token of their own, ``t-<name>``."""
    workers = ScriptedWorkers()
    config = ServerConfig(models=(), users={name: f"t-{name}" for name in PARTICIPANTS}, limits=Limits(**limits))
    return Gateway(config, workers, heartbeat_s=0.05), workers


def body(job: str, **changes: Any) -> dict[str, Any]:
    image, mask = make_scene()
    request = InpaintRequest(image=image, mask=mask, model=BACKEND).replace(**changes)
    return {"kind": "run", "job": job, "request": request_to_wire(request)}


async def send(gw: Gateway, method: str, path: str, data: Any = None, *, token: str = "", client: str = "ann"):
    """A request from participant ``client``, with their own token (or ``token``)."""
    headers = {"Authorization": f"Bearer {token or 't-' + client}"}
    raw = data if isinstance(data, bytes) else json.dumps(data or {}).encode()
    return await gw.handle(method, path, headers, raw)


async def next_event(reply: Any, skip: tuple[str, ...] = ("heartbeat",)) -> dict[str, Any]:
    while True:
        event = read_event(await asyncio.wait_for(reply.stream.__anext__(), 5))
        if event["event"] not in skip:
            return event


async def until(condition: Any, timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


def test_routes_tokens_and_body_checks():
    async def scenario() -> None:
        gw, _ = gateway(max_body_bytes=100_000)
        assert (await gw.handle("GET", "/v1/health", {}, b"")).status == 200  # no token needed
        assert (await gw.handle("GET", "/v1/info", {}, b"")).status == 401
        refused = await send(gw, "GET", "/v1/info", token="wrong")
        assert refused.status == 401 and refused.body["error"]["type"] == "AuthenticationError"
        info = await send(gw, "GET", "/v1/info")
        assert info.body["client"] == "ann" and info.body["limits"]["max_body_bytes"] == 100_000
        assert (await send(gw, "GET", "/v1/nothing")).status == 404
        assert (await send(gw, "POST", "/v1/generate", b"{not json")).body["error"]["type"] == "InvalidRequestError"
        too_big = await send(gw, "POST", "/v1/generate", b"x" * 100_001)
        assert too_big.status == 413 and too_big.body["error"]["type"] == "ServerLimitError"
        bad = await send(gw, "POST", "/v1/generate", body("j", strength=2.0))
        assert bad.status == 400 and bad.body["error"]["type"] == "InvalidRequestError"
        outside = await send(gw, "POST", "/v1/generate", body("j", model="someone/else"))
        assert outside.status == 403 and outside.body["error"]["type"] == "ModelNotAllowedError"
        jpeg = await send(gw, "POST", "/v1/generate", {**body("j"), "image_format": "jpeg"})
        assert jpeg.status == 400 and "one of png, raw, not 'jpeg'" in jpeg.body["error"]["message"]

    run(scenario)


def test_a_waiting_request_hears_its_position_and_starts_when_the_replica_is_free():
    async def scenario() -> None:
        gw, workers = gateway()
        first = await send(gw, "POST", "/v1/generate", body("one"), client="ann")
        assert (await next_event(first))["event"] == "accepted"
        assert (await next_event(first))["event"] == "started"
        second = await send(gw, "POST", "/v1/generate", body("two"), client="bob")
        assert (await next_event(second))["event"] == "accepted"
        assert await next_event(second) == {"event": "queue", "position": 0}
        workers.finish("ann/one")
        assert (await next_event(first))["event"] == "result"
        assert (await next_event(second, skip=("heartbeat", "queue")))["event"] == "started"
        workers.finish("bob/two")
        assert (await next_event(second))["event"] == "result"
        assert not gw.queue.running() and len(gw.queue) == 0

    run(scenario)


def test_cancel_removes_a_waiting_request_and_flags_a_running_one():
    async def scenario() -> None:
        gw, workers = gateway()
        running = await send(gw, "POST", "/v1/generate", body("one"))
        waiting = await send(gw, "POST", "/v1/generate", body("two"))
        await next_event(running), await next_event(running)
        assert (await send(gw, "POST", "/v1/cancel", {"job": "two"}, client="bob")).body == {"state": "unknown"}
        assert (await send(gw, "POST", "/v1/cancel", {"job": "two"})).body == {"state": "cancelled"}
        assert (await next_event(waiting, skip=("heartbeat", "accepted", "queue")))["event"] == "cancelled"
        assert (await send(gw, "POST", "/v1/cancel", {"job": "one"})).body == {"state": "stopping"}
        assert await gw.wait_cancelled("ann/one", 0), "the replica running it hears of it"
        workers.finish("ann/one")
        assert (await next_event(running))["event"] == "result"

    run(scenario)


def test_a_replicas_open_wait_answers_when_its_job_is_cancelled_or_ends():
    async def scenario() -> None:
        gw, workers = gateway()
        running = await send(gw, "POST", "/v1/generate", body("one"))
        await next_event(running), await next_event(running)
        loop = asyncio.get_running_loop()
        assert await gw.wait_cancelled("ann/one", 0.05) is False  # nothing happened: it times out

        waiting = asyncio.create_task(gw.wait_cancelled("ann/one", 30))
        await asyncio.sleep(0.05)
        assert not waiting.done(), "an open wait holds until something happens"
        started = loop.time()
        await send(gw, "POST", "/v1/cancel", {"job": "one"})
        assert await asyncio.wait_for(waiting, 1) is True and loop.time() - started < 0.5
        assert await gw.wait_cancelled("ann/one", 30) is True  # asked after the cancel: answered at once
        workers.finish("ann/one")
        assert (await next_event(running))["event"] == "result"

        second = await send(gw, "POST", "/v1/generate", body("two"))
        await next_event(second), await next_event(second)
        waiting = asyncio.create_task(gw.wait_cancelled("ann/two", 30))
        await asyncio.sleep(0.05)
        workers.finish("ann/two")  # the job ends without a cancel: the open wait answers False, now
        assert await asyncio.wait_for(waiting, 1) is False
        assert (await next_event(second))["event"] == "result"
        assert gw._cancel_waiters == {}, "no wait is left behind"

    run(scenario)


def test_a_client_that_goes_away_frees_its_place_even_if_it_never_read_its_stream():
    async def scenario() -> None:
        gw, workers = gateway()
        first = await send(gw, "POST", "/v1/generate", body("one"))
        await next_event(first), await next_event(first)
        gone = await send(gw, "POST", "/v1/generate", body("two"), client="bob")
        await next_event(gone)
        await gone.stream.aclose()  # bob's kernel disconnected while waiting
        await until(lambda: len(gw.queue) == 0)
        silent = await send(gw, "POST", "/v1/generate", body("three"), client="cy")  # cy's stream never read
        workers.finish("ann/one")
        await until(lambda: "cy/three" in workers.started)
        assert "bob/two" not in workers.started
        workers.finish("cy/three")
        await until(lambda: not gw.queue.running())
        assert silent.stream is not None

    run(scenario)


def test_a_dead_replica_is_reported_and_the_next_request_runs():
    async def scenario() -> None:
        gw, workers = gateway()
        doomed = await send(gw, "POST", "/v1/generate", body("one"))
        after = await send(gw, "POST", "/v1/generate", body("two"), client="bob")
        await next_event(doomed), await next_event(doomed)
        workers.finish("ann/one", how="die")
        error = await next_event(doomed)
        assert error["event"] == "error" and error["error"]["type"] == "ReplicaDiedError"
        assert (await next_event(after, skip=("heartbeat", "accepted", "queue")))["event"] == "started"
        workers.finish("bob/two")
        assert (await next_event(after))["event"] == "result"

    run(scenario)


@pytest.mark.parametrize("limit", [1, 2])
def test_the_per_client_limit_is_answered_with_429(limit):
    async def scenario() -> None:
        gw, _ = gateway(max_outstanding=limit)
        for index in range(limit):
            assert (await send(gw, "POST", "/v1/generate", body(f"j{index}"))).status == 200
        refused = await send(gw, "POST", "/v1/generate", body("extra"))
        assert refused.status == 429 and refused.body["error"]["type"] == "QueueFullError"
        assert (await send(gw, "POST", "/v1/generate", body("other"), client="bob")).status == 200

    run(scenario)
