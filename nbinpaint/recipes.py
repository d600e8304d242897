"""Recipes: the full record of how a result was made, so it can be saved, read back and re-run.

A recipe is a JSON-able dict (`build_recipe`). Saved results are PNGs carrying it in a text chunk
(``nbinpaint-recipe``) beside an A1111-style ``parameters`` summary that other tools display; the base
image, mask and control image are saved once under ``inputs/`` and named in ``recipe["inputs"]``, so
`rerun` can repeat the run from the PNG alone.

A PNG is something people share, so a recipe read back is someone else's data: `parse_recipe` checks it
field by field, once, wherever recipes enter (`load_recipe`, `request_from_recipe`, `load_inputs`, the
history, copy-as-code). A malformed entry is a `RecipeError` naming it, and inputs are read only from the
recipe's own folder.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import keyword
import math
import os
import posixpath
import re
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image, UnidentifiedImageError

from nbinpaint import outpainting
from nbinpaint._version import __version__
from nbinpaint.errors import InvalidRequestError, NbinpaintError
from nbinpaint.inputs import to_mask
from nbinpaint.parameters import PARAMETERS, canonical
from nbinpaint.pnginfo import (  # noqa: F401  (re-exported: nbinpaint.recipes.save_png is public)
    PARAMETERS_KEY,
    RECIPE_KEY,
    parameters_text,
    png_info,
    save_png,
    short_line,
    to_json,
)
from nbinpaint.requests import TASKS, InpaintRequest, as_rgb

RECIPE_VERSION = 1
TWIN_NOTE = "made by a tiny random-weight twin: noise from random weights, not a real model's output"


def versions() -> dict[str, str]:
    """Versions of the libraries that decide the pixels."""
    import diffusers
    import torch
    import transformers

    return {
        "nbinpaint": __version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }


def build_recipe(
    request: Any, pipeline: Any, *, run_size: tuple[Any, Any], extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Model, every parameter, seed, sizes, device/dtype, versions, and whether a twin made it."""
    from nbinpaint.twins import is_twin

    twin = is_twin(pipeline)
    recipe: dict[str, Any] = {
        "nbinpaint_recipe": RECIPE_VERSION,
        "model": request.model,
        "task": request.task,
        "pipeline": type(pipeline).__name__,
        "parameters": request.parameters(),
        "seed": request.seed,
        "input_size": list(request.image.size) if request.image is not None else None,
        "run_size": list(run_size),
        "device": str(getattr(pipeline, "device", "cpu")),
        "dtype": str(getattr(pipeline, "dtype", "n/a")).replace("torch.", ""),
        "twin": twin,
        "versions": versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    scheduler = getattr(pipeline, "scheduler", None)
    if scheduler is not None:  # what ran: a LoRA such as LCM-LoRA switches it (`nbinpaint.lora`)
        recipe["scheduler"] = type(scheduler).__name__
    if twin:
        recipe["note"] = TWIN_NOTE
    if extra:
        recipe.update(extra)
    return recipe


# --------------------------------------------------------------------------------------------------------
# Recipes in PNG files: the JSON recipe in one text chunk, an A1111-style summary in another.
# --------------------------------------------------------------------------------------------------------

INPUT_ROLES = ("image", "mask", "control_image")
"""Request fields saved as files beside a result, named in ``recipe["inputs"]`` relative to the result."""
INPUTS_FOLDER = "inputs"


class RecipeError(NbinpaintError, ValueError):
    """A recipe is missing, malformed, from a newer nbinpaint, or names inputs that are not where it says.

    ``field`` names the recipe entry at fault (``"parameters.seed"``, ``"inputs.mask"``) when there is one.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def check_version(recipe: Mapping[str, Any], source: str = "this recipe") -> None:
    """Refuse recipes this nbinpaint cannot read, saying which version wrote them and what to do."""
    version = recipe.get("nbinpaint_recipe") if isinstance(recipe, Mapping) else None
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RecipeError(
            f"{source} is not an nbinpaint recipe: expected a dict with an integer 'nbinpaint_recipe' format "
            "number, as nbinpaint.recipes.save_png writes.",
            field="nbinpaint_recipe",
        )
    if version > RECIPE_VERSION:
        versions = recipe.get("versions")
        wrote = versions.get("nbinpaint") if isinstance(versions, Mapping) else None
        wrote = wrote if isinstance(wrote, str) and _VERSION.fullmatch(wrote) else "a newer release"
        raise RecipeError(
            f"{source} uses recipe format {_clip(version)}, written by nbinpaint {wrote}; this nbinpaint "
            f"({_own_version()}) reads formats up to {RECIPE_VERSION}. Upgrade: pip install -U nbinpaint.",
            field="nbinpaint_recipe",
        )


def _own_version() -> str:
    return __version__


# --------------------------------------------------------------------------------------------------------
# Parsing. A recipe read from a PNG is someone else's data (PNGs get shared), so it is checked here, once,
# field by field, before anything uses it: `load_recipe`, `request_from_recipe`, `load_inputs`, `rerun`,
# `History.load` and copy-as-code all read recipes through `parse_recipe`.
# --------------------------------------------------------------------------------------------------------

MAX_DEPTH = 12
"""Deepest nesting of lists and objects a recipe may hold (nbinpaint itself writes four levels at most)."""
MAX_TEXT = 1_000_000
"""Longest text a recipe may hold, in characters (PIL reads PNG text chunks of up to 1 MB)."""
MAX_NAME = 1024
"""Longest one-line name (a model id, a path) a recipe may hold, in characters."""
MAX_NUMBER = 2**64
"""Largest magnitude of a number in a recipe (seeds go up to 2**64 - 1)."""

_FIX = "The PNG was edited or damaged: correct that entry, or use the PNG as nbinpaint saved it."
# Names that reach generated code or file names are held to what nbinpaint writes. Identifiers are ASCII:
# Python would NFKC-normalise other letters, so two different keys could name one argument.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
_CLASS_NAME = re.compile(r"[A-Z][A-Za-z0-9_]{0,99}")
_DEVICE = re.compile(r"[a-z][a-z0-9_]{0,31}(:[0-9]{1,4})?")
_DTYPE = re.compile(r"[a-z][a-z0-9_/]{0,31}")  # "float16"; "n/a" for classical backends
_VARIANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_LIBRARY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+!-]{0,63}")  # PEP 440 with a local part: 2.5.1+cu121
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,40}")
# One-line names hold no control character, no line or paragraph separator, no half of a UTF-16 pair.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_DRIVE = re.compile(r"[A-Za-z]:")

_clipper = reprlib.Repr()
_clipper.maxstring = _clipper.maxother = _clipper.maxlong = 60
_clipper.maxlevel, _clipper.maxlist, _clipper.maxdict = 2, 4, 4


def _clip(value: Any) -> str:
    """A short, one-line, escaped rendering of a value for a message (never the whole of a 1 MB string)."""
    return _clipper.repr(value)


def _shown(value: Any) -> str:
    kinds = {type(None): "null", bool: "a boolean", int: "a number", float: "a number", str: "text", list: "a list"}
    kind = "an object" if isinstance(value, Mapping) else kinds.get(type(value), f"a {type(value).__name__}")
    return kind if value is None else f"{kind} ({_clip(value)})"


class _Invalid(Exception):
    """One entry is malformed: raised by the checks below, turned into a `RecipeError` by `parse_recipe`."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(field, problem)
        self.field, self.problem = field, problem


def _expected(field: str, what: str, value: Any) -> _Invalid:
    return _Invalid(field, f"must be {what}, not {_shown(value)}")


def _path(field: str, key: Any) -> str:
    """The dotted name of ``field``'s entry ``key``, readable even when the key is hostile."""
    if isinstance(key, str) and _PLAIN_KEY.fullmatch(key):
        return f"{field}.{key}" if field else key
    return f"{field}[{_clip(key)}]"


Check = Callable[[Any, str], Any]
"""A field check: ``check(value, field)`` gives the parsed value or raises `_Invalid` naming ``field``."""


def _json(value: Any, field: str, depth: int = 0) -> Any:
    """Any plain JSON value: null, booleans, finite numbers, text, lists and objects with text keys."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > MAX_NUMBER:
            raise _expected(field, "a number within ±2**64", value)
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _expected(field, "a finite number (NaN and Infinity are not JSON)", value)
        return value
    if isinstance(value, str):
        return _text(value, field)
    if depth >= MAX_DEPTH:
        raise _expected(field, f"nested at most {MAX_DEPTH} levels deep", value)
    if isinstance(value, (list, tuple)):
        return [_json(item, f"{field}[{index}]", depth + 1) for index, item in enumerate(value)]
    if isinstance(value, Mapping):
        return {_key(key, field): _json(item, _path(field, key), depth + 1) for key, item in value.items()}
    raise _expected(field, "a JSON value (null, boolean, number, text, list or object)", value)


def _key(key: Any, field: str) -> str:
    if not isinstance(key, str) or len(key) > MAX_NAME:
        raise _Invalid(field, f"must have keys of at most {MAX_NAME} characters of text, not {_shown(key)}")
    return key


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise _expected(field, "text", value)
    if len(value) > MAX_TEXT:
        raise _Invalid(field, f"must be at most {MAX_TEXT:,} characters long, not {len(value):,}")
    return value


def _name(value: Any, field: str) -> str:
    """One line of printable text, not blank: a model id, a path, a date."""
    text = _text(value, field)
    if not text.strip() or len(text) > MAX_NAME or _UNPRINTABLE.search(text):
        raise _expected(field, f"one line of at most {MAX_NAME} printable characters", value)
    return text


def _matching(pattern: re.Pattern[str], what: str) -> Check:
    def check(value: Any, field: str) -> str:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise _expected(field, what, value)
        return value

    return check


def _choice(options: tuple[str, ...]) -> Check:
    def check(value: Any, field: str) -> str:
        if not isinstance(value, str) or value not in options:
            raise _expected(field, f"one of {', '.join(options)}", value)
        return value

    return check


def _optional(check: Check) -> Check:
    return lambda value, field: None if value is None else check(value, field)


def _flag(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise _expected(field, "true or false", value)
    return value


def _count(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
        raise _expected(field, "a whole number >= 0", value)
    return value


def _request_number(name: str) -> Check:
    """A request field's number, in the range the request itself accepts (`InpaintRequest` decides)."""

    def check(value: Any, field: str) -> Any:
        if value is None and name != "blur_factor":
            return None
        plain = isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**300  # float() can take it
        if not plain and not (isinstance(value, float) and math.isfinite(value)):
            raise _expected(field, "a number" + ("" if name == "blur_factor" else " or null"), value)
        probe = InpaintRequest(**{name: value})
        try:
            probe.check_numbers()  # the request's own rule for this field: one place decides it
        except InvalidRequestError as error:
            raise _Invalid(field, f"is refused: {str(error).rstrip('.')}") from None
        return getattr(probe, name)  # whole numbers written 30.0 come back as 30

    return check


def _size(value: Any, field: str) -> list[int]:
    """[width, height] of a picture PIL would open (its decompression-bomb limit bounds stand-ins' memory)."""
    limit = Image.MAX_IMAGE_PIXELS or 89_478_485
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(side, int) and not isinstance(side, bool) and 1 <= side <= 2**16 for side in value)
        or value[0] * value[1] > limit
    ):
        raise _expected(field, f"[width, height] in pixels, at most {limit:,} pixels in all", value)
    return list(value)


