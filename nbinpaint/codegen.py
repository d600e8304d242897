"""Copy-as-code: the stand-alone diffusers script that reproduces a result, pixel for pixel.

The script does what `nbinpaint.requests.run_request` did, with plain diffusers, PIL and torch (no
``import nbinpaint``): load the pipeline as the guide writes it, load the saved inputs with
``diffusers.utils.load_image``, seed a CPU ``torch.Generator`` as nbinpaint does, pass exactly the keyword
arguments nbinpaint passed (computed by the same `InpaintRequest.call_kwargs`, so the two cannot drift
apart), then the same finishing: resize back to the input's size, ``apply_overlay`` with
preserve-unmasked on, and the seam repair (its function copied from `nbinpaint.seams`). Run on the same
device and dtype with the same library versions, it gives identical pixels (the header names what the result
was made with).

Inputs the script reads besides the image and mask sit beside ``image_path``: ``control.png`` (a
ControlNet image given as a picture) and ``tensors.safetensors`` (prompt embeddings from prompt weighting,
or any other tensor argument). The inpaint ControlNet's condition is rebuilt in the script from image and
mask, as the guide does. A LoRA is loaded and fused, and its scheduler switched, as `nbinpaint.lora.fuse` does;
a PAG pipeline is loaded with ``enable_pag=True``.

Classical backends (``classical/telea``, ``classical/ns``, ``classical/biharmonic``) get the equivalent
OpenCV / scikit-image script, the backend's crop-fill-paste steps included, since that is short and
reproduces the pixels exactly; the round-trip tests keep it in step with `nbinpaint.backends.classical`.
"""

from __future__ import annotations

import ast
import json
import keyword
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from nbinpaint.errors import InvalidRequestError, NbinpaintError
from nbinpaint.outpainting import BLUR_RADIUS, RECIPE_KEY, TELEA_RADIUS, Outpaint
from nbinpaint.recipes import RecipeError, parse_recipe, request_from_recipe, to_json

__all__ = ["CONTROL_FILE", "SCRIPT_FILE", "TENSORS_FILE", "CodegenError", "code_for", "export"]

SCRIPT_FILE = "reproduce.py"
"""The script's name in an `export` folder."""
CONTROL_FILE = "control.png"
"""A ControlNet image given as a picture, beside the base image."""
TENSORS_FILE = "tensors.safetensors"
"""Tensor arguments (prompt embeddings...), beside the base image, read with ``safetensors.torch.load_file``."""

# Variable names in the script for the request's pictures (the guide's names).
_IMAGE, _MASK, _BLURRED, _CONTROL = "init_image", "mask_image", "blurred_mask", "control_image"
# Soft inpainting's grey mask and the binary mask the pipeline gets; the masked-content start.
_SOFT, _CONDITION, _START = "soft_mask", "condition_mask", "start_image"


class CodegenError(NbinpaintError, ValueError):
    """A result or recipe cannot be written as a stand-alone script; the message says what to do instead."""


class _Generator:
    """Stands in for the seeded generator in `call_kwargs`, so the script writes the variable's name."""


@dataclass
class _Plan:
    """Everything a script is made from, gathered from a result or a recipe."""

    recipe: Mapping[str, Any]
    request: Any  # the validated, seeded InpaintRequest (stand-in pictures for a recipe)
    pipeline: Any  # a bare instance of the pipeline class, or a classical backend: what call_kwargs reads
    control: str = "none"  # "none", "condition" (rebuilt from image and mask), "file" or "tensor"
    tensors: dict[str, Any] = field(default_factory=dict)  # argument name -> tensor, for TENSORS_FILE
    outpaint: Outpaint | None = None  # an outpainting: the script extends the original and composites


# --------------------------------------------------------------------------------------------------------
# Public API.
# --------------------------------------------------------------------------------------------------------


def code_for(
    result_or_recipe: Any,
    *,
    image_path: str = "image.png",
    mask_path: str = "mask.png",
    output_path: str = "result.png",
) -> str:
    """The script text that reproduces an `InpaintResult` or a recipe dict (``result.recipe``, `load_recipe`).

    ``image_path`` and ``mask_path`` are where the script loads the base image and the mask (`export`
    writes them there), ``output_path`` where it saves the result; several images are saved as
    ``result-0.png``, ``result-1.png``... and ``output_type="latent"`` results as a ``.pt`` file.
    Raises `CodegenError` for what a script cannot rebuild (a chain stage that started from latents, a
    recipe whose prompt embeddings were not stored).
    """
    return _script(_plan(result_or_recipe), _Paths(image_path, mask_path, output_path))


def _script(plan: _Plan, paths: _Paths) -> str:
    if _is_backend(plan.request.model):
        return _classical_script(plan, paths)
    return _diffusers_script(plan, paths)


