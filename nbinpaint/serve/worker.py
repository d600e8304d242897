"""One replica's engine: the shared `PipelineManager`, running jobs and reporting each as events.

A job runs alone (`WorkerCore.execute`), or with batching on, in the batch Ray Serve handed over
(`WorkerCore.execute_batch`): participants' requests with one `nbinpaint.runner.batch_key` share one pipeline
call (`nbinpaint.runner.run_batch`), each still reported as its own run, and each result its own (the single
run's pixels within `nbinpaint.runner.BATCH_TOLERANCE`).

Plain Python (no Ray): `nbinpaint.serve.app` wraps it in a Ray Serve deployment that runs `WorkerCore.execute`
in a thread and streams its events. A job is the same call a local kernel makes (`PipelineManager.run`, from
pixels or from latents; a chain's stages as `nbinpaint.handoff.run_chain` runs them), so a remote result is
the local result: same validation, same seed handling, same pixels on the same device and dtype. Every kind
reports as a run does: a step event per denoising step, previews when asked, and a stop within one step of
a cancel.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any

from PIL import Image

from nbinpaint import handoff, openmp
from nbinpaint.errors import GenerationCancelled, ModelLoadError, NbinpaintError, UnsupportedParameterError
from nbinpaint.requests import accepted_parameters
from nbinpaint.results import Handoff, InpaintResult, RunOptions
from nbinpaint.runner import batch_key, can_batch, run_batch, validate_for
from nbinpaint.serve.config import ServerConfig
from nbinpaint.serve.errors import ServerLimitError
from nbinpaint.serve.protocol import (
    encode,
    error_to_wire,
    holds_text,
    image_parameter,
    refuse_not_pixels,
    result_to_wire,
)

__all__ = ["JobControl", "WorkerCore", "accelerator_memory", "batch_members"]

Emit = Callable[[dict[str, Any]], None]
Job = tuple[str, dict[str, Any], "JobControl", Emit]
"""One job as a batch hands it over: its kind, payload, cancel flag, and where its events go."""
KINDS = ("run", "stage", "chain_stage")


class JobControl:
    """A running job's cancel flag, and the step counts that show how soon a cancel took effect."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self.steps = 0
        self.cancel_seen_after_step: int | None = None

    def stop(self) -> None:
        """Ask the run to stop at the end of the step in progress (the step callback raises then)."""
        if not self._stop.is_set():
            self.cancel_seen_after_step = self.steps
            self._stop.set()

    def should_stop(self) -> bool:
        return self._stop.is_set()


