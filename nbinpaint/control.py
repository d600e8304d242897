"""ControlNet inpainting: the inpaint condition image, a preview of it, and a request that uses it.

``lllyasviel/control_v11p_sd15_inpaint`` was trained on the base image with the pixels to repaint set to -1
(the other pixels in [0, 1]), so the ControlNet knows both what to keep and where to paint. nbinpaint builds
that tensor from the request's own image and mask, so the user never prepares it by hand.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from nbinpaint.errors import InvalidRequestError
from nbinpaint.requests import ImageLike, InpaintRequest, as_mask, as_rgb

__all__ = ["DEFAULT_CONTROLNET", "MASKED_VALUE", "condition_preview", "controlnet_request", "make_inpaint_condition"]

DEFAULT_CONTROLNET = "lllyasviel/control_v11p_sd15_inpaint"
MASKED_VALUE = -1.0
"""What the inpaint ControlNet reads as "repaint this pixel" (its training convention)."""


def make_inpaint_condition(image: ImageLike, mask: ImageLike) -> torch.Tensor:
    """The inpaint ControlNet's condition: ``image`` as float32 in [0, 1], -1 where ``mask`` is white.

    Returns a ``(1, 3, H, W)`` tensor, the layout diffusers' ControlNet pipelines take as ``control_image``.
    White means repaint, as everywhere in nbinpaint (``mask > 0.5`` after scaling to [0, 1], the guide's
    threshold). Raises `InvalidRequestError` when the sizes differ, rather than the guide's ``assert``
    (which compared only the heights, ``shape[0:1]``).
    """
    rgb, binary = as_rgb(image), as_mask(mask)
    if rgb.size != binary.size:
        raise InvalidRequestError(
            f"the mask is {binary.size[0]}x{binary.size[1]} but the image is {rgb.size[0]}x{rgb.size[1]}: "
            "resize the mask to the image's size, e.g. mask.resize(image.size, PIL.Image.NEAREST)."
        )
    pixels = np.asarray(rgb, dtype=np.float32) / 255.0
    repaint = np.asarray(binary, dtype=np.float32) / 255.0 > 0.5
    pixels[repaint] = MASKED_VALUE
    return torch.from_numpy(pixels.transpose(2, 0, 1).copy()).unsqueeze(0)


def condition_preview(condition: torch.Tensor, masked_color: tuple[int, int, int] = (0, 0, 0)) -> Image.Image:
    """The condition tensor as a picture: image pixels as they are, masked pixels in ``masked_color``.

    The guide's ``PIL.Image.fromarray(np.uint8(control_image[0][0]))`` shows only the red channel, cast
    without scaling (so nearly black, and -1 wraps to 255); this shows what the ControlNet actually sees.
    """
    from diffusers.image_processor import VaeImageProcessor

    if condition.ndim == 3:
        condition = condition.unsqueeze(0)
    if condition.ndim != 4 or condition.shape[1] != 3:
        raise InvalidRequestError(
            f"expected a (1, 3, H, W) condition tensor from make_inpaint_condition, got shape {tuple(condition.shape)}."
        )
    array = VaeImageProcessor.pt_to_numpy(condition[:1].detach().float().cpu())[0]
    masked = (array < 0).any(axis=-1)
    pixels = np.clip(array, 0.0, 1.0)
    pixels[masked] = np.asarray(masked_color, dtype=np.float32) / 255.0
    return VaeImageProcessor.numpy_to_pil(pixels[None])[0]


def controlnet_request(
    request: InpaintRequest,
    controlnet: str = DEFAULT_CONTROLNET,
    conditioning_scale: float = 1.0,
) -> InpaintRequest:
    """A copy of ``request`` that `PipelineManager.run` runs with the inpaint ControlNet.

    Fills ``controlnet`` (the manager loads it once and builds the checkpoint's ControlNet inpaint pipeline
    through ``AutoPipelineForInpainting``), ``control_image`` (made from the request's image and mask) and
    ``controlnet_conditioning_scale``.
    """
    if request.task != "inpaint":
        raise InvalidRequestError(
            f"the inpaint ControlNet needs task='inpaint' (got {request.task!r}): diffusers has no ControlNet "
            "inpaint pipeline for other tasks."
        )
    if request.image is None or request.mask is None:
        raise InvalidRequestError("the inpaint ControlNet's condition is made from image and mask: pass both.")
    if conditioning_scale < 0:
        raise InvalidRequestError(
            f"conditioning_scale={conditioning_scale!r} is invalid: it must be >= 0. Use 1.0 for full control, "
            "0.5 for a looser hold."
        )
    return request.replace(
        controlnet=controlnet,
        control_image=make_inpaint_condition(request.image, request.mask),
        controlnet_conditioning_scale=float(conditioning_scale),
    )
