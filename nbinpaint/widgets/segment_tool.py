"""The mask canvas's Segment tool: click an object, see Segment Anything's proposal, accept it into the mask.

`SegmentClicks` is the tool without widgets (the points, their labels, SAM's proposal, and accepting it
into a `nbinpaint.masks.MaskEditor` as one undo step); tests drive it directly. `SegmentTool` binds it to
a `nbinpaint.widgets.canvas.MaskCanvas`: it asks the canvas to map a click to image pixels and to redraw,
and the canvas asks it to draw the proposal over the mask overlay; its own bar holds Inside/Outside,
Accept and Clear.

A click adds a point inside the object; with Shift or Alt held (or Outside chosen in the bar) a point
outside it. Each click asks SAM again with all the points so far. Clicks come from an ipyevents
``mousedown`` on the canvas, not ipycanvas' ``on_mouse_down``: only the DOM event says which modifier keys
were down, and one event carrying both the position and the keys cannot be reordered against another.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import numpy as np
from ipyevents import Event
from PIL import Image, ImageDraw

from nbinpaint.contract import Manager
from nbinpaint.errors import MaskError, NbinpaintError
from nbinpaint.masks import MaskEditor, render_overlay
from nbinpaint.segmentation import propose, segment_code
from nbinpaint.segmenter import DEFAULT_SEGMENTER, INSIDE, OUTSIDE, Proposal, check_points
from nbinpaint.session import shared_manager

if TYPE_CHECKING:
    from nbinpaint.widgets.canvas import MaskCanvas

__all__ = ["SEGMENT", "SEGMENT_BUTTON", "SegmentClicks", "SegmentTool", "composite"]

SEGMENT = "segment"
"""The canvas's tool name for this tool."""
SEGMENT_BUTTON = ("Segment", "crosshairs", "Click an object for a Segment Anything mask (Shift/Alt-click: outside)")
"""(label, Font Awesome icon, tooltip) of the tool's button, as the canvas lists its tools."""

PROPOSAL_COLOR = "#2f80ff"
INSIDE_COLOR = "#00c853"
OUTSIDE_COLOR = "#ff1744"
MARKER_RADIUS = 5  # display pixels

Proposer = Callable[[Image.Image, np.ndarray, np.ndarray], Proposal]


class SegmentClicks:
    """The points clicked on one image and SAM's proposal for them; plain Python.

    ``propose(image, points, labels)`` makes the proposal (`nbinpaint.segmentation.propose` with a model
    and manager bound, or a stand-in in tests).
    """

    def __init__(self, propose: Proposer) -> None:
        self._propose = propose
        self.points: list[tuple[float, float]] = []
        self.labels: list[int] = []
        self.proposal: Proposal | None = None
        self.image: Image.Image | None = None  # the image the points are on

    def add(self, image: Image.Image, x: float, y: float, *, inside: bool = True) -> Proposal:
        """Add a point (image pixels) and ask again with every point; on any error nothing changes."""
        if image is not self.image:  # another image: the old points mean nothing on it
            self.clear()
        label = INSIDE if inside else OUTSIDE
        points, labels = check_points([*self.points, (x, y)], [*self.labels, label], image.size)
        proposal = self._propose(image, points, labels)
        if proposal.mask.shape != (image.size[1], image.size[0]):
            raise MaskError(
                f"the segmenter returned a {proposal.mask.shape[1]}x{proposal.mask.shape[0]} mask for a "
                f"{image.size[0]}x{image.size[1]} image: it must give masks at the image's size."
            )
        self.image = image
        self.points.append((float(x), float(y)))
        self.labels.append(label)
        self.proposal = proposal
        return proposal

    def clear(self) -> bool:
        """Drop the points and the proposal; False when there were none."""
        had = bool(self.points)
        self.points, self.labels, self.proposal, self.image = [], [], None, None
        return had

    def accept(self, editor: MaskEditor, *, subtract: bool = False) -> bool:
        """Merge the proposal into ``editor``'s mask as one undo step (removed from it when ``subtract``),
        then clear the points. Returns whether the mask changed."""
        if self.proposal is None:
            raise MaskError("There is no proposal to accept: click inside an object with the Segment tool first.")
        if self.image is not editor.image:
            self.clear()
            raise MaskError("The image changed since these points were clicked: click the object again.")
        mask = editor.committed_mask
        new = np.where(self.proposal.mask, 0 if subtract else 255, mask).astype(np.uint8)
        changed = editor.set_mask(new)
        self.clear()
        return changed

    def markers(self, radius: float) -> tuple[np.ndarray, np.ndarray]:
        """Discs of ``radius`` image pixels at the inside and at the outside points: two uint8 masks."""
        if self.image is None:
            raise MaskError("No points yet.")
        discs = []
        for wanted in (INSIDE, OUTSIDE):
            canvas = Image.new("L", self.image.size, 0)
            draw = ImageDraw.Draw(canvas)
            for (x, y), label in zip(self.points, self.labels, strict=True):
                if label == wanted:
                    draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
            discs.append(np.asarray(canvas))
        return discs[0], discs[1]


