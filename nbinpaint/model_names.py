"""Friendly model names and the model a new panel starts on: plain Python, shared by the panel's state
(`nbinpaint.studio_state`) and the model picker (`nbinpaint.widgets.picker`), so neither needs the other."""

from __future__ import annotations

from nbinpaint.control import DEFAULT_CONTROLNET
from nbinpaint.lora import KNOWN_LORAS
from nbinpaint.requests import DEFAULT_MODEL

__all__ = [
    "CUSTOM",
    "MODEL_NAMES",
    "TWIN_DEFAULT_MODEL",
    "default_model",
    "guide_models",
    "model_choices",
    "model_name",
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
    "classical/telea": "Telea fill",
    "classical/ns": "Navier-Stokes fill",
    "classical/biharmonic": "Biharmonic fill",
}

# Model ids that are parts of another checkpoint, not inpainting models: the inpaint ControlNet (the panel's
# own switch), Kandinsky's prior (loaded by the Kandinsky decoder) and the LoRAs (a request's lora=).
_PARTS = (DEFAULT_CONTROLNET, "kandinsky-community/kandinsky-2-2-prior", *KNOWN_LORAS)


def guide_models() -> list[str]:
    """The guide's checkpoints that inpaint, in the guide's order (every twinned repo but the parts)."""
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
