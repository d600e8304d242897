"""What live previews cost per denoising step: with against without, the palette fit, one preview's render.

`preview_overhead` is the figure the previews' design rests on (a palette instead of a VAE decode per
preview). It lives here, beside the other benchmarks, so `nbinpaint.previews` (which a run imports) needs
neither the request module nor the samples to measure itself. Timings are informative: no test asserts on them.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from nbinpaint import samples
from nbinpaint.previews import autoencoder_of, fit_palette, palette_for, render
from nbinpaint.requests import InpaintRequest, expected_steps
from nbinpaint.runner import run_request

__all__ = ["preview_overhead"]


def preview_overhead(
    target: Any,
    request: Any = None,
    *,
    steps: int = 20,
    repeats: int = 3,
    size: int = 512,
    every: int | None = None,
) -> dict[str, Any]:
    """Seconds per denoising step with and without previews, for the benchmark script (nothing asserts on them).

    ``target`` is a `PipelineManager` or a loaded pipeline. ``request`` defaults to the astronaut sample at
    ``size`` px with the default model and ``steps`` steps, seed 0. One warm-up run comes first, the palette
    fit is timed on its own (``fit_s``, paid once per autoencoder), so is one preview's rendering
    (``render_s``: x0 latents to an upscaled image, the cost a preview adds), then ``repeats`` alternating
    runs without and with previews, each reported by its fastest run (other processes only add time). On a
    shared CPU the run-to-run noise can still exceed the preview cost: ``render_s`` is the steadier figure.
    """
    if request is None:
        image, mask = samples.load("astronaut", size)
        request = InpaintRequest(image=image, mask=mask, prompt="an astronaut", steps=steps, seed=0)
    if hasattr(target, "get") and hasattr(target, "run"):  # a PipelineManager

        def run(**callbacks: Any) -> Any:
            return target.run(request, **callbacks)

        pipeline = target.get(
            request.model,
            request.task,
            torch_dtype=request.dtype,
            variant=request.variant,
            controlnet=request.controlnet,
        )
    else:
        pipeline = target

        def run(**callbacks: Any) -> Any:
            return run_request(pipeline, request, **callbacks)

    shown: list[int] = []
    run()  # warm-up: loads, allocates, first-call costs
    vae = autoencoder_of(pipeline)
    fit_s = None
    if vae is not None and palette_for(vae) is not None:
        fit_s = fit_palette(vae).fit_s  # measured afresh; the cached one serves the runs
    render_s = _render_time(vae, request) if vae is not None else None
    without, with_previews = [], []
    for _ in range(repeats):
        result = run()
        total = _steps_run(pipeline, request)
        without.append(result.timings["run_s"] / total)
        shown.clear()
        result = run(on_preview=lambda step, total, image: shown.append(step), preview_every=every)
        with_previews.append(result.timings["run_s"] / total)
    # The least disturbed run of each kind: other processes only ever add time.
    per_step, per_step_previews = min(without), min(with_previews)
    previews = len(shown)
    return {
        "size": size if request.width is None else [request.width, request.height],
        "steps_run": total,
        "previews_per_run": previews,
        "per_step_s_without": per_step,
        "per_step_s_with": per_step_previews,
        "overhead_per_step_s": per_step_previews - per_step,
        "overhead_per_preview_s": (per_step_previews - per_step) * total / previews if previews else None,
        "overhead_pct": 100 * (per_step_previews - per_step) / per_step,
        "render_s": render_s,
        "fit_s": fit_s,
        "repeats": repeats,
    }


def _render_time(vae: Any, request: Any, renders: int = 20) -> float:
    """Median seconds to turn one x0 latent of the run's size into a preview image (the per-preview cost)."""
    validated = request.validated()
    palette = palette_for(vae)
    scale = palette.scale if palette is not None else 8
    channels = palette.weight.shape[0] if palette is not None else 4
    reference = next(vae.parameters())
    x0 = torch.randn(1, channels, validated.height // scale, validated.width // scale).to(reference.device)
    times = []
    for _ in range(renders):
        started = time.perf_counter()
        render(vae, x0)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _steps_run(pipeline: Any, request: Any) -> int:
    validated = request.validated()
    return expected_steps(pipeline, validated.call_kwargs(pipeline))
