"""Workshop mode in a participant's kernel: `connect` makes the kernel's manager a `RemoteManager`.

`RemoteManager` implements the manager contract (`nbinpaint.contract.Manager`) keyword by keyword, so the
studio, panel, sweeps, history, chains and `nbinpaint.inpaint` work unchanged against a workshop server
(`nbinpaint serve`). A run sends the request's pixels as PNG (lossless: same request and seed, same pixels as
a local run on the server's device and dtype) and reads back an NDJSON stream: queue position (`on_queue`),
per-step progress (``on_step(step, total, {})``), previews (``on_preview``), then the result; a run from
latents and every stage of a chain report the same way. ``should_stop`` is watched in a thread while the
request waits or runs; when it turns true the kernel sends a cancel, and the server stops the run at the
end of the step in progress.

Who the server takes this kernel for is decided by the server, never by a name the kernel sends (see
`nbinpaint.serve.auth`). The token sent, first found wins:

1. ``connect(token=...)``;
2. ``$NBINPAINT_TOKEN`` (the one the instructor gave: per participant, or shared by the class);
3. ``$JUPYTERHUB_API_TOKEN``, the kernel's own hub token, only if the server's ``/v1/health`` says it accepts
   hub tokens (``nbinpaint serve --hub``). A token given on purpose wins over the one a kernel merely has, and a
   hub token is never sent to a server that did not ask for one (it lets its holder act as this user on the
   hub, within the small scopes a kernel's token has).

On connecting, the kernel opens a session (``POST /v1/session``): with a per-participant or hub token the
server just says whose it is; with a shared token it issues a session the kernel sends on every later call,
and a new one, transparently, if the server forgot it (restarted, or dropped it to make room).

Errors arrive as the same exception types and messages as locally; faults of the server itself are
`nbinpaint.serve.errors` types (`ReplicaDiedError`, `ServerUnavailableError`, ...). The kernel only adds what
it received: a failed or interrupted request changes nothing in it (mask, results, history).

Only the standard library talks HTTP here, and nothing imports Ray: a participant's kernel needs no more than
nbinpaint itself.
"""

from __future__ import annotations

import getpass
import http.client
import ipaddress
import json
import os
import socket
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from nbinpaint.callbacks import Callbacks
from nbinpaint.contract import Manager, PipelineKey
from nbinpaint.errors import GenerationCancelled, InvalidRequestError, ModelLoadError
from nbinpaint.notices import notice
from nbinpaint.requests import InpaintRequest
from nbinpaint.results import NO_OPTIONS, ChainResult, Handoff, InpaintResult, RunOptions
from nbinpaint.serve import protocol
from nbinpaint.serve.errors import AuthenticationError, ServerError, ServerUnavailableError

__all__ = [
    "CLIENT_ENV",
    "HUB_TOKEN_ENV",
    "SERVER_ENV",
    "TOKEN_ENV",
    "RemoteManager",
    "RemotePipeline",
    "from_env",
    "wire_image_format",
]

SERVER_ENV = "NBINPAINT_SERVER"
"""The workshop server's URL, e.g. ``http://gpu-box:8000``: set by a hub admin, read by `connect`."""
TOKEN_ENV = "NBINPAINT_TOKEN"
"""The token for it."""
CLIENT_ENV = "NBINPAINT_CLIENT"
"""The name this kernel asks for on a shared token (default: the JupyterHub user, else user@host). Only a label:
the server adds its session number (``ann#3``); a per-participant or hub token names the participant itself."""
HUB_TOKEN_ENV = "JUPYTERHUB_API_TOKEN"
"""Set by JupyterHub in every kernel it spawns: sent when no other token is given and the server accepts it."""
CANCEL_POLL_S = 0.02


def default_client_id() -> str:
    """The name this kernel asks for: ``$NBINPAINT_CLIENT``, ``$JUPYTERHUB_USER``, else user@host."""
    for name in (CLIENT_ENV, "JUPYTERHUB_USER"):
        if os.environ.get(name):
            return os.environ[name]
    try:
        user = getpass.getuser()
    except Exception:  # no user name in some containers
        user = "participant"
    return f"{user}@{socket.gethostname()}"


