"""Inpainting masks as plain numpy/PIL: rasterise, edit, undo, feather and display them (read by `nbinpaint.inputs`).

Everything here is pure logic over a ``uint8`` array of shape ``(height, width)`` holding only 0 and 255
(white = repaint, the guide's convention), at the base image's full resolution. The mask canvas widget
(`nbinpaint.widgets.canvas`) only binds `MaskEditor` to mouse events and draws what it returns; tests
drive the same editor without a kernel or a browser.

Coordinates are continuous: ``(0, 0)`` is the top-left corner of pixel ``(0, 0)`` and pixel ``(col, row)``
covers ``[col, col + 1) x [row, row + 1)``. A shape covers the pixels whose centres fall inside it; a brush
of diameter ``d`` centred at ``c`` covers the ``d`` rows (or columns) starting at ``floor(c - d/2 + 1/2)``,
so a horizontal stroke of size 20 at ``y = 50`` paints rows 40 to 59 exactly.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageColor, ImageDraw

from nbinpaint.errors import MaskError
from nbinpaint.inputs import MaskLike, mask_array

__all__ = [
    "DEFAULT_HISTORY_DEPTH",
    "DEFAULT_MAX_DISPLAY",
    "TOOLS",
    "Box",
    "MaskEditor",
    "MaskError",
    "MaskHistory",
    "MaskLike",
    "Stroke",
    "blur_margin",
    "display_box",
    "display_size",
    "display_to_image",
    "feather",
    "fill_ellipse",
    "fill_polygon",
    "fill_rectangle",
    "fit_mask",
    "grow",
    "grow_box",
    "image_to_display",
    "invert",
    "magic_wand",
    "overlay_box",
    "rasterise_stroke",
    "render_image",
    "render_overlay",
    "shrink",
    "union_box",
]

#: A pixel rectangle ``(x0, y0, x1, y1)``, half-open: columns ``x0..x1-1``, rows ``y0..y1-1``.
Box = tuple[int, int, int, int]
Point = tuple[float, float]

#: The editing tools, in toolbar order. Brush and eraser paint and erase; the shapes and the wand add to
#: the mask, or remove from it when the editor is told to subtract.
TOOLS: tuple[str, ...] = ("brush", "eraser", "rectangle", "ellipse", "lasso", "wand")
DEFAULT_HISTORY_DEPTH = 100
DEFAULT_MAX_DISPLAY = 768
ON, OFF = 255, 0


def fit_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a 0/255 mask to ``size`` (width, height) with nearest neighbour, so it stays 0/255."""
    if (mask.shape[1], mask.shape[0]) == tuple(size):
        return mask.copy()
    return np.asarray(Image.fromarray(mask).resize(tuple(size), Image.NEAREST)).copy()


# --- boxes and coordinates ---------------------------------------------------------------------------------


def _clip(box: Box, width: int, height: int) -> Box | None:
    x0, y0, x1, y1 = max(box[0], 0), max(box[1], 0), min(box[2], width), min(box[3], height)
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def union_box(a: Box | None, b: Box | None) -> Box | None:
    """The smallest box holding both (None stands for nothing)."""
    if a is None:
        return b
    if b is None:
        return a
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def grow_box(box: Box, margin: int) -> Box:
    """``box`` widened by ``margin`` pixels on every side (not clipped)."""
    return (box[0] - margin, box[1] - margin, box[2] + margin, box[3] + margin)


def display_size(image_size: tuple[int, int], max_size: int = DEFAULT_MAX_DISPLAY) -> tuple[int, int]:
    """The on-screen ``(width, height)`` of an image: scaled down to fit ``max_size`` on its long side.

    Example: a 1024x768 image with ``max_size=512`` is shown at 512x384; images that fit are shown 1:1.
    """
    w, h = image_size
    scale = min(1.0, max_size / max(w, h))
    return max(1, round(w * scale)), max(1, round(h * scale))


