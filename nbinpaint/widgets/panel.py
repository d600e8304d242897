"""`ParameterPanel`: the inpainting parameters, Generate and Cancel, progress, live previews, errors and code.

The panel works on any image and mask: its own ``image``/``mask`` traits, or a `MaskCanvas` it reads a copy
of the mask from at the moment Generate is pressed. Runs go through `nbinpaint.generation` on a worker
thread, so the notebook (and the canvas) stay responsive; results go to a `History` (the kernel's shared one
by default) and to `on_result` listeners such as the studio's viewer.

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
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as widgets
from ipywidgets import CallbackDispatcher
from PIL import Image
from traitlets import Bool, Dict, Float, Instance, Int, Unicode, default, observe, validate

from nbinpaint.backends import is_backend_id
from nbinpaint.control import DEFAULT_CONTROLNET
from nbinpaint.errors import NbinpaintError
from nbinpaint.generation import (
    GenerationController,
    GenerationRun,
    PipelineParameters,
    error_message,
    pipeline_parameters,
    start_thread,
)
from nbinpaint.requests import MAX_SEED, InpaintRequest, InpaintResult, as_mask, as_rgb, new_seed
from nbinpaint.widgets.grid import png_bytes, thumbnail
from nbinpaint.widgets.picker import ModelPicker, default_model, guide_models, model_choices, model_name
from nbinpaint.widgets.result import ResultView

__all__ = [
    "FIELD_WORDS",
    "PANEL_WIDTH",
    "RUN_CLASS",
    "TOOLTIPS",
    "ParameterPanel",
    "guide_models",
    "model_choices",
    "reasons_sentence",
]

#: What each control does, in the guide's words: what raising or lowering it changes.
TOOLTIPS: dict[str, str] = {
    "model": "The checkpoint (or classical fill) that repaints the mask: one of the guide's, or choose 'Your own "
    "repo id…' and type any Hugging Face repo id. Inpainting checkpoints blend edges best; regular ones change "
    "the unmasked area less; classical fills need no weights and no prompt.",
    "prompt": "What to paint into the masked area. Compel weights work: word++ or (word)1.3 stresses a word, "
    "word-- softens it.",
    "negative_prompt": "What to steer away from, e.g. 'blurry, bad anatomy, poor details'. Empty for none.",
    "strength": "How much noise the masked area gets. Higher (up to 1): more freedom, more steps run, further "
    "from the base image. Lower: closer to the base image, fewer steps, sometimes less quality.",
    "guidance_scale": "How closely to follow the prompt. Higher: a stricter reading of the prompt. Lower: looser, "
    "more varied results (0 or 1 turns guidance off).",
    "steps": "Denoising steps (num_inference_steps). More: slower, usually finer. Only int(steps x strength) run.",
    "seed": "The random seed: the same seed and settings give the same picture. Unlocked, each Generate draws "
    "a new seed and shows it here; locked, it is reused.",
    "padding_mask_crop": "Inpaint only a crop around the mask with this many pixels of margin, upscaled, then "
    "pasted back: more detail for small masks. Off: the whole image at once.",
    "blur_factor": "Feather the mask's edge first (mask_processor.blur). Higher: a softer blend into the image. "
    "0: a hard edge.",
    "preserve_unmasked": "Paste the original pixels back outside the mask afterwards (apply_overlay): the "
    "unmasked area stays exactly as it was, at the cost of a more visible seam.",
    "num_images": "How many images one Generate makes (num_images_per_prompt); each one costs time and memory.",
    "controlnet": "Guide the inpainting with the inpaint ControlNet (SD 1.5 models): it sees the image with the "
    "masked pixels set to -1, so it knows what to keep and where to paint.",
    "controlnet_conditioning_scale": "How strongly the ControlNet holds the result to the image. Higher: "
    "follows the image closely. Lower: the model is freer.",
    "prompt_weighting": "Run twice with one seed, the prompt as plain text and with its Compel weights, and show "
    "both side by side.",
}

#: Each panel field in plain words, in the panel's order: the disabled-reason sentence lists them so.
FIELD_WORDS: dict[str, str] = {
    "prompt": "prompt",
    "negative_prompt": "negative prompt",
    "strength": "strength",
    "steps": "steps",
    "seed": "seed",
    "guidance_scale": "guidance scale",
    "num_images": "image count",
    "padding_mask_crop": "crop padding",
    "controlnet_conditioning_scale": "ControlNet scale",
    "prompt_weighting": "prompt weights",
}

# A classical fill accepts these for the common call shape and reads none of them (see
# `nbinpaint.backends.classical.ClassicalInpaintPipeline.__call__`).
_FILL_IGNORES = {
    "prompt": "a classical fill reads only the pixels around the mask, not a prompt",
    "negative_prompt": "a classical fill reads only the pixels around the mask, not a prompt",
    "seed": "a classical fill is deterministic: a seed changes nothing",
}

RUN_CLASS = "nbinpaint-run"
"""CSS class of the panel's `run_box` (Generate, status, result, code)."""
PANEL_WIDTH = 400
"""The panel's width in CSS pixels; the result is shown up to this wide, less padding."""
_STYLE = {"description_width": "100px"}
# Full width without side margins: a control's default 2 px margins would push it past the panel's edge.
_WIDE = widgets.Layout(width="100%", margin="2px 0")
_ROW = widgets.Layout(align_items="center", flex_flow="row wrap", width="100%")
_BASIC = ("prompt", "negative_prompt", "strength", "steps", "seed")


