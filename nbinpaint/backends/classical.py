"""Classical inpainting (OpenCV Telea and Navier-Stokes, scikit-image biharmonic) with a pipeline's call shape.

Where no diffusion weights can be had (a workshop behind a firewall, Binder, CI) these still give real fills,
and teachers want the classical baseline beside diffusion anyway. They take the same ``__call__`` parameters
as a diffusers inpaint pipeline, minus the ones they have no use for: the request layer reads the signature,
so asking a classical backend for ``strength`` gets a clear "not accepted" error rather than being ignored.
Blur and preserve-unmasked are applied around any pipeline by the request layer, so they work here too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from nbinpaint.notices import notice

# Margin around the mask's bounding box that the fill may look at: enough context for the smooth
# extrapolation, and it keeps biharmonic (a sparse solve over every masked pixel) fast on large images.
CONTEXT_MARGIN = 16


class ClassicalInpaintPipeline:
    """A non-diffusion filler that behaves like an inpaint pipeline: ``pipe(prompt, image, mask_image)``."""

    methods = ("telea", "ns", "biharmonic")

    def __init__(self, method: str = "telea", radius: int = 3) -> None:
        if method not in self.methods:
            raise ValueError(f"method must be one of {', '.join(self.methods)}; got {method!r}.")
        self.method = method
        self.radius = radius
        self.name = f"classical/{method}"
        self.config = {"_class_name": type(self).__name__, "method": method, "radius": radius}
        self.components: dict[str, Any] = {}
        self.device = "cpu"
        self.dtype = "n/a"
        self._interrupt = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(method={self.method!r}, radius={self.radius})"

    def to(self, *args: Any, **kwargs: Any) -> ClassicalInpaintPipeline:
        """No weights to move: kept so code written for pipelines works unchanged."""
        return self

    def __call__(
        self,
        prompt: str | list[str] | None = None,
        image: Image.Image | None = None,
        mask_image: Image.Image | None = None,
        negative_prompt: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_images_per_prompt: int = 1,
        generator: Any = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Any = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> Any:
        from diffusers.pipelines.pipeline_utils import ImagePipelineOutput

        if image is None or mask_image is None:
            raise ValueError(f"{self.name} needs image= and mask_image=.")
        if prompt or negative_prompt:
            notice(f"{self.name} is a classical filler: it ignores the prompt and fills from the surroundings.")
        rgb = np.array(image.convert("RGB"))
        mask = np.array(mask_image.convert("L"))
        if width is not None and height is not None and (width, height) != image.size:
            rgb = np.array(Image.fromarray(rgb).resize((width, height), Image.Resampling.LANCZOS))
            mask = np.array(Image.fromarray(mask).resize((width, height), Image.Resampling.NEAREST))
        filled = fill(rgb, mask > 127, self.method, self.radius)
        if callback_on_step_end is not None:
            callback_on_step_end(self, 0, 0, {})
        images = [Image.fromarray(filled)] * num_images_per_prompt
        if output_type == "np":
            images = [np.asarray(i, dtype=np.float32) / 255 for i in images]
        return ImagePipelineOutput(images=images) if return_dict else (images,)


def fill(rgb: np.ndarray, hole: np.ndarray, method: str, radius: int = 3) -> np.ndarray:
    """Fill the ``hole`` pixels of a uint8 RGB array; every other pixel is returned unchanged."""
    if not hole.any():
        return rgb.copy()
    # 1. Work on the mask's bounding box plus a margin: the fill only looks at nearby pixels anyway.
    rows, cols = np.nonzero(hole)
    top, left = max(rows.min() - CONTEXT_MARGIN, 0), max(cols.min() - CONTEXT_MARGIN, 0)
    bottom = min(rows.max() + CONTEXT_MARGIN + 1, rgb.shape[0])
    right = min(cols.max() + CONTEXT_MARGIN + 1, rgb.shape[1])
    crop, crop_hole = rgb[top:bottom, left:right], hole[top:bottom, left:right]
    # 2. Fill the crop.
    if method == "biharmonic":
        from skimage.restoration import inpaint_biharmonic

        patch = inpaint_biharmonic(crop, crop_hole, channel_axis=-1)
        patch = np.clip(np.rint(patch * 255), 0, 255).astype(np.uint8)
    else:
        import cv2

        flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
        patch = cv2.inpaint(np.ascontiguousarray(crop), crop_hole.astype(np.uint8) * 255, radius, flag)
    # 3. Paste back only the hole's pixels: outside the mask nothing changes, bit for bit.
    out = rgb.copy()
    region = out[top:bottom, left:right]
    region[crop_hole] = patch[crop_hole]
    return out
