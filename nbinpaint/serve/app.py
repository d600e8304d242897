"""The workshop server on Ray Serve: one gateway replica in front of one pipeline replica per GPU.

`build_app` makes the Serve application: ``Gateway`` (HTTP ingress; tokens, validation, the fair queue,
cancel flags, status) and ``Worker`` (each replica holds one `PipelineManager` with the configured models
loaded, on its own GPU). The gateway starts a job on a replica only when one is free, so the fair queue,
not Serve's first-come router, decides who goes next. With ``max_batch_size`` N > 1 a replica takes N jobs
at once, the next of each waiting participant in round-robin order, and Serve's ``@serve.batch`` hands them
to the replica together; compatible ones share one pipeline call (`batched_worker`). A replica streams its
job's events back through the gateway; while it runs, it keeps one call to the gateway open that answers when
the job is cancelled. If a replica dies, the gateway reports it to the client (`ReplicaDiedError`) and Serve
starts a new one after its next health check.

`start` joins (``address=``) or starts Ray and runs the application; `local_server` does it for the length
of a ``with`` block (tests, benchmarks, trying it all on one laptop).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from nbinpaint import openmp
from nbinpaint.serve import errors as serve_errors
from nbinpaint.serve.config import ServerConfig
from nbinpaint.serve.gateway import TERMINAL, Gateway
from nbinpaint.serve.protocol import error_to_wire
from nbinpaint.serve.worker import JobControl, WorkerCore

__all__ = [
    "GATEWAY",
    "WORKER",
    "RayWorkers",
    "batched_worker",
    "build_app",
    "check_port",
    "local_server",
    "start",
    "stop",
]

GATEWAY = "Gateway"
WORKER = "Worker"
CANCEL_WAIT_S = 10.0
"""Longest a replica's open ``wait_cancelled`` call lasts before it asks again (a cancel answers it at once)."""
CANCEL_RETRY_S = 0.5
"""Pause before asking again when the gateway could not be reached (it may be restarting)."""


