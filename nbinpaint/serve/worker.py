"""One replica's engine: the shared `PipelineManager`, running one job at a time and reporting it as events.

Plain Python (no Ray): `nbinpaint.serve.app` wraps it in a Ray Serve deployment that runs `WorkerCore.execute`
in a thread and streams its events. A job is the same call a local kernel makes (`PipelineManager.run`,
`chains.run_stage`, `chains.run_chain`), so a remote result is the local result: same validation, same
seed handling, same pixels on the same device and dtype.
"""

from __future__ import annotations

import inspect
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from nbinpaint import openmp
from nbinpaint.errors import GenerationCancelled, ModelLoadError
from nbinpaint.requests import InpaintResult, accepted_parameters
from nbinpaint.serve.config import ServerConfig
from nbinpaint.serve.errors import ServerLimitError
from nbinpaint.serve.protocol import encode, error_to_wire, result_to_wire

__all__ = ["JobControl", "WorkerCore", "accelerator_memory", "signature_to_wire"]

Emit = Callable[[dict[str, Any]], None]
KINDS = ("run", "stage", "chain")


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
        images = payload.get("image_format", "png")
        try:
            if kind == "run":
                emit({"event": "result", **result_to_wire(self._run(payload, control, emit), images=images)})
            elif kind == "stage":
                emit({"event": "result", **result_to_wire(self._stage(payload), with_inputs=True, images=images)})
            elif kind == "chain":
                emit({"event": "result", "chain": self._chain(payload)})
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
        finally:
            self.running -= 1
            self.jobs += 1

    def _check_dtype(self, dtype: Any) -> None:
        from nbinpaint.pipeline_manager import resolve_dtype

        if resolve_dtype(dtype, self.manager.device) != self.dtype:
            name = str(self.dtype).replace("torch.", "")
            raise ServerLimitError(
                f"this workshop server runs its models in {name} (one copy of each for the whole class): "
                f"leave dtype unset, or use dtype={name!r}."
            )

    def _pipeline(self, request: Any) -> Any:
        self.allow.check(request)  # the gateway checked already; a replica never trusts that alone
        self._check_dtype(request.dtype)
        pipeline = self.manager.get(
            request.model,
            request.task,
            torch_dtype=request.dtype,
            variant=request.variant,
            controlnet=request.controlnet,
        )
        self.limits.check_defaults(request, pipeline)
        return pipeline

    def _run(self, payload: dict[str, Any], control: JobControl, emit: Emit) -> InpaintResult:
        request = payload["request"]
        self._pipeline(request.validated())

        progress = payload.get("progress", True)

        def on_step(step: int, total: int, tensors: Any) -> None:
            control.steps = step
            if progress:  # each event crosses three processes: sent only to a client that shows progress
                emit({"event": "step", "step": step, "total": total})

        def on_preview(step: int, total: int, image: Any) -> None:
            image = encode(image, images=payload.get("image_format", "png"))
            emit({"event": "preview", "step": step, "total": total, "image": image})

        return self.manager.run(
            request,
            on_step=on_step,
            should_stop=control.should_stop,
            on_preview=on_preview if payload.get("previews") else None,
            preview_every=payload.get("preview_every"),
            recipe_extra=payload.get("recipe_extra"),
        )

    def _stage(self, payload: dict[str, Any]) -> InpaintResult:
        from nbinpaint.chains import run_stage

        request = payload["request"]
        self._pipeline(request)
        return run_stage(self.manager, request, latents=payload.get("latents"), chain=payload.get("chain"))

    def _chain(self, payload: dict[str, Any]) -> dict[str, Any]:
        from nbinpaint.chains import run_chain

        for request in payload["requests"]:
            self._pipeline(request)
        chain = run_chain(payload["requests"], name=payload.get("name", "chain"), manager=self.manager)
        return {
            "name": chain.name,
            "stages": [
                result_to_wire(stage, with_inputs=index > 0, images=payload.get("image_format", "png"))
                for index, stage in enumerate(chain.stages)
            ],
            "handoffs": [handoff.as_dict() for handoff in chain.handoffs],
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
    ) -> dict[str, Any]:
        """What the pipeline for ``model`` and ``task`` accepts: its class and its ``__call__`` signature."""
        self.allow.check_id(model, "model")
        self.allow.check_id(controlnet, "controlnet")
        self._check_dtype(dtype)
        pipeline = self.manager.get(model, task, torch_dtype=dtype, variant=variant, controlnet=controlnet)
        return {
            "pipeline": type(pipeline).__name__,
            "parameters": sorted(accepted_parameters(pipeline)),
            "signature": signature_to_wire(pipeline.__call__),
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


def signature_to_wire(function: Callable[..., Any]) -> list[dict[str, Any]]:
    """A signature as data: each parameter's name, kind, and default (JSON values only; others as None)."""
    parameters = []
    for parameter in inspect.signature(function).parameters.values():
        entry: dict[str, Any] = {"name": parameter.name, "kind": parameter.kind.name}
        if parameter.default is not inspect.Parameter.empty:
            try:
                entry["default"] = json.loads(json.dumps(parameter.default))
            except (TypeError, ValueError):
                entry["default"] = None
        parameters.append(entry)
    return parameters


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
