"""nbinpaint: diffusion inpainting in the notebook, over one shared diffusers pipeline manager.

``nbinpaint.manager`` is the kernel's shared `PipelineManager`; `inpaint` is the plain-Python call that
the studio's Generate button makes.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from nbinpaint.errors import (
    GenerationCancelled,
    InvalidRequestError,
    ModelLoadError,
    NbinpaintError,
    UnsupportedParameterError,
)
from nbinpaint.pipeline_manager import PipelineManager, set_shared_manager, shared_manager
from nbinpaint.requests import InpaintRequest, InpaintResult
from nbinpaint.twins import twin_mode, use_twins

__all__ = [
    "GenerationCancelled",
    "InpaintRequest",
    "InpaintResult",
    "InvalidRequestError",
    "ModelLoadError",
    "NbinpaintError",
    "PipelineManager",
    "UnsupportedParameterError",
    "__version__",
    "inpaint",
    "manager",
    "set_shared_manager",
    "shared_manager",
    "twin_mode",
    "use_twins",
]


def inpaint(image: Any, mask: Any, prompt: str = "", **params: Any) -> InpaintResult:
    """Inpaint ``image`` where ``mask`` is white, with the shared manager: what the studio's button runs.

    ``params`` are `InpaintRequest` fields, e.g. ``model=``, ``strength=``, ``guidance_scale=``, ``steps=``,
    ``seed=``, ``padding_mask_crop=``, ``blur_factor=``, ``preserve_unmasked=``.
    """
    request = InpaintRequest.from_kwargs(image=image, mask=mask, prompt=prompt, **params)
    return shared_manager().run(request)


def __getattr__(name: str) -> Any:
    # ``nbinpaint.manager`` always names the current shared manager, even after set_shared_manager.
    if name == "manager":
        return shared_manager()
    raise AttributeError(f"module 'nbinpaint' has no attribute {name!r}")
