"""The mask canvas: draw, edit and feather an inpainting mask over the image, in the notebook cell.

`MaskCanvas` binds `nbinpaint.masks.MaskEditor` (the authoritative full-resolution mask, its undo history
and the tools) to an ipycanvas `MultiCanvas` and a tool bar. The canvas only displays: the overlay is
rendered from the Python mask and sent as lossless RGBA; nothing is read back from the browser.

Layers, bottom to top: the image, the mask overlay, and a pointer layer (brush outline, shape previews)
which receives the mouse events.

Zoom and pan (`zoom`, `pan`; geometry in `nbinpaint.viewport`): the wheel zooms about the pointer, a drag
with space held or with the middle button pans, Fit shows the whole image. Each redraw sends only the
visible crop of the image and of the overlay, resampled to the canvas; strokes keep landing on the image
pixels under the pointer (`image_point` maps a pointer event to them).
"""

from __future__ import annotations

import html
import logging
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np
from ipycanvas import MultiCanvas, hold_canvas
from ipyevents import Event
from PIL import Image, ImageColor
from traitlets import Bool, Enum, Float, Int, TraitError, Tuple, Unicode, observe, validate

from nbinpaint.errors import NbinpaintError
from nbinpaint.masks import (
    DEFAULT_HISTORY_DEPTH,
    DEFAULT_MAX_DISPLAY,
    TOOLS,
    Box,
    MaskEditor,
    MaskError,
    MaskLike,
    blur_margin,
    display_size,
    feather,
    grow_box,
    render_image,
    render_overlay,
    union_box,
)
from nbinpaint.viewport import ImagePyramid, Viewport, render_view, wheel_factor
from nbinpaint.widgets.segment_tool import SEGMENT, SEGMENT_BUTTON, SegmentTool

__all__ = ["KEY_ACTIONS", "MaskCanvas", "held", "key_action"]

log = logging.getLogger(__name__)

MAX_BRUSH = 512
MAX_BLUR = 100
_CSS_CLASS = "nbinpaint-mask-canvas"
# A browser-side crosshair shows the exact pointer at once; the brush outline drawn from Python follows.
_CSS = f"<style>.{_CSS_CLASS} {{ cursor: crosshair; outline: none; }}</style>"

_TOOL_BUTTONS = {  # tool: (label, Font Awesome icon, tooltip)
    "brush": ("Brush", "paint-brush", "Paint the mask (x swaps with the eraser)"),
    "eraser": ("Eraser", "eraser", "Erase the mask (x swaps with the brush)"),
    "rectangle": ("Rect", "square-o", "Drag a rectangle"),
    "ellipse": ("Ellipse", "circle-o", "Drag an ellipse"),
    "lasso": ("Lasso", "pencil", "Draw a closed outline; it is filled on release"),
    "wand": ("Wand", "magic", "Click to select the connected area of similar colour (tolerance)"),
    SEGMENT: SEGMENT_BUTTON,
}
_VIEW_HINT = "Wheel over the image: zoom about the pointer; drag with space held or the middle button: pan"
#: Zoom factor of the + and - buttons (about the canvas's centre).
ZOOM_STEP = 1.5
_CANVAS_TOOLS = (*TOOLS, SEGMENT)  # the editor's tools, and the Segment tool (segment_tool.py)

#: Keyboard shortcuts while the pointer is over the canvas (ipyevents keeps them from the notebook).
KEY_ACTIONS = {
    "[": "smaller",
    "]": "bigger",
    "x": "swap",
    "ctrl+z": "undo",
    "ctrl+shift+z": "redo",
    "ctrl+y": "redo",
}


def key_action(event: dict[str, Any]) -> str | None:
    """The `KEY_ACTIONS` entry for an ipyevents ``keydown`` event (Cmd counts as Ctrl), or None."""
    key = str(event.get("key", "")).lower()
    chord = ("ctrl+" if event.get("ctrlKey") or event.get("metaKey") else "") + (
        "shift+" if event.get("shiftKey") and (event.get("ctrlKey") or event.get("metaKey")) else ""
    )
    return KEY_ACTIONS.get(chord + key)


@contextmanager
def held() -> Iterator[None]:
    """`ipycanvas.hold_canvas`, but flushed and released in ``finally``: an error while drawing neither
    loses the commands batched so far nor leaves the canvas manager caching forever.
    """
    hold = hold_canvas()
    hold.__enter__()
    try:
        yield
    finally:
        hold.__exit__(None, None, None)


