"""What to generate (`InpaintRequest`), how it maps onto a pipeline's ``__call__``, and what came back.

The request is validated up front, where the user's input enters, so a mistake never surfaces first as a
tensor shape error deep inside diffusers. Which parameters a pipeline accepts is read from its
``__call__`` signature, never from a hand-kept list.
"""

from __future__ import annotations

import dataclasses
import inspect
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from nbinpaint.errors import GenerationCancelled, InvalidRequestError, UnsupportedParameterError

TASKS = ("inpaint", "img2img", "text2img")
DEFAULT_MODEL = "runwayml/stable-diffusion-inpainting"
MAX_SEED = 2**64 - 1
OUTPUT_TYPES = ("pil", "latent")

# Request field -> the pipeline ``__call__`` parameter it feeds. Only fields the user set (not None)
# are passed on, so a pipeline's own defaults apply to everything else.
CALL_PARAMETERS: dict[str, str] = {
    "prompt": "prompt",
    "negative_prompt": "negative_prompt",
    "image": "image",
    "mask": "mask_image",
    "strength": "strength",
    "guidance_scale": "guidance_scale",
    "steps": "num_inference_steps",
    "num_images": "num_images_per_prompt",
    "padding_mask_crop": "padding_mask_crop",
    "width": "width",
    "height": "height",
    "output_type": "output_type",
    "control_image": "control_image",
    "controlnet_conditioning_scale": "controlnet_conditioning_scale",
    "prompt_embeds": "prompt_embeds",
    "negative_prompt_embeds": "negative_prompt_embeds",
}

ImageLike = Image.Image | np.ndarray | str | Path


def as_rgb(image: ImageLike) -> Image.Image:
    """Any image input as PIL RGB, EXIF rotation applied (``diffusers.utils.load_image`` does both)."""
    from diffusers.utils import load_image

    if isinstance(image, np.ndarray):
        array = image
        if array.dtype != np.uint8:
            array = np.clip(array * (255 if array.max() <= 1 else 1), 0, 255).astype(np.uint8)
        image = Image.fromarray(array)
    if isinstance(image, Path):
        image = str(image)
    if not isinstance(image, (Image.Image, str)):
        raise InvalidRequestError(
            f"image must be a PIL image, a numpy array or a file path, not {type(image).__name__}."
        )
    return load_image(image)


def as_mask(mask: ImageLike) -> Image.Image:
    """Any mask input as PIL "L" with values 0 or 255 (white = repaint, the guide's convention)."""
    if isinstance(mask, np.ndarray):
        array = mask.astype(np.float32)
        if array.ndim == 3:
            array = array.max(axis=2)
        threshold = 0.5 if array.max() <= 1 else 127.5
        return Image.fromarray(np.where(array > threshold, 255, 0).astype(np.uint8), "L")
    gray = as_rgb(mask).convert("L")
    return gray.point(lambda v: 255 if v > 127 else 0)


