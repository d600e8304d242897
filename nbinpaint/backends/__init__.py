"""Non-diffusion inpainting backends, addressed by model ids like ``classical/telea`` in the model picker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nbinpaint.errors import ModelLoadError


def _classical(method: str) -> Callable[[], Any]:
    def build() -> Any:
        from nbinpaint.backends.classical import ClassicalInpaintPipeline

        return ClassicalInpaintPipeline(method)

    return build


BACKENDS: dict[str, Callable[[], Any]] = {
    "classical/telea": _classical("telea"),
    "classical/ns": _classical("ns"),
    "classical/biharmonic": _classical("biharmonic"),
}


def is_backend_id(model_id: str) -> bool:
    """Whether ``model_id`` names a backend here rather than a Hugging Face repo."""
    return model_id in BACKENDS or model_id.startswith("classical/")


def get_backend(model_id: str) -> Any:
    """A new backend object for ``model_id``; unknown ids get the list of known ones."""
    if model_id not in BACKENDS:
        raise ModelLoadError(f"unknown backend {model_id!r}: choose one of {', '.join(BACKENDS)}.")
    return BACKENDS[model_id]()
