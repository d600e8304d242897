"""Chained pipelines: one pipeline's output is the next one's input, in latent space when they share it.

The guide chains text-to-image → inpaint, inpaint → SDXL refiner → image-to-image, and ControlNet inpaint →
image-to-image in another style. Between two stages the output either stays latents (no decode and
re-encode: faster, and no VAE round-trip loss) or is handed over as pixels. Which one is decided from the
two pipelines' components (`plan_handoff`), never from model names: latents are passed only when both
autoencoders are the same object, or of one class with one config (hence one latent space), and the next
pipeline can start from latents. Every stage is fetched through the `PipelineManager`, so a stage of the
same checkpoint is derived with ``from_pipe`` and loads nothing.

A worked example, the guide's inpaint → refiner → image-to-image (``run_chain`` with three requests):

1. SD inpaint → SDXL refiner: both autoencoders are ``AutoencoderKL``, but their configs differ (SD's
   ``scaling_factor`` 0.18215, SDXL's 0.13025): the inpaint stage decodes, the refiner encodes.
2. refiner (inpaint) → refiner (image-to-image): ``from_pipe`` shares the very VAE object: the refiner
   returns latents and image-to-image starts from them; one decode, at the very end.
"""

from __future__ import annotations

import inspect
import time
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from PIL import Image

from nbinpaint.errors import InvalidRequestError
from nbinpaint.requests import (
    CALL_PARAMETERS,
    DEFAULT_MODEL,
    ImageLike,
    InpaintRequest,
    InpaintResult,
    accepted_parameters,
    as_mask,
    multiple_of_8,
    new_seed,
)

if TYPE_CHECKING:
    from nbinpaint.pipeline_manager import PipelineManager

__all__ = [
    "ChainResult",
    "Handoff",
    "autoencoder",
    "inpaint_to_img2img",
    "latent_input_refusal",
    "latent_space_difference",
    "pipeline_extras",
    "plan_handoff",
    "refine",
    "run_chain",
    "run_stage",
    "text_to_inpaint",
    "to_img2img",
]

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
KANDINSKY_INPAINT = "kandinsky-community/kandinsky-2-2-decoder-inpaint"
SDXL_REFINER = "stabilityai/stable-diffusion-xl-refiner-1.0"

# Request settings a follow-up stage inherits from the result it continues (the rest are the stage's own).
INHERITED = ("prompt", "negative_prompt", "steps", "guidance_scale", "dtype", "variant")


# --------------------------------------------------------------------------------------------------------
# Deciding the hand-off from the components.
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Handoff:
    """How one stage's output reaches the next: as ``"latent"`` tensors or decoded ``"pixels"``, and why."""

    mode: Literal["latent", "pixels"]
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"mode": self.mode, "reason": self.reason}


def autoencoder(pipeline: Any) -> torch.nn.Module | None:
    """The pipeline's image autoencoder (SD's ``AutoencoderKL``, Kandinsky's MoVQ ``VQModel``), or None.

    Found as the component that both encodes and decodes, whatever the pipeline calls it.
    """
    for component in (getattr(pipeline, "components", None) or {}).values():
        if isinstance(component, torch.nn.Module) and all(
            callable(getattr(component, method, None)) for method in ("encode", "decode")
        ):
            return component
    return None


def latent_space_difference(first: torch.nn.Module, second: torch.nn.Module) -> str | None:
    """Why latents of ``first`` cannot be read by ``second``; None when they share a latent space.

    The same object shares it trivially (pipelines made by ``from_pipe``). Otherwise the class and every
    config entry that shapes the latents (latent channels, scaling and shift factors, depth...) must match:
    SD 1.x fine-tunes that keep SD's VAE pass; SD and SDXL both use ``AutoencoderKL`` but scale latents
    differently (0.18215 vs 0.13025) and do not. Weights are not compared: a VAE retrained from scratch
    under an identical config would wrongly pass; fine-tuned decoders (which keep the encoder) rightly do.
    """
    if first is second:
        return None
    if type(first) is not type(second):
        return f"different autoencoders: {type(first).__name__} vs {type(second).__name__}"
    a, b = _public_config(first), _public_config(second)
    differing = [key for key in sorted(a.keys() | b.keys()) if a.get(key) != b.get(key)]
    if differing:
        shown = ", ".join(f"{key} {a.get(key)!r} vs {b.get(key)!r}" for key in differing[:3])
        return f"{type(first).__name__} configs differ: {shown}"
    return None