def composite(under: np.ndarray, over: np.ndarray) -> np.ndarray:
    """RGBA ``over`` laid on RGBA ``under`` (straight alpha, uint8), as a canvas draws one layer on another."""
    a_over = over[..., 3:4].astype(np.float32) / 255
    a_under = under[..., 3:4].astype(np.float32) / 255
    alpha = a_over + a_under * (1 - a_over)
    rgb = over[..., :3] * a_over + under[..., :3] * a_under * (1 - a_over)
    rgb = np.divide(rgb, alpha, out=np.zeros_like(rgb), where=alpha > 0)
    return np.concatenate([np.round(rgb), np.round(alpha * 255)], axis=-1).astype(np.uint8)


class SegmentTool:
    """The Segment tool of one `MaskCanvas`: its bar, its clicks, and the proposal drawn over the overlay.

    Parameters:
        canvas: the canvas it belongs to (its editor, messages and redraws).
        source: the canvas widget that receives the clicks (its ``width`` and ``height`` are canvas pixels).
        model: the Segment Anything checkpoint.
        manager: the manager that loads it (None: the kernel's shared manager at each click).
    """

    def __init__(
        self,
        canvas: MaskCanvas,
        source: widgets.DOMWidget,
        *,
        model: str = DEFAULT_SEGMENTER,
        manager: Manager | None = None,
    ) -> None:
        self._canvas = canvas
        self.model = model
        self.manager = manager
        self.clicks = SegmentClicks(self._propose)
        self._source = source
        self._clicks = Event(source=source, watched_events=["mousedown"])
        self._clicks.on_dom_event(self._on_mousedown)
        self._mode = widgets.ToggleButtons(
            options=[("Inside", "inside"), ("Outside", "outside")],
            tooltips=["A click marks the object", "A click marks what is not the object (or Shift/Alt-click)"],
            style={"button_width": "auto"},
        )
        self._accept = widgets.Button(
            description="Accept", icon="check", tooltip="Add the proposal to the mask (one undo step)"
        )
        self._clear = widgets.Button(description="Clear points", icon="times", tooltip="Drop the points")
        self._accept.on_click(lambda _: self._canvas._run_button(self.accept))
        self._clear.on_click(lambda _: self._canvas._run_button(self.clear))
        self._code = widgets.Button(
            description="Show code", icon="code", tooltip="The plain transformers script for these points"
        )
        self._code.on_click(lambda _: self._canvas._run_button(self.show_code))
        self._note = widgets.HTML()
        self.code_view = widgets.HTML()
        row = widgets.HBox(
            [widgets.HTML("<b>Segment</b>&nbsp;"), self._mode, self._accept, self._clear, self._code, self._note],
            layout=widgets.Layout(flex_flow="row wrap", align_items="center", width="auto"),
        )
        self.bar = widgets.VBox([row, self.code_view], layout=widgets.Layout(display="none"))

    def _propose(self, image: Image.Image, points: np.ndarray, labels: np.ndarray) -> Proposal:
        return propose(image, points, labels, model=self.model, manager=self.manager)

    # -- what the canvas calls -------------------------------------------------------------------------------

    def on_tool(self, change: Any) -> None:
        """Show the bar while the tool is active, with the model loaded (or greyed out with the reason it
        cannot be); leaving the tool drops its points."""
        active = change["new"] == SEGMENT
        self.bar.layout.display = "flex" if active else "none"
        if active:
            self._canvas._run_button(self.load)
        elif self.clicks.clear():
            self._redraw()

    def load(self) -> bool:
        """Load the model now, not at the first click; when it cannot load (a workshop server, no such
        checkpoint, offline without it) grey the bar out and say why. Returns whether it is ready."""
        manager = self.manager if self.manager is not None else shared_manager()
        self._canvas._say(f"Loading {self.model}…")
        try:
            manager.segmenter(self.model)
        except NbinpaintError as error:
            reason = str(error)
            self._canvas._say(reason, error=True)
        else:
            reason = ""
            self._canvas._say("Click the object (Shift/Alt-click: a point outside it), then Accept.")
        for control in (self._mode, self._accept):
            control.disabled = bool(reason)
        self._note.value = '<span style="color:#b00020">unavailable: see the message below</span>' if reason else ""
        self._note.tooltip = reason or None
        return not reason

    def click(self, x: float, y: float, *, outside: bool = False) -> Proposal:
        """A click at image pixel ``(x, y)``: a point outside the object when ``outside`` (Shift/Alt held) or
        when Outside is chosen in the bar."""
        inside = self._mode.value == "inside" and not outside
        self._canvas._say("Segmenting…")
        proposal = self.clicks.add(self._canvas.image, x, y, inside=inside)
        self._redraw()
        n = len(self.clicks.points)
        share = proposal.mask.mean() * 100
        action = "removes it from the mask (Subtract is on)" if self._canvas.subtract else "adds it to the mask"
        self._canvas._say(
            f"Proposal from {n} point{'s' * (n != 1)} ({share:.1f}% of the image, predicted IoU "
            f"{proposal.score:.2f}): Accept {action}."
        )
        return proposal

    def accept(self) -> bool:
        """Merge the proposal into the canvas's mask (one undo step: Undo takes it back)."""
        changed = self.clicks.accept(self._canvas.editor, subtract=self._canvas.subtract)
        self._canvas._after_edit(changed)
        self._canvas._say("Accepted the proposal (Undo takes it back)." if changed else "The mask already had it.")
        return changed

    def show_code(self) -> str:
        """Show (and return) the plain transformers script that gives the proposal for the points clicked,
        reading the canvas's image from image.png (`nbinpaint.segmentation.segment_code`)."""
        if not self.clicks.points:
            raise MaskError("Click the object first: the code reproduces the proposal for the points clicked.")
        code = segment_code(self.clicks.points, self.clicks.labels, model=self.model)
        self.code_view.value = f"<pre>{html.escape(code)}</pre>"
        return code

    def clear(self) -> bool:
        """Drop the points and the proposal."""
        had = self.clicks.clear()
        self.code_view.value = ""
        self._redraw()
        self._canvas._say("Points cleared." if had else "")
        return had

    def overlay(
        self,
        rgba: np.ndarray,
        shown: tuple[int, int],
        box: tuple[int, int, int, int] | None,
        region: tuple[float, float, float, float] | None = None,
    ) -> np.ndarray:
        """The canvas's overlay ``rgba`` (display region ``box``) with the proposal and the points on top."""
        clicks = self.clicks
        if clicks.proposal is None or clicks.image is not self._canvas.image:
            return rgba
        seen = region[2] - region[0] if region is not None else clicks.image.size[0]  # image px across the view
        radius = MARKER_RADIUS * seen / shown[0]
        inside, outside = clicks.markers(radius)
        proposal = clicks.proposal.mask.astype(np.uint8) * 255
        layers = ((proposal, PROPOSAL_COLOR, 0.45), (inside, INSIDE_COLOR, 1.0), (outside, OUTSIDE_COLOR, 1.0))
        for mask, color, opacity in layers:
            layer, _ = render_overlay(mask, shown, color=color, opacity=opacity, box=box, region=region)
            rgba = composite(rgba, layer)
        return rgba

    # -- internals -------------------------------------------------------------------------------------------

    def _redraw(self) -> None:
        self._canvas._after_edit(False)  # a full redraw; the mask and its version are unchanged

    def _on_mousedown(self, event: dict[str, Any]) -> None:
        """A primary-button press while the tool is active: to canvas pixels (the DOM rectangle may be
        scaled), then to image pixels by the canvas's own mapping."""
        if self._canvas.tool != SEGMENT or event.get("button", 0) != 0:
            return
        if self._canvas._space_held:  # space held: this press pans the view
            return
        ix, iy = self._canvas.image_point(event)  # at the canvas's zoom and pan
        outside = bool(event.get("shiftKey") or event.get("altKey"))
        self._canvas._run_button(lambda: self.click(ix, iy, outside=outside))