class WorkerCore:
    """Loads the configured models at start and runs jobs on them.

    Parameters
    ----------
    config:
        The server's settings: models to load, allow-list, limits, device, threads, twins.
    replica:
        This replica's name in status tables and events.
    """

    def __init__(self, config: ServerConfig, replica: str = "local") -> None:
        if config.twins:
            from nbinpaint import twins

            twins.use_twins(config.twins_dir)
        import torch

        from nbinpaint.pipeline_manager import PipelineManager, resolve_dtype

        if config.threads:
            torch.set_num_threads(config.threads)
        # allow_pickle stays False: safetensors only; the manager never passes trust_remote_code.
        self.manager = PipelineManager(device=config.device, offload=config.offload)
        # One dtype per server: a request for another would load a second copy of a checkpoint.
        self.dtype = resolve_dtype(None, self.manager.device)
        self.allow = config.allow_list()
        self.limits = config.limits
        self.replica = replica
        self.pid = os.getpid()
        self.started = time.time()
        self.jobs = 0
        self.running = 0
        self.loaded = [self._preload(repo_id) for repo_id in config.models]
        openmp.release_idle_threads()  # jobs run on other threads: this one's idle OpenMP team would slow them

    def _preload(self, repo_id: str) -> str:
        """Load ``repo_id`` for inpainting, or, if diffusers has no inpaint pipeline for it, text-to-image."""
        try:
            self.manager.get(repo_id, "inpaint")
            return f"{repo_id} (inpaint)"
        except ModelLoadError:
            self.manager.get(repo_id, "text2img")
            return f"{repo_id} (text2img)"

    # ------------------------------------------------------------------ jobs
    def execute(self, kind: str, payload: dict[str, Any], control: JobControl, emit: Emit) -> None:
        """Run one job, reporting through ``emit``: started, steps and previews, then result, cancelled or error.

        Never raises: a failure is an error event, and this replica goes on serving the next job.
        """
        emit({"event": "started", "replica": self.replica, "pid": self.pid, "device": self.manager.device})
        self.running += 1
        try:
            self._outcome(kind, payload, control, emit)
        finally:
            self.running -= 1
            self.jobs += 1

    def _outcome(self, kind: str, payload: dict[str, Any], control: JobControl, emit: Emit) -> None:
        """Run a started job and emit how it ended: result, cancelled or error. Never raises."""
        images = payload.get("image_format", "png")
        try:
            if kind == "run":
                emit({"event": "result", **result_to_wire(self._run(payload, control, emit), images=images)})
            elif kind == "stage":
                result = self._stage(payload, control, emit)
                emit({"event": "result", **result_to_wire(result, with_inputs=True, images=images)})
            elif kind == "chain_stage":
                emit({"event": "result", **self._chain_stage(payload, control, emit)})
            else:
                raise ValueError(f"unknown job kind {kind!r}; one of {', '.join(KINDS)}")
        except GenerationCancelled as error:
            emit(
                {
                    "event": "cancelled",
                    "message": str(error),
                    "cancel_seen_after_step": control.cancel_seen_after_step,
                    "stopped_after_step": control.steps,
                }
            )
        except Exception as error:  # every failure reaches the client as its own type and message
            emit({"event": "error", "error": error_to_wire(error)})

    # ------------------------------------------------------------------ batches
    def execute_batch(self, jobs: Sequence[Job]) -> None:
        """Run the jobs one Ray Serve batch handed this replica, reporting each through its own ``emit``.

        Jobs that can share a pipeline call (`batch_members`) run as one `nbinpaint.runner.run_batch` call
        each group; every other job runs alone, as `execute` runs it. Groups and lone jobs run one after
        another in the order of their first job (the gateway's fair-queue order). Never raises.
        """
        waiting = []
        for job in jobs:  # cancelled while Serve gathered the batch: nothing to run
            if job[2].should_stop():
                job[3]({"event": "cancelled", "message": "generation cancelled before it started; nothing ran."})
                self.jobs += 1
            else:
                waiting.append(job)
        for group in batch_members(self, waiting):
            if len(group) == 1:
                kind, payload, control, emit = group[0][0]
                self.execute(kind, payload, control, emit)
            else:
                self._run_group(group)

    def prepared(self, payload: dict[str, Any]) -> tuple[Any, Any]:
        """A run job's request, validated and checked as `_run` checks it, and its pipeline."""
        request = payload["request"]
        _refuse_paths(request)
        request = validate_for(request, None, max_pixels=self.manager.max_pixels)
        return request, self._pipeline(request)

    def _run_group(self, group: list[tuple[Job, Any, Any]]) -> None:
        """One batched pipeline call for ``group`` (jobs with one `batch_key`, their requests validated, one
        pipeline). Each member is reported as if it ran alone: its own steps, previews and result. A member
        cancelled mid-call is told so at once (its sample's result is then dropped) while the others run on.
        If the batched call fails (out of memory, a pipeline that takes no lists), each member runs alone."""
        pipeline = group[0][2]
        live: list[bool] = [True] * len(group)
        options = []
        for index, ((_, payload, control, emit), _, _) in enumerate(group):
            emit(
                {
                    "event": "started",
                    "replica": self.replica,
                    "pid": self.pid,
                    "device": self.manager.device,
                    "batch": len(group),
                }
            )
            callbacks = _callbacks(payload, control, emit)
            stop = _leave_batch(index, live, control, emit)
            options.append(
                RunOptions(
                    callbacks["on_step"],
                    stop,
                    callbacks["on_preview"],
                    callbacks["preview_every"],
                    payload.get("recipe_extra"),
                )
            )
        self.running += len(group)
        try:
            try:
                with self.manager.running(pipeline):
                    results = run_batch(pipeline, [request for _, request, _ in group], options)
            except GenerationCancelled:  # every member left the batch: each was told when it left
                return
            except Exception:  # out of memory with several samples, say: one by one instead
                for index, ((kind, payload, control, emit), _, _) in enumerate(group):
                    if live[index]:
                        self._outcome(kind, payload, control, emit)
                return
            for index, (((_, payload, _, emit), _, _), result) in enumerate(zip(group, results, strict=True)):
                if live[index] and isinstance(result, InpaintResult):
                    images = payload.get("image_format", "png")
                    emit({"event": "result", **result_to_wire(result, images=images)})
        finally:
            self.running -= len(group)
            self.jobs += len(group)

    def _check_dtype(self, dtype: Any) -> None:
        from nbinpaint.pipeline_manager import resolve_dtype

        if resolve_dtype(dtype, self.manager.device) != self.dtype:
            name = str(self.dtype).replace("torch.", "")
            raise ServerLimitError(
                f"this workshop server runs its models in {name} (one copy of each for the whole class): "
                f"leave dtype unset, or use dtype={name!r}."
            )

    def _pipeline(self, request: Any) -> Any:
        """The pipeline for ``request``, once the request passed this server's checks (allow-list, dtype,
        limits, pixels only): the gateway checked already; a replica never trusts that alone."""
        _refuse_paths(request)
        self.allow.check(request)
        self.limits.check(request)
        self._check_dtype(request.dtype)
        pipeline = self.manager.get(
            request.model,
            request.task,
            torch_dtype=request.dtype,
            variant=request.variant,
            controlnet=request.controlnet,
            lora=request.lora,
            lora_scale=request.lora_scale,
            enable_pag=bool(request.enable_pag),
        )
        self.limits.check_defaults(request, pipeline)
        _refuse_paths(request, pipeline)
        return pipeline

    def _run(self, payload: dict[str, Any], control: JobControl, emit: Emit) -> InpaintResult:
        request = payload["request"]
        _refuse_paths(request)  # before validated(), which would open a path
        pipeline = self._pipeline(request.validated())
        with _extras_blamed(request, pipeline):
            return self.manager.run(
                request, recipe_extra=payload.get("recipe_extra"), **_callbacks(payload, control, emit)
            )

    def _stage(self, payload: dict[str, Any], control: JobControl, emit: Emit) -> InpaintResult:
        """A run from latents (a follow-up or a chain's stage sent by the kernel); validated by the manager
        once the latents are in place, reported as a run."""
        request = payload["request"]
        pipeline = self._pipeline(request)
        chain = payload.get("chain")  # clients before recipe_extra: the stage's chain entry alone
        extra = payload.get("recipe_extra") or ({"chain": chain} if chain else None)
        with _extras_blamed(request, pipeline):
            return self.manager.run(
                request, latents=payload.get("latents"), recipe_extra=extra, **_callbacks(payload, control, emit)
            )

    def _chain_stage(self, payload: dict[str, Any], control: JobControl, emit: Emit) -> dict[str, Any]:
        """Stage ``index`` of a chain, as `nbinpaint.chains.run_chain` runs it, for a gateway that queues each
        stage as its own turn (`nbinpaint.serve.gateway.Gateway`): a long chain then holds a replica for one
        stage at a time, and any replica may run the next stage.

        The first stage does what ``run_chain`` does before anything runs: it fetches every stage's pipeline,
        checks each stage and the chain's total steps against this server's limits (pipeline defaults
        included), and plans every hand-off from the pipelines (`plan_handoff`); it returns the plan, which
        the gateway hands to each later stage. Each stage returns its result (``stage``, on the wire) and,
        for the next stage, its first output (``output``: the latents or the image, on the CPU), which the
        next stage receives exactly as ``run_chain`` passes it on (`handoff.receive`). Each stage reports steps,
        previews and a cancel as a run does. Latents move to the
        CPU and back unchanged, so the chain's pixels are the local chain's.
        """
        requests: list[Any] = payload["requests"]
        index: int = payload["index"]
        plan = payload.get("handoffs")
        for request in requests:
            _refuse_paths(request)
        if plan is None:
            pipelines = [self._pipeline(request) for request in requests]
            for pipeline, request in zip(pipelines, requests, strict=True):
                handoff.check_task_fits(pipeline, request)
            self.limits.check_chain(requests, pipelines)
            plan = [
                handoff.plan_handoff(
                    pipelines[i], pipelines[i + 1], source_request=requests[i], target_request=requests[i + 1]
                ).as_dict()
                for i in range(len(requests) - 1)
            ]
        handoffs = [Handoff(**entry) for entry in plan]
        request = requests[index]
        pipeline = self._pipeline(request)
        incoming = handoffs[index - 1] if index else None
        outgoing = handoffs[index] if index < len(handoffs) else None
        latents = None
        if incoming is not None:
            previous = InpaintResult(images=[payload["input"]], request=request, seed=0, timings={}, recipe={})
            request, latents = handoff.receive(previous, incoming, request)
        if outgoing is not None:
            request = request.replace(output_type="latent" if outgoing.mode == "latent" else "pil")
        outline = [{"model": r.model, "task": r.task} for r in requests]
        chain = handoff.stage_info(payload.get("name", "chain"), index + 1, outline, incoming)
        with _extras_blamed(request, pipeline):
            result = self.manager.run(
                request, latents=latents, recipe_extra={"chain": chain}, **_callbacks(payload, control, emit)
            )
        output = result.images[0] if outgoing is not None else None
        if output is not None and not isinstance(output, Image.Image):
            output = output.detach().cpu()  # a GPU tensor cannot cross to the gateway, which has no GPU
        images = payload.get("image_format", "png")
        return {
            "stage": result_to_wire(result, with_inputs=index > 0, images=images),
            "handoffs": plan,
            "output": output,
        }

    # ------------------------------------------------------------------ lookups
    def parameters(
        self,
        model: str,
        task: str = "inpaint",
        *,
        dtype: str | None = None,
        variant: str | None = None,
        controlnet: str | None = None,
        lora: str | None = None,
        lora_scale: float | None = None,
        enable_pag: bool = False,
    ) -> dict[str, Any]:
        """What the pipeline for ``model`` and ``task`` accepts: its class name and its ``__call__`` parameters
        (`RemoteManager.pipeline_class` and ``accepted_parameters``)."""
        self.allow.check_id(model, "model")
        self.allow.check_id(controlnet, "controlnet")
        self.allow.check_id(lora, "lora")
        self._check_dtype(dtype)
        pipeline = self.manager.get(
            model,
            task,
            torch_dtype=dtype,
            variant=variant,
            controlnet=controlnet,
            lora=lora,
            lora_scale=lora_scale,
            enable_pag=enable_pag is True,
        )
        return {
            "pipeline": type(pipeline).__name__,
            "parameters": sorted(accepted_parameters(pipeline)),
        }

    def status(self) -> dict[str, Any]:
        """This replica: what is loaded (the manager's status rows), jobs run, and accelerator memory."""
        status = self.manager.status()
        return {
            "replica": self.replica,
            "pid": self.pid,
            "device": self.manager.device,
            "jobs": self.jobs,
            "running": self.running,
            "up_s": round(time.time() - self.started, 1),
            "models": status.rows,
            "resident_bytes": status.resident_bytes,
            "memory": accelerator_memory(self.manager.device),
        }


