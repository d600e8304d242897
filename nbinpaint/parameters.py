"""The parameter table: every field of a request, declared once.

One `Parameter` row says, for a request field: its short name and the diffusers ``__call__`` keyword it
feeds, its type and valid range (with the words of the error that refuses a value outside it), the panel's
slider, label and tooltip, the key A1111's "parameters" text uses, and what `InpaintRequest` holds by
default. From the rows come `InpaintRequest`'s fields and number checks, the call's keyword arguments,
the panel's controls and their greying-out, the recipe's entries and their checks, and the generated
code. Adding a parameter is adding a row (`eta` below was added so).

Both vocabularies are read: the short names (``steps``, ``mask``, ``num_images``) and diffusers' own
(``num_inference_steps``, ``mask_image``, ``num_images_per_prompt``); recipes and code write diffusers'.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nbinpaint.errors import InvalidRequestError

__all__ = [
    "ALIASES",
    "CALL_NAMES",
    "PANEL",
    "PARAMETERS",
    "Parameter",
    "canonical",
    "canonical_kwargs",
    "did_you_mean",
    "row",
    "short_names",
]

DEFAULT_MODEL = "runwayml/stable-diffusion-inpainting"
MAX_SEED = 2**64 - 1
# Upper bounds on what one request may ask for: far above any real use (schedulers train on 1000 steps,
# checkpoints run at 512-1024 px), low enough that a typo or a hand-edited recipe in a shared PNG cannot ask
# for days of work or memory no machine has.
MAX_STEPS = 10_000
MAX_IMAGES = 64
MAX_SIDE = 8192
MAX_BLUR = 1024

_NO_DEFAULT = object()


@dataclass(frozen=True)
class Parameter:
    """One request field. ``kind`` is how it is checked, stored in a recipe and shown in a form:

    ``"int"``/``"float"`` (numbers, checked against ``minimum``/``maximum``), ``"text"``, ``"bool"``,
    ``"name"`` (a repo id or similar identifier), ``"choice"`` (one of ``choices``), ``"image"`` and
    ``"tensor"`` (never in a recipe), ``"mapping"`` (``extra``).
    """

    name: str
    kind: str
    annotation: str
    default: Any = None
    #: The diffusers ``__call__`` keyword this field is passed as; None: not passed as is (seed, blur...).
    call: str | None = None
    help: str = ""
    # -- the valid range, and the words of the error that refuses a value outside it
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    whole: bool = False
    multiple: int | None = None
    rule: str = ""
    fix: str = ""
    range_rule: str | None = None  # where the range's words differ from the type's
    range_fix: str | None = None
    nullable: bool = True
    choices: tuple[str, ...] = ()
    # -- the panel: a control when ``label`` is set
    label: str = ""
    words: str = ""  # the field in plain words, in sentences listing disabled controls
    tooltip: str = ""
    slider: tuple[float, float, float] | None = None
    panel_default: Any = _NO_DEFAULT
    #: The panel value that means "unset" (the request gets None, so the pipeline's default applies).
    panel_off: Any = _NO_DEFAULT
    advanced: bool = True
    # -- recipes
    a1111: str | None = None  # the key of A1111's "parameters" text
    saved: bool = True  # whether a recipe holds it (pixels and tensors never are)
    # -- greying out a field that is no call keyword: the ``__call__`` parameters it needs, and why
    requires: tuple[str, ...] = ()
    requires_why: str = ""
    #: How requests share one batched pipeline call (`nbinpaint.runner.batch_key`): ``"same"`` (every request
    #: in the call has this value), ``"each"`` (may differ: the call gets one per sample, or it is applied per
    #: image), ``"alone"`` (a request that sets it runs unbatched: diffusers takes one value per call).
    batch: str = "same"
    extra_checks: tuple[Callable[..., None], ...] = field(default=(), repr=False, compare=False)

    @property
    def diffusers_name(self) -> str:
        """The name a recipe and generated code write: diffusers' own where it has one."""
        return self.call or self.name

    @property
    def in_panel(self) -> bool:
        return bool(self.label)

    def from_panel(self, value: Any) -> Any:
        """The request's value for a panel value: None for the row's "unset" value."""
        return None if self.panel_off is not _NO_DEFAULT and value == self.panel_off else value

    def to_panel(self, value: Any) -> Any:
        """The panel's value for a request value: the "unset" value for None (where the row has one)."""
        return self.panel_off if value is None and self.panel_off is not _NO_DEFAULT else value

    @property
    def options(self) -> tuple[Any, ...]:
        """A choice row's panel options: its "unset" word first, where it has one, then its choices."""
        return self.choices if self.panel_off is _NO_DEFAULT else (self.panel_off, *self.choices)

    @property
    def initial(self) -> Any:
        """The panel's starting value."""
        return self.default if self.panel_default is _NO_DEFAULT else self.panel_default