def display_to_image(x: float, y: float, image_size: tuple[int, int], shown: tuple[int, int]) -> tuple[float, float]:
    """Map a continuous point on the displayed canvas to the image (full resolution)."""
    return x * image_size[0] / shown[0], y * image_size[1] / shown[1]


def image_to_display(x: float, y: float, image_size: tuple[int, int], shown: tuple[int, int]) -> tuple[float, float]:
    """Map a continuous image point to the displayed canvas (inverse of `display_to_image`)."""
    return x * shown[0] / image_size[0], y * shown[1] / image_size[1]


def display_box(box: Box, image_size: tuple[int, int], shown: tuple[int, int]) -> Box | None:
    """The displayed pixels that cover the image pixels in ``box``, clipped to the canvas."""
    x0, y0 = image_to_display(box[0], box[1], image_size, shown)
    x1, y1 = image_to_display(box[2], box[3], image_size, shown)
    return _clip((math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1)), *shown)


def overlay_box(box: Box, image_size: tuple[int, int], shown: tuple[int, int], blur_factor: int = 0) -> Box | None:
    """The displayed overlay pixels a change to the image pixels in ``box`` can affect (feather included)."""
    return display_box(grow_box(box, blur_margin(blur_factor)), image_size, shown)


# --- rasterising: brush strokes, shapes, lasso, wand --------------------------------------------------------


def _brush_start(c: float, size: int) -> int:
    # First row (or column) a brush of diameter ``size`` centred at ``c`` covers; see the module docstring.
    return math.floor(c - size / 2 + 0.5)


class Stroke:
    """A brush or eraser stroke under way: each new point is rasterised at once, at full resolution.

    Segments are PIL ``ImageDraw.line`` with a round cap (a disc) at every point, drawn on a private
    surface; `flush` copies what changed into ``mask`` (lazily, so a fast drag costs one copy per redraw,
    not one per mouse event).
    """

    def __init__(self, mask: np.ndarray, size: int, value: int = ON) -> None:
        if size < 1:
            raise MaskError(f"Brush size must be at least 1 pixel, got {size}.")
        self.mask = mask
        self.size = int(size)
        self.value = int(value)
        self.points: list[Point] = []
        self.bounds: Box | None = None  # everything this stroke touched, clipped to the image
        self._pending: Box | None = None  # touched but not yet copied into ``mask``
        self._surface = Image.fromarray(mask)
        self._draw = ImageDraw.Draw(self._surface)

    def add(self, x: float, y: float) -> Box | None:
        """Extend the stroke to ``(x, y)``; return the image box it touched (None if outside the image)."""
        if self.points and self.points[-1] == (x, y):
            return None
        size, half = self.size, (self.size - 1) // 2
        sx, sy = _brush_start(x, size), _brush_start(y, size)
        box: Box = (sx, sy, sx + size, sy + size)
        if size <= 2:
            # Thin strokes as unit-step dabs: PIL's 1-px lines restart their stepping where the image
            # clips them, so they would shift by a pixel near the border; dabs do not.
            start = self.points[-1] if self.points else (x, y)
            steps = max(1, math.ceil(max(abs(x - start[0]), abs(y - start[1]))))
            t = np.linspace(0.0, 1.0, steps + 1)
            cols = np.floor(start[0] + (x - start[0]) * t - size / 2 + 0.5).astype(int)
            rows = np.floor(start[1] + (y - start[1]) * t - size / 2 + 0.5).astype(int)
            dabs = [
                (c + dx, r + dy)
                for c, r in zip(cols.tolist(), rows.tolist(), strict=True)
                for dx in range(size)
                for dy in range(size)
            ]
            self._draw.point(dabs, fill=self.value)
            box = (int(cols.min()), int(rows.min()), int(cols.max()) + size, int(rows.max()) + size)
        else:
            self._draw.ellipse((sx, sy, sx + size - 1, sy + size - 1), fill=self.value)
            if self.points:
                px, py = self.points[-1]
                psx, psy = _brush_start(px, size), _brush_start(py, size)
                self._draw.line((psx + half, psy + half, sx + half, sy + half), fill=self.value, width=size)
                box = union_box(box, (psx, psy, psx + size, psy + size))
        self.points.append((x, y))
        clipped = _clip(grow_box(box, 1), self._surface.width, self._surface.height)
        self._pending = union_box(self._pending, clipped)
        self.bounds = union_box(self.bounds, clipped)
        return clipped

    def flush(self) -> Box | None:
        """Copy what the stroke drew since the last flush into ``mask``; return that box."""
        box, self._pending = self._pending, None
        if box is not None:
            x0, y0, x1, y1 = box
            self.mask[y0:y1, x0:x1] = np.asarray(self._surface.crop(box))
        return box


