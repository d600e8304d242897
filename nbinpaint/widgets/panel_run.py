"""`RunBox`: the panel's Generate and Cancel, progress, status line, error details, latest result and code.

Split from `nbinpaint.widgets.panel` so the panel stays a form: this box only shows what a run does (it is
told, and never asks the panel), so a layout can move it as one (the studio puts it under the canvas).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
from PIL import Image

from nbinpaint.requests import InpaintResult
from nbinpaint.studio_state import result_caption
from nbinpaint.widgets.result import ResultView

__all__ = ["PANEL_WIDTH", "RUN_CLASS", "RunBox"]

RUN_CLASS = "nbinpaint-run"
"""CSS class of the panel's `run_box` (Generate, status, result, code)."""
PANEL_WIDTH = 400
"""The panel's width in CSS pixels; the result is shown up to this wide, less padding."""
_ROW = widgets.Layout(align_items="center", flex_flow="row wrap", width="100%")


class RunBox(widgets.VBox):
    """What a run shows, top to bottom; the buttons call ``on_generate``, ``on_cancel``, ``on_code`` and
    ``on_export`` with no argument."""

    def __init__(
        self,
        on_generate: Callable[[], Any],
        on_cancel: Callable[[], Any],
        on_code: Callable[[], Any],
        on_export: Callable[[], Any],
    ) -> None:
        w = widgets
        self.generate_button = w.Button(description="Generate", icon="play", button_style="primary")
        self.generate_button.on_click(lambda _b: on_generate())
        self.cancel_button = w.Button(description="Cancel", icon="stop", disabled=True, layout=w.Layout(width="100px"))
        self.cancel_button.tooltip = "Stop at the end of the current denoising step"
        self.cancel_button.on_click(lambda _b: on_cancel())
        self.progress = w.IntProgress(
            value=0, min=0, max=1, description="", layout=w.Layout(flex="1 1 60px", width="auto")
        )
        #: The latest result, large, with a Result / Before toggle; the live preview of a run shows in its place.
        self.result_view = ResultView(max_width=PANEL_WIDTH - 16)
        self.status = w.HTML(layout=w.Layout(min_height="1.5em", width="100%"))
        self.details = w.Output()
        self.details_box = w.Accordion(children=[self.details], titles=("Details",))
        self.details_box.layout.display = "none"
        self.code_button = w.Button(description="Show code", icon="code")
        self.code_button.tooltip = "The stand-alone diffusers script that reproduces the current result"
        self.code_button.on_click(lambda _b: on_code())
        self.export_button = w.Button(description="Export", icon="download")
        self.export_button.tooltip = "Write that script with its image and mask into a folder"
        self.export_button.on_click(lambda _b: on_export())
        self.code = w.Textarea(layout=w.Layout(width="100%", height="260px", display="none"))
        super().__init__(
            [
                w.HBox([self.generate_button, self.cancel_button, self.progress], layout=_ROW),
                self.status,
                self.details_box,
                self.result_view,
                w.HBox([self.code_button, self.export_button], layout=_ROW),
                self.code,
            ],
            layout=w.Layout(width="100%", margin="2px 0"),
        )
        self.add_class(RUN_CLASS)

    def show_status(self, text: str, error: bool) -> None:
        colour = "#b00020" if error else "#444"
        icon = "&#9888; " if error and text else ""
        self.status.value = f'<div style="color:{colour};line-height:1.4">{icon}{html.escape(text)}</div>'

    def set_running(self, running: bool) -> None:
        """Generate off and Cancel on while a run goes on; a new run starts with an empty bar, no details."""
        self.generate_button.disabled = running
        self.cancel_button.disabled = not running
        if running:
            self.progress.value, self.progress.bar_style = 0, ""
            self.details_box.layout.display = "none"

    def show_progress(self, step: int, total: int) -> None:
        self.progress.max = max(total, 1)
        self.progress.value = min(step, total)

    def show_done(self, result: InpaintResult, label: str) -> None:
        """A full bar and ``result``'s first image (with the base image for Before)."""
        self.progress.value = self.progress.max
        image = next((i for i in result.images if isinstance(i, Image.Image)), None)
        if image is None:
            self.result_view.end_preview()
            return
        base = result.request.image if isinstance(result.request.image, Image.Image) else None
        caption = " ".join(filter(None, [label, result_caption(result)]))
        self.result_view.set_result(base, image, caption)

    def show_stopped(self, traceback: str | None) -> None:
        """A cancelled run (``traceback`` None) or a failed one (its traceback under "Details")."""
        self.result_view.end_preview()
        self.progress.bar_style = "warning" if traceback is None else "danger"
        if traceback is not None:
            self.details.clear_output()
            self.details.append_stdout(traceback)
            self.details_box.layout.display = "flex"

    def show_code(self, text: str) -> None:
        self.code.value = text
        self.code.layout.display = "block"

    @property
    def code_shown(self) -> bool:
        return self.code.layout.display != "none"