def multiple_of_8(size: tuple[int, int]) -> tuple[int, int]:
    """The largest multiple-of-8 size not above ``size`` (VAE latents are 1/8 of the pixels)."""
    return max(8, size[0] // 8 * 8), max(8, size[1] // 8 * 8)


def accepted_parameters(pipeline: Any) -> frozenset[str]:
    """Names ``pipeline.__call__`` declares; ``**kwargs`` is ignored since such pipelines swallow extras."""
    signature = inspect.signature(pipeline.__call__)
    return frozenset(
        name
        for name, p in signature.parameters.items()
        if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    )


@dataclass
class InpaintRequest:
    """Everything one generation needs; ``None`` means "the pipeline's own default".

    ``extra`` carries further ``__call__`` parameters of a particular pipeline (for example Kandinsky's
    ``prior_guidance_scale``); they are checked against the pipeline's signature like the rest.
    """

    prompt: str = ""
    image: Any = None
    mask: Any = None
    negative_prompt: str | None = None
    model: str = DEFAULT_MODEL
    task: str = "inpaint"
    strength: float | None = None
    guidance_scale: float | None = None
    steps: int | None = None
    seed: int | None = None
    num_images: int | None = None
    padding_mask_crop: int | None = None
    blur_factor: float = 0.0
    preserve_unmasked: bool = False
    width: int | None = None
    height: int | None = None
    output_type: str = "pil"
    controlnet: str | None = None
    control_image: Any = None
    controlnet_conditioning_scale: float | None = None
    prompt_embeds: Any = None
    negative_prompt_embeds: Any = None
    dtype: str | None = None
    variant: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_kwargs(cls, **params: Any) -> InpaintRequest:
        """A request from keyword arguments, refusing unknown names with the list of known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise InvalidRequestError(
                f"unknown parameter(s) {', '.join(unknown)}: pipeline-specific ones go in extra={{...}}; "
                f"known: {', '.join(sorted(known))}."
            )
        return cls(**params)

    def replace(self, **changes: Any) -> InpaintRequest:
        """A copy with some fields changed (requests are treated as values)."""
        return dataclasses.replace(self, **changes)

    def validated(self) -> InpaintRequest:
        """A checked copy: images normalised, sizes decided, every range verified.

        Raises `InvalidRequestError` naming the parameter and the fix. The original is left as is.
        """
        r = self.replace(extra=dict(self.extra))
        if r.task not in TASKS:
            raise InvalidRequestError(f"task must be one of {', '.join(TASKS)}; got {r.task!r}.")
        if not isinstance(r.model, str) or not r.model.strip():
            raise InvalidRequestError("model must be a repo id such as 'runwayml/stable-diffusion-inpainting'.")
        if r.output_type not in OUTPUT_TYPES:
            raise InvalidRequestError(f"output_type must be one of {OUTPUT_TYPES}; got {r.output_type!r}.")
        if r.image is not None:
            r.image = as_rgb(r.image)
        elif r.task != "text2img":
            raise InvalidRequestError(f"task {r.task!r} needs an image: pass image=<PIL image or path>.")
        if r.mask is not None:
            r.mask = as_mask(r.mask)
        elif r.task == "inpaint":
            raise InvalidRequestError("inpainting needs a mask: pass mask=<white = repaint, black = keep>.")
        if r.task != "inpaint" and (r.preserve_unmasked or r.blur_factor):
            raise InvalidRequestError(
                "preserve_unmasked and blur_factor apply to inpainting only: use task='inpaint' or unset them."
            )
        if r.image is not None and r.mask is not None and r.image.size != r.mask.size:
            raise InvalidRequestError(
                f"the mask is {r.mask.size[0]}x{r.mask.size[1]} but the image is "
                f"{r.image.size[0]}x{r.image.size[1]}: resize the mask to the image's size, e.g. "
                "mask.resize(image.size, PIL.Image.NEAREST)."
            )
        r._check_numbers()
        if r.prompt_embeds is not None and r.prompt:
            raise InvalidRequestError("pass either prompt or prompt_embeds, not both (set prompt='').")
        if r.preserve_unmasked and r.output_type == "latent":
            raise InvalidRequestError("preserve_unmasked works on pixels: use output_type='pil' with it.")
        if r.image is not None and (r.width is None or r.height is None):
            # The SD/SDXL pipelines default to sample_size * vae_scale_factor and Kandinsky to 512x512,
            # not to the image's size: inpaint at the image's own size, rounded down to a multiple of 8.
            width, height = multiple_of_8(r.image.size)
            r.width = r.width if r.width is not None else width
            r.height = r.height if r.height is not None else height
        return r

    def _check_numbers(self) -> None:
        def bad(name: str, rule: str, fix: str) -> InvalidRequestError:
            return InvalidRequestError(f"{name}={getattr(self, name)!r} is invalid: {rule}. {fix}")

        if self.strength is not None and not 0 < self.strength <= 1:
            raise bad("strength", "it must be in (0, 1]", "Use e.g. 0.6 to stay close to the image, 1.0 to repaint.")
        if self.steps is not None and (int(self.steps) != self.steps or self.steps < 1):
            raise bad("steps", "it must be a whole number >= 1", "Use e.g. steps=30.")
        if self.steps is not None and self.strength is not None and int(self.steps * self.strength) < 1:
            raise InvalidRequestError(
                f"steps={self.steps} with strength={self.strength} runs int(steps*strength) = 0 denoising steps: "
                "raise steps or strength."
            )
        if self.guidance_scale is not None and self.guidance_scale < 0:
            raise bad("guidance_scale", "it must be >= 0", "Use e.g. 7.5; 0 or 1 turns guidance off.")
        if self.seed is not None and (int(self.seed) != self.seed or not 0 <= self.seed <= MAX_SEED):
            raise bad("seed", f"it must be a whole number in [0, {MAX_SEED}]", "Use seed=None for a random one.")
        if self.num_images is not None and (int(self.num_images) != self.num_images or self.num_images < 1):
            raise bad("num_images", "it must be a whole number >= 1", "Use num_images=1.")
        if self.blur_factor is None or self.blur_factor < 0:
            raise bad("blur_factor", "it must be >= 0", "Use 0 for a hard edge, e.g. 33 for a soft one.")
        if self.padding_mask_crop is not None:
            if self.padding_mask_crop < 0:
                raise bad("padding_mask_crop", "it must be >= 0 pixels", "Use None to turn it off.")
            if self.image is not None and self.padding_mask_crop >= max(self.image.size):
                raise bad(
                    "padding_mask_crop",
                    f"it is not smaller than the image ({self.image.size[0]}x{self.image.size[1]})",
                    "Use a margin of a few dozen pixels, e.g. 32, or None.",
                )
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None and (int(value) != value or value < 8 or value % 8):
                raise bad(name, "it must be a multiple of 8, at least 8", "Round it, e.g. 512.")

    def call_kwargs(self, pipeline: Any, generator: Any = None) -> dict[str, Any]:
        """The keyword arguments for ``pipeline(...)``: only what the user set, checked against its signature."""
        accepted = accepted_parameters(pipeline)
        kwargs: dict[str, Any] = {}
        for field_name, parameter in CALL_PARAMETERS.items():
            value = getattr(self, field_name)
            if value is None or (field_name == "prompt" and self.prompt_embeds is not None):
                continue
            if field_name == "mask" and self.blur_factor:
                from diffusers.image_processor import VaeImageProcessor

                value = VaeImageProcessor.blur(value, blur_factor=self.blur_factor)
            kwargs[parameter] = value
        kwargs.update(self.extra)
        # output_type="pil" is every pipeline's default: don't make it a reason to refuse a pipeline.
        if "output_type" not in accepted and kwargs.get("output_type") == "pil":
            del kwargs["output_type"]
        # Pipelines without width/height (SD image-to-image) work at the image's own size, which is what
        # `validated` fills in by default; only a size the user chose differently is worth refusing.
        auto_size = self.image is not None and (kwargs.get("width"), kwargs.get("height")) == multiple_of_8(
            self.image.size
        )
        if auto_size and not {"width", "height"} & accepted:
            kwargs.pop("width", None)
            kwargs.pop("height", None)
        unsupported = sorted(name for name in kwargs if name not in accepted)
        if unsupported:
            listed = ", ".join(sorted(accepted - {"self", "return_dict"}))
            raise UnsupportedParameterError(
                f"{', '.join(unsupported)} {'is' if len(unsupported) == 1 else 'are'} not accepted by "
                f"{type(pipeline).__name__} (model {self.model!r}): unset "
                f"{'it' if len(unsupported) == 1 else 'them'}, or choose a model whose pipeline takes "
                f"{'it' if len(unsupported) == 1 else 'them'}. It accepts: {listed}."
            )
        if generator is not None and "generator" in accepted:
            kwargs["generator"] = generator
        return kwargs

    def parameters(self) -> dict[str, Any]:
        """The request's settings as JSON-able values (images and tensors left out)."""
        skip = {"image", "mask", "control_image", "prompt_embeds", "negative_prompt_embeds"}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}


