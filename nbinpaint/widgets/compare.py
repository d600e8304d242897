"""`CompareView`: a before/after wipe between the base image and a result, or between any two results.

The wipe is composed in numpy (`wipe`) from two arrays prepared once at display size and cached; moving
the slider only recomposes and re-encodes one display-sized frame, so dragging stays responsive.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

import ipywidgets as widgets
import numpy as np
from PIL import Image
from traitlets import Bool, Dict, Float, Instance, Int, TraitError, Unicode, observe, validate

from nbinpaint.widgets.grid import fit, jpeg_bytes

__all__ = ["CompareView", "display_arrays", "wipe"]

DIVIDER = np.array([255, 255, 255], np.uint8)
DIVIDER_EDGE = np.array([0, 0, 0], np.uint8)


def display_arrays(before: Image.Image, after: Image.Image, longest: int) -> tuple[np.ndarray, np.ndarray]:
    """Both images as uint8 RGB arrays of one display size: ``before``'s aspect, longer side ``longest``.

    ``after`` is resized to the same size when it differs (a result at another resolution), so the wipe
    always lines up pixel for pixel. Never enlarges beyond ``before``'s own size.
    """
    size = fit(before.size, min(longest, max(before.size)))
    first = before.convert("RGB").resize(size, Image.Resampling.LANCZOS) if before.size != size else before
    second = after.convert("RGB").resize(size, Image.Resampling.LANCZOS) if after.size != size else after
    return np.asarray(first.convert("RGB")), np.asarray(second.convert("RGB"))


def wipe(before: np.ndarray, after: np.ndarray, position: float, *, divider: bool = True) -> np.ndarray:
    """``before`` left of the split, ``after`` right of it; the split is at ``position`` (0..1) of the width.

    Example: width 100, position 0.3: columns 0..29 from ``before``, 30..99 from ``after``, and a
    white line with dark edges over columns 29..31 so the split is visible on any picture.
    """
    if before.shape != after.shape:
        raise ValueError(f"wipe needs two arrays of one shape; got {before.shape} and {after.shape}.")
    width = before.shape[1]
    split = round(min(max(position, 0.0), 1.0) * width)
    frame = after.copy()
    frame[:, :split] = before[:, :split]
    if divider and 0 < split < width:
        frame[:, max(split - 1, 0) : split + 1] = DIVIDER
        for edge in (split - 2, split + 1):
            if 0 <= edge < width:
                frame[:, edge] = DIVIDER_EDGE
    return frame


class CompareView(widgets.VBox):
    """A wipe slider between two images: ``before`` on the left of the split, ``after`` on the right.

    Parameters
    ----------
    before, after:
        The two images (e.g. the base image and a result).
    choices:
        Optional ``{label: image}``; when given, two pickers choose ``before`` and ``after`` among them
        (to compare any two results).
    """

    before = Instance(Image.Image, allow_none=True, help="The image left of the split.")
    after = Instance(Image.Image, allow_none=True, help="The image right of the split.")
    before_label = Unicode("before", help="Caption of the left image.")
    after_label = Unicode("after", help="Caption of the right image.")
    position = Float(0.5, help="Where the split is, as a fraction of the width (0 = all after, 1 = all before).")
    display_size = Int(512, help="Longest side of the view, in CSS pixels (64 to 2048).")
    choices = Dict(help="{label: image} offered in the two pickers; empty hides them.")
    paused = Bool(False, help="Hidden (a tab not shown): changes are drawn when it is unpaused, not before.")

    def __init__(
        self,
        before: Image.Image | None = None,
        after: Image.Image | None = None,
        *,
        choices: Mapping[str, Image.Image] | None = None,
        **kwargs: Any,
    ) -> None:
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None
        self._ready = False
        self._stale = False
        self._view = widgets.Image(format="jpeg")
        self._slider = widgets.FloatSlider(
            value=0.5,
            min=0.0,
            max=1.0,
            step=0.01,
            readout_format=".0%",
            continuous_update=True,
            description="Wipe",
            layout=widgets.Layout(width="100%"),
        )
        self._labels = widgets.HTML()
        self._pick_before = widgets.Dropdown(description="Left", layout=widgets.Layout(width="auto"))
        self._pick_after = widgets.Dropdown(description="Right", layout=widgets.Layout(width="auto"))
        self._pickers = widgets.HBox([self._pick_before, self._pick_after], layout=widgets.Layout(display="none"))
        super().__init__(children=[self._pickers, self._labels, self._view, self._slider], **kwargs)
        widgets.link((self._slider, "value"), (self, "position"))
        self._pick_before.observe(self._on_pick, "value")
        self._pick_after.observe(self._on_pick, "value")
        self._ready = True
        if choices:
            self.choices = dict(choices)
        if before is not None or after is not None:
            self.set_pair(before, after)
        self._prepare()

    @validate("position")
    def _clamp(self, proposal: Any) -> float:
        return min(max(float(proposal["value"]), 0.0), 1.0)

    @validate("display_size")
    def _valid_size(self, proposal: Any) -> int:
        return min(max(int(proposal["value"]), 64), 2048)

    @validate("choices")
    def _valid_choices(self, proposal: Any) -> dict[str, Image.Image]:
        for label, image in proposal["value"].items():
            if not isinstance(image, Image.Image):
                raise TraitError(f"choices[{label!r}] is a {type(image).__name__}: give PIL images.")
        return proposal["value"]

    def set_pair(
        self, before: Image.Image | None, after: Image.Image | None, labels: tuple[str, str] | None = None
    ) -> None:
        """Show two images (and their captions) with one recomposition."""
        self._ready = False
        try:
            self.before, self.after = before, after
            if labels is not None:
                self.before_label, self.after_label = labels
        finally:
            self._ready = True
        self._prepare()

    @observe("choices")
    def _on_choices(self, change: Any) -> None:
        labels = list(self.choices)
        self._ready = False
        try:
            self._pick_before.options = labels
            self._pick_after.options = labels
            if len(labels) >= 2:
                self._pick_before.value, self._pick_after.value = labels[0], labels[-1]
        finally:
            self._ready = True
        self._pickers.layout.display = "flex" if labels else "none"
        self._on_pick(None)

    def pick(self, left: str, right: str) -> None:
        """Choose the two images by their labels in `choices` (what the pickers do), with one redraw."""
        missing = [label for label in (left, right) if label not in self.choices]
        if missing:
            raise KeyError(f"no choice {missing[0]!r}; choices are: {', '.join(self.choices)}.")
        self._ready = False
        try:
            self._pick_before.value, self._pick_after.value = left, right
        finally:
            self._ready = True
        self._on_pick(None)

    def _on_pick(self, change: Any) -> None:
        if not self._ready or not self.choices:
            return
        left, right = self._pick_before.value, self._pick_after.value
        if left in self.choices and right in self.choices:
            self.set_pair(self.choices[left], self.choices[right], (left, right))

    @observe("before", "after", "display_size", "before_label", "after_label")
    def _on_images(self, change: Any) -> None:
        if self._ready:
            self._prepare()

    @observe("paused")
    def _on_paused(self, change: Any) -> None:
        if not self.paused and self._stale:
            self._prepare()

    def _prepare(self) -> None:
        """Cache both images at display size, then draw; runs only when the images or the size change (and
        once unpaused: a studio's Compare tab costs nothing per result until it is opened)."""
        self._stale = self.paused
        if self.paused:
            return
        self._labels.value = (
            f'<div style="display:flex;justify-content:space-between;font-size:12px">'
            f"<span>◀ {html.escape(self.before_label)}</span><span>{html.escape(self.after_label)} ▶</span></div>"
        )
        if self.before is None or self.after is None:
            self._arrays = None
            self._view.value = b""
            return
        self._arrays = display_arrays(self.before, self.after, self.display_size)
        height, width = self._arrays[0].shape[:2]
        shown = fit((width, height), self.display_size) if max(width, height) < self.display_size else (width, height)
        self._view.layout.width, self._view.layout.height = f"{shown[0]}px", f"{shown[1]}px"
        self._labels.layout.width = self._slider.layout.width = f"{shown[0]}px"
        self._draw()

    @observe("position")
    def _on_position(self, change: Any) -> None:
        if self.paused:
            self._stale = True
            return
        self._draw()

    def _draw(self) -> None:
        if self._arrays is None:
            return
        self._view.value = self.frame_bytes()

    def frame(self) -> Image.Image:
        """The current wipe as an image (display size)."""
        if self._arrays is None:
            raise ValueError("nothing to compare: set before and after first.")
        return Image.fromarray(wipe(*self._arrays, self.position))

    def frame_bytes(self) -> bytes:
        """The current wipe as the view shows it: JPEG, re-encoded on every slider move (see `jpeg_bytes`)."""
        return jpeg_bytes(self.frame())
