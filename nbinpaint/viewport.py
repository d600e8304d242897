"""Zoom and pan for the mask canvas, as pure geometry: which image rectangle a canvas shows, and where.

A `Viewport` is a canvas of ``view_size`` pixels looking at an image of ``image_size`` pixels. ``zoom`` is
the magnification over *fit* (zoom 1 shows the whole image, as the canvas always did); ``pan`` is the image
point, in continuous image pixels, at the canvas's top-left corner. The canvas shows the image rectangle
``pan .. pan + image_size / zoom``, so the visible part does not depend on the canvas's size.

Coordinates are continuous, as in `nbinpaint.masks`: ``(0, 0)`` is the top-left corner of pixel ``(0, 0)``.

Worked example: a 2048x1536 image on its 512x384 fit canvas. At zoom 1 one canvas pixel covers 4x4
image pixels and canvas point ``(10, 20)`` is image point ``(40, 80)``. At zoom 4 the canvas shows 512x384
image pixels one to one; with ``pan=(1000, 600)`` canvas point ``(10, 20)`` is image point ``(1010, 620)``,
and zooming to 8 about that canvas point keeps ``(1010, 620)`` under it: the new pan is ``(1005, 610)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image

__all__ = ["MAX_PIXEL_SIZE", "WHEEL_STEP", "ImagePyramid", "Viewport", "render_view", "wheel_factor"]

#: The largest zoom shows one image pixel as this many canvas pixels (and never less than fit, zoom 1).
MAX_PIXEL_SIZE = 16.0
#: Zoom factor for one mouse-wheel notch (100 pixels of ``deltaY`` in the browser's pixel mode).
WHEEL_STEP = 1.25
# Browsers report wheel deltas in pixels (mode 0), lines (1) or pages (2): pixels per unit of each.
_WHEEL_UNITS = {0: 1.0, 1: 100 / 3, 2: 800.0}

Point = tuple[float, float]
Box = tuple[int, int, int, int]


def wheel_factor(delta_y: float, delta_mode: int = 0) -> float:
    """The zoom factor for a browser ``wheel`` event: ``WHEEL_STEP`` per notch up (``deltaY = -100``),
    its inverse per notch down, and in proportion for a trackpad's small deltas."""
    pixels = float(delta_y) * _WHEEL_UNITS.get(int(delta_mode), 1.0)
    return math.exp(-pixels / 100 * math.log(WHEEL_STEP))


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