@dataclass
class InpaintResult:
    """Images from one run, with the exact validated request, the seed used, timings and the recipe."""

    images: list[Any]
    request: InpaintRequest
    seed: int
    timings: dict[str, float]
    recipe: dict[str, Any]

    @property
    def image(self) -> Any:
        """The first image (the common case: one image per request)."""
        return self.images[0]

    def _repr_png_(self) -> bytes | None:
        import io

        if not isinstance(self.image, Image.Image):
            return None
        buffer = io.BytesIO()
        self.image.save(buffer, format="PNG")
        return buffer.getvalue()


StepCallback = Callable[[int, int, Mapping[str, Any]], None]


def new_seed() -> int:
    """A fresh random seed, small enough to read and retype."""
    return secrets.randbelow(2**32)


def run_request(
    pipeline: Any,
    request: InpaintRequest,
    *,
    on_step: StepCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    recipe_extra: Mapping[str, Any] | None = None,
) -> InpaintResult:
    """Run a request on a loaded pipeline: the one place where requests meet ``pipeline.__call__``.

    ``on_step(step, total, tensors)`` is called after every denoising step; when ``should_stop()`` turns
    true the run stops at the end of that step with `GenerationCancelled` (raised from the step callback,
    which works for every pipeline, Kandinsky 2.2 included, and leaves the pipeline usable).
    """
    import torch

    from nbinpaint.recipes import build_recipe

    request = request.validated()
    seed = new_seed() if request.seed is None else int(request.seed)
    request = request.replace(seed=seed)
    generator = torch.Generator("cpu").manual_seed(seed)
    kwargs = request.call_kwargs(pipeline, generator)
    accepted = accepted_parameters(pipeline)
    if (on_step or should_stop) and "callback_on_step_end" in accepted:
        kwargs["callback_on_step_end"] = _step_callback(on_step, should_stop, _expected_steps(pipeline, kwargs))

    started = time.perf_counter()
    output = pipeline(**kwargs)
    run_s = time.perf_counter() - started
    images = list(output.images) if request.output_type == "pil" else output.images
    if request.output_type == "pil":
        images = [_finish(image, request) for image in images]
    recipe = build_recipe(request, pipeline, run_size=(request.width, request.height), extra=recipe_extra)
    timings = {"run_s": run_s, "post_s": time.perf_counter() - started - run_s}
    return InpaintResult(images=images, request=request, seed=seed, timings=timings, recipe=recipe)


