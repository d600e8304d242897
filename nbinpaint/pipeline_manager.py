"""The shared pipeline manager: one per kernel, so every widget and notebook cell uses the same loaded weights.

It loads checkpoints with diffusers' Auto pipelines, derives the other tasks of a loaded checkpoint with
``from_pipe`` (sharing every component), chooses device and dtype, applies offload hooks centrally, keeps
resident memory under a budget by evicting the least recently used checkpoint, and serialises runs of one
checkpoint with a lock. Widgets and notebooks use only `get`, `run`, `status` and `release`, so the same
interface can later be served from one GPU process to many kernels.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import os
import re
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nbinpaint import handoff, lora, twins
from nbinpaint.contract import Manager, PipelineKey
from nbinpaint.errors import (
    ConfigurationError,
    InvalidRequestError,
    ModelLoadError,
    NbinpaintError,
    NotEnoughMemoryError,
    quote,
)
from nbinpaint.inputs import pixel_budget
from nbinpaint.notices import notice
from nbinpaint.requests import InpaintRequest, accepted_parameters
from nbinpaint.results import ChainResult, InpaintResult, RunOptions
from nbinpaint.runner import run_pipeline, validate_for
from nbinpaint.segmenter import SEGMENT_TASK, Segmenter, load_segmenter

# One table from task to the diffusers Auto class that loads it (resolved lazily: importing diffusers
# is slow and must happen after twin mode has set the hub environment).
AUTO_PIPELINES: dict[str, str] = {
    "inpaint": "AutoPipelineForInpainting",
    "img2img": "AutoPipelineForImage2Image",
    "text2img": "AutoPipelineForText2Image",
}
#: Inpainting checkpoints that diffusers' Auto classes do not map, by repo id: task -> pipeline class. Flux's
#: Fill model is an inpainting pipeline of its own (its transformer takes the mask), not Flux's text-to-image
#: pipeline, so `AutoPipelineForInpainting` cannot derive it.
PIPELINE_CLASSES: dict[str, dict[str, str]] = {
    "black-forest-labs/FLUX.1-Fill-dev": {"inpaint": "FluxFillPipeline"},
}
QUANTIZE_MODES = ("4bit", "8bit")
OFFLOAD_MODES = ("none", "model", "sequential")
# diffusers builds modules on the meta device by patching torch globally while it loads, so two loads in two
# threads (two managers, or a studio's model lookup beside a run's load) can corrupt each other ("Cannot copy
# out of meta tensor"). Loads are therefore serialised process-wide; runs are not.
_LOAD_LOCK = threading.Lock()

_DTYPES = {
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
}


def pick_device() -> str:
    """The best available device: cuda, then mps, then cpu."""
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(requested: Any, device: str) -> torch.dtype:
    """The dtype to load in: half precision on accelerators by default, never float16 on a CPU.

    float16 on a CPU runs through slow generic kernels (several times slower than float32 on the guide's
    checkpoints; ``python -m nbinpaint.bench`` measures it on the twins), so a float16 request on a CPU runs as
    float32, with a one-line notice. Only float16, bfloat16 and float32 are accepted: diffusers' pipelines
    compute in floating point, and an integer dtype such as ``torch.int8`` fails deep inside the load.
    """
    if requested is None or (isinstance(requested, str) and requested == "auto"):
        return torch.float32 if device == "cpu" else torch.float16
    names = ", ".join(sorted(_DTYPES))
    if isinstance(requested, str):
        if requested not in _DTYPES:
            raise InvalidRequestError(f"unknown dtype {quote(requested)}: use one of {names}.")
        requested = _DTYPES[requested]
    if requested not in set(_DTYPES.values()):
        what = str(requested) if isinstance(requested, torch.dtype) else quote(requested)
        raise InvalidRequestError(
            f"dtype={what} cannot run a diffusion pipeline: use torch.float16 or torch.bfloat16 on a GPU, "
            f"torch.float32 on a CPU, or None to choose by device (as a string: {names}). 8-bit and 4-bit "
            "weights need a quantization config (diffusers' BitsAndBytesConfig), not a dtype."
        )
    if requested == torch.float16 and device == "cpu":
        notice("float16 asked on CPU runs as float32: float16 kernels on a CPU are much slower.")
        return torch.float32
    return requested


_BYTE_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip


def parse_memory_budget(budget: Any) -> int | None:
    """A memory budget in bytes: None (no budget), a whole number of bytes >= 0, or text such as ``"8GB"``.

    Text is a number and a unit, as accelerate's ``max_memory`` reads them: KB/MB/GB/TB are powers of 1000,
    KiB/MiB/GiB/TiB powers of 1024 (``"1.5 GB"``, ``"512MiB"``). 0 keeps no idle checkpoint loaded.
    """
    fix = 'use a number of bytes >= 0 or text such as "8GB" or "512MiB", or None for no budget'
    if budget is None:
        return None
    if isinstance(budget, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*", budget.lower().replace("_", ""))
        if match is None or match.group(2) not in _BYTE_UNITS:
            raise ConfigurationError(f"memory_budget={quote(budget)} is not a size: {fix}.")
        return int(float(match.group(1)) * _BYTE_UNITS[match.group(2)])
    if isinstance(budget, bool) or not isinstance(budget, (int, float, np.integer, np.floating)):
        raise ConfigurationError(f"memory_budget={quote(budget)} ({type(budget).__name__}) is not a size: {fix}.")
    if not math.isfinite(budget) or budget < 0:
        raise ConfigurationError(f"memory_budget={budget!r} is invalid (negative or not finite): {fix}.")
    return int(budget)


def storages_of(obj: Any) -> dict[int, int]:
    """Storage address -> bytes of every parameter and buffer of a module or a pipeline's modules.

    Keyed by storage so that components shared through ``from_pipe`` are counted once.
    """
    storages: dict[int, int] = {}
    if isinstance(obj, torch.nn.Module):
        for tensor in (*obj.parameters(), *obj.buffers()):
            if tensor.device.type != "meta":
                storage = tensor.untyped_storage()
                storages[storage.data_ptr()] = storage.nbytes()
    else:  # a pipeline; its components may include a connected pipeline (Kandinsky's prior)
        for component in (getattr(obj, "components", None) or {}).values():
            if isinstance(component, torch.nn.Module) or hasattr(component, "components"):
                storages.update(storages_of(component))
    return storages


@dataclass(eq=False)
class _Checkpoint:
    """One loaded checkpoint: its pipelines per task share components, a scheduler, and therefore a lock."""

    repo_id: str
    dtype: torch.dtype
    pipelines: dict[str, Any] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    load_s: float = 0.0
    last_used: float = field(default_factory=time.monotonic)
    runs: int = 0
    hooked: Any = None  # the one pipeline of this checkpoint whose offload hooks are installed
    pins: int = 0  # runs that hold this checkpoint (from `get` to the end of the run): never evicted while > 0
    quantize: str | None = None  # the quantization that ran ("4bit", "8bit"), None for full weights
    lora: tuple[str, float | None] | None = None  # (repo id, scale) fused into these weights; None: plain

    @property
    def key(self) -> tuple[Any, ...]:
        """Its key in the manager's cache: a quantization or a fused LoRA makes another checkpoint of the same
        repo and dtype."""
        return _cache_key(self.repo_id, self.dtype, self.quantize, self.lora)

    @property
    def name(self) -> str:
        """The repo id, with the fused LoRA if any (``"runwayml/... + latent-consistency/lcm-lora-sdv1-5"``)."""
        return self.repo_id if self.lora is None else f"{self.repo_id} + {self.lora[0]}"

    def storages(self) -> dict[int, int]:
        merged: dict[int, int] = {}
        for pipeline in self.pipelines.values():
            merged.update(storages_of(pipeline))
        return merged


@dataclass
class ManagerStatus:
    """What is loaded, where, in which dtype, and how many bytes it holds."""

    rows: list[dict[str, Any]]
    resident_bytes: int
    budget_bytes: int | None
    device: str
    offload: str

    def __str__(self) -> str:
        header = ("model", "tasks", "device", "dtype", "MB", "twin", "runs")
        lines = [header] + [
            (
                r["model"],
                ",".join(r["tasks"]),
                r["device"],
                r["dtype"],
                f"{r['bytes'] / 2**20:.1f}",
                "yes" if r["twin"] else "no",
                str(r["runs"]),
            )
            for r in self.rows
        ]
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in lines]
        budget = "none" if self.budget_bytes is None else f"{self.budget_bytes / 2**20:.1f} MB"
        text.append(f"resident {self.resident_bytes / 2**20:.1f} MB, budget {budget}, offload {self.offload}")
        return "\n".join(text)

    def _repr_html_(self) -> str:
        import html

        cells = "".join(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(v))}</td>"
                for v in (
                    r["model"],
                    ", ".join(r["tasks"]),
                    r["device"],
                    r["dtype"],
                    f"{r['bytes'] / 2**20:.1f}",
                    "yes" if r["twin"] else "no",
                    r["runs"],
                )
            )
            + "</tr>"
            for r in self.rows
        )
        head = "".join(f"<th>{h}</th>" for h in ("model", "tasks", "device", "dtype", "MB", "twin", "runs"))
        footer = html.escape(str(self).splitlines()[-1])
        return f"<table><tr>{head}</tr>{cells}</table><p>{footer}</p>"


class PipelineManager(Manager):
    """Loads, caches and runs diffusers pipelines for one kernel.

    Parameters
    ----------
    device:
        ``"cuda"``, ``"mps"`` or ``"cpu"``; picked automatically when None.
    offload:
        ``"none"``, ``"model"`` (``enable_model_cpu_offload``) or ``"sequential"``; a no-op on a CPU.
    memory_budget:
        Resident weights to keep at most, in bytes or as text such as ``"8GB"`` or ``"512MiB"`` (see
        `parse_memory_budget`); least recently used checkpoints are evicted, never one a run is using.
    compile_denoiser:
        Wrap each pipeline's UNet/transformer in ``torch.compile`` (compiles at the first call).
    allow_pickle:
        Allow ``.bin``/``.ckpt`` pickle weights. Off by default: pickles can run code when loaded.
    max_pixels:
        Largest automatic run size in pixels; larger images are generated smaller and resized back, with a
        notice. None: ``$NBINPAINT_MAX_PIXELS`` or `nbinpaint.inputs.DEFAULT_MAX_PIXELS`; 0: no budget.

    Out of memory during a run, the manager evicts every other checkpoint, turns on CPU offload (one step
    further: none -> model -> sequential, on accelerators), says so, and retries once; a second failure
    raises `NotEnoughMemoryError` naming what to change.
    """

    def __init__(
        self,
        *,
        device: str | None = None,
        offload: str = "none",
        memory_budget: int | str | None = None,
        compile_denoiser: bool = False,
        allow_pickle: bool = False,
        max_pixels: int | None = None,
    ) -> None:
        self.device = device or pick_device()
        if max_pixels is not None:
            pixel_budget(max_pixels)  # refuse a bad value now, not at the first run
        self.max_pixels = max_pixels
        self.memory_budget = parse_memory_budget(memory_budget)
        self.compile_denoiser = compile_denoiser
        self.allow_pickle = allow_pickle
        # (repo id, dtype, fused LoRA or None) -> checkpoint. A LoRA is fused into its own copy of the weights:
        # fusing rewrites them in place, and unfusing is not an exact inverse in half precision (w + BA - BA
        # rounds), so a plain pipeline sharing those weights with a fused one could drift from its own
        # results, and a run of one would change the other's mid-way. The copy costs memory, counted and
        # evicted by the budget like any checkpoint; PAG, which changes no weights, is another slot instead.
        self._checkpoints: OrderedDict[tuple[str, torch.dtype, Any], _Checkpoint] = OrderedDict()
        self._controlnets: dict[tuple[str, torch.dtype], Any] = {}
        self._lock = threading.RLock()
        # Pipelines this manager evicted while someone may still hold them (from an earlier `get`): a later
        # `_checkpoint_of` re-registers them instead of failing. Weak, so an evicted pipeline nobody holds is freed.
        self._dropped: weakref.WeakKeyDictionary[Any, tuple[tuple[str, torch.dtype], str]] = weakref.WeakKeyDictionary()
        self.offload = "none"
        self.set_offload(offload)
        # diffusers' first import is not thread-safe (two threads importing it at once both saw a partially
        # initialised `diffusers.utils`: ImportError / KeyError). Every thread that runs work got this manager
        # first, so importing it here, once, keeps two studios' first clicks from racing on it.
        import diffusers  # noqa: F401

    # ------------------------------------------------------------------ loading
    def _pipeline(self, key: PipelineKey) -> Any:
        """`get`: loaded once and then served from the cache.

        Another task of a loaded checkpoint is derived with ``from_pipe``: no weights are loaded or copied.
        A failed load leaves everything already loaded as it was. ``enable_pag`` derives the PAG pipeline from
        the plain one (another slot of the same checkpoint); ``lora`` loads a checkpoint of its own (see
        ``_checkpoints``).
        """
        if key.enable_pag:
            return self._pag_pipeline(key)
        repo_id, task, torch_dtype, variant, controlnet = (
            key.model,
            key.task,
            key.torch_dtype,
            key.variant,
            key.controlnet,
        )
        quantize = self._quantization(key.quantize)
        if task not in AUTO_PIPELINES:
            raise InvalidRequestError(f"task must be one of {', '.join(AUTO_PIPELINES)}; got {quote(task)}.")
        from nbinpaint.backends import get_backend, is_backend_id

        dtype = resolve_dtype(torch_dtype, self.device)
        fused = None if key.lora is None else (key.lora, key.lora_scale)
        key = _cache_key(repo_id, dtype, quantize, fused)
        slot = task if controlnet is None else f"{task}+controlnet:{controlnet}"
        with self._lock:
            checkpoint = self._checkpoints.get(key)
            if checkpoint is not None:
                self._checkpoints.move_to_end(key)
                checkpoint.last_used = time.monotonic()
                if slot in checkpoint.pipelines:
                    return checkpoint.pipelines[slot]
            if is_backend_id(repo_id):
                if task != "inpaint" or controlnet or fused:
                    raise InvalidRequestError(
                        f"{repo_id} is a classical inpainting backend: use task='inpaint', without a ControlNet "
                        "or LoRA."
                    )
                checkpoint = _Checkpoint(repo_id, dtype, {slot: get_backend(repo_id)})
                self._checkpoints[key] = checkpoint
                return checkpoint.pipelines[slot]
            extra = {} if controlnet is None else {"controlnet": self._controlnet(controlnet, dtype, variant)}
            if checkpoint is not None:
                base = next(iter(checkpoint.pipelines.values()))
                if controlnet is None and getattr(base, "controlnet", None) is not None:
                    extra["controlnet"] = None  # derive the plain pipeline, not another ControlNet one
                pipeline = self._derive(base, task, repo_id, extra)
            else:
                self._evict_for(self._estimate_bytes(repo_id, dtype, variant), keep=None)
                started = time.perf_counter()
                pipeline = self._load(repo_id, task, dtype, variant, extra, quantize, fused)
                checkpoint = _Checkpoint(
                    repo_id, dtype, load_s=time.perf_counter() - started, quantize=quantize, lora=fused
                )
                self._checkpoints[key] = checkpoint
            checkpoint.pipelines[slot] = pipeline
            self._evict_for(0, keep=checkpoint)
            return pipeline

    def _pag_pipeline(self, key: PipelineKey) -> Any:
        """The PAG pipeline of ``key``'s checkpoint: derived from the plain pipeline, sharing its components (PAG
        changes the attention processors for the length of a call only), kept as one more slot."""
        base = self._pipeline(dataclasses.replace(key, enable_pag=False))
        with self._lock:
            checkpoint = self._checkpoint_of(base)
            slot = next(name for name, pipeline in checkpoint.pipelines.items() if pipeline is base) + "+pag"
            if slot not in checkpoint.pipelines:
                with _LOAD_LOCK:
                    pipeline = lora.pag_pipeline(self._auto_class(key.task, key.model), base)
                checkpoint.pipelines[slot] = self._prepare(pipeline)
            return checkpoint.pipelines[slot]

    def _auto_class(self, task: str, repo_id: str | None = None) -> Any:
        """The class that loads ``repo_id`` for ``task``: `PIPELINE_CLASSES`' entry, else the Auto class."""
        import diffusers

        return getattr(diffusers, PIPELINE_CLASSES.get(repo_id or "", {}).get(task) or AUTO_PIPELINES[task])

    def _quantization(self, quantize: str | None) -> str | None:
        """The quantization that will actually run: ``quantize`` on CUDA with bitsandbytes installed, else None
        with a notice (bitsandbytes' 4- and 8-bit kernels are CUDA's; a CPU loads the full float32 weights)."""
        if quantize is None:
            return None
        if quantize not in QUANTIZE_MODES:
            raise InvalidRequestError(
                f"quantize must be one of {', '.join(map(repr, QUANTIZE_MODES))} or None; got {quote(quantize)}."
            )
        if self.device != "cuda":
            notice(
                f"quantize={quantize!r} needs a CUDA GPU (bitsandbytes): on {self.device} the full weights load "
                "instead, and the recipe says so."
            )
            return None
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None:
            notice(
                f"quantize={quantize!r} needs bitsandbytes (pip install bitsandbytes): loading the full weights "
                "instead, and the recipe says so."
            )
            return None
        return quantize

    def _load(
        self,
        repo_id: str,
        task: str,
        dtype: torch.dtype,
        variant: str | None,
        extra: dict,
        quantize: str | None = None,
        fused: tuple[str, float | None] | None = None,
    ) -> Any:
        kwargs: dict[str, Any] = {_dtype_keyword(): dtype, **_hub_kwargs(), **extra}
        if quantize is not None:
            kwargs["quantization_config"] = quantization_config(repo_id, quantize, dtype)
        # use_safetensors=True makes diffusers refuse pickle-only checkpoints; None lets it fall back.
        kwargs["use_safetensors"] = None if self.allow_pickle else True
        if variant:
            kwargs["variant"] = variant
        try:
            with _LOAD_LOCK:
                pipeline = self._auto_class(task, repo_id).from_pretrained(repo_id, **kwargs)
        except Exception as error:  # every load failure becomes one message that names the fix
            raise ModelLoadError(explain_load_error(repo_id, task, error, self.allow_pickle)) from error
        if fused is not None:  # before _prepare: fused weights are what moves to the device and compiles
            spec = lora.spec_for(fused[0])
            files: dict[str, Any] = {"use_safetensors": None if self.allow_pickle else True}  # as the checkpoint
            if spec is not None and spec.weight_name:
                files["weight_name"] = spec.weight_name
            with _LOAD_LOCK:
                lora.fuse(pipeline, fused[0], fused[1], {**_hub_kwargs(), **files})
        return self._prepare(pipeline)

    def _derive(self, base: Any, task: str, repo_id: str, extra: dict) -> Any:
        try:
            with _LOAD_LOCK:
                pipeline = self._auto_class(task, repo_id).from_pipe(base, **extra)
        except Exception as error:
            raise ModelLoadError(
                f"{quote(repo_id)} is loaded, but diffusers has no {task} pipeline for "
                f"{type(base).__name__} ({error}). Choose another task or checkpoint."
            ) from error
        return self._prepare(pipeline)

    def _controlnet(self, repo_id: str, dtype: torch.dtype, variant: str | None) -> Any:
        key = (repo_id, dtype)
        if key not in self._controlnets:
            from diffusers import ControlNetModel

            kwargs: dict[str, Any] = {
                _dtype_keyword(): dtype,
                "use_safetensors": None if self.allow_pickle else True,
                **_hub_kwargs(),
            }
            if variant:
                kwargs["variant"] = variant
            try:
                with _LOAD_LOCK:
                    model = ControlNetModel.from_pretrained(repo_id, **kwargs)
            except Exception as error:
                raise ModelLoadError(explain_load_error(repo_id, "controlnet", error, self.allow_pickle)) from error
            if self.offload == "none":
                model.to(self.device)
            self._controlnets[key] = model
        return self._controlnets[key]

    def _prepare(self, pipeline: Any) -> Any:
        """Place a new pipeline on the device (offload hooks come later, in `_activate`); bitsandbytes places
        its quantized modules itself, so only the others are moved."""
        quantized = [
            module for module in getattr(pipeline, "components", {}).values() if getattr(module, "is_quantized", False)
        ]
        if quantized and (self.offload == "none" or self.device == "cpu"):
            for module in getattr(pipeline, "components", {}).values():
                if isinstance(module, torch.nn.Module) and not getattr(module, "is_quantized", False):
                    module.to(self.device)
        elif self.offload == "none" or self.device == "cpu":
            pipeline.to(self.device)
        if self.compile_denoiser:
            for name in ("unet", "transformer"):
                module = getattr(pipeline, name, None)
                if isinstance(module, torch.nn.Module) and not hasattr(module, "_orig_mod"):
                    setattr(pipeline, name, torch.compile(module))
        return pipeline

    def _estimate_bytes(self, repo_id: str, dtype: torch.dtype, variant: str | None) -> int:
        """Bytes a checkpoint will take, from its cached safetensors files (0 if not cached yet)."""
        if self.memory_budget is None:
            return 0
        try:
            from huggingface_hub import snapshot_download

            folder = snapshot_download(repo_id, **{"local_files_only": True, **_hub_kwargs()})
        except Exception:
            return 0
        total = 0
        for root, _dirs, files in os.walk(folder):
            for name in files:
                parts = name.split(".")
                if parts[-1] != "safetensors" or (len(parts) == 3) != bool(variant):
                    continue
                if variant and parts[1] != variant:
                    continue
                stored = 2 if variant in ("fp16", "bf16") else 4
                total += os.path.getsize(os.path.join(root, name)) * dtype.itemsize // stored
        return total

    # ------------------------------------------------------------------ segmenting
    def _segmenter(self, repo_id: str, torch_dtype: Any) -> Segmenter:
        """`segmenter`: a Segment Anything checkpoint as one more cached checkpoint (task ``"segment"``), so the
        memory budget, eviction, device, dtype, offload and `status` treat it as they treat a pipeline."""
        dtype = resolve_dtype(torch_dtype, self.device)
        key = (repo_id, dtype)
        with self._lock:
            checkpoint = self._checkpoints.get(key)
            if checkpoint is not None:
                if SEGMENT_TASK not in checkpoint.pipelines:
                    raise ModelLoadError(
                        f"{quote(repo_id)} is loaded as a diffusers pipeline, not Segment Anything: segment with a "
                        "SamModel checkpoint such as 'facebook/sam-vit-base'."
                    )
                self._checkpoints.move_to_end(key)
                checkpoint.last_used = time.monotonic()
                return checkpoint.pipelines[SEGMENT_TASK]
            self._evict_for(self._estimate_bytes(repo_id, dtype, None), keep=None)
            started = time.perf_counter()
            try:
                with _LOAD_LOCK:
                    segmenter = load_segmenter(
                        repo_id,
                        dtype=dtype,
                        allow_pickle=self.allow_pickle,
                        hub_kwargs=_hub_kwargs(),
                        hold=self.running,
                    )
            except ModelLoadError:
                raise
            except Exception as error:
                raise ModelLoadError(explain_load_error(repo_id, SEGMENT_TASK, error, self.allow_pickle)) from error
            self._prepare(segmenter)
            checkpoint = _Checkpoint(repo_id, dtype, {SEGMENT_TASK: segmenter}, load_s=time.perf_counter() - started)
            self._checkpoints[key] = checkpoint
            self._evict_for(0, keep=checkpoint)
            return segmenter

    # ------------------------------------------------------------------ memory
    def resident_bytes(self) -> int:
        """Bytes of weights the manager keeps alive (shared storages counted once)."""
        storages: dict[int, int] = {}
        with self._lock:
            for checkpoint in self._checkpoints.values():
                storages.update(checkpoint.storages())
            for model in self._controlnets.values():
                storages.update(storages_of(model))
        return sum(storages.values())

    def _evict_for(self, incoming: int, keep: _Checkpoint | None) -> None:
        """Evict least recently used checkpoints until resident + incoming bytes fit the budget.

        A checkpoint a run is using (pinned) is never evicted: when nothing else is left, the budget is
        exceeded for now, with a notice, and the next load evicts what has become idle by then.
        """
        if self.memory_budget is None:
            return
        while self.resident_bytes() + incoming > self.memory_budget:
            victim = next((k for k, c in self._checkpoints.items() if c is not keep and not c.pins), None)
            if victim is None:
                busy = [c.repo_id for c in self._checkpoints.values() if c is not keep and c.pins]
                budget = f"the memory budget ({self.memory_budget / 2**20:.0f} MB)"
                if busy:
                    notice(
                        f"{budget} is exceeded: {', '.join(busy)} {'is' if len(busy) == 1 else 'are'} in use by a "
                        "run and stay loaded until it ends."
                    )
                elif keep is not None:
                    notice(f"{keep.repo_id} alone holds more than {budget}: kept loaded, nothing else to evict.")
                return
            self._drop(victim)

    def evict(self, count: int = 1) -> list[str]:
        """Drop the ``count`` least recently used checkpoints; returns their repo ids."""
        with self._lock:
            victims = list(self._checkpoints)[:count]
            names = [self._checkpoints[key].name for key in victims]
            for key in victims:
                self._drop(key)
        _collect()
        return names

    def _drop(self, key: tuple[str, torch.dtype, Any]) -> None:
        checkpoint = self._checkpoints.pop(key)
        with checkpoint.lock:  # never pull weights from under a running generation
            self._remove_hooks(checkpoint)
            for slot, pipeline in checkpoint.pipelines.items():
                with contextlib.suppress(TypeError):  # an object without weak references is simply forgotten
                    self._dropped[pipeline] = (key, slot)
            checkpoint.pipelines.clear()

    def release(self, repo_id: str) -> dict[str, int]:
        """Drop every reference the manager holds to ``repo_id`` (and controlnets of that id; for a LoRA's id,
        every checkpoint it is fused into)."""
        return self._release(lambda rid: rid == repo_id, repo_id)

    def release_all(self) -> dict[str, int]:
        """Drop everything; returns memory before and after, which it also prints."""
        return self._release(lambda rid: True, "all pipelines")

    def _release(self, match: Callable[[str], bool], what: str) -> dict[str, int]:
        before = _memory_snapshot(self.device, self.resident_bytes())
        with self._lock:
            for key, checkpoint in list(self._checkpoints.items()):
                if match(key[0]) or (checkpoint.lora is not None and match(checkpoint.lora[0])):
                    self._drop(key)
            for key in [k for k in self._controlnets if match(k[0])]:
                del self._controlnets[key]
        _collect()
        after = _memory_snapshot(self.device, self.resident_bytes())
        print(
            f"nbinpaint: released {what}: weights {before['resident'] / 2**20:.1f} -> "
            f"{after['resident'] / 2**20:.1f} MB, {self.device} memory "
            f"{before['device'] / 2**20:.1f} -> {after['device'] / 2**20:.1f} MB"
        )
        return {"before": before["resident"], "after": after["resident"]}

    # ------------------------------------------------------------------ offload
    def set_offload(self, mode: str) -> None:
        """Choose ``"none"``, ``"model"`` or ``"sequential"`` CPU offload; applied before the next run."""
        if mode not in OFFLOAD_MODES:
            raise InvalidRequestError(f"offload must be one of {', '.join(OFFLOAD_MODES)}; got {quote(mode)}.")
        if mode != "none" and self.device == "cpu":
            notice(f"offload={mode!r} does nothing on a CPU: the weights already live in CPU memory.")
            mode = "none"
        with self._lock:
            self.offload = mode
            for checkpoint in self._checkpoints.values():
                with checkpoint.lock:
                    self._remove_hooks(checkpoint)
                    if mode == "none":
                        for pipeline in checkpoint.pipelines.values():
                            pipeline.to(self.device)

    def _activate(self, checkpoint: _Checkpoint, pipeline: Any) -> None:
        """Install offload hooks on the pipeline about to run, removing them from its siblings first.

        Pipelines made by ``from_pipe`` share modules: hooks left on one while another offloads the same
        modules is a known diffusers pitfall (as is calling the offload method twice), so at most one
        pipeline of a checkpoint holds hooks. Called under the checkpoint's lock.
        """
        if self.offload == "none" or checkpoint.hooked is pipeline:
            return
        self._remove_hooks(checkpoint)
        method = "enable_model_cpu_offload" if self.offload == "model" else "enable_sequential_cpu_offload"
        getattr(pipeline, method)(device=self.device)
        checkpoint.hooked = pipeline

    @staticmethod
    def _remove_hooks(checkpoint: _Checkpoint) -> None:
        remove = getattr(checkpoint.hooked, "remove_all_hooks", None)
        if remove is not None:
            remove()
        checkpoint.hooked = None

    # ------------------------------------------------------------------ running
    def _checkpoint_of(self, pipeline: Any) -> _Checkpoint:
        """The checkpoint ``pipeline`` belongs to; one evicted since the caller's `get` is registered again.

        The caller's reference keeps an evicted pipeline's weights alive anyway, so taking it back costs no
        memory and keeps the budget's accounting true. Only when the same checkpoint has been loaded again
        as other objects meanwhile is the caller asked to `get` it anew.
        """
        with self._lock:
            for checkpoint in self._checkpoints.values():
                if any(p is pipeline for p in checkpoint.pipelines.values()):
                    return checkpoint
            try:
                dropped = self._dropped.get(pipeline)
            except TypeError:  # not weakly referenceable, so never one of ours
                dropped = None
            if dropped is None:
                raise KeyError("this pipeline is not managed here; get it with manager.get(...)")
            key, slot = dropped
            current = self._checkpoints.get(key)
            if current is None:
                quantize, fused = key[2:] if len(key) > 2 else (None, None)
                current = _Checkpoint(key[0], key[1], {slot: pipeline}, quantize=quantize, lora=fused)
                self._checkpoints[key] = current
            elif slot not in current.pipelines and set(storages_of(pipeline)) & set(current.storages()):
                current.pipelines[slot] = pipeline  # a sibling of the re-registered one (same weights)
            else:
                raise ModelLoadError(
                    f"this {key[0]} pipeline was evicted (memory budget or manager.evict) and the checkpoint has "
                    f"been loaded again since: get the current one with manager.get({key[0]!r}, ...) and use it."
                )
            del self._dropped[pipeline]
            self._checkpoints.move_to_end(key)
            self._evict_for(0, keep=current)
            return current

    def lock_for(self, pipeline: Any) -> threading.RLock:
        """The lock that serialises runs of the checkpoint ``pipeline`` belongs to."""
        return self._checkpoint_of(pipeline).lock

    @contextmanager
    def running(self, pipeline: Any) -> Iterator[None]:
        """Hold a pipeline from `get` for one call of it, as `run` does: its checkpoint pinned (never evicted),
        its lock taken, offload hooks on it; the run is counted when the block ends without an error.

        For code that calls such a pipeline itself (a chain's stage): ``with manager.running(pipe): pipe(...)``.
        A pipeline evicted since `get` is registered again (see `_checkpoint_of`).
        """
        with self._lock:
            checkpoint = self._checkpoint_of(pipeline)
            checkpoint.pins += 1
        try:
            with checkpoint.lock:
                self._activate(checkpoint, pipeline)
                yield
                checkpoint.runs += 1
        finally:
            self._unpin(checkpoint)

    def _unpin(self, checkpoint: _Checkpoint) -> None:
        """End a run's hold; what the budget could not evict while it ran (idle now) is evicted here."""
        with self._lock:
            checkpoint.pins -= 1
            if checkpoint.pins == 0 and self.memory_budget is not None:
                current = self._checkpoints.get(checkpoint.key)
                if current is checkpoint:  # still managed: kept, like the checkpoint a load has just brought
                    self._evict_for(0, keep=checkpoint)

    def _describe(self, key: PipelineKey) -> tuple[str, frozenset[str]]:
        pipeline = self._pipeline(key)
        return type(pipeline).__name__, accepted_parameters(pipeline)

    def _execute(self, request: InpaintRequest, latents: Any, options: RunOptions) -> InpaintResult:
        """`run` here: validated, the checkpoint pinned and locked, offload hooks on, one retry out of memory;
        `nbinpaint.runner.run_pipeline` makes the call."""
        started = time.perf_counter()
        if latents is None:  # refuse a bad request before anything loads
            request = validate_for(request, None, max_pixels=self.max_pixels)
        # Looked up and pinned in one step under the manager's lock, and pinned to the end of the run: another
        # thread's load cannot evict the checkpoint between the lookup and the run.
        with self._lock:
            pipeline = self._pipeline(PipelineKey.of(request))
            checkpoint = self._checkpoint_of(pipeline)
            checkpoint.pins += 1
        if request.quantize != checkpoint.quantize:  # asked on a CPU or without bitsandbytes: say what ran
            extra = {**(options.recipe_extra or {}), "quantize_asked": request.quantize}
            options = dataclasses.replace(options, recipe_extra=extra)
            request = request.replace(quantize=checkpoint.quantize)
        try:
            if latents is not None:
                request = validate_for(request, pipeline, latents=latents, max_pixels=self.max_pixels)
            loaded = time.perf_counter()
            result, waited = self._run_pinned(checkpoint, pipeline, request, latents, options)
        finally:
            self._unpin(checkpoint)
        result.timings.update(load_s=loaded - started, wait_s=waited - loaded, total_s=time.perf_counter() - started)
        return result

    def _execute_chain(self, requests: Sequence[InpaintRequest], name: str, options: RunOptions) -> ChainResult:
        return handoff.run_chain(self, requests, name=name, options=options)

    def _run_pinned(
        self, checkpoint: _Checkpoint, pipeline: Any, request: InpaintRequest, latents: Any, options: RunOptions
    ) -> tuple[InpaintResult, float]:
        """One run with one retry out of memory; returns the result and when the checkpoint's lock was taken."""
        # Out of memory, the retry comes after the except block: the exception's traceback holds the frames,
        # and so the tensors, that the retry needs freed (and IPython keeps the last one alive).
        try:
            return self._attempt(checkpoint, pipeline, request, latents, options)
        except Exception as error:
            if not is_out_of_memory(error):
                raise
        self._recover_from_oom(checkpoint, request)
        waited = time.perf_counter()
        failed = False
        try:
            result, _ = self._attempt(checkpoint, pipeline, request, latents, options)
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            failed = True
        if failed:
            _collect()
            raise NotEnoughMemoryError(self._oom_message(checkpoint, request))
        return result, waited

    def _attempt(
        self, checkpoint: _Checkpoint, pipeline: Any, request: InpaintRequest, latents: Any, options: RunOptions
    ) -> tuple[InpaintResult, float]:
        """One run under the checkpoint's lock; returns the result and when the lock was acquired."""
        with checkpoint.lock:
            waited = time.perf_counter()
            self._activate(checkpoint, pipeline)
            result = run_pipeline(pipeline, request, latents, options)
            checkpoint.runs += 1
        return result, waited

    def _recover_from_oom(self, checkpoint: _Checkpoint, request: InpaintRequest) -> None:
        """Free what can be freed for one retry: other checkpoints, cached blocks, and one more offload step.

        Runs without holding ``checkpoint.lock``, so evicting a checkpoint that another thread is running
        waits for that run instead of deadlocking against it.
        """
        with self._lock:  # a checkpoint another run is using frees nothing (that run holds it): left alone
            others = [key for key, c in self._checkpoints.items() if c is not checkpoint and not c.pins]
            evicted = [self._checkpoints[key].name for key in others]
            for key in others:
                self._drop(key)
        _collect()
        steps = [f"evicted {', '.join(evicted)}"] if others else []
        steps.append("freed cached memory")
        escalate = {"none": "model", "model": "sequential"}.get(self.offload)
        if escalate is not None and self.device != "cpu":
            self.set_offload(escalate)
            steps.append(f"turned on {escalate} CPU offload (manager.set_offload({escalate!r}))")
        notice(
            f"out of {self.device} memory running {request.model} at {request.width}x{request.height}: "
            f"{', '.join(steps)}; retrying once.",
            once=False,
        )

    def _oom_message(self, checkpoint: _Checkpoint, request: InpaintRequest) -> str:
        size = f"{request.width}x{request.height}" if request.width else "the pipeline's default size"
        images = request.num_images or 1
        fixes = [f"a smaller image or width/height (it ran at {size})"]
        if self.offload != "sequential" and self.device != "cpu":
            fixes.append('manager.set_offload("sequential")')
        if self.device != "cpu" and checkpoint.dtype == torch.float32:
            fixes.append("dtype='float16'")
        if images > 1:
            fixes.append(f"fewer images (num_images=1, not {images})")
        fixes.append("manager.release_all() to free every other model")
        return (
            f"out of {self.device} memory running {quote(request.model)} ({images} image(s) at {size}), even after "
            f"evicting other pipelines and retrying with offload {self.offload!r}. Try: {'; '.join(fixes)}. "
            "Your mask, results and history are unchanged."
        )

    # ------------------------------------------------------------------ status
    def status(self) -> ManagerStatus:
        """A table of what is loaded: model, tasks, device, dtype, bytes, twin or not, runs."""
        rows = []
        with self._lock:
            for checkpoint in self._checkpoints.values():
                pipeline = next(iter(checkpoint.pipelines.values()), None)
                rows.append(
                    {
                        "model": checkpoint.name,
                        "tasks": list(checkpoint.pipelines),
                        "device": self.device if self.offload == "none" else f"{self.device} ({self.offload} offload)",
                        "dtype": str(checkpoint.dtype).replace("torch.", "")
                        + (f" ({checkpoint.quantize})" if checkpoint.quantize else ""),
                        "bytes": sum(checkpoint.storages().values()),
                        "twin": pipeline is not None and twins.is_twin(pipeline),
                        "runs": checkpoint.runs,
                        "load_s": round(checkpoint.load_s, 3),
                    }
                )
            for (repo_id, dtype), model in self._controlnets.items():
                rows.append(
                    {
                        "model": repo_id,
                        "tasks": ["controlnet"],
                        "device": str(model.device),
                        "dtype": str(dtype).replace("torch.", ""),
                        "bytes": sum(storages_of(model).values()),
                        "twin": twins.is_twin(model),
                        "runs": 0,
                        "load_s": 0.0,
                    }
                )
        return ManagerStatus(rows, self.resident_bytes(), self.memory_budget, self.device, self.offload)


