"""What a run gives back: `InpaintResult` for one run, `ChainResult` for a chain of them.

A result carries the exact validated request, the seed, timings and its recipe, and saves itself as a PNG
with that recipe inside (`InpaintResult.save`), so ``nbinpaint.load_recipe`` and ``nbinpaint.rerun`` read
it back. ``result.image`` stays a plain PIL image.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from nbinpaint.errors import InvalidRequestError
from nbinpaint.pnginfo import save_png

__all__ = ["ChainResult", "Handoff", "InpaintResult", "PreviewCallback", "RunOptions", "StepCallback"]

StepCallback = Callable[[int, int, Mapping[str, Any]], None]
PreviewCallback = Callable[[int, int, Image.Image], None]


@dataclass(frozen=True)
class RunOptions:
    """How a run reports and stops, held together once: the keywords of every ``run`` (see
    `nbinpaint.contract.Manager.run`), passed down the road as one value."""

    on_step: StepCallback | None = None
    should_stop: Callable[[], bool] | None = None
    on_preview: PreviewCallback | None = None
    preview_every: int | None = None
    recipe_extra: Mapping[str, Any] | None = None

    def as_kwargs(self, **changes: Any) -> dict[str, Any]:
        """The options as ``run`` keywords, with ``changes`` (``recipe_extra=`` for a chain's stage)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__} | changes


NO_OPTIONS = RunOptions()
"""No callbacks, no recipe additions."""


@dataclass
class InpaintResult:
    """Images from one run, with the exact validated request, the seed used, timings and the recipe."""

    images: list[Any]
    request: Any  # the validated `nbinpaint.requests.InpaintRequest`
    seed: int
    timings: dict[str, float]
    recipe: dict[str, Any]

    @property
    def image(self) -> Any:
        """The first image (the common case: one image per request)."""
        return self.images[0]

    def save(self, path: str | os.PathLike[str], index: int = 0) -> Path:
        """Write image ``index`` as a PNG with this result's recipe inside; returns the path.

        ``nbinpaint.load_recipe(path)`` gives the recipe back. Saving ``result.image`` with PIL instead
        drops the recipe. The inputs are not written: `nbinpaint.recipes.save_result` keeps them beside it.
        """
        return _save(self.images, self.recipe, path, index)

    def _repr_png_(self) -> bytes | None:
        if not isinstance(self.image, Image.Image):
            return None
        buffer = io.BytesIO()
        self.image.save(buffer, format="PNG")
        return buffer.getvalue()


def _save(images: list[Any], recipe: dict[str, Any], path: str | os.PathLike[str], index: int) -> Path:
    if not -len(images) <= index < len(images):
        raise InvalidRequestError(f"index={index} is out of range: this result has {len(images)} image(s).")
    image = images[index]
    if not isinstance(image, Image.Image):
        raise InvalidRequestError(
            "this result holds latents (output_type='latent'), not an image: run with output_type='pil' to save it."
        )
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InvalidRequestError(
            f"{path.name!r} is not a .png name: the recipe lives in a PNG text chunk (JPEG and WebP drop it). "
            f"Use e.g. {path.with_suffix('.png').name!r}."
        )
    if len(images) > 1:
        recipe = {**recipe, "image_index": index % len(images)}
    save_png(image, recipe, path)
    return path


@dataclass(frozen=True)
class Handoff:
    """How one stage's output reaches the next: ``"latent"`` or ``"pixels"``, and the reason in words."""

    mode: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"mode": self.mode, "reason": self.reason}


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

    def save(self, path: str | os.PathLike[str], index: int = 0) -> Path:
        """Write the final image as a PNG with the final stage's recipe (which names the whole chain)."""
        return self.final.save(path, index)

    def _repr_png_(self) -> bytes | None:
        return self.final._repr_png_()
