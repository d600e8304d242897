"""The one place where a request meets ``pipeline.__call__``.

Every generation ends here: `nbinpaint.inpaint`, the studio's Generate and its follow-ups (Refine, To
image-to-image), every stage of a chain, a sweep's cells, a workshop replica's jobs. The manager
(`nbinpaint.pipeline_manager.PipelineManager.run`) validates, locks, installs offload hooks and retries
out of memory around it; this module turns the validated request into the call's keyword arguments,
reports steps and previews, honours cancel, and finishes the images. `run_batch` runs several participants'
requests as one call (a workshop replica's batches), on the same road.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from PIL import Image

from nbinpaint import previews, seams, soft
from nbinpaint.errors import GenerationCancelled, InvalidRequestError
from nbinpaint.lora import attention_restored
from nbinpaint.notices import notice
from nbinpaint.parameters import PARAMETERS
from nbinpaint.previews import autoencoder_of
from nbinpaint.recipes import build_recipe
from nbinpaint.requests import InpaintRequest, accepted_parameters, as_mask, expected_steps, new_seed
from nbinpaint.results import NO_OPTIONS, InpaintResult, RunOptions, StepCallback

__all__ = [
    "BATCH_TOLERANCE",
    "batch_key",
    "can_batch",
    "check_task_fits",
    "fit_size",
    "run_batch",
    "run_pipeline",
    "run_request",
    "size_multiple",
    "validate_for",
]

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SDXL_REFINER = "stabilityai/stable-diffusion-xl-refiner-1.0"

BATCH_TOLERANCE = 2
"""Largest difference, in 8-bit levels per channel, between a sample of `run_batch` and the same request run
alone by `run_pipeline`: batched kernels may round differently in the last bits. Measured on the CPU twins
(64-128 px, 2-25 steps, batches of 4): at most 1; on a GPU, cuDNN/cuBLAS pick kernels by batch size, and the
difference is of the same order (not measured here)."""
#: The ``__call__`` keywords a batched call takes as one value per sample: the table's ``batch="each"`` rows.
BATCHED_CALL_NAMES = frozenset(p.call for p in PARAMETERS if p.batch == "each" and p.call is not None)


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


def size_multiple(pipeline: Any) -> int:
    """What the pipeline's width and height must be multiples of, read from the pipeline: its image
    processor's scale factor (the VAE's 8; Flux's 16, latents packed 2x2) times its transformer's patch
    size (SD3: 2); Kandinsky 2.2's MoVQ factor squared (64: its latents are ceil(side / 64) * 8 but its mask
    side / 8, so any other size fails inside diffusers); 8 for pipelines that say nothing (classical fills)."""
    movq = getattr(pipeline, "movq", None)
    if movq is not None and hasattr(movq, "config"):
        scale = 2 ** (len(movq.config.block_out_channels) - 1)
        return scale * scale
    processor = getattr(getattr(pipeline, "image_processor", None), "config", None)
    factor = getattr(processor, "vae_scale_factor", None) or getattr(pipeline, "vae_scale_factor", None) or 8
    patch = getattr(pipeline, "patch_size", None)
    return int(factor) * (int(patch) if isinstance(patch, int) and patch > 0 else 1)


def fit_size(pipeline: Any, request: InpaintRequest) -> InpaintRequest:
    """The request with width and height rounded down to `size_multiple` where they are not (the run size
    is a multiple of 8; SD3 and Flux need 16, Kandinsky 2.2 64), said once; the result is still resized back to
    the input."""
    multiple = size_multiple(pipeline)
    if multiple <= 8 or request.width is None or request.height is None:
        return request
    width, height = (max(multiple, side // multiple * multiple) for side in (request.width, request.height))
    if (width, height) == (request.width, request.height):
        return request
    notice(
        f"{type(pipeline).__name__} works at multiples of {multiple} pixels: generating at {width}x{height} "
        f"instead of {request.width}x{request.height}, and resizing the result back."
    )
    return request.replace(width=width, height=height)


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
    request = soft.resolve(request.replace(seed=seed), pipeline)
    check_task_fits(pipeline, request)
    request = fit_size(pipeline, request)
    kwargs = request.call_kwargs(pipeline, torch.Generator("cpu").manual_seed(seed))
    if latents is not None:
        kwargs["image"] = latents
    blend = _latent_blend(pipeline, request, kwargs)
    total = expected_steps(pipeline, kwargs)
    wants_callback = "callback_on_step_end" in accepted_parameters(pipeline)
    on_step, should_stop = options.on_step, options.should_stop
    on_preview = options.on_preview if wants_callback else None
    with previews.tap(pipeline, on_preview, total=total, every=options.preview_every) as tap, blend:
        if (on_step or should_stop or tap is not None or request.soft) and wants_callback:
            after = blend.after_step if request.soft else None
            kwargs["callback_on_step_end"] = _step_callback(on_step, should_stop, total, tap, after)
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


def _latent_blend(pipeline: Any, request: InpaintRequest, kwargs: dict[str, Any]) -> Any:
    """What runs under the mask before and during the run: the masked-content start (pixels into
    ``kwargs["image"]``, or a `soft.LatentBlend` for latent noise) and the soft blend; a null context when
    neither is asked for."""
    content = request.masked_content
    mask = kwargs.get("mask_image")  # as the pipeline gets it: thresholded, feathered, or soft's "may change"
    if content in ("fill", "telea") and isinstance(kwargs.get("image"), Image.Image):
        kwargs["image"] = soft.masked_start(kwargs["image"], mask, content)
    noise_mask = mask if content == "latent_noise" else None
    if not request.soft and noise_mask is None:
        return contextlib.nullcontext()
    soft_mask = None
    if request.soft:
        soft_mask = soft.soft_mask(request)
        if soft_mask.size != (request.width, request.height):
            soft_mask = soft_mask.resize((request.width, request.height), Image.Resampling.BILINEAR)
    if noise_mask is not None:
        noise_mask = noise_mask.point(lambda v: 255 if v >= 128 else 0)
    return soft.LatentBlend(pipeline, request.seed, soft_mask=soft_mask, noise_mask=noise_mask)


def _finish(image: Image.Image, request: InpaintRequest) -> Image.Image:
    """Back to the input's size; with ``preserve_unmasked`` the unmasked pixels restored exactly, and with
    ``soft`` the result composited with the same grey mask (black keeps the input's pixels exactly); then the
    ``seam_repair`` (`nbinpaint.seams.repair`, which `nbinpaint.seams.repair_seams` repeats on a result)."""
    if request.image is None:
        return image
    if image.size != request.image.size:
        image = image.resize(request.image.size, Image.Resampling.LANCZOS)
    if request.preserve_unmasked or request.soft:
        from diffusers.image_processor import VaeImageProcessor

        mask = soft.soft_mask(request) if request.soft else request.mask
        image = VaeImageProcessor().apply_overlay(mask, request.image, image)
    if request.seam_repair is not None:
        image = seams.repair(image, request.image, request.mask, request.seam_repair)
    return image


def _step_callback(
    on_step: StepCallback | None,
    should_stop: Callable[[], bool] | None,
    total: int,
    tap: Any = None,
    blend: Callable[..., dict[str, Any]] | None = None,
) -> Callable[..., dict[str, Any]]:
    """One ``callback_on_step_end`` for the run: ``blend`` (soft inpainting) changes the latents first, so
    progress listeners and previews see the step's final latents; then progress, previews and cancel."""
    done = 0

    def callback(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        nonlocal done
        done += 1
        if blend is not None:
            tensors = blend(pipe, step, timestep, tensors)
        if on_step is not None:
            on_step(done, max(total, done), tensors)
        if tap is not None:
            tap.after_step(done, max(total, done))
        if should_stop is not None and should_stop():
            raise GenerationCancelled("generation cancelled; the pipeline is ready for the next run.")
        return tensors

    return callback


# --------------------------------------------------------------------------------------------------------
# Batches: several requests, one call.
# --------------------------------------------------------------------------------------------------------


def batch_key(request: InpaintRequest) -> Hashable | None:
    """What must be equal for validated requests to share one pipeline call; None for one that runs alone.

    Read from the parameter table's ``batch`` column (`nbinpaint.parameters.Parameter.batch`): every
    ``"same"`` value (model, task, size, steps, strength, guidance, dtype... and any row added later), and for
    ``"each"`` rows only whether they are set (a pipeline treats ``negative_prompt=None`` and ``""``
    differently: SDXL zeroes the first). A request that sets an ``"alone"`` row, holds an image or tensor in a
    ``"same"`` row, or asks for several images runs alone: one generator per sample reproduces a run of one
    image, while the images of one run are drawn from one generator together.
    """
    if (request.num_images or 1) != 1:
        return None
    # What runs around the call rather than in it (soft's step-loop blend and masked-content start, PAG's
    # attention processors) is per run: such a request runs alone.
    if request.soft or request.masked_content not in (None, "original") or request.enable_pag:
        return None
    if request.soft is None and request.task == "inpaint" and request.mask is not None and soft.is_grey(request.mask):
        return None
    key: list[tuple[str, Any]] = []
    for p in PARAMETERS:
        value = getattr(request, p.name)
        if p.name == "num_images":  # 1 or None (checked above): the same call
            continue
        if p.batch == "alone":
            if value is not None and not (p.kind == "mapping" and not value):
                return None
        elif p.batch == "each":
            key.append((p.name, value is None))
        elif (p.kind in ("image", "tensor") and value is not None) or (p.kind == "mapping" and value):
            return None
        else:
            key.append((p.name, value if isinstance(value, Hashable) else repr(value)))
    return tuple(key)


def can_batch(pipeline: Any) -> bool:
    """Whether ``pipeline`` can run a batch with each sample its own: it takes a list of generators (one per
    sample) and a step callback (per-sample progress and cancel). Classical backends take neither."""
    return {"generator", "callback_on_step_end"} <= accepted_parameters(pipeline)


def run_batch(
    pipeline: Any, requests: Sequence[InpaintRequest], options: Sequence[RunOptions]
) -> list[InpaintResult | GenerationCancelled]:
    """Run validated requests with one `batch_key` as one call of ``pipeline``; one result per request.

    The table's ``"each"`` parameters (prompts, negative prompts, images, masks) go in as lists and each
    sample gets its own ``torch.Generator`` seeded with its request's seed, so each result is its request's
    own: the image `run_pipeline` gives for that request, within `BATCH_TOLERANCE`. Its recipe is the recipe
    of that single run; ``timings["batch"]`` says how many shared the call.

    ``options[i]`` reports and stops sample ``i`` only: ``on_step`` after every step, ``on_preview`` with
    sample ``i``'s own preview. Once its ``should_stop()`` is true (asked after every step) its callbacks
    stop and its result is dropped (a `GenerationCancelled` in its place) while the others run on; when every
    sample is stopped the call itself stops at the end of that step with `GenerationCancelled`.
    """
    import torch

    if len(requests) != len(options) or not requests:
        raise ValueError(f"run_batch needs one RunOptions per request, got {len(options)} for {len(requests)}")
    keys = {batch_key(request) for request in requests}
    if None in keys or len(keys) != 1:
        raise InvalidRequestError("these requests cannot share one pipeline call (see batch_key): run them one by one.")
    if not can_batch(pipeline):
        raise InvalidRequestError(f"{type(pipeline).__name__} cannot run a batch: run the requests one by one.")
    requests = [r.replace(seed=new_seed() if r.seed is None else int(r.seed)) for r in requests]
    # As run_pipeline prepares each request: soft decided (off here: batch_key keeps soft runs apart), the
    # size fitted to the pipeline's multiple (SD3 and Flux: 16).
    requests = [fit_size(pipeline, soft.resolve(r, pipeline)) for r in requests]
    check_task_fits(pipeline, requests[0])
    each = [r.call_kwargs(pipeline, torch.Generator("cpu").manual_seed(r.seed)) for r in requests]
    kwargs = dict(each[0])
    for name in (BATCHED_CALL_NAMES | {"generator"}) & kwargs.keys():
        kwargs[name] = [sample[name] for sample in each]
    total = expected_steps(pipeline, kwargs)
    dropped: dict[int, int] = {}  # sample -> the step after which its owner stopped it

    def own_preview(index: int, on_preview: Any) -> Any:
        if on_preview is None:
            return None
        return lambda step, steps, image: None if index in dropped else on_preview(step, steps, image)

    samples = [(own_preview(i, o.on_preview), o.preview_every) for i, o in enumerate(options)]
    with previews.batch_tap(pipeline, samples, total=total) as tap:
        kwargs["callback_on_step_end"] = _batch_step_callback(options, dropped, total, tap)
        started = time.perf_counter()
        with attention_restored(pipeline):
            output = pipeline(**kwargs)
        run_s = time.perf_counter() - started
    results: list[InpaintResult | GenerationCancelled] = []
    for index, request in enumerate(requests):
        if index in dropped:
            results.append(
                GenerationCancelled(
                    f"generation cancelled after step {dropped[index]}; its result was dropped from the batch, "
                    "whose other requests ran on."
                )
            )
            continue
        image = output.images[index] if request.output_type == "pil" else None
        images = [_finish(image, request)] if image is not None else output.images[index : index + 1]
        extra = dict(options[index].recipe_extra or {})
        recipe = build_recipe(request, pipeline, run_size=(request.width, request.height), extra=extra)
        timings = {"run_s": run_s, "post_s": time.perf_counter() - started - run_s, "batch": len(requests)}
        results.append(InpaintResult(images=images, request=request, seed=request.seed, timings=timings, recipe=recipe))
    return results


def _batch_step_callback(
    options: Sequence[RunOptions], dropped: dict[int, int], total: int, tap: Any = None
) -> Callable[..., dict[str, Any]]:
    """`_step_callback` for a batch: each live sample's ``on_step``, the previews, then each one's
    ``should_stop``; a stopped sample joins ``dropped``, and the call stops once all have."""
    done = 0

    def callback(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        nonlocal done
        done += 1
        shown = max(total, done)
        for index, option in enumerate(options):
            if index not in dropped and option.on_step is not None:
                option.on_step(done, shown, tensors)
        if tap is not None:
            tap.after_step(done, shown)
        for index, option in enumerate(options):
            if index not in dropped and option.should_stop is not None and option.should_stop():
                dropped[index] = done
        if len(dropped) == len(options):
            raise GenerationCancelled("generation cancelled; the pipeline is ready for the next run.")
        return tensors

    return callback
