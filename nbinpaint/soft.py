"""Soft (differential) inpainting and the masked-content start: what the run does under the mask.

**Soft inpainting.** A grey mask is a per-pixel strength, as in A1111's soft inpainting and diffusers'
differential diffusion (``examples/community/pipeline_stable_diffusion_xl_differential_img2img.py``): there
``masks = map > i / n`` and, before step ``i`` of ``n``, ``latents = original_with_noise[i] * mask +
latents * (1 - mask)``. Here, with ``m`` the mask in [0, 1] (white = repaint) and so ``map = 1 - m``, a pixel
of grey ``m`` is held to the image's latents, noised to the step's timestep, for the first ``(1 - m) * n``
steps and is free after: black (0) is held throughout, white (1) is free from the start, 128 from halfway.
The blend runs at the end of each step through ``callback_on_step_end`` (`LatentBlend.after_step`, chained
with the run's progress, preview and cancel callbacks in `nbinpaint.runner`). It needs the noise and the
image latents the pipeline drew, so for the length of a run `LatentBlend` wraps the pipeline's
``prepare_latents`` and keeps them. The pipeline itself gets a binary mask of every pixel that may change
(``m > 0``): an inpaint checkpoint's (9-channel) conditioning, and for a regular checkpoint the mask of its
own per-step blend, which then agrees with ours. The result is composited with the same grey mask
(diffusers' ``apply_overlay``), so black pixels keep the input's pixels exactly.

With a binary mask the blend repeats what a regular checkpoint's pipeline already does (same noise, same
image latents, same timesteps), so its pixels equal plain inpainting with ``preserve_unmasked=True``; an
inpaint checkpoint does no such blend of its own, so there soft inpainting also holds the unmasked latents
to the image, which changes what the UNet sees around the mask (the unmasked pixels stay exact).

**Masked-content start** (A1111's "Masked content"): before the pipeline runs, the masked pixels are
replaced by a fill blurred in from around the mask (``"fill"``) or OpenCV's Telea fill (``"telea"``), or the
starting latents under the mask by random latents (``"latent_noise"``, noised to the first timestep like the
image's). Only a strength below 1 keeps any of the start, so it matters most for regular checkpoints.

Supported: pipelines that take ``strength`` and ``callback_on_step_end`` and draw their latents in
``prepare_latents(..., return_noise=True)``: SD 1.5 and SDXL inpainting, regular checkpoints through the
inpaint pipeline, the inpaint ControlNet. Kandinsky 2.2's inpaint pipeline takes no strength and blends its
own latents inside its loop with noise it never hands out; there the panel greys both controls out with
that reason and ``soft=True`` is refused.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from nbinpaint.errors import InvalidRequestError
from nbinpaint.notices import notice
from nbinpaint.parameters import row
from nbinpaint.requests import InpaintRequest, accepted_parameters

__all__ = ["GREY_TOLERANCE", "LatentBlend", "masked_start", "resolve", "soft_mask"]

GREY_TOLERANCE = 8
"""Levels this close to black or white do not switch soft inpainting on by themselves (``soft=None``): a JPEG
mask's compression noise is not a painted gradient."""


def soft_mask(request: InpaintRequest) -> Image.Image:
    """The grey mask a soft run blends with: the request's mask, feathered by ``blur_factor`` when set."""
    if not request.blur_factor:
        return request.mask
    from diffusers.image_processor import VaeImageProcessor

    return VaeImageProcessor.blur(request.mask, blur_factor=request.blur_factor)


def _needs(field: str, pipeline: Any) -> str | None:
    """Why ``pipeline`` cannot do ``field`` (the table's ``requires``), or None."""
    p = row(field)
    missing = [name for name in p.requires if name not in accepted_parameters(pipeline)]
    if not missing:
        return None
    return f"{type(pipeline).__name__} does not take {', '.join(missing)}, which {p.words} needs: {p.requires_why}"


def is_grey(mask: Image.Image) -> bool:
    """Whether ``mask`` holds grey levels (beyond `GREY_TOLERANCE` of black and white): soft's "on by itself"."""
    import numpy as np

    levels = np.asarray(mask)
    return bool(((levels >= GREY_TOLERANCE) & (levels <= 255 - GREY_TOLERANCE)).any())


def resolve(request: InpaintRequest, pipeline: Any) -> InpaintRequest:
    """The request as this pipeline runs it: ``soft`` decided (None: on for a grey mask where the pipeline
    can), the mask thresholded when not soft, and a soft or masked-content setting the pipeline cannot do
    refused with the reason."""
    if request.task != "inpaint" or request.mask is None:
        return request
    grey = is_grey(request.mask)
    soft = request.soft
    why = _needs("soft", pipeline)
    if soft is None:
        soft = grey and why is None and request.padding_mask_crop is None
    if soft and why is not None:
        raise InvalidRequestError(f"soft=True: {why}. Use soft=False, or an SD or SDXL checkpoint.")
    if request.masked_content != "original":
        why = _needs("masked_content", pipeline)
        if why is not None:
            raise InvalidRequestError(
                f"masked_content={request.masked_content!r}: {why}. Use masked_content='original' or another model."
            )
        if request.strength is None or request.strength >= 1:
            notice(
                f"masked_content={request.masked_content!r} changes nothing at strength 1 (the start is pure "
                "noise): lower strength, e.g. 0.75, to start from it."
            )
    mask = request.mask if soft else request.mask.point(lambda v: 255 if v >= 128 else 0)
    return request.replace(soft=soft, mask=mask)


