"""Chains: one pipeline's output is the next one's input, in latent space when they share it.

This is the engine under `nbinpaint.chains` (the guide's chains as one call each) and
`PipelineManager.run_chain`. Between two stages the output either stays latents (no decode and re-encode:
faster, and no VAE round-trip loss) or is handed over as pixels. Which one is decided from the two
pipelines' components (`plan_handoff`), never from model names: latents are passed only when both
autoencoders are the same object, or of one class with one config (hence one latent space), and the next
pipeline can start from latents. Each stage is one `manager.run` (the one road: progress, previews,
cancel, out-of-memory retry), its input from `receive`.

A worked example, the guide's inpaint → refiner → image-to-image (``run_chain`` with three requests):

1. SD inpaint → SDXL refiner: both autoencoders are ``AutoencoderKL``, but their configs differ (SD's
   ``scaling_factor`` 0.18215, SDXL's 0.13025): the inpaint stage decodes, the refiner encodes.
2. refiner (inpaint) → refiner (image-to-image): ``from_pipe`` shares the very VAE object: the refiner
   returns latents and image-to-image starts from them; one decode, at the very end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from nbinpaint.errors import InvalidRequestError
from nbinpaint.previews import autoencoder_of as autoencoder
from nbinpaint.requests import InpaintRequest, accepted_parameters, as_mask
from nbinpaint.results import NO_OPTIONS, ChainResult, Handoff, InpaintResult, RunOptions
from nbinpaint.runner import check_task_fits

if TYPE_CHECKING:
    from nbinpaint.contract import Manager

__all__ = [
    "LATENT_NEUTRAL_CONFIG",
    "autoencoder",
    "check_chain",
    "latent_input_refusal",
    "latent_space_difference",
    "plan_chain",
    "plan_handoff",
    "receive",
    "run_chain",
    "stage_info",
]


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
    restores pixels, ``seam_repair`` repairs them), whenever the autoencoders differ
    (`latent_space_difference`), and whenever the target cannot start from latents (`latent_input_refusal`).
    """
    for request, role in ((source_request, "this stage"), (target_request, "the next stage")):
        if request.padding_mask_crop is not None:
            return Handoff("pixels", f"padding_mask_crop in {role} crops and pastes pixels")
        if request.preserve_unmasked:
            return Handoff("pixels", f"preserve_unmasked in {role} restores pixels")
        if request.seam_repair is not None:
            return Handoff("pixels", f"seam_repair in {role} repairs pixels")
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
# Running a chain, stage by stage.
# --------------------------------------------------------------------------------------------------------


def check_chain(requests: Sequence[InpaintRequest]) -> None:
    """Refuse a chain that cannot run, before any stage does: no stage, or a later stage with its own image."""
    if not requests:
        raise InvalidRequestError("a chain needs at least one request.")
    for index, request in enumerate(requests[1:], 2):
        if request.image is not None:
            raise InvalidRequestError(
                f"stage {index} of the chain has an image, but it receives stage {index - 1}'s output: "
                "leave its image=None."
            )


def pipeline_for(manager: Any, request: InpaintRequest) -> Any:
    """The loaded pipeline a request runs on."""
    return manager.get(
        request.model, request.task, torch_dtype=request.dtype, variant=request.variant, controlnet=request.controlnet
    )


def plan_chain(manager: Any, requests: Sequence[InpaintRequest]) -> list[Handoff]:
    """Every hand-off of a chain, planned from both pipelines of each before the first stage runs; a stage's
    task that its checkpoint cannot do is refused here too, not after the earlier stages ran."""
    check_chain(requests)
    pipelines = [pipeline_for(manager, request) for request in requests]
    for pipeline, request in zip(pipelines, requests, strict=True):
        check_task_fits(pipeline, request)
    return [
        plan_handoff(pipelines[i], pipelines[i + 1], source_request=requests[i], target_request=requests[i + 1])
        for i in range(len(requests) - 1)
    ]


def receive(
    previous: InpaintResult, handoff: Handoff, request: InpaintRequest
) -> tuple[InpaintRequest, torch.Tensor | None]:
    """The next stage's request with the previous output as its input: (request, latents or None)."""
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


def stage_info(name: str, stage: int, outline: list[dict[str, str]], incoming: Handoff | None) -> dict[str, Any]:
    """The ``chain`` entry of a stage's recipe: the chain's name and stages, this stage and its input."""
    return {
        "name": name,
        "stage": stage,
        "stages": outline,
        "input": None if incoming is None else f"{incoming.mode} of stage {stage - 1}",
        "handoff_in": None if incoming is None else incoming.as_dict(),
    }


def run_chain(
    manager: Manager, requests: Sequence[InpaintRequest], *, name: str = "chain", options: RunOptions = NO_OPTIONS
) -> ChainResult:
    """Run ``requests`` in order on ``manager``, each from the previous stage's output; every stage's result.

    A stage that hands latents on runs with ``output_type="latent"``; with more than one image per stage the
    first is handed on. Each stage is one ``manager.run`` with ``options`` (steps count per stage).
    """
    handoffs = plan_chain(manager, requests)
    outline = [{"model": r.model, "task": r.task} for r in requests]
    results: list[InpaintResult] = []
    for index, request in enumerate(requests):
        incoming = handoffs[index - 1] if index else None
        outgoing = handoffs[index] if index < len(handoffs) else None
        latents = None
        if incoming is not None:
            request, latents = receive(results[-1], incoming, request)
        if outgoing is not None:
            request = request.replace(output_type="latent" if outgoing.mode == "latent" else "pil")
        chain = stage_info(name, index + 1, outline, incoming)
        result = manager.run(request, latents=latents, **options.as_kwargs(recipe_extra={"chain": chain}))
        results.append(result)
    return ChainResult(name, results, handoffs)