def rasterise_stroke(mask: np.ndarray, points: Iterable[Point], size: int, value: int = ON) -> Box | None:
    """Draw a whole stroke through ``points`` into ``mask`` in place; return the box it touched."""
    stroke = Stroke(mask, size, value)
    for x, y in points:
        stroke.add(x, y)
    stroke.flush()
    return stroke.bounds


def _centre_range(a: float, b: float, limit: int) -> tuple[int, int]:
    # Pixels whose centres lie in [min, max): i + 0.5 >= lo and i + 0.5 < hi.
    lo, hi = min(a, b), max(a, b)
    return max(math.ceil(lo - 0.5), 0), min(math.ceil(hi - 0.5), limit)


def fill_rectangle(mask: np.ndarray, a: Point, b: Point, value: int = ON) -> Box | None:
    """Set the pixels whose centres lie in the rectangle with corners ``a`` and ``b``; return the box."""
    x0, x1 = _centre_range(a[0], b[0], mask.shape[1])
    y0, y1 = _centre_range(a[1], b[1], mask.shape[0])
    if x0 >= x1 or y0 >= y1:
        return None
    mask[y0:y1, x0:x1] = value
    return (x0, y0, x1, y1)


def fill_ellipse(mask: np.ndarray, a: Point, b: Point, value: int = ON) -> Box | None:
    """Set the pixels whose centres lie in the ellipse inscribed in the rectangle ``a``-``b``."""
    x0, x1 = _centre_range(a[0], b[0], mask.shape[1])
    y0, y1 = _centre_range(a[1], b[1], mask.shape[0])
    if x0 >= x1 or y0 >= y1:
        return None
    cx, cy = (a[0] + b[0]) / 2, (a[1] + b[1]) / 2
    rx, ry = abs(b[0] - a[0]) / 2, abs(b[1] - a[1]) / 2
    cols = (np.arange(x0, x1) + 0.5 - cx) / rx
    rows = (np.arange(y0, y1) + 0.5 - cy) / ry
    inside = rows[:, None] ** 2 + cols[None, :] ** 2 <= 1.0
    if not inside.any():
        return None
    mask[y0:y1, x0:x1][inside] = value
    return (x0, y0, x1, y1)


def fill_polygon(mask: np.ndarray, points: Sequence[Point], value: int = ON) -> Box | None:
    """Fill the closed polygon through ``points`` (a lasso): pixels whose centres lie inside it."""
    from skimage.draw import polygon

    if len(points) < 3:
        return None
    xy = np.asarray(points, dtype=np.float64) - 0.5  # skimage samples integer points = our pixel centres
    rows, cols = polygon(xy[:, 1], xy[:, 0], shape=mask.shape)
    if rows.size == 0:
        return None
    mask[rows, cols] = value
    return (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)


def magic_wand(pixels: np.ndarray, seed: Point, tolerance: int) -> np.ndarray:
    """The 4-connected region around ``seed`` whose colour is within ``tolerance`` of the seed's.

    Colour distance is the largest per-channel difference (0..255), so ``tolerance=0`` selects exactly the
    seed's colour. Flooding is `skimage.segmentation.flood` over that distance map. Returns a bool array.
    """
    from skimage.segmentation import flood

    h, w = pixels.shape[:2]
    col, row = math.floor(seed[0]), math.floor(seed[1])
    if not (0 <= col < w and 0 <= row < h):
        return np.zeros((h, w), bool)
    colour = pixels.reshape(h, w, -1).astype(np.int16)
    distance = np.abs(colour - colour[row, col]).max(axis=-1)
    return flood(distance, (row, col), tolerance=int(tolerance), connectivity=1)