def _number_rule(low: str, high: str, *, whole: bool) -> str:
    return f"it must be a whole number in [{low}, {high}]" if whole else f"it must be a number in [{low}, {high}]"


PARAMETERS: tuple[Parameter, ...] = (
    Parameter(
        "prompt",
        "text",
        "str",
        "",
        call="prompt",
        help="What to paint into the masked area.",
        label="Prompt",
        words="prompt",
        tooltip="What to paint into the masked area. Compel weights work: word++ or (word)1.3 stresses a word, "
        "word-- softens it.",
        advanced=False,
        batch="each",
    ),
    Parameter("image", "image", "Any", call="image", help="The base image.", saved=False, batch="each"),
    Parameter(
        "mask", "image", "Any", call="mask_image", help="White = repaint, black = keep.", saved=False, batch="each"
    ),
    Parameter(
        "negative_prompt",
        "text",
        "str | None",
        call="negative_prompt",
        help="What to steer away from.",
        label="Negative prompt",
        words="negative prompt",
        tooltip="What to steer away from, e.g. 'blurry, bad anatomy, poor details'. Empty for none.",
        panel_default="",
        advanced=False,
        a1111="Negative prompt",
        batch="each",
    ),
    Parameter("model", "name", "str", DEFAULT_MODEL, help="The checkpoint's repo id.", nullable=False, a1111="Model"),
    Parameter(
        "task",
        "choice",
        "str",
        "inpaint",
        help="inpaint, img2img or text2img.",
        choices=("inpaint", "img2img", "text2img"),
        nullable=False,
        a1111="Task",
    ),
    Parameter(
        "strength",
        "float",
        "float | None",
        call="strength",
        help="Noise added to the masked area.",
        minimum=0,
        maximum=1,
        exclusive_minimum=True,
        rule="it must be in (0, 1]",
        fix="Set strength between 0 and 1: e.g. 0.6 stays close to the image, 1.0 repaints.",
        label="Strength",
        words="strength",
        tooltip="How much noise the masked area gets. Higher (up to 1): more freedom, more steps run, further "
        "from the base image. Lower: closer to the base image, fewer steps, sometimes less quality.",
        slider=(0.01, 1.0, 0.01),
        panel_default=1.0,
        advanced=False,
        a1111="Denoising strength",
    ),
    Parameter(
        "guidance_scale",
        "float",
        "float | None",
        call="guidance_scale",
        help="Classifier-free guidance scale.",
        minimum=0,
        rule="it must be a number >= 0",
        range_rule="it must be >= 0",
        fix="Use e.g. 7.5; 0 or 1 turns guidance off.",
        label="Guidance scale",
        words="guidance scale",
        tooltip="How closely to follow the prompt. Higher: a stricter reading of the prompt. Lower: looser, "
        "more varied results (0 or 1 turns guidance off).",
        # Up to 50: Flux Fill's distilled guidance defaults to 30 (each model's own default: model_names).
        slider=(0.0, 50.0, 0.5),
        panel_default=7.5,
        a1111="CFG scale",
    ),
    Parameter(
        "steps",
        "int",
        "int | None",
        call="num_inference_steps",
        help="Denoising steps.",
        minimum=1,
        maximum=MAX_STEPS,
        whole=True,
        rule=_number_rule("1", str(MAX_STEPS), whole=True),
        fix="Use e.g. steps=30.",
        label="Steps",
        words="steps",
        tooltip="Denoising steps (num_inference_steps). More: slower, usually finer. Only int(steps x strength) run.",
        slider=(1, 150, 1),
        panel_default=30,
        advanced=False,
        a1111="Steps",
    ),
    Parameter(
        "seed",
        "int",
        "int | None",
        help="The random seed; None draws one.",
        minimum=0,
        maximum=MAX_SEED,
        whole=True,
        rule=_number_rule("0", str(MAX_SEED), whole=True),
        fix="Use seed=None for a random one.",
        range_fix="Use seed=None for a random one, or a seed from a recipe.",
        label="Seed",
        words="seed",
        tooltip="The random seed: the same seed and settings give the same picture. Unlocked, each Generate "
        "draws a new seed and shows it here; locked, it is reused.",
        panel_default=0,
        advanced=False,
        a1111="Seed",
        batch="each",
    ),
    Parameter(
        "num_images",
        "int",
        "int | None",
        call="num_images_per_prompt",
        help="Images per run.",
        minimum=1,
        maximum=MAX_IMAGES,
        whole=True,
        rule=_number_rule("1", str(MAX_IMAGES), whole=True),
        fix="Use num_images=1, or a sweep for many.",
        label="Images",
        words="image count",
        tooltip="How many images one Generate makes (num_images_per_prompt); each one costs time and memory.",
        slider=(1, 8, 1),
        panel_default=1,
        a1111="Batch size",
    ),
    Parameter(
        "padding_mask_crop",
        "int",
        "int | None",
        call="padding_mask_crop",
        help="Inpaint a crop around the mask with this margin.",
        minimum=0,
        whole=True,
        rule="it must be a whole number of pixels >= 0",
        fix="Use e.g. 32, or None to turn it off.",
        label="padding",
        words="crop padding",
        tooltip="Inpaint only a crop around the mask with this many pixels of margin, upscaled, then "
        "pasted back: more detail for small masks. Off: the whole image at once.",
        slider=(0, 256, 8),
        panel_default=32,
        a1111="Inpaint padding",
        batch="alone",
    ),
    Parameter(
        "blur_factor",
        "float",
        "float",
        0.0,
        help="Feathering of the mask's edge, in pixels (mask_processor.blur).",
        minimum=0,
        maximum=MAX_BLUR,
        rule=f"it must be a number of pixels in [0, {MAX_BLUR}]",
        fix="Use 0 for a hard edge, e.g. 33 for a soft one.",
        nullable=False,
        label="Mask blur",
        words="mask blur",
        tooltip="Feather the mask's edge first (mask_processor.blur). Higher: a softer blend into the image. "
        "0: a hard edge.",
        slider=(0, 100, 1),
        panel_default=0,
        a1111="Mask blur",
        batch="each",
    ),
    Parameter(
        "preserve_unmasked",
        "bool",
        "bool",
        False,
        help="Paste the original unmasked pixels back (apply_overlay).",
        nullable=False,
        label="Preserve unmasked area (apply_overlay)",
        words="preserve unmasked",
        tooltip="Paste the original pixels back outside the mask afterwards (apply_overlay): the "
        "unmasked area stays exactly as it was, at the cost of a more visible seam.",
        batch="each",
    ),
    # -- soft inpainting and the masked-content start (issue 17 items 2 and 4; nbinpaint.soft)
    Parameter(
        "soft",
        "bool",
        "bool | None",
        help="Soft (differential) inpainting: a grey mask is a per-pixel strength (0 keeps, 255 repaints). "
        "None: on when the mask has grey values.",
        panel_off=False,
        label="Soft inpainting (grey mask = partial repaint)",
        words="soft inpainting",
        tooltip="Read the mask's grey levels (and the Mask blur feather) as how much each pixel may change: "
        "a pixel of grey g is held to the image for the first 1 - g/255 of the steps, and the result is "
        "blended back with the same mask, so black pixels stay exactly as they were. Off: on by itself "
        "when the mask has grey values.",
        requires=("strength", "callback_on_step_end"),
        requires_why="it re-blends the latents at every step, starting from the image",
        a1111="Soft inpainting enabled",
    ),
    Parameter(
        "masked_content",
        "choice",
        "str",
        "original",
        help="What the masked area starts from: 'original' pixels, 'fill' (colours blurred in from around the "
        "mask), 'latent_noise' (random latents) or 'telea' (OpenCV's classical fill).",
        choices=("original", "fill", "latent_noise", "telea"),
        nullable=False,
        label="Masked content",
        words="masked content",
        tooltip="What the masked area starts from before denoising (A1111's 'Masked content'): the original "
        "pixels, a fill blurred in from around the mask, random latent noise, or OpenCV's Telea fill. It "
        "matters at strength below 1 (most with regular checkpoints): at strength 1 the start is pure noise.",
        requires=("strength",),
        requires_why="it changes the image the denoising starts from, which only a strength below 1 keeps",
        a1111="Masked content",
    ),
    Parameter(
        "seam_repair",
        "choice",
        "str | None",
        help="Repair the seam at the mask's edge afterwards: 'match', 'poisson' or 'overlay' (nbinpaint.seams).",
        choices=("match", "poisson", "overlay"),
        label="Seam repair",
        words="seam repair",
        tooltip="Fix the edge of the repainted area afterwards. match: recolour it so the colours just inside "
        "the mask match those just outside (histogram matching). poisson: blend it in with its detail kept "
        "(cv2.seamlessClone; outside the mask the original comes back). overlay: paste the original back "
        "outside the mask (apply_overlay). none: leave the pipeline's output as it is.",
        panel_default="none",
        panel_off="none",
        a1111="Seam repair",
    ),
    Parameter(
        "width",
        "int",
        "int | None",
        call="width",
        help="Run width; the image's own size by default.",
        minimum=8,
        maximum=MAX_SIDE,
        whole=True,
        multiple=8,
        rule=f"it must be a multiple of 8 in [8, {MAX_SIDE}]",
        fix="Round it, e.g. 512.",
    ),
    Parameter(
        "height",
        "int",
        "int | None",
        call="height",
        help="Run height; the image's own size by default.",
        minimum=8,
        maximum=MAX_SIDE,
        whole=True,
        multiple=8,
        rule=f"it must be a multiple of 8 in [8, {MAX_SIDE}]",
        fix="Round it, e.g. 512.",
    ),
    Parameter(
        "output_type",
        "choice",
        "str",
        "pil",
        call="output_type",
        help="'pil' images, or 'latent' to hand on to another pipeline.",
        choices=("pil", "latent"),
        nullable=False,
    ),
    Parameter("controlnet", "name", "str | None", help="An inpaint ControlNet's repo id.", a1111="ControlNet"),
    Parameter(
        "control_image",
        "image",
        "Any",
        call="control_image",
        help="The ControlNet's input.",
        saved=False,
        batch="alone",
    ),
    Parameter(
        "controlnet_conditioning_scale",
        "float",
        "float | None",
        call="controlnet_conditioning_scale",
        help="How strongly the ControlNet holds the result to the image.",
        minimum=0,
        rule="it must be a number",
        range_rule="it must be >= 0",
        fix="Use e.g. 1.0 (0 ignores the control).",
        label="scale",
        words="ControlNet scale",
        tooltip="How strongly the ControlNet holds the result to the image. Higher: "
        "follows the image closely. Lower: the model is freer.",
        slider=(0.0, 2.0, 0.05),
        panel_default=1.0,
        a1111="ControlNet weight",
    ),
    Parameter(
        "prompt_embeds",
        "tensor",
        "Any",
        call="prompt_embeds",
        help="Weighted prompt embeddings.",
        saved=False,
        batch="alone",
    ),
    Parameter(
        "negative_prompt_embeds",
        "tensor",
        "Any",
        call="negative_prompt_embeds",
        help="Weighted negative prompt embeddings.",
        saved=False,
        batch="alone",
    ),
    Parameter(
        "dtype",
        "name",
        "str | None",
        help="'float16', 'bfloat16', 'float32' or 'auto'.",
    ),
    Parameter("variant", "name", "str | None", help="A weights variant such as 'fp16'."),
    Parameter(
        "quantize",
        "choice",
        "str | None",
        help="'4bit' or '8bit' weights for the denoiser and T5 (bitsandbytes, on a GPU); None: full weights.",
        choices=("4bit", "8bit"),
        a1111="Quantize",
    ),
    Parameter(
        "extra",
        "mapping",
        "dict[str, Any]",
        help="Further __call__ parameters of a particular pipeline, e.g. {'prior_guidance_scale': 4}.",
        nullable=False,
        batch="alone",
    ),
    Parameter(
        "eta",
        "float",
        "float | None",
        call="eta",
        help="DDIM's eta: how much fresh noise each step adds (0: deterministic DDIM, 1: as much as DDPM).",
        minimum=0,
        maximum=1,
        rule="it must be a number in [0, 1]",
        fix="Use 0 (deterministic DDIM) up to 1, or None for the pipeline's default.",
        label="Eta (DDIM)",
        words="eta",
        tooltip="How much fresh noise each denoising step adds (DDIM's η). 0: deterministic, the same seed "
        "gives the same picture. Higher: more varied detail. Only DDIM-family schedulers read it.",
        slider=(0.0, 1.0, 0.05),
        panel_default=0.0,
        panel_off=0.0,
        a1111="Eta",
    ),
    # -- load options beyond the checkpoint (`nbinpaint.lora`): each is part of the pipeline's key
    Parameter(
        "lora",
        "name",
        "str | None",
        help="A LoRA's repo id, fused into the checkpoint's weights, e.g. 'latent-consistency/lcm-lora-sdv1-5' "
        "(LCM-LoRA also switches to LCMScheduler, 4 steps and guidance 1 unless set).",
        a1111="Lora",
    ),
    Parameter(
        "lora_scale",
        "float",
        "float | None",
        help="How strongly the LoRA is fused in (1.0 when unset).",
        minimum=0,
        maximum=10,
        rule="it must be a number in [0, 10]",
        fix="Use e.g. 1.0 (the LoRA as trained), lower to weaken it, or None.",
        a1111="Lora scale",
    ),
    Parameter(
        "enable_pag",
        "bool",
        "bool",
        False,
        help="Load the checkpoint's PAG pipeline (perturbed-attention guidance; SD 1.x/2.x and SDXL).",
        nullable=False,
        label="PAG (perturbed-attention guidance)",
        words="PAG",
        tooltip="Load the PAG version of the pipeline (SD 1.x/2.x and SDXL): each step also runs the UNet with "
        "its self-attention perturbed and steers away from that, which often sharpens structure. "
        "It costs one more UNet pass a step.",
    ),
    Parameter(
        "pag_scale",
        "float",
        "float | None",
        call="pag_scale",
        help="Perturbed-attention guidance scale (PAG pipelines only; 0 turns it off).",
        minimum=0,
        rule="it must be a number >= 0",
        range_rule="it must be >= 0",
        fix="Use e.g. 3.0 (diffusers' default), or 0 to turn PAG guidance off.",
        label="PAG scale",
        words="PAG scale",
        tooltip="How strongly perturbed-attention guidance steers (PAG pipelines only). Higher: crisper "
        "structure, at some point oversaturated. 0: off.",
        slider=(0.0, 10.0, 0.5),
        panel_default=3.0,
        a1111="PAG scale",
    ),
)

