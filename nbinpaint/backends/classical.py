"""Classical inpainting (OpenCV Telea and Navier-Stokes, scikit-image biharmonic) with a pipeline's call shape.

Where no diffusion weights can be had (a workshop behind a firewall, Binder, CI) these still give real fills,
and the classical result is the baseline worth showing beside a diffusion one. ``__call__`` takes the
parameters of a diffusers inpaint pipeline that make sense without a diffusion model, and no others: the
request layer reads that signature, so asking a classical backend for ``strength`` is refused with a clear
message instead of being silently ignored. Blur and preserve-unmasked are applied around any pipeline by
the request layer, so they work here too.

Every pixel outside the (binarised) mask comes back bit for bit as it went in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
from PIL import Image

from nbinpaint.errors import InvalidRequestError
from nbinpaint.notices import notice

Method = Literal["telea", "ns", "biharmonic"]

METHODS: dict[str, str] = {
    "telea": "OpenCV fast-marching fill (Telea 2004), cv2.INPAINT_TELEA",
    "ns": "OpenCV Navier-Stokes fill (Bertalmio et al. 2001), cv2.INPAINT_NS",
    "biharmonic": "scikit-image biharmonic fill, skimage.restoration.inpaint_biharmonic",
}
"""The fill methods, each with one line on what it is."""

CONTEXT_MARGIN = 16
"""Pixels of context kept around the mask's bounding box. Every method here looks only at pixels near the
hole (cv2 within ``radius``, biharmonic at the hole's edge), so filling that crop gives the same result as
filling the whole image, and biharmonic's sparse solve stays fast on large images."""


class ClassicalInpaintPipeline:
    """A non-diffusion filler that is called like an inpaint pipeline: ``pipe(image=..., mask_image=...)``.

    Parameters:
        method: ``"telea"``, ``"ns"`` or ``"biharmonic"`` (see `METHODS`).
        radius: neighbourhood radius in pixels for the OpenCV methods (``inpaintRadius``); unused by biharmonic.
    """

    _callback_tensor_inputs: tuple[str, ...] = ()  # no latents or embeddings to hand to a step callback

    def __init__(self, method: Method = "telea", radius: int = 3) -> None:
        from diffusers.configuration_utils import FrozenDict

        if method not in METHODS:
            raise InvalidRequestError(f"method must be one of {', '.join(METHODS)}; got {method!r}.")
        if int(radius) != radius or radius < 1:
            raise InvalidRequestError(f"radius must be a whole number of pixels >= 1; got {radius!r}.")
        self.method = method
        self.radius = int(radius)
        self.name = f"classical/{method}"
        # Like a pipeline's config: ``_name_or_path`` is what the model picker and recipes show.
        self.config = FrozenDict(
            _class_name=type(self).__name__, _name_or_path=self.name, method=method, radius=self.radius
        )
        self.components: dict[str, Any] = {}  # no weights: nothing to move, offload, share or count
        self._interrupt = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(method={self.method!r}, radius={self.radius})"

    @property
    def device(self) -> Any:
        """Always the CPU: OpenCV and scikit-image run there."""
        import torch

        return torch.device("cpu")

    @property
    def interrupt(self) -> bool:
        """Set ``pipe._interrupt = True`` from a step callback to stop, as with diffusers pipelines."""
        return self._interrupt

    # Pipeline methods that code written for diffusers calls on any pipeline; with no weights they do nothing.
    def to(self, *args: Any, **kwargs: Any) -> ClassicalInpaintPipeline:
        """No weights to move; returns ``self`` so ``pipe = pipe.to("cuda")`` still works."""
        return self

    def enable_model_cpu_offload(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to offload."""

    def enable_sequential_cpu_offload(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to offload."""

    def remove_all_hooks(self) -> None:
        """No hooks are ever installed."""

    def set_progress_bar_config(self, **kwargs: Any) -> None:
        """There is one step and no progress bar; progress is reported through ``callback_on_step_end``."""

    def __call__(
        self,
        prompt: str | list[str] | None = None,
        image: Any = None,
        mask_image: Any = None,
        negative_prompt: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_images_per_prompt: int = 1,
        generator: Any = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[..., Any] | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] | None = None,
    ) -> Any:
        """Fill the white part of ``mask_image`` from its surroundings.

        Parameters:
            prompt, negative_prompt: accepted for the common call shape and ignored (said once, as a notice).
            image: a PIL image or an (H, W, 3) array (uint8, or float in [0, 1]), or a list of them.
            mask_image: white = fill; binarised at 127 (or 0.5 for float arrays); one mask or one per image.
            height, width: resize the input first, as a pipeline does (image Lanczos, mask NEAREST); a
                missing one keeps the input's. Unlike a pipeline nothing is rounded to a multiple of 8.
            num_images_per_prompt: copies per input; the fill is deterministic, so they are identical.
            generator: accepted and unused, for the same reason.
            output_type: ``"pil"``, ``"np"`` (float32 (B, H, W, 3) in [0, 1]) or ``"pt"`` (B, 3, H, W).
            callback_on_step_end: called once as ``callback(pipe, 0, None, {})`` after the fill, like a
                one-step diffusers run, so progress bars complete and cancel-by-exception works.

        Returns ``ImagePipelineOutput(images=...)``, or ``(images,)`` with ``return_dict=False``.
        """
        from diffusers.pipelines.pipeline_utils import ImagePipelineOutput

        self._interrupt = False
        if callback_on_step_end_tensor_inputs:
            unknown = [n for n in callback_on_step_end_tensor_inputs if n not in self._callback_tensor_inputs]
            if unknown:
                raise InvalidRequestError(
                    f"{self.name} has no tensors to pass to a step callback (asked for {', '.join(unknown)}): "
                    "leave callback_on_step_end_tensor_inputs unset."
                )
        if output_type not in ("pil", "np", "pt"):
            raise InvalidRequestError(
                f"output_type={output_type!r} is not supported by {self.name} (there are no latents): "
                "use 'pil', 'np' or 'pt'."
            )
        if int(num_images_per_prompt) != num_images_per_prompt or num_images_per_prompt < 1:
            raise InvalidRequestError(
                f"num_images_per_prompt must be a whole number >= 1; got {num_images_per_prompt!r}."
            )
        if image is None or mask_image is None:
            raise InvalidRequestError(f"{self.name} needs both image= and mask_image=.")
        if _said(prompt) or _said(negative_prompt):
            notice(f"{self.name} ignores the prompt: a classical fill continues the surrounding pixels.")

        images = image if isinstance(image, list) else [image]
        masks = mask_image if isinstance(mask_image, list) else [mask_image] * len(images)
        if len(masks) != len(images):
            raise InvalidRequestError(
                f"got {len(images)} images but {len(masks)} masks: give one mask, or one per image."
            )
        prompts = len(prompt) if isinstance(prompt, list) else 1
        if len(images) == 1 and prompts > 1:  # a pipeline repeats one image for every prompt
            images, masks = images * prompts, masks * prompts
        filled = []
        for one_image, one_mask in zip(images, masks, strict=True):
            rgb, hole = prepare(one_image, one_mask, height, width)
            filled.append(fill(rgb, hole, self.method, self.radius))
        if callback_on_step_end is not None:
            callback_on_step_end(self, 0, None, {})
        batch = [array for array in filled for _ in range(num_images_per_prompt)]
        output: Any
        if output_type == "pil":
            output = [Image.fromarray(array, "RGB") for array in batch]  # new objects: editing one leaves the rest
        else:
            from diffusers.image_processor import VaeImageProcessor

            output = np.stack(batch).astype(np.float32) / 255.0
            if output_type == "pt":
                output = VaeImageProcessor.numpy_to_pt(output)
        return ImagePipelineOutput(images=output) if return_dict else (output,)


def _said(prompt: str | list[str] | None) -> bool:
    return any(p.strip() for p in ([prompt] if isinstance(prompt, str) else prompt or []))


def prepare(
    image: Any, mask: Any, height: int | None = None, width: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Image as uint8 (H, W, 3) and mask as a boolean hole of the same size, at ``height`` x ``width`` if given.

    The mask is resized with NEAREST and binarised after resizing, so a resize never invents grey edges.
    """
    picture = _to_pil(image, "image").convert("RGB")
    matte = _to_pil(mask, "mask_image").convert("L")
    size = (width or picture.width, height or picture.height)
    if picture.size != size:
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    if matte.size != size:
        matte = matte.resize(size, Image.Resampling.NEAREST)
    return np.array(picture), np.array(matte) > 127


def _to_pil(value: Any, what: str) -> Image.Image:
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, np.ndarray) and value.ndim in (2, 3):
        array = value[..., 0] if value.ndim == 3 and value.shape[-1] == 1 else value
        if array.dtype != np.uint8:  # floats in [0, 1], as diffusers' numpy images are
            array = np.clip(np.rint(array.astype(np.float64) * 255), 0, 255).astype(np.uint8)
        return Image.fromarray(array)
    raise InvalidRequestError(
        f"{what} must be a PIL image or an (H, W) / (H, W, 3) numpy array for a classical backend, "
        f"not {type(value).__name__}."
    )


def fill(rgb: np.ndarray, hole: np.ndarray, method: Method, radius: int = 3) -> np.ndarray:
    """Fill the ``hole`` pixels of a uint8 (H, W, 3) array; every other pixel is returned unchanged."""
    if method not in METHODS:
        raise InvalidRequestError(f"method must be one of {', '.join(METHODS)}; got {method!r}.")
    if not hole.any():
        return rgb.copy()
    if hole.all():
        raise InvalidRequestError("the mask covers the whole image: a classical fill needs some pixels to continue.")
    # 1. The mask's bounding box plus a margin. Example: a hole in rows 100..199 and columns 50..79 of a
    #    512x512 image, margin 16 -> rows 84..215, columns 34..95; at an edge the box stops at the edge.
    margin = max(CONTEXT_MARGIN, 2 * radius)
    rows, cols = np.nonzero(hole)
    top, bottom = max(int(rows.min()) - margin, 0), min(int(rows.max()) + margin + 1, rgb.shape[0])
    left, right = max(int(cols.min()) - margin, 0), min(int(cols.max()) + margin + 1, rgb.shape[1])
    crop, crop_hole = rgb[top:bottom, left:right], hole[top:bottom, left:right]
    # 2. Fill the crop.
    if method == "biharmonic":
        from skimage.restoration import inpaint_biharmonic

        patch = inpaint_biharmonic(crop, crop_hole, channel_axis=-1)  # float in [0, 1]
        patch = np.clip(np.rint(patch * 255), 0, 255).astype(np.uint8)
    else:
        import cv2

        flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
        patch = cv2.inpaint(np.ascontiguousarray(crop), crop_hole.astype(np.uint8) * 255, radius, flag)
    # 3. Paste back only the hole's pixels: outside the mask nothing changes, bit for bit.
    out = rgb.copy()
    out[top:bottom, left:right][crop_hole] = patch[crop_hole]
    return out