def batch_members(core: WorkerCore, jobs: Sequence[Job]) -> list[list[tuple[Job, Any, Any]]]:
    """``jobs`` in groups that can each run as one pipeline call, in the order of each group's first job.

    A ``run`` job joins a group when its validated request has the `batch_key` of the group's and the same
    pipeline, and that pipeline `can_batch`; anything else (a chain's stage, a request that must run alone, one
    that fails its checks: it then fails alone, with its own message) is a group of one.
    """
    groups: dict[Hashable, list[tuple[Job, Any, Any]]] = {}
    for number, job in enumerate(jobs):
        kind, payload = job[0], job[1]
        key: Hashable = ("alone", number)
        request = pipeline = None
        if kind == "run":
            try:
                request, pipeline = core.prepared(payload)
            except Exception:
                pass  # reported when the job runs alone
            else:
                shared = batch_key(request) if can_batch(pipeline) else None
                if shared is not None:
                    key = (shared, id(pipeline))
        groups.setdefault(key, []).append((job, request, pipeline))
    return list(groups.values())


def _leave_batch(index: int, live: list[bool], control: JobControl, emit: Emit) -> Callable[[], bool]:
    """A batch member's ``should_stop``: once its job is cancelled, say so to its owner at once (its sample's
    result will be dropped) and mark it gone; the batch runs on for the others."""

    def should_stop() -> bool:
        if not control.should_stop():
            return False
        if live[index]:
            live[index] = False
            emit(
                {
                    "event": "cancelled",
                    "message": "generation cancelled; your sample left the batch it shared with other participants.",
                    "cancel_seen_after_step": control.cancel_seen_after_step,
                    "stopped_after_step": control.steps,
                }
            )
        return True

    return should_stop