def reasons_sentence(model: str, reasons: dict[str, str]) -> str:
    """One short sentence naming what ``model`` does not take, in plain words; empty when it takes everything.

    The basic controls are named (both prompts as "prompts"); the advanced ones, folded away with their own
    tooltips, only when no basic one is off. Examples: "Telea fill has no prompts, strength, steps or seed.";
    "SDXL refiner has no crop padding."
    """
    fields = [field for field in FIELD_WORDS if field in reasons]
    basic = [FIELD_WORDS[field] for field in fields if field in _BASIC]
    if "prompt" in reasons and "negative_prompt" in reasons:
        basic = ["prompts", *(word for word in basic if "prompt" not in word)]
    advanced = [FIELD_WORDS[field] for field in fields if field not in _BASIC]
    words = basic or advanced
    if not words:
        return ""
    listed = words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"
    return f"{model_name(model)} has no {listed}."


def _label(text: str) -> widgets.HTML:
    """A field's name above it (compact: an ipywidgets Label is a full 28 px row)."""
    return widgets.HTML(f"<b>{html.escape(text)}</b>", layout=widgets.Layout(height="20px", margin="0"))


def _reasons_for(found: PipelineParameters, model: str) -> dict[str, str]:
    """Panel field -> why it is off for ``model``: its signature's gaps, and for a classical fill the
    prompt and seed it accepts but does not read."""
    reasons = found.unsupported()
    if is_backend_id(model):
        for field, why in _FILL_IGNORES.items():
            reasons.setdefault(field, why)
    return reasons


def result_caption(result: InpaintResult) -> str:
    """What made ``result``, for a caption: friendly model name, seed (none for a classical fill), twin mark."""
    parts = [model_name(result.request.model)]
    if not is_backend_id(result.request.model):
        parts.append(f"seed {result.seed}")
    if result.recipe.get("twin"):
        parts.append("twin: noise from random weights")
    return " · ".join(parts)


