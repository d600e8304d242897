"""nbinpaint: diffusion inpainting in the notebook, over one shared diffusers pipeline manager.

``nbinpaint.manager`` is the kernel's shared `PipelineManager`; `inpaint` is the plain-Python call that
the studio's Generate button makes.
"""

from __future__ import annotations

from typing import Any

from nbinpaint import outpainting
from nbinpaint._version import __version__
from nbinpaint.errors import (
    GenerationCancelled,
    InvalidRequestError,
    ModelLoadError,
    NbinpaintError,
    NotEnoughMemoryError,
    UnsupportedParameterError,
)
from nbinpaint.pipeline_manager import PipelineManager
from nbinpaint.requests import InpaintRequest
from nbinpaint.results import ChainResult, InpaintResult
from nbinpaint.session import set_shared_manager, shared_manager
from nbinpaint.twins import twin_mode, use_twins

__all__ = [
    "ChainResult",
    "CompareView",
    "GenerationCancelled",
    "History",
    "HistoryGallery",
    "ImageGrid",
    "InpaintRequest",
    "InpaintResult",
    "InpaintStudio",
    "InvalidRequestError",
    "MaskCanvas",
    "ModelLoadError",
    "NbinpaintError",
    "NotEnoughMemoryError",
    "NotebookSetup",
    "ParameterPanel",
    "PipelineManager",
    "SweepResult",
    "UnsupportedParameterError",
    "__version__",
    "code_for",
    "connect",
    "disconnect",
    "inpaint",
    "load_recipe",
    "manager",
    "notebook_setup",
    "outpaint",
    "repair_seams",
    "rerun",
    "samples",
    "segment",
    "set_shared_manager",
    "shared_history",
    "shared_manager",
    "studio",
    "sweep",
    "twin_mode",
    "twins",
    "use_twins",
]


def inpaint(image: Any, mask: Any, prompt: str = "", **params: Any) -> InpaintResult:
    """Inpaint ``image`` where ``mask`` is white, with the shared manager: what the studio's button runs.

    ``params`` are `InpaintRequest` fields, e.g. ``model=``, ``strength=``, ``guidance_scale=``, ``steps=``,
    ``seed=``, ``padding_mask_crop=``, ``blur_factor=``, ``preserve_unmasked=``, ``seam_repair=``; ``lora=``
    fuses a LoRA (``"latent-consistency/lcm-lora-sdv1-5"``: 4 steps with LCMScheduler), ``enable_pag=True``
    runs PAG.
    """
    request = InpaintRequest.from_kwargs(image=image, mask=mask, prompt=prompt, **params)
    return shared_manager().run(request)


def outpaint(
    image: Any,
    left: int = 0,
    right: int = 0,
    top: int = 0,
    bottom: int = 0,
    *,
    size: tuple[int, int] | None = None,
    aspect: Any = None,
    fill: str = outpainting.DEFAULT_FILL,
    overlap: int | None = None,
    feather: int | None = None,
    prompt: str = "",
    **params: Any,
) -> InpaintResult:
    """Extend ``image`` by ``left``/``right``/``top``/``bottom`` pixels (or to ``size=(w, h)`` or ``aspect=16/9``)
    and paint the new area with the shared manager: see `nbinpaint.outpainting` for the steps.

    ``fill`` starts the new area (``"edge"``, ``"blur"``, ``"telea"``, ``"noise"``); ``overlap`` px of the
    original along each extended side are repainted too (default 32) and blended back over ``feather`` px
    (default: the overlap). ``params`` are `InpaintRequest` fields, as for `inpaint` (``model=``, ``steps=``,
    ``seed=``...), and ``controlnet=True`` adds the SD 1.5 inpaint ControlNet. The canvas is a multiple of 8;
    the original's pixels outside the band come back unchanged.
    """
    return outpainting.run(
        shared_manager(),
        image,
        left,
        right,
        top,
        bottom,
        size=size,
        aspect=aspect,
        fill=fill,
        overlap=overlap,
        feather=feather,
        prompt=prompt,
        **params,
    )


def studio(image: Any = None, mask: Any = None, **kwargs: Any) -> Any:
    """Open the inpaint studio (canvas, parameters, results) on ``image``; the chelsea sample when None.

    ``kwargs`` go to `InpaintStudio`: ``model=``, ``prompt=``, ``steps=``, ``manager=``, ``history=``...
    """
    from nbinpaint.widgets.studio import studio as open_studio

    return open_studio(image, mask, **kwargs)


# Widgets and the viewer load on first use: `import nbinpaint` stays light for scripts and servers.
_LAZY = {
    "History": "nbinpaint.history",
    "shared_history": "nbinpaint.history",
    "sweep": "nbinpaint.sweeps",
    "SweepResult": "nbinpaint.sweeps",
    "load_recipe": "nbinpaint.recipes",
    "repair_seams": "nbinpaint.seams",
    "rerun": "nbinpaint.session",
    "ImageGrid": "nbinpaint.widgets.grid",
    "CompareView": "nbinpaint.widgets.compare",
    "HistoryGallery": "nbinpaint.widgets.gallery",
    "MaskCanvas": "nbinpaint.widgets.canvas",
    "code_for": "nbinpaint.codegen",
    "connect": "nbinpaint.session",
    "disconnect": "nbinpaint.session",
    "InpaintStudio": "nbinpaint.widgets.studio",
    "ParameterPanel": "nbinpaint.widgets.panel",
    "samples": "nbinpaint.samples",
    "segment": "nbinpaint.segmentation",
    "notebook_setup": "nbinpaint.notebook",
    "NotebookSetup": "nbinpaint.notebook",
    "twins": "nbinpaint.twins",
}


def __getattr__(name: str) -> Any:
    # ``nbinpaint.manager`` always names the current shared manager, even after set_shared_manager.
    if name == "manager":
        return shared_manager()
    if name in _LAZY:
        import importlib

        module = importlib.import_module(_LAZY[name])
        return module if module.__name__.endswith("." + name) else getattr(module, name)
    raise AttributeError(f"module 'nbinpaint' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | {"manager"})
