"""The workshop server's front door: tokens, validation, the fair queue, cancel, and the admin status.

Every HTTP request reaches one `Gateway` (asyncio, no Ray here: `nbinpaint.serve.app` wires it to Ray Serve
and to the pipeline replicas through a `Workers` object). A generate request is decoded, validated exactly
as a local run validates it (`InpaintRequest.validated`, so a mistake gets the local message), checked
against the allow-list and limits, and queued; its response is an NDJSON stream of events
(`nbinpaint.serve.protocol.EVENTS`): the queue position while it waits, then what the replica reports.
A request starts when a replica is free and the fair queue says it is its turn; a chain takes one turn per
stage (`Gateway._run_job`). Cancel is a separate call: a waiting request leaves the queue; a running one is
flagged, and the replica polls the flag. The token is checked from the headers before the body is read,
and the body is read only up to its limit (`Gateway.handle`); images arrive as pixels, never as a path or
URL to open (`nbinpaint.serve.protocol.request_from_wire`).

Endpoints (under ``/v1``): ``GET health`` (no token), ``POST session`` (who the token says the caller is; on a
shared token, a new session: `nbinpaint.serve.auth`), ``GET info``, ``GET status`` (admin), ``POST generate``,
``POST cancel``, ``POST parameters``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from nbinpaint._version import __version__
from nbinpaint.errors import InvalidRequestError, NbinpaintError
from nbinpaint.serve import errors as serve_errors
from nbinpaint.serve.auth import Identity, client_id
from nbinpaint.serve.config import ServerConfig
from nbinpaint.serve.fair_queue import FairQueue, Ticket
from nbinpaint.serve.protocol import (
    API,
    IMAGE_FORMATS,
    PROTOCOL_VERSION,
    SESSION_HEADER,
    decode,
    error_from_wire,
    error_to_wire,
    request_from_wire,
    write_event,
)

__all__ = ["Gateway", "Reply", "Workers"]

TERMINAL = ("result", "cancelled", "error")
CANCELLED_WHILE_QUEUED = "generation cancelled before it started (it was waiting in the queue); nothing ran."
_STATUS_CODES: tuple[tuple[type[Exception], int], ...] = (
    (serve_errors.AuthenticationError, 401),
    (serve_errors.ModelNotAllowedError, 403),
    (serve_errors.QueueFullError, 429),
    (serve_errors.ServerLimitError, 413),
    (serve_errors.ReplicaDiedError, 503),
    (serve_errors.ServerUnavailableError, 503),  # e.g. the hub that vouches for tokens cannot be reached
    (NbinpaintError, 400),
)


class Workers(Protocol):
    """The pipeline replicas, as the gateway uses them (`nbinpaint.serve.app.RayWorkers` is the real one)."""

    capacity: int
    """How many jobs run at once: one per replica, or ``max_batch_size`` per replica with batching on."""

    def stream(self, kind: str, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Run a job on a free replica; its events. Raises `ReplicaDiedError` if the replica dies."""
        ...

    async def call(self, method: str, **kwargs: Any) -> Any:
        """Call a replica's ``parameters`` or ``status``."""
        ...

    def deployments(self) -> dict[str, Any]:
        """The serving engine's own view of its replicas (states and counts)."""
        ...


@dataclass
class Reply:
    """An HTTP answer: a status and a JSON body, or a stream of NDJSON lines."""

    status: int = 200
    body: Any = None
    stream: AsyncIterator[bytes] | None = None

    @classmethod
    def error(cls, error: BaseException) -> Reply:
        status = next((code for cls_, code in _STATUS_CODES if isinstance(error, cls_)), 500)
        return cls(status, {"error": error_to_wire(error)})


