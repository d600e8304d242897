"""The guide's chains as one call each, and one more step after a result (what the studio's buttons call).

Chained pipelines hand one pipeline's output to the next, in latent space when they share it; the engine,
which decides latents or pixels from the two pipelines' components, is `nbinpaint.handoff`. Every stage
is one ``manager.run``, so a chain reports progress per step, shows previews and stops within one step of
Cancel like a single run: each function here takes the same ``on_step``, ``should_stop``, ``on_preview``
and ``preview_every`` as `PipelineManager.run`, and runs on the kernel's shared manager unless given one
(a workshop server runs the whole chain where its pipelines are).
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from PIL import Image

from nbinpaint.errors import InvalidRequestError
from nbinpaint.handoff import (
    LATENT_NEUTRAL_CONFIG,
    autoencoder,
    latent_input_refusal,
    latent_space_difference,
    pipeline_for,
    plan_handoff,
    receive,
    stage_info,
)
from nbinpaint.requests import CALL_PARAMETERS, DEFAULT_MODEL, ImageLike, InpaintRequest, as_mask, multiple_of_8
from nbinpaint.results import ChainResult, Handoff, InpaintResult, PreviewCallback, StepCallback
from nbinpaint.runner import SD15, SDXL_REFINER
from nbinpaint.session import shared_manager

if TYPE_CHECKING:
    from nbinpaint.contract import Manager

__all__ = [
    "LATENT_NEUTRAL_CONFIG",
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

KANDINSKY_INPAINT = "kandinsky-community/kandinsky-2-2-decoder-inpaint"

# Request settings a follow-up stage inherits from the result it continues (the rest are the stage's own).
INHERITED = ("prompt", "negative_prompt", "steps", "guidance_scale", "dtype", "variant")


def run_chain(
    requests: Sequence[InpaintRequest],
    *,
    name: str = "chain",
    manager: Manager | None = None,
    on_step: StepCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_preview: PreviewCallback | None = None,
    preview_every: int | None = None,
) -> ChainResult:
    """Run ``requests`` in order, each from the previous stage's output; returns every stage's result.

    The first request is complete; a later one's ``image`` must be None (it receives the previous output)
    and an inpainting one brings its mask. Every pipeline is fetched first, so each hand-off is planned from
    both pipelines before the earlier one runs (`nbinpaint.handoff.plan_handoff`), and a stage that hands
    latents on runs with ``output_type="latent"``. More than one image per stage: the first is handed on.
    The callbacks are `PipelineManager.run`'s, called for every stage's steps.
    """
    callbacks = {"on_step": on_step, "should_stop": should_stop, "on_preview": on_preview}
    return _manager(manager).run_chain(list(requests), name=name, preview_every=preview_every, **callbacks)


def run_stage(
    manager: Manager,
    request: InpaintRequest,
    *,
    latents: Any = None,
    chain: dict[str, Any] | None = None,
    **callbacks: Any,
) -> InpaintResult:
    """One stage of a chain: ``manager.run`` from ``latents`` (or the request's image), ``chain`` in its recipe."""
    return manager.run(request, latents=latents, recipe_extra={"chain": chain} if chain else None, **callbacks)


def _manager(manager: Manager | None) -> Manager:
    return manager if manager is not None else shared_manager()


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
    manager: Manager | None = None,
    on_step: StepCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_preview: PreviewCallback | None = None,
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
    callbacks = {"on_step": on_step, "should_stop": should_stop, "on_preview": on_preview}
    return run_chain([first, second], name="text_to_inpaint", manager=manager, **callbacks)


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
    manager: Manager | None = None,
    on_step: StepCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_preview: PreviewCallback | None = None,
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
    callbacks = {"on_step": on_step, "should_stop": should_stop, "on_preview": on_preview}
    return run_chain([first, second], name="inpaint_to_img2img", manager=manager, **callbacks)


# --------------------------------------------------------------------------------------------------------
# One more step after a result: what the studio's buttons call.
# --------------------------------------------------------------------------------------------------------


def to_img2img(
    result: InpaintResult | ChainResult,
    prompt: str | None = None,
    *,
    model: str | None = None,
    manager: Manager | None = None,
    on_step: StepCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_preview: PreviewCallback | None = None,
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
    return _continue(previous, request, manager, on_step=on_step, should_stop=should_stop, on_preview=on_preview)


def refine(
    result: InpaintResult | ChainResult,
    prompt: str | None = None,
    *,
    mask: ImageLike | None = None,
    model: str = SDXL_REFINER,
    manager: Manager | None = None,
    on_step: StepCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_preview: PreviewCallback | None = None,
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
    return _continue(previous, request, manager, on_step=on_step, should_stop=should_stop, on_preview=on_preview)


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


def _continue(previous: ChainResult, request: InpaintRequest, manager: Manager | None, **callbacks: Any) -> ChainResult:
    """Append one stage to a finished chain: pixels from a shown result, latents if it kept them. The stage
    is one ``manager.run`` with the callbacks: progress, previews and Cancel as for any run."""
    manager = _manager(manager)
    last = previous.final
    if isinstance(last.images[0], Image.Image):
        handoff = Handoff("pixels", "the result was already decoded")
    else:
        source, target = pipeline_for(manager, last.request), pipeline_for(manager, request)
        handoff = plan_handoff(source, target, source_request=last.request, target_request=request)
    request, latents = receive(last, handoff, request)
    outline = [{"model": r.request.model, "task": r.request.task} for r in previous.stages] + [
        {"model": request.model, "task": request.task}
    ]
    chain = stage_info(previous.name, len(previous.stages) + 1, outline, handoff)
    result = manager.run(request, latents=latents, recipe_extra={"chain": chain}, **callbacks)
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