def _cache_key(
    repo_id: str, dtype: torch.dtype, quantize: str | None = None, lora: tuple[str, float | None] | None = None
) -> tuple[Any, ...]:
    """The manager's key of one loaded checkpoint: (repo id, dtype), and the quantization and the fused LoRA
    when there is either (weights of their own)."""
    return (repo_id, dtype) if quantize is None and lora is None else (repo_id, dtype, quantize, lora)


def quantization_config(repo_id: str, quantize: str, dtype: torch.dtype) -> Any:
    """diffusers' `PipelineQuantizationConfig` for ``quantize`` ("4bit": NF4, "8bit": LLM.int8) on the
    checkpoint's large parts: its denoiser (UNet or transformer) and T5 encoder, found in its model_index.json
    by class, so SD3's ``text_encoder_3`` and Flux's ``text_encoder_2`` are both found without a name list."""
    import json

    from diffusers import PipelineQuantizationConfig
    from huggingface_hub import hf_hub_download

    index = json.loads(Path(hf_hub_download(repo_id, "model_index.json", **_hub_kwargs())).read_text())
    large = sorted(
        name
        for name, entry in index.items()
        if isinstance(entry, list)
        and len(entry) == 2
        and isinstance(entry[1], str)
        and (entry[1].endswith(("Transformer2DModel", "UNet2DConditionModel")) or entry[1] == "T5EncoderModel")
    )
    if quantize == "4bit":
        backend = "bitsandbytes_4bit"
        options: dict[str, Any] = {
            "load_in_4bit": True,
            "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_compute_dtype": dtype,
        }
    else:
        backend, options = "bitsandbytes_8bit", {"load_in_8bit": True}
    return PipelineQuantizationConfig(quant_backend=backend, quant_kwargs=options, components_to_quantize=large)


