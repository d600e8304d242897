"""What to generate (`InpaintRequest`), how it maps onto a pipeline's ``__call__``, and what came back.

The request is validated up front, where the user's input enters, so a mistake never surfaces first as a
tensor shape error deep inside diffusers. Which parameters a pipeline accepts is read from its
``__call__`` signature, never from a hand-kept list.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import math
import numbers
import secrets
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from nbinpaint import inputs, lora
from nbinpaint.errors import InvalidRequestError, UnsupportedParameterError, quote
from nbinpaint.notices import notice
from nbinpaint.parameters import (
    CALL_NAMES,
    DEFAULT_MODEL,
    MAX_BLUR,
    MAX_IMAGES,
    MAX_SEED,
    MAX_SIDE,
    MAX_STEPS,
    PARAMETERS,
    canonical_kwargs,
    did_you_mean,
    row,
)
from nbinpaint.results import InpaintResult, PreviewCallback, StepCallback

__all__ = [
    "CALL_PARAMETERS",
    "DEFAULT_MODEL",
    "MASKED_CONTENT",
    "MAX_BLUR",
    "MAX_IMAGES",
    "MAX_SEED",
    "MAX_SIDE",
    "MAX_STEPS",
    "OUTPUT_TYPES",
    "QUANTIZE",
    "TASKS",
    "InpaintRequest",
    "InpaintResult",
    "PreviewCallback",
    "StepCallback",
    "accepted_parameters",
    "as_mask",
    "as_rgb",
    "multiple_of_8",
    "new_seed",
]

TASKS = row("task").choices
OUTPUT_TYPES = row("output_type").choices
MASKED_CONTENT = row("masked_content").choices
QUANTIZE = row("quantize").choices

#: Request field -> the pipeline ``__call__`` parameter it feeds (from the parameter table). Only fields the
#: user set (not None) are passed on, so a pipeline's own defaults apply to everything else.
CALL_PARAMETERS: dict[str, str] = CALL_NAMES

ImageLike = Image.Image | np.ndarray | str | Path


#: Any image input as a new PIL RGB image (modes, EXIF rotation, transparency: `nbinpaint.inputs.to_rgb`).
as_rgb = inputs.to_rgb
#: Any mask input as PIL "L" with values 0 or 255, white = repaint (`nbinpaint.inputs.to_mask`).
as_mask = inputs.to_mask


def multiple_of_8(size: tuple[int, int]) -> tuple[int, int]:
    """The largest multiple-of-8 size not above ``size`` (VAE latents are 1/8 of the pixels)."""
    return inputs.run_size(size, None)


def call_parameters(pipeline: Any) -> Mapping[str, inspect.Parameter]:
    """The parameters of ``pipeline.__call__``, read once per pipeline class (a run asks several times)."""
    call = pipeline.__call__
    function = getattr(call, "__func__", None)
    if function is None:  # not a bound method: read it as it is
        return inspect.signature(call).parameters
    return _parameters_after_self(function)


@functools.lru_cache(maxsize=256)
def _parameters_after_self(function: Callable[..., Any]) -> Mapping[str, inspect.Parameter]:
    parameters = list(inspect.signature(function).parameters.values())[1:]
    return types.MappingProxyType({p.name: p for p in parameters})


def accepted_parameters(pipeline: Any) -> frozenset[str]:
    """Names ``pipeline.__call__`` declares; ``**kwargs`` is ignored since such pipelines swallow extras."""
    return frozenset(
        name
        for name, p in call_parameters(pipeline).items()
        if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    )


def _table_fields(cls: type) -> type:
    """Make ``cls`` a dataclass with one field per row of the parameter table, in the table's order."""
    cls.__annotations__ = {p.name: p.annotation for p in PARAMETERS}
    for p in PARAMETERS:
        setattr(cls, p.name, field(default_factory=dict) if p.kind == "mapping" else p.default)
    cls = dataclass(cls)
    generated = cls.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        generated(self, *args, **canonical_kwargs(kwargs))

    __init__.__signature__ = inspect.signature(generated)  # type: ignore[attr-defined]
    __init__.__doc__ = generated.__doc__
    cls.__init__ = __init__  # type: ignore[method-assign]
    return cls


