"""LoRA weights fused into a loaded checkpoint, the schedulers few-step LoRAs need, and PAG pipelines.

A LoRA is a load option (``lora=`` on a request, a field of `nbinpaint.contract.PipelineKey`): the manager
loads the checkpoint as its own entry, then `fuse` loads the LoRA with diffusers' ``load_lora_weights``,
fuses it into the weights (``fuse_lora``: no extra work per step), drops the LoRA layers
(``unload_lora_weights``) and switches the scheduler where the table below says the LoRA needs one.
Fusing changes weights in place, which is why the fused pipeline never shares them with the plain one
(see `nbinpaint.pipeline_manager.PipelineManager`).

`KNOWN_LORAS` is what nbinpaint knows about particular LoRAs: LCM-LoRA (latent consistency distillation)
samples in about 4 steps with guidance about 1, and only with ``LCMScheduler``; a request that leaves steps
or guidance unset gets those (`request_defaults`). Any other LoRA repo loads too, with the checkpoint's
own scheduler and defaults.

PAG (perturbed-attention guidance) is another load option, ``enable_pag=True``: diffusers has PAG versions
of the SD 1.x/2.x and SDXL inpainting pipelines, reached with ``from_pipe(pipeline, enable_pag=True)``
(sharing every component), and they take ``pag_scale``. `pag_pipeline` refuses a pipeline with none.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from nbinpaint.errors import InvalidRequestError, ModelLoadError, quote

__all__ = [
    "KNOWN_LORAS",
    "LoraSpec",
    "PagUnsupportedError",
    "attention_restored",
    "fuse",
    "pag_pipeline",
    "request_defaults",
    "spec_for",
]


class PagUnsupportedError(InvalidRequestError):
    """``enable_pag=True`` for a pipeline diffusers has no PAG version of; ``reason`` says so in a few words
    (the panel's tooltip on the greyed-out switch)."""

    def __init__(self, pipeline_class: str) -> None:
        self.reason = f"diffusers has no PAG version of {pipeline_class}"
        super().__init__(
            f"enable_pag: {self.reason} (perturbed-attention guidance exists for Stable Diffusion 1.x/2.x and "
            "SDXL inpainting): unset enable_pag for this model."
        )


@dataclass(frozen=True)
class LoraSpec:
    """What a LoRA needs beyond its weights: the scheduler it was distilled for, its steps and guidance."""

    scheduler: str | None = None  # a diffusers scheduler class name; None keeps the checkpoint's own
    steps: int | None = None
    guidance_scale: float | None = None
    fits: str = ""  # the checkpoints it is made for, in words (for messages)
    #: The weights file in the repo. diffusers guesses it online but must be told offline (twins, a cache).
    weight_name: str | None = None


#: Repo id -> what it needs. LCM-LoRA: diffusers' "Latent Consistency Model" guide runs it with
#: ``LCMScheduler``, 4 steps and guidance about 1 (1 turns classifier-free guidance off: one UNet pass a step).
KNOWN_LORAS: Mapping[str, LoraSpec] = {
    "latent-consistency/lcm-lora-sdv1-5": LoraSpec(
        "LCMScheduler", 4, 1.0, "Stable Diffusion 1.x", "pytorch_lora_weights.safetensors"
    ),
    "latent-consistency/lcm-lora-sdxl": LoraSpec("LCMScheduler", 4, 1.0, "SDXL", "pytorch_lora_weights.safetensors"),
}


def spec_for(lora: str | None) -> LoraSpec | None:
    """The table's entry for a LoRA repo id, or None (unknown LoRAs keep the checkpoint's defaults)."""
    return None if lora is None else KNOWN_LORAS.get(lora)


def request_defaults(lora: str | None) -> dict[str, Any]:
    """Request fields a LoRA sets when the request leaves them unset: ``{"steps": 4, "guidance_scale": 1.0}``
    for LCM-LoRA, nothing for others."""
    spec = spec_for(lora)
    if spec is None:
        return {}
    return {
        name: value
        for name, value in (("steps", spec.steps), ("guidance_scale", spec.guidance_scale))
        if value is not None
    }


def fuse(pipeline: Any, lora: str, scale: float | None, load_kwargs: Mapping[str, Any]) -> Any:
    """Load ``lora`` into a freshly loaded ``pipeline``, fuse it at ``scale`` (1.0 when None), drop the LoRA
    layers, and switch to the scheduler `KNOWN_LORAS` names; returns the pipeline, changed in place.

    ``load_kwargs`` are where the LoRA's files are looked up (the twins' cache, offline). A failure names the
    LoRA and the checkpoint it was loaded onto.
    """
    if not hasattr(pipeline, "load_lora_weights"):
        raise InvalidRequestError(
            f"{type(pipeline).__name__} cannot load a LoRA (diffusers gives it no load_lora_weights): unset "
            f"lora={quote(lora)}, or choose a Stable Diffusion or SDXL checkpoint."
        )
    spec = spec_for(lora)
    try:
        pipeline.load_lora_weights(lora, **load_kwargs)
        pipeline.fuse_lora(lora_scale=1.0 if scale is None else float(scale))
        pipeline.unload_lora_weights()  # the fused weights stay; the LoRA layers (and their work per step) go
    except Exception as error:
        fits = f" It is made for {spec.fits} checkpoints." if spec is not None and spec.fits else ""
        raise ModelLoadError(
            f"could not load the LoRA {quote(lora)} onto {type(pipeline).__name__}: "
            f"{type(error).__name__}: {str(error).splitlines()[0][:300] if str(error) else ''}.{fits} Check that "
            "the LoRA fits the checkpoint (SD 1.x LoRAs for SD 1.x, SDXL LoRAs for SDXL), or unset lora."
        ) from error
    if spec is not None and spec.scheduler is not None:
        switch_scheduler(pipeline, spec.scheduler)
    return pipeline


def switch_scheduler(pipeline: Any, name: str) -> None:
    """Replace the pipeline's scheduler by diffusers' ``name``, built from the current one's config."""
    import diffusers

    pipeline.scheduler = getattr(diffusers, name).from_config(pipeline.scheduler.config)


def pag_pipeline(auto_class: Any, base: Any) -> Any:
    """The PAG version of ``base`` (``auto_class.from_pipe(base, enable_pag=True)``, sharing its components).

    diffusers has PAG versions of SD 1.x/2.x and SDXL pipelines only; for another class ``from_pipe`` may hand
    back the same class without PAG, so the result is checked for diffusers' ``PAGMixin``.
    """
    from diffusers.pipelines.pag.pag_utils import PAGMixin

    refusal = PagUnsupportedError(type(base).__name__)
    try:
        pipeline = auto_class.from_pipe(base, enable_pag=True)
    except ValueError as error:  # AutoPipeline can't find a pipeline linked to ...
        raise refusal from error
    if not isinstance(pipeline, PAGMixin):
        raise refusal
    return pipeline


@contextlib.contextmanager
def attention_restored(pipeline: Any) -> Iterator[None]:
    """Around a PAG pipeline's call: its denoiser's attention processors put back afterwards, whatever happens.

    A PAG pipeline swaps in its own processors for the call and restores them only when the call returns; a
    run stopped by cancel (or an error) would leave them on the UNet it shares with the plain pipeline,
    which would then run perturbed attention too. Other pipelines pass through.
    """
    from diffusers.pipelines.pag.pag_utils import PAGMixin

    denoiser = getattr(pipeline, "unet", None) or getattr(pipeline, "transformer", None)
    if not isinstance(pipeline, PAGMixin) or not hasattr(denoiser, "attn_processors"):
        yield
        return
    saved = dict(denoiser.attn_processors)
    try:
        yield
    finally:
        if any(denoiser.attn_processors[name] is not processor for name, processor in saved.items()):
            denoiser.set_attn_processor(saved)