def _shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies inside it (shorter to read), else absolute."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class ParameterPanel(widgets.VBox):
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

    model = Unicode(help="Repo id of the checkpoint, or a classical backend id; default: `default_model()`.")
    prompt = Unicode("", help="What to paint in the masked area (Compel weighting syntax allowed).")
    negative_prompt = Unicode("", help="What to avoid; empty for none.")
    strength = Float(1.0, help="Noise added to the masked area, 0.01..1.")
    guidance_scale = Float(7.5, help="Classifier-free guidance scale, 0..20.")
    steps = Int(30, help="num_inference_steps, 1..150.")
    seed = Int(0, help=f"The seed of the next (or last) run, 0..{MAX_SEED}.")
    lock_seed = Bool(False, help="Reuse `seed` for every run; unlocked, each run draws a new one.")
    crop = Bool(False, help="Use padding_mask_crop (the value in `padding_mask_crop`).")
    padding_mask_crop = Int(32, help="Margin in pixels around the mask when `crop` is on, 0..256.")
    blur_factor = Int(0, help="Feathering of the mask's edge (mask_processor.blur), 0..100.")
    preserve_unmasked = Bool(False, help="Paste the original unmasked pixels back (apply_overlay).")
    num_images = Int(1, help="Images per run (num_images_per_prompt), 1..8.")
    controlnet = Bool(False, help="Run with the inpaint ControlNet (`controlnet_id`).")
    controlnet_id = Unicode(DEFAULT_CONTROLNET, help="The inpaint ControlNet's repo id.")
    controlnet_conditioning_scale = Float(1.0, help="ControlNet strength, 0..2.")
    compare_weighting = Bool(False, help="Run a Compel-weighted prompt as plain text too, side by side.")

    image = Instance(Image.Image, allow_none=True, help="The base image when no canvas is bound.")
    mask = Instance(Image.Image, allow_none=True, help="The mask (white = repaint) when no canvas is bound.")

    status = Unicode("", help="The status line: progress, the last outcome, or an error naming its fix.")
    status_is_error = Bool(False, help="Whether `status` reports a failure.")
    running = Bool(False, read_only=True, help="A run is going on.")
    model_state = Unicode("loading", read_only=True, help="'loading', 'ready' or 'error' for `model`.")
    pipeline_name = Unicode("", read_only=True, help="The selected model's pipeline class, once looked up.")
    disabled_reasons = Dict(read_only=True, help="Panel field -> why the selected pipeline does not take it.")

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
        if history is None:
            from nbinpaint.history import shared_history

            history = shared_history()
        self.canvas = canvas
        self.history = history
        self.controller = controller or GenerationController(manager)
        self.results: list[InpaintResult] = []
        self.captions: list[str] = []
        self.last_run: GenerationRun | None = None
        self._result_listeners = CallbackDispatcher()
        self._lookup_seq = 0
        self._lookup_done = threading.Event()
        self._ready = False
        self._run_reasons: dict[str, str] = {}
        self._build()
        kwargs.setdefault("layout", widgets.Layout(width=f"{PANEL_WIDTH}px", max_width="100%"))
        super().__init__(children=self._layout(), **kwargs)
        if image is not None:
            self.image = image  # converted by the validator
        if mask is not None:
            self.mask = mask
        self._reserve_result_box()
        for name, control in self.controls.items():
            widgets.link((self, name), (control, "value"))
        if canvas is not None:
            widgets.link((self, "blur_factor"), (canvas, "blur_factor"))
        history.on_restore(self._on_restore)
        history.on_use_as_base(self._on_use_as_base)
        self._ready = True
        self._apply_reasons({})
        self._on_prompt(None)
        self._on_crop(None)
        self.say(self._saving_note())
        self._lookup()

    # -- building ------------------------------------------------------------------------------------------

    def _build(self) -> None:
        w = widgets
        #: The control of each trait (linked both ways): set ``controls["steps"].value`` as a user would.
        self.controls: dict[str, widgets.ValueWidget] = {
            "model": ModelPicker(),
            "prompt": w.Textarea(rows=3, layout=_WIDE, placeholder="What to paint in the masked area"),
            "negative_prompt": w.Textarea(rows=3, layout=_WIDE, placeholder="What to avoid (optional)"),
            "strength": w.FloatSlider(min=0.01, max=1.0, step=0.01, description="Strength", style=_STYLE, layout=_WIDE),
            "guidance_scale": w.FloatSlider(
                min=0.0, max=20.0, step=0.5, description="Guidance scale", style=_STYLE, layout=_WIDE
            ),
            "steps": w.IntSlider(min=1, max=150, description="Steps", style=_STYLE, layout=_WIDE),
            "seed": w.IntText(description="Seed", style=_STYLE, layout=w.Layout(width="230px")),
            "lock_seed": w.Checkbox(description="lock", indent=False, layout=w.Layout(width="70px")),
            "crop": w.Checkbox(description="Crop around mask", indent=False, layout=w.Layout(width="140px")),
            "padding_mask_crop": w.IntSlider(
                min=0,
                max=256,
                step=8,
                description="padding",
                style={"description_width": "55px"},
                layout=w.Layout(flex="1 1 150px", width="auto"),
            ),
            "blur_factor": w.IntSlider(min=0, max=100, description="Mask blur", style=_STYLE, layout=_WIDE),
            "preserve_unmasked": w.Checkbox(
                description="Preserve unmasked area (apply_overlay)", indent=False, layout=_WIDE
            ),
            "num_images": w.IntSlider(min=1, max=8, description="Images", style=_STYLE, layout=_WIDE),
            "controlnet": w.Checkbox(description="ControlNet inpaint", indent=False, layout=w.Layout(width="150px")),
            "controlnet_conditioning_scale": w.FloatSlider(
                min=0.0,
                max=2.0,
                step=0.05,
                description="scale",
                style={"description_width": "40px"},
                layout=w.Layout(flex="1 1 150px", width="auto"),
            ),
            "compare_weighting": w.Checkbox(description="Compare plain vs weighted", indent=False, layout=_WIDE),
        }
        # The widget(s) each panel field switches off, and the field whose tooltip they show.
        self._field_widgets: dict[str, list[widgets.Widget]] = {
            "prompt": [self.controls["prompt"]],
            "negative_prompt": [self.controls["negative_prompt"]],
            "strength": [self.controls["strength"]],
            "guidance_scale": [self.controls["guidance_scale"]],
            "steps": [self.controls["steps"]],
            "num_images": [self.controls["num_images"]],
            "padding_mask_crop": [self.controls["crop"], self.controls["padding_mask_crop"]],
            "controlnet_conditioning_scale": [self.controls["controlnet_conditioning_scale"]],
            "prompt_weighting": [self.controls["compare_weighting"]],
        }
        self.dice = w.Button(icon="random", tooltip="Draw a new random seed", layout=w.Layout(width="40px"))
        self.dice.on_click(lambda _b: self.roll_seed())
        self._field_widgets["seed"] = [self.controls["seed"], self.controls["lock_seed"], self.dice]
        for name in ("model", "blur_factor", "preserve_unmasked", "controlnet"):
            self.controls[name].tooltip = TOOLTIPS[name]
        self.controls["lock_seed"].tooltip = "Keep this seed for every run"

        self.generate_button = w.Button(description="Generate", icon="play", button_style="primary")
        self.generate_button.on_click(lambda _b: self._on_generate_click())
        self.cancel_button = w.Button(description="Cancel", icon="stop", disabled=True, layout=w.Layout(width="100px"))
        self.cancel_button.tooltip = "Stop at the end of the current denoising step"
        self.cancel_button.on_click(lambda _b: self.cancel())
        self.progress = w.IntProgress(
            value=0, min=0, max=1, description="", layout=w.Layout(flex="1 1 60px", width="auto")
        )
        #: The latest result, large, with a Result / Before toggle; the live preview of a run shows in its place.
        self.result_view = ResultView(max_width=PANEL_WIDTH - 16)
        self.preview = self.result_view.preview
        self.condition = w.Image(format="png", layout=w.Layout(display="none", width="128px"))
        self._weighting = w.HTML()
        self._model_note = w.HTML()
        self._reasons = w.HTML()
        self._status = w.HTML(layout=w.Layout(min_height="1.5em", width="100%"))
        self.details = w.Output()
        self._details_box = w.Accordion(children=[self.details], titles=("Details",))
        self._details_box.layout.display = "none"
        self.code_button = w.Button(description="Show code", icon="code")
        self.code_button.tooltip = "The stand-alone diffusers script that reproduces the current result"
        self.code_button.on_click(lambda _b: self.show_code())
        self.export_button = w.Button(description="Export", icon="download")
        self.export_button.tooltip = "Write that script with its image and mask into a folder"
        self.export_button.on_click(lambda _b: self.export())
        self.code = w.Textarea(layout=w.Layout(width="100%", height="260px", display="none"))

    def _layout(self) -> list[widgets.Widget]:
        c, w = self.controls, widgets
        advanced = w.VBox(
            [
                c["guidance_scale"],
                w.HBox([c["crop"], c["padding_mask_crop"]], layout=_ROW),
                c["blur_factor"],
                c["preserve_unmasked"],
                c["num_images"],
                w.HBox([c["controlnet"], c["controlnet_conditioning_scale"]], layout=_ROW),
                self.condition,
                c["compare_weighting"],
            ],
            layout=_WIDE,
        )
        #: Generate, the status, the latest result and its code: a layout may move these as one (the studio
        #: puts them right under the canvas when the panel wraps below it).
        self.run_box = w.VBox(
            [
                w.HBox([self.generate_button, self.cancel_button, self.progress], layout=_ROW),
                self._status,
                self._details_box,
                self.result_view,
                w.HBox([self.code_button, self.export_button], layout=_ROW),
                self.code,
            ],
            layout=_WIDE,
        )
        self.run_box.add_class(RUN_CLASS)
        #: Everything but the basic controls, folded (open it with ``advanced.selected_index = 0``).
        self.advanced = w.Accordion(children=[advanced], titles=("Advanced",), selected_index=None, layout=_WIDE)
        return [
            c["model"],
            self._model_note,
            _label("Prompt"),
            c["prompt"],
            self._weighting,
            _label("Negative prompt"),
            c["negative_prompt"],
            c["strength"],
            c["steps"],
            w.HBox([c["seed"], self.dice, c["lock_seed"]], layout=_ROW),
            self._reasons,
            self.run_box,
            self.advanced,
        ]

    # -- validation ----------------------------------------------------------------------------------------

    @validate(
        "strength",
        "guidance_scale",
        "steps",
        "num_images",
        "padding_mask_crop",
        "blur_factor",
        "controlnet_conditioning_scale",
    )
    def _within_control_range(self, proposal: Any) -> float | int:
        """Clamp to the control's own range, so the trait and its slider always agree."""
        control = self.controls[proposal["trait"].name]
        kind = int if isinstance(proposal["trait"], Int) else float
        return kind(min(max(proposal["value"], control.min), control.max))

    @default("model")
    def _default_model(self) -> str:
        return default_model()

    @validate("seed")
    def _valid_seed(self, proposal: Any) -> int:
        return min(max(int(proposal["value"]), 0), MAX_SEED)

    @validate("image")
    def _valid_image(self, proposal: Any) -> Image.Image | None:
        return None if proposal["value"] is None else as_rgb(proposal["value"])

    @validate("mask")
    def _valid_mask(self, proposal: Any) -> Image.Image | None:
        return None if proposal["value"] is None else as_mask(proposal["value"])

    # -- status --------------------------------------------------------------------------------------------

    def say(self, text: str, *, error: bool = False) -> None:
        """Show ``text`` on the status line (errors in red)."""
        self.status_is_error = error
        self.status = text
        self._render_status()

    @observe("status", "status_is_error")
    def _on_status(self, change: Any) -> None:
        self._render_status()

    def _render_status(self) -> None:
        colour = "#b00020" if self.status_is_error else "#444"
        icon = "&#9888; " if self.status_is_error and self.status else ""
        self._status.value = f'<div style="color:{colour};line-height:1.4">{icon}{html.escape(self.status)}</div>'

    # -- which controls apply ------------------------------------------------------------------------------

    @observe("model", "controlnet")
    def _on_model(self, change: Any) -> None:
        if self._ready:
            self._lookup()

    def _lookup(self) -> None:
        """Find out in the background what the selected pipeline accepts (loading it if needed)."""
        self._lookup_seq += 1
        seq = self._lookup_seq
        model, controlnet = self._selection()
        self._lookup_done.clear()
        self.set_trait("model_state", "loading")
        self._model_note.value = f"<i>loading {html.escape(model)}…</i>"
        manager = self.controller.manager

        def work() -> None:
            try:
                found = pipeline_parameters(manager, model, "inpaint", controlnet=controlnet)
            except Exception as error:
                if seq == self._lookup_seq:
                    self._apply_parameters(None, model)
                    self.set_trait("model_state", "error")
                    self._model_note.value = (
                        f'<span style="color:#b00020">&#9888; {html.escape(error_message(error))}</span>'
                    )
                    self._lookup_done.set()
                return
            if seq == self._lookup_seq:  # a later choice wins over a slower earlier lookup
                self._apply_parameters(found, model)
                self._lookup_done.set()

        start_thread(work, "nbinpaint-model-lookup")

    def _selection(self) -> tuple[str, str | None]:
        """The model and ControlNet the controls select now."""
        return self.model.strip() or default_model(), self.controlnet_id if self.controlnet else None

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the selected model's parameters are known (or its lookup failed)."""
        return self._lookup_done.wait(timeout)

    def _apply_parameters(self, found: PipelineParameters | None, model: str) -> None:
        if found is None:
            self.set_trait("pipeline_name", "")
            self._apply_reasons({}, model)
            return
        self.set_trait("pipeline_name", found.pipeline)
        self.set_trait("model_state", "ready")
        note = f"{model} · {found.pipeline}"
        if self._is_twin_checkpoint(model):
            note += " · a tiny twin: its pictures are noise"
        self._model_note.value = (
            f'<div style="color:#555;font-size:12px;line-height:1.4;overflow-wrap:anywhere">{html.escape(note)}</div>'
        )
        self._apply_reasons(_reasons_for(found, model), model)

    @staticmethod
    def _is_twin_checkpoint(model: str) -> bool:
        from nbinpaint.twins import REPO_IDS, twin_mode

        return twin_mode() and model in REPO_IDS

    def _apply_reasons(self, reasons: dict[str, str], model: str = "") -> None:
        self.set_trait("disabled_reasons", dict(reasons))
        for field, controls in self._field_widgets.items():
            reason = reasons.get(field)
            if field == "controlnet_conditioning_scale" and reason and not self.controlnet:
                reason = "turn on ControlNet inpaint to use it"
            for control in controls:
                if control is self.controls["padding_mask_crop"]:
                    control.disabled = reason is not None or not self.crop
                else:
                    control.disabled = reason is not None
                if control is not self.dice and control is not self.controls["lock_seed"]:  # own tooltips
                    control.tooltip = f"Off: {reason}." if reason else TOOLTIPS[field]
        # ControlNet's scale is off because the ControlNet is: say that rather than the signature.
        if not self.controlnet:
            reasons = {k: v for k, v in reasons.items() if k != "controlnet_conditioning_scale"}
        sentence = reasons_sentence(model or self._selection()[0], reasons)
        self._reasons.value = (
            f'<div style="color:#666;font-size:12px;line-height:1.4">{html.escape(sentence)}</div>' if sentence else ""
        )

    @observe("prompt")
    def _on_prompt(self, change: Any) -> None:
        if not self._ready:
            return
        from nbinpaint.weighting import has_weighting_syntax

        weighted = has_weighting_syntax(self.prompt)
        self._weighting.value = (
            '<span style="color:#555;font-size:12px">Compel weighting syntax: the prompt runs with word weights</span>'
            if weighted
            else ""
        )

    @observe("crop")
    def _on_crop(self, change: Any) -> None:
        if self._ready:
            self.controls["padding_mask_crop"].disabled = not self.crop or "padding_mask_crop" in self.disabled_reasons

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

    # -- inputs and requests -------------------------------------------------------------------------------

    def inputs(self) -> tuple[Image.Image, Image.Image]:
        """Copies of the image and mask the next run uses (from the canvas when one is bound)."""
        if self.canvas is not None:
            return self.canvas.image.copy(), self.canvas.mask
        if self.image is None or self.mask is None:
            missing = "image" if self.image is None else "mask"
            raise NbinpaintError(
                f"the panel has no {missing} yet: set panel.image and panel.mask (white = repaint), "
                "or create it with ParameterPanel(canvas=...)."
            )
        return self.image.copy(), self.mask.copy()

    def values(self, parameters: PipelineParameters | None = None) -> dict[str, Any]:
        """The request fields the controls hold now, with None for those the pipeline does not take.

        ``parameters`` says what the pipeline takes; default: the panel's last lookup (`disabled_reasons`).
        """
        unsupported = self.disabled_reasons if parameters is None else parameters.unsupported()
        return {name: None if name in unsupported else value for name, value in self._control_values().items()}

    def _control_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "model": self.model.strip() or default_model(),
            "task": "inpaint",
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt or None,
            "strength": self.strength,
            "guidance_scale": self.guidance_scale,
            "steps": self.steps,
            "seed": self.seed,
            "num_images": self.num_images,
            "padding_mask_crop": self.padding_mask_crop if self.crop else None,
            "blur_factor": float(self.blur_factor),
            "preserve_unmasked": self.preserve_unmasked,
        }
        if self.controlnet:
            values["controlnet"] = self.controlnet_id
            values["controlnet_conditioning_scale"] = self.controlnet_conditioning_scale
        return values

    def request(self) -> InpaintRequest:
        """The request Generate would run now, with the current seed (ControlNet condition included)."""
        image, mask = self.inputs()
        return _request(self.values(), image, mask)

    def roll_seed(self) -> int:
        """Draw a new random seed into the seed field (what the dice button does)."""
        self.seed = new_seed()
        return self.seed

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
        values = self._control_values()  # filtered in the run, by the parameters of the model it runs
        weighted_prompt = self._weighted_prompt()
        compare = self.compare_weighting and weighted_prompt is not None
        if self.controlnet:
            self._show_condition(image, mask)
        manager = self.controller.manager
        controlnet = values.get("controlnet")

        def job(run: GenerationRun) -> list[tuple[str, InpaintResult]]:
            found = pipeline_parameters(manager, values["model"], "inpaint", controlnet=controlnet)
            if (values["model"], controlnet) == self._selection():  # clicked before the lookup finished
                self._apply_parameters(found, values["model"])
            unsupported = self._run_reasons = _reasons_for(found, values["model"])
            request = _request({k: None if k in unsupported else v for k, v in values.items()}, image, mask)
            use_weights = weighted_prompt is not None and found.supports("prompt_weighting")
            if not use_weights:
                return [("", manager.run(request, **run.callbacks()))]
            from nbinpaint import weighting

            if compare:
                plain, weighted = weighting.compare(request, manager=run.observed(manager))
                return [("plain", plain), ("weighted", weighted)]
            pipeline = manager.get(request.model, request.task, controlnet=request.controlnet)
            note = {"prompt_weighting": {"syntax": "compel", **weighted_prompt}}
            weighted = weighting.weighted_request(request, pipeline)
            return [("", manager.run(weighted, recipe_extra=note, **run.callbacks()))]

        self._start(job, "generation")
        return self.last_run

    def run_job(self, job: Callable[[Any], Any], label: str) -> GenerationRun:
        """Run ``job(manager)`` in the background like Generate (chains, refiner...); its `InpaintResult` or
        ``ChainResult`` (final stage) is recorded and shown as a Generate result is."""
        manager = self.controller.manager

        def wrapped(run: GenerationRun) -> list[tuple[str, InpaintResult]]:
            self._run_reasons = {}
            outcome = job(run.observed(manager))
            final = getattr(outcome, "final", outcome)
            return [(label, final)]

        self._start(wrapped, label)
        return self.last_run

    def _start(self, job: Callable[[GenerationRun], Any], label: str) -> None:
        # The panel shows "running" before the thread starts: a run that fails at once must not have its
        # error overwritten by "Starting…".
        self.controller.check_idle()
        self.set_trait("running", True)
        self.generate_button.disabled = True
        self.cancel_button.disabled = False
        self.progress.value, self.progress.bar_style = 0, ""
        self._details_box.layout.display = "none"
        self.say(f"Starting the {label}…")
        try:
            self.last_run = self.controller.start(
                job, label=label, on_progress=self._on_progress, on_preview=self._on_preview, on_finish=self._on_finish
            )
        except BaseException:
            self._idle()
            raise

    def _weighted_prompt(self) -> dict[str, Any] | None:
        from nbinpaint.weighting import has_weighting_syntax

        if not has_weighting_syntax(self.prompt) and not has_weighting_syntax(self.negative_prompt):
            return None
        return {"prompt": self.prompt, "negative_prompt": self.negative_prompt or None}

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
        self.progress.max = max(total, 1)
        self.progress.value = min(step, total)
        run = self.controller.current  # set before the thread starts (last_run is set after)
        if run is not None and not run.cancel_requested:
            self.say(f"Step {step}/{total}…")

    def _on_preview(self, step: int, total: int, image: Image.Image) -> None:
        self.result_view.show_preview(image)

    def _on_finish(self, run: GenerationRun) -> None:
        try:
            if run.status == "done":
                self._finish_results(run)
            elif run.status == "cancelled":
                self.progress.bar_style = "warning"
                self.result_view.end_preview()
                self.say(run.message)
            else:
                self.result_view.end_preview()
                self.progress.bar_style = "danger"
                self.say(run.message, error=True)
                self.details.clear_output()
                self.details.append_stdout(run.traceback)
                self._details_box.layout.display = "flex"
        finally:
            self._idle()

    def _idle(self) -> None:
        self.set_trait("running", False)
        self.generate_button.disabled = False
        self.cancel_button.disabled = True

    def _finish_results(self, run: GenerationRun) -> None:
        labelled: list[tuple[str, InpaintResult]] = run.result
        results = [result for _label, result in labelled]
        self.results = results
        self.captions = [label for label, _result in labelled]
        self.progress.value = self.progress.max
        saved = []
        for result in results:
            if any(isinstance(image, Image.Image) for image in result.images):
                saved += self.history.add(result)
        first = results[0]
        reasons = self._run_reasons
        note = ""
        if (
            "prompt" not in reasons
            and self._weighted_prompt() is not None
            and not any("prompt_weighting" in r.recipe for r in results)
        ):
            note = " The prompt ran as plain text: this model takes no prompt_embeds, so Compel weights do not apply."
        facts = [] if "seed" in reasons else [f"seed {first.seed}"]
        if "steps" not in reasons:
            facts.append(f"{run.steps} step{'s' if run.steps != 1 else ''}")
        facts.append(f"{len(first.images)} image{'s' if len(first.images) != 1 else ''}")
        made_by = model_name(first.request.model) + (", a twin: noise" if first.recipe.get("twin") else "")
        self.say(f"Done in {run.seconds:.1f} s: {', '.join(facts)} ({made_by}). {self._saved_note(saved)}{note}")
        self._show_latest(first, self.captions[0])
        if self.code.layout.display != "none":  # the code on show reproduces the latest result, never an older one
            self.show_code()
        self._result_listeners(results, self.captions)

    def _show_latest(self, result: InpaintResult, label: str) -> None:
        image = next((i for i in result.images if isinstance(i, Image.Image)), None)
        if image is None:
            self.result_view.end_preview()
            return
        base = result.request.image if isinstance(result.request.image, Image.Image) else None
        caption = " ".join(filter(None, [label, result_caption(result)]))
        self.result_view.set_result(base, image, caption)

    def _saving_note(self) -> str:
        """Where results go, for the status line before the first run."""
        folder = self.history.output
        if folder is None:
            return "Results stay in this session's history (autosave is off)."
        return f"Results are saved to {_shown_path(folder)}/"

    def _saved_note(self, entries: list[Any]) -> str:
        """Where this run's results went (`nbinpaint.history.History.output`), for the status line."""
        folder = self.history.output
        if folder is None:
            return "Not saved to disk (autosave is off)."
        if not any(entry.files.get("result") for entry in entries):
            return f"Saving to {_shown_path(folder)}/ failed: see the notice above."
        return f"Saved in {_shown_path(folder)}/"

    def on_result(self, callback: Callable[[list[InpaintResult], list[str]], Any], remove: bool = False) -> None:
        """Call ``callback(results, captions)`` after each successful run (on the worker thread)."""
        self._result_listeners.register_callback(callback, remove=remove)

    @property
    def result(self) -> InpaintResult | None:
        """The last successful run's (first) result."""
        return self.results[0] if self.results else None

    # -- code ----------------------------------------------------------------------------------------------

    def show_code(self) -> str | None:
        """Show the stand-alone diffusers script that reproduces the last result (`nbinpaint.codegen.code_for`)."""
        if self.result is None:
            self.say("Generate first: the code reproduces a result.", error=True)
            return None
        try:
            from nbinpaint.codegen import code_for
        except ImportError:
            self.say("Show code needs nbinpaint.codegen, which this installation does not have.", error=True)
            return None
        try:
            text = code_for(self.result)
        except Exception as error:
            self.say(error_message(error), error=True)
            return None
        self.code.value = text
        self.code.layout.display = "block"
        return text

    def export(self, folder: str | Path | None = None) -> Path | None:
        """Write the reproducing script with its inputs into ``folder`` (default: beside the history's results)."""
        if self.result is None:
            self.say("Generate first: export writes the script of a result.", error=True)
            return None
        try:
            from nbinpaint.codegen import export
        except ImportError:
            self.say("Export needs nbinpaint.codegen, which this installation does not have.", error=True)
            return None
        from nbinpaint.history import default_output

        target = Path(folder) if folder is not None else (self.history.output or default_output()) / "scripts"
        try:
            written = export(self.result, target)
        except Exception as error:
            self.say(error_message(error), error=True)
            return None
        self.say(f"Exported to {written}.")
        return written

    # -- history hooks -------------------------------------------------------------------------------------

    def apply_request(self, request: InpaintRequest, recipe: dict[str, Any] | None = None) -> None:
        """Put a request's settings into the controls (seed locked, so Generate repeats it); values it left
        to the pipeline's default (None) keep the control as it is. The image and mask go to the canvas (or
        the panel's own ``image``/``mask``)."""
        weighting = (recipe or {}).get("prompt_weighting") or {}
        simple = {
            "model": request.model,
            "prompt": weighting.get("prompt", request.prompt),
            "negative_prompt": weighting.get("negative_prompt", request.negative_prompt) or "",
            "strength": request.strength,
            "guidance_scale": request.guidance_scale,
            "steps": request.steps,
            "seed": request.seed,
            "num_images": request.num_images,
            "blur_factor": round(request.blur_factor or 0),
            "preserve_unmasked": request.preserve_unmasked,
            "controlnet": request.controlnet is not None,
            "controlnet_conditioning_scale": request.controlnet_conditioning_scale,
        }
        with self.hold_trait_notifications():
            for name, value in simple.items():
                if value is not None:
                    setattr(self, name, value)
            self.crop = request.padding_mask_crop is not None
            if request.padding_mask_crop is not None:
                self.padding_mask_crop = request.padding_mask_crop
            if request.seed is not None:
                self.lock_seed = True
        self.set_inputs(request.image, request.mask)

    def set_inputs(self, image: Any = None, mask: Any = None) -> None:
        """Replace the base image and/or the mask (on the canvas when bound: undoable there)."""
        if self.canvas is not None:
            if image is not None:
                self.canvas.set_image(as_rgb(image))
                self._reserve_result_box()
            if mask is not None:
                self.canvas.load_mask(as_mask(mask))
            return
        if image is not None:
            self.image = image
        if mask is not None:
            self.mask = mask

    @observe("image")
    def _on_image(self, change: Any) -> None:
        self._reserve_result_box()

    def _reserve_result_box(self) -> None:
        """Before the first result, size the result box like the base image, so nothing moves when one comes."""
        base = self.canvas.image if self.canvas is not None else self.image
        if base is not None and self.result_view.after is None:
            self.result_view.reserve(base.size)

    def _on_restore(self, request: InpaintRequest, result: InpaintResult) -> None:
        try:
            self.apply_request(request, result.recipe)
        except NbinpaintError as error:
            self.say(str(error), error=True)
            return
        self.say(f"Restored the settings and mask of seed {request.seed}; Generate repeats it.")

    def _on_use_as_base(self, request: InpaintRequest, result: InpaintResult) -> None:
        self.set_inputs(request.image, None)
        self.say("The result is the new base image; the mask is kept. Paint the next change.")

    def close(self) -> None:
        """Stop listening to the history, cancel a run, then close as any widget."""
        self.history.on_restore(self._on_restore, remove=True)
        self.history.on_use_as_base(self._on_use_as_base, remove=True)
        self.controller.cancel()
        super().close()


def _request(values: dict[str, Any], image: Image.Image, mask: Image.Image) -> InpaintRequest:
    """A request from panel values; with ControlNet, the inpaint condition is made from image and mask."""
    request = InpaintRequest.from_kwargs(image=image, mask=mask, **values)
    if request.controlnet is not None:
        from nbinpaint.control import controlnet_request

        scale = request.controlnet_conditioning_scale
        request = controlnet_request(request, request.controlnet, 1.0 if scale is None else scale)
    return request