@_table_fields
class InpaintRequest:
    """Everything one generation needs; ``None`` means "the pipeline's own default".

    The fields are the rows of `nbinpaint.parameters.PARAMETERS` (``prompt``, ``image``, ``mask``,
    ``strength``, ``guidance_scale``, ``steps``, ``seed``, ``num_images``...); diffusers' own names are
    accepted too (``num_inference_steps=``, ``mask_image=``, ``num_images_per_prompt=``). ``extra`` carries
    further ``__call__`` parameters of a particular pipeline (for example Kandinsky's
    ``prior_guidance_scale``); they are checked against the pipeline's signature like the rest.
    """

    @classmethod
    def from_kwargs(cls, **params: Any) -> InpaintRequest:
        """A request from keyword arguments in either vocabulary; an unknown name is refused with the closest
        known one ("did you mean num_inference_steps?") and the list of known ones."""
        return cls(**canonical_kwargs(params))

    def replace(self, **changes: Any) -> InpaintRequest:
        """A copy with some fields changed (requests are treated as values)."""
        return dataclasses.replace(self, **changes)

    def validated(self, *, max_pixels: int | None = None) -> InpaintRequest:
        """A checked copy: images normalised, sizes decided, every range verified.

        Raises `InvalidRequestError` naming the parameter and the fix. The original is left as is.
        ``max_pixels`` caps the automatic run size (see `nbinpaint.inputs.pixel_budget`; None: the
        ``NBINPAINT_MAX_PIXELS`` variable or the default): a larger image is generated smaller and the
        result resized back, with a notice. An explicit ``width``/``height`` is used as given.
        """
        if not isinstance(self.extra, Mapping) or not all(isinstance(k, str) for k in self.extra):
            raise InvalidRequestError(
                "extra must be a dict of pipeline parameter names to values, e.g. extra={'prior_guidance_scale': 4}."
            )
        r = self.replace(extra=dict(self.extra))
        if r.task not in TASKS:
            raise InvalidRequestError(f"task must be one of {', '.join(TASKS)}; got {quote(r.task)}.")
        if not isinstance(r.model, str) or not r.model.strip():
            raise InvalidRequestError("model must be a repo id such as 'runwayml/stable-diffusion-inpainting'.")
        if r.lora is not None and (not isinstance(r.lora, str) or not r.lora.strip()):
            raise InvalidRequestError(
                f"lora={quote(r.lora)} is not a repo id: use e.g. lora='latent-consistency/lcm-lora-sdv1-5', or None."
            )
        if r.lora is None and r.lora_scale is not None:
            raise InvalidRequestError("lora_scale is set but no lora: name the LoRA (lora='owner/name') or unset it.")
        if not isinstance(r.enable_pag, bool):
            raise InvalidRequestError(f"enable_pag must be True or False, not {quote(r.enable_pag)}.")
        for name, value in lora.request_defaults(r.lora).items():  # LCM-LoRA: 4 steps, guidance 1, unless set
            if getattr(r, name) is None:
                setattr(r, name, value)
        if r.output_type not in OUTPUT_TYPES:
            raise InvalidRequestError(f"output_type must be one of {OUTPUT_TYPES}; got {quote(r.output_type)}.")
        if r.quantize is not None and r.quantize not in QUANTIZE:
            raise InvalidRequestError(
                f"quantize must be one of {', '.join(map(repr, QUANTIZE))} or None; got {quote(r.quantize)}."
            )
        # Every pipeline here accepts an empty prompt (Kandinsky 2.2 requires the argument, not words), so
        # None means "no prompt": the masked area is filled from its surroundings alone.
        if r.prompt is None:
            r.prompt = ""
        for name in ("prompt", "negative_prompt"):
            value = getattr(r, name)
            if value is not None and not isinstance(value, str):
                raise InvalidRequestError(
                    f"{name} must be text, not {type(value).__name__}: pass one string (num_images=N makes N images)."
                )
            broken = next((i for i, c in enumerate(value or "") if "\ud800" <= c <= "\udfff"), None)
            if broken is not None:  # half of a UTF-16 pair: no tokenizer (or UTF-8 file) can hold it
                raise InvalidRequestError(
                    f"{name} has an invalid character at position {broken} (a lone surrogate {value[broken]!r}, "
                    "usually from a broken copy-paste): delete it and type the character again."
                )
        if r.image is not None:
            r.image = as_rgb(r.image)
            if min(r.image.size) < inputs.MIN_SIDE:
                raise InvalidRequestError(
                    f"the image is {r.image.size[0]}x{r.image.size[1]}: inpainting needs at least "
                    f"{inputs.MIN_SIDE}x{inputs.MIN_SIDE} pixels (512x512 is typical). Pass a larger image."
                )
        elif r.task != "text2img":
            raise InvalidRequestError(f"task {quote(r.task)} needs an image: pass image=<PIL image or path>.")
        if r.soft not in (None, True, False):
            raise InvalidRequestError(f"soft must be True, False or None (on for a grey mask); got {quote(r.soft)}.")
        r.soft = None if r.soft is None else bool(r.soft)
        if r.masked_content is None:  # a panel control greyed out for this pipeline
            r.masked_content = "original"
        if r.mask is not None:
            # Grey levels kept unless soft=False: the run decides (`nbinpaint.soft.resolve`), knowing the pipeline.
            r.mask = as_mask(r.mask) if r.soft is False or r.task != "inpaint" else inputs.to_mask(r.mask, grey=True)
        elif r.task == "inpaint":
            raise InvalidRequestError("inpainting needs a mask: pass mask=<white = repaint, black = keep>.")
        if r.task != "inpaint" and (r.preserve_unmasked or r.blur_factor or r.soft or r.masked_content != "original"):
            raise InvalidRequestError(
                "preserve_unmasked, blur_factor, soft and masked_content apply to inpainting only: use "
                "task='inpaint' or unset them."
            )
        if r.soft and r.padding_mask_crop is not None:
            raise InvalidRequestError(
                "soft inpainting blends with the whole image's latents, and padding_mask_crop runs on a crop: "
                "unset one of them (padding_mask_crop=None, or soft=False)."
            )
        if r.image is not None and r.mask is not None and r.image.size != r.mask.size:
            raise InvalidRequestError(_size_mismatch(self.image, self.mask, r.image.size, r.mask.size))
        r.check_numbers()
        if r.task == "inpaint" and r.mask is not None:
            inputs.check_mask(_decided(r.mask, faint=r.soft is True), self.mask)
        if r.prompt_embeds is not None and r.prompt:
            raise InvalidRequestError("pass either prompt or prompt_embeds, not both (set prompt='').")
        if r.preserve_unmasked and r.output_type == "latent":
            raise InvalidRequestError("preserve_unmasked works on pixels: use output_type='pil' with it.")
        _check_choices(r)
        if r.seam_repair is not None and (r.task != "inpaint" or r.output_type == "latent"):
            raise InvalidRequestError(
                "seam_repair works on an inpainting result's pixels: use task='inpaint' and output_type='pil' "
                "with it, or seam_repair=None."
            )
        if r.image is not None and (r.width is None or r.height is None):
            # The SD/SDXL pipelines default to sample_size * vae_scale_factor and Kandinsky to 512x512,
            # not to the image's size: inpaint at the image's own size, rounded down to a multiple of 8 and
            # scaled down to the pixel budget.
            budget = inputs.pixel_budget(max_pixels)
            width, height = inputs.run_size(r.image.size, budget)
            r.width = r.width if r.width is not None else width
            r.height = r.height if r.height is not None else height
            inputs.announce_run_size(r.image.size, (r.width, r.height), budget)
        return r

    def check_numbers(self) -> None:
        """Check each number's type and range (NaN, infinities, booleans, absurd sizes refused); then store plain
        int/float. The rules are the parameter table's rows. Public because a recipe read from a PNG is checked
        by the same rules (`nbinpaint.recipes`)."""
        plain: dict[str, int | float] = {}  # numpy scalars, Fractions... as int/float, set once all pass
        for p in PARAMETERS:
            if p.kind in ("int", "float"):
                value = _checked_number(p, getattr(self, p.name), self)
                if value is not None:
                    plain[p.name] = value
        steps, strength = plain.get("steps"), plain.get("strength")
        if steps is not None and strength is not None and int(steps * strength) < 1:
            raise InvalidRequestError(
                f"steps={steps} with strength={strength} runs int(steps*strength) = 0 denoising steps: "
                f"raise steps or strength (e.g. steps={math.ceil(1 / strength)} at this strength)."
            )
        crop = plain.get("padding_mask_crop")
        if crop is not None and self.image is not None and crop >= max(self.image.size):
            raise _bad(
                self,
                "padding_mask_crop",
                f"it is not smaller than the image ({self.image.size[0]}x{self.image.size[1]})",
                "Use a margin of a few dozen pixels, e.g. 32, or None.",
            )
        for name, value in plain.items():
            setattr(self, name, value)

    def call_kwargs(self, pipeline: Any, generator: Any = None) -> dict[str, Any]:
        """The keyword arguments for ``pipeline(...)``: only what the user set, checked against its signature.

        Also checked against the pipeline itself: required arguments, parameters set twice (a field and
        ``extra``), steps the scheduler cannot run, and prompts longer than its tokenizers read (a notice
        saying what is cut, since the pipeline truncates them).
        """
        accepted = accepted_parameters(pipeline)
        pipeline_name = type(pipeline).__name__
        kwargs: dict[str, Any] = {}
        for field_name, parameter in CALL_PARAMETERS.items():
            value = getattr(self, field_name)
            if value is None or (field_name == "prompt" and self.prompt_embeds is not None):
                continue
            if field_name == "mask" and self.blur_factor:
                from diffusers.image_processor import VaeImageProcessor

                value = VaeImageProcessor.blur(value, blur_factor=self.blur_factor)
            if field_name == "mask" and self.soft:  # the pipeline's own mask: every pixel that may change
                value = value.point(lambda v: 255 if v else 0)
            kwargs[parameter] = value
        fields = {parameter: name for name, parameter in CALL_PARAMETERS.items()}
        twice = sorted(set(self.extra) & set(kwargs))
        if twice:
            raise InvalidRequestError(
                f"{', '.join(twice)} is set twice, by {', '.join(fields[n] + '=' for n in twice)} and in extra: "
                f"remove it from extra and use {fields[twice[0]]}=."
            )
        if "generator" in self.extra:
            raise InvalidRequestError("extra['generator'] is not used: pass seed=<number> (the recipe keeps it).")
        kwargs.update(self.extra)
        # output_type="pil" is every pipeline's default: don't make it a reason to refuse a pipeline.
        if "output_type" not in accepted and kwargs.get("output_type") == "pil":
            del kwargs["output_type"]
        # Pipelines without width/height (SD image-to-image) work at the image's own size: give them the
        # inputs at the run size `validated` chose (the result is resized back to the input's size).
        if not {"width", "height"} & accepted and "width" not in self.extra and "height" not in self.extra:
            size = (kwargs.pop("width", None), kwargs.pop("height", None))
            if None not in size and self.image is not None and size != self.image.size:
                for name in ("image", "mask_image", "control_image"):
                    if isinstance(kwargs.get(name), Image.Image):
                        resample = Image.Resampling.NEAREST if name == "mask_image" else Image.Resampling.LANCZOS
                        kwargs[name] = kwargs[name].resize(size, resample)
        self.refuse_unaccepted(kwargs, accepted, pipeline_name)
        self._check_against(pipeline, kwargs)
        if generator is not None and "generator" in accepted:
            kwargs["generator"] = generator
        return kwargs

    def refuse_unaccepted(self, passed: Iterable[str], accepted: frozenset[str], pipeline_class: str) -> None:
        """Refuse the ``passed`` call parameters that the pipeline (``pipeline_class``, taking ``accepted``)
        does not take, with the closest accepted name for each and the full list. Also used where only the
        manager can say what a pipeline takes (a sweep's up-front check on a workshop server)."""
        unsupported = sorted(name for name in passed if name not in accepted)
        if not unsupported:
            return
        listed = ", ".join(sorted(accepted - {"self", "return_dict"}))
        one = len(unsupported) == 1
        as_fields = [name for name in unsupported if name in self.extra and name in CALL_PARAMETERS]
        close = {
            name: match[0]
            for name in unsupported
            if (match := difflib.get_close_matches(name, sorted(accepted - {"self"}), n=1, cutoff=0.75))
        }
        guesses = "; ".join(f"did you mean {hint!r} for {name!r}?" for name, hint in close.items())
        shown = [name if name.isidentifier() and len(name) <= 60 else quote(name, 60) for name in unsupported]
        raise UnsupportedParameterError(
            f"{', '.join(shown)} {'is' if one else 'are'} not accepted by {pipeline_class} "
            f"(model {quote(self.model)}): "
            + (f"{guesses[0].upper()}{guesses[1:]} Otherwise " if guesses else "")
            + f"unset {'it' if one else 'them'}, or choose a model whose pipeline takes {'it' if one else 'them'}. "
            f"It accepts: {listed}."
            + (f" ({', '.join(as_fields)}: pass as {as_fields[0]}=..., not in extra.)" if as_fields else "")
        )

    def _check_against(self, pipeline: Any, kwargs: Mapping[str, Any]) -> None:
        """What only the pipeline object can tell: required arguments, scheduler limits, prompt length."""
        parameters = call_parameters(pipeline)
        fields = {parameter: name for name, parameter in CALL_PARAMETERS.items()}
        for name, p in parameters.items():
            required = p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            if required and name not in kwargs:
                field_name = fields.get(name)
                how = f"set {field_name}=" if field_name else f"pass extra={{{name!r}: ...}}"
                raise InvalidRequestError(
                    f"{type(pipeline).__name__} (model {quote(self.model)}) needs {field_name or name}: {how}"
                    + (" ('' is allowed)." if name == "prompt" else ".")
                )
        if "num_inference_steps" in parameters:
            steps = kwargs.get("num_inference_steps", _default(parameters, "num_inference_steps", None))
            strength = kwargs.get("strength", _default(parameters, "strength", 1.0))
            scheduler = getattr(getattr(pipeline, "scheduler", None), "config", None)
            limit = getattr(scheduler, "num_train_timesteps", None)
            if isinstance(steps, int) and isinstance(limit, int) and steps > limit:
                raise InvalidRequestError(
                    f"steps={steps} is more than the scheduler's {limit} training timesteps: use steps <= {limit} "
                    "(20-50 is typical)."
                )
            if isinstance(steps, int) and isinstance(strength, (int, float)) and int(steps * strength) < 1:
                raise InvalidRequestError(
                    f"steps={steps} with strength={strength} (the pipeline's defaults where unset) runs no "
                    "denoising step: raise strength, or set steps so that int(steps*strength) >= 1."
                )
        for name, what in (("prompt", "prompt"), ("negative_prompt", "negative prompt")):
            if isinstance(kwargs.get(name), str):
                for message in inputs.prompt_truncation(pipeline, kwargs[name], what):
                    notice(message)

    def parameters(self) -> dict[str, Any]:
        """The request's settings as JSON-able values (images and tensors left out)."""
        skip = {"image", "mask", "control_image", "prompt_embeds", "negative_prompt_embeds"}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}