def _callbacks(payload: dict[str, Any], control: JobControl, emit: Emit) -> dict[str, Any]:
    """`PipelineManager.run`'s callbacks for a job: step events (only to a client that shows progress),
    previews when asked, and ``should_stop`` from the job's cancel flag. The same for every kind of job."""
    images = payload.get("image_format", "png")
    progress = payload.get("progress", True)

    def on_step(step: int, total: int, tensors: Any) -> None:
        control.steps = step
        if progress:  # each event crosses three processes: sent only to a client that shows progress
            emit({"event": "step", "step": step, "total": total})

    def on_preview(step: int, total: int, image: Any) -> None:
        emit({"event": "preview", "step": step, "total": total, "image": encode(image, images=images)})

    return {
        "on_step": on_step,
        "should_stop": control.should_stop,
        "on_preview": on_preview if payload.get("previews") else None,
        "preview_every": payload.get("preview_every"),
    }


@contextlib.contextmanager
def _extras_blamed(request: Any, pipeline: Any) -> Iterator[None]:
    """Turn a `TypeError` or `ValueError` from a pipeline run with ``extra`` values into an
    `UnsupportedParameterError` that keeps the pipeline's own words.

    Every other input was validated, so such an error comes from a value in ``extra`` that the pipeline
    cannot use (``clip_skip="x"``; ``timesteps`` for a scheduler without custom timesteps): the
    participant's mistake, not the server's, and it must reach them as one ("tell your instructor" would
    send them to the wrong person). An nbinpaint error (a local run's own `UnsupportedParameterError`)
    passes through unchanged.
    """
    try:
        yield
    except (TypeError, ValueError) as error:
        if isinstance(error, NbinpaintError):
            raise
        if not request.extra:
            raise
        names = ", ".join(f"{name!r}" for name in request.extra)
        raise UnsupportedParameterError(
            f"{type(pipeline).__name__} (model {request.model!r}) could not use the values in extra "
            f"({names}): {type(error).__name__}: {error}. Check each value's type against the pipeline's "
            "documentation, or leave them out."
        ) from error


