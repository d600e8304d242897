"""Seam and colour repair: make a repainted area meet the rest of the picture, and measure the seam.

An inpainting result often shows its mask: the repainted area comes back a little off in colour (the VAE's
round trip, a model's own palette: diffusers#5808, #4782), and pasting the original back outside the mask
(`apply_overlay`) turns that shift into a visible edge. Three repairs, each applied to a finished image
given the original and the mask (white = repainted):

``"match"``
    Histogram matching at the seam: ``skimage.exposure.match_histograms`` maps the colours just inside the
    mask (a ``band`` of pixels along its edge) onto those just outside it, per RGB channel; that mapping, as
    a lookup table, recolours the whole masked area, blended in by the mask's grey level (a feathered mask
    feathers it). Pixels where the mask is black are the image's own, unchanged.
``"poisson"``
    Poisson blending with ``cv2.seamlessClone``: the repainted area keeps its gradients (its detail) and takes
    its level from the original along the mask's edge. Outside the mask the original's pixels come back, as
    with ``"overlay"``. The image's border is no edge: a mask touching it is blended up to it.
``"overlay"``
    The inpainting guide's ``VaeImageProcessor.apply_overlay``: the original pasted back wherever the mask is
    not white (the same as ``preserve_unmasked=True``).

`boundary_delta_e` measures what a repair should remove: the colour step across the mask's edge that the
original did not have, in CIE ΔE 2000 units (about 1: just noticeable; above 5: obvious).
The repairs run after the pipeline on the one run path (``seam_repair=`` in a request, see
`nbinpaint.runner`) or on any finished picture (`repair_seams`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from nbinpaint import inputs
from nbinpaint.errors import InvalidRequestError
from nbinpaint.parameters import did_you_mean, row
from nbinpaint.results import InpaintResult

__all__ = [
    "DEFAULT_BAND",
    "METHODS",
    "boundary_delta_e",
    "check_method",
    "match_colours",
    "poisson_blend",
    "repair",
    "repair_seams",
]

METHODS: tuple[str, ...] = row("seam_repair").choices
"""The repairs, by name: the ``seam_repair`` row's choices."""
DEFAULT_BAND = 8
"""Pixels on each side of the mask's edge that `repair` ("match") and `boundary_delta_e` compare."""


def check_method(method: Any) -> str:
    """``method`` if it is a repair's name; else the error names the closest one and lists them all."""
    if method not in METHODS:
        hint = did_you_mean(str(method), METHODS) if isinstance(method, str) else ""
        raise InvalidRequestError(
            f"seam_repair={method!r} is no seam repair{hint}: use one of {', '.join(map(repr, METHODS))}."
        )
    return method


def repair(image: Any, original: Any, mask: Any, method: str, *, band: int = DEFAULT_BAND) -> Image.Image:
    """``image`` (a result of inpainting ``original`` where ``mask`` is white) with its seam repaired.

    ``method`` is ``"match"``, ``"poisson"`` or ``"overlay"`` (see the module's docstring); ``band`` is the
    width in pixels of the strips along the edge that ``"match"`` learns its colour mapping from. The three
    pictures must have one size. Returns a new RGB image; a mask with no edge (all black, or all white for
    ``"match"``) leaves nothing to match: ``"match"`` returns the image as it is.
    """
    method = check_method(method)
    picture, before = inputs.to_rgb(image), inputs.to_rgb(original)
    weight = _mask_weight(mask, picture.size)
    if before.size != picture.size:
        raise InvalidRequestError(
            f"the original is {before.size[0]}x{before.size[1]} but the image is {picture.size[0]}x"
            f"{picture.size[1]}: pass the original the image was inpainted from (resize the result back to its "
            "size first, e.g. image.resize(original.size, Image.Resampling.LANCZOS))."
        )
    if isinstance(band, bool) or not isinstance(band, int) or band < 1:
        raise InvalidRequestError(f"band={band!r} is invalid: it must be a whole number of pixels >= 1, e.g. 8.")
    if method == "overlay":
        from diffusers.image_processor import VaeImageProcessor

        grey = Image.fromarray(np.rint(weight * 255).astype(np.uint8), "L")
        return VaeImageProcessor().apply_overlay(grey, before, picture)
    if method == "poisson":
        return Image.fromarray(poisson_blend(np.asarray(picture), np.asarray(before), weight > 0.5), "RGB")
    return Image.fromarray(match_colours(np.asarray(picture), weight, band), "RGB")