class RemotePipeline:
    """What a workshop server says about one of its pipelines: model, task, class name and parameters.

    Returned by `RemoteManager.get` for code that only wants to know a pipeline exists. It has no signature
    to read: callers ask the manager (`RemoteManager.accepted_parameters`, `RemoteManager.pipeline_class`),
    which answers the same for a local and a remote pipeline. It cannot run here: the pipeline lives on
    the server, and requests go through `RemoteManager.run`.
    """

    def __init__(self, model: str, task: str, class_name: str, parameters: frozenset[str]) -> None:
        self.model = model
        self.task = task
        self.class_name = class_name
        self.parameters = parameters

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise ServerError(
            f"{self.class_name} for {self.model!r} runs on the workshop server: send requests with "
            "nbinpaint.manager.run(request) (or nbinpaint.inpaint), not by calling the pipeline."
        )

    def __repr__(self) -> str:
        return f"<RemotePipeline {self.class_name} for {self.model!r} ({self.task}), on the workshop server>"


class RemoteManager(Manager):
    """The kernel's manager in workshop mode: runs requests on a workshop server.

    Parameters
    ----------
    url:
        The server, e.g. ``http://127.0.0.1:8000`` (a trailing ``/v1`` is dropped, with a notice).
    token:
        Its token (shared, or this participant's own). None or empty: ``$JUPYTERHUB_API_TOKEN`` if the
        server accepts hub tokens.
    client_id:
        The name this kernel asks for on a shared token (`default_client_id` when None); the server decides
        the name it queues under (`client_id` after `check`).
    timeout:
        Seconds without any word from the server before a request is given up (the server sends a
        heartbeat every few seconds while a request waits or runs).
    image_format:
        How images travel both ways, one of `nbinpaint.serve.protocol.IMAGE_FORMATS`; None picks with
        `wire_image_format` from the server's address. Either way the pixels arrive exactly.
    """

    device = "remote"

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        client_id: str | None = None,
        timeout: float = 120.0,
        image_format: str | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidRequestError(f"{url!r} is not a server address: use e.g. http://127.0.0.1:8000.")
        if parts.path.rstrip("/").endswith(protocol.API):  # the client adds /v1 to every call itself
            base = parts._replace(path=parts.path.rstrip("/").removesuffix(protocol.API))
            notice(
                f"{url!r} ends in {protocol.API}, which nbinpaint adds itself: connecting to "
                f"{urllib.parse.urlunsplit(base)!r} instead. Give the server's address without {protocol.API}.",
                once=False,
            )
            parts = base
        if image_format is not None and image_format not in protocol.IMAGE_FORMATS:
            raise InvalidRequestError(
                f"image_format={image_format!r}: use one of {', '.join(protocol.IMAGE_FORMATS)}, or None to choose."
            )
        self.image_format = image_format or wire_image_format(parts.hostname)
        self.url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self._parts = parts
        self._token = token or ""
        self._session: str | None = None  # issued by the server on a shared token
        self._handshake_lock = threading.Lock()
        self._opened = False  # whether a session was opened (it may be None: the token names us)
        self._asked_name = client_id or default_client_id()
        self.client_id = self._asked_name  # until the server says who we are
        self.timeout = timeout
        self._queue_callbacks = Callbacks()
        self._event_callbacks = Callbacks()
        self._parameters: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.info: dict[str, Any] = {}
        self._slots: threading.BoundedSemaphore | None = None

    def __repr__(self) -> str:
        return f"<RemoteManager {self.url} as {self.client_id!r}>"

    # ------------------------------------------------------------------ connecting
    def check(self) -> dict[str, Any]:
        """Ask the server who we are and what it offers (raises `AuthenticationError` for a wrong token)."""
        self.info = self._call("GET", "info")
        self.client_id = self.info.get("client", self.client_id)
        limit = int(self.info.get("limits", {}).get("max_outstanding", 4))
        # Never more requests in flight than the server allows one participant: threads of this kernel
        # wait here (a sweep's cells, say) instead of being refused.
        self._slots = threading.BoundedSemaphore(limit)
        return self.info

    def _handshake(self, stale: str | None) -> None:
        """Pick the token, and open a session (``POST /v1/session``): the server says whose the token is, and
        on a shared token issues the session every later call carries.

        ``stale``: the session the server just refused; another thread may have replaced it already.
        """
        with self._handshake_lock:
            if self._opened and self._session != stale:
                return
            hub_token = os.environ.get(HUB_TOKEN_ENV)
            if not self._token and hub_token and "hub" in self._call("GET", "health", retry=False).get("auth", []):
                self._token = hub_token
            # Other threads keep sending the stale session meanwhile: refused, they come here and find it replaced.
            answer = self._call("POST", "session", {"name": self._asked_name}, retry=False)
            self._session = answer.get("session")
            self.client_id = str(answer.get("client") or self.client_id)
            self._opened = True

    # ------------------------------------------------------------------ callbacks
    def on_queue(self, callback: Callable[[int], Any], remove: bool = False) -> None:
        """Call ``callback(position)`` when a request's place in the server's queue changes (0: next to start).

        Called in the thread that called `run`, before the request starts: a panel can show
        "waiting: 3 requests before yours".
        """
        self._queue_callbacks.register_callback(callback, remove=remove)

    def on_event(self, callback: Callable[[dict[str, Any]], Any], remove: bool = False) -> None:
        """Call ``callback(event)`` with every event the server streams (see `nbinpaint.serve.protocol.EVENTS`)."""
        self._event_callbacks.register_callback(callback, remove=remove)

    # ------------------------------------------------------------------ running
    def _execute(self, request: InpaintRequest, latents: Any, options: RunOptions) -> InpaintResult:
        """`run` on the server: same result, same pixels as `PipelineManager.run`.

        With ``latents`` (a chain's stage) the job is a "stage": the latents travel with it, and the replica
        validates the request once they are in place. ``on_step(step, total, {})`` gets no tensors (they stay
        on the server); ``on_preview`` gets PIL images.
        """
        body = {
            "kind": "run" if latents is None else "stage",
            "request": protocol.request_to_wire(request, images=self.image_format),
            **_followed(options),
            "recipe_extra": dict(options.recipe_extra) if options.recipe_extra else None,
        }
        if latents is not None:
            body["latents"] = protocol.encode(latents, where="latents")
        wire = self._job(body, options)
        return self._received(wire, wire, request)

    def run_stage(
        self, request: InpaintRequest, *, latents: Any = None, chain: dict[str, Any] | None = None, **callbacks: Any
    ) -> InpaintResult:
        """One stage of a chain (`nbinpaint.chains.run_stage`): `run` from ``latents``, ``chain`` in its recipe."""
        return self.run(request, latents=latents, recipe_extra={"chain": chain} if chain else None, **callbacks)

    def _execute_chain(self, requests: Sequence[InpaintRequest], name: str, options: RunOptions) -> ChainResult:
        """A whole chain on the server (`nbinpaint.handoff.run_chain` there): latents never leave the server.

        Every stage reports its steps and previews as a single run does (steps count per stage), and a
        cancel stops the stage in progress within one step (or the chain before its next stage). Returns a
        `ChainResult` with every stage; stages that handed latents on hold them as tensors, as locally.
        """
        requests_wire = [protocol.request_to_wire(r, images=self.image_format) for r in requests]
        body = {"kind": "chain", "requests": requests_wire, "name": name, **_followed(options)}
        wire = self._job(body, options)
        chain = wire["chain"]
        stages = [
            self._received(wire, stage, requests[0] if index == 0 else None)
            for index, stage in enumerate(chain["stages"])
        ]
        handoffs = [Handoff(h["mode"], h["reason"]) for h in chain["handoffs"]]
        return ChainResult(chain["name"], stages, handoffs)

    def _received(self, event: dict[str, Any], wire: dict[str, Any], sent: InpaintRequest | None) -> InpaintResult:
        """A result from the wire, its recipe saying which server and replica made it."""
        result = protocol.result_from_wire(wire, sent)
        result.recipe["remote"] = {"server": self.url, "replica": event.get("replica")}
        return result

    def cancel(self, job: str) -> str:
        """Cancel one of this kernel's requests by job id; the server's answer (cancelled, stopping, unknown)."""
        return self._call("POST", "cancel", {"job": job}).get("state", "unknown")

    def _job(self, body: dict[str, Any], options: RunOptions = NO_OPTIONS) -> dict[str, Any]:
        """Send one job and follow its stream to the end, reporting as ``options`` say; the result event."""
        on_step, should_stop, on_preview = options.on_step, options.should_stop, options.on_preview
        if self._slots is None:
            self.check()
        job = body["job"] = uuid.uuid4().hex
        body["image_format"] = self.image_format  # results and previews come back the same way
        assert self._slots is not None
        with self._slots:
            connection, response = self._open("POST", "generate", body)
            watcher = _CancelWatcher(self, job, should_stop) if should_stop is not None else None
            replica = None
            try:
                for event in self._events(response):
                    self._event_callbacks(event)
                    kind = event["event"]
                    if kind == "queue":
                        self._queue_callbacks(int(event["position"]))
                    elif kind == "started":
                        replica = event.get("replica")
                    elif kind == "step" and on_step is not None:
                        on_step(int(event["step"]), int(event["total"]), {})
                    elif kind == "preview" and on_preview is not None:
                        on_preview(int(event["step"]), int(event["total"]), protocol.decode(event["image"]))
                    elif kind == "result":
                        return {**event, "replica": replica}
                    elif kind == "cancelled":
                        raise GenerationCancelled(event.get("message") or "generation cancelled.")
                    elif kind == "error":
                        raise protocol.error_from_wire(event.get("error"))
                raise self._lost("the stream ended without a result")
            finally:
                if watcher is not None:
                    watcher.stop()
                connection.close()  # on an exception in a callback (or Ctrl-C) the server cancels the run

    # ------------------------------------------------------------------ the manager interface
    def _describe(self, key: PipelineKey) -> tuple[str, frozenset[str]]:
        answer = self._lookup(key)
        return str(answer["pipeline"]), frozenset(answer["parameters"])

    def _pipeline(self, key: PipelineKey) -> RemotePipeline:
        """`get`: a `RemotePipeline` describing the server's pipeline (loaded there if it was not yet)."""
        class_name, parameters = self._describe(key)
        return RemotePipeline(key.model, key.task, class_name, parameters)

    def _segmenter(self, repo_id: str, torch_dtype: Any) -> Any:
        """`segmenter`: a workshop server does not serve Segment Anything yet; say how to segment anyway."""
        raise ModelLoadError(
            f"click-to-segment ({repo_id}) runs in this kernel only: this workshop server does not serve Segment "
            "Anything yet. Segment with a local manager, nbinpaint.segment(image, points, "
            "manager=nbinpaint.PipelineManager()), or draw the mask with the canvas's other tools."
        )

    def _lookup(self, key: PipelineKey) -> dict:
        dtype = None if key.torch_dtype is None else str(key.torch_dtype).replace("torch.", "")
        asked = {
            "model": key.model,
            "task": key.task,
            "dtype": dtype,
            "variant": key.variant,
            "controlnet": key.controlnet,
            "lora": key.lora,
            "lora_scale": key.lora_scale,
            "enable_pag": key.enable_pag,
        }
        cached = tuple(asked.values())
        if cached not in self._parameters:
            self._parameters[cached] = self._call("POST", "parameters", asked)
        return self._parameters[cached]

    def status(self) -> Any:
        """What the server's replicas hold, as the local manager's status table (one row per model and replica)."""
        from nbinpaint.pipeline_manager import ManagerStatus

        info = self.check()
        rows = [{**row, "device": f"{row['device']} ({row['replica']})"} for row in info.get("loaded", [])]
        return ManagerStatus(
            rows,
            sum(int(row.get("bytes", 0)) for row in rows),
            None,
            f"remote {self.url}",
            f"server's ({info.get('waiting', 0)} waiting)",
        )

    def server_status(self) -> Any:
        """The admin view: queue, running jobs, per-client counts, replicas with models and memory."""
        from nbinpaint.serve.status import ServerStatus

        return ServerStatus(self._call("GET", "status"))

    def release(self, repo_id: str) -> dict[str, int]:
        """Nothing to release here: the server's admin manages its memory."""
        notice("in workshop mode the server's admin manages its memory: release() does nothing in this kernel.")
        return {"before": 0, "after": 0}

    def release_all(self) -> dict[str, int]:
        return self.release("all")

    def evict(self, count: int = 1) -> list[str]:
        self.release("all")
        return []

    def set_offload(self, mode: str) -> None:
        notice("in workshop mode the server's admin chooses offloading: set_offload() does nothing in this kernel.")

    # ------------------------------------------------------------------ HTTP
    def _headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"}
        if self._session:
            headers[protocol.SESSION_HEADER] = self._session
        return headers

    def _connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._parts.scheme == "https" else http.client.HTTPConnection
        return cls(self._parts.hostname, self._parts.port, timeout=self.timeout)

    def _open(
        self, method: str, endpoint: str, body: Any = None, *, retry: bool = True
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send a request; a non-200 answer raises the error the server sent.

        The first request opens a session (`_handshake`); a session the server refuses (401) is replaced
        once, and the request sent again. ``retry=False``: neither (the handshake's own requests).
        """
        if retry and not self._opened:
            self._handshake(None)
        session = self._session
        try:
            return self._send(method, endpoint, body)
        except AuthenticationError:
            if not (retry and session):
                raise
        self._handshake(session)
        return self._send(method, endpoint, body)

    def _send(
        self, method: str, endpoint: str, body: Any = None
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        connection = self._connection()
        path = f"{self._parts.path.rstrip('/')}{protocol.API}/{endpoint}"
        data = None if body is None else json.dumps(body).encode()
        try:
            connection.request(method, path, body=data, headers=self._headers())
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise ServerUnavailableError(
                f"cannot reach the workshop server at {self.url} ({type(error).__name__}: {error}). Check the "
                f"address ({SERVER_ENV}) and that the server runs; nothing in this kernel was changed."
            ) from error
        if response.status != 200:
            try:
                answer = json.loads(response.read() or b"{}")
            except (ValueError, OSError):
                answer = {}
            finally:
                connection.close()
            raise protocol.error_from_wire(
                answer.get("error") or {"type": "ServerError", "message": f"HTTP {response.status} {response.reason}"}
            )
        return connection, response

    def _call(self, method: str, endpoint: str, body: Any = None, *, retry: bool = True) -> dict[str, Any]:
        connection, response = self._open(method, endpoint, body, retry=retry)
        try:
            return json.loads(response.read())
        except (OSError, http.client.HTTPException, ValueError) as error:
            raise self._lost(f"{type(error).__name__}: {error}") from error
        finally:
            connection.close()

    def _events(self, response: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
        while True:
            try:
                line = response.readline()
            except (OSError, http.client.HTTPException) as error:
                raise self._lost(f"{type(error).__name__}: {error}") from error
            if not line:
                return
            if line.strip():
                yield protocol.read_event(line)

    def _lost(self, why: str) -> ServerUnavailableError:
        return ServerUnavailableError(
            f"the connection to the workshop server at {self.url} was lost before the result arrived ({why}); "
            "the server may be restarting. Nothing in this kernel was lost: run the request again in a moment."
        )


def _followed(options: RunOptions) -> dict[str, Any]:
    """What a job asks the server to report: each step event crosses three processes, so only when shown."""
    return {
        "progress": options.on_step is not None,
        "previews": options.on_preview is not None,
        "preview_every": options.preview_every,
    }


class _CancelWatcher:
    """Polls ``should_stop`` while a request waits or runs, and sends one cancel when it turns true."""

    def __init__(self, manager: RemoteManager, job: str, should_stop: Callable[[], bool]) -> None:
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(manager, job, should_stop), daemon=True)
        self._thread.start()

    def _watch(self, manager: RemoteManager, job: str, should_stop: Callable[[], bool]) -> None:
        while not self._done.wait(CANCEL_POLL_S):
            try:
                stop = should_stop()
            except Exception:  # a broken callback must not leave the request running unseen
                stop = True
            if stop:
                try:
                    manager.cancel(job)
                except ServerError as error:
                    notice(f"could not send the cancel to the workshop server: {error}", once=False)
                return

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)


# --------------------------------------------------------------------------------------------------------
# Switching the kernel's manager.
# --------------------------------------------------------------------------------------------------------


def wire_image_format(host: str) -> str:
    """``raw`` when ``host`` is this machine or on a private network, else ``png``.

    On a local network bytes are cheap and PNG encoding is not (20-30 ms for each 512 px image, each way);
    over the internet PNG's halving of a photo's bytes wins. A name that does not resolve gets ``png``.
    """
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError):
        return "png"
    ips = [ipaddress.ip_address(str(address).split("%")[0]) for address in addresses]
    return "raw" if ips and all(ip.is_loopback or ip.is_private for ip in ips) else "png"


def from_env(
    url: str | None = None,
    token: str | None = None,
    *,
    client_id: str | None = None,
    timeout: float = 120.0,
    image_format: str | None = None,
) -> RemoteManager:
    """A `RemoteManager` from arguments or ``$NBINPAINT_SERVER`` / ``$NBINPAINT_TOKEN`` (not yet contacted)."""
    url = url or os.environ.get(SERVER_ENV)
    token = token if token is not None else os.environ.get(TOKEN_ENV)
    if not url:
        raise InvalidRequestError(
            f"no workshop server given: pass connect(url, token=...) or set {SERVER_ENV} (and {TOKEN_ENV})."
        )
    return RemoteManager(url, token or "", client_id=client_id, timeout=timeout, image_format=image_format)