class Gateway:
    """Routes requests, runs the fair queue and relays replica events.

    Parameters
    ----------
    config:
        The server's settings (tokens, allow-list, limits).
    workers:
        The replicas.
    heartbeat_s:
        Longest silence on a stream: a waiting or running request gets an event at least this often.
    """

    def __init__(self, config: ServerConfig, workers: Workers, *, heartbeat_s: float = 5.0) -> None:
        self.config = config
        self.tokens = config.tokens()
        self.allow = config.allow_list()
        self.limits = config.limits
        self.workers = workers
        self.queue = FairQueue(config.limits.max_outstanding)
        self.heartbeat_s = heartbeat_s
        self._changed: asyncio.Event | None = None
        self._cancelled: dict[str, float] = {}  # job -> when; kept a while, for replicas asking late
        self._cancel_waiters: dict[str, set[asyncio.Event]] = {}  # job -> replicas' open `wait_cancelled` calls
        self._replicas: dict[str, dict[str, Any]] = {}
        self._parameters: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._routes = {
            ("GET", "health"): self._health,
            ("POST", "session"): self._session,
            ("GET", "info"): self._info,
            ("GET", "status"): self._status,
            ("POST", "generate"): self._generate,
            ("POST", "cancel"): self._cancel,
            ("POST", "parameters"): self._lookup,
        }

    # ------------------------------------------------------------------ HTTP
    async def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes | AsyncIterator[bytes]
    ) -> Reply:
        """Answer one HTTP request; every failure becomes a JSON error with the exception's own type.

        ``body`` is the request's body, or better its chunks as they arrive (Starlette's ``request.stream()``):
        the token is checked from the headers first, and the body is read only for a client who has one,
        and only up to ``max_body_bytes`` (its declared ``Content-Length`` is refused before reading; a
        missing or false one, once the bytes read pass the limit). So a client without a token, or with a
        huge body, costs the server a few bytes of headers, whatever it sends.
        """
        try:
            name = path.rstrip("/").removeprefix(API + "/") if path.startswith(API + "/") else None
            route = self._routes.get((method.upper(), name or ""))
            if route is None:
                known = ", ".join(f"{m} {API}/{n}" for m, n in self._routes)
                return Reply(404, {"error": {"type": "ServerError", "message": f"no such endpoint; known: {known}"}})
            if name == "health":
                return await route(Identity("anonymous"), {})
            lowered = {key.lower(): value for key, value in headers.items()}
            identity = await self.authenticate(lowered, opening=name == "session")
            data = await self._read_json(lowered, body)
            return await route(identity, data)
        except Exception as error:  # the client gets the same exception type and message
            return Reply.error(error)

    async def authenticate(self, headers: Mapping[str, str], *, opening: bool = False) -> Identity:
        """Who sent a request, from its (lower-cased) headers alone; raises `AuthenticationError`.

        Never from a name the client sends (``X-Nbinpaint-Client`` is ignored): from its token, the session
        the server gave it on a shared token, or its hub (see `nbinpaint.serve.auth`). ``opening``: the request
        opens a session, so a shared token needs none yet.
        """
        return await self.tokens.authenticate(
            headers.get("authorization"), headers.get(SESSION_HEADER.lower()), opening=opening
        )

    async def _read_json(self, headers: Mapping[str, str], body: bytes | AsyncIterator[bytes]) -> dict[str, Any]:
        """The body as a JSON object, read only up to ``max_body_bytes`` (`ServerLimitError` past it)."""
        limit = self.limits.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and not declared.strip().isdigit():
            raise InvalidRequestError(f"the request's Content-Length {declared!r} is not a number of bytes.")
        if declared is not None and int(declared) > limit:
            raise self._too_big(int(declared))
        if isinstance(body, (bytes, bytearray)):
            if len(body) > limit:
                raise self._too_big(len(body))
            raw = bytes(body)
        else:
            chunks, size = [], 0
            async for chunk in body:
                size += len(chunk)
                if size > limit:  # stop reading: the rest never enters this process
                    raise self._too_big(f"more than {limit}")
                chunks.append(chunk)
            raw = b"".join(chunks)
        try:
            data = json.loads(raw) if raw else {}
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InvalidRequestError(f"the request body is not JSON ({error}).") from error
        if not isinstance(data, dict):
            raise InvalidRequestError("the request body must be a JSON object.")
        return data

    def _too_big(self, size: Any) -> serve_errors.ServerLimitError:
        return serve_errors.ServerLimitError(
            f"the request is {size} bytes, above this workshop server's limit of {self.limits.max_body_bytes}: "
            "send a smaller image."
        )

    async def wait_cancelled(self, job: str, timeout: float) -> bool:
        """Whether job ``job`` was cancelled, answered as soon as it is, or after ``timeout`` seconds or when the
        job ends (then False). The replica running a job keeps one such call open (a long poll): a cancel
        reaches it in one round trip, and nothing is sent while nothing happens. Polling every 20 ms instead
        cost the replica and the gateway about a tenth of a 2-core machine's CPU, taken from the run."""
        if job in self._cancelled:
            return True
        event = asyncio.Event()
        self._cancel_waiters.setdefault(job, set()).add(event)
        try:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
        finally:
            waiters = self._cancel_waiters.get(job, set())
            waiters.discard(event)
            if not waiters:
                self._cancel_waiters.pop(job, None)
        return job in self._cancelled

    def _wake_waiters(self, job: str) -> None:
        for event in self._cancel_waiters.get(job, ()):
            event.set()

    # ------------------------------------------------------------------ endpoints
    async def _health(self, identity: Identity, data: dict[str, Any]) -> Reply:
        return Reply(200, {"ok": True, "protocol": PROTOCOL_VERSION, "auth": self.tokens.accepts})

    async def _session(self, identity: Identity, data: dict[str, Any]) -> Reply:
        name = data.get("name") if isinstance(data.get("name"), str) else None
        return Reply(200, self.tokens.open_session(identity, name, self.queue.outstanding))

    async def _info(self, identity: Identity, data: dict[str, Any]) -> Reply:
        if not self._replicas:  # nothing reported yet (no request ran): ask one replica
            with contextlib.suppress(Exception):
                self._remember(await asyncio.wait_for(self.workers.call("status"), timeout=5))
        return Reply(
            200,
            {
                "protocol": PROTOCOL_VERSION,
                "nbinpaint": __version__,
                "client": identity.client,
                "admin": identity.admin,
                "models": list(self.config.models),
                "allowed": list(self.allow),
                "limits": self.limits.as_dict(),
                "replicas": getattr(self.workers, "replicas", self.workers.capacity),
                "max_batch_size": self.config.max_batch_size,
                "waiting": len(self.queue),
                "loaded": [
                    {**row, "replica": replica["replica"], "device": replica["device"]}
                    for replica in self._replicas.values()
                    for row in replica.get("models", [])
                ],
            },
        )

    async def _status(self, identity: Identity, data: dict[str, Any]) -> Reply:
        if not identity.admin:
            raise serve_errors.AuthenticationError("the server status needs the admin token (--admin-token).")
        with contextlib.suppress(Exception):  # a fresh report from one replica; the others as last seen
            self._remember(await asyncio.wait_for(self.workers.call("status"), timeout=10))
        now = time.monotonic()
        running = [
            {
                "job": ticket.id.split("/", 1)[-1],
                "client": ticket.client,
                "replica": ticket.item.get("replica"),
                "model": ticket.item.get("model"),
                "running_s": round(now - (ticket.started or now), 2),
            }
            for ticket in self.queue.running()
        ]
        waiting = [
            {"client": ticket.client, "model": ticket.item.get("model"), "waiting_s": round(now - ticket.submitted, 2)}
            for ticket in self.queue.order()
        ]
        return Reply(
            200,
            {
                "capacity": self.workers.capacity,
                "waiting": waiting,
                "running": running,
                "clients": self.queue.clients(),
                "replicas": list(self._replicas.values()),
                "deployments": self.workers.deployments(),
                "limits": self.limits.as_dict(),
            },
        )

    async def _lookup(self, identity: Identity, data: dict[str, Any]) -> Reply:
        names = ("model", "task", "dtype", "variant", "controlnet", "lora", "lora_scale", "enable_pag")
        key = tuple(data.get(name) for name in names)
        model, task = key[0], key[1] or "inpaint"
        if not isinstance(model, str):
            raise InvalidRequestError("parameters needs a model: the repo id to look up.")
        self.allow.check_id(model, "model")
        self.allow.check_id(key[4], "controlnet")
        self.allow.check_id(key[5], "lora")
        if key not in self._parameters:
            how = dict(zip(names[2:], key[2:], strict=True))
            how["enable_pag"] = how["enable_pag"] is True
            answer = await self.workers.call("parameters", model=model, task=task, **how)
            if "error" in answer:
                raise error_from_wire(answer["error"])
            self._parameters[key] = answer
        return Reply(200, self._parameters[key])

    async def _cancel(self, identity: Identity, data: dict[str, Any]) -> Reply:
        ticket = self.queue.get(f"{identity.client}/{client_id(str(data.get('job')))}")
        if ticket is None:
            return Reply(200, {"state": "unknown"})  # finished already, or not this client's
        if self.queue.cancel(ticket):
            self._notify()
            return Reply(200, {"state": "cancelled"})
        self._flag(ticket.id)
        return Reply(200, {"state": "stopping"})

    async def _generate(self, identity: Identity, data: dict[str, Any]) -> Reply:
        kind = data.get("kind", "run")
        payload = self._payload(kind, data)
        job = client_id(str(data.get("job") or ""), fallback="")
        if not job:
            raise InvalidRequestError("generate needs a job id (any short name the client picks, e.g. a uuid).")
        ticket = self.queue.submit(identity.client, payload, ticket_id=f"{identity.client}/{job}")
        payload["job"] = ticket.id
        events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        # The job runs in its own task, whether or not anyone reads its stream: a client that vanished before
        # its stream began must not hold a replica's turn forever.
        task = asyncio.create_task(self._run_job(ticket, kind, events))
        self._kick()
        return Reply(200, stream=self._stream(ticket, task, events))

    # ------------------------------------------------------------------ checking a job
    def _payload(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        """The job a generate body describes, decoded and checked; raises before anything is queued."""
        payload = self._job_payload(kind, data)
        images = data.get("image_format", "png")  # how the client wants images back (older clients: PNG)
        if images not in IMAGE_FORMATS:
            raise InvalidRequestError(f"image_format must be one of {', '.join(IMAGE_FORMATS)}, not {images!r}.")
        return {**payload, "image_format": images}

    def _job_payload(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        max_pixels = self.limits.max_pixels
        if kind == "run":
            request = request_from_wire(data.get("request"), max_pixels=max_pixels)
            self._check(request.validated())  # the worker validates again, as a local run does
            return {"request": request, **_reporting(data), "model": request.model}
        if kind == "stage":
            request = request_from_wire(data.get("request"), max_pixels=max_pixels)
            self._check(request)  # validated on the replica, once the latents take the image's place
            latents = self._latents(data.get("latents"))
            chain = data.get("chain")
            if chain is not None and not isinstance(chain, dict):
                raise InvalidRequestError("chain must be a dict of JSON values (it goes into the recipe) or None.")
            return {"request": request, "latents": latents, "chain": chain, **_reporting(data), "model": request.model}
        if kind == "chain":
            wires = data.get("requests")
            if not isinstance(wires, list) or not wires:
                raise InvalidRequestError("a chain needs a non-empty list of requests.")
            self.limits.check_chain_stages(len(wires))  # before decoding any of them
            requests = [request_from_wire(wire, max_pixels=max_pixels) for wire in wires]
            for index, request in enumerate(requests[1:], 2):
                if request.image is not None:  # as run_chain refuses it
                    raise InvalidRequestError(
                        f"stage {index} of the chain has an image, but it receives stage {index - 1}'s output: "
                        "leave its image=None."
                    )
            for request in requests:
                self._check(request)
            self.limits.check_chain(requests)  # the steps requests set; the replica adds pipeline defaults
            name = str(data.get("name") or "chain")
            return {"requests": requests, "name": name, **_reporting(data), "model": requests[0].model}
        raise InvalidRequestError(f"unknown job kind {kind!r}: one of run, stage, chain.")

    def _latents(self, wire: Any) -> Any:
        """A stage's starting latents: None or one 4-dimensional tensor whose image is within the limits."""
        if wire is None:
            return None
        latents = decode(wire, where="latents")
        if getattr(latents, "ndim", None) != 4 or not hasattr(latents, "numel"):
            raise InvalidRequestError(
                "latents must be a tensor of shape (batch, channels, height/8, width/8), as a stage with "
                "output_type='latent' returns, or None."
            )
        batch, _, height, width = latents.shape
        if batch > self.limits.max_images or height * width * 64 > self.limits.max_pixels:
            raise serve_errors.ServerLimitError(
                f"latents of shape {tuple(latents.shape)} make {batch} image(s) of {width * 8}x{height * 8} pixels, "
                f"above this workshop server's limits ({self.limits.max_images} images of "
                f"{self.limits.max_pixels} pixels): run the earlier stage smaller."
            )
        return latents

    def _check(self, request: Any) -> None:
        self.allow.check(request)
        self.limits.check(request)

    # ------------------------------------------------------------------ queueing and relaying
    def _notify(self) -> None:
        """Wake every stream waiting for a change of queue positions."""
        if self._changed is not None:
            self._changed.set()
        self._changed = asyncio.Event()

    def _kick(self) -> None:
        """Start waiting jobs while replicas are free, in fair-queue order."""
        while len(self.queue.running()) < self.workers.capacity and self.queue.pop() is not None:
            pass
        self._notify()

    def _flag(self, job: str) -> None:
        now = time.monotonic()
        self._cancelled = {j: t for j, t in self._cancelled.items() if now - t < 600}
        self._cancelled[job] = now
        self._wake_waiters(job)

    def _remember(self, status: Any) -> None:
        if isinstance(status, dict) and status.get("replica"):
            self._replicas[status["replica"]] = {**status, "reported": time.strftime("%H:%M:%S")}

    async def _run_job(self, ticket: Ticket, kind: str, events: asyncio.Queue[dict[str, Any] | None]) -> None:
        """One job's life: wait for its turn (reporting the queue position), run it, free its replica.

        A chain takes one turn of the fair queue per stage: after each stage its ticket goes back in the
        queue, behind whoever else waits, so a long chain holds a replica for one stage at a time (a 60-stage
        chain made a 2-step request wait minutes when it ran in one turn). The stages' results stay here
        until the last one, then go to the client as one chain result, as before; what one stage hands the
        next (its latents or image, and the hand-off plan the first stage makes) travels with the next
        stage's job (`nbinpaint.serve.worker.WorkerCore._chain_stage`). Each stage streams its step and
        preview events as a run does; a cancel stops the running stage within one step, or the chain while
        it waits for its next turn.
        """
        stages = len(ticket.item["requests"]) if kind == "chain" else 1
        chain = dict(ticket.item)
        results: list[dict[str, Any]] = []
        plan: list[dict[str, str]] | None = None
        output: Any = None
        try:
            for index in range(stages):
                if index:
                    ticket = self._requeue(ticket)
                if kind == "chain":
                    ticket.item = {
                        **chain,
                        "index": index,
                        "handoffs": plan,
                        "input": output,
                        "model": chain["requests"][index].model,
                    }
                waiting = f"chain cancelled before stage {index + 1} of {stages} started; no later stage ran."
                if not await self._turn(ticket, events, CANCELLED_WHILE_QUEUED if index == 0 else waiting):
                    return
                result = await self._run_turn(ticket, "chain_stage" if kind == "chain" else kind, events)
                if result is None:
                    return
                if kind != "chain":
                    events.put_nowait(result)
                    return
                results.append(result["stage"])
                plan, output = result["handoffs"], result["output"]
                if ticket.id in self._cancelled and index + 1 < stages:
                    events.put_nowait(
                        {
                            "event": "cancelled",
                            "message": f"chain cancelled after stage {index + 1} of {stages}; no later stage ran.",
                        }
                    )
                    return
            answer = {"name": chain["name"], "stages": results, "handoffs": plan}
            events.put_nowait({"event": "result", "chain": answer})
        finally:
            self.queue.cancel(ticket)  # if still waiting (this task was cancelled)
            self.queue.finish(ticket)
            self._wake_waiters(ticket.id)  # the job is over: a replica's open wait_cancelled answers now
            self._kick()
            events.put_nowait(None)

    def _requeue(self, ticket: Ticket) -> Ticket:
        """``ticket``'s job again at the back of the fair queue (same id, so a cancel still finds it)."""
        self.queue.finish(ticket)  # then submit, with no await between: the client's count stays the same
        self._wake_waiters(ticket.id)
        again = self.queue.submit(ticket.client, ticket.item, ticket_id=ticket.id)
        self._kick()
        return again

    async def _turn(self, ticket: Ticket, events: asyncio.Queue[dict[str, Any] | None], cancelled: str) -> bool:
        """Wait until ``ticket`` runs, reporting its position; False (and a cancelled event saying ``cancelled``)
        if it was cancelled while it waited."""
        while ticket.state == "queued":
            position = self.queue.position(ticket)
            if position is not None:
                events.put_nowait({"event": "queue", "position": position})
            if self._changed is None:
                self._notify()
            changed = self._changed
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), self.heartbeat_s)  # woken by any queue change
        if ticket.state == "cancelled":
            events.put_nowait({"event": "cancelled", "message": cancelled})
            return False
        return True

    async def _run_turn(
        self, ticket: Ticket, kind: str, events: asyncio.Queue[dict[str, Any] | None]
    ) -> dict[str, Any] | None:
        """Run a started ticket, passing its events on; its result event, or None after a cancelled or error."""
        async with contextlib.aclosing(self._relay(ticket, kind)) as relay:
            async for event in relay:
                if event["event"] == "result":
                    return event
                events.put_nowait(event)
                if event["event"] in TERMINAL:
                    return None
        return None

    async def _stream(
        self, ticket: Ticket, task: asyncio.Task[None], events: asyncio.Queue[dict[str, Any] | None]
    ) -> AsyncIterator[bytes]:
        """The NDJSON lines of one job: accepted, then whatever its task reports, to the terminal event."""
        ended = False
        try:
            yield write_event({"event": "accepted", "job": ticket.id.split("/", 1)[-1]})
            while (event := await events.get()) is not None:
                ended = event["event"] in TERMINAL
                yield write_event(event)
                if ended:
                    return
        finally:
            if not ended and not task.done():  # the client went away: stop its job (a running one after its step)
                if not self.queue.cancel(ticket):
                    self._flag(ticket.id)
                task.cancel()

    async def _relay(self, ticket: Ticket, kind: str) -> AsyncIterator[dict[str, Any]]:
        """The replica's events for a started job, with heartbeats while it is silent (loading a model)."""
        events: asyncio.Queue[Any] = asyncio.Queue()
        stream = self.workers.stream(kind, ticket.item)

        async def pump() -> None:
            try:
                async for event in stream:
                    await events.put(event)
            except Exception as error:
                await events.put(error)
            finally:
                await events.put(None)

        task = asyncio.create_task(pump())
        finished = False
        try:
            while True:
                try:
                    item = await asyncio.wait_for(events.get(), self.heartbeat_s)
                except asyncio.TimeoutError:
                    yield {"event": "heartbeat"}
                    continue
                if item is None or isinstance(item, Exception):
                    finished = True
                    yield {"event": "error", "error": error_to_wire(item or _ended_early(ticket))}
                    return
                if item["event"] == "replica":
                    self._remember(item.get("status"))
                    continue
                if item["event"] == "started":
                    ticket.item["replica"] = item.get("replica")
                finished = item["event"] in TERMINAL
                yield item
                if finished:
                    return
        finally:
            task.cancel()
            cancel = getattr(stream, "cancel", None)
            if cancel is not None and not finished:
                cancel()  # the client went away mid-run: the replica's stream ends too


def _reporting(data: dict[str, Any]) -> dict[str, Any]:
    """What a job of any kind asks its replica to report (steps, previews) and put in its recipe, checked."""
    previews = data.get("preview_every")
    if previews is not None and (not isinstance(previews, int) or previews < 1):
        raise InvalidRequestError(f"preview_every must be a whole number >= 1 or None, not {previews!r}.")
    extra = data.get("recipe_extra")
    if extra is not None and not isinstance(extra, dict):
        raise InvalidRequestError("recipe_extra must be a dict of JSON values.")
    return {
        "progress": bool(data.get("progress", True)),
        "previews": bool(data.get("previews")),
        "preview_every": previews,
        "recipe_extra": extra,
    }


def _ended_early(ticket: Ticket) -> serve_errors.ReplicaDiedError:
    return serve_errors.ReplicaDiedError(
        f"the server's replica {ticket.item.get('replica') or ''} ended the request without a result; the "
        "server restarts replicas that fail. Nothing in your kernel was lost: run the request again."
    )