def _check_choices(request: Any) -> None:
    """Each choice field (``seam_repair``...) is one of its row's choices, or None where the row allows it;
    a misspelt one is refused with the closest choice."""
    for p in PARAMETERS:
        value = getattr(request, p.name)
        if p.kind != "choice" or value in p.choices or (value is None and "None" in p.annotation):
            continue
        hint = did_you_mean(value, p.choices) if isinstance(value, str) else ""
        unset = ", or None" if "None" in p.annotation else ""
        raise InvalidRequestError(
            f"{p.name}={quote(value)} is invalid{hint}: it must be one of {', '.join(map(repr, p.choices))}{unset}."
        )


def _decided(mask: Image.Image, *, faint: bool = False) -> Image.Image:
    """A mask that may hold grey levels, as black and white for `inputs.check_mask`: thresholded at half, so a
    mask all below 128 is "all black" (dark strokes on a transparent layer get their hint); with ``faint``
    (``soft=True`` asked for), such a mask repaints a little wherever it is not black."""
    half = mask.point(lambda v: 255 if v >= 128 else 0)
    return mask.point(lambda v: 255 if v else 0) if faint and half.getbbox() is None else half


def _bad(request: Any, name: str, rule: str, fix: str) -> InvalidRequestError:
    return InvalidRequestError(f"{name}={quote(getattr(request, name))} is invalid: {rule}. {fix}")