def _versions(value: Any, field: str) -> dict[str, str]:
    if not isinstance(value, Mapping) or len(value) > 32:
        raise _expected(field, "an object of library names and versions, e.g. {'diffusers': '0.32.0'}", value)
    library = _matching(_LIBRARY, "a library name such as 'diffusers'")
    version = _matching(_VERSION, "a version such as '0.32.0' or '2.5.1+cu121'")
    return {library(k, f"{field} key"): version(v, _path(field, k)) for k, v in value.items()}


def _reference(value: Any, field: str) -> str:
    """A file named relative to the recipe's folder, inside it by its text (`load_inputs` also follows links)."""
    text = _name(value, field)
    normal = posixpath.normpath(text)
    if "\\" in text or text.startswith("/") or _DRIVE.match(text) or normal in (".", "..") or normal.startswith("../"):
        raise _expected(
            field,
            "a path inside the recipe's folder such as 'inputs/mask-0123456789abcdef.png' (no absolute path, "
            "drive letter, backslash, or '..' leading out)",
            value,
        )
    return text


def _inputs(value: Any, field: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise _expected(field, f"an object naming input files by role ({', '.join(INPUT_ROLES)})", value)
    parsed = {}
    for role, reference in value.items():
        if role not in INPUT_ROLES:
            raise _Invalid(_path(field, role), f"is no input role: the roles are {', '.join(INPUT_ROLES)}")
        parsed[role] = _reference(reference, _path(field, role))
    return parsed


def _latent_shape(value: Any, field: str) -> list[int]:
    if not isinstance(value, list) or len(value) > 8:
        raise _expected(field, "a tensor shape (a short list of whole numbers)", value)
    return [_count(side, f"{field}[{index}]") for index, side in enumerate(value)]


def _prompt_weighting(value: Any, field: str) -> dict[str, str | None]:
    if not isinstance(value, Mapping):
        raise _expected(field, "an object such as {'syntax': 'compel', 'prompt': '...'}", value)
    return {_key(k, field): _optional(_text)(v, _path(field, k)) for k, v in value.items()}


def _outpaint(value: Any, field: str) -> dict[str, Any]:
    """The outpainting's record (`nbinpaint.outpainting.Outpaint`), checked as a new plan is."""
    try:
        return outpainting.Outpaint.from_recipe(value).as_recipe()
    except InvalidRequestError as error:
        raise _Invalid(field, f"is refused: {str(error).rstrip('.')}") from None


def _canvas(entry: Mapping[str, Any]) -> list[int]:
    width, height = entry["original_size"]
    return [width + entry["left"] + entry["right"], height + entry["top"] + entry["bottom"]]


def _extra(value: Any, field: str) -> dict[str, Any]:
    """Further pipeline arguments: each key becomes a keyword argument, so it must be a Python identifier."""
    if not isinstance(value, Mapping):
        raise _expected(field, "an object of pipeline argument names and values", value)
    parsed = {}
    for key, item in value.items():
        if not isinstance(key, str) or not _IDENTIFIER.fullmatch(key) or keyword.iskeyword(key):
            raise _Invalid(
                field,
                f"has the key {_clip(key)}, which is no pipeline argument name: keys are Python identifiers "
                "such as 'prior_guidance_scale'",
            )
        parsed[key] = _json(item, _path(field, key), depth=2)
    return parsed


def _parameter_checks() -> dict[str, Check]:
    """A check for every request field a recipe holds, from the parameter table's kinds."""
    by_kind: dict[str, Check] = {"text": _text, "bool": _flag, "mapping": _extra}
    special: dict[str, Check] = {
        "model": _name,
        "controlnet": _optional(_name),
        "lora": _optional(_name),
        "dtype": _optional(_matching(_DTYPE, "a dtype name such as 'float16' or 'auto'")),
        "variant": _optional(_matching(_VARIANT, "a weights variant such as 'fp16'")),
    }
    checks: dict[str, Check] = {}
    for row in PARAMETERS:
        if not row.saved:
            continue
        if row.name in special:
            checks[row.name] = special[row.name]
        elif row.kind in ("int", "float"):
            checks[row.name] = _request_number(row.name)
        elif row.kind == "choice":
            checks[row.name] = _optional(_choice(row.choices)) if "None" in row.annotation else _choice(row.choices)
        elif row.kind in by_kind:
            check = by_kind[row.kind]
            checks[row.name] = _optional(check) if "None" in row.annotation else check
        else:  # a new kind of row: say how a recipe should read it before any recipe can carry it
            raise TypeError(f"nbinpaint.recipes has no check for the {row.kind!r} parameter {row.name}: add one.")
    return checks


_NOT_SAVED = frozenset({*INPUT_ROLES, "prompt_embeds", "negative_prompt_embeds"})
"""Request fields a recipe never holds: pixels are files named under ``inputs``, tensors are not saved."""
_PARAMETERS = _parameter_checks()


def _parameters(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _expected(field, "an object of request settings", value)
    parsed = {}
    for key, item in value.items():
        if isinstance(key, str) and key not in _PARAMETERS and canonical(key) in _PARAMETERS:
            if canonical(key) in value:
                raise _Invalid(_path(field, key), f"repeats {canonical(key)!r} under diffusers' name: keep one")
            key = canonical(key)  # diffusers' name (num_inference_steps) for the field (steps)
        check = _PARAMETERS.get(key) if isinstance(key, str) else None
        if check is None:
            why = (
                "pixels and tensors are never inside a recipe (input pictures are files named under 'inputs')"
                if key in _NOT_SAVED
                else f"the settings are {', '.join(_PARAMETERS)}; pipeline-specific ones go in 'extra'"
            )
            raise _Invalid(_path(field, key), f"is no recipe setting: {why}")
        parsed[key] = check(item, _path(field, key))
    if parsed.get("width") is not None and parsed.get("height") is not None:  # a run size PIL could hold
        _size([parsed["width"], parsed["height"]], f"{field}.width")
    numbers = {key: parsed[key] for key in ("steps", "strength") if parsed.get(key) is not None}
    try:
        InpaintRequest(**numbers).check_numbers()  # together: int(steps * strength) must be >= 1
    except InvalidRequestError as error:
        raise _Invalid(f"{field}.steps", f"does not fit 'strength': {str(error).rstrip('.')}") from None
    return parsed


_FIELDS: dict[str, Check] = {
    "model": _name,
    "task": _choice(TASKS),
    "pipeline": _matching(_CLASS_NAME, "a pipeline class name such as 'StableDiffusionInpaintPipeline'"),
    "scheduler": _matching(_CLASS_NAME, "a scheduler class name such as 'LCMScheduler'"),
    "parameters": _parameters,
    "seed": _request_number("seed"),
    "input_size": _optional(_size),
    "run_size": _optional(_size),
    "device": _matching(_DEVICE, "a torch device such as 'cpu' or 'cuda:0'"),
    "dtype": _matching(_DTYPE, "a dtype name such as 'float16'"),
    "twin": _flag,
    "versions": _versions,
    "created": _name,
    "note": _text,
    "inputs": _optional(_inputs),
    "image_index": _count,
    "input_latents": _optional(_latent_shape),
    "prompt_weighting": _prompt_weighting,
    outpainting.RECIPE_KEY: _outpaint,
}
"""The recipe's own entries and their checks; any other entry (a chain's, a sweep's, a caller's
``recipe_extra``) is kept when it is plain JSON (`_json`)."""


def parse_recipe(data: Any, source: str = "this recipe") -> dict[str, Any]:
    """``data`` (a recipe as JSON gives it) checked field by field: a new dict of plain values.

    Raises `RecipeError` naming the entry at fault (``error.field``, e.g. ``"parameters.seed"``) for a wrong
    type, a number out of range, an unknown setting or input role, a name that could not be written into a
    script, or an input path leading out of the recipe's folder. A valid recipe comes back equal to ``data``.
    """
    check_version(data, source)
    try:
        parsed: dict[str, Any] = {}
        for key, value in data.items():
            if not isinstance(key, str):
                raise _Invalid(_clip(key), "is no recipe entry: entries are named by text")
            check = _FIELDS.get(key)
            parsed[key] = (
                value if key == "nbinpaint_recipe" else check(value, key) if check else _json(value, _path("", key))
            )
        parameters = parsed.get("parameters") or {}
        extended = parsed.get(outpainting.RECIPE_KEY)
        if extended is not None and parsed.get("input_size") not in (None, extended_size := _canvas(extended)):
            raise _Invalid(
                outpainting.RECIPE_KEY, f"extends to {extended_size}, not the input_size {parsed['input_size']}"
            )
        for key in ("model", "task"):  # the run used the parameters' value: what is shown must be what runs
            if key in parsed and key in parameters and parsed[key] != parameters[key]:
                raise _Invalid(
                    key, f"({_clip(parsed[key])}) differs from 'parameters.{key}' ({_clip(parameters[key])})"
                )
    except _Invalid as error:
        what = source if source == "this recipe" else f"the recipe in {source}"
        raise RecipeError(f"{what} is malformed: {error.field!r} {error.problem}. {_FIX}", field=error.field) from None
    return parsed


def load_recipe(png: str | os.PathLike[str] | Image.Image) -> dict[str, Any]:
    """The recipe saved in a PNG (a path or an opened PIL image), checked to be one this version can read."""
    source = f"{png}" if not isinstance(png, Image.Image) else "this image"
    try:
        if isinstance(png, Image.Image):
            text = _text_chunks(png)
        else:
            with Image.open(png) as image:
                text = _text_chunks(image)
    except FileNotFoundError as error:
        raise RecipeError(f"there is no file {png}: check the path of the saved PNG.") from error
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        # PIL reports a broken chunk as SyntaxError and a cut-off file as OSError ("truncated").
        raise RecipeError(
            f"cannot read {source} as an image ({error}): the file is damaged, truncated or not a PNG. Use an "
            "intact copy of the PNG nbinpaint saved (its recipe is inside)."
        ) from error
    if RECIPE_KEY not in text:
        found = ", ".join(sorted(text)) or "none"
        raise RecipeError(
            f"{source} carries no nbinpaint recipe: expected a PNG text chunk {RECIPE_KEY!r} as written by "
            f"nbinpaint.recipes.save_png or the history's autosave (text chunks found: {found}). "
            "Re-encoding (JPEG, screenshots, some editors) drops it."
        )
    try:
        data = json.loads(text[RECIPE_KEY])
    except (ValueError, RecursionError) as error:  # not JSON, a number of over 4300 digits, nesting too deep
        raise RecipeError(
            f"the {RECIPE_KEY!r} chunk of {source} is not valid JSON ({_clip(str(error))}). {_FIX}"
        ) from None
    return parse_recipe(data, source)


def _text_chunks(image: Image.Image) -> dict[str, str]:
    # PngImageFile.text also reads chunks stored after the pixel data; info covers images built in memory.
    text = dict(getattr(image, "text", None) or {})
    text.update({k: v for k, v in image.info.items() if isinstance(v, str) and k not in text})
    return text


# --------------------------------------------------------------------------------------------------------
# Results saved with their inputs, and re-run from them.
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SavedResult:
    """What `save_result` wrote: one PNG per image, and the recipe they carry (with ``inputs``)."""

    paths: list[Path]
    recipe: dict[str, Any]


def save_inputs(request: Any, folder: str | os.PathLike[str]) -> dict[str, str]:
    """Save a request's image, mask and control image under ``folder/inputs``; their paths relative to folder.

    Files are named by a hash of their pixels, so the base image and mask that a sweep's many results
    share are written once, and a reference can never silently point at different pixels.
    """
    folder = Path(folder)
    references: dict[str, str] = {}
    for role in INPUT_ROLES:
        image = getattr(request, role, None)
        if not isinstance(image, Image.Image):
            continue
        digest = hashlib.sha256(image.mode.encode() + repr(image.size).encode() + image.tobytes()).hexdigest()
        relative = f"{INPUTS_FOLDER}/{role}-{digest[:16]}.png"
        target = folder / relative
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
            try:
                image.save(partial, format="PNG")
                os.replace(partial, target)  # never leave a half-written input under its final name
            except BaseException:
                partial.unlink(missing_ok=True)  # a full disk must not leave a partial file behind
                raise
        references[role] = relative
    return references


_STEM = re.compile(r"^(\d{5,})-")


def save_result(result: Any, folder: str | os.PathLike[str], *, first_number: int = 1) -> SavedResult:
    """Save a result's images (recipe inside) and its inputs, as ``NNNNN-seedS.png`` in ``folder``.

    A result of several images gives ``NNNNN-seedS-0.png``, ``-1``... The number is the next free one in
    the folder, and at least ``first_number`` (a history passes the number after its last save, so a folder
    deleted mid-session never numbers a result like one it already holds), claimed by creating the file
    exclusively, so two kernels saving into one folder never overwrite each other. Raises `OSError` when the
    folder is not writable (autosave turns that into a notice).
    """
    images = [image for image in result.images if isinstance(image, Image.Image)]
    if not images:
        raise RecipeError("only PIL images can be saved: this result has none (output_type='latent'?).")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    recipe = dict(result.recipe)
    recipe["inputs"] = save_inputs(result.request, folder)
    names = [f"seed{result.seed}"] if len(images) == 1 else [f"seed{result.seed}-{i}" for i in range(len(images))]
    handle, first = _claim(folder, names[0], first_number)
    number = first.name.split("-")[0]
    paths = [first] + [folder / f"{number}-{name}.png" for name in names[1:]]
    try:
        with handle:
            save_png(images[0], _for_image(recipe, 0, len(images)), handle)
        for index in range(1, len(images)):
            save_png(images[index], _for_image(recipe, index, len(images)), paths[index])
    except BaseException:
        for path in paths:  # a half-saved result must not pass for a saved one (its inputs may stay: shared)
            path.unlink(missing_ok=True)
        raise
    return SavedResult(paths, recipe)


def saved_order(path: Path) -> tuple[Any, ...]:
    """Sort key putting saved results in the order they were made (``00002-…-10`` after ``00002-…-9``)."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name))


def _for_image(recipe: dict[str, Any], index: int, count: int) -> dict[str, Any]:
    return recipe if count == 1 else {**recipe, "image_index": index}


def saved_number(path: Path) -> int | None:
    """The ``NNNNN`` a saved result's file name starts with, or None."""
    match = _STEM.match(path.name)
    return int(match.group(1)) if match else None


def _claim(folder: Path, suffix: str, first_number: int = 1) -> tuple[BinaryIO, Path]:
    numbers = [n for p in folder.glob("*.png") if (n := saved_number(p)) is not None]
    number = max(max(numbers, default=0) + 1, first_number)
    while True:
        path = folder / f"{number:05d}-{suffix}.png"
        try:
            return open(path, "xb"), path  # the caller writes and closes it
        except FileExistsError:
            number += 1


def request_from_recipe(
    recipe: Mapping[str, Any], image: Any = None, mask: Any = None, control_image: Any = None
) -> Any:
    """The `InpaintRequest` a recipe describes, with the pixels passed in (recipes hold no pixels).

    Parameters set to None in the recipe stay None (the pipeline's own default), as in the original run;
    the seed is the one the run used.
    """
    recipe = parse_recipe(recipe)
    parameters = dict(recipe.get("parameters") or {})
    parameters["seed"] = recipe.get("seed", parameters.get("seed"))
    return InpaintRequest.from_kwargs(**parameters, image=image, mask=mask, control_image=control_image)


def load_inputs(recipe: Mapping[str, Any], folder: str | os.PathLike[str]) -> dict[str, Image.Image]:
    """The input images a recipe's ``inputs`` names, read from ``folder`` (where its PNG lies).

    Only files inside ``folder`` are read, links followed: a shared PNG cannot make nbinpaint read (and
    autosave copy) any other picture of yours. Anything else raises `RecipeError` naming the input.
    """
    references = parse_recipe(recipe).get("inputs")
    if references is None:
        raise RecipeError(
            "the recipe names no saved inputs (no 'inputs' entry): results saved by the history's autosave "
            "or nbinpaint.recipes.save_result have them. Otherwise pass the pixels yourself: "
            "request_from_recipe(recipe, image=..., mask=...)."
        )
    loaded: dict[str, Image.Image] = {}
    for role, relative in references.items():
        path = _input_path(folder, role, relative)
        if not path.is_file():
            raise RecipeError(
                f"the recipe's {role} should be at {Path(folder) / relative}, but there is no such file: keep the "
                f"{INPUTS_FOLDER}/ folder beside the result PNG, or pass {role}= to request_from_recipe.",
                field=f"inputs.{role}",
            )
        try:
            # A mask as saved: grey levels kept (only a soft run saves any; `validated` thresholds otherwise).
            loaded[role] = to_mask(str(path), grey=True) if role == "mask" else as_rgb(str(path))
        except NbinpaintError as error:
            raise RecipeError(
                f"the recipe's {role} at {path} cannot be used: {error}", field=f"inputs.{role}"
            ) from error
    return loaded


def _input_path(folder: str | os.PathLike[str], role: str, relative: str) -> Path:
    """Where the input ``relative`` (named in a recipe kept in ``folder``) is, links followed; `RecipeError`
    unless that is inside ``folder``."""
    root = Path(folder).resolve()
    try:
        path = (root / relative).resolve()
    except (OSError, RuntimeError) as error:  # a link loop
        raise RecipeError(
            f"the recipe's {role} {_clip(relative)} cannot be followed in {root} ({error}).", field=f"inputs.{role}"
        ) from error
    if not path.is_relative_to(root):
        raise RecipeError(
            f"the recipe's {role} {_clip(relative)} leads to {path}, outside the recipe's folder {root}: a recipe "
            "may only name files beside it, so a shared PNG cannot read your other files. Keep its "
            f"{INPUTS_FOLDER}/ folder beside it (no links leading out), or pass {role}= to request_from_recipe.",
            field=f"inputs.{role}",
        )
    return path
