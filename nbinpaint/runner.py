"""The one place where a request meets ``pipeline.__call__``.

Every generation ends here: `nbinpaint.inpaint`, the studio's Generate and its follow-ups (Refine, To
image-to-image), every stage of a chain, a sweep's cells, a workshop replica's jobs. The manager
(`nbinpaint.pipeline_manager.PipelineManager.run`) validates, locks, installs offload hooks and retries
out of memory around it; this module turns the validated request into the call's keyword arguments,
reports steps and previews, honours cancel, and finishes the images.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from PIL import Image

from nbinpaint import previews
from nbinpaint.errors import GenerationCancelled, InvalidRequestError
from nbinpaint.lora import attention_restored
from nbinpaint.previews import autoencoder_of
from nbinpaint.recipes import build_recipe
from nbinpaint.requests import InpaintRequest, accepted_parameters, as_mask, expected_steps, new_seed
from nbinpaint.results import NO_OPTIONS, InpaintResult, RunOptions, StepCallback

__all__ = ["check_task_fits", "run_pipeline", "run_request", "validate_for"]

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SDXL_REFINER = "stabilityai/stable-diffusion-xl-refiner-1.0"


def validate_for(
    request: InpaintRequest, pipeline: Any, *, latents: Any = None, max_pixels: int | None = None
) -> InpaintRequest:
    """``request.validated()``, and when the run starts from ``latents`` (a chain's hand-off) the sizes come
    from them: the request's image is None and its mask is fitted to the latents' pixel size."""
    if latents is None:
        return request.validated(max_pixels=max_pixels)
    if request.image is not None:
        raise InvalidRequestError("a run from latents takes its input from them: leave the request's image=None.")
    scale = int(getattr(pipeline, "vae_scale_factor", 8))
    stand_in = Image.new("RGB", (latents.shape[-1] * scale, latents.shape[-2] * scale))
    mask = None if request.mask is None else as_mask(request.mask)
    if mask is not None and mask.size != stand_in.size:  # latents cover the largest multiple of 8
        mask = mask.resize(stand_in.size, Image.Resampling.NEAREST)
    return request.replace(image=stand_in, mask=mask).validated(max_pixels=max_pixels).replace(image=None)


def check_task_fits(pipeline: Any, request: InpaintRequest) -> None:
    """Refuse image-to-image on an inpainting checkpoint here, not as a UNet channel error mid-run."""
    vae, unet = autoencoder_of(pipeline), getattr(pipeline, "unet", None)
    if request.task != "img2img" or vae is None or unet is None:
        return
    if unet.config.in_channels != vae.config.latent_channels:
        raise InvalidRequestError(
            f"{request.model!r} is an inpainting checkpoint (its UNet takes {unet.config.in_channels} channels: "
            "latents, mask, masked image), so it cannot do image-to-image. Pick a plain checkpoint for that "
            f"stage, e.g. {SD15!r} (SD 1.x) or {SDXL_REFINER!r} (SDXL)."
        )


def run_pipeline(
    pipeline: Any, request: InpaintRequest, latents: Any = None, options: RunOptions = NO_OPTIONS
) -> InpaintResult:
    """Run a validated request (`validate_for`) on a loaded pipeline, from its image or from ``latents``.

    ``options`` are `nbinpaint.contract.Manager.run`'s keywords: ``on_step(step, total, tensors)`` is called
    after every denoising step; when ``should_stop()`` turns true the run stops at the end of that step with
    `GenerationCancelled` (raised from the step callback, which works for every pipeline, Kandinsky 2.2
    included, and leaves the pipeline usable).
    ``on_preview(step, total, image)`` receives a cheap RGB approximation of the predicted final image
    every ``preview_every`` steps (default: adapted to the steps actually run); see `nbinpaint.previews`.
    ``recipe_extra`` adds entries to the result's recipe (a chain's stage, a studio's mask checksum).
    """
    import torch

    seed = new_seed() if request.seed is None else int(request.seed)
    request = request.replace(seed=seed)
    check_task_fits(pipeline, request)
    kwargs = request.call_kwargs(pipeline, torch.Generator("cpu").manual_seed(seed))
    if latents is not None:
        kwargs["image"] = latents
    total = expected_steps(pipeline, kwargs)
    wants_callback = "callback_on_step_end" in accepted_parameters(pipeline)
    on_step, should_stop = options.on_step, options.should_stop
    on_preview = options.on_preview if wants_callback else None
    with previews.tap(pipeline, on_preview, total=total, every=options.preview_every) as tap:
        if (on_step or should_stop or tap is not None) and wants_callback:
            kwargs["callback_on_step_end"] = _step_callback(on_step, should_stop, total, tap)
        started = time.perf_counter()
        with attention_restored(pipeline):  # a cancelled PAG run leaves the shared UNet as it found it
            output = pipeline(**kwargs)
        run_s = time.perf_counter() - started
    # Latents stay the pipeline's batch tensor (a chain hands them on as one); images are finished.
    images = [_finish(image, request) for image in output.images] if request.output_type == "pil" else output.images
    extra = dict(options.recipe_extra or {})
    if latents is not None:
        extra["input_latents"] = list(latents.shape)
    recipe = build_recipe(request, pipeline, run_size=(request.width, request.height), extra=extra)
    timings = {"run_s": run_s, "post_s": time.perf_counter() - started - run_s}
    return InpaintResult(images=images, request=request, seed=seed, timings=timings, recipe=recipe)


def run_request(pipeline: Any, request: InpaintRequest, *, latents: Any = None, **options: Any) -> InpaintResult:
    """`run_pipeline` on a request not validated yet, for a pipeline you loaded yourself (no manager);
    ``options`` are `RunOptions` fields."""
    return run_pipeline(pipeline, validate_for(request, pipeline, latents=latents), latents, RunOptions(**options))


def _finish(image: Image.Image, request: InpaintRequest) -> Image.Image:
    """Back to the input's size, and with ``preserve_unmasked`` the unmasked pixels restored exactly."""
    if request.image is None:
        return image
    if image.size != request.image.size:
        image = image.resize(request.image.size, Image.Resampling.LANCZOS)
    if request.preserve_unmasked:
        from diffusers.image_processor import VaeImageProcessor

        image = VaeImageProcessor().apply_overlay(request.mask, request.image, image)
    return image


def _step_callback(
    on_step: StepCallback | None, should_stop: Callable[[], bool] | None, total: int, tap: Any = None
) -> Callable[..., dict[str, Any]]:
    done = 0

    def callback(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        nonlocal done
        done += 1
        if on_step is not None:
            on_step(done, max(total, done), tensors)
        if tap is not None:
            tap.after_step(done, max(total, done))
        if should_stop is not None and should_stop():
            raise GenerationCancelled("generation cancelled; the pipeline is ready for the next run.")
        return tensors

    return callback