# --- whole-mask operations ----------------------------------------------------------------------------------


def invert(mask: np.ndarray) -> np.ndarray:
    """White becomes black and black white."""
    return (ON - mask).astype(np.uint8)


def grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Dilate by a disc of radius ``pixels`` (same result as ``skimage.morphology.dilation(mask, disk(n))``).

    Computed as a Euclidean distance transform, whose cost does not grow with the radius.
    """
    from scipy.ndimage import distance_transform_edt

    if pixels <= 0 or not mask.any():
        return mask.copy()
    distance = distance_transform_edt(mask == OFF)  # to the nearest white pixel
    return np.where(distance <= pixels, ON, OFF).astype(np.uint8)


def shrink(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Erode by a disc of radius ``pixels``; the image border does not erode (painted-to-the-edge stays)."""
    return invert(grow(invert(mask), pixels)) if pixels > 0 and not mask.all() else mask.copy()


def feather(mask: np.ndarray, blur_factor: int) -> np.ndarray:
    """The mask as the pipeline will see it after ``mask_processor.blur(mask, blur_factor)``.

    Uses diffusers' own ``VaeImageProcessor.blur`` so the preview cannot drift from what is fed in.
    """
    if blur_factor <= 0:
        return mask
    from diffusers.image_processor import VaeImageProcessor

    return np.asarray(VaeImageProcessor.blur(Image.fromarray(mask), int(blur_factor)))


def blur_margin(blur_factor: int) -> int:
    # PIL's Gaussian blur (3 box passes) reaches at most about 3 sigma: a crop this much larger blurs
    # exactly like the whole mask inside the crop (checked in tests).
    return 3 * int(blur_factor) + 4 if blur_factor > 0 else 0


# --- display: image layer and the semi-transparent mask overlay ---------------------------------------------


def render_image(image: Image.Image, shown: tuple[int, int]) -> np.ndarray:
    """The base image at display size, as RGBA (ipycanvas sends RGBA losslessly, RGB as lossy JPEG)."""
    rgba = image.convert("RGBA")
    if rgba.size != tuple(shown):
        rgba = rgba.resize(tuple(shown), Image.LANCZOS)
    return np.asarray(rgba)


def render_overlay(
    mask: np.ndarray,
    shown: tuple[int, int],
    *,
    color: str = "#ff3366",
    opacity: float = 0.5,
    blur_factor: int = 0,
    box: Box | None = None,
    region: tuple[float, float, float, float] | None = None,
) -> tuple[np.ndarray, tuple[int, int]]:
    """The overlay for the displayed region ``box`` (all of it by default): ``(rgba, (x, y))``.

    ``region`` is the image rectangle ``(x0, y0, x1, y1)`` the whole display shows: the whole image by
    default, the visible part when the canvas is zoomed (`nbinpaint.viewport.Viewport.visible`).

    1. Take the image pixels under ``box``, plus a margin when feathering (``blur_factor > 0``).
    2. Feather them with `feather`, exactly as the pipeline will.
    3. Average them down to display pixels (PIL ``BOX`` resampling with a sub-pixel source box, so a
       region renders exactly like the same region of the whole overlay).
    4. Colour: RGB = ``color``, alpha = ``opacity`` x mask.
    """
    img_w, img_h = mask.shape[1], mask.shape[0]
    dx0, dy0, dx1, dy1 = box if box is not None else (0, 0, shown[0], shown[1])
    rx0, ry0, rx1, ry1 = region if region is not None else (0.0, 0.0, float(img_w), float(img_h))
    sx, sy = (rx1 - rx0) / shown[0], (ry1 - ry0) / shown[1]
    fx0, fy0 = rx0 + dx0 * sx, ry0 + dy0 * sy  # step 1: source region, in image pixels
    fx1, fy1 = rx0 + dx1 * sx, ry0 + dy1 * sy
    margin = blur_margin(blur_factor)
    crop = _clip(
        (math.floor(fx0) - margin, math.floor(fy0) - margin, math.ceil(fx1) + margin, math.ceil(fy1) + margin),
        img_w,
        img_h,
    )
    if crop is None:
        raise ValueError(f"overlay box {box} lies outside the {shown[0]}x{shown[1]} display")
    cx0, cy0, cx1, cy1 = crop
    region = feather(mask[cy0:cy1, cx0:cx1], blur_factor)  # step 2
    size = (dx1 - dx0, dy1 - dy0)
    source = (fx0 - cx0, fy0 - cy0, fx1 - cx0, fy1 - cy0)
    if (sx, sy) == (1.0, 1.0) and float(fx0).is_integer() and float(fy0).is_integer():
        alpha = np.asarray(region)[round(source[1]) : round(source[3]), round(source[0]) : round(source[2])]
    else:  # step 3
        alpha = np.asarray(Image.fromarray(np.ascontiguousarray(region)).resize(size, Image.BOX, box=source))
    rgba = np.empty((size[1], size[0], 4), np.uint8)  # step 4
    rgba[..., :3] = ImageColor.getrgb(color)[:3]
    rgba[..., 3] = np.round(alpha.astype(np.float32) * float(opacity)).astype(np.uint8)
    return rgba, (dx0, dy0)