def masked_start(image, mask, how):
    """``image`` with the pixels under ``mask`` (>= 128) replaced by a start for the denoising: ``"fill"``
    blurs the colours around the mask into it, coarse to fine (A1111's "fill"); ``"telea"`` is OpenCV's
    fast-marching fill (cv2.INPAINT_TELEA, radius 3). Pixels outside the mask are unchanged."""
    import numpy as np
    from PIL import Image

    rgb = np.asarray(image.convert("RGB"))
    hole = np.asarray(mask.convert("L")) >= 128
    if not hole.any() or hole.all():
        return image.convert("RGB")
    if how == "telea":
        import cv2

        filled = cv2.inpaint(np.ascontiguousarray(rgb), hole.astype(np.uint8) * 255, 3, cv2.INPAINT_TELEA)
    else:  # "fill": normalised Gaussian blurs of the kept pixels, each finer one where it reaches
        from scipy.ndimage import gaussian_filter

        keep = (~hole).astype(np.float64)
        colours = rgb.astype(np.float64) * keep[..., None]
        filled = np.broadcast_to(colours.sum(axis=(0, 1)) / keep.sum(), rgb.shape).copy()
        for sigma in (64, 16, 4, 1):
            weight = gaussian_filter(keep, sigma)
            blurred = np.stack([gaussian_filter(colours[..., c], sigma) for c in range(3)], axis=-1)
            reached = weight > 1e-3
            filled[reached] = blurred[reached] / weight[reached, None]
        filled = np.clip(np.rint(filled), 0, 255).astype(np.uint8)
    out = rgb.copy()
    out[hole] = filled[hole]
    return Image.fromarray(out, "RGB")


class LatentBlend:
    """Soft inpainting and the latent-noise start for one run of an SD / SDXL inpaint pipeline.

    ``soft_mask`` (PIL "L", white = repaint, grey = partly) turns on the per-step blend; ``noise_mask`` (PIL
    "L", binary) replaces the starting latents under it by random latents. Use it around the call and pass
    its step callback: ``with LatentBlend(pipe, seed, soft_mask=m) as blend: pipe(...,
    callback_on_step_end=blend.after_step)``. Needs torch and numpy only (Show code copies this class).
    """

    def __init__(self, pipeline, seed, soft_mask=None, noise_mask=None):
        self.pipeline, self.seed = pipeline, int(seed)
        self.soft_mask, self.noise_mask = soft_mask, noise_mask
        self.noise = self.image_latents = self._soft_map = None
        self._had_own = False

    def __enter__(self):
        import inspect

        pipeline = self.pipeline
        original = pipeline.prepare_latents
        signature = inspect.signature(original)

        def prepare_latents(*args, **kwargs):
            outputs = original(*args, **kwargs)
            if not isinstance(outputs, tuple) or len(outputs) < 2:
                raise TypeError(f"{type(pipeline).__name__}.prepare_latents returned no noise: no soft blend here.")
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return self._started(outputs, bound.arguments)

        self._had_own = "prepare_latents" in vars(pipeline)
        self._original = original
        pipeline.prepare_latents = prepare_latents
        return self

    def __exit__(self, *exc_info):
        if self._had_own:
            self.pipeline.prepare_latents = self._original
        else:
            del self.pipeline.prepare_latents

    def _map(self, mask, latents):
        """``mask`` as a (1, 1, h, w) tensor in [0, 1] on the latent grid, sampled as the pipeline samples its
        own mask (nearest)."""
        import numpy as np
        import torch

        pixels = torch.from_numpy(np.asarray(mask.convert("L"), dtype=np.float32) / 255.0)[None, None]
        return torch.nn.functional.interpolate(pixels, size=tuple(latents.shape[-2:])).to(latents.device)

    def _started(self, outputs, arguments):
        """Keep the noise and image latents of ``prepare_latents``; start from random latents under
        ``noise_mask``."""
        import torch

        latents, noise = outputs[0], outputs[1]
        if len(outputs) > 2:  # a regular (4-channel) checkpoint: the pipeline's own image latents
            image_latents = outputs[2]
        else:  # an inpaint checkpoint: encode the image the pipeline got, with a generator of our own
            image = arguments["image"].to(device=arguments["device"], dtype=arguments["dtype"])
            generator = torch.Generator("cpu").manual_seed(self.seed)
            image_latents = self.pipeline._encode_vae_image(image=image, generator=generator)
            image_latents = image_latents.repeat(latents.shape[0] // image_latents.shape[0], 1, 1, 1)
        self.noise, self.image_latents = noise, image_latents.to(latents.dtype)
        if self.noise_mask is not None and not arguments["is_strength_max"]:
            generator = torch.Generator("cpu").manual_seed(self.seed ^ 0x5EED)
            random = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
            start = self.pipeline.scheduler.add_noise(random, noise, arguments["timestep"])
            latents = torch.where(self._map(self.noise_mask, latents) >= 0.5, start, latents)
        return (latents, *outputs[1:])

    def after_step(self, pipe, step, timestep, tensors):
        """``callback_on_step_end``: hold each pixel of grey m to the image, noised to the next step's
        timestep, while (1 - m) > (step + 1) / n; free after."""
        import torch

        n = pipe.num_timesteps
        if self.soft_mask is None or step + 1 >= n:
            return tensors
        latents = tensors["latents"]
        if self._soft_map is None:  # the grey mask on the latent grid, once per run
            self._soft_map = self._map(self.soft_mask, latents)
        held = (1.0 - self._soft_map) > (step + 1) / n
        following = pipe.scheduler.timesteps[-n:][step + 1]
        noised = pipe.scheduler.add_noise(self.image_latents, self.noise, torch.tensor([following]))
        tensors["latents"] = torch.where(held, noised.to(latents.dtype), latents)
        return tensors