def _mask_weight(mask: Any, size: tuple[int, int]) -> np.ndarray:
    """The mask as weights in [0, 1] (height, width): a PIL mask keeps its grey levels (a feathered edge),
    anything else is read as `nbinpaint.inputs.mask_array` reads masks (0 or 1)."""
    if isinstance(mask, Image.Image):
        grey = np.asarray(mask.convert("L"), dtype=np.float64) / 255.0
    else:
        grey = inputs.mask_array(mask).astype(np.float64) / 255.0
    if grey.shape != (size[1], size[0]):
        raise InvalidRequestError(
            f"the mask is {grey.shape[1]}x{grey.shape[0]} but the image is {size[0]}x{size[1]}: pass the mask "
            "the image was inpainted with, at the image's size."
        )
    return grey


# The two functions below are self-contained (numpy as ``np`` and their own imports), because Show code writes
# them into its scripts as they are (`nbinpaint.codegen`): a script repairs exactly as nbinpaint does.


def match_colours(rgb: np.ndarray, weight: np.ndarray, band: int = 8) -> np.ndarray:
    """Seam repair "match": recolour the masked area so the colours just inside its edge match those just
    outside (nbinpaint.seams). ``rgb`` is (height, width, 3) uint8, ``weight`` the mask in [0, 1].

    skimage's match_histograms maps the strip ``band`` px inside the edge onto the strip ``band`` px outside
    it; that mapping, as a per-channel lookup table (values the strip lacks interpolated; beyond its range,
    shifted by the mapping's end offsets), recolours every masked pixel, blended in by ``weight``.
    """
    from scipy.ndimage import distance_transform_edt
    from skimage.exposure import match_histograms

    inside = weight > 0.5
    if inside.all() or not inside.any():  # no edge: nothing to match against
        return rgb.copy()
    inner = inside & (distance_transform_edt(inside) <= band)
    outer = ~inside & (distance_transform_edt(~inside) <= band)
    source = rgb[inner]
    matched = match_histograms(source, rgb[outer], channel_axis=-1)
    levels = np.arange(256, dtype=np.float64)
    corrected = np.empty(rgb.shape, np.float64)
    for channel in range(3):
        values, first = np.unique(source[:, channel], return_index=True)
        mapped = matched[first, channel].astype(np.float64)
        table = np.interp(levels, values, mapped)
        table = np.where(levels < values[0], levels + mapped[0] - values[0], table)
        table = np.where(levels > values[-1], levels + mapped[-1] - values[-1], table)
        corrected[..., channel] = table[rgb[..., channel]]
    blended = np.clip(np.rint(rgb + (corrected - rgb) * weight[..., None]), 0, 255).astype(np.uint8)
    return np.where(weight[..., None] > 0, blended, rgb)


