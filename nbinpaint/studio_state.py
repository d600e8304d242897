"""`PanelState`: what the parameter panel holds and decides, without a widget.

The form's values are traits made from the parameter table's panel rows (`nbinpaint.parameters.PANEL`), so
a new row is a new value here, a request field, a disabled reason and (in `nbinpaint.widgets.panel`) a
control, with no code of its own. Besides the values: the panel-only toggles (lock seed, crop, ControlNet,
compare weighting), which fields the selected pipeline lacks (looked up on a thread), the status line, and
the bookkeeping of a run (its job, its results, the status it ends with). Kept free of ipywidgets so it can
be tested and reused (a voila app, a script) without a front end; the panel is a view over it.
"""

from __future__ import annotations

import logging
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image
from traitlets import (
    Bool,
    Dict,
    Enum,
    Float,
    HasTraits,
    Instance,
    Int,
    TraitType,
    Unicode,
    default,
    observe,
    validate,
)

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
from nbinpaint.model_names import default_guidance, default_model, model_name
from nbinpaint.parameters import PANEL, Parameter, short_names
from nbinpaint.requests import InpaintRequest, InpaintResult, as_mask, as_rgb, new_seed

__all__ = [
    "BASIC",
    "FIELD_WORDS",
    "GATES",
    "TOOLTIPS",
    "PanelState",
    "reasons_for",
    "reasons_sentence",
    "result_caption",
]

log = logging.getLogger(__name__)

#: What each control does, in the guide's words: the table's tooltips, and the panel's own controls'.
TOOLTIPS: dict[str, str] = {
    "model": "The checkpoint (or classical fill) that repaints the mask: one of the guide's, or choose 'Your own "
    "repo id…' and type any Hugging Face repo id. Inpainting checkpoints blend edges best; regular ones change "
    "the unmasked area less; classical fills need no weights and no prompt.",
    **{row.name: row.tooltip for row in PANEL},
    "controlnet": "Guide the inpainting with the inpaint ControlNet (SD 1.5 models): it sees the image with the "
    "masked pixels set to -1, so it knows what to keep and where to paint.",
    "prompt_weighting": "Run twice with one seed, the prompt as plain text and with its Compel weights, and show "
    "both side by side.",
}

#: Each panel field in plain words, in the table's order: the disabled-reason sentence lists them so.
FIELD_WORDS: dict[str, str] = {**{row.name: row.words for row in PANEL}, "prompt_weighting": "prompt weights"}

#: The fields above the fold; a sentence names the advanced ones only when none of these is off.
BASIC: tuple[str, ...] = tuple(row.name for row in PANEL if not row.advanced)

#: Fields a panel toggle switches on: field -> (toggle, why the field is off while the toggle is, or None
#: where the pipeline's own reason still applies).
GATES: dict[str, tuple[str, str | None]] = {
    "padding_mask_crop": ("crop", None),
    "controlnet_conditioning_scale": ("controlnet", "turn on ControlNet inpaint to use it"),
    # enable_pag is a row of its own (a load option: the PAG pipeline is the one that takes pag_scale)
    "pag_scale": ("enable_pag", "turn on PAG to use it"),
}

# A classical fill accepts these for the common call shape and reads none of them (see
# `nbinpaint.backends.classical.ClassicalInpaintPipeline.__call__`).
_FILL_IGNORES = {
    "prompt": "a classical fill reads only the pixels around the mask, not a prompt",
    "negative_prompt": "a classical fill reads only the pixels around the mask, not a prompt",
    "seed": "a classical fill is deterministic: a seed changes nothing",
}


def reasons_sentence(model: str, reasons: dict[str, str]) -> str:
    """One short sentence naming what ``model`` does not take, in plain words; empty when it takes everything.

    The basic controls are named (both prompts as "prompts"); the advanced ones, folded away with their own
    tooltips, only when no basic one is off. Examples: "Telea fill has no prompts, strength, steps or seed.";
    "SDXL refiner has no crop padding."
    """
    fields = [field for field in FIELD_WORDS if field in reasons]
    basic = [FIELD_WORDS[field] for field in fields if field in BASIC]
    if "prompt" in reasons and "negative_prompt" in reasons:
        basic = ["prompts", *(word for word in basic if "prompt" not in word)]
    advanced = [FIELD_WORDS[field] for field in fields if field not in BASIC]
    words = basic or advanced
    if not words:
        return ""
    listed = words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"
    return f"{model_name(model)} has no {listed}."