def latent_input_refusal(pipeline: Any, task: str) -> str | None:
    """Why ``pipeline`` (run as ``task``) cannot start from latents passed as ``image``; None if it can.

    diffusers' image-to-image pipelines use a latent-channel ``image`` as their initial latents. Inpainting
    also needs the masked image: a UNet with more input channels than latent channels (the 9-channel
    inpainting checkpoints) takes the masked image's latents, which are encoded from pixels, and the SD 1.x
    inpaint pipelines mask their image in pixel space. The SDXL pipelines, written for the base → refiner
    hand-off (their ``denoising_start``), accept latents for inpainting with a 4-channel UNet.
    """
    vae = autoencoder(pipeline)
    if vae is None:
        return f"{type(pipeline).__name__} has no autoencoder to read latents with"
    if task == "text2img":
        return "text-to-image takes no image"
    channels = vae.config.latent_channels
    denoiser = getattr(pipeline, "unet", None)
    in_channels = getattr(getattr(denoiser, "config", None), "in_channels", channels)
    if in_channels != channels:
        return (
            f"{type(pipeline).__name__}'s UNet takes {in_channels} channels (latents, mask and the masked image, "
            "which is encoded from pixels)"
        )
    if task == "inpaint" and "denoising_start" not in accepted_parameters(pipeline):
        return f"{type(pipeline).__name__} masks its image in pixel space"
    return None


def plan_handoff(
    source: Any, target: Any, *, source_request: InpaintRequest, target_request: InpaintRequest
) -> Handoff:
    """Latents or pixels from ``source`` (about to run ``source_request``) to ``target`` (``target_request``).

    Pixels whenever a setting works on pixels (``padding_mask_crop`` pastes a crop back, ``preserve_unmasked``
    restores pixels), whenever the autoencoders differ (`latent_space_difference`), and whenever the target
    cannot start from latents (`latent_input_refusal`).
    """
    for request, role in ((source_request, "this stage"), (target_request, "the next stage")):
        if request.padding_mask_crop is not None:
            return Handoff("pixels", f"padding_mask_crop in {role} crops and pastes pixels")
        if request.preserve_unmasked:
            return Handoff("pixels", f"preserve_unmasked in {role} restores pixels")
    if "output_type" not in accepted_parameters(source):
        return Handoff("pixels", f"{type(source).__name__} has no output_type='latent'")
    first, second = autoencoder(source), autoencoder(target)
    if first is None or second is None:
        return Handoff("pixels", "a pipeline without an autoencoder")
    difference = latent_space_difference(first, second)
    if difference:
        return Handoff("pixels", difference)
    refusal = latent_input_refusal(target, target_request.task)
    if refusal:
        return Handoff("pixels", refusal)
    how = "the same" if first is second else "an identically configured"
    return Handoff("latent", f"both use {how} {type(first).__name__}")


# Config entries that do not change what a latent means: the default tile size and a half-precision hint.
# Two checkpoints may differ in them while sharing one VAE.
LATENT_NEUTRAL_CONFIG = frozenset({"sample_size", "force_upcast"})


def _public_config(module: torch.nn.Module) -> dict[str, Any]:
    """A model's config without bookkeeping (``_name_or_path``...) or `LATENT_NEUTRAL_CONFIG` entries."""
    return {
        key: value
        for key, value in dict(module.config).items()
        if not key.startswith("_") and key not in LATENT_NEUTRAL_CONFIG
    }


# --------------------------------------------------------------------------------------------------------
# Results.
# --------------------------------------------------------------------------------------------------------


@dataclass
class ChainResult:
    """Every stage's `InpaintResult` (latents where a stage handed latents on), how each hand-off went, the
    final image. Each stage's recipe has a ``chain`` entry naming the chain, its stages and its input."""

    name: str
    stages: list[InpaintResult]
    handoffs: list[Handoff] = field(default_factory=list)

    @property
    def final(self) -> InpaintResult:
        """The last stage's result: what the studio shows and what a further chain step continues."""
        return self.stages[-1]

    @property
    def images(self) -> list[Any]:
        return self.final.images

    @property
    def image(self) -> Any:
        return self.final.image

    @property
    def seed(self) -> int:
        return self.final.seed

    @property
    def recipe(self) -> dict[str, Any]:
        return self.final.recipe

    @property
    def timings(self) -> dict[str, float]:
        """Each stage's total seconds (``stage1_s``...) and the chain's (``total_s``)."""
        per_stage = {f"stage{i}_s": r.timings.get("total_s", 0.0) for i, r in enumerate(self.stages, 1)}
        return {**per_stage, "total_s": sum(per_stage.values())}

    def _repr_png_(self) -> bytes | None:
        return self.final._repr_png_()


