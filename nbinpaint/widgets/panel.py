"""`ParameterPanel`: the inpainting parameters, Generate and Cancel, progress, live previews, errors and code.

The panel works on any image and mask: its own ``image``/``mask`` traits, or a `MaskCanvas` it reads a copy
of the mask from at the moment Generate is pressed. Runs go through `nbinpaint.generation` on a worker
thread, so the notebook (and the canvas) stay responsive; results go to a `History` (the kernel's shared one
by default) and to `on_result` listeners such as the studio's viewer.

The panel is a view over `nbinpaint.studio_state.PanelState` (its values, lookups and run bookkeeping, no
widgets); the controls of the request fields are made from the parameter table's rows
(`nbinpaint.parameters.PANEL`), so a new row appears here with its tooltip and greying-out.

Which controls are enabled is decided from the selected pipeline's ``__call__`` signature
(`nbinpaint.generation.pipeline_parameters`, looked up in the background whenever the model changes); a
control the pipeline does not take is disabled, its tooltip says why, and one sentence under the basic
controls names them all. A classical fill also has its prompt and seed off: it accepts them for the common
call shape but reads neither.

Layout, top to bottom, about 400 px wide: the basic controls (model, prompt, negative prompt, strength,
steps, seed), Generate, the status line (which says where results are saved), the latest result
(`ResultView`) and Show code, then the rest folded under "Advanced".
"""

from __future__ import annotations

import contextlib
import html
from typing import Any

import ipywidgets as widgets
from PIL import Image
from traitlets import observe

from nbinpaint.errors import NbinpaintError
from nbinpaint.generation import GenerationController, GenerationRun
from nbinpaint.parameters import PANEL, Parameter, short_names
from nbinpaint.requests import as_mask, as_rgb
from nbinpaint.studio_state import (
    FIELD_WORDS,
    GATES,
    TOOLTIPS,
    PanelState,
    reasons_sentence,
    result_caption,
    whole,
)
from nbinpaint.widgets.grid import png_bytes, thumbnail
from nbinpaint.widgets.panel_run import PANEL_WIDTH, RUN_CLASS, RunBox
from nbinpaint.widgets.picker import ModelPicker, guide_models, model_choices

__all__ = [
    "FIELD_WORDS",
    "PANEL_WIDTH",
    "RUN_CLASS",
    "TOOLTIPS",
    "ParameterPanel",
    "guide_models",
    "model_choices",
    "reasons_sentence",
    "result_caption",
]

_STYLE = {"description_width": "100px"}
# Full width without side margins: a control's default 2 px margins would push it past the panel's edge.
_WIDE = widgets.Layout(width="100%", margin="2px 0")
_ROW = widgets.Layout(align_items="center", flex_flow="row wrap", width="100%")
#: The checkbox of each `GATES` toggle: its description and width.
_TOGGLES = {"crop": ("Crop around mask", "140px"), "controlnet": ("ControlNet inpaint", "150px")}


def _label(text: str) -> widgets.HTML:
    """A field's name above it (compact: an ipywidgets Label is a full 28 px row)."""
    return widgets.HTML(f"<b>{html.escape(text)}</b>", layout=widgets.Layout(height="20px", margin="0"))


def _control(row: Parameter) -> widgets.ValueWidget:
    """The control of a table row: a text area, a checkbox, a drop-down of its choices, a slider from its
    ``slider``, or a number box."""
    w = widgets
    if row.kind == "text":
        return w.Textarea(rows=3, layout=_WIDE, placeholder=row.help)
    if row.kind == "bool":
        return w.Checkbox(description=row.label, indent=False, layout=_WIDE)
    if row.kind == "choice":
        return w.Dropdown(options=row.options, description=row.label, style=_STYLE, layout=_WIDE)
    if row.slider is None:
        return w.IntText(description=row.label, style=_STYLE, layout=w.Layout(width="230px"))
    low, high, step = row.slider
    slider = w.IntSlider if whole(row) else w.FloatSlider
    if row.name in GATES:  # beside its toggle: a short description
        style, layout = {"description_width": "initial"}, w.Layout(flex="1 1 150px", width="auto")
        return slider(min=low, max=high, step=step, description=row.label, style=style, layout=layout)
    return slider(min=low, max=high, step=step, description=row.label, style=_STYLE, layout=_WIDE)