def _checked_number(p: Any, value: Any, request: Any) -> int | float | None:
    """``value`` checked by row ``p`` (type, then range) as a plain int/float; None when unset."""
    if value is None:
        if p.nullable:
            return None
        raise _bad(request, p.name, p.rule, p.fix)
    integral = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not integral and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
        raise _bad(request, p.name, p.rule, p.fix)
    if not integral and not math.isfinite(value):
        raise _bad(request, p.name, p.rule, p.fix)
    if p.whole and not integral and value != int(value):
        raise _bad(request, p.name, p.rule, p.fix)
    try:
        number = int(value) if p.whole else float(value)
    except OverflowError:  # an integer too large for a float (a hand-edited recipe, a typo)
        raise _bad(request, p.name, p.rule, p.fix) from None
    low_ok = p.minimum is None or (number > p.minimum if p.exclusive_minimum else number >= p.minimum)
    high_ok = p.maximum is None or number <= p.maximum
    if not (low_ok and high_ok) or (p.multiple and number % p.multiple):
        fix = p.range_fix or p.fix
        if p.multiple:  # a size: name the nearest one that works
            fix = f"Round it, e.g. {min(MAX_SIDE, max(p.multiple, int(number) // p.multiple * p.multiple))}."
        raise _bad(request, p.name, p.range_rule or p.rule, fix)
    return number