# --- undo / redo --------------------------------------------------------------------------------------------


@dataclass
class _Change:
    box: Box
    before: np.ndarray  # packed bits when binary (a 1024x1024 full-frame change costs 128 KiB), raw otherwise
    after: np.ndarray
    packed: bool


class MaskHistory:
    """Bounded undo/redo of mask changes, each stored as the changed rectangle before and after.

    ``depth`` changes are kept (oldest dropped first); a new change clears the redo list.
    """

    def __init__(self, depth: int = DEFAULT_HISTORY_DEPTH) -> None:
        if depth < 1:
            raise ValueError(f"history depth must be at least 1, got {depth}")
        self.depth = depth
        self._undo: deque[_Change] = deque(maxlen=depth)
        self._redo: list[_Change] = []

    def __len__(self) -> int:
        return len(self._undo)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def clear(self) -> None:
        self._undo.clear()
        self._redo.clear()

    def record(self, before: np.ndarray, after: np.ndarray, box: Box | None = None) -> bool:
        """Remember the change ``before`` -> ``after`` (only inside ``box`` when given); False if none."""
        if before.shape != after.shape:
            raise ValueError(f"mask shape changed from {before.shape} to {after.shape}: clear the history")
        x0, y0, x1, y1 = box if box is not None else (0, 0, before.shape[1], before.shape[0])
        diff = before[y0:y1, x0:x1] != after[y0:y1, x0:x1]
        rows, cols = np.flatnonzero(diff.any(axis=1)), np.flatnonzero(diff.any(axis=0))
        if rows.size == 0:
            return False
        tight: Box = (x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]) + 1, y0 + int(rows[-1]) + 1)
        b, a = _patch(before, tight), _patch(after, tight)
        packed = _is_binary(b) and _is_binary(a)
        if packed:
            b, a = np.packbits(b == ON), np.packbits(a == ON)
        self._undo.append(_Change(tight, b, a, packed))
        self._redo.clear()
        return True

    def undo(self, mask: np.ndarray) -> np.ndarray | None:
        """The mask before the last change (a new array), or None when there is nothing to undo."""
        if not self._undo:
            return None
        change = self._undo.pop()
        self._redo.append(change)
        return _apply(mask, change, change.before)

    def redo(self, mask: np.ndarray) -> np.ndarray | None:
        """The mask after the last undone change, or None when there is nothing to redo."""
        if not self._redo:
            return None
        change = self._redo.pop()
        self._undo.append(change)
        return _apply(mask, change, change.after)