@dataclass(frozen=True)
class Viewport:
    """The image rectangle a canvas shows: ``zoom`` over fit and ``pan`` (the image point at the top-left).

    Every instance is valid: the constructor clamps ``zoom`` to ``1 .. max_zoom`` and ``pan`` so the view
    stays inside the image (at zoom 1 the pan is ``(0, 0)``).
    """

    image_size: tuple[int, int]
    view_size: tuple[int, int]
    zoom: float = 1.0
    pan: Point = (0.0, 0.0)

    def __post_init__(self) -> None:
        if min(self.image_size) < 1 or min(self.view_size) < 1:
            raise ValueError(f"image {self.image_size} and view {self.view_size} need positive sizes")
        zoom = float(self.zoom)
        zoom = _clamp(zoom if math.isfinite(zoom) else 1.0, 1.0, self.max_zoom)
        object.__setattr__(self, "zoom", zoom)
        (w, h), (px, py) = self.image_size, (float(self.pan[0]), float(self.pan[1]))
        px, py = (p if math.isfinite(p) else 0.0 for p in (px, py))
        object.__setattr__(self, "pan", (_clamp(px, 0.0, w - w / zoom), _clamp(py, 0.0, h - h / zoom)))

    @property
    def max_zoom(self) -> float:
        """The zoom at which one image pixel covers `MAX_PIXEL_SIZE` canvas pixels (at least 1)."""
        return max(1.0, MAX_PIXEL_SIZE * self.image_size[0] / self.view_size[0])

    @property
    def scale(self) -> tuple[float, float]:
        """Canvas pixels per image pixel, per axis (the two differ only by the fit size's rounding)."""
        return (self.zoom * self.view_size[0] / self.image_size[0], self.zoom * self.view_size[1] / self.image_size[1])

    @property
    def visible(self) -> tuple[float, float, float, float]:
        """The image rectangle ``(x0, y0, x1, y1)`` the canvas shows, in continuous image pixels."""
        (w, h), (px, py) = self.image_size, self.pan
        return (px, py, px + w / self.zoom, py + h / self.zoom)

    def to_image(self, x: float, y: float) -> Point:
        """The image point under canvas point ``(x, y)``."""
        sx, sy = self.scale
        return self.pan[0] + x / sx, self.pan[1] + y / sy

    def to_view(self, x: float, y: float) -> Point:
        """The canvas point showing image point ``(x, y)`` (inverse of `to_image`)."""
        sx, sy = self.scale
        return (x - self.pan[0]) * sx, (y - self.pan[1]) * sy

    def view_box(self, box: Box) -> Box | None:
        """The canvas pixels covering any of the image pixels in ``box`` (half-open), clipped; None if off view."""
        x0, y0 = self.to_view(box[0], box[1])
        x1, y1 = self.to_view(box[2], box[3])
        vw, vh = self.view_size
        x0, y0, x1, y1 = max(math.floor(x0), 0), max(math.floor(y0), 0), min(math.ceil(x1), vw), min(math.ceil(y1), vh)
        return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None

    def _replace(self, zoom: float, pan: Point) -> Viewport:
        return Viewport(self.image_size, self.view_size, zoom, pan)

    def zoomed_at(self, x: float, y: float, zoom: float) -> Viewport:
        """Zoom to ``zoom`` keeping the image point under canvas point ``(x, y)`` where it is.

        Zooming in always keeps it exactly; zooming out keeps it unless the view would leave the image,
        in which case the pan is clamped (the view slides back inside).
        """
        ix, iy = self.to_image(x, y)
        zoom = _clamp(float(zoom), 1.0, self.max_zoom)
        (w, h), (vw, vh) = self.image_size, self.view_size
        return self._replace(zoom, (ix - x * w / (zoom * vw), iy - y * h / (zoom * vh)))

    def zoomed(self, zoom: float) -> Viewport:
        """Zoom to ``zoom`` about the canvas's centre."""
        return self.zoomed_at(self.view_size[0] / 2, self.view_size[1] / 2, zoom)

    def panned_by(self, dx: float, dy: float) -> Viewport:
        """Move the image by ``(dx, dy)`` canvas pixels with the pointer (a drag to the right shows more of
        the left), clamped to the image."""
        sx, sy = self.scale
        return self._replace(self.zoom, (self.pan[0] - dx / sx, self.pan[1] - dy / sy))

    def fit(self) -> Viewport:
        """The whole image (zoom 1)."""
        return self._replace(1.0, (0.0, 0.0))


class ImagePyramid:
    """An image at full, 1/2, 1/4 ... resolution (each level made once, when first needed), so a zoomed-out
    view of a large image resamples a level near its own size instead of every pixel of the original."""

    def __init__(self, image: Image.Image) -> None:
        self.levels = [image]

    def level(self, scale: float) -> Image.Image:
        """The smallest level with at least one pixel per canvas pixel at ``scale`` (canvas px per image px)."""
        while scale * 2 ** len(self.levels) <= 1 and min(self.levels[-1].size) >= 2:
            self.levels.append(self.levels[-1].reduce(2))
        k = 0
        while k + 1 < len(self.levels) and scale * 2 ** (k + 1) <= 1:
            k += 1
        return self.levels[k]


def render_view(image: Image.Image | ImagePyramid, view: Viewport) -> Image.Image:
    """The part of the image the view shows, at the canvas's size: only the visible crop is resampled
    (from the nearest `ImagePyramid` level when given one).

    Magnified past 2 canvas pixels per image pixel the pixels are shown as squares (nearest), so what you
    paint over is what is there; below that, bilinear.
    """
    source = image.level(min(view.scale)) if isinstance(image, ImagePyramid) else image
    (w, h), (lw, lh) = view.image_size, source.size
    x0, y0, x1, y1 = view.visible
    box = (x0 * lw / w, y0 * lh / h, x1 * lw / w, y1 * lh / h)
    if min(view.scale) >= 2:
        return source.resize(view.view_size, Image.Resampling.NEAREST, box=box)
    return source.resize(view.view_size, Image.Resampling.BILINEAR, box=box, reducing_gap=2.0)