# --------------------------------------------------------------------------------------------------------
# Running.
# --------------------------------------------------------------------------------------------------------


def run_chain(
    requests: Sequence[InpaintRequest], *, name: str = "chain", manager: PipelineManager | None = None
) -> ChainResult:
    """Run ``requests`` in order, each from the previous stage's output; returns every stage's result.

    The first request is complete; a later one's ``image`` must be None (it receives the previous output)
    and an inpainting one brings its mask. Every pipeline is fetched first, so each hand-off is planned from
    both pipelines before the earlier one runs (`plan_handoff`), and a stage that hands latents on runs
    with ``output_type="latent"``. More than one image per stage: the first is handed on.
    """
    if not requests:
        raise InvalidRequestError("a chain needs at least one request.")
    for index, request in enumerate(requests[1:], 2):
        if request.image is not None:
            raise InvalidRequestError(
                f"stage {index} of the chain has an image, but it receives stage {index - 1}'s output: "
                "leave its image=None."
            )
    manager = _manager(manager)
    remote = getattr(manager, "run_chain", None)
    if remote is not None:  # a workshop server runs the whole chain where its pipelines are
        return remote(requests, name=name)
    pipelines = [_pipeline(manager, request) for request in requests]
    for pipeline, request in zip(pipelines, requests, strict=True):
        _check_task_fits(pipeline, request)  # before any stage runs, not after the first one
    handoffs = [
        plan_handoff(pipelines[i], pipelines[i + 1], source_request=requests[i], target_request=requests[i + 1])
        for i in range(len(requests) - 1)
    ]
    outline = [{"model": r.model, "task": r.task} for r in requests]
    results: list[InpaintResult] = []
    for index, request in enumerate(requests):
        incoming = handoffs[index - 1] if index else None
        outgoing = handoffs[index] if index < len(handoffs) else None
        latents = None
        if incoming is not None:
            request, latents = _receive(results[-1], incoming, request)
        if outgoing is not None:
            request = request.replace(output_type="latent" if outgoing.mode == "latent" else "pil")
        chain_info = {
            "name": name,
            "stage": index + 1,
            "stages": outline,
            "input": None if incoming is None else f"{incoming.mode} of stage {index}",
            "handoff_in": None if incoming is None else incoming.as_dict(),
        }
        results.append(run_stage(manager, request, latents=latents, chain=chain_info))
    return ChainResult(name, results, handoffs)


def run_stage(
    manager: PipelineManager,
    request: InpaintRequest,
    *,
    latents: torch.Tensor | None = None,
    chain: dict[str, Any] | None = None,
) -> InpaintResult:
    """`PipelineManager.run` for one stage of a chain, which may start from ``latents`` instead of an image.

    ``request.image`` is None when ``latents`` are given; they are passed to the pipeline as ``image``.
    ``chain`` goes into the recipe. Size parameters the pipeline does not take (SD image-to-image has no
    ``width``/``height``: it works at the image's size) are left out unless the user set them.
    """
    from nbinpaint.recipes import build_recipe
    from nbinpaint.requests import _finish

    started = time.perf_counter()
    pipeline = _pipeline(manager, request)
    loaded = time.perf_counter()
    if latents is not None:
        scale = int(getattr(pipeline, "vae_scale_factor", 8))
        stand_in = Image.new("RGB", (latents.shape[-1] * scale, latents.shape[-2] * scale))
        mask = None if request.mask is None else as_mask(request.mask)
        if mask is not None and mask.size != stand_in.size:  # latents cover the largest multiple of 8
            mask = mask.resize(stand_in.size, Image.Resampling.NEAREST)
        checked = request.replace(image=stand_in, mask=mask).validated().replace(image=None)
    else:
        checked = request.validated()
    run_size = (checked.width, checked.height)
    accepted = accepted_parameters(pipeline)
    if request.width is None and request.height is None and not {"width", "height"} <= accepted:
        checked = checked.replace(width=None, height=None)
    seed = new_seed() if checked.seed is None else int(checked.seed)
    checked = checked.replace(seed=seed)
    _check_task_fits(pipeline, checked)
    kwargs = checked.call_kwargs(pipeline, torch.Generator("cpu").manual_seed(seed))
    if latents is not None:
        kwargs["image"] = latents
    # As PipelineManager.run holds it: pinned against eviction, locked, offload hooks on, the run counted.
    with manager.running(pipeline):
        waited = time.perf_counter()
        output = pipeline(**kwargs)
    ran = time.perf_counter()
    # Latents stay the pipeline's batch tensor, as run_request keeps them; images are finished as there.
    images = output.images if checked.output_type == "latent" else [_finish(image, checked) for image in output.images]
    extra: dict[str, Any] = {"chain": chain} if chain else {}
    if latents is not None:
        extra["input_latents"] = list(latents.shape)
    recipe = build_recipe(checked, pipeline, run_size=run_size, extra=extra)
    now = time.perf_counter()
    timings = {
        "load_s": loaded - started,
        "wait_s": waited - loaded,
        "run_s": ran - waited,
        "post_s": now - ran,
        "total_s": now - started,
    }
    return InpaintResult(images=images, request=checked, seed=seed, timings=timings, recipe=recipe)