def _hub_kwargs() -> dict[str, Any]:
    """Where ``from_pretrained`` looks: in twin mode the twins' folder, offline, passed explicitly.

    huggingface_hub reads ``HF_HUB_CACHE`` into its constants when first imported, so with twin mode set
    by ``NBINPAINT_TWINS=1`` alone the environment is not enough; the argument works in every import order.
    """
    root = twins.twin_cache()
    return {} if root is None else {"cache_dir": str(root), "local_files_only": True}


def _dtype_keyword() -> str:
    """``dtype`` where diffusers reads it (0.42 deprecates ``torch_dtype``), else ``torch_dtype``."""
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401  (present since dtype= exists)
    except ImportError:
        return "torch_dtype"
    return "dtype"


def explain_load_error(repo_id: str, task: str, error: BaseException, allow_pickle: bool) -> str:
    """Turn a from_pretrained failure into one sentence that names the repo id and the fix.

    Decided from the exception chain's types where huggingface_hub gives them (diffusers re-raises hub
    errors as a plain ``OSError`` whose context is the original), and from diffusers' wording otherwise.
    """
    from huggingface_hub import errors as hub

    chain = _exception_chain(error)
    text = " | ".join(f"{type(e).__name__}: {e}" for e in chain)
    first = f"{type(error).__name__}: {error}".splitlines()[0][:300]
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    local = os.path.isdir(repo_id)
    try:
        twin_mode = twins.twin_mode()
    except NbinpaintError:  # a bad NBINPAINT_TWINS value: the load's own error is what to explain here
        twin_mode = False
    offline = offline or twin_mode
    pipeline_folder = task not in ("controlnet", SEGMENT_TASK)  # the others are plain model folders
    if local and pipeline_folder and not os.path.isfile(os.path.join(repo_id, "model_index.json")):
        inside = _pipeline_folder_below(repo_id)
        where = f" One is inside it: pass {inside!r}." if inside else ""
        return (
            f"could not load {quote(repo_id)}: the folder is not a diffusers pipeline (it has no "
            "model_index.json, which pipeline.save_pretrained(folder) writes). Pass the folder that holds "
            f"model_index.json, or a repo id such as 'runwayml/stable-diffusion-inpainting'.{where}"
        )
    if not local and _looks_like_path(repo_id):
        return (
            f"could not load {quote(repo_id)}: there is no folder at that path (relative paths start in "
            f"{os.getcwd()!r}). Check the path, or use a repo id such as 'runwayml/stable-diffusion-inpainting'."
        )
    if twin_mode and repo_id not in twins.REPO_IDS and not local:
        return (
            f"could not load {quote(repo_id)}: twin mode is on and there is no twin of it. Twins exist for: "
            f"{', '.join(twins.REPO_IDS)}. Pick one of those, or turn twin mode off to load real checkpoints."
        )
    if twin_mode and not local and _cache_miss(chain, text):
        root = twins.default_dir()
        return (
            f"could not load the twin of {quote(repo_id)}: it is not in the twins' folder {str(root)!r}. Build it "
            f"with `python -m nbinpaint twins {root}`, or call nbinpaint.use_twins(). ({first[:200]})"
        )
    if "safetensors" in text.lower() and not allow_pickle:
        return (
            f"could not load {quote(repo_id)}: it has no safetensors weights, and pickle weights are refused because "
            "loading them can run code. If you trust this repository, create the manager with "
            "PipelineManager(allow_pickle=True)."
        )
    login = "log in with `hf auth login` (or set the HF_TOKEN environment variable)"
    if any(isinstance(e, hub.GatedRepoError) for e in chain) or "Cannot access gated repo" in text:
        return (
            f"could not load {quote(repo_id)}: the repository is gated. Accept its license on "
            f"https://huggingface.co/{repo_id}, then {login}."
        )
    if any(isinstance(e, hub.HFValidationError) for e in chain):
        return (
            f"could not load {quote(repo_id)}: that is not a repo id. Use owner/name as in the model page's address "
            "(e.g. 'runwayml/stable-diffusion-inpainting'), or the path of a local folder."
        )
    not_found = any(isinstance(e, hub.RepositoryNotFoundError) for e in chain)
    if not_found or "not a valid model identifier" in text or "RepositoryNotFound" in text or " 404 " in text:
        return (
            f"could not load {quote(repo_id)}: no such repository on the Hugging Face Hub, or it is private. Check "
            f"the repo id (owner/name, as in https://huggingface.co/owner/name); if it is private, {login}."
        )
    if " 401 " in text or " 403 " in text:
        return f"could not load {quote(repo_id)}: the Hub refused access (private or gated repository): {login}."
    match = re.search(r"can't find a pipeline linked to (\w+)", text)
    if match or "AutoPipeline can't find" in text:
        found = f" (it is a {match.group(1)})" if match else ""
        return (
            f"could not load {quote(repo_id)} for {task}: diffusers has no {task} pipeline for this checkpoint{found}. "
            "Choose a Stable Diffusion 1.x/2.x, SDXL or Kandinsky 2.2 checkpoint, e.g. "
            "'runwayml/stable-diffusion-inpainting' (their regular text-to-image checkpoints work too)."
        )
    # Offline mode turns every other failure into "not found" too: only a cache miss or a network error is
    # reported as the Hub being unreachable (a broken checkpoint or a bad argument keeps its own message).
    if not local and (_cache_miss(chain, text) or (not offline and "connect" in text.lower())):
        return (
            f"could not load {quote(repo_id)}: the Hugging Face Hub cannot be reached and the checkpoint is not in the "
            "local cache. Connect to the internet, or turn on twin mode to run on tiny random-weight twins: "
            f"nbinpaint.use_twins() (or NBINPAINT_TWINS=1). ({first[:200]})"
        )
    return f"could not load {quote(repo_id)} for {task}: {first}"


