"""`ResultView`: the latest result, large, with a Result / Before toggle; live previews show in its place.

Its box keeps one size from before the first run (a dashed placeholder the image's shape) to after it, so
the controls around it never jump when a result arrives. Images are sent as JPEG at display size (see
`nbinpaint.widgets.grid.jpeg_bytes`), each encoded once; downloads stay in the studio's grid as PNG.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets
from PIL import Image
from traitlets import Enum, Int, Unicode, observe, validate

from nbinpaint.widgets.grid import jpeg_bytes, thumbnail

__all__ = ["RESULT_CLASS", "ResultView", "shown_size"]

_PLACEHOLDER = (
    '<div style="display:flex;align-items:center;justify-content:center;width:100%;height:100%;'
    'color:#777;font-size:13px;text-align:center;padding:8px;box-sizing:border-box">{text}</div>'
)

_CAPTION_STYLE = "font-size:12px;line-height:1.3;color:#333;overflow-wrap:anywhere"
RESULT_CLASS = "nbinpaint-result"
"""CSS class of the shown result image (for tests and themes)."""


def shown_size(size: tuple[int, int], max_width: int, max_height: int) -> tuple[int, int]:
    """``size`` scaled, aspect kept, to fit ``max_width`` x ``max_height`` (small images are enlarged).

    Example: a 448x296 image in 384x512 is shown at 384x254; a 64x64 one in 384x512 at 384x384.
    """
    scale = min(max_width / size[0], max_height / size[1])
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


class ResultView(widgets.VBox):
    """The latest result at up to ``max_width`` x ``max_height`` CSS pixels, with a toggle to the base image.

    Parameters
    ----------
    max_width, max_height:
        The largest box the image is shown in (aspect kept).
    """

    max_width = Int(384, help="Widest the image is shown, in CSS pixels.")
    max_height = Int(512, help="Tallest the image is shown, in CSS pixels.")
    showing = Enum(("result", "before"), "result", help="What the view shows: the result or the base image.")
    caption = Unicode("", help="One line under the image: what made the result.")
    placeholder = Unicode(
        "Draw a mask, then Generate: the result appears here.", help="Text of the box before the first result."
    )

    def __init__(self, **kwargs: Any) -> None:
        self._before: Image.Image | None = None
        self._after: Image.Image | None = None
        self._encoded: dict[str, bytes] = {}
        self._size = (384, 288)
        self.toggle = widgets.ToggleButtons(
            options=[("Result", "result"), ("Before", "before")],
            tooltips=["The latest result", "The base image it was made from"],
            style={"button_width": "64px"},
            disabled=True,
        )
        self.image = widgets.Image(format="jpeg", layout=widgets.Layout(display="none", object_fit="contain"))
        self.image.add_class(RESULT_CLASS)
        #: The live preview of a run in progress (shown in the image's place; JPEG at its own size).
        self.preview = widgets.Image(format="jpeg", layout=widgets.Layout(display="none", object_fit="contain"))
        self._placeholder = widgets.HTML(layout=widgets.Layout(border="1px dashed #bbb", margin="2px 0"))
        self._caption = widgets.HTML(layout=widgets.Layout(flex="1 1 120px", width="auto"))
        self.toggle.layout.flex = "0 0 auto"  # the caption wraps below it in a narrow box, never the buttons
        below = widgets.HBox(
            [self.toggle, self._caption],
            layout=widgets.Layout(align_items="center", flex_flow="row wrap", width="100%"),
        )
        super().__init__(children=[self._placeholder, self.image, self.preview, below], **kwargs)
        widgets.link((self.toggle, "value"), (self, "showing"))
        self._resize()
        self._show_current()

    @validate("max_width", "max_height")
    def _valid_size(self, proposal: Any) -> int:
        return min(max(int(proposal["value"]), 64), 2048)

    # -- Python API ----------------------------------------------------------------------------------------

    @property
    def after(self) -> Image.Image | None:
        """The result shown (None before the first)."""
        return self._after

    @property
    def before(self) -> Image.Image | None:
        """The base image the result was made from."""
        return self._before

    @property
    def size(self) -> tuple[int, int]:
        """The box's CSS size (width, height): the image's shape fitted into max_width x max_height."""
        return self._size

    def reserve(self, image_size: tuple[int, int]) -> None:
        """Size the box for images of ``image_size`` (before the first result: the placeholder's shape)."""
        self._size = shown_size(image_size, self.max_width, self.max_height)
        self._resize()

    def set_result(self, before: Image.Image | None, after: Image.Image, caption: str = "") -> None:
        """Show ``after`` (the result) with ``caption``; the toggle goes back to it and can show ``before``."""
        self._before, self._after = before, after
        self._encoded = {}
        self._size = shown_size(after.size, self.max_width, self.max_height)
        self.caption = caption
        self.toggle.disabled = before is None
        self.preview.layout.display = "none"
        self._placeholder.layout.display = "none"
        if self.showing == "result":
            self._draw()
        else:
            self.showing = "result"  # draws
        self._resize()

    def show_preview(self, image: Image.Image) -> None:
        """Show a run's live preview in the image's place until the result arrives."""
        self.preview.value = jpeg_bytes(thumbnail(image, max(self._size)))
        self._placeholder.layout.display = "none"
        self.image.layout.display = "none"
        self.preview.layout.display = "block"

    def end_preview(self) -> None:
        """Hide the preview (the run ended without a result): the last result, or the placeholder, again."""
        self.preview.layout.display = "none"
        self._show_current()

    # -- drawing -------------------------------------------------------------------------------------------

    @observe("showing")
    def _on_showing(self, change: Any) -> None:
        self._draw()

    @observe("caption", "placeholder")
    def _on_text(self, change: Any) -> None:
        self._caption.value = f'<div style="{_CAPTION_STYLE}">{html.escape(self.caption)}</div>' if self.caption else ""
        self._resize()

    @observe("max_width", "max_height")
    def _on_bounds(self, change: Any) -> None:
        shape = self._after.size if self._after is not None else self._size
        self._size = shown_size(shape, self.max_width, self.max_height)
        self._encoded = {}
        self._resize()
        self._draw()

    def _draw(self) -> None:
        image = self._after if self.showing == "result" or self._before is None else self._before
        if image is None:
            return
        key = "result" if image is self._after else "before"
        if key not in self._encoded:
            shown = (
                image.convert("RGB").resize(self._size, Image.Resampling.LANCZOS) if image.size != self._size else image
            )
            self._encoded[key] = jpeg_bytes(shown)
        self.image.value = self._encoded[key]
        self._show_current()

    def _show_current(self) -> None:
        if self.preview.layout.display == "block":
            return
        has_result = self._after is not None
        self.image.layout.display = "block" if has_result else "none"
        self._placeholder.layout.display = "none" if has_result else "block"

    def _resize(self) -> None:
        width, height = (f"{side}px" for side in self._size)
        for box in (self.image, self.preview, self._placeholder):
            box.layout.width, box.layout.height = width, height
        self._placeholder.value = _PLACEHOLDER.format(text=html.escape(self.placeholder))
        self.layout.width = width