def _receive(
    previous: InpaintResult, handoff: Handoff, request: InpaintRequest
) -> tuple[InpaintRequest, torch.Tensor | None]:
    """The next request with the previous output as its input: (request, latents or None)."""
    first = previous.images[0]
    if handoff.mode == "latent":
        latents = first if first.ndim == 4 else first.unsqueeze(0)
        return request, latents
    if not isinstance(first, Image.Image):
        raise InvalidRequestError(
            f"the previous stage returned latents, which the next stage cannot read ({handoff.reason}): "
            "run it with output_type='pil'."
        )
    mask = as_mask(request.mask) if request.mask is not None else None
    if mask is not None and first.size != mask.size:
        first = first.resize(mask.size, Image.Resampling.LANCZOS)  # text-to-image ran at a multiple of 8
    return request.replace(image=first, mask=mask), None


def _check_task_fits(pipeline: Any, request: InpaintRequest) -> None:
    """Refuse image-to-image on an inpainting checkpoint here, not as a UNet channel error mid-run."""
    vae, unet = autoencoder(pipeline), getattr(pipeline, "unet", None)
    if request.task != "img2img" or vae is None or unet is None:
        return
    if unet.config.in_channels != vae.config.latent_channels:
        raise InvalidRequestError(
            f"{request.model!r} is an inpainting checkpoint (its UNet takes {unet.config.in_channels} channels: "
            "latents, mask, masked image), so it cannot do image-to-image. Pick a plain checkpoint for that "
            f"stage, e.g. {SD15!r} (SD 1.x) or {SDXL_REFINER!r} (SDXL)."
        )


def _manager(manager: PipelineManager | None) -> PipelineManager:
    from nbinpaint.pipeline_manager import shared_manager

    return manager if manager is not None else shared_manager()


def _pipeline(manager: PipelineManager, request: InpaintRequest) -> Any:
    return manager.get(
        request.model, request.task, torch_dtype=request.dtype, variant=request.variant, controlnet=request.controlnet
    )


def _request(fixed: dict[str, Any], shared: dict[str, Any], own: dict[str, Any] | None) -> InpaintRequest:
    """One stage's request: the chain's shared parameters, then the stage's own, then what the chain fixes."""
    return InpaintRequest.from_kwargs(**{**shared, **(own or {}), **fixed})


# --------------------------------------------------------------------------------------------------------
# The guide's chains as one call each.
# --------------------------------------------------------------------------------------------------------