def _finish(image: Image.Image, request: InpaintRequest) -> Image.Image:
    """Back to the input's size, and with ``preserve_unmasked`` the unmasked pixels restored exactly."""
    if request.image is None:
        return image
    if image.size != request.image.size:
        image = image.resize(request.image.size, Image.Resampling.LANCZOS)
    if request.preserve_unmasked:
        from diffusers.image_processor import VaeImageProcessor

        image = VaeImageProcessor().apply_overlay(request.mask, request.image, image)
    return image


def _expected_steps(pipeline: Any, kwargs: Mapping[str, Any]) -> int:
    """Denoising steps the pipeline will run: int(steps * strength) for image-conditioned pipelines."""
    parameters = inspect.signature(pipeline.__call__).parameters
    if "num_inference_steps" not in parameters:  # a one-shot filler (classical backends)
        return 1
    steps = kwargs.get("num_inference_steps", _default(parameters, "num_inference_steps", 50))
    strength = kwargs.get("strength", _default(parameters, "strength", 1.0))
    return max(1, int(int(steps) * float(strength)))


def _default(parameters: Mapping[str, inspect.Parameter], name: str, fallback: Any) -> Any:
    p = parameters.get(name)
    return fallback if p is None or p.default is inspect.Parameter.empty else p.default


def _step_callback(
    on_step: StepCallback | None, should_stop: Callable[[], bool] | None, total: int
) -> Callable[..., dict[str, Any]]:
    done = 0

    def callback(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        nonlocal done
        done += 1
        if on_step is not None:
            on_step(done, max(total, done), tensors)
        if should_stop is not None and should_stop():
            raise GenerationCancelled("generation cancelled; the pipeline is ready for the next run.")
        return tensors

    return callback