def export(result: Any, folder: str | os.PathLike[str]) -> Path:
    """Write the script and the inputs it reads into ``folder``; returns the script's path.

    Run it inside that folder (``cd folder && python reproduce.py``): it writes ``result.png`` there.
    """
    from nbinpaint.requests import InpaintResult

    if not isinstance(result, InpaintResult):
        raise CodegenError(
            "export needs an InpaintResult (a recipe holds no pixels). For a saved PNG, use "
            "code_for(load_recipe(png), image_path=..., mask_path=...) with the files in its inputs/ folder."
        )
    plan = _plan(result)
    text = _script(plan, _Paths("image.png", "mask.png", "result.png"))  # also collects plan.tensors
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    request = plan.request
    if plan.outpaint is not None:  # the script extends the original and makes the mask itself
        plan.outpaint.original(request.image).save(folder / "image.png", format="PNG")
    elif request.image is not None:
        request.image.save(folder / "image.png", format="PNG")
    if request.mask is not None and plan.outpaint is None:
        request.mask.save(folder / "mask.png", format="PNG")
    if plan.control == "file":
        request.control_image.save(folder / CONTROL_FILE, format="PNG")
    if plan.tensors:
        from safetensors.torch import save_file

        save_file({name: t.detach().cpu().contiguous() for name, t in plan.tensors.items()}, folder / TENSORS_FILE)
    script = folder / SCRIPT_FILE
    script.write_text(text, encoding="utf-8")
    return script


# --------------------------------------------------------------------------------------------------------
# From a result or a recipe to a plan.
# --------------------------------------------------------------------------------------------------------


def _is_backend(model: str) -> bool:
    from nbinpaint.backends import is_backend_id

    return is_backend_id(model)


def _plan(source: Any) -> _Plan:
    from nbinpaint.requests import InpaintResult

    if isinstance(source, InpaintResult):
        recipe, request = _parsed(source.recipe), source.request
    elif isinstance(source, Mapping):
        recipe = _parsed(source)
        request = _request_from_recipe(recipe)
    else:
        raise CodegenError(
            f"code_for takes an InpaintResult or a recipe dict, not {type(source).__name__}: pass result, "
            "result.recipe or nbinpaint.load_recipe('result.png')."
        )
    if recipe.get("input_latents") is not None:
        raise CodegenError(
            "this chain stage started from the previous stage's latents, which no file holds: export the "
            "chain's first stage, or run the stage from pixels (a chain with hand-off 'pixels') to export it."
        )
    plan = _Plan(recipe, request, _pipeline_for(recipe, request))
    if recipe.get(RECIPE_KEY) is not None:  # parse_recipe checked it
        plan.outpaint = Outpaint.from_recipe(recipe[RECIPE_KEY])
    _plan_control(plan, source)
    return plan