def text_to_inpaint(
    prompt: str,
    mask: ImageLike,
    inpaint_prompt: str | None = None,
    *,
    text_model: str = SD15,
    inpaint_model: str = KANDINSKY_INPAINT,
    text_params: dict[str, Any] | None = None,
    inpaint_params: dict[str, Any] | None = None,
    manager: PipelineManager | None = None,
    **params: Any,
) -> ChainResult:
    """Generate an image from ``prompt``, then inpaint it where ``mask`` is white with ``inpaint_prompt``.

    The guide's text-to-image → inpaint chain (SD 1.5, then Kandinsky 2.2 by default): no base image needed.
    The text-to-image stage runs at the mask's size. ``params`` (any `InpaintRequest` field: ``steps``,
    ``seed``, ``guidance_scale``, ``dtype``...) apply to both stages; ``text_params`` and ``inpaint_params``
    to one each (e.g. ``inpaint_params={"extra": {"prior_num_inference_steps": 10}}`` for Kandinsky).
    """
    mask = as_mask(mask)
    width, height = multiple_of_8(mask.size)
    first = _request(
        {"prompt": prompt, "task": "text2img", "model": text_model, "width": width, "height": height},
        params,
        text_params,
    )
    second = _request(
        {"prompt": inpaint_prompt or prompt, "task": "inpaint", "model": inpaint_model, "mask": mask},
        params,
        inpaint_params,
    )
    return run_chain([first, second], name="text_to_inpaint", manager=manager)


def inpaint_to_img2img(
    image: ImageLike,
    mask: ImageLike,
    prompt: str,
    img2img_prompt: str | None = None,
    *,
    inpaint_model: str = DEFAULT_MODEL,
    img2img_model: str = SD15,
    controlnet: str | None = None,
    conditioning_scale: float = 1.0,
    inpaint_params: dict[str, Any] | None = None,
    img2img_params: dict[str, Any] | None = None,
    manager: PipelineManager | None = None,
    **params: Any,
) -> ChainResult:
    """Inpaint, then image-to-image over the whole result (a finishing pass, or a new style).

    With ``img2img_model`` equal to ``inpaint_model`` the second pipeline is derived with ``from_pipe`` (one
    checkpoint in memory); another repo id is a second load, e.g. the guide's ControlNet inpaint followed by
    ``img2img_model="nitrosocke/elden-ring-diffusion"``. ``controlnet`` (e.g.
    ``"lllyasviel/control_v11p_sd15_inpaint"``) runs the inpaint stage with the inpaint ControlNet. Latents
    pass between the stages when the two autoencoders share a latent space (see `plan_handoff`).
    """
    first = _request(
        {"prompt": prompt, "task": "inpaint", "model": inpaint_model, "image": image, "mask": mask},
        params,
        inpaint_params,
    )
    if controlnet is not None:
        from nbinpaint.control import controlnet_request

        first = controlnet_request(first, controlnet, conditioning_scale)
    second = _request(
        {"prompt": img2img_prompt or prompt, "task": "img2img", "model": img2img_model}, params, img2img_params
    )
    return run_chain([first, second], name="inpaint_to_img2img", manager=manager)


# --------------------------------------------------------------------------------------------------------
# One more step after a result: what the studio's buttons call.
# --------------------------------------------------------------------------------------------------------


def to_img2img(
    result: InpaintResult | ChainResult,
    prompt: str | None = None,
    *,
    model: str | None = None,
    manager: PipelineManager | None = None,
    **params: Any,
) -> ChainResult:
    """Image-to-image over a result ("send result to image-to-image"); returns the chain so far plus this step.

    ``model`` defaults to the result's own checkpoint (derived with ``from_pipe``); an inpainting checkpoint
    cannot do image-to-image, and the error names a plain one to pass instead. ``prompt`` and the other
    settings in `INHERITED` default to the result's; ``params`` are `InpaintRequest` fields.
    """
    previous = _as_chain(result, "to_img2img")
    base = previous.final.request
    request = _follow_up(base, prompt, {"task": "img2img", "model": model or base.model}, params)
    return _continue(previous, request, manager)


def refine(
    result: InpaintResult | ChainResult,
    prompt: str | None = None,
    *,
    mask: ImageLike | None = None,
    model: str = SDXL_REFINER,
    manager: PipelineManager | None = None,
    **params: Any,
) -> ChainResult:
    """Refine a result with the SDXL refiner as an inpainting pass ("refine with SDXL refiner").

    The guide loads the refiner with ``AutoPipelineForInpainting`` and repaints the same mask; so does this,
    with the result's mask (or ``mask``; no mask at all means the whole image). ``prompt`` and the settings
    in `INHERITED` default to the result's. The refiner's strength default (0.9999) repaints nearly
    everything; pass e.g. ``strength=0.3`` to keep the result's composition.
    """
    previous = _as_chain(result, "refine")
    base = previous.final.request
    if mask is None:
        mask = base.mask
    if mask is None:
        size = _pixel_size(previous.final)
        mask = Image.new("L", size, 255)
    request = _follow_up(base, prompt, {"task": "inpaint", "model": model, "mask": as_mask(mask)}, params)
    return _continue(previous, request, manager)