class RayWorkers:
    """The `Workers` the gateway uses, over a Serve handle to the ``Worker`` deployment."""

    def __init__(self, handle: Any, capacity: int, app_name: str, replicas: int | None = None) -> None:
        self.handle = handle
        self.capacity = capacity
        self.app_name = app_name
        self.replicas = capacity if replicas is None else replicas

    async def stream(self, kind: str, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        from ray.exceptions import ActorUnavailableError, RayActorError

        response = self.handle.options(stream=True).run.remote(kind, payload)
        try:
            async for event in response:
                yield event
        except (RayActorError, ActorUnavailableError) as error:
            raise serve_errors.ReplicaDiedError(
                f"the server's replica {payload.get('replica') or ''} running your request stopped "
                f"({type(error).__name__}); the server is starting a new one. Nothing in your kernel was lost: "
                "run the request again in a few seconds."
            ) from error
        finally:
            if not response.cancelled():
                response.cancel()  # a no-op once the job ended; stops the replica if the client went away

    async def call(self, method: str, **kwargs: Any) -> Any:
        return await getattr(self.handle, method).remote(**kwargs)

    def deployments(self) -> dict[str, Any]:
        from ray import serve

        application = serve.status().applications.get(self.app_name)
        if application is None:
            return {}
        return {
            name: {"status": str(state.status).rsplit(".", 1)[-1], "replicas": dict(state.replica_states)}
            for name, state in application.deployments.items()
        }


class WorkerReplica:
    """One pipeline replica: a `WorkerCore` whose jobs run in a thread and stream their events.

    With batching on (``max_batch_size`` > 1), jobs reach `WorkerCore.execute_batch` through Ray Serve's own
    batching (``@serve.batch``): the jobs that arrive within ``batch_wait_ms`` of each other, up to
    ``max_batch_size``, are handed over together, and compatible ones run as one pipeline call. The gateway
    sends a replica at most ``max_batch_size`` jobs at once, taken from its fair queue in round-robin order,
    so a batch holds the next request of each waiting participant.
    """

    def __init__(self, config: ServerConfig) -> None:
        from ray import serve

        context = serve.get_replica_context()
        self.core = WorkerCore(config, replica=context.replica_tag)
        self.gateway = serve.get_deployment_handle(GATEWAY, context.app_name)
        self.batching = config.max_batch_size > 1

    async def run(self, kind: str, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Run a job (alone, or in a batch); yield its events, this replica's status just before the last one."""
        control = JobControl()
        watcher = asyncio.create_task(self._watch(payload["job"], control))
        job = (kind, payload, control)
        try:
            source = self._batched(job) if self.batching else self._alone(job)
            async for events in source:
                for event in events:
                    if event["event"] in TERMINAL:  # status reads the manager under its lock: off the event loop
                        yield {"event": "replica", "status": await asyncio.to_thread(self.core.status)}
                    yield event
                    if event["event"] in TERMINAL:
                        return
        finally:
            watcher.cancel()
            control.stop()  # after the end a no-op; if the gateway went away, the run stops after its step

    async def _alone(self, job: tuple[str, dict[str, Any], JobControl]) -> AsyncIterator[list[dict[str, Any]]]:
        """One job in a thread of its own; its events as they come."""
        async for events in self._stream([job], lambda emits: self.core.execute(*job, emits[0])):
            yield events[0]

    def _batched(self, job: tuple[str, dict[str, Any], JobControl]) -> AsyncIterator[list[dict[str, Any]]]:
        """One job's events through Ray Serve's batching: `batched_worker` makes it ``@serve.batch`` over
        `_batch_events`."""
        raise NotImplementedError("batching is off on this replica (max_batch_size=1)")

    async def _batch_events(self, jobs: list[tuple[str, dict[str, Any], JobControl]]) -> AsyncIterator[list[Any]]:
        """The batch handler: the jobs Serve gathered, run by `WorkerCore.execute_batch` in one thread.

        Each yield holds one entry per job: the events it has had since the last yield (maybe none), or
        ``StopIteration`` once its stream has ended (Serve's sentinel for a finished caller).
        """

        def work(emits: list[Any]) -> None:
            self.core.execute_batch([(*job, emit) for job, emit in zip(jobs, emits, strict=True)])

        async for events in self._stream(jobs, work):
            yield events

    async def _stream(self, jobs: list[Any], work: Callable[[list[Any]], None]) -> AsyncIterator[list[Any]]:
        """Run ``work(emits)`` in a thread (one ``emit`` per job); yield each job's new events, batched by
        arrival, until every job has sent a terminal event."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue()
        emits = [
            (lambda event, index=index: loop.call_soon_threadsafe(events.put_nowait, (index, event)))
            for index in range(len(jobs))
        ]
        ended = [False] * len(jobs)

        def guarded() -> None:  # `work` reports every failure itself; anything else still ends every stream
            try:
                work(emits)
            except Exception as error:
                for emit in emits:
                    emit({"event": "error", "error": error_to_wire(error)})

        openmp.release_idle_threads()  # see nbinpaint.openmp: the job's thread runs faster without this one's team
        threading.Thread(target=guarded, daemon=True).start()
        while not all(ended):
            arrived = [await events.get()]
            while not events.empty():
                arrived.append(events.get_nowait())
            fresh: list[Any] = [StopIteration if done else [] for done in ended]
            for index, event in arrived:
                if ended[index]:
                    continue
                fresh[index].append(event)
                ended[index] = event["event"] in TERMINAL
            yield fresh

    async def _watch(self, job: str, control: JobControl) -> None:
        while not control.should_stop():
            try:
                if await self.gateway.wait_cancelled.remote(job, CANCEL_WAIT_S):
                    control.stop()
            except Exception:  # a gateway restarting must not kill the run: ask again in a moment
                await asyncio.sleep(CANCEL_RETRY_S)

    async def parameters(self, **kwargs: Any) -> dict[str, Any]:
        try:
            return await asyncio.to_thread(self.core.parameters, **kwargs)
        except Exception as error:  # returned, not raised: Ray would wrap it in its own traceback text
            return {"error": error_to_wire(error)}

    async def status(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.core.status)


def batched_worker(config: ServerConfig) -> type[WorkerReplica]:
    """`WorkerReplica` with its ``_batched`` method under ``@serve.batch`` (``max_batch_size`` and
    ``batch_wait_ms`` from ``config``). Made here, not at import, so that importing this module needs no Ray."""
    from ray import serve

    class BatchedWorkerReplica(WorkerReplica):
        @serve.batch(max_batch_size=config.max_batch_size, batch_wait_timeout_s=config.batch_wait_ms / 1000)
        async def _batched(self, jobs: list[tuple[str, dict[str, Any], JobControl]]) -> AsyncIterator[list[Any]]:
            async for events in self._batch_events(jobs):
                yield events

    return BatchedWorkerReplica


class GatewayReplica:
    """The HTTP ingress: Starlette requests in, `Gateway` replies out."""

    def __init__(self, config: ServerConfig, worker: Any, capacity: int) -> None:
        if config.twins:
            from nbinpaint import twins

            twins.use_twins(config.twins_dir)
        # Validation reads images with diffusers' load_image: import diffusers now, not in the first request.
        from diffusers.utils import load_image  # noqa: F401

        # With batching, each replica takes up to max_batch_size jobs at once (`WorkerReplica`).
        jobs = capacity * config.max_batch_size
        self.gateway = Gateway(config, RayWorkers(worker, jobs, config.app_name, replicas=capacity))

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import JSONResponse, StreamingResponse

        path = request.url.path
        root = request.scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        # The body's chunks, not the body: the gateway checks the token first and reads at most its limit.
        reply = await self.gateway.handle(request.method, path, request.headers, request.stream())
        if reply.stream is not None:
            return StreamingResponse(reply.stream, media_type="application/x-ndjson")
        return JSONResponse(reply.body, status_code=reply.status)

    async def wait_cancelled(self, job: str, timeout: float) -> bool:
        return await self.gateway.wait_cancelled(job, timeout)


def replica_count(config: ServerConfig) -> tuple[int, float]:
    """(replicas, GPUs per replica): the configured count, else one per GPU in the cluster, else one on CPU."""
    import ray

    gpus = ray.cluster_resources().get("GPU", 0)
    per_replica = config.gpus_per_replica if gpus else 0.0
    if config.replicas is not None:
        return config.replicas, per_replica
    return (max(1, int(gpus // config.gpus_per_replica)) if gpus else 1), per_replica


def build_app(config: ServerConfig) -> Any:
    """The Serve application: ``Gateway`` bound to ``Worker`` (Ray must be initialised)."""
    from ray import serve

    replicas, gpus = replica_count(config)
    # Ray lowers its workers' priority (niceness 15) to keep its own control plane responsive; the pipeline
    # replica is the server's real work, and at niceness 15 any other process on the machine slowed its
    # denoising loop (a run took 5-15% longer on 2 cores). Ray's job manager makes the same exception for
    # job drivers.
    env_vars = {"RAY_worker_niceness": "0"}
    if config.threads:  # Ray starts workers with OMP_NUM_THREADS=<num_cpus>; give them the threads asked for
        env_vars["OMP_NUM_THREADS"] = str(config.threads)
    actor_options: dict[str, Any] = {
        "num_cpus": config.cpus_per_replica,
        "num_gpus": gpus,
        "runtime_env": {"env_vars": env_vars},
    }
    worker = serve.deployment(
        batched_worker(config) if config.max_batch_size > 1 else WorkerReplica,
        name=WORKER,
        num_replicas=replicas,
        # Jobs are limited by the gateway (max_batch_size per replica); the rest are status and parameter lookups.
        max_ongoing_requests=config.max_batch_size + 7,
        ray_actor_options=actor_options,
        health_check_period_s=config.health_check_period_s,
        health_check_timeout_s=max(10.0, 5 * config.health_check_period_s),
    )
    gateway = serve.deployment(
        GatewayReplica,
        name=GATEWAY,
        num_replicas=1,  # one fair queue for the whole class
        max_ongoing_requests=10_000,  # waiting requests are held here, in the fair queue
        ray_actor_options={"num_cpus": 0},
    )
    return gateway.bind(config, worker.bind(config), replicas)


def check_port(host: str, port: int) -> None:
    """Raise `ServerError` if something already listens on ``host:port``.

    Ray Serve's proxy binds its port with ``SO_REUSEPORT``, so a second server on a taken port would start,
    say it is ready, and share the connections with the first (a participant's cancel could reach the
    wrong one). A plain bind here fails instead while anything listens there.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed server's TIME_WAIT is no owner
            probe.bind(address)
    except OSError as error:
        raise serve_errors.ServerError(
            f"port {port} is in use on {host} ({error.strerror or error}): another nbinpaint serve, or another "
            f"program, listens there. Stop it, or start this server on another port, e.g. --port {port + 1}."
        ) from error


def start(config: ServerConfig, *, num_cpus: int | None = None, quiet: bool = False) -> str:
    """Join or start Ray, start Serve's HTTP proxy on ``config.host:port`` and run the app; returns its URL.

    Replicas load their models before this returns, so the server answers at once.
    """
    import ray
    from ray import serve

    if not ray.is_initialized():
        if config.address:
            ray.init(address=config.address, log_to_driver=not quiet)
        else:  # a local instance, reachable only from this machine
            ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=not quiet)
    serve.start(http_options={"host": config.host, "port": config.port})
    serve.run(build_app(config), name=config.app_name, route_prefix=config.route_prefix)
    return config.url()


def stop() -> None:
    """Shut Serve and Ray down (their processes would otherwise outlive this one)."""
    import ray
    from ray import serve

    with contextlib.suppress(Exception):
        serve.shutdown()
    ray.shutdown()


@contextlib.contextmanager
def local_server(config: ServerConfig, *, num_cpus: int | None = 2, quiet: bool = True) -> Iterator[str]:
    """A workshop server on this machine for the ``with`` block; yields its URL, then shuts Ray down."""
    try:
        yield start(config, num_cpus=num_cpus, quiet=quiet)
    finally:
        stop()