class ParameterPanel(widgets.VBox, PanelState):
    """The inpainting parameters with Generate and Cancel, bound to an image and mask or to a `MaskCanvas`.

    Parameters
    ----------
    image, mask:
        What to inpaint (anything `nbinpaint.requests.as_rgb` / ``as_mask`` reads), when there is no canvas.
    canvas:
        A `MaskCanvas` to read the image and mask from (a copy, taken when Generate is pressed); its
        ``blur_factor`` follows the panel's so the canvas previews the feathered mask.
    manager:
        The pipeline manager; None uses the kernel's shared one at each run.
    history:
        Where results are recorded; the kernel's shared `History` when None.
    **kwargs:
        Initial values of the traits (``model=``, ``prompt=``, ``steps=``...) and VBox keywords.
    """

    def __init__(
        self,
        image: Any = None,
        mask: Any = None,
        *,
        canvas: Any = None,
        manager: Any = None,
        history: Any = None,
        controller: GenerationController | None = None,
        **kwargs: Any,
    ) -> None:
        self.canvas = canvas
        self._build()
        kwargs.setdefault("layout", widgets.Layout(width=f"{PANEL_WIDTH}px", max_width="100%"))
        state = {"history": history, "manager": manager, "controller": controller, "start": False}
        super().__init__(children=self._layout(), **state, **short_names(kwargs))  # num_inference_steps= too
        if image is not None:
            self.image = image  # converted by the validator
        if mask is not None:
            self.mask = mask
        self._reserve_result_box()
        for name, control in self.controls.items():
            widgets.link((self, name), (control, "value"))
        if canvas is not None:
            widgets.link((self, "blur_factor"), (canvas, "blur_factor"))
        self._render_reasons()
        self._on_prompt(None)
        self.say(self.saving_note())
        self.activate()

    # -- building ------------------------------------------------------------------------------------------

    def _build(self) -> None:
        w = widgets
        #: The control of each trait (linked both ways): set ``controls["steps"].value`` as a user would.
        self.controls: dict[str, widgets.ValueWidget] = {"model": ModelPicker()}
        self.controls.update({row.name: _control(row) for row in PANEL})
        self.controls["lock_seed"] = w.Checkbox(description="lock", indent=False, layout=w.Layout(width="70px"))
        for toggle, (text, width) in _TOGGLES.items():
            self.controls[toggle] = w.Checkbox(description=text, indent=False, layout=w.Layout(width=width))
        self.controls["compare_weighting"] = w.Checkbox(
            description="Compare plain vs weighted", indent=False, layout=_WIDE
        )
        self.dice = w.Button(icon="random", tooltip="Draw a new random seed", layout=w.Layout(width="40px"))
        self.dice.on_click(lambda _b: self.roll_seed())
        # The widget(s) each panel field switches off; they show the field's tooltip. A toggle goes off with
        # its field unless the toggle itself is what switches the field on (ControlNet changes the pipeline).
        self._field_widgets: dict[str, list[widgets.Widget]] = {}
        for row in PANEL:
            toggle, why = GATES.get(row.name, (None, ""))
            self._field_widgets[row.name] = [self.controls[toggle]] if why is None else []
            self._field_widgets[row.name].append(self.controls[row.name])
        self._field_widgets["seed"] += [self.controls["lock_seed"], self.dice]
        self._field_widgets["prompt_weighting"] = [self.controls["compare_weighting"]]
        for name in ("model", "controlnet"):
            self.controls[name].tooltip = TOOLTIPS[name]
        self.controls["lock_seed"].tooltip = "Keep this seed for every run"

        self.run_box = RunBox(self._on_generate_click, self.cancel, self.show_code, self.export)
        for name in ("generate_button", "cancel_button", "progress", "result_view", "details", "code_button", "code"):
            setattr(self, name, getattr(self.run_box, name))
        self.export_button, self.preview = self.run_box.export_button, self.result_view.preview
        self._status, self._details_box = self.run_box.status, self.run_box.details_box
        self.condition = w.Image(format="png", layout=w.Layout(display="none", width="128px"))
        self._weighting = w.HTML()
        self._model_note = w.HTML()
        self._reasons = w.HTML()

    def _place(self, row: Parameter) -> list[widgets.Widget]:
        """A row's control with what goes beside or around it."""
        c, w = self.controls, widgets
        if row.kind == "text":
            return [_label(row.label), c[row.name], *([self._weighting] if row.name == "prompt" else [])]
        if row.name == "seed":
            return [w.HBox([c["seed"], self.dice, c["lock_seed"]], layout=_ROW)]
        if row.name in GATES and GATES[row.name][0] in _TOGGLES:  # a toggle that is a row has its own place
            toggle = GATES[row.name][0]
            placed = [w.HBox([c[toggle], c[row.name]], layout=_ROW)]
            return [*placed, self.condition] if toggle == "controlnet" else placed
        return [c[row.name]]

    def _layout(self) -> list[widgets.Widget]:
        w = widgets
        basic = [widget for row in PANEL if not row.advanced for widget in self._place(row)]
        advanced = [widget for row in PANEL if row.advanced for widget in self._place(row)]
        advanced.append(self.controls["compare_weighting"])
        #: Everything but the basic controls, folded (open it with ``advanced.selected_index = 0``).
        self.advanced = widgets.Accordion(
            children=[w.VBox(advanced, layout=_WIDE)], titles=("Advanced",), selected_index=None, layout=_WIDE
        )
        return [self.controls["model"], self._model_note, *basic, self._reasons, self.run_box, self.advanced]

    # -- showing the state ---------------------------------------------------------------------------------

    @observe("status", "status_is_error")
    def _on_status(self, change: Any) -> None:
        self.run_box.show_status(self.status, self.status_is_error)

    @observe("model_state", "model_note")
    def _on_model_note(self, change: Any) -> None:
        note = html.escape(self.model_note)
        if self.model_state == "loading":
            self._model_note.value = f"<i>{note}</i>"
        elif self.model_state == "error":
            self._model_note.value = f'<span style="color:#b00020">&#9888; {note}</span>'
        else:
            style = "color:#555;font-size:12px;line-height:1.4;overflow-wrap:anywhere"
            self._model_note.value = f'<div style="{style}">{note}</div>'

    @observe("disabled_reasons", "reasons_model", "crop", "controlnet", "enable_pag")
    def _on_reasons(self, change: Any) -> None:
        if self._ready:
            self._render_reasons()

    def _render_reasons(self) -> None:
        """Grey out what the pipeline (or an off toggle) leaves unused, with the reason as the tooltip."""
        reasons = self.shown_reasons()
        for field, controls in self._field_widgets.items():
            reason = reasons.get(field)
            toggled_off = field in GATES and not getattr(self, GATES[field][0])
            for control in controls:
                control.disabled = reason is not None or (toggled_off and control is self.controls.get(field))
                if control is not self.dice and control is not self.controls["lock_seed"]:  # own tooltips
                    control.tooltip = f"Off: {reason}." if reason else TOOLTIPS[field]
        sentence = self.reasons_text()
        self._reasons.value = (
            f'<div style="color:#666;font-size:12px;line-height:1.4">{html.escape(sentence)}</div>' if sentence else ""
        )

    @observe("prompt")
    def _on_prompt(self, change: Any) -> None:
        if not self._ready and change is not None:
            return
        from nbinpaint.weighting import has_weighting_syntax

        weighted = has_weighting_syntax(self.prompt)
        self._weighting.value = (
            '<span style="color:#555;font-size:12px">Compel weighting syntax: the prompt runs with word weights</span>'
            if weighted
            else ""
        )

    @observe("controlnet")
    def _on_controlnet(self, change: Any) -> None:
        if not self._ready:
            return
        if not self.controlnet:
            self.condition.layout.display = "none"
            return
        with contextlib.suppress(NbinpaintError):  # no image yet: the condition appears with the first run
            self._show_condition(*self.inputs())

    def _show_condition(self, image: Image.Image, mask: Image.Image) -> None:
        from nbinpaint.control import condition_preview, make_inpaint_condition

        preview = condition_preview(make_inpaint_condition(image, mask))
        self.condition.value = png_bytes(thumbnail(preview, 128), compress_level=1)
        self.condition.layout.display = "block"

    # -- inputs --------------------------------------------------------------------------------------------

    def inputs(self) -> tuple[Image.Image, Image.Image]:
        """Copies of the image and mask the next run uses (from the canvas when one is bound)."""
        if self.canvas is not None:
            return self.canvas.image.copy(), self.canvas.mask
        return super().inputs()

    def set_inputs(self, image: Any = None, mask: Any = None) -> None:
        """Replace the base image and/or the mask (on the canvas when bound: undoable there)."""
        if self.canvas is None:
            super().set_inputs(image, mask)
            return
        if image is not None:
            self.canvas.set_image(as_rgb(image))
            self._reserve_result_box()
        if mask is not None:
            self.canvas.load_mask(as_mask(mask))

    @observe("image")
    def _on_image(self, change: Any) -> None:
        self._reserve_result_box()

    def _reserve_result_box(self) -> None:
        """Before the first result, size the result box like the base image, so nothing moves when one comes."""
        base = self.canvas.image if self.canvas is not None else self.image
        if base is not None and self.result_view.after is None:
            self.result_view.reserve(base.size)

    # -- running -------------------------------------------------------------------------------------------

    def generate(self) -> GenerationRun:
        """Start a run with the current values and a copy of the mask; returns at once.

        An unlocked seed is replaced by a new one first (and shown). Raises `GenerationBusy` while a run is
        going on, and `NbinpaintError` when there is no image or mask; the Generate button shows both in the
        status line instead.
        """
        self.controller.check_idle()  # before the seed is rolled: the running run's seed stays on show
        image, mask = self.inputs()
        if not self.lock_seed and "seed" not in self.disabled_reasons:
            self.roll_seed()
        job = self.generation_job(image, mask)  # filtered in the run, by the parameters of the model it runs
        if self.controlnet:
            self._show_condition(image, mask)
        self._start(job, "generation")
        return self.last_run

    def run_job(self, job: Any, label: str) -> GenerationRun:
        """Run ``job(manager)`` in the background like Generate (chains, refiner...); its `InpaintResult` or
        ``ChainResult`` (final stage) is recorded and shown as a Generate result is."""
        self._start(self.wrapped_job(job, label), label)
        return self.last_run

    def _start(self, job: Any, label: str) -> None:
        # The panel shows "running" before the thread starts: a run that fails at once must not have its
        # error overwritten by "Starting…".
        self.controller.check_idle()
        self._idle(running=True)
        self.say(f"Starting the {label}…")
        try:
            self.last_run = self.controller.start(
                job, label=label, on_progress=self._on_progress, on_preview=self._on_preview, on_finish=self._on_finish
            )
        except BaseException:
            self._idle()
            raise

    def cancel(self) -> bool:
        """Stop the current run at the end of its denoising step; False when nothing runs."""
        cancelled = self.controller.cancel()
        if cancelled:
            self.say("Cancelling at the end of this step…")
        return cancelled

    def _on_generate_click(self) -> None:
        try:
            self.generate()
        except NbinpaintError as error:
            self.say(str(error), error=True)

    # -- callbacks from the worker thread ------------------------------------------------------------------

    def _on_progress(self, step: int, total: int) -> None:
        self.run_box.show_progress(step, total)
        run = self.controller.current  # set before the thread starts (last_run is set after)
        if run is not None and not run.cancel_requested:
            self.say(f"Step {step}/{total}…")

    def _on_preview(self, step: int, total: int, image: Image.Image) -> None:
        self.result_view.show_preview(image)

    def _on_finish(self, run: GenerationRun) -> None:
        try:
            if run.status == "done":
                self.say(self.record(run))
                self.run_box.show_done(self.results[0], self.captions[0])
                if self.run_box.code_shown:  # the code on show reproduces the latest result, never an older one
                    self.show_code()
                self.notify_result()
            else:
                self.run_box.show_stopped(None if run.status == "cancelled" else run.traceback)
                self.say(run.message, error=run.status != "cancelled")
        finally:
            self._idle()

    def _idle(self, running: bool = False) -> None:
        self.set_trait("running", running)
        self.run_box.set_running(running)

    # -- code ----------------------------------------------------------------------------------------------

    def show_code(self) -> str | None:
        """Show the stand-alone diffusers script that reproduces the last result (`nbinpaint.codegen.code_for`)."""
        text = self.code_text()
        if text is not None:
            self.run_box.show_code(text)
        return text

    def close(self) -> None:
        """Stop listening to the history, cancel a run, then close as any widget."""
        self.detach()
        super().close()