def _as_chain(result: InpaintResult | ChainResult, step: str) -> ChainResult:
    """A finished chain to continue; a single result starts one named after the step that continues it."""
    if isinstance(result, ChainResult):
        return result
    if isinstance(result, InpaintResult):
        return ChainResult(step, [result])
    raise InvalidRequestError(f"expected an InpaintResult or ChainResult, not {type(result).__name__}.")


def _follow_up(
    base: InpaintRequest, prompt: str | None, fixed: dict[str, Any], params: dict[str, Any]
) -> InpaintRequest:
    inherited = {name: getattr(base, name) for name in INHERITED}
    if base.prompt_embeds is not None:  # a weighted prompt's embeddings belong to the earlier text encoder
        inherited["prompt"] = ""
    if prompt is not None:
        inherited["prompt"] = prompt
    return InpaintRequest.from_kwargs(**{**inherited, **params, **fixed})


def _continue(previous: ChainResult, request: InpaintRequest, manager: PipelineManager | None) -> ChainResult:
    """Append one stage to a finished chain: pixels from a shown result, latents if it kept them."""
    manager = _manager(manager)
    last = previous.final
    if isinstance(last.images[0], Image.Image):
        handoff = Handoff("pixels", "the result was already decoded")
    else:
        source = _pipeline(manager, last.request)
        handoff = plan_handoff(source, _pipeline(manager, request), source_request=last.request, target_request=request)
    request, latents = _receive(last, handoff, request)
    outline = [{"model": r.request.model, "task": r.request.task} for r in previous.stages] + [
        {"model": request.model, "task": request.task}
    ]
    chain_info = {
        "name": previous.name,
        "stage": len(previous.stages) + 1,
        "stages": outline,
        "input": f"{handoff.mode} of stage {len(previous.stages)}",
        "handoff_in": handoff.as_dict(),
    }
    remote = getattr(manager, "run_stage", None)  # a workshop server runs the stage where its pipeline is
    if remote is not None:
        result = remote(request, latents=latents, chain=chain_info)
    else:
        result = run_stage(manager, request, latents=latents, chain=chain_info)
    return ChainResult(previous.name, [*previous.stages, result], [*previous.handoffs, handoff])


def _pixel_size(result: InpaintResult) -> tuple[int, int]:
    """A result's size in pixels; latents are 1/8 of it for every SD, SDXL and Kandinsky autoencoder."""
    first = result.images[0]
    if isinstance(first, Image.Image):
        return first.size
    return (first.shape[-1] * 8, first.shape[-2] * 8)


# --------------------------------------------------------------------------------------------------------
# A pipeline's own parameters (Kandinsky's prior settings, SDXL's aesthetic score...).
# --------------------------------------------------------------------------------------------------------

_SCALARS = (int, float, bool, str)


def pipeline_extras(pipeline: Any) -> dict[str, inspect.Parameter]:
    """The ``__call__`` parameters ``pipeline`` has beyond `InpaintRequest`'s own: what the panel can offer.

    For Kandinsky 2.2's combined pipelines (a prior chained to a decoder) these are the prior's
    ``prior_num_inference_steps`` and ``prior_guidance_scale``; for SDXL ``aesthetic_score``,
    ``guidance_rescale``, ``prompt_2``... They are passed with ``InpaintRequest(extra={...})``. Only
    parameters a form can hold are listed: those whose annotation allows a number, boolean, string or
    tuple of them; tensors, images, generators, callbacks and lists are not. ``return_dict`` is
    not either: `run_request` reads ``output.images``.
    """
    covered = set(CALL_PARAMETERS.values()) | {"return_dict"}
    signature = inspect.signature(pipeline.__call__)
    return {
        name: parameter
        for name, parameter in signature.parameters.items()
        if name not in covered
        and parameter.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        and _form_value(parameter.annotation)
    }


def _form_value(annotation: Any) -> bool:
    """Whether an annotation describes a value a form field can hold (number, bool, str, tuple of them)."""
    if annotation is inspect.Parameter.empty:
        return False
    if annotation in _SCALARS:
        return True
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):  # `str | list[str] | None`: the str is what a form holds
        return any(_form_value(a) for a in arguments if a is not type(None))
    if origin is tuple:
        return bool(arguments) and all(a is Ellipsis or a in _SCALARS for a in arguments)
    return False
