"""Friendly model names and the model a new panel starts on: plain Python, shared by the panel's state
(`nbinpaint.studio_state`) and the model picker (`nbinpaint.widgets.picker`), so neither needs the other."""

from __future__ import annotations

from dataclasses import dataclass

from nbinpaint.control import DEFAULT_CONTROLNET
from nbinpaint.lora import KNOWN_LORAS
from nbinpaint.requests import DEFAULT_MODEL
from nbinpaint.segmenter import DEFAULT_SEGMENTER

__all__ = [
    "CUSTOM",
    "MODEL_NAMES",
    "MODEL_NEEDS",
    "TWIN_DEFAULT_MODEL",
    "ModelNeeds",
    "default_guidance",
    "default_model",
    "guide_models",
    "model_choices",
    "model_name",
    "model_needs",
    "needs_text",
]

TWIN_DEFAULT_MODEL = "classical/telea"
"""What a panel starts on in twin mode: a fill that gives a real picture offline."""
CUSTOM = "\x00custom"
"""The dropdown value of "Your own repo id…" (no model id can start with a NUL)."""

#: Friendly names of the models the picker offers, by id.
MODEL_NAMES: dict[str, str] = {
    "runwayml/stable-diffusion-inpainting": "Stable Diffusion 1.5 inpainting",
    "stable-diffusion-v1-5/stable-diffusion-inpainting": "Stable Diffusion 1.5 inpainting (v1-5 mirror)",
    "stable-diffusion-v1-5/stable-diffusion-v1-5": "Stable Diffusion 1.5 (regular)",
    "nitrosocke/elden-ring-diffusion": "Elden Ring style (SD 1.5, regular)",
    "diffusers/stable-diffusion-xl-1.0-inpainting-0.1": "SDXL 1.0 inpainting",
    "stabilityai/stable-diffusion-xl-refiner-1.0": "SDXL refiner",
    "kandinsky-community/kandinsky-2-2-decoder-inpaint": "Kandinsky 2.2 inpainting",
    "stabilityai/stable-diffusion-3.5-medium": "Stable Diffusion 3.5 medium",
    "black-forest-labs/FLUX.1-Fill-dev": "FLUX.1 Fill [dev]",
    "classical/telea": "Telea fill",
    "classical/ns": "Navier-Stokes fill",
    "classical/biharmonic": "Biharmonic fill",
}


@dataclass(frozen=True)
class ModelNeeds:
    """What a checkpoint asks of a machine, for the picker: weights in half precision (and quantized, where
    it helps), the steps it is usually run with, and its guidance scale when it differs from the panel's 7.5.

    Memory is the weights' size in GB (the real checkpoint's parameters x 2 bytes; 4-bit: the denoiser and T5
    at about half a byte a parameter), rounded: a GPU needs that plus a few GB for the run itself.
    """

    memory_gb: float
    steps: int
    memory_4bit_gb: float | None = None
    guidance: float | None = None


#: What each checkpoint the picker lists needs (steps: diffusers' pipeline default, or the model card's).
MODEL_NEEDS: dict[str, ModelNeeds] = {
    "runwayml/stable-diffusion-inpainting": ModelNeeds(2.1, 50),
    "stable-diffusion-v1-5/stable-diffusion-inpainting": ModelNeeds(2.1, 50),
    "stable-diffusion-v1-5/stable-diffusion-v1-5": ModelNeeds(2.1, 50),
    "nitrosocke/elden-ring-diffusion": ModelNeeds(2.1, 50),
    "diffusers/stable-diffusion-xl-1.0-inpainting-0.1": ModelNeeds(6.9, 50),
    "stabilityai/stable-diffusion-xl-refiner-1.0": ModelNeeds(6.1, 50),
    "kandinsky-community/kandinsky-2-2-decoder-inpaint": ModelNeeds(5.5, 50, guidance=4.0),
    # MMDiT-X 2.5B + T5-XXL 4.7B + two CLIPs; diffusers' default 28 steps, guidance 7.
    "stabilityai/stable-diffusion-3.5-medium": ModelNeeds(16.0, 28, memory_4bit_gb=5.5, guidance=7.0),
    # Flux 12B + T5-XXL; FluxFillPipeline's defaults: 50 steps, distilled guidance 30 (not classifier-free).
    "black-forest-labs/FLUX.1-Fill-dev": ModelNeeds(33.5, 50, memory_4bit_gb=10.0, guidance=30.0),
}


def model_needs(model: str) -> ModelNeeds | None:
    """What ``model`` needs (`MODEL_NEEDS`), or None for a model the table does not know."""
    return MODEL_NEEDS.get(model)


def needs_text(model: str) -> str:
    """``"~16 GB (4-bit ~5.5 GB), 28 steps"``: the picker's words for `model_needs`; empty when unknown."""
    needs = model_needs(model)
    if needs is None:
        return ""
    quantized = f" (4-bit ~{needs.memory_4bit_gb:g} GB)" if needs.memory_4bit_gb else ""
    return f"~{needs.memory_gb:g} GB{quantized}, {needs.steps} steps"


def default_guidance(model: str) -> float | None:
    """The guidance scale ``model`` is run with when it is not the panel's usual one (Flux Fill: 30), else None."""
    needs = model_needs(model)
    return None if needs is None else needs.guidance


# Model ids that are parts of another checkpoint, not inpainting models: the inpaint ControlNet (the panel's
# own switch), Kandinsky's prior (loaded by the Kandinsky decoder), Segment Anything (the canvas's Segment tool)
# and the LoRAs (a request's lora=).
_PARTS = (DEFAULT_CONTROLNET, "kandinsky-community/kandinsky-2-2-prior", DEFAULT_SEGMENTER, *KNOWN_LORAS)


def guide_models() -> list[str]:
    """The checkpoints that inpaint: the guide's in its order, then the newer ones (every twinned repo but
    the parts)."""
    from nbinpaint.twins import REPO_IDS

    return [repo for repo in REPO_IDS if repo not in _PARTS]


def model_choices() -> list[str]:
    """What the model picker offers: the guide's checkpoints, then the classical backends."""
    from nbinpaint.backends import BACKENDS

    return [*guide_models(), *BACKENDS]


def model_name(model: str) -> str:
    """The friendly name of ``model`` (`MODEL_NAMES`), or the id itself."""
    return MODEL_NAMES.get(model, model)


def default_model() -> str:
    """The model a new panel starts on: `TWIN_DEFAULT_MODEL` in twin mode, else the request's default."""
    from nbinpaint.twins import twin_mode

    return TWIN_DEFAULT_MODEL if twin_mode() else DEFAULT_MODEL