def reasons_for(found: PipelineParameters, model: str) -> dict[str, str]:
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


PANEL_ROWS: dict[str, Parameter] = {row.name: row for row in PANEL}


def whole_slider(row: Parameter) -> bool:
    """Whether the row's slider moves in whole numbers (an int slider, even for a float field)."""
    return row.slider is not None and all(isinstance(number, int) for number in row.slider)


def _bounds(row: Parameter) -> tuple[float, float] | None:
    """What the form clamps a number to: the slider's range, else the field's own."""
    if row.slider is not None:
        return row.slider[0], row.slider[1]
    if row.minimum is not None and row.maximum is not None:
        return row.minimum, row.maximum
    return None


def whole(row: Parameter) -> bool:
    """Whether the form holds the row's value as an int (an int field, or a float one on a whole slider)."""
    return row.kind == "int" or whole_slider(row)


def _trait(row: Parameter) -> TraitType:
    if row.kind == "text":
        return Unicode(row.initial or "", help=row.help)
    if row.kind == "bool":
        return Bool(bool(row.initial), help=row.help)
    if row.kind == "choice":  # the panel's "unset" word (e.g. "none"), where the row has one, is an option
        return Enum(row.options, row.initial, help=row.help)
    if whole(row):
        return Int(int(row.initial), help=row.help)
    return Float(float(row.initial), help=row.help)


def to_field(row: Parameter, value: Any) -> Any:
    """A form value as the request field: an empty optional text or the row's "unset" panel value (eta 0) is
    None, which leaves the pipeline's default."""
    if row.kind == "text":
        return value if value or "None" not in row.annotation else None
    value = row.from_panel(value)
    return float(value) if row.kind == "float" and value is not None else value


def to_form(row: Parameter, value: Any) -> Any:
    """A request field as the form value; None keeps the control as it is unless the row has an unset value."""
    if value is None:
        if row.kind == "text" and "None" in row.annotation:
            return ""
        return row.to_panel(None)
    return round(value) if row.kind == "float" and whole_slider(row) else value


#: The form's values as traits, one per panel row, so a new row needs no code here.
_Form = types.new_class("_Form", (HasTraits,), exec_body=lambda ns: ns.update({r.name: _trait(r) for r in PANEL}))