def _patch(mask: np.ndarray, box: Box) -> np.ndarray:
    return mask[box[1] : box[3], box[0] : box[2]].copy()


def _is_binary(patch: np.ndarray) -> bool:
    return bool(np.all((patch == ON) | (patch == OFF)))


def _apply(mask: np.ndarray, change: _Change, data: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = change.box
    shape = (y1 - y0, x1 - x0)
    if change.packed:
        data = np.where(np.unpackbits(data, count=shape[0] * shape[1]).reshape(shape), ON, OFF)
    out = mask.copy()
    out[y0:y1, x0:x1] = data
    return out


# --- the editor: image + mask + history + the gesture under way ---------------------------------------------


@dataclass
class _Gesture:
    tool: str
    value: int
    points: list[Point] = field(default_factory=list)
    stroke: Stroke | None = None  # brush and eraser: draws into its own copy of the mask


class MaskEditor:
    """An image, its authoritative full-resolution mask, undo history, and the gesture in progress.

    Plain Python: the mask canvas widget forwards pointer events here in image coordinates and redraws
    the boxes that come back. Every completed change (a whole stroke, a shape, a load, an invert...) is
    one undo step and increments `version`.

    Committed masks are never written to again (each change installs a new array, a stroke draws into a
    private copy), so another thread, e.g. a generation running in the background, may read
    `committed_mask` at any time without a lock and without seeing half a stroke.
    """

    def __init__(
        self, image: Image.Image, mask: MaskLike | None = None, *, history_depth: int = DEFAULT_HISTORY_DEPTH
    ) -> None:
        self.history = MaskHistory(history_depth)
        self.version = 0
        self._gesture: _Gesture | None = None
        self._set_base(image)
        self._mask = np.zeros((self.size[1], self.size[0]), np.uint8)
        if mask is not None:
            self._mask = mask_array(mask, self.size)

    def _set_base(self, image: Image.Image) -> None:
        if not isinstance(image, Image.Image):
            try:
                image = Image.fromarray(np.asarray(image))
            except (TypeError, ValueError) as exc:
                raise MaskError(
                    f"Cannot show a {type(image).__name__} as the base image: pass a PIL image or an "
                    "(height, width, 3) uint8 array."
                ) from exc
        self.image = image.convert("RGB")
        self._pixels = np.asarray(self.image)

    @property
    def size(self) -> tuple[int, int]:
        """The image's ``(width, height)``: the mask has the same."""
        return self.image.size

    @property
    def committed_mask(self) -> np.ndarray:
        """The mask after the last completed change (a stroke under way is not in it). Do not write to it."""
        return self._mask

    @property
    def mask(self) -> np.ndarray:
        """The mask as drawn so far, including the stroke under way: what the overlay shows."""
        gesture = self._gesture
        if gesture is not None and gesture.stroke is not None:
            gesture.stroke.flush()
            return gesture.stroke.mask
        return self._mask

    @property
    def drawing(self) -> _Gesture | None:
        """The gesture under way (tool, points), for previews; None between gestures."""
        return self._gesture

    # whole-mask edits: each is one undo step
    def _commit(self, new: np.ndarray, box: Box | None = None) -> bool:
        changed = self.history.record(self._mask, new, box)
        if changed:
            self._mask = new
            self.version += 1
        return changed

    def set_mask(self, value: MaskLike) -> bool:
        """Replace the mask (read by `nbinpaint.inputs.mask_array`); a wrong size raises `MaskError`, keeps the old."""
        new = mask_array(value, self.size)
        self.release()
        return self._commit(new)

    def clear(self) -> bool:
        """Erase the whole mask (one undo step)."""
        self.release()
        return self._commit(np.zeros_like(self._mask))

    def invert(self) -> bool:
        """Swap repaint and keep (one undo step)."""
        self.release()
        return self._commit(invert(self._mask))

    def grow(self, pixels: int) -> bool:
        """Move the mask's edge outwards by ``pixels`` (one undo step)."""
        self.release()
        return self._commit(grow(self._mask, pixels))

    def shrink(self, pixels: int) -> bool:
        """Move the mask's edge inwards by ``pixels`` (one undo step)."""
        self.release()
        return self._commit(shrink(self._mask, pixels))

    def undo(self) -> bool:
        """Restore the mask before the last change; False when there is nothing to undo."""
        self.release()
        restored = self.history.undo(self._mask)
        if restored is None:
            return False
        self._mask = restored
        self.version += 1
        return True

    def redo(self) -> bool:
        """Re-apply the last undone change; False when there is nothing to redo."""
        self.release()
        restored = self.history.redo(self._mask)
        if restored is None:
            return False
        self._mask = restored
        self.version += 1
        return True

    def set_image(self, image: Image.Image) -> str:
        """Swap the base image. The mask is kept if the size is unchanged, rescaled (nearest) if the aspect
        ratio matches within 1%, reset otherwise; returns ``"kept"``, ``"rescaled"`` or ``"reset"``.
        The history is cleared unless the mask was kept.
        """
        self.release()
        old_w, old_h = self.size
        self._set_base(image)
        w, h = self.size
        if (w, h) == (old_w, old_h):
            return "kept"
        if abs(w / h - old_w / old_h) <= 0.01 * (w / h):
            self._mask, outcome = fit_mask(self._mask, (w, h)), "rescaled"
        else:
            self._mask, outcome = np.zeros((h, w), np.uint8), "reset"
        self.history.clear()
        self.version += 1
        return outcome

    # pointer gestures, in image coordinates
    def press(
        self,
        tool: str,
        x: float,
        y: float,
        *,
        brush_size: int = 32,
        tolerance: int = 32,
        subtract: bool = False,
    ) -> Box | None:
        """Start a gesture with ``tool`` at ``(x, y)``; return the image box changed so far (or None).

        The wand acts at once (one undo step); the others finish on `release`.
        """
        if tool not in TOOLS:
            raise MaskError(f"Unknown tool {tool!r}: choose one of {', '.join(TOOLS)}.")
        if self._gesture is not None:
            self.release()
        value = OFF if tool == "eraser" or (subtract and tool != "brush") else ON
        if tool == "wand":
            region = magic_wand(self._pixels, (x, y), tolerance)
            if not region.any():
                return None
            new = self._mask.copy()
            new[region] = value
            rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
            box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
            return box if self._commit(new, box) else None
        gesture = _Gesture(tool, value, [(x, y)])
        self._gesture = gesture
        if tool in ("brush", "eraser"):
            gesture.stroke = Stroke(self._mask.copy(), brush_size, value)
            return gesture.stroke.add(x, y)
        return None

    def drag(self, x: float, y: float) -> Box | None:
        """Continue the gesture to ``(x, y)``; return the image box the mask changed in (brush only)."""
        gesture = self._gesture
        if gesture is None:
            return None
        if gesture.stroke is not None:
            return gesture.stroke.add(x, y)
        if gesture.tool == "lasso":
            gesture.points.append((x, y))
        else:
            gesture.points[1:] = [(x, y)]
        return None

    def release(self, x: float | None = None, y: float | None = None) -> Box | None:
        """Finish the gesture (at ``(x, y)`` if given) as one undo step; return the image box it changed."""
        gesture = self._gesture
        if gesture is None:
            return None
        if x is not None and y is not None:
            self.drag(x, y)
        self._gesture = None
        if gesture.stroke is not None:
            gesture.stroke.flush()
            new, box = gesture.stroke.mask, gesture.stroke.bounds
        else:
            new = self._mask.copy()
            a, b = gesture.points[0], gesture.points[-1]
            if gesture.tool == "rectangle":
                box = fill_rectangle(new, a, b, gesture.value)
            elif gesture.tool == "ellipse":
                box = fill_ellipse(new, a, b, gesture.value)
            else:
                box = fill_polygon(new, gesture.points, gesture.value)
        return box if box is not None and self._commit(new, box) else None

    def cancel(self) -> None:
        """Drop the gesture under way; the mask stays as it was when the gesture started."""
        self._gesture = None