def _size_mismatch(image: Any, mask: Any, image_size: tuple[int, int], mask_size: tuple[int, int]) -> str:
    """The size-mismatch message, with the likely cause when the sizes are each other's transpose: a photo
    turned upright by its EXIF orientation, or a numpy mask built as (width, height)."""
    message = (
        f"the mask is {mask_size[0]}x{mask_size[1]} but the image is {image_size[0]}x{image_size[1]}: resize the "
        "mask to the image's size, e.g. mask.resize(image.size, PIL.Image.NEAREST)."
    )
    if mask_size != image_size[::-1]:
        return message
    if inputs.exif_orientation(image) in (5, 6, 7, 8) and inputs.exif_orientation(mask) in (None, 1, 2, 3, 4):
        return (
            message + " The image was rotated by its EXIF orientation: draw the mask on "
            "PIL.ImageOps.exif_transpose(image)."
        )
    if isinstance(mask, np.ndarray):
        return (
            message + f" numpy arrays are (height, width): this mask has shape {mask.shape}, so it was probably "
            f"built as (width, height); use mask.T, or np.zeros(({image_size[1]}, {image_size[0]}))."
        )
    return message


def new_seed() -> int:
    """A fresh random seed, small enough to read and retype."""
    return secrets.randbelow(2**32)


def expected_steps(pipeline: Any, kwargs: Mapping[str, Any]) -> int:
    """Denoising steps the pipeline will run: int(steps * strength) for image-conditioned pipelines."""
    parameters = call_parameters(pipeline)
    if "num_inference_steps" not in parameters:  # a one-shot filler (classical backends)
        return 1
    steps = kwargs.get("num_inference_steps", _default(parameters, "num_inference_steps", 50))
    strength = kwargs.get("strength", _default(parameters, "strength", 1.0))
    return max(1, int(int(steps) * float(strength)))


def _default(parameters: Mapping[str, inspect.Parameter], name: str, fallback: Any) -> Any:
    p = parameters.get(name)
    return fallback if p is None or p.default is inspect.Parameter.empty else p.default