class PanelState(_Form):
    """The parameter panel's values and decisions, without widgets (`nbinpaint.widgets.panel` is its view).

    ``history`` is where results go (the kernel's shared one when None); ``manager`` runs them (the kernel's
    shared one when None); ``start=False`` delays the first model lookup until `activate`.
    """

    model = Unicode(help="Repo id of the checkpoint, or a classical backend id; default: `default_model()`.")
    lock_seed = Bool(False, help="Reuse `seed` for every run; unlocked, each run draws a new one.")
    crop = Bool(False, help="Use padding_mask_crop (the value in `padding_mask_crop`).")
    controlnet = Bool(False, help="Run with the inpaint ControlNet (`controlnet_id`).")
    controlnet_id = Unicode(DEFAULT_CONTROLNET, help="The inpaint ControlNet's repo id.")
    compare_weighting = Bool(False, help="Run a Compel-weighted prompt as plain text too, side by side.")

    image = Instance(Image.Image, allow_none=True, help="The base image when no canvas is bound.")
    mask = Instance(Image.Image, allow_none=True, help="The mask (white = repaint) when no canvas is bound.")

    status = Unicode("", help="The status line: progress, the last outcome, or an error naming its fix.")
    status_is_error = Bool(False, help="Whether `status` reports a failure.")
    running = Bool(False, read_only=True, help="A run is going on.")
    model_state = Unicode("loading", read_only=True, help="'loading', 'ready' or 'error' for `model`.")
    model_note = Unicode("", read_only=True, help="The model line: its pipeline, or why it cannot load.")
    pipeline_name = Unicode("", read_only=True, help="The selected model's pipeline class, once looked up.")
    accepted = Instance(frozenset, allow_none=True, read_only=True, help="What its __call__ takes (None: unknown).")
    disabled_reasons = Dict(read_only=True, help="Panel field -> why the selected pipeline does not take it.")
    reasons_model = Unicode("", read_only=True, help="The model `disabled_reasons` are for.")

    _ready = False  # observers fire while HasTraits sets the initial values: no lookup before `activate`

    def __init__(
        self,
        *,
        history: Any = None,
        manager: Any = None,
        controller: GenerationController | None = None,
        start: bool = True,
        **kwargs: Any,
    ) -> None:
        values = short_names(kwargs)  # num_inference_steps= is steps=
        super().__init__(**values)
        if "guidance_scale" in values:  # given with the model: not replaced by the model's own default
            self.guidance_scale = values["guidance_scale"]
        if history is None:
            from nbinpaint.history import shared_history

            history = shared_history()
        self.history = history
        self.controller = controller or GenerationController(manager)
        self.results: list[InpaintResult] = []
        self.captions: list[str] = []
        self.last_run: GenerationRun | None = None
        self._result_listeners: list[Callable[..., Any]] = []
        self._lookup_seq = 0
        self._lookup_done = threading.Event()
        self._run_reasons: dict[str, str] = {}
        history.on_restore(self._on_restore)
        history.on_use_as_base(self._on_use_as_base)
        if start:
            self.activate()

    def activate(self) -> None:
        """Start following the model: look up what it takes now and whenever it changes."""
        self._ready = True
        self.lookup()

    def detach(self) -> None:
        """Stop listening to the history and cancel a run."""
        self.history.on_restore(self._on_restore, remove=True)
        self.history.on_use_as_base(self._on_use_as_base, remove=True)
        self.controller.cancel()

    # -- values --------------------------------------------------------------------------------------------

    @validate(*(row.name for row in PANEL if _bounds(row) is not None))
    def _within_range(self, proposal: Any) -> float | int:
        """Clamp to the control's range, so the value and its slider always agree."""
        low, high = _bounds(PANEL_ROWS[proposal["trait"].name])
        kind = int if isinstance(proposal["trait"], Int) else float
        return kind(min(max(proposal["value"], low), high))

    @default("model")
    def _default_model(self) -> str:
        return default_model()

    @validate("image")
    def _valid_image(self, proposal: Any) -> Image.Image | None:
        return None if proposal["value"] is None else as_rgb(proposal["value"])

    @validate("mask")
    def _valid_mask(self, proposal: Any) -> Image.Image | None:
        return None if proposal["value"] is None else as_mask(proposal["value"])

    def say(self, text: str, *, error: bool = False) -> None:
        """Show ``text`` on the status line (errors in red)."""
        self.status_is_error = error
        self.status = text

    def selection(self) -> tuple[str, str | None]:
        """The model and ControlNet selected now."""
        return self.model.strip() or default_model(), self.controlnet_id if self.controlnet else None

    def form_values(self) -> dict[str, Any]:
        """Every request field the form holds now, whatever the pipeline takes."""
        model, controlnet = self.selection()
        values: dict[str, Any] = {"model": model, "task": "inpaint"}
        for row in PANEL:
            toggle = GATES.get(row.name, (None,))[0]
            if toggle is None or getattr(self, toggle):
                values[row.name] = to_field(row, getattr(self, row.name))
            else:
                values[row.name] = None
        if controlnet is not None:
            values["controlnet"] = controlnet
        return values

    def values(self, parameters: PipelineParameters | None = None) -> dict[str, Any]:
        """The request fields the controls hold now, with None for those the pipeline does not take.

        ``parameters`` says what the pipeline takes; default: the last lookup (`disabled_reasons`).
        """
        unsupported = self.disabled_reasons if parameters is None else parameters.unsupported()
        return {name: None if name in unsupported else value for name, value in self.form_values().items()}

    def inputs(self) -> tuple[Image.Image, Image.Image]:
        """Copies of the image and mask the next run uses."""
        if self.image is None or self.mask is None:
            missing = "image" if self.image is None else "mask"
            raise NbinpaintError(
                f"the panel has no {missing} yet: set panel.image and panel.mask (white = repaint), "
                "or create it with ParameterPanel(canvas=...)."
            )
        return self.image.copy(), self.mask.copy()

    def set_inputs(self, image: Any = None, mask: Any = None) -> None:
        """Replace the base image and/or the mask."""
        if image is not None:
            self.image = image
        if mask is not None:
            self.mask = mask

    def request(self) -> InpaintRequest:
        """The request Generate would run now, with the current seed (ControlNet condition included)."""
        image, mask = self.inputs()
        return make_request(self.values(), image, mask)

    def roll_seed(self) -> int:
        """Draw a new random seed (what the dice button does)."""
        self.seed = new_seed()
        return self.seed

    def weighted_prompt(self) -> dict[str, Any] | None:
        """The prompts as typed when either has Compel weights, else None."""
        from nbinpaint.weighting import has_weighting_syntax

        if not has_weighting_syntax(self.prompt) and not has_weighting_syntax(self.negative_prompt):
            return None
        return {"prompt": self.prompt, "negative_prompt": self.negative_prompt or None}

    def apply_request(self, request: InpaintRequest, recipe: dict[str, Any] | None = None) -> None:
        """Put a request's settings into the form (seed locked, so Generate repeats it); values it left to the
        pipeline's default (None) keep the form as it is. The image and mask go to `set_inputs`."""
        weighting = (recipe or {}).get("prompt_weighting") or {}
        with self.hold_trait_notifications():
            self.model = request.model
            self.controlnet = request.controlnet is not None
            for row in PANEL:
                value = to_form(row, weighting.get(row.name, getattr(request, row.name)))
                if value is not None:
                    setattr(self, row.name, value)
            for field, (toggle, _why) in GATES.items():
                # the ControlNet's own toggle follows request.controlnet; a toggle that is a row (enable_pag)
                # took the request's value above
                if toggle != "controlnet" and toggle not in PANEL_ROWS:
                    setattr(self, toggle, getattr(request, field) is not None)
            if request.seed is not None:
                self.lock_seed = True
        self.set_inputs(request.image, request.mask)

    # -- which fields apply --------------------------------------------------------------------------------

    @observe("model", "controlnet", "enable_pag")
    def _on_model(self, change: Any) -> None:
        if change["name"] == "model":
            self._follow_guidance(change["old"], change["new"])
        if self._ready:
            self.lookup()

    def _follow_guidance(self, old: str, new: str) -> None:
        """Move the guidance scale to the new model's own default (`default_guidance`: Flux Fill's 30) when
        it still holds the old model's, so a value the user chose is kept."""
        usual = PANEL_ROWS["guidance_scale"].initial
        before, after = default_guidance(old) or usual, default_guidance(new) or usual
        if before != after and self.guidance_scale == before:
            self.guidance_scale = after

    def lookup(self) -> None:
        """Find out in the background what the selected pipeline accepts (loading it if needed)."""
        self._lookup_seq += 1
        seq = self._lookup_seq
        model, controlnet = self.selection()
        pag = self.enable_pag  # a load option: the PAG pipeline takes pag_scale, the plain one does not
        self._lookup_done.clear()
        self.set_trait("model_state", "loading")
        self.set_trait("model_note", f"loading {model}…")
        manager = self.controller.manager

        def work() -> None:
            try:
                found = pipeline_parameters(manager, model, "inpaint", controlnet=controlnet, enable_pag=pag)
            except Exception as error:
                if seq == self._lookup_seq:
                    self.apply_parameters(None, model)
                    self.set_trait("model_note", error_message(error))
                    self.set_trait("model_state", "error")
                    self._lookup_done.set()
                return
            if seq == self._lookup_seq:  # a later choice wins over a slower earlier lookup
                self.apply_parameters(found, model)
                self._lookup_done.set()

        start_thread(work, "nbinpaint-model-lookup")

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the selected model's parameters are known (or its lookup failed)."""
        return self._lookup_done.wait(timeout)

    def apply_parameters(self, found: PipelineParameters | None, model: str) -> None:
        """Take what ``model``'s pipeline accepts (None: unknown, everything stays on)."""
        self.set_trait("accepted", None if found is None else found.accepted)
        if found is None:
            self.set_trait("pipeline_name", "")
            self.set_reasons({}, model)
            return
        self.set_trait("pipeline_name", found.pipeline)
        note = f"{model} · {found.pipeline}"
        from nbinpaint.twins import REPO_IDS, twin_mode

        if twin_mode() and model in REPO_IDS:
            note += " · a tiny twin: its pictures are noise"
        self.set_trait("model_note", note)
        self.set_trait("model_state", "ready")
        self.set_reasons(reasons_for(found, model), model)

    def set_reasons(self, reasons: dict[str, str], model: str = "") -> None:
        with self.hold_trait_notifications():
            self.set_trait("disabled_reasons", dict(reasons))
            self.set_trait("reasons_model", model or self.selection()[0])

    def shown_reasons(self) -> dict[str, str]:
        """Field -> why its control is off now: the pipeline's reasons, or the toggle's that switches it on."""
        reasons = dict(self.disabled_reasons)
        for field, (toggle, why) in GATES.items():
            if why is not None and field in reasons and not getattr(self, toggle):
                reasons[field] = why
        return reasons

    def reasons_text(self) -> str:
        """The sentence under the basic controls; a field off for its toggle is not the model's doing."""
        reasons = {
            field: why
            for field, why in self.disabled_reasons.items()
            if not (field in GATES and GATES[field][1] is not None and not getattr(self, GATES[field][0]))
        }
        return reasons_sentence(self.reasons_model or self.selection()[0], reasons)

    # -- runs ----------------------------------------------------------------------------------------------

    def generation_job(self, image: Image.Image, mask: Image.Image) -> Callable[[GenerationRun], Any]:
        """The job of one Generate: filtered by what the model it runs takes, weighted or compared."""
        values = self.form_values()
        weighted_prompt = self.weighted_prompt()
        compare = self.compare_weighting and weighted_prompt is not None
        manager = self.controller.manager
        controlnet = values.get("controlnet")

        def job(run: GenerationRun) -> list[tuple[str, InpaintResult]]:
            found = pipeline_parameters(
                manager, values["model"], "inpaint", controlnet=controlnet, enable_pag=values["enable_pag"]
            )
            # clicked before the lookup finished
            if (values["model"], controlnet) == self.selection() and values["enable_pag"] == self.enable_pag:
                self.apply_parameters(found, values["model"])
            unsupported = self._run_reasons = reasons_for(found, values["model"])
            request = make_request({k: None if k in unsupported else v for k, v in values.items()}, image, mask)
            if weighted_prompt is None or not found.supports("prompt_weighting"):
                return [("", manager.run(request, **run.callbacks()))]
            from nbinpaint import weighting

            if compare:
                plain, weighted = weighting.compare(request, manager=run.observed(manager))
                return [("plain", plain), ("weighted", weighted)]
            pipeline = manager.get(request.model, request.task, controlnet=request.controlnet)
            note = {"prompt_weighting": {"syntax": "compel", **weighted_prompt}}
            weighted = weighting.weighted_request(request, pipeline)
            return [("", manager.run(weighted, recipe_extra=note, **run.callbacks()))]

        return job

    def wrapped_job(self, job: Callable[[Any], Any], label: str) -> Callable[[GenerationRun], Any]:
        """``job(manager)`` (a chain, the refiner...) as a run whose final result is recorded like Generate's."""
        manager = self.controller.manager

        def wrapped(run: GenerationRun) -> list[tuple[str, InpaintResult]]:
            self._run_reasons = {}
            outcome = job(run.observed(manager))
            return [(label, getattr(outcome, "final", outcome))]

        return wrapped

    def record(self, run: GenerationRun) -> str:
        """Keep a finished run's results, save them to the history, and say how it went (the status text)."""
        labelled: list[tuple[str, InpaintResult]] = run.result
        results = [result for _label, result in labelled]
        self.results = results
        self.captions = [label for label, _result in labelled]
        saved = []
        for result in results:
            if any(isinstance(image, Image.Image) for image in result.images):
                saved += self.history.add(result)
        first, reasons = results[0], self._run_reasons
        note = ""
        if (
            "prompt" not in reasons
            and self.weighted_prompt() is not None
            and not any("prompt_weighting" in r.recipe for r in results)
        ):
            note = " The prompt ran as plain text: this model takes no prompt_embeds, so Compel weights do not apply."
        facts = [] if "seed" in reasons else [f"seed {first.seed}"]
        if "steps" not in reasons:
            facts.append(f"{run.steps} step{'s' if run.steps != 1 else ''}")
        facts.append(f"{len(first.images)} image{'s' if len(first.images) != 1 else ''}")
        made_by = model_name(first.request.model) + (", a twin: noise" if first.recipe.get("twin") else "")
        return f"Done in {run.seconds:.1f} s: {', '.join(facts)} ({made_by}). {self.saved_note(saved)}{note}"

    def on_result(self, callback: Callable[[list[InpaintResult], list[str]], Any], remove: bool = False) -> None:
        """Call ``callback(results, captions)`` after each successful run (on the worker thread)."""
        if remove:
            self._result_listeners = [c for c in self._result_listeners if c != callback]
        elif callback not in self._result_listeners:
            self._result_listeners.append(callback)

    def notify_result(self) -> None:
        """Tell the `on_result` listeners; one that fails is logged, the run stays done."""
        for callback in list(self._result_listeners):
            try:
                callback(self.results, self.captions)
            except Exception:
                log.warning("a result listener failed: %s", callback, exc_info=True)

    @property
    def result(self) -> InpaintResult | None:
        """The last successful run's (first) result."""
        return self.results[0] if self.results else None

    def saving_note(self) -> str:
        """Where results go, for the status line before the first run."""
        folder = self.history.output
        if folder is None:
            return "Results stay in this session's history (autosave is off)."
        return f"Results are saved to {_shown_path(folder)}/"

    def saved_note(self, entries: list[Any]) -> str:
        """Where this run's results went (`nbinpaint.history.History.output`), for the status line."""
        folder = self.history.output
        if folder is None:
            return "Not saved to disk (autosave is off)."
        if not any(entry.files.get("result") for entry in entries):
            return f"Saving to {_shown_path(folder)}/ failed: see the notice above."
        return f"Saved in {_shown_path(folder)}/"

    # -- code ----------------------------------------------------------------------------------------------

    def code_text(self) -> str | None:
        """The stand-alone script that reproduces the last result, or None with the reason on the status."""
        if self.result is None:
            self.say("Generate first: the code reproduces a result.", error=True)
            return None
        try:
            from nbinpaint.codegen import code_for
        except ImportError:
            self.say("Show code needs nbinpaint.codegen, which this installation does not have.", error=True)
            return None
        try:
            return code_for(self.result)
        except Exception as error:
            self.say(error_message(error), error=True)
            return None

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


def make_request(values: dict[str, Any], image: Image.Image, mask: Image.Image) -> InpaintRequest:
    """A request from form values; with ControlNet, the inpaint condition is made from image and mask."""
    values = {**values, "enable_pag": bool(values.get("enable_pag"))}  # None where the model has no PAG: off
    request = InpaintRequest.from_kwargs(image=image, mask=mask, **values)
    if request.controlnet is not None:
        from nbinpaint.control import controlnet_request

        scale = request.controlnet_conditioning_scale
        request = controlnet_request(request, request.controlnet, 1.0 if scale is None else scale)
    return request


def _shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies inside it (shorter to read), else absolute."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