def _refuse_paths(request: Any, pipeline: Any = None) -> None:
    """Refuse an image input that is a path or URL (`nbinpaint.serve.protocol.NOT_PIXELS`): image, mask,
    control_image, an ``extra`` named like an image, and, given ``pipeline``, any ``extra`` its ``__call__``
    annotates as taking images."""
    for name in ("image", "mask", "control_image"):
        if holds_text(getattr(request, name)):
            raise refuse_not_pixels(name)
    parameters = inspect.signature(pipeline.__call__).parameters if pipeline is not None else {}
    for name, value in request.extra.items():
        annotation = parameters[name].annotation if name in parameters else None
        takes_images = image_parameter(name) or "Image" in str(annotation)
        if takes_images and holds_text(value):
            raise refuse_not_pixels(f"extra[{name!r}]")


def accelerator_memory(device: str) -> dict[str, Any]:
    """Bytes in use on ``device`` (and free/total for CUDA); the process's resident memory on a CPU."""
    import torch

    if device.startswith("cuda"):
        free, total = torch.cuda.mem_get_info()
        return {"device": device, "allocated": torch.cuda.memory_allocated(), "free": free, "total": total}
    if device == "mps":
        return {"device": device, "allocated": torch.mps.current_allocated_memory()}
    try:
        with open("/proc/self/statm") as statm:
            rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        rss = 0
    return {"device": device, "allocated": rss}