def _parsed(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe as its PNG would hold it, checked by `parse_recipe`: whatever reaches the script (names,
    the docstring's versions, device and dtype, the pipeline class) is one of its checked fields."""
    try:
        data = json.loads(to_json(recipe))  # tensors in an in-memory recipe's extra become their repr text
    except (TypeError, ValueError, RecursionError) as error:
        raise RecipeError(f"this recipe cannot be read as JSON ({str(error)[:80]}): pass a recipe dict.") from None
    return parse_recipe(data)


def _request_from_recipe(recipe: Mapping[str, Any]) -> Any:
    """The run's request from a parsed recipe, with blank pictures of the input's size standing in for the
    pixels (`parse_recipe` bounds that size).

    Only the pictures' sizes matter to `call_kwargs` (whether width/height were the automatic ones).
    """
    parameters = recipe.get("parameters") or {}
    extra = parameters.get("extra") or {}
    as_text = [key for key, value in extra.items() if str(value).startswith("tensor(")]
    if as_text or recipe.get("prompt_weighting"):
        raise CodegenError(
            f"a recipe does not carry {', '.join(as_text) or 'prompt embeddings'} as a file: generate the code "
            "from the InpaintResult itself (code_for(result) or export(result, folder)), which saves them."
        )
    size = recipe.get("input_size")
    blank = hole = None
    if size is not None:
        blank, hole = Image.new("RGB", tuple(size)), Image.new("L", tuple(size))
        hole.putpixel((0, 0), 255)  # validation refuses a mask with nothing to repaint
    request = request_from_recipe(recipe, image=blank, mask=hole)
    if parameters.get("task", "inpaint") == "text2img" or size is None:
        request = request.replace(image=None, mask=None)
    elif parameters.get("task", "inpaint") == "img2img":
        request = request.replace(mask=None)
    if request.controlnet and blank is not None:
        request = request.replace(control_image=blank)  # so call_kwargs places control_image where it did
    try:
        request = request.validated()
    except InvalidRequestError as error:  # each field is valid, their combination is not: no run made this
        raise RecipeError(f"this recipe's settings do not make a request nbinpaint runs: {error}") from None
    if request.seed is None:  # request_from_recipe took the run's seed, or the parameters' if it has none
        raise RecipeError(
            "this recipe names no seed ('seed' is null): without the run's seed no script gives its pixels. "
            "Use the PNG as nbinpaint saved it.",
            field="seed",
        )
    return request


def _pipeline_for(recipe: Mapping[str, Any], request: Any) -> Any:
    if _is_backend(request.model):
        from nbinpaint.backends import get_backend

        return get_backend(request.model)
    import diffusers

    name = recipe.get("pipeline")  # an identifier: parse_recipe checked it
    try:
        cls = getattr(diffusers, name, None) if name else None
    except (ImportError, RuntimeError):  # diffusers imports a pipeline's module on first use: its dependencies
        cls = None
    if cls is None:
        raise CodegenError(
            f"diffusers {diffusers.__version__} has no pipeline class {name!r} (the recipe's 'pipeline'): "
            "install the diffusers version the recipe names under 'versions'."
        )
    pipeline_class = isinstance(cls, type) and issubclass(cls, diffusers.DiffusionPipeline)
    if not pipeline_class or not any("__call__" in vars(base) for base in cls.__mro__[:-1]):
        raise RecipeError(
            f"the recipe's 'pipeline' {name!r} is no diffusers pipeline class (one with a __call__, such as "
            "StableDiffusionInpaintPipeline): correct it, or use the PNG as nbinpaint saved it.",
            field="pipeline",
        )
    # call_kwargs reads the signature of __call__ and looks for a scheduler and tokenizers (absent here, so
    # nothing is checked twice): a bare instance, made without __init__, has the bound __call__ and no weights.
    return object.__new__(cls)


def _plan_control(plan: _Plan, source: Any) -> None:
    """How the script gets the ControlNet image: rebuilt from image and mask, from a file, or from tensors."""
    request = plan.request
    if not request.controlnet:
        return
    control = request.control_image
    if isinstance(source, Mapping):  # a recipe: a picture was saved under inputs/, a condition tensor was not
        has_file = "control_image" in (plan.recipe.get("inputs") or {})
        plan.control = "file" if has_file else "condition"
        return
    import torch

    from nbinpaint.control import make_inpaint_condition

    if isinstance(control, Image.Image):
        plan.control = "file"
    elif isinstance(control, torch.Tensor):
        condition = make_inpaint_condition(request.image, request.mask)
        same = control.shape == condition.shape and torch.equal(control.cpu().float(), condition)
        plan.control = "condition" if same else "tensor"
    else:
        raise CodegenError(
            f"the control image is a {type(control).__name__}: copy-as-code handles a PIL image or a tensor."
        )


# --------------------------------------------------------------------------------------------------------
# Writing scripts.
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Paths:
    image: str
    mask: str
    output: str

    def beside_image(self, name: str) -> str:
        return os.path.join(os.path.dirname(self.image), name)


def _q(text: str) -> str:
    """A string as a double-quoted Python literal."""
    return _literal("text", str(text))


_PROSE = re.compile(r"[A-Za-z0-9_.+!:/-]{1,64}")


def _prose(value: Any) -> str:
    """A recipe value as words in the docstring: `parse_recipe` already held it to a version, device or dtype
    pattern; anything else (no quote, backslash or line break can close the docstring) shows as "?"."""
    return value if isinstance(value, str) and _PROSE.fullmatch(value) else "?"


def _numbered(output: str) -> str:
    """The f-string naming image ``index`` of several: ``f"result-{index}.png"`` for ``result.png`` (braces in
    the path doubled, so they stay text)."""
    stem, suffix = os.path.splitext(output)
    escaped = [part.replace("{", "{{").replace("}", "}}") for part in (stem, suffix)]
    return "f" + _q(f"{escaped[0]}-{{index}}{escaped[1]}")


def _header(plan: _Plan) -> list[str]:
    recipe = plan.recipe
    versions = recipe.get("versions") or {}
    made_with = ", ".join(f"{_prose(k)} {_prose(v)}" for k, v in versions.items() if k != "nbinpaint")
    where = f"on {_prose(recipe.get('device'))}"
    if not _is_backend(plan.request.model):
        where += f" in {_prose(recipe.get('dtype'))}"
    lines = [
        '"""Reproduce an nbinpaint result with plain diffusers: same model, parameters and seed, same pixels.',
        "",
        f"Made with nbinpaint {_prose(versions.get('nbinpaint'))} ({made_with or 'versions not recorded'}) {where};",
        "the same library versions, device and dtype give identical pixels.",
        "",
        "The image files it loads below are the result's inputs: the studio's Export button (or",
        "nbinpaint.codegen.export(result, folder)) writes them beside this script, and the script itself.",
    ]
    if recipe.get("twin"):
        lines += [
            "",
            "This result came from a tiny random-weight twin (nbinpaint twin mode): to get the same pixels, run",
            "with HF_HUB_CACHE=<the twins folder, as `python -m nbinpaint twins` prints it> and HF_HUB_OFFLINE=1.",
        ]
    return [*lines, '"""', ""]


def _dtype_name(recipe: Mapping[str, Any]) -> str:
    dtype = str(recipe.get("dtype") or "float32").replace("torch.", "")
    return dtype if dtype in ("float32", "float16", "bfloat16") else "float32"


def _reads_back(text: str, value: Any) -> bool:
    try:
        read = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return False
    return type(read) is type(value) and read == value


def _double_quoted(text: str) -> str:
    """A string as a double-quoted literal, as the guide writes them. Every character that is not printable
    (line and paragraph separators, form feed, bidi overrides, zero-width marks, NUL) is escaped as ``repr``
    escapes it, so the script shows on one line exactly what it runs."""
    escaped = ("\\" + c if c in '"\\' else c if c.isprintable() else repr(c)[1:-1] for c in text)
    return f'"{"".join(escaped)}"'


def _literal(name: str, value: Any) -> str:
    """Python source for a value that reads back as itself (``repr``; strings in double quotes); anything
    else cannot go into a script as text."""
    text = _double_quoted(value) if isinstance(value, str) else repr(value)
    same = _reads_back(text, value)
    if not same:
        raise CodegenError(
            f"the argument {name}={text[:60]} cannot be written into a script: pass plain values "
            "(numbers, strings, lists) or tensors in a request's extra to use copy-as-code."
        )
    return text


def _call_kwargs(plan: _Plan) -> dict[str, Any]:
    """What nbinpaint passed to the pipeline (`InpaintRequest.call_kwargs`), the generator a stand-in."""
    try:
        return plan.request.call_kwargs(plan.pipeline, _Generator())
    except NbinpaintError:
        raise
    except (ValueError, OverflowError) as error:  # a value PIL refuses, such as a blur radius beyond its range
        raise CodegenError(
            f"these settings cannot be passed to {type(plan.pipeline).__name__} ({error}): no run made them."
        ) from error


def _arguments(plan: _Plan) -> list[tuple[str, str]]:
    """(name, source text) for each keyword argument nbinpaint passed, in its order."""
    import torch

    request = plan.request
    kwargs = _call_kwargs(plan)
    arguments: list[tuple[str, str]] = []
    for name, value in kwargs.items():
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise CodegenError(f"the argument {name!r} cannot be a keyword argument in a script: it is no Python name.")
        if isinstance(value, _Generator):
            text = "generator"
        elif name == "image" and request.image is not None and isinstance(value, Image.Image):
            text = _resized(_IMAGE, request.image, value, "LANCZOS")
        elif name == "mask_image" and request.mask is not None:
            variable = _CONDITION if request.soft else _BLURRED if request.blur_factor else _MASK
            text = _resized(variable, request.mask, value, "NEAREST")
        elif name == "control_image" and plan.control in ("condition", "file"):
            text = _resized(_CONTROL, request.control_image, value, "LANCZOS")
        elif isinstance(value, torch.Tensor):
            plan.tensors[name] = value
            text = f'tensors["{name}"]'
        else:
            text = _literal(name, value)
        arguments.append((name, text))
    return arguments


def _resized(variable: str, source: Any, passed: Any, resample: str) -> str:
    """The variable, or its resize when `call_kwargs` passed the picture at the run size (pipelines without
    width/height, such as SD image-to-image, get their inputs already at the size nbinpaint chose)."""
    size = getattr(passed, "size", None)
    if not isinstance(passed, Image.Image) or not isinstance(source, Image.Image) or size == source.size:
        return variable
    return f"{variable}.resize({tuple(size)!r}, Image.Resampling.{resample})"


def _load_inputs(plan: _Plan, paths: _Paths) -> list[str]:
    request = plan.request
    lines: list[str] = []
    if request.image is None:
        return lines
    if plan.outpaint is not None:
        lines += _outpaint_lines(plan, paths)
    elif request.mask is not None:
        lines += [
            "# Load the base image and the mask (white = repaint); masks are single-channel",
            f"{_IMAGE} = load_image({_q(paths.image)})",
            f'{_MASK} = load_image({_q(paths.mask)}).convert("L")',
        ]
    else:
        lines += ["# Load the base image", f"{_IMAGE} = load_image({_q(paths.image)})"]
    if request.blur_factor:
        lines += [
            "",
            "# Soften the mask's edge, so the repainted area blends into the rest",
            f"{_BLURRED} = VaeImageProcessor.blur({_MASK}, blur_factor={request.blur_factor!r})",
        ]
    if request.soft:
        lines += [
            "",
            "# Soft inpainting: the grey mask is a per-pixel strength; the pipeline gets every pixel that may change",
            f"{_SOFT} = {_BLURRED if request.blur_factor else _MASK}",
            f"{_CONDITION} = {_SOFT}.point(lambda v: 255 if v else 0)",
        ]
    return [*lines, ""]


def _finish_lines(plan: _Plan, target: str) -> list[str]:
    """The same finishing as nbinpaint's: back to the input's size, then the unmasked pixels restored."""
    request = plan.request
    if request.image is None or request.output_type != "pil":
        return []
    lines = [
        f"{target} = {target}.resize({_IMAGE}.size, Image.Resampling.LANCZOS) if {target}.size != {_IMAGE}.size "
        f"else {target}"
    ]
    if request.preserve_unmasked or request.soft:
        mask = _SOFT if request.soft else _MASK
        lines.append(f"{target} = VaeImageProcessor().apply_overlay({mask}, {_IMAGE}, {target})")
    lines += _seam_lines(request, target)
    if plan.outpaint is not None:
        lines += [
            f'mixed = blend * np.asarray({target}.convert("RGB")) + (1.0 - blend) * np.asarray({_IMAGE})',
            f'{target} = Image.fromarray(np.rint(mixed).astype(np.uint8), "RGB")',
        ]
    return lines


def _seam_lines(request: Any, target: str) -> list[str]:
    """The ``seam_repair`` step, as `nbinpaint.seams.repair` does it (after the overlay, on the finished image)."""
    from nbinpaint.seams import DEFAULT_BAND

    method = request.seam_repair
    if method == "overlay":
        return [f"{target} = VaeImageProcessor().apply_overlay({_MASK}, {_IMAGE}, {target})"]
    if method == "poisson":
        inside = f'np.asarray({_MASK}.convert("L")) > 127'
        return [
            f'{target} = Image.fromarray(poisson_blend(np.asarray({target}), np.asarray({_IMAGE}), {inside}), "RGB")'
        ]
    if method == "match":
        weight = f'np.asarray({_MASK}.convert("L"), dtype=np.float64) / 255.0'
        return [
            f"weight = {weight}",
            f'{target} = Image.fromarray(match_colours(np.asarray({target}), weight, {DEFAULT_BAND}), "RGB")',
        ]
    return []


def _seam_helper(request: Any) -> list[str]:
    """The seam repair's function, copied from `nbinpaint.seams` (so the script cannot repair otherwise)."""
    import inspect

    from nbinpaint import seams

    helper = {"match": seams.match_colours, "poisson": seams.poisson_blend}.get(request.seam_repair)
    if helper is None or request.output_type != "pil":
        return []
    return [
        f"# Seam repair {request.seam_repair!r}, as nbinpaint.seams does it",
        *inspect.getsource(helper).splitlines(),
        "",
        "",
    ]


def _finish_comment(request: Any) -> str:
    """What the finishing lines do, in one comment."""
    words = ["# Back to the input's size"]
    if request.preserve_unmasked or request.soft:
        words.append("the unmasked area restored exactly")
    if request.seam_repair is not None:
        words.append(f"the seam repaired ({request.seam_repair})")
    if len(words) == 1:
        return "# Back to the input's size (the pipeline ran at multiples of 8)"
    return words[0] + ", " + (", then ".join(words[1:]))


def _outpaint_lines(plan: _Plan, paths: _Paths) -> list[str]:
    """Extend the original as `nbinpaint.outpainting.Outpaint` does: the start canvas, the mask with its overlap
    band, and the blend weights the finish composites with (the same numpy operations, so the same pixels)."""
    outpaint, seed = plan.outpaint, int(plan.request.seed)
    assert outpaint is not None
    width, height = outpaint.size
    added = ", ".join(
        f"{getattr(outpaint, side)} px {side}" for side in ("left", "right", "top", "bottom") if getattr(outpaint, side)
    )
    band = [outpaint.overlap if getattr(outpaint, side) else 0 for side in ("left", "right", "top", "bottom")]
    fill = {
        "edge": [
            "# The new area starts as the original's edge pixels stretched outwards",
            f'{_IMAGE} = Image.fromarray(np.pad(pixels, pad, mode="edge"))',
        ],
        "blur": [
            "# The new area starts as the original's edge pixels stretched outwards, blurred",
            f'{_IMAGE} = Image.fromarray(np.pad(pixels, pad, mode="edge"))'
            f".filter(ImageFilter.GaussianBlur({BLUR_RADIUS}))",
        ],
        "telea": [
            "# The new area starts as OpenCV's Telea fill continuing the original's edge",
            "hole = np.pad(np.zeros(pixels.shape[:2], np.uint8), pad[:2], constant_values=255)",
            f"{_IMAGE} = Image.fromarray(cv2.inpaint(np.pad(pixels, pad), hole, {TELEA_RADIUS}, cv2.INPAINT_TELEA))",
        ],
        "noise": [
            "# The new area starts as uniform noise, seeded with the run's seed",
            f"noise = np.random.default_rng({seed}).integers(0, 256, ({height}, {width}, 3), dtype=np.uint8)",
            f"{_IMAGE} = Image.fromarray(noise)",
        ],
    }[outpaint.fill]
    ramps = {
        "left": "ramp(x)[None, :]",
        "right": "ramp(original.width - 1 - x)[None, :]",
        "top": "ramp(y)[:, None]",
        "bottom": "ramp(original.height - 1 - y)[:, None]",
    }
    return [
        f"# Outpainting: the original, extended by {added} to {width}x{height} (multiples of 8)",
        f"original = load_image({_q(paths.image)})",
        f"left, right, top, bottom = {outpaint.left}, {outpaint.right}, {outpaint.top}, {outpaint.bottom}",
        "pixels = np.array(original)",
        "pad = ((top, bottom), (left, right), (0, 0))",
        *fill,
        f"{_IMAGE}.paste(original, (left, top))  # the original's own pixels stay as they are",
        "",
        f"# The mask (white = repaint): the new area and a {outpaint.overlap} px band into the original along each "
        "extended side",
        f"keep = np.zeros(({height}, {width}), bool)",
        f"keep[top + {band[2]} : top + original.height - {band[3]}, left + {band[0]} : left + original.width - "
        f"{band[1]}] = True",
        f'{_MASK} = Image.fromarray(np.where(keep, 0, 255).astype(np.uint8), "L")',
        "",
        "# How much of the new picture the finish keeps: all of it on the new area (blend 1), none beyond the band",
        f"# (blend 0: the original's pixels exactly), a ramp over {outpaint.feather} px across the band",
        "def ramp(distance):",
        f"    return np.clip(({outpaint.overlap} - distance) / {max(outpaint.feather, 1)}, 0.0, 1.0)",
        "",
        "",
        "x, y = np.arange(original.width), np.arange(original.height)",
        "inner = np.zeros((original.height, original.width))",
        *(f"inner = np.maximum(inner, {ramps[side]})" for side in ramps if getattr(outpaint, side)),
        f"blend = np.ones(({height}, {width}))",
        "blend[top : top + original.height, left : left + original.width] = inner",
        "blend = blend[..., None]",
    ]


def _outpaint_imports(plan: _Plan, imports: list[str]) -> list[str]:
    """``imports`` with what the outpainting lines need: numpy, PIL's ImageFilter (blur), cv2 (Telea)."""
    if plan.outpaint is None:
        return imports
    rest = [line for line in imports if line not in ("import numpy as np", "import cv2")]
    telea = plan.outpaint.fill == "telea" or "import cv2" in imports  # the fill, or a classical backend
    front = [*(["import cv2"] if telea else []), "import numpy as np"]
    if plan.outpaint.fill == "blur":
        rest = [("from PIL import Image, ImageFilter" if line == "from PIL import Image" else line) for line in rest]
    return front + rest


def _save_lines(plan: _Plan, paths: _Paths, produce: str) -> list[str]:
    """Run the pipeline (``produce`` gives the output's images), finish and save."""
    request = plan.request
    count = request.num_images or 1
    if request.output_type == "latent":
        target = str(Path(paths.output).with_suffix(".pt"))
        return [
            "# Generate: the output stays latents, saved as a tensor",
            f"latents = {produce}",
            "",
            f"torch.save(latents, {_q(target)})",
        ]
    finish = _finish_lines(plan, "image")
    comment = _finish_comment(request)
    if plan.outpaint is not None:
        comment += "; then the original pasted back, blended across the band"
    if count == 1:
        lines = ["# Generate", f"image = {produce}[0]", ""]
        if finish:
            lines += [comment, *finish, ""]
        return [*lines, f"image.save({_q(paths.output)})"]
    lines = ["# Generate", f"images = {produce}", "", "for index, image in enumerate(images):"]
    if finish:
        lines += [f"    {comment}", *(f"    {line}" for line in finish)]
    return [*lines, f"    image.save({_numbered(paths.output)})"]


def _diffusers_script(plan: _Plan, paths: _Paths) -> str:
    # The manager's table and dtype keyword: ``dtype=`` where diffusers reads it (0.42 deprecates the
    # guide's ``torch_dtype=``), so the script loads exactly as nbinpaint did, without a warning.
    from nbinpaint.pipeline_manager import AUTO_PIPELINES, PIPELINE_CLASSES, _dtype_keyword, quantization_config

    request = plan.request
    arguments = _arguments(plan)  # first: it decides whether tensors are read from a file
    # The class the manager loaded with: its table's (FluxFillPipeline, which no Auto class maps), else Auto.
    auto = PIPELINE_CLASSES.get(request.model, {}).get(request.task) or AUTO_PIPELINES[request.task]
    dtype = f"torch.{_dtype_name(plan.recipe)}"
    device = str(plan.recipe.get("device") or "cpu")
    load_options = f"{_dtype_keyword()}={dtype}, use_safetensors=True" + (
        f", variant={_q(request.variant)}" if request.variant else ""
    )
    quantized: list[str] = []
    if request.quantize:  # the recipe records the quantization that ran: None where it fell back
        import torch

        config = quantization_config(request.model, request.quantize, getattr(torch, _dtype_name(plan.recipe)))
        quantized = [
            f"# {request.quantize} weights (bitsandbytes) for the denoiser and T5, as nbinpaint loaded them",
            "quantization = PipelineQuantizationConfig(",
            f"    quant_backend={_q(config.quant_backend)},",
            "    quant_kwargs={"
            + ", ".join(f"{_q(k)}: {_option_source(v)}" for k, v in config.quant_kwargs.items())
            + "},",
            f"    components_to_quantize={[*config.components_to_quantize]!r},",
            ")",
            "",
        ]
        load_options += ", quantization_config=quantization"
    if request.enable_pag:  # the checkpoint's PAG pipeline class, as `nbinpaint.lora.pag_pipeline` derives it
        load_options += ", enable_pag=True"
    lora_lines, scheduler = _lora_lines(request)
    seam = request.seam_repair if request.output_type == "pil" else None
    needs_numpy = plan.control == "condition" or seam in ("match", "poisson")
    finishes = (request.preserve_unmasked or request.soft) and request.output_type == "pil"
    needs_processor = bool(request.blur_factor or finishes) or seam == "overlay"
    imports = ["import numpy as np"] if needs_numpy else []
    imports += ["import torch"]
    diffusers_names = sorted({auto, *(["ControlNetModel"] if request.controlnet else []), *filter(None, [scheduler])})
    diffusers_names += ["PipelineQuantizationConfig"] if quantized else []
    imports.append(f"from diffusers import {', '.join(diffusers_names)}")
    if needs_processor:
        imports.append("from diffusers.image_processor import VaeImageProcessor")
    if request.image is not None or plan.control == "file":
        imports.append("from diffusers.utils import load_image")
    if request.image is not None:  # resizing and finishing
        imports.append("from PIL import Image")
    if plan.tensors:
        imports.append("from safetensors.torch import load_file")

    lines = [*_header(plan), *_outpaint_imports(plan, imports), "", *quantized, *_seam_helper(request)]
    # With a LoRA the weights are fused before they move to the device, as the manager does.
    placed = f").to({_q(device)})" if not lora_lines else ")"
    if request.controlnet:
        lines += [
            "# Load the ControlNet, then the pipeline around it",
            "controlnet = ControlNetModel.from_pretrained(",
            f"    {_q(request.controlnet)}, {load_options}",
            ")",
            f"pipeline = {auto}.from_pretrained(",
            f"    {_q(request.model)}, controlnet=controlnet, {load_options}",
            placed,
            "",
        ]
    else:
        lines += [
            f"# Load the pipeline ({type(plan.pipeline).__name__}) in the dtype and on the device of the result",
            f"pipeline = {auto}.from_pretrained(",
            f"    {_q(request.model)}, {load_options}",
            placed,
            "",
        ]
    if lora_lines:
        lines += [*lora_lines, f"pipeline = pipeline.to({_q(device)})", ""]
    lines += _load_inputs(plan, paths)
    lines += _control_lines(plan, paths)
    if plan.tensors:
        lines += [
            "# Tensor arguments (prompt embeddings from prompt weighting...), saved beside the image",
            f"tensors = load_file({_q(paths.beside_image(TENSORS_FILE))}, device={_q(device)})",
            "",
        ]
    lines += [
        "# The seed: a CPU generator, so the same seed gives the same noise on every device",
        f'generator = torch.Generator("cpu").manual_seed({int(request.seed)})',
        "",
    ]
    start, blend = _under_the_mask(plan, arguments)
    lines += start
    call = ["pipeline(", *(f"    {name}={text}," for name, text in arguments), ").images"]
    if blend:  # the blend wraps the pipeline's prepare_latents for the length of the call
        lines += [*blend, "with blend:", "    images = pipeline("]
        lines += [
            *(f"        {name}={text}," for name, text in arguments),
            "        callback_on_step_end=blend.after_step,",
        ]
        lines += ["    ).images", ""]
        lines += _save_lines(plan, paths, "images")
        return "\n".join(lines) + "\n"
    lines += _save_lines(plan, paths, "\n".join(call))
    return "\n".join(lines) + "\n"


def _under_the_mask(plan: _Plan, arguments: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """The lines of the masked-content start and the soft blend (`nbinpaint.soft`, whose self-contained
    ``masked_start`` and ``LatentBlend`` the script copies), as `nbinpaint.runner` runs them; ``arguments``
    gets the start image in place of the image."""
    import inspect

    from nbinpaint import soft

    request = plan.request
    given = dict(arguments)
    content = request.masked_content
    start: list[str] = []
    if content in ("fill", "telea") and "image" in given and request.image is not None:
        start = [
            f"# Masked content {content!r}: the masked pixels start from a fill (A1111's 'Masked content')",
            *inspect.getsource(soft.masked_start).splitlines(),
            "",
            "",
            f"{_START} = masked_start({given['image']}, {given['mask_image']}, {_q(content)})",
            "",
        ]
        arguments[:] = [(name, _START if name == "image" else text) for name, text in arguments]
    noise = content == "latent_noise" and "mask_image" in given
    if not (request.soft or noise):
        return start, []
    size = (request.width, request.height)
    soft_mask = "None"
    if request.soft:  # at the run's size, as the latents are
        resize = request.mask is not None and request.mask.size != size
        soft_mask = f"{_SOFT}.resize({size!r}, Image.Resampling.BILINEAR)" if resize else _SOFT
    noise_mask = f"{given['mask_image']}.point(lambda v: 255 if v >= 128 else 0)" if noise else "None"
    what = " and ".join(
        (["soft inpainting: each step re-blends the latents with the noised image"] if request.soft else [])
        + (["the masked latents start from random latents"] if noise else [])
    )
    blend = [
        f"# Under the mask, {what} (nbinpaint.soft.LatentBlend)",
        *inspect.getsource(soft.LatentBlend).splitlines(),
        "",
        "",
        f"blend = LatentBlend(pipeline, {int(request.seed)}, soft_mask={soft_mask}, noise_mask={noise_mask})",
        "",
    ]
    return start, blend


def _option_source(value: Any) -> str:
    """A quantization option as source: torch dtypes by name, everything else by repr."""
    import torch

    return f"torch.{str(value).replace('torch.', '')}" if isinstance(value, torch.dtype) else repr(value)


def _lora_lines(request: Any) -> tuple[list[str], str | None]:
    """The LoRA's loading lines, as `nbinpaint.lora.fuse` runs them, and the scheduler class it switches to."""
    from nbinpaint.lora import spec_for

    if not request.lora:
        return [], None
    spec = spec_for(request.lora)
    where = f", weight_name={_q(spec.weight_name)}" if spec is not None and spec.weight_name else ""
    scale = 1.0 if request.lora_scale is None else float(request.lora_scale)
    lines = [
        "# Fuse the LoRA into the weights (no extra work per step), then drop its layers",
        f"pipeline.load_lora_weights({_q(request.lora)}{where})",
        f"pipeline.fuse_lora(lora_scale={scale!r})",
        "pipeline.unload_lora_weights()",
    ]
    scheduler = spec.scheduler if spec is not None else None
    if scheduler is not None:
        lines += [
            f"# {request.lora} samples with {scheduler}, in a few steps",
            f"pipeline.scheduler = {scheduler}.from_config(pipeline.scheduler.config)",
        ]
    return lines, scheduler


def _control_lines(plan: _Plan, paths: _Paths) -> list[str]:
    if plan.control == "condition":
        return [
            "# The inpaint ControlNet's condition: the image in [0, 1], and -1 where the mask is white",
            "def make_inpaint_condition(image, mask):",
            '    pixels = np.array(image.convert("RGB")).astype(np.float32) / 255.0',
            '    repaint = np.array(mask.convert("L")).astype(np.float32) / 255.0 > 0.5',
            "    pixels[repaint] = -1.0",
            "    return torch.from_numpy(pixels.transpose(2, 0, 1).copy()).unsqueeze(0)",
            "",
            "",
            f"{_CONTROL} = make_inpaint_condition({_IMAGE}, {_MASK})",
            "",
        ]
    if plan.control == "file":
        return ["# The ControlNet's image", f"{_CONTROL} = load_image({_q(paths.beside_image(CONTROL_FILE))})", ""]
    return []  # "tensor": read from the tensors file like any tensor argument


# --------------------------------------------------------------------------------------------------------
# Classical backends: the OpenCV / scikit-image equivalent.
# --------------------------------------------------------------------------------------------------------


def _classical_script(plan: _Plan, paths: _Paths) -> str:
    from nbinpaint.backends.classical import CONTEXT_MARGIN

    backend, request = plan.pipeline, plan.request
    kwargs = _call_kwargs(plan)
    width, height = kwargs.get("width"), kwargs.get("height")
    copies = int(kwargs.get("num_images_per_prompt", 1))
    margin = max(CONTEXT_MARGIN, 2 * backend.radius)
    if backend.method == "biharmonic":
        imports = ["import numpy as np", "from skimage.restoration import inpaint_biharmonic"]
        fill = [
            "# 2. Fill the crop: scikit-image's biharmonic fill (float in [0, 1], rounded back to bytes)",
            "patch = inpaint_biharmonic(crop, crop_hole, channel_axis=-1)",
            "patch = np.clip(np.rint(patch * 255), 0, 255).astype(np.uint8)",
        ]
    else:
        imports = ["import cv2", "import numpy as np"]
        flag = "cv2.INPAINT_TELEA" if backend.method == "telea" else "cv2.INPAINT_NS"
        fill = [
            f"# 2. Fill the crop with OpenCV ({flag}, radius {backend.radius})",
            f"patch = cv2.inpaint(np.ascontiguousarray(crop), crop_hole.astype(np.uint8) * 255, {backend.radius}, "
            f"{flag})",
        ]
    if request.blur_factor or request.preserve_unmasked or request.seam_repair == "overlay":
        imports.append("from diffusers.image_processor import VaeImageProcessor")
    imports += ["from diffusers.utils import load_image", "from PIL import Image"]
    mask_variable = _BLURRED if request.blur_factor else _MASK
    lines = [*_header(plan), *_outpaint_imports(plan, imports), "", *_seam_helper(request), *_load_inputs(plan, paths)]
    size = f"({width}, {height})" if width and height else f"{_IMAGE}.size"
    lines += [
        "# At the run's size, as the fill ran: the image resized with Lanczos, the mask with NEAREST",
        f"size = {size}",
        f"picture = {_IMAGE} if {_IMAGE}.size == size else {_IMAGE}.resize(size, Image.Resampling.LANCZOS)",
        f"matte = {mask_variable} if {mask_variable}.size == size else {mask_variable}.resize(size, "
        "Image.Resampling.NEAREST)",
        "rgb, hole = np.array(picture), np.array(matte) > 127",
        "",
        "filled = rgb.copy()",
        "if hole.any():",
        f"    # 1. The hole's bounding box plus {margin} px of context: the fill looks only near the hole",
        f"    margin = {margin}",
        "    rows, cols = np.nonzero(hole)",
        "    top, bottom = max(int(rows.min()) - margin, 0), min(int(rows.max()) + margin + 1, rgb.shape[0])",
        "    left, right = max(int(cols.min()) - margin, 0), min(int(cols.max()) + margin + 1, rgb.shape[1])",
        "    crop, crop_hole = rgb[top:bottom, left:right], hole[top:bottom, left:right]",
        *(f"    {line}" for line in fill),
        "    # 3. Paste back only the hole's pixels: outside the mask nothing changes",
        "    filled[top:bottom, left:right][crop_hole] = patch[crop_hole]",
        "",
    ]
    finish = _finish_lines(plan, "image")
    comment = _finish_comment(request)
    lines += ['image = Image.fromarray(filled, "RGB")']
    if finish:
        lines += ["", comment, *finish]
    if copies == 1:
        lines += ["", f"image.save({_q(paths.output)})"]
    else:
        lines += [
            "",
            f"# The fill is deterministic: the {copies} images asked for are identical",
            f"for index in range({copies}):",
            f"    image.save({_numbered(paths.output)})",
        ]
    return "\n".join(lines) + "\n"