def _enable_colab_widgets() -> bool:
    # Colab shows third-party widgets only after this call (ipycanvas, ipyevents are third-party there).
    if "google.colab" not in sys.modules:
        return False
    from google.colab import output  # type: ignore[import-not-found]

    output.enable_custom_widget_manager()
    return True


def _reported(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run an event handler so that a failure shows in the widget instead of vanishing in the kernel log."""

    @wraps(method)
    def handler(self: MaskCanvas, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except NbinpaintError as exc:
            self._say(str(exc), error=True)
        except Exception as exc:
            log.exception("mask canvas handler %s failed", method.__name__)
            self._say(f"Internal error in {method.__name__}: {exc!r}. The mask is unchanged.", error=True)
        return None

    return handler


class MaskCanvas(widgets.VBox):
    """Draw an inpainting mask over an image, in the notebook: brush, eraser, shapes, lasso, wand, undo.

    The mask lives in Python at the image's full resolution (`mask`: PIL "L", white = repaint); large
    images are shown scaled to fit ``max_display_size`` and strokes are mapped back to image pixels.
    `zoom` and `pan` choose the part shown (wheel, space-drag or middle-drag, Fit); `image_point` maps a
    pointer event to the image. Listeners observe `mask_version` (one increment per completed change)
    and `blur_factor`.

    Parameters
    ----------
    image:
        The base image (PIL image or ``(height, width, 3)`` uint8 array).
    mask:
        An initial mask, anything `nbinpaint.inputs.mask_array` accepts, the size of ``image``.
    max_display_size:
        Longest displayed side in pixels; larger images are shown scaled down.
    history_depth:
        Undo steps kept.
    sync_overlay_pixels:
        Test only: have the browser send the overlay layer's pixels back (ipycanvas ``sync_image_data``)
        so a test can compare them with the Python mask. Slow; never needed to use the widget.
    """

    tool = Enum(_CANVAS_TOOLS, default_value="brush", help="The active tool: " + ", ".join(_CANVAS_TOOLS) + ".")
    brush_size = Int(32, help=f"Brush and eraser diameter in image pixels (1..{MAX_BRUSH}).")
    subtract = Bool(False, help="Rectangle, ellipse, lasso and wand remove from the mask instead of adding.")
    tolerance = Int(32, help="Magic wand: largest per-channel colour difference from the clicked pixel.")
    grow_by = Int(8, help="Pixels the Grow and Shrink buttons move the mask's edge by.")
    opacity = Float(0.5, help="Opacity of the mask overlay, 0..1 (display only).")
    color = Unicode("#ff3366", help="Colour of the mask overlay (any CSS colour PIL understands).")
    blur_factor = Int(
        0,
        help=f"Feather preview, 0..{MAX_BLUR}: the overlay shows the mask as mask_processor.blur(mask, "
        "blur_factor) will feed it to the pipeline.",
    )
    mask_version = Int(
        0,
        read_only=True,
        help="Incremented once per completed mask change (a stroke, a "
        "shape, a load, undo...): observe it to follow the mask.",
    )
    message = Unicode("", help="The last message shown under the canvas (errors name their fix).")
    zoom = Float(
        1.0,
        help="Magnification over fit: 1 shows the whole image, 3 a third of its width three times larger "
        "(up to 16 canvas pixels per image pixel). Setting it zooms about the canvas's centre.",
    )
    pan = Tuple(
        Float(),
        Float(),
        default_value=(0.0, 0.0),
        help="The image point (x, y), in image pixels, at the canvas's top-left corner; kept inside the image.",
    )

    #: Minimum seconds between overlay redraws during a drag; mouse-up always redraws.
    redraw_interval = 0.03

    def __init__(
        self,
        image: Image.Image | np.ndarray,
        mask: MaskLike | None = None,
        *,
        max_display_size: int = DEFAULT_MAX_DISPLAY,
        history_depth: int = DEFAULT_HISTORY_DEPTH,
        sync_overlay_pixels: bool = False,
        **kwargs: Any,
    ) -> None:
        _enable_colab_widgets()
        self._editor = MaskEditor(image, mask, history_depth=history_depth)
        self._max_display = int(max_display_size)
        self._shown = display_size(self._editor.size, self._max_display)
        self._image_rgba = render_image(self._editor.image, self._shown)
        self._pyramid = ImagePyramid(self._editor.image)
        self._pointer: tuple[float, float] | None = None  # display coordinates, None when outside
        self._dirty: Box | None = None  # image box changed since the last overlay redraw
        self._last_redraw = float("-inf")
        self._clock: Callable[[], float] = time.monotonic
        self._message_is_error = False
        self._view_dirty = True  # the image layer and the whole overlay need drawing (zoom, pan, new image)
        self._lossless = True  # the next image layer goes as PNG (see _draw_image)
        self._view_lock = False  # set while zoom and pan are written together
        self._panning: tuple[float, float] | None = None  # canvas point of the pan drag so far
        self._space_held = False
        self._press_version: int | None = None  # editor version before the last press (see _start_pan)

        w, h = self._shown
        self._layers = MultiCanvas(3, width=w, height=h, layout=self._canvas_layout())
        self._layers.add_class(_CSS_CLASS)
        if sync_overlay_pixels:
            self.overlay_layer.sync_image_data = True
        # Keys, the wheel and panning come through ipyevents (ipycanvas reports neither the wheel's position
        # nor the mouse button), all in one stream so they arrive in order: under load the kernel was seen
        # taking messages of two widgets out of their order. Drawing stays on ipycanvas's exact coordinates.
        # Default actions (page scroll, middle-click autoscroll, JupyterLab's keys) are prevented.
        self._events = Event(
            source=self._layers,
            watched_events=["keydown", "keyup", "wheel", "mousedown", "mousemove", "mouseup"],
            ignore_modifier_key_events=True,
            prevent_default_action=True,
        )
        self._status = widgets.HTML(layout=widgets.Layout(min_height="1.5em"))
        self._segment = SegmentTool(self, self._layers)
        super().__init__(children=[*self._build_toolbar(), self._segment.bar, self._layers, self._status], **kwargs)
        self.observe(self._segment.on_tool, "tool")

        self._layers.on_mouse_down(self._on_mouse_down)
        self._layers.on_mouse_move(self._on_mouse_move)
        self._layers.on_mouse_up(self._on_mouse_up)
        self._layers.on_mouse_out(self._on_mouse_out)
        self._layers.on_client_ready(self._redraw_all)
        self._events.on_dom_event(self._on_dom_event)
        self._link_controls()
        self.set_trait("mask_version", self._editor.version)
        self._render_zoom_readout()
        self._redraw_all()

    # -- layout ----------------------------------------------------------------------------------------------

    def _canvas_layout(self) -> widgets.Layout:
        w, h = self._shown
        return widgets.Layout(width=f"{w}px", height=f"{h}px", min_width=f"{w}px", flex="0 0 auto")

    def _build_toolbar(self) -> list[widgets.Widget]:
        row = widgets.Layout(flex_flow="row wrap", align_items="center", width="auto")
        wide = {"description_width": "initial"}
        tools = widgets.ToggleButtons(
            options=[(_TOOL_BUTTONS[t][0], t) for t in _CANVAS_TOOLS],
            icons=[_TOOL_BUTTONS[t][1] for t in _CANVAS_TOOLS],
            tooltips=[_TOOL_BUTTONS[t][2] for t in _CANVAS_TOOLS],
            style={"button_width": "auto"},  # six tools in one row beside a 400 px panel on a laptop
        )
        size = widgets.IntSlider(
            min=1,
            max=MAX_BRUSH,
            description="Size",
            tooltip="Brush and eraser diameter in image pixels, whatever the zoom ([ and ] change it)",
            style=wide,
            layout=widgets.Layout(width="260px"),
        )
        subtract = widgets.ToggleButton(
            description="Subtract",
            icon="minus",
            tooltip="Shapes, lasso and wand remove from the mask",
            layout=widgets.Layout(width="100px"),
        )
        tolerance = widgets.IntSlider(
            min=0, max=255, description="Wand tolerance", style=wide, layout=widgets.Layout(width="260px")
        )
        opacity = widgets.FloatSlider(
            min=0, max=1, step=0.05, description="Opacity", style=wide, layout=widgets.Layout(width="220px")
        )
        blur = widgets.IntSlider(
            min=0, max=MAX_BLUR, description="Feather (blur_factor)", style=wide, layout=widgets.Layout(width="330px")
        )
        grow_by = widgets.BoundedIntText(
            min=1, max=256, description="by", style=wide, layout=widgets.Layout(width="90px")
        )
        self._controls = {
            "tool": tools,
            "brush_size": size,
            "subtract": subtract,
            "tolerance": tolerance,
            "opacity": opacity,
            "blur_factor": blur,
            "grow_by": grow_by,
        }

        def button(label: str, icon: str, tip: str, action: Callable[[], Any]) -> widgets.Button:
            b = widgets.Button(description=label, icon=icon, tooltip=tip, layout=widgets.Layout(width="auto"))
            b.on_click(lambda _: self._run_button(action))
            return b

        self._buttons = {
            "undo": button("Undo", "undo", "Undo (Ctrl+Z)", self.undo),
            "redo": button("Redo", "repeat", "Redo (Ctrl+Shift+Z)", self.redo),
            "clear": button("Clear", "trash", "Clear the mask", self.clear),
            "invert": button("Invert", "adjust", "Swap repaint and keep", self.invert),
            "grow": button("Grow", "expand", "Grow the mask's edge", self.grow),
            "shrink": button("Shrink", "compress", "Shrink the mask's edge", self.shrink),
            "zoom_out": button("", "search-minus", f"Zoom out ({_VIEW_HINT})", lambda: self.zoom_by(1 / ZOOM_STEP)),
            "zoom_in": button("", "search-plus", f"Zoom in ({_VIEW_HINT})", lambda: self.zoom_by(ZOOM_STEP)),
            "fit": button("Fit", "arrows-alt", "Show the whole image (zoom 1)", self.fit),
            "save": button(
                "Save PNG",
                "download",
                "Save the mask as a PNG at the path on the left",
                lambda: self.save_mask(self._path.value),
            ),
        }
        self._upload = widgets.FileUpload(
            accept="image/*,.npy",
            multiple=False,
            description="Load mask",
            tooltip="Load a mask image (white = repaint) the image's size",
        )
        self._upload.observe(self._on_upload, "value")
        self._path = widgets.Text("mask.png", placeholder="mask.png", layout=widgets.Layout(width="160px"))
        self._zoom_readout = widgets.HTML(layout=widgets.Layout(min_width="9em"), tooltip=_VIEW_HINT)
        b = self._buttons
        return [
            widgets.HTML(_CSS, layout=widgets.Layout(display="none")),
            widgets.HBox([tools, b["zoom_out"], b["zoom_in"], b["fit"], self._zoom_readout], layout=row),
            widgets.HBox([size, subtract, tolerance], layout=row),
            widgets.HBox([b["undo"], b["redo"], b["clear"], b["invert"], b["grow"], b["shrink"], grow_by], layout=row),
            widgets.HBox([opacity, blur], layout=row),
            widgets.HBox([self._upload, self._path, b["save"]], layout=row),
        ]

    # -- public API ------------------------------------------------------------------------------------------

    @property
    def editor(self) -> MaskEditor:
        """The plain-Python editor behind the widget (image, mask, history)."""
        return self._editor

    @property
    def image(self) -> Image.Image:
        """The base image (RGB, full resolution)."""
        return self._editor.image

    @property
    def mask(self) -> Image.Image:
        """The mask as a PIL "L" image the size of `image`: 255 = repaint, 0 = keep.

        It is the last completed mask (a stroke joins it at mouse-up, when `mask_version` changes), and
        safe to read from another thread while the user draws.
        """
        return Image.fromarray(self._editor.committed_mask.copy(), "L")

    @mask.setter
    def mask(self, value: MaskLike) -> None:
        self.load_mask(value)

    @property
    def mask_array(self) -> np.ndarray:
        """The mask as a read-only ``(height, width)`` uint8 array (no copy)."""
        view = self._editor.committed_mask.view()
        view.flags.writeable = False
        return view

    @property
    def feathered_mask(self) -> Image.Image:
        """The mask as the pipeline will see it after ``mask_processor.blur(mask, blur_factor)``."""
        return Image.fromarray(np.ascontiguousarray(feather(self._editor.committed_mask, self.blur_factor)), "L")

    @property
    def display_size(self) -> tuple[int, int]:
        """The canvas's on-screen ``(width, height)``; the image is ``image.size``."""
        return self._shown

    @property
    def viewport(self) -> Viewport:
        """The current view (`zoom`, `pan`) as geometry: `Viewport.to_image`, `to_view`, `visible`."""
        return Viewport(self._editor.size, self._shown, self.zoom, self.pan)

    def image_point(self, event: Mapping[str, Any]) -> tuple[float, float]:
        """The image point, in continuous image pixels, under a pointer event, at the current zoom and pan.

        Takes what the browser sends: an ipyevents event dict (``relativeX``, ``relativeY``, scaled by
        ``boundingRectWidth`` and ``boundingRectHeight`` when present) or ipycanvas's ``{"x": .., "y": ..}``
        (canvas pixels). Pixel ``(col, row)`` is ``(int(x), int(y))`` of the result.
        """
        return self.viewport.to_image(*self._canvas_point(event))

    def fit(self) -> None:
        """Show the whole image (zoom 1)."""
        self._apply_view(self.viewport.fit())

    def zoom_by(self, factor: float) -> None:
        """Zoom by ``factor`` about the canvas's centre (clamped to 1 .. the largest zoom)."""
        self._apply_view(self.viewport.zoomed(self.zoom * float(factor)))

    @property
    def segment_tool(self) -> SegmentTool:
        """The Segment tool (its ``model`` and ``manager`` say which Segment Anything loads, and where)."""
        return self._segment

    @property
    def overlay_layer(self) -> Any:
        """The ipycanvas layer holding the mask overlay."""
        return self._layers[1]

    def load_mask(self, source: MaskLike) -> bool:
        """Replace the mask (path, bytes, PIL, array...) as one undo step; a bad one raises `MaskError`
        and leaves the current mask as it was."""
        changed = self._editor.set_mask(source)
        self._after_edit(None)
        self._say(f"Loaded a {self._editor.size[0]}x{self._editor.size[1]} mask.")
        return changed

    def save_mask(self, path: str | Path = "mask.png") -> Path:
        """Write the mask as a PNG (white = repaint) and return its absolute path."""
        target = Path(path).expanduser()
        if target.suffix.lower() != ".png":
            raise MaskError(f"Save the mask as PNG (lossless): use a path ending in .png, not {str(path)!r}.")
        try:
            self.mask.save(target, format="PNG")
        except OSError as exc:
            raise MaskError(
                f"Could not write {str(target)!r} ({exc.strerror or exc}): choose a writable path."
            ) from exc
        self._say(f"Saved the {self._editor.size[0]}x{self._editor.size[1]} mask to {target.resolve()}.")
        return target.resolve()

    def clear(self) -> bool:
        """Erase the whole mask (undoable)."""
        return self._after_edit(self._editor.clear())

    def invert(self) -> bool:
        """Swap repaint and keep (undoable)."""
        return self._after_edit(self._editor.invert())

    def grow(self, pixels: int | None = None) -> bool:
        """Move the mask's edge outwards by ``pixels`` (default `grow_by`), undoable."""
        return self._after_edit(self._editor.grow(self.grow_by if pixels is None else int(pixels)))

    def shrink(self, pixels: int | None = None) -> bool:
        """Move the mask's edge inwards by ``pixels`` (default `grow_by`), undoable."""
        return self._after_edit(self._editor.shrink(self.grow_by if pixels is None else int(pixels)))

    def undo(self) -> bool:
        """Undo the last change; False when there is nothing to undo."""
        return self._after_edit(self._editor.undo())

    def redo(self) -> bool:
        """Redo the last undone change; False when there is nothing to redo."""
        return self._after_edit(self._editor.redo())

    def set_image(self, image: Image.Image | np.ndarray) -> str:
        """Swap the base image: the mask is kept (same size), rescaled (same aspect ratio) or reset (other
        aspect). Returns ``"kept"``, ``"rescaled"`` or ``"reset"``; the undo history survives only "kept".
        """
        outcome = self._editor.set_image(image)
        self._shown = display_size(self._editor.size, self._max_display)
        self._image_rgba = render_image(self._editor.image, self._shown)
        self._pyramid = ImagePyramid(self._editor.image)
        w, h = self._shown
        self._layers.width, self._layers.height = w, h
        self._layers.layout = self._canvas_layout()
        self._set_view(self.viewport.fit())
        self._redraw_all()
        self.set_trait("mask_version", self._editor.version)
        self._say(f"New {self._editor.size[0]}x{self._editor.size[1]} image: mask {outcome}.")
        return outcome

    # -- validation and propagation --------------------------------------------------------------------------

    @validate("brush_size")
    def _validate_brush_size(self, proposal: Any) -> int:
        return min(max(int(proposal["value"]), 1), MAX_BRUSH)

    @validate("tolerance")
    def _validate_tolerance(self, proposal: Any) -> int:
        return min(max(int(proposal["value"]), 0), 255)

    @validate("grow_by")
    def _validate_grow_by(self, proposal: Any) -> int:
        return min(max(int(proposal["value"]), 1), 256)

    @validate("opacity")
    def _validate_opacity(self, proposal: Any) -> float:
        return min(max(float(proposal["value"]), 0.0), 1.0)

    @validate("blur_factor")
    def _validate_blur_factor(self, proposal: Any) -> int:
        return min(max(int(proposal["value"]), 0), MAX_BLUR)

    @validate("color")
    def _validate_color(self, proposal: Any) -> str:
        try:
            ImageColor.getrgb(proposal["value"])
        except ValueError as exc:
            raise TraitError(f"color {proposal['value']!r} is not a colour PIL knows, e.g. '#ff3366'") from exc
        return proposal["value"]

    @observe("opacity", "color", "blur_factor")
    def _on_look_change(self, change: Any) -> None:
        if hasattr(self, "_layers"):
            with held():
                self._draw_overlay(None)

    @observe("tool", "brush_size")
    def _on_pointer_look_change(self, change: Any) -> None:
        if hasattr(self, "_layers"):
            with held():
                self._draw_pointer_layer()

    @validate("zoom")
    def _validate_zoom(self, proposal: Any) -> float:
        return Viewport(self._editor.size, self._shown, proposal["value"]).zoom

    @validate("pan")
    def _validate_pan(self, proposal: Any) -> tuple[float, float]:
        return Viewport(self._editor.size, self._shown, self.zoom, proposal["value"]).pan

    @observe("zoom")
    def _on_zoom_change(self, change: Any) -> None:
        # Zoom set on its own (code, a button): about the canvas's centre, from the view before.
        if not self._view_lock and hasattr(self, "_layers"):
            before = Viewport(self._editor.size, self._shown, change["old"], self.pan)
            self._view_dirty = True
            self._apply_view(before.zoomed(change["new"]))

    @observe("pan")
    def _on_pan_change(self, change: Any) -> None:
        if not self._view_lock and hasattr(self, "_layers"):
            self._view_dirty = True
            self._apply_view(self.viewport)

    def _set_view(self, view: Viewport) -> None:
        if (view.zoom, view.pan) == (self.zoom, self.pan) and view.view_size == self._shown:
            self._render_zoom_readout()
            return  # e.g. a pan against the image's edge: nothing new to draw
        # zoom first: pan is validated against it
        self._view_lock = True
        try:
            self.zoom = view.zoom
            self.pan = view.pan
        finally:
            self._view_lock = False
        self._view_dirty = True
        self._render_zoom_readout()

    def _apply_view(self, view: Viewport, *, force: bool = True) -> None:
        self._set_view(view)
        self._redraw(force=force)

    def _render_zoom_readout(self) -> None:
        percent = 100 * self.viewport.scale[0]
        self._zoom_readout.value = f'<span title="{_VIEW_HINT}">Zoom {self.zoom:.2f}x &middot; {percent:.0f}%</span>'

    @observe("message")
    def _on_message(self, change: Any) -> None:
        self._render_status()

    def _render_status(self) -> None:
        text = html.escape(self.message)
        color = "#b00020" if self._message_is_error else "#555"
        icon = "&#9888; " if self._message_is_error and text else ""
        self._status.value = f'<span style="color:{color}">{icon}{text}</span>'

    def _say(self, text: str, *, error: bool = False) -> None:
        self._message_is_error = error
        if text == self.message:
            self._render_status()  # same text, maybe another kind: the observer would not fire
        self.message = text

    def _link_controls(self) -> None:
        for name, control in self._controls.items():
            widgets.link((self, name), (control, "value"))

    def _after_edit(self, changed: bool) -> bool:
        # Whole-mask edits: redraw everything and tell listeners.
        with held():
            self._draw_overlay(None)
            self._draw_pointer_layer()
        self.set_trait("mask_version", self._editor.version)
        if changed:
            self._say("")
        return changed

    # -- events ----------------------------------------------------------------------------------------------

    def _to_image(self, x: float, y: float) -> tuple[float, float]:
        return self.viewport.to_image(x, y)

    def _canvas_point(self, event: Mapping[str, Any]) -> tuple[float, float]:
        # ipycanvas sends canvas pixels (x, y); ipyevents CSS pixels from the element's corner, rounded.
        if "relativeX" in event:
            w, h = self._shown
            sx = w / float(event.get("boundingRectWidth") or w)
            sy = h / float(event.get("boundingRectHeight") or h)
            return float(event["relativeX"]) * sx, float(event["relativeY"]) * sy
        return float(event["x"]), float(event["y"])

    def _mark(self, box: Box | None) -> None:
        self._dirty = union_box(self._dirty, box)

    @_reported
    def _on_mouse_down(self, x: float, y: float) -> None:
        self._pointer = (x, y)
        if self._space_held or self._panning is not None:  # this press pans (see _on_dom_event)
            return
        self._press_version = self._editor.version
        ix, iy = self._to_image(x, y)
        if self.tool == SEGMENT:  # its clicks arrive through the tool's own event, with the modifier keys
            return
        self._mark(
            self._editor.press(
                self.tool, ix, iy, brush_size=self.brush_size, tolerance=self.tolerance, subtract=self.subtract
            )
        )
        if self._editor.drawing is None:  # the wand acts at once
            self.set_trait("mask_version", self._editor.version)
        self._redraw(force=True)

    @_reported
    def _on_mouse_move(self, x: float, y: float) -> None:
        # Called for every pointer move: record and rasterise, redraw at most every redraw_interval.
        self._pointer = (x, y)
        if self._panning is not None:
            return
        if self._editor.drawing is not None:
            self._mark(self._editor.drag(*self._to_image(x, y)))
        self._redraw()

    @_reported
    def _on_mouse_up(self, x: float, y: float) -> None:
        self._pointer = (x, y)
        if self._panning is None:  # a pan ends on ipyevents' mouse-up
            self._finish_gesture(x, y)

    @_reported
    def _on_mouse_out(self, x: float, y: float) -> None:
        # Leaving the canvas ends a gesture: its mouse-up would never reach us. Nor would space's key-up.
        self._pointer = None
        self._space_held = False
        self._panning = None
        self._finish_gesture(x, y)

    def _finish_gesture(self, x: float, y: float) -> None:
        self._press_version = None
        if self._editor.drawing is not None:
            self._mark(self._editor.release(*self._to_image(x, y)))
            self.set_trait("mask_version", self._editor.version)
        self._redraw(force=True)

    @_reported
    def _on_dom_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event") or event.get("type")
        if kind in ("keydown", "keyup"):
            self._on_key(event)
        elif kind == "wheel":
            x, y = self._canvas_point(event)
            factor = wheel_factor(float(event.get("deltaY") or 0), int(event.get("deltaMode") or 0))
            self._apply_view(self.viewport.zoomed_at(x, y, self.zoom * factor))
        elif kind == "mousedown" and (event.get("button") == 1 or (event.get("button") == 0 and self._space_held)):
            self._start_pan(self._canvas_point(event))
        elif kind == "mousemove" and self._panning is not None:
            if not event.get("buttons", 1):  # released outside the canvas
                self._end_pan()
                return
            (px, py), (x, y) = self._panning, self._canvas_point(event)
            self._panning = (x, y)
            self._apply_view(self.viewport.panned_by(x - px, y - py), force=False)
        elif kind == "mouseup" and self._panning is not None:
            self._end_pan()

    def _end_pan(self) -> None:
        self._panning = None
        self._redraw(force=True)

    def _start_pan(self, point: tuple[float, float]) -> None:
        """Start panning: a middle-button press, or a press with space held. ipycanvas reports the same
        press as a plain mouse-down, usually first: take back what it began (a stroke under way, or the
        wand's selection)."""
        if self._editor.drawing is not None:
            self._editor.cancel()
            self._view_dirty = True
        elif self._press_version is not None and self._editor.version != self._press_version:
            self.undo()
        self._press_version = None
        self._panning = point
        self._redraw(force=True)

    def _on_key(self, event: dict[str, Any]) -> None:
        if event.get("key") == " ":  # held: the mouse pans instead of drawing
            self._space_held = (event.get("event") or event.get("type")) == "keydown"
            return
        if (event.get("event") or event.get("type")) != "keydown":
            return
        action = key_action(event)
        if action == "smaller":
            self.brush_size = min(self.brush_size - 1, round(self.brush_size / 1.2))
        elif action == "bigger":
            self.brush_size = max(self.brush_size + 1, round(self.brush_size * 1.2))
        elif action == "swap":
            if self.tool in ("brush", "eraser"):
                self.tool = "eraser" if self.tool == "brush" else "brush"
            else:
                self.subtract = not self.subtract
        elif action == "undo":
            self.undo()
        elif action == "redo":
            self.redo()

    @_reported
    def _run_button(self, action: Callable[[], Any]) -> None:
        action()

    @_reported
    def _on_upload(self, change: Any) -> None:
        files = change["new"]
        if not files:
            return
        upload = files[0]
        name = upload.get("name") or "the upload"
        try:
            self.load_mask(bytes(upload["content"]))
        except MaskError as exc:
            self._say(f"{name}: {exc} The current mask is unchanged.", error=True)
        else:
            self._say(f"Loaded the mask from {name}.")
        finally:
            self._upload.value = ()

    # -- drawing ---------------------------------------------------------------------------------------------

    def _redraw(self, *, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._last_redraw < self.redraw_interval:
            return
        self._last_redraw = now
        dirty, self._dirty = self._dirty, None
        whole, self._view_dirty = self._view_dirty, False
        with held():
            if whole:
                self._draw_image()
                self._draw_overlay(None)
            elif dirty is not None:
                self._draw_overlay(dirty)
            self._draw_pointer_layer()

    def _redraw_all(self) -> None:
        self._view_dirty = True
        self._lossless = True
        self._redraw(force=True)

    def _draw_image(self) -> None:
        """Send the visible part of the image, at the canvas's size.

        A whole redraw (a new view in the browser, a new image) goes as lossless RGBA (PNG); frames of a
        zoom or pan go as RGB, which ipycanvas sends as JPEG: encoding a 512x512 photo as PNG took 100 to
        500 ms here, as JPEG 5 ms, and a pan sends one per frame. The mask overlay is always lossless.
        """
        view, lossless, self._lossless = self.viewport, self._lossless, False
        if view.zoom == 1.0:
            pixels = self._image_rgba if lossless else self._image_rgba[..., :3]
        else:
            pixels = np.asarray(render_view(self._pyramid, view).convert("RGBA" if lossless else "RGB"))
        image_layer = self._layers[0]
        image_layer.clear()
        image_layer.put_image_data(pixels, 0, 0)

    def _draw_overlay(self, box: Box | None) -> None:
        """Render the overlay for the image ``box`` (everything visible when None) and send it as RGBA."""
        shown, view = self._shown, self.viewport
        target = None
        if box is not None:
            target = view.view_box(grow_box(box, blur_margin(self.blur_factor)))
            if target is None:
                return
        rgba, (dx, dy) = render_overlay(
            self._editor.mask,
            shown,
            color=self.color,
            opacity=self.opacity,
            blur_factor=self.blur_factor,
            box=target,
            region=view.visible,
        )
        # the Segment tool's proposal and points, if any, in the same view
        rgba = self._segment.overlay(rgba, shown, target, view.visible)
        layer = self.overlay_layer
        layer.clear_rect(dx, dy, rgba.shape[1], rgba.shape[0])
        layer.put_image_data(rgba, dx, dy)

    def _draw_pointer_layer(self) -> None:
        layer = self._layers[2]
        layer.clear()
        view = self.viewport
        gesture = self._editor.drawing
        if gesture is not None and gesture.stroke is None and len(gesture.points) > 1:
            pts = [view.to_view(x, y) for x, y in gesture.points]
            layer.set_line_dash([5, 4])
            layer.line_width = 1.5
            layer.stroke_style = "#ffffff"
            (ax, ay), (bx, by) = pts[0], pts[-1]
            if gesture.tool == "rectangle":
                layer.stroke_rect(min(ax, bx), min(ay, by), abs(bx - ax), abs(by - ay))
            elif gesture.tool == "ellipse":
                layer.begin_path()
                layer.ellipse(
                    (ax + bx) / 2,
                    (ay + by) / 2,
                    max(abs(bx - ax) / 2, 0.5),
                    max(abs(by - ay) / 2, 0.5),
                    0,
                    0,
                    2 * np.pi,
                )
                layer.stroke()
            else:
                layer.stroke_lines([*pts, pts[0]])
            layer.set_line_dash([])
        if self._pointer is not None and self.tool in ("brush", "eraser"):
            x, y = self._pointer
            radius = max(self.brush_size * view.scale[0] / 2, 1.0)
            layer.line_width = 1.0
            layer.stroke_style = "#000000"
            layer.stroke_circle(x, y, radius + 1)
            layer.stroke_style = "#ffffff"
            layer.stroke_circle(x, y, radius)