#: Field name -> row.
_BY_NAME: dict[str, Parameter] = {p.name: p for p in PARAMETERS}
#: diffusers' name -> field name, for the fields whose names differ.
ALIASES: dict[str, str] = {p.call: p.name for p in PARAMETERS if p.call is not None and p.call != p.name}
#: Field -> the ``__call__`` keyword it feeds.
CALL_NAMES: dict[str, str] = {p.name: p.call for p in PARAMETERS if p.call is not None}
#: The rows with a panel control, in table order.
PANEL: tuple[Parameter, ...] = tuple(p for p in PARAMETERS if p.in_panel)


def row(name: str) -> Parameter:
    """The row of a field, by its short or its diffusers name."""
    return _BY_NAME[ALIASES.get(name, name)]


def canonical(name: str) -> str | None:
    """The field a name means (``num_inference_steps`` -> ``steps``), or None for an unknown name."""
    name = ALIASES.get(name, name)
    return name if name in _BY_NAME else None


def short_names(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with diffusers' names turned into the fields they mean; other keys (a widget's ``layout``)
    pass unchanged. For keyword arguments that mix parameters with other options."""
    return {ALIASES.get(name, name): value for name, value in params.items()}


def did_you_mean(name: str, known: Iterable[str] | None = None) -> str:
    """`` (did you mean 'x'?)`` for a close known name, else ``""``."""
    names = sorted({*_BY_NAME, *ALIASES} if known is None else set(known))
    close = difflib.get_close_matches(str(name), names, n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def canonical_kwargs(params: Mapping[str, Any], *, extra_allowed: Iterable[str] = ()) -> dict[str, Any]:
    """``params`` with diffusers' names turned into the fields they mean; an unknown name or a field given
    under both names is refused, naming the closest known name."""
    out: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    allowed = set(extra_allowed)
    unknown = []
    for name, value in params.items():
        field_name = canonical(name) if name not in allowed else name
        if field_name is None:
            unknown.append(name)
            continue
        if field_name in out:
            raise InvalidRequestError(
                f"{given_as[field_name]}= and {name}= are the same parameter ({field_name}): pass it once."
            )
        out[field_name] = value
        given_as[field_name] = name
    if unknown:
        shown = ", ".join(f"{name}{did_you_mean(name)}" for name in sorted(map(str, unknown)))
        raise InvalidRequestError(
            f"unknown parameter(s) {shown}: pipeline-specific ones go in extra={{...}}; known: "
            f"{', '.join(sorted([*_BY_NAME, *allowed]))} (and diffusers' names "
            f"{', '.join(sorted(ALIASES))})."
        )
    return out