def poisson_blend(rgb: np.ndarray, original: np.ndarray, inside: np.ndarray, pad: int = 8) -> np.ndarray:
    """Seam repair "poisson": cv2.seamlessClone of the masked area of ``rgb`` into ``original`` (uint8 RGB
    arrays; ``inside`` the boolean mask), exactly the original's pixels outside it (nbinpaint.seams).

    seamlessClone keeps the original on a mask's outermost pixels (they are the boundary it solves from) and
    refuses or clips a mask that touches the border; here the image's border is no edge: both pictures are
    padded by ``pad`` px of reflection, the mask continued into that margin. An empty mask gives the original.
    """
    import cv2

    if not inside.any():
        return original.copy()
    source = cv2.copyMakeBorder(np.ascontiguousarray(rgb), pad, pad, pad, pad, cv2.BORDER_REFLECT)
    target = cv2.copyMakeBorder(np.ascontiguousarray(original), pad, pad, pad, pad, cv2.BORDER_REFLECT)
    matte = np.pad(inside.astype(np.uint8) * 255, pad, mode="edge")  # the border is no edge: the mask goes on
    matte[[0, -1], :], matte[:, [0, -1]] = 0, 0  # ... but stops short of the margin's end, as seamlessClone needs
    x, y, width, height = cv2.boundingRect(matte)
    cloned = cv2.seamlessClone(source, target, matte, (x + width // 2, y + height // 2), cv2.NORMAL_CLONE)
    # seamlessClone also moves unmasked pixels of the mask's bounding box by a level or so: keep the original's
    return np.where(inside[..., None], cloned[pad:-pad, pad:-pad], original)


def boundary_delta_e(image: Any, original: Any, mask: Any, *, band: int = DEFAULT_BAND) -> float:
    """The mean colour step across the mask's edge that ``image`` adds to ``original``, in CIE ΔE 2000.

    Definition. For each pixel just inside the mask's edge (inside, with an outside pixel among its 8
    neighbours; the image's border is no edge), take the mean CIE Lab colour of the mask's pixels and the
    mean of the other pixels within a (2·band+1)² window around it: ``inside`` and ``outside``, in ``image``
    and likewise in ``original``. The original's own step there (``inside₀ - outside₀``: a cat's face
    against its fur) is not a seam, so it is taken away: the seam at that pixel is
    ``deltaE_ciede2000(inside - (inside₀ - outside₀), outside)``, and the result is its mean over the edge.

    So an untouched image (``image == original``) gives 0 (up to rounding), a colour shift of the masked
    area gives about that shift's ΔE, and a repair that makes the edge continuous again brings it back
    towards 0. A repainted area that is truly different near its edge counts too: keep ``band`` small (the
    default 8 px) so the measure stays about the seam. Masks are read as binary (white = inside); a mask with
    no edge (all black, all white) gives 0.0.
    """
    from scipy.ndimage import binary_erosion, uniform_filter
    from skimage.color import deltaE_ciede2000, rgb2lab

    picture, before = inputs.to_rgb(image), inputs.to_rgb(original)
    if before.size != picture.size:
        raise InvalidRequestError(
            f"the original is {before.size[0]}x{before.size[1]} but the image is {picture.size[0]}x"
            f"{picture.size[1]}: measure a result at its input's size."
        )
    inside = _mask_weight(mask, picture.size) > 0.5
    if isinstance(band, bool) or not isinstance(band, int) or band < 1:
        raise InvalidRequestError(f"band={band!r} is invalid: it must be a whole number of pixels >= 1, e.g. 8.")
    edge = inside & ~binary_erosion(inside, structure=np.ones((3, 3), bool), border_value=1)
    if not edge.any():
        return 0.0
    size = 2 * band + 1

    def window_mean(lab: np.ndarray, where: np.ndarray) -> np.ndarray:
        weight = uniform_filter(where.astype(np.float64), size, mode="constant")[edge]
        total = uniform_filter(lab * where[..., None], (size, size, 1), mode="constant")[edge]
        return total / weight[:, None]

    lab, lab0 = rgb2lab(np.asarray(picture)), rgb2lab(np.asarray(before))
    step0 = window_mean(lab0, inside) - window_mean(lab0, ~inside)
    seam = deltaE_ciede2000(window_mean(lab, inside) - step0, window_mean(lab, ~inside))
    return float(np.mean(seam))


def repair_seams(
    result_or_image: Any,
    original: Any = None,
    mask: Any = None,
    method: str = "match",
    *,
    band: int = DEFAULT_BAND,
) -> Any:
    """Repair the seam of an existing result: an `InpaintResult`, or any picture with its original and mask.

    An `InpaintResult` (``original`` and ``mask`` left out: its request holds them) comes back as a new
    result whose images are repaired and whose request and recipe say ``seam_repair=method``, exactly what
    running its request with ``seam_repair=method`` gives, so its recipe, `rerun` and Show code stay true.
    Any other picture comes back as a repaired PIL image (`repair`).
    """
    method = check_method(method)
    if not isinstance(result_or_image, InpaintResult):
        if original is None or mask is None:
            raise InvalidRequestError(
                "repair_seams needs the original and the mask for a plain picture: "
                "repair_seams(image, original, mask, method), or pass an InpaintResult alone."
            )
        return repair(result_or_image, original, mask, method, band=band)
    result = result_or_image
    request = result.request
    if original is not None or mask is not None:
        raise InvalidRequestError(
            "an InpaintResult carries its own original and mask (result.request): call "
            f"repair_seams(result, method={method!r}), or repair_seams(result.image, original, mask) for others."
        )
    if band != DEFAULT_BAND:
        raise InvalidRequestError(
            f"band={band} is not recorded in a recipe: repair a result with the default band ({DEFAULT_BAND}), "
            "or repair result.image with repair_seams(result.image, original, mask, band=...)."
        )
    if request.task != "inpaint" or request.output_type != "pil":
        raise InvalidRequestError(
            "seam repair works on an inpainting result's pixels: this result is "
            f"task={request.task!r}, output_type={request.output_type!r}. Repair an inpainting result "
            "(output_type='pil')."
        )
    if request.image is None or request.mask is None:  # a chain stage that started from latents
        raise InvalidRequestError(
            "this result started from another stage's latents, so it holds no original picture: repair "
            "result.image with repair_seams(result.image, original, mask, method)."
        )
    if request.seam_repair is not None:
        raise InvalidRequestError(
            f"this result already had seam_repair={request.seam_repair!r}, and a recipe records one repair: rerun "
            f"its request with the other, nbinpaint.manager.run(result.request.replace(seam_repair={method!r}))."
        )
    images = [repair(image, request.image, request.mask, method, band=band) for image in result.images]
    recipe = {**result.recipe, "parameters": {**result.recipe.get("parameters", {}), "seam_repair": method}}
    return InpaintResult(
        images=images,
        request=request.replace(seam_repair=method),
        seed=result.seed,
        timings=dict(result.timings),
        recipe=recipe,
    )
