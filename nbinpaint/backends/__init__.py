"""Non-diffusion inpainting backends, addressed by model ids like ``classical/telea`` in the model picker.

`BACKENDS` is the one table: model id -> a factory for a new backend object that is called like an
inpaint pipeline. The pipeline manager asks `is_backend_id` before reaching for the Hugging Face Hub.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from nbinpaint.backends.classical import METHODS, ClassicalInpaintPipeline
from nbinpaint.errors import ModelLoadError

__all__ = ["BACKENDS", "ClassicalInpaintPipeline", "get_backend", "is_backend_id"]

BACKENDS: dict[str, Callable[[], Any]] = {
    f"classical/{method}": partial(ClassicalInpaintPipeline, method) for method in METHODS
}

# Every id under these prefixes belongs here, known or not: "classical/magic" must get the list of backends,
# not a trip to the Hub (where it would be a well-formed repo id).
_NAMESPACES = tuple(sorted({model_id.split("/", 1)[0] + "/" for model_id in BACKENDS}))


def is_backend_id(model_id: str) -> bool:
    """Whether ``model_id`` names a backend here (or claims to) rather than a Hugging Face repo."""
    return model_id.startswith(_NAMESPACES)


def get_backend(model_id: str) -> Any:
    """A new backend object for ``model_id``; an unknown id raises `ModelLoadError` listing the known ones."""
    factory = BACKENDS.get(model_id)
    if factory is None:
        raise ModelLoadError(
            f"there is no backend {model_id!r}; the backends are: {', '.join(BACKENDS)} "
            "(or use a Hugging Face inpainting model id)."
        )
    return factory()
