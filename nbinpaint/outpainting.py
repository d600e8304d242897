"""Outpainting: extend the canvas past the image's edges and let an inpaint pipeline paint the new area.

The steps, for a 512x512 image extended by 128 px left and right (`plan` decides them, `run` does them):

1. **Geometry.** The canvas is 768x512 with the original at (128, 0). Sizes are rounded *up* to a multiple
   of 8 (the VAE works on 8x8 blocks) by growing the margins, never by cropping the original: the extra
   pixels of an axis go to its extended sides (split, the right/bottom one taking the odd pixel), or to the
   right/bottom side when the axis was not extended. Example: 500 px wide plus ``right=100`` is 600 (fine);
   333 px high, not extended, grows a 3 px bottom margin to 336.
2. **Start fill.** The new area starts from ``fill`` (`FILLS`): the edge pixels stretched outwards, the
   same blurred, OpenCV's Telea fill, or seeded noise. It matters for regular checkpoints and strength
   below 1; an inpaint checkpoint at strength 1 repaints the masked area from noise whatever it holds. The
   original's pixels are never touched, so the original is the canvas cropped to its box.
3. **Mask.** White over the new area plus an ``overlap`` band (default 32 px, fewer on a small image) into
   the original along each extended side, so the pipeline paints across the seam rather than up to it.
4. **Composite.** The pipeline's picture is kept in the new area; outside the band the original is pasted
   back byte for byte; across the band the two are blended with a linear ramp ``feather`` px wide
   (`Outpaint.weights`), so the seam fades instead of showing a step.

Pure numpy/PIL (OpenCV for the Telea fill); `run` takes the manager to run on (``nbinpaint.outpaint`` passes
the shared one), so everything here is testable without a kernel or a widget.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from nbinpaint.errors import InvalidRequestError
from nbinpaint.inputs import MIN_SIDE, to_rgb
from nbinpaint.parameters import MAX_SIDE
from nbinpaint.requests import InpaintRequest, InpaintResult, new_seed

__all__ = [
    "BLUR_RADIUS",
    "DEFAULT_FILL",
    "DEFAULT_OVERLAP",
    "FILLS",
    "MULTIPLE",
    "RECIPE_KEY",
    "SIDES",
    "TELEA_RADIUS",
    "Outpaint",
    "finish",
    "plan",
    "request_for",
    "run",
    "unavailable",
]

FILLS: dict[str, str] = {
    "edge": "the image's edge pixels stretched outwards (numpy.pad mode='edge')",
    "blur": "the edge pixels stretched outwards, then blurred (a Gaussian blur): soft colours, no streaks",
    "telea": "OpenCV's Telea fill (cv2.INPAINT_TELEA) continuing the image's edge into the new area",
    "noise": "uniform random pixels, seeded with the run's seed",
}
"""The start fills of the new area, each with one line on what it is."""
DEFAULT_FILL = "blur"
DEFAULT_OVERLAP = 32
"""Pixels the mask reaches into the original along each extended side (fewer when the image is smaller)."""
MULTIPLE = 8
"""The canvas's sides are multiples of this (the VAE's 8x8 blocks)."""
BLUR_RADIUS = 16
"""Gaussian blur radius of the ``"blur"`` fill, in pixels."""
TELEA_RADIUS = 3
"""Neighbourhood radius of the ``"telea"`` fill (cv2.inpaint's ``inpaintRadius``)."""
SIDES = ("left", "right", "top", "bottom")
RECIPE_KEY = "outpaint"
"""The recipe entry that records the outpainting (`Outpaint.as_recipe`)."""


def _whole(name: str, value: Any, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer():
            return int(value)
        raise InvalidRequestError(f"{name}={value!r} is invalid: it must be a whole number of pixels. {fix}")
    return int(value)


@dataclass(frozen=True)
class Outpaint:
    """How one image is extended: its size, the four margins (final, multiples of 8 reached), the start
    fill, and the overlap band and its feather. Checked when made, so a recipe read back is checked too."""

    original_size: tuple[int, int]
    left: int
    right: int
    top: int
    bottom: int
    fill: str = DEFAULT_FILL
    overlap: int = DEFAULT_OVERLAP
    feather: int = DEFAULT_OVERLAP

    def __post_init__(self) -> None:
        size = self.original_size
        if not (isinstance(size, (tuple, list)) and len(size) == 2):
            raise InvalidRequestError(f"original_size={size!r} is invalid: it must be (width, height) in pixels.")
        width, height = (_whole("original_size", side, "Pass (width, height).") for side in size)
        object.__setattr__(self, "original_size", (width, height))
        if min(width, height) < MIN_SIDE:
            raise InvalidRequestError(
                f"the image is {width}x{height}: outpainting needs at least {MIN_SIDE}x{MIN_SIDE} pixels to continue."
            )
        for side in SIDES:
            value = _whole(side, getattr(self, side), "Pass the pixels to add on that side, e.g. 128.")
            if value < 0:
                raise InvalidRequestError(
                    f"{side}={value} is negative: outpainting only adds pixels. Pass {side}=0 (or a positive "
                    "number of pixels to add); to cut the image, crop it first with image.crop(...)."
                )
            object.__setattr__(self, side, value)
        if not any(getattr(self, side) for side in SIDES):
            raise InvalidRequestError(
                "nothing to extend: all four margins are 0. Pass left=, right=, top= or bottom= (pixels to add), "
                "size=(width, height) or aspect=16/9."
            )
        canvas = self.size
        if max(canvas) > MAX_SIDE:
            raise InvalidRequestError(
                f"the extended canvas would be {canvas[0]}x{canvas[1]}, above the {MAX_SIDE} px limit: "
                "add fewer pixels."
            )
        if canvas[0] % MULTIPLE or canvas[1] % MULTIPLE:
            raise InvalidRequestError(
                f"the canvas {canvas[0]}x{canvas[1]} is not a multiple of {MULTIPLE}: make the plan with "
                "nbinpaint.outpainting.plan(...), which grows the margins to get there."
            )
        if self.fill not in FILLS:
            raise InvalidRequestError(f"fill={self.fill!r} is not a start fill: use one of {', '.join(FILLS)}.")
        overlap = _whole("overlap", self.overlap, f"Use e.g. {DEFAULT_OVERLAP}.")
        room = self.most_overlap()
        if overlap < 0 or overlap > room:
            raise InvalidRequestError(
                f"overlap={overlap} does not fit the {width}x{height} image: the band into the original along the "
                f"extended sides would {'be negative' if overlap < 0 else 'cover all of it'}. "
                f"Use 0 to {room} (the default is {min(DEFAULT_OVERLAP, room)})."
            )
        feather = _whole("feather", self.feather, f"Use at most the overlap, {overlap}.")
        if not 0 <= feather <= overlap:
            raise InvalidRequestError(
                f"feather={feather} does not fit the {overlap} px overlap band: the blend happens inside the band. "
                f"Use 0 (a hard seam at the band's inner edge) to {overlap} (a ramp across the whole band)."
            )
        object.__setattr__(self, "overlap", overlap)
        object.__setattr__(self, "feather", feather)

    # -- geometry ------------------------------------------------------------------------------------------

    @property
    def size(self) -> tuple[int, int]:
        """The canvas's (width, height)."""
        width, height = self.original_size
        return width + self.left + self.right, height + self.top + self.bottom

    @property
    def box(self) -> tuple[int, int, int, int]:
        """Where the original lies on the canvas, as PIL's (left, upper, right, lower)."""
        width, height = self.original_size
        return self.left, self.top, self.left + width, self.top + height

    def most_overlap(self) -> int:
        """The widest band that leaves some of the original as it is: along an axis extended on both sides
        the two bands share the image's side."""
        width, height = self.original_size
        rooms = []
        if self.left or self.right:
            rooms.append((width - 1) // (bool(self.left) + bool(self.right)))
        if self.top or self.bottom:
            rooms.append((height - 1) // (bool(self.top) + bool(self.bottom)))
        return min(rooms) if rooms else 0

    def new_area(self) -> np.ndarray:
        """(H, W) booleans: True on the pixels the canvas adds."""
        width, height = self.size
        new = np.ones((height, width), bool)
        left, top, right, bottom = self.box
        new[top:bottom, left:right] = False
        return new

    def mask(self) -> Image.Image:
        """The inpainting mask ("L", white = repaint): the new area and the overlap band into the original."""
        width, height = self.size
        left, top, right, bottom = self.box
        band = [self.overlap if getattr(self, side) else 0 for side in SIDES]
        keep = np.zeros((height, width), bool)
        keep[top + band[2] : bottom - band[3], left + band[0] : right - band[1]] = True
        return Image.fromarray(np.where(keep, 0, 255).astype(np.uint8), "L")

    def weights(self) -> np.ndarray:
        """(H, W) float64: how much of the pipeline's picture the composite takes at each pixel.

        1 on the new area; 0 in the original beyond the band (those pixels stay byte for byte); across the
        band a ramp ``clip((overlap - d) / feather, 0, 1)`` of the distance ``d`` from the original's edge, the
        largest of the extended sides' ramps at a corner. Example, overlap 32, feather 32: d = 0 gives 1,
        d = 16 gives 0.5, d = 31 gives 1/32, d >= 32 gives 0.
        """
        width, height = self.original_size
        x, y = np.arange(width), np.arange(height)

        def ramp(distance: np.ndarray) -> np.ndarray:
            return np.clip((self.overlap - distance) / max(self.feather, 1), 0.0, 1.0)

        inner = np.zeros((height, width))
        if self.left:
            inner = np.maximum(inner, ramp(x)[None, :])
        if self.right:
            inner = np.maximum(inner, ramp(width - 1 - x)[None, :])
        if self.top:
            inner = np.maximum(inner, ramp(y)[:, None])
        if self.bottom:
            inner = np.maximum(inner, ramp(height - 1 - y)[:, None])
        weight = np.ones(self.size[::-1])
        left, top, right, bottom = self.box
        weight[top:bottom, left:right] = inner
        return weight

    # -- pictures ------------------------------------------------------------------------------------------

    def canvas(self, image: Any, seed: int | None = None) -> Image.Image:
        """The start picture: ``image`` at its place on the canvas, the new area from the start fill.

        ``seed`` seeds the ``"noise"`` fill (the run's seed, so a recipe repeats it).
        """
        original = to_rgb(image)
        if original.size != self.original_size:
            raise InvalidRequestError(
                f"the image is {original.size[0]}x{original.size[1]} but this outpainting was planned for "
                f"{self.original_size[0]}x{self.original_size[1]}: plan it for this image."
            )
        pixels = np.asarray(original)
        pad = ((self.top, self.bottom), (self.left, self.right), (0, 0))
        if self.fill == "edge":
            start = Image.fromarray(np.pad(pixels, pad, mode="edge"))
        elif self.fill == "blur":
            start = Image.fromarray(np.pad(pixels, pad, mode="edge")).filter(ImageFilter.GaussianBlur(BLUR_RADIUS))
        elif self.fill == "telea":
            import cv2

            hole = self.new_area().astype(np.uint8) * 255
            start = Image.fromarray(cv2.inpaint(np.pad(pixels, pad), hole, TELEA_RADIUS, cv2.INPAINT_TELEA))
        else:  # noise
            if seed is None:
                raise InvalidRequestError("the noise fill needs a seed: pass seed=<number>.")
            width, height = self.size
            start = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))
        start.paste(original, self.box[:2])
        return start

    def original(self, canvas: Image.Image) -> Image.Image:
        """The original image, cut from a canvas (the start fill never touches it)."""
        return canvas.crop(self.box)

    def composite(self, canvas: Image.Image, generated: Image.Image) -> Image.Image:
        """The pipeline's picture in the new area, the original beyond the band, feathered across it."""
        if generated.size != self.size or canvas.size != self.size:
            raise InvalidRequestError(
                f"expected pictures of the canvas's size {self.size[0]}x{self.size[1]}, got {canvas.size[0]}x"
                f"{canvas.size[1]} and {generated.size[0]}x{generated.size[1]}."
            )
        weight = self.weights()[..., None]
        blended = np.rint(weight * np.asarray(generated.convert("RGB")) + (1.0 - weight) * np.asarray(canvas))
        return Image.fromarray(blended.astype(np.uint8), "RGB")

    # -- recipes -------------------------------------------------------------------------------------------

    def as_recipe(self) -> dict[str, Any]:
        """The recipe entry (plain JSON): what `from_recipe` reads back."""
        entry = dataclasses.asdict(self)
        entry["original_size"] = list(self.original_size)
        return entry

    @classmethod
    def from_recipe(cls, entry: Any) -> Outpaint:
        """The outpainting a recipe's ``outpaint`` entry records, checked as a new plan is."""
        fields = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(entry, Mapping) or set(entry) != set(fields):
            shown = sorted(map(str, entry)) if isinstance(entry, Mapping) else type(entry).__name__
            raise InvalidRequestError(
                f"the outpaint entry must have exactly the keys {', '.join(fields)}; got {shown}."
            )
        size = entry["original_size"]
        if not isinstance(size, (list, tuple)) or len(size) != 2:
            raise InvalidRequestError(f"original_size={size!r} is invalid: it must be [width, height].")
        if not isinstance(entry["fill"], str):
            raise InvalidRequestError(f"fill={entry['fill']!r} is not a start fill: use one of {', '.join(FILLS)}.")
        for name in fields[1:]:
            if name != "fill" and (isinstance(entry[name], bool) or not isinstance(entry[name], int)):
                raise InvalidRequestError(f"{name}={entry[name]!r} is invalid: it must be a whole number of pixels.")
        return cls(**{**entry, "original_size": tuple(size)})


def _aspect(aspect: Any) -> float:
    """An aspect ratio (width / height) from 1.5, "3:2", "3/2" or (3, 2)."""
    value: Any = aspect
    try:
        if isinstance(aspect, str):
            for separator in (":", "/", "x"):
                if separator in aspect:
                    width, height = aspect.split(separator)
                    value = float(width) / float(height)
                    break
            else:
                value = float(aspect)
        elif isinstance(aspect, (tuple, list)) and len(aspect) == 2:
            value = float(aspect[0]) / float(aspect[1])
        value = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise InvalidRequestError(
            f"aspect={aspect!r} is not an aspect ratio: pass width/height as a number (1.7778), text ('16:9') "
            "or a pair ((16, 9))."
        )
    return value


def _split(extra: int, first: int, second: int) -> tuple[int, int]:
    """Grow an axis's margins by ``extra`` px: shared by its extended sides (the second takes the odd pixel),
    all on the second side when neither is extended."""
    if first and second:
        return first + extra // 2, second + extra - extra // 2
    if first:
        return first + extra, second
    return first, second + extra


def plan(
    image_size: tuple[int, int],
    left: int = 0,
    right: int = 0,
    top: int = 0,
    bottom: int = 0,
    *,
    size: tuple[int, int] | None = None,
    aspect: Any = None,
    fill: str = DEFAULT_FILL,
    overlap: int | None = None,
    feather: int | None = None,
) -> Outpaint:
    """The `Outpaint` for an image of ``image_size``: by margins, to a ``size`` or to an ``aspect`` ratio.

    ``size=(width, height)`` and ``aspect`` centre the original (the odd pixel to the right/bottom);
    ``aspect`` extends the shorter way only. Whatever is asked, the canvas is then grown to multiples of 8
    (see the module's step 1). ``overlap=None`` is 32 px, or the most the image leaves room for; ``feather``
    defaults to the overlap (a ramp across the whole band).
    """
    width, height = (_whole("image_size", side, "Pass (width, height).") for side in image_size)
    margins = [left, right, top, bottom]
    asked = [name for name, value in (("size", size), ("aspect", aspect)) if value is not None]
    if len(asked) > 1 or (asked and any(margins)):
        given = [f"{side}=" for side, value in zip(SIDES, margins, strict=True) if value] + [f"{a}=" for a in asked]
        raise InvalidRequestError(
            f"pass one way to extend, not {' and '.join(given)}: margins (left=, right=, top=, bottom=), "
            "size=(width, height), or aspect=16/9."
        )
    if size is not None:
        if not isinstance(size, (tuple, list)) or len(size) != 2:
            raise InvalidRequestError(f"size={size!r} is invalid: pass (width, height) in pixels, e.g. (768, 512).")
        target = [_whole("size", side, "Pass (width, height) in pixels.") for side in size]
        if target[0] < width or target[1] < height:
            raise InvalidRequestError(
                f"size={tuple(target)} is smaller than the image ({width}x{height}): outpainting never crops. Use a "
                f"size of at least {width}x{height}, or crop the image first with image.crop(...)."
            )
        grow_x, grow_y = target[0] - width, target[1] - height
        margins = [grow_x // 2, grow_x - grow_x // 2, grow_y // 2, grow_y - grow_y // 2]
    elif aspect is not None:
        ratio = _aspect(aspect)
        grow_x = max(round(height * ratio) - width, 0)
        grow_y = max(round(width / ratio) - height, 0) if not grow_x else 0
        if not grow_x and not grow_y:
            raise InvalidRequestError(
                f"nothing to extend: the {width}x{height} image already has the aspect ratio {aspect!r}. Pass a "
                "wider or taller aspect, or margins (left=, right=, top=, bottom=)."
            )
        margins = [grow_x // 2, grow_x - grow_x // 2, grow_y // 2, grow_y - grow_y // 2]
    else:
        margins = [
            _whole(side, value, "Pass the pixels to add, e.g. 128.") for side, value in zip(SIDES, margins, strict=True)
        ]
    if any(margins) and min(margins) >= 0:
        new_width, new_height = width + margins[0] + margins[1], height + margins[2] + margins[3]
        margins[0], margins[1] = _split(-new_width % MULTIPLE, margins[0], margins[1])
        margins[2], margins[3] = _split(-new_height % MULTIPLE, margins[2], margins[3])
    if overlap is None:  # the default, narrowed to what the image leaves room for (bad margins are refused here)
        overlap = min(
            DEFAULT_OVERLAP, Outpaint((width, height), *margins, fill=fill, overlap=0, feather=0).most_overlap()
        )
    if feather is None and isinstance(overlap, numbers.Integral):
        feather = overlap
    return Outpaint((width, height), *margins, fill=fill, overlap=overlap, feather=feather)


def unavailable(task: str, accepted: frozenset[str] | None, pipeline: str) -> str | None:
    """Why ``pipeline`` (for ``task``, taking ``accepted``; None: not known yet) cannot outpaint, or None."""
    if task != "inpaint":
        return (
            f"outpainting repaints a masked border, so it needs an inpainting pipeline; task {task!r} has no "
            "mask: use task='inpaint'."
        )
    if accepted is not None and not {"image", "mask_image"} <= accepted:
        return f"{pipeline} takes no image and mask_image, so it cannot paint a masked border"
    return None


def request_for(
    image: Any,
    outpaint: Outpaint,
    prompt: str = "",
    **params: Any,
) -> InpaintRequest:
    """The inpaint request that paints ``outpaint``'s new area of ``image``: the start canvas and the mask,
    the seed drawn now (the noise fill and the run share it), and with ``controlnet=`` the inpaint
    ControlNet's condition made from that canvas and mask (``controlnet=True`` picks the SD 1.5 one)."""
    task = params.get("task", "inpaint")
    reason = unavailable(task, None, "")
    if reason:
        raise InvalidRequestError(reason)
    if params.get("output_type", "pil") != "pil":
        raise InvalidRequestError("outpainting composites pixels: leave output_type as 'pil'.")
    if "mask" in params or "mask_image" in params:
        raise InvalidRequestError("outpainting makes its own mask (the new area and the overlap band): drop mask=.")
    seed = params.pop("seed", None)
    seed = new_seed() if seed is None else seed
    controlnet = params.pop("controlnet", None)
    request = InpaintRequest.from_kwargs(
        image=outpaint.canvas(image, seed=_noise_seed(seed)), mask=outpaint.mask(), prompt=prompt, seed=seed, **params
    )
    if controlnet:
        from nbinpaint.control import DEFAULT_CONTROLNET, controlnet_request

        scale = request.controlnet_conditioning_scale
        request = controlnet_request(
            request, DEFAULT_CONTROLNET if controlnet is True else controlnet, 1.0 if scale is None else scale
        )
    return request


def _noise_seed(seed: Any) -> int | None:
    """The noise fill's seed: the run's, when it is a plain whole number (the request checks it otherwise)."""
    return int(seed) if isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and seed >= 0 else None


def finish(result: InpaintResult, outpaint: Outpaint) -> InpaintResult:
    """``result`` (a run of `request_for`'s request) with each image composited over its canvas."""
    canvas = result.request.image
    if not isinstance(canvas, Image.Image) or canvas.size != outpaint.size:
        raise InvalidRequestError(
            "this result was not made on the outpainting's canvas: run nbinpaint.outpainting.request_for(...)'s "
            "request."
        )
    images = [outpaint.composite(canvas, image) for image in result.images]
    return dataclasses.replace(result, images=images)


def run(
    manager: Any,
    image: Any,
    left: int = 0,
    right: int = 0,
    top: int = 0,
    bottom: int = 0,
    *,
    size: tuple[int, int] | None = None,
    aspect: Any = None,
    fill: str = DEFAULT_FILL,
    overlap: int | None = None,
    feather: int | None = None,
    prompt: str = "",
    run_options: Mapping[str, Any] | None = None,
    **params: Any,
) -> InpaintResult:
    """Outpaint ``image`` on ``manager`` (`nbinpaint.contract.Manager`): plan, one ``manager.run``, composite.

    ``params`` are `InpaintRequest` fields (``model=``, ``steps=``, ``seed=``, ``controlnet=``...);
    ``run_options`` are ``manager.run``'s callbacks (``on_step=``, ``should_stop=``...). The result's
    recipe records the outpainting under ``"outpaint"``.
    """
    picture = to_rgb(image)
    outpaint = plan(
        picture.size, left, right, top, bottom, size=size, aspect=aspect, fill=fill, overlap=overlap, feather=feather
    )
    request = request_for(picture, outpaint, prompt, **params)
    result = manager.run(request, recipe_extra={RECIPE_KEY: outpaint.as_recipe()}, **dict(run_options or {}))
    return finish(result, outpaint)
