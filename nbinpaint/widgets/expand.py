"""`ExpandControls`: the studio's outpainting row, one Expand button per side with a size and a start fill.

A click runs `nbinpaint.outpainting.run` on the canvas's image with the panel's settings (model, prompt,
steps, seed, ControlNet...) through the panel's own run machinery, so the result is shown, recorded and
coded like a Generate result; "Use as base image" then continues on the larger picture. The buttons are
greyed out, with the reason as their tooltip, while a run is going on and where the selected pipeline
cannot outpaint (`nbinpaint.outpainting.unavailable`).
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets
from traitlets import Unicode

from nbinpaint import outpainting
from nbinpaint.errors import NbinpaintError
from nbinpaint.generation import GenerationRun

__all__ = ["DEFAULT_GROW", "ExpandControls"]

DEFAULT_GROW = 128
"""Pixels one click adds, at first."""
_ARROWS = {"left": "arrow-left", "right": "arrow-right", "top": "arrow-up", "bottom": "arrow-down"}


class ExpandControls(widgets.VBox):
    """Expand buttons for a `ParameterPanel` (and the canvas it reads): ``panel.run_job`` runs them.

    ``reason`` is why the buttons are off now ("" when they are on).
    """

    reason = Unicode("", help="Why the Expand buttons are off now; empty when they are on.")

    def __init__(self, panel: Any, **kwargs: Any) -> None:
        self.panel = panel
        self.grow = widgets.BoundedIntText(
            value=DEFAULT_GROW,
            min=outpainting.MULTIPLE,
            max=2048,
            step=outpainting.MULTIPLE,
            description="by px",
            tooltip="Pixels to add on the side clicked (the canvas is then rounded up to a multiple of 8)",
            style={"description_width": "initial"},
            layout=widgets.Layout(width="120px"),
        )
        self.fill = widgets.Dropdown(
            options=list(outpainting.FILLS),
            value=outpainting.DEFAULT_FILL,
            description="start",
            tooltip="What the new area starts from: " + "; ".join(f"{k}: {v}" for k, v in outpainting.FILLS.items()),
            style={"description_width": "initial"},
            layout=widgets.Layout(width="140px"),
        )
        self.buttons = {
            side: widgets.Button(description=side.capitalize(), icon=icon, layout=widgets.Layout(width="auto"))
            for side, icon in _ARROWS.items()
        }
        for side, button in self.buttons.items():
            button.on_click(lambda _b, side=side: self._click(side))
        self._why = widgets.HTML()
        row = widgets.HBox(
            [widgets.HTML("<b>Expand</b>"), *self.buttons.values(), self.grow, self.fill],
            layout=widgets.Layout(align_items="center", flex_flow="row wrap", grid_gap="4px"),
        )
        super().__init__(children=[row, self._why], **kwargs)
        panel.observe(self._update, ["accepted", "model_state", "pipeline_name", "running"])
        self._update()

    def expand(self, side: str, pixels: int | None = None) -> GenerationRun:
        """Press the Expand button of ``side`` (``"left"``, ``"right"``, ``"top"``, ``"bottom"``) by ``pixels``
        (default: the size box's); returns the background run."""
        if side not in _ARROWS:
            raise ValueError(f"side must be one of {', '.join(_ARROWS)}; got {side!r}.")
        amount = self.grow.value if pixels is None else pixels
        panel = self.panel
        panel.controller.check_idle()
        image, _mask = panel.inputs()
        if not panel.lock_seed and "seed" not in panel.disabled_reasons:
            panel.roll_seed()
        values = {name: value for name, value in panel.values().items() if value is not None}
        fill = self.fill.value

        def job(manager: Any) -> Any:
            return outpainting.run(manager, image, fill=fill, **{side: amount}, **values)

        return panel.run_job(job, "outpainting")

    def _click(self, side: str) -> None:
        try:
            self.expand(side)
        except NbinpaintError as error:
            self.panel.say(str(error), error=True)

    def _update(self, change: Any = None) -> None:
        panel = self.panel
        if panel.model_state == "error":
            reason = "the selected model did not load (see the model line)"
        elif panel.model_state == "loading":
            reason = "the selected model is still loading"
        else:
            reason = outpainting.unavailable("inpaint", panel.accepted, panel.pipeline_name or panel.model) or ""
        self.reason = reason
        for button in self.buttons.values():
            button.disabled = bool(reason) or panel.running
            button.tooltip = f"Off: {reason}." if reason else "Extend the picture on this side and paint the new area"
        shown = reason and panel.model_state != "loading"
        self._why.value = f'<div style="color:#666;font-size:12px">Off: {html.escape(reason)}.</div>' if shown else ""

    def close(self) -> None:
        self.panel.unobserve(self._update, ["accepted", "model_state", "pipeline_name", "running"])
        super().close()