def _pipeline_folder_below(folder: str, depth: int = 3) -> str | None:
    """The first folder up to ``depth`` levels below ``folder`` that holds a model_index.json (a hub cache's
    ``snapshots/<revision>``, an unzipped download's inner folder), or None."""
    level = [folder]
    for _ in range(depth):
        below = []
        for parent in level:
            try:
                entries = sorted(os.scandir(parent), key=lambda entry: entry.name)
            except OSError:
                continue
            below += [entry.path for entry in entries if entry.is_dir(follow_symlinks=False)][:50]
        for path in below:
            if os.path.isfile(os.path.join(path, "model_index.json")):
                return path
        level = below
    return None


def _looks_like_path(repo_id: str) -> bool:
    """A local path rather than a repo id (owner/name): absolute, relative with ./ or ../, or ~."""
    return repo_id.startswith(("/", "./", "../", "~", "\\")) or os.path.isabs(repo_id) or repo_id.count("/") > 1


def _cache_miss(chain: list[BaseException], text: str) -> bool:
    """Whether a load failed because the files are neither cached nor downloadable (offline, or no network)."""
    from huggingface_hub import errors as hub

    unreachable = (hub.LocalEntryNotFoundError, hub.OfflineModeIsEnabled, ConnectionError, TimeoutError)
    lowered = text.lower()
    return any(isinstance(e, unreachable) for e in chain) or "couldn't connect" in lowered or "offline" in lowered


def _exception_chain(error: BaseException) -> list[BaseException]:
    """``error`` and its causes/contexts, outermost first (each once)."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` means the device (or the CPU allocator) ran out of memory."""
    if isinstance(error, getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)):
        return True
    text = str(error).lower()  # MPS and the CPU allocator raise RuntimeError with these words
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def _collect() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps is not None and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        mps.empty_cache()


def _memory_snapshot(device: str, resident: int) -> dict[str, int]:
    if device == "cuda":
        used = torch.cuda.memory_allocated()
    else:
        try:
            with open("/proc/self/statm") as statm:
                used = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            used = 0
    return {"resident": resident, "device": used}
