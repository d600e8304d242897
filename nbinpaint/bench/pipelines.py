"""Benchmark rows for the generation path: nbinpaint's overhead over diffusers, the manager, previews, cancel.

Every row runs the tiny twins (twin mode is switched on, and the twins built if missing) except the ``cuda_*``
rows, which need a CUDA device with the real SD 1.5 inpainting checkpoint already in the Hugging Face cache.
Baselines are the bare diffusers call on the same pipeline, inputs and seed, timed alternately with ours.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from PIL import Image

from nbinpaint.bench.common import Measured, Skip, paired, row, timed

SD = "runwayml/stable-diffusion-inpainting"
CYCLE = (
    "runwayml/stable-diffusion-inpainting",
    "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "diffusers/stable-diffusion-xl-1.0-inpainting-0.1",
    "kandinsky-community/kandinsky-2-2-decoder-inpaint",
    "nitrosocke/elden-ring-diffusion",
)
PROMPT = "a small black cat sitting on a park bench"
SEED = 92


def _twin_mode() -> None:
    from nbinpaint import twins

    if not twins.twin_mode():
        twins.use_twins()  # builds any twin that is missing


def _manager(**kwargs: Any) -> Any:
    from nbinpaint.pipeline_manager import PipelineManager

    _twin_mode()
    return PipelineManager(**kwargs)


def _scene(side: int) -> tuple[Image.Image, Image.Image]:
    from nbinpaint import samples

    scene = samples.load("chelsea")
    image = scene.image.resize((side, side), Image.Resampling.BICUBIC)
    mask = scene.mask.resize((side, side), Image.Resampling.NEAREST)
    return image, mask


def _bare_call(pipeline: Any, image: Image.Image, mask: Image.Image, steps: int) -> Callable[[], Any]:
    """diffusers alone: the call a user would write, with the seed nbinpaint uses."""
    import torch

    pipeline.set_progress_bar_config(disable=True)  # the same pipeline object serves both paths

    def call() -> Any:
        generator = torch.Generator("cpu").manual_seed(SEED)
        return pipeline(
            prompt=PROMPT,
            image=image,
            mask_image=mask,
            num_inference_steps=steps,
            generator=generator,
            width=image.width,
            height=image.height,
        ).images[0]

    return call


def _ours(manager: Any, image: Image.Image, mask: Image.Image, steps: int, **run: Any) -> Callable[[], Any]:
    from nbinpaint.requests import InpaintRequest

    request = InpaintRequest(image=image, mask=mask, prompt=PROMPT, model=SD, steps=steps, seed=SEED)
    return lambda: manager.run(request, **run).image


def _same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))


@contextlib.contextmanager
def _inside_calls(pipeline: Any) -> Iterator[list[float]]:
    """Seconds spent inside ``pipeline.__call__``, one entry per call, while the block runs.

    The class's ``__call__`` is wrapped (``functools.wraps`` keeps the signature nbinpaint reads), then restored.
    """
    cls = type(pipeline)
    had_own, original = "__call__" in vars(cls), cls.__call__
    inside: list[float] = []

    @functools.wraps(original)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            if self is pipeline:
                inside.append(time.perf_counter() - start)

    cls.__call__ = call
    try:
        yield inside
    finally:
        if had_own:
            cls.__call__ = original
        else:
            del cls.__call__


def own_overhead(pipeline: Any, run: Callable[[], Any], repeat: int = 3) -> dict[str, float]:
    """What ``run`` spends outside ``pipeline``'s own call: the wall time of ``run`` minus the time inside.

    Unlike a ratio of two separately timed runs, this difference is measured within each run, so the noise of
    a shared machine (which moves the ratio by several percent between runs) mostly cancels out.
    """
    spent, totals = [], []
    with _inside_calls(pipeline) as inside:
        for _ in range(repeat):
            inside.clear()
            start = time.perf_counter()
            run()
            total = time.perf_counter() - start
            spent.append(total - sum(inside))
            totals.append(total)
    median, total = float(np.median(spent)), float(np.median(totals))
    return {"own_overhead_ms": round(median * 1e3, 1), "own_overhead_share": round(median / total, 4)}


@row(
    "inpaint_vs_diffusers_512",
    "nbinpaint.inpaint path (manager.run) vs bare pipeline call, SD twin 512, 20 steps",
    "ratio <= 1.02",
)
def inpaint_vs_diffusers(repeat: int) -> Measured:
    manager = _manager()
    image, mask = _scene(512)
    pipeline = manager.get(SD)
    ours, bare = _ours(manager, image, mask, 20), _bare_call(pipeline, image, mask, 20)
    measured = paired(ours, bare, min(repeat, 5))
    measured.figures["identical_pixels"] = _same_pixels(ours(), bare())
    measured.figures.update(own_overhead(pipeline, ours))
    return measured


@row("manager_cache_hit", "manager.get of a loaded checkpoint (dictionary hit under the lock)", "< 1 ms")
def manager_cache_hit(repeat: int) -> list[float]:
    manager = _manager()
    manager.get(SD)
    return timed(lambda: manager.get(SD), repeat * 20)


@row("manager_from_pipe_switch", "inpaint -> img2img task switch with from_pipe (no weights loaded)", "0 extra bytes")
def manager_from_pipe_switch(repeat: int) -> Measured:
    manager = _manager()
    manager.get(SD)
    before = manager.resident_bytes()
    checkpoint = next(iter(manager._checkpoints.values()))
    drop = lambda: checkpoint.pipelines.pop("img2img", None)  # noqa: E731
    samples = timed(lambda: manager.get(SD, "img2img"), min(repeat, 10), setup=drop)
    return Measured(samples, figures={"extra_parameter_bytes": manager.resident_bytes() - before})


@row("manager_cold_load_twin", "cold load of the SD inpaint twin through a fresh manager (from the local cache)")
def manager_cold_load(repeat: int) -> Measured:
    managers: list[Any] = []

    def load() -> None:
        managers[-1].get(SD)

    samples = timed(load, min(repeat, 5), setup=lambda: managers.append(_manager()))
    return Measured(samples, figures={"twin_bytes": managers[-1].resident_bytes()})


@row(
    "manager_cycle_5_under_budget", "get() cycling 5 checkpoints twice under a budget of ~2.5 of them", "never > budget"
)
def manager_cycle(repeat: int) -> Measured:
    sizes = {}
    for repo in CYCLE:  # measure each twin alone to set a budget that forces evictions
        probe = _manager()
        probe.get(repo)
        sizes[repo] = probe.resident_bytes()
        probe.release_all()
    budget = int(2.5 * sum(sizes.values()) / len(sizes))
    manager = _manager(memory_budget=budget)
    samples, peak = [], 0
    for repo in CYCLE * 2:
        start = time.perf_counter()
        manager.get(repo)
        samples.append(time.perf_counter() - start)
        peak = max(peak, manager.resident_bytes())
    return Measured(samples, figures={"budget_bytes": budget, "peak_resident_bytes": peak, "within": peak <= budget})


@row(
    "fp16_forced_on_cpu", "SD twin 256, 5 steps: float16 forced on the CPU (baseline: the float32 upcast)", "why upcast"
)
def fp16_on_cpu(repeat: int) -> Measured:
    import torch
    from diffusers import AutoPipelineForInpainting

    _twin_mode()
    image, mask = _scene(256)
    runs = {}
    for dtype in (torch.float32, torch.float16):
        pipeline = AutoPipelineForInpainting.from_pretrained(SD, torch_dtype=dtype).to("cpu")
        pipeline.set_progress_bar_config(disable=True)
        runs[dtype] = _bare_call(pipeline, image, mask, 5)
    return paired(runs[torch.float16], runs[torch.float32], min(repeat, 3))


@row("preview_cost_512", "SD twin 512, 20 steps, live x0 previews on (baseline: off); per run", "< 5% of step")
def preview_cost(repeat: int) -> Measured:
    manager = _manager()
    image, mask = _scene(512)
    shown: list[int] = []
    with_previews = _ours(manager, image, mask, 20, on_preview=lambda step, total, preview: shown.append(step))
    measured = paired(with_previews, _ours(manager, image, mask, 20), min(repeat, 4))
    runs = 2 * min(repeat, 4) + 2  # paired() warms each path once, then runs it ``repeat`` times
    extra = (np.median(measured.samples) - np.median(measured.baseline)) / 20
    measured.figures.update(
        previews_per_run=len(shown) / (runs / 2),
        overhead_per_step_ms=1000 * extra,
        overhead_share_of_step=extra / (np.median(measured.baseline) / 20),
    )
    return measured


@row(
    "cancel_latency_512",
    "click Cancel at a random moment: time until the run has stopped (SD twin 512, 20 steps)",
    "<= 1 step",
)
def cancel_latency(repeat: int) -> Measured:
    from nbinpaint.errors import GenerationCancelled

    manager = _manager()
    image, mask = _scene(512)
    step_times: list[float] = []
    last = [0.0]

    def on_step(step: int, total: int, tensors: Any) -> None:
        now = time.perf_counter()
        if step > 1:
            step_times.append(now - last[0])
        last[0] = now

    _ours(manager, image, mask, 20, on_step=on_step)()  # learn the step time
    step = float(np.median(step_times))
    rng = np.random.default_rng(0)
    latencies = []
    for _ in range(min(repeat, 5)):
        flag = threading.Event()
        clicked = [0.0]

        def click(flag: threading.Event = flag, clicked: list[float] = clicked) -> None:
            clicked[0] = time.perf_counter()
            flag.set()

        timer = threading.Timer(step * rng.uniform(2.0, 8.0), click)
        timer.start()
        try:
            _ours(manager, image, mask, 20, should_stop=flag.is_set)()
        except GenerationCancelled:
            latencies.append(time.perf_counter() - clicked[0])
        finally:
            timer.cancel()
    if not latencies:
        raise RuntimeError("no run was cancelled: the runs finished before the click")
    return Measured(latencies, figures={"step_ms": 1000 * step, "worst_in_steps": max(latencies) / step})


def peak_rss_during(call: Callable[[], Any]) -> tuple[float, int]:
    """Wall time of ``call()`` and the peak rise of the process's resident memory while it ran."""
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * page

    base, peak, done = rss(), [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.002):
            peak[0] = max(peak[0], rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    try:
        call()
    finally:
        elapsed = time.perf_counter() - start
        done.set()
        sampler.join(1.0)
    return elapsed, max(0, max(peak[0], rss()) - base)


def _scaling(side: int, repeat: int) -> Measured:
    if not os.path.exists("/proc/self/statm"):
        raise Skip("needs /proc to sample resident memory")
    manager = _manager()
    image, mask = _scene(side)
    ours, bare = _ours(manager, image, mask, 10), _bare_call(manager.get(SD), image, mask, 10)
    # Large sides take seconds a run: one warm-up-free pair there (the smaller sides warmed the allocator).
    measured = paired(ours, bare, min(repeat, 2) if side < 768 else 1, warm=side < 768)
    _, peak = peak_rss_during(ours)
    latent_px = (side // 8) ** 2
    measured.figures.update(
        latent_pixels=latent_px,
        ms_per_1k_latent_px=1000 * float(np.median(measured.samples)) / (latent_px / 1000),
        peak_rss_rise_mb=peak / 2**20,
    )
    return measured


for _side in (256, 512, 768, 1024):
    row(
        f"scaling_{_side}",
        f"generate on the SD twin at {_side}x{_side}, 10 steps (baseline: bare call)",
        "~ latent area",
    )(lambda repeat, side=_side: _scaling(side, repeat))


def _real_sd15(compile_denoiser: bool, repeat: int) -> Measured:
    import torch

    if not torch.cuda.is_available():
        raise Skip("needs CUDA and the real runwayml/stable-diffusion-inpainting in the Hugging Face cache")
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(SD, "model_index.json"), str):
        raise Skip(f"{SD} is not in the Hugging Face cache: download it once with the Hub reachable")
    from nbinpaint.pipeline_manager import PipelineManager

    manager = PipelineManager(compile_denoiser=compile_denoiser)
    image, mask = _scene(512)
    pipeline = manager.get(SD, torch_dtype=torch.float16, variant="fp16")
    ours, bare = _ours(manager, image, mask, 50), _bare_call(pipeline, image, mask, 50)
    measured = paired(ours, bare, min(repeat, 5))
    measured.figures["peak_cuda_bytes"] = torch.cuda.max_memory_allocated()
    return measured


@row(
    "cuda_sd15_inpaint_512_fp16", "real SD 1.5 inpaint, 512, fp16, 50 steps, vs bare call (CUDA only)", "ratio <= 1.02"
)
def cuda_sd15(repeat: int) -> Measured:
    return _real_sd15(False, repeat)


@row("cuda_sd15_inpaint_512_fp16_compiled", "the same with torch.compile on the UNet (CUDA only)", "ratio <= 1.02")
def cuda_sd15_compiled(repeat: int) -> Measured:
    return _real_sd15(True, repeat)


# -- one row per model family (issue 18): time per denoising step at 512x512, and the bytes it keeps loaded ------

#: Family -> checkpoint, in the order the rows print: the guide's two Stable Diffusion generations, then today's.
FAMILIES = {
    "sd15": SD,
    "sdxl": "diffusers/stable-diffusion-xl-1.0-inpainting-0.1",
    "sd35": "stabilityai/stable-diffusion-3.5-medium",
    "flux_fill": "black-forest-labs/FLUX.1-Fill-dev",
}
FAMILY_STEPS = 6


def step_times(manager: Any, model: str, side: int, steps: int, **request: Any) -> tuple[list[float], Any]:
    """Seconds between consecutive denoising steps of one run (the text encoders and VAE fall outside
    them), and the result: each step's own cost, whatever a family spends before and after its loop."""
    from nbinpaint.requests import InpaintRequest

    image, mask = _scene(side)
    marks: list[float] = []
    run = InpaintRequest(prompt=PROMPT, image=image, mask=mask, model=model, steps=steps, seed=SEED, **request)
    result = manager.run(run, on_step=lambda step, total, tensors: marks.append(time.perf_counter()))
    return [b - a for a, b in itertools.pairwise(marks)], result


def family_figures(manager: Any, model: str, repeat: int, side: int = 512, **request: Any) -> Measured:
    """`step_times` over ``repeat`` runs (one warm-up first), with the bytes the manager holds for ``model``."""
    step_times(manager, model, side, 2, **request)  # load and warm up, untimed
    samples: list[float] = []
    result = None
    for _ in range(max(1, repeat)):
        times, result = step_times(manager, model, side, FAMILY_STEPS, **request)
        samples += times
    row_ = next(r for r in manager.status().rows if r["model"] == model)
    figures = {
        "pipeline": result.recipe["pipeline"],
        "resident_bytes": row_["bytes"],
        "dtype": row_["dtype"],
        "twin": row_["twin"],
        "ms_per_step": 1000 * float(np.median(samples)),
    }
    return Measured(samples, figures=figures)


for _family, _model in FAMILIES.items():
    row(
        f"family_{_family}_512",
        f"time per denoising step at 512x512 and bytes resident, {_model} twin",
        "figures",
    )(lambda repeat, model=_model: family_figures(_manager(device="cpu"), model, min(repeat, 3)))


def _cuda_family(model: str, quantize: str | None, repeat: int) -> Measured:
    """The real checkpoint when it is in the Hugging Face cache, else its twin, on CUDA in float16 (bfloat16
    for Flux), full or quantized: quantization's cost per step and what it saves in bytes."""
    import torch

    if not torch.cuda.is_available():
        raise Skip("needs CUDA (and bitsandbytes for the quantized rows)")
    if quantize is not None:
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None:
            raise Skip("needs bitsandbytes: pip install bitsandbytes")
    from huggingface_hub import try_to_load_from_cache

    from nbinpaint.pipeline_manager import PipelineManager

    real = isinstance(try_to_load_from_cache(model, "model_index.json"), str)
    if not real:
        _twin_mode()
    dtype = "bfloat16" if "FLUX" in model else "float16"
    torch.cuda.reset_peak_memory_stats()
    measured = family_figures(PipelineManager(device="cuda"), model, repeat, dtype=dtype, quantize=quantize)
    measured.figures.update(peak_cuda_bytes=torch.cuda.max_memory_allocated(), real_checkpoint=real)
    return measured


for _family in ("sd35", "flux_fill"):
    for _quantize in (None, "4bit"):
        row(
            f"cuda_family_{_family}_512{'_' + _quantize if _quantize else ''}",
            f"{FAMILIES[_family]} on CUDA, 512x512, {_quantize or 'full'} weights: time per step, bytes, peak "
            "(real checkpoint if cached, else the twin)",
            "figures",
        )(lambda repeat, model=FAMILIES[_family], q=_quantize: _cuda_family(model, q, min(repeat, 3)))
