"""Recipes: the full record of how a result was made, so it can be saved, read back and re-run.

A recipe is a JSON-able dict (`build_recipe`). Saved results are PNGs carrying it in a text chunk
(``nbinpaint-recipe``) beside an A1111-style ``parameters`` summary that other tools display; the base
image, mask and control image are saved once under ``inputs/`` and named in ``recipe["inputs"]``, so
`rerun` can repeat the run from the PNG alone.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from nbinpaint.errors import NbinpaintError

RECIPE_VERSION = 1
TWIN_NOTE = "made by a tiny random-weight twin: noise from random weights, not a real model's output"


def versions() -> dict[str, str]:
    """Versions of the libraries that decide the pixels."""
    import diffusers
    import torch
    import transformers

    import nbinpaint

    return {
        "nbinpaint": nbinpaint.__version__,
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
    if twin:
        recipe["note"] = TWIN_NOTE
    if extra:
        recipe.update(extra)
    return recipe


# --------------------------------------------------------------------------------------------------------
# Recipes in PNG files: the JSON recipe in one text chunk, an A1111-style summary in another.
# --------------------------------------------------------------------------------------------------------

RECIPE_KEY = "nbinpaint-recipe"
"""PNG text chunk holding the recipe as JSON (what `load_recipe` reads)."""
PARAMETERS_KEY = "parameters"
"""PNG text chunk A1111 writes, and other tools (PNG Info panels, image hosts) show: a readable summary."""
INPUT_ROLES = ("image", "mask", "control_image")
"""Request fields saved as files beside a result, named in ``recipe["inputs"]`` relative to the result."""
INPUTS_FOLDER = "inputs"


class RecipeError(NbinpaintError, ValueError):
    """A recipe is missing, from a newer nbinpaint, or names inputs that are not where it says."""


def check_version(recipe: Mapping[str, Any], source: str = "this recipe") -> None:
    """Refuse recipes this nbinpaint cannot read, saying which version wrote them and what to do."""
    version = recipe.get("nbinpaint_recipe") if isinstance(recipe, Mapping) else None
    if not isinstance(version, int):
        raise RecipeError(
            f"{source} is not an nbinpaint recipe: expected a dict with an integer 'nbinpaint_recipe' format "
            "number, as nbinpaint.recipes.save_png writes."
        )
    if version > RECIPE_VERSION:
        wrote = recipe.get("versions", {}).get("nbinpaint", "a newer release")
        raise RecipeError(
            f"{source} uses recipe format {version}, written by nbinpaint {wrote}; this nbinpaint "
            f"({_own_version()}) reads formats up to {RECIPE_VERSION}. Upgrade: pip install -U nbinpaint."
        )


def _own_version() -> str:
    import nbinpaint

    return nbinpaint.__version__


def to_json(recipe: Mapping[str, Any]) -> str:
    """The recipe as JSON text; values JSON cannot hold (tensors in ``extra``, say) are stored as their repr."""
    return json.dumps(recipe, default=repr, sort_keys=False)


def parameters_text(recipe: Mapping[str, Any]) -> str:
    """A1111's "parameters" layout: the prompt, a ``Negative prompt:`` line if any, then one settings line.

    A1111 reads the last line as ``Key: value, ...`` pairs and every line above it as the prompt, so the
    prompt keeps its own line(s) here; the settings line says ``Twin: yes`` for twin results.
    """
    p = recipe.get("parameters", {})
    settings: dict[str, Any] = {
        "Steps": p.get("steps"),
        "CFG scale": p.get("guidance_scale"),
        "Seed": recipe.get("seed"),
        "Size": "x".join(str(v) for v in recipe["run_size"]) if recipe.get("run_size") else None,
        "Model": recipe.get("model"),
        "Denoising strength": p.get("strength"),
        "Mask blur": p.get("blur_factor") or None,
        "Inpaint padding": p.get("padding_mask_crop"),
        "Task": recipe.get("task"),
        "Pipeline": recipe.get("pipeline"),
        "Twin": "yes (tiny random-weight twin; the image is noise)" if recipe.get("twin") else None,
        "Version": f"nbinpaint {recipe.get('versions', {}).get('nbinpaint', '?')}",
    }
    pairs = ", ".join(f"{key}: {_a1111_value(value)}" for key, value in settings.items() if value is not None)
    lines = [str(p.get("prompt") or "")]
    if p.get("negative_prompt"):
        lines.append(f"Negative prompt: {p['negative_prompt']}")
    lines.append(pairs)
    return "\n".join(lines)


def _a1111_value(value: Any) -> str:
    text = str(value)
    # A1111 quotes values that would otherwise split its "Key: value, Key: value" line.
    return json.dumps(text) if any(c in text for c in ',:"\n') else text


def short_line(recipe: Mapping[str, Any], width: int = 60) -> str:
    """A caption-sized summary: prompt (shortened), the main settings, seed, and "twin" for twin results."""
    p = recipe.get("parameters", {})
    parts = []
    prompt = str(p.get("prompt") or "").replace("\n", " ")
    if prompt:
        parts.append(f"“{prompt if len(prompt) <= 24 else prompt[:23] + '…'}”")
    for key, label in (("strength", "s"), ("guidance_scale", "g"), ("steps", "steps")):
        if p.get(key) is not None:
            parts.append(f"{label}={p[key]:g}" if isinstance(p[key], float) else f"{label}={p[key]}")
    parts.append(f"seed={recipe.get('seed')}")
    line, tail = " ".join(parts), " twin" if recipe.get("twin") else ""
    room = width - len(tail)  # shorten the rest, never the twin mark
    return (line if len(line) <= room else line[: room - 1] + "…") + tail


def png_info(recipe: Mapping[str, Any]) -> PngInfo:
    """The text chunks for a PNG: the JSON recipe (compressed) and the readable A1111 summary."""
    info = PngInfo()
    info.add_text(RECIPE_KEY, to_json(recipe), zip=True)  # JSON escapes every non-ASCII character: exact
    info.add_text(PARAMETERS_KEY, _png_text(parameters_text(recipe)))
    return info


def _png_text(text: str) -> str:
    """Text a PNG chunk can hold: NUL ends a PNG text field and lone surrogates have no UTF-8 form."""
    return text.replace("\x00", " ").encode("utf-8", "replace").decode("utf-8")


def save_png(image: Image.Image, recipe: Mapping[str, Any], path: str | os.PathLike[str] | BinaryIO) -> None:
    """Write ``image`` as a PNG carrying ``recipe``; `load_recipe` gives the same dict back."""
    image.save(path, format="PNG", pnginfo=png_info(recipe))


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
        recipe = json.loads(text[RECIPE_KEY])
    except json.JSONDecodeError as error:
        raise RecipeError(f"the {RECIPE_KEY!r} chunk of {source} is not valid JSON ({error}).") from error
    check_version(recipe, source)
    return recipe


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


def save_result(result: Any, folder: str | os.PathLike[str]) -> SavedResult:
    """Save a result's images (recipe inside) and its inputs, as ``NNNNN-seedS.png`` in ``folder``.

    A result of several images gives ``NNNNN-seedS-0.png``, ``-1``... The number is the next free one in
    the folder, claimed by creating the file exclusively, so two kernels saving into one folder never
    overwrite each other. Raises `OSError` when the folder is not writable (autosave turns that into a
    notice).
    """
    images = [image for image in result.images if isinstance(image, Image.Image)]
    if not images:
        raise RecipeError("only PIL images can be saved: this result has none (output_type='latent'?).")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    recipe = dict(result.recipe)
    recipe["inputs"] = save_inputs(result.request, folder)
    names = [f"seed{result.seed}"] if len(images) == 1 else [f"seed{result.seed}-{i}" for i in range(len(images))]
    handle, first = _claim(folder, names[0])
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


def _claim(folder: Path, suffix: str) -> tuple[BinaryIO, Path]:
    numbers = [int(m.group(1)) for p in folder.glob("*.png") if (m := _STEM.match(p.name))]
    number = max(numbers, default=0) + 1
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
    from nbinpaint.requests import InpaintRequest

    check_version(recipe)
    parameters = dict(recipe.get("parameters") or {})
    parameters["seed"] = recipe.get("seed", parameters.get("seed"))
    return InpaintRequest.from_kwargs(**parameters, image=image, mask=mask, control_image=control_image)


def load_inputs(recipe: Mapping[str, Any], folder: str | os.PathLike[str]) -> dict[str, Image.Image]:
    """The input images a recipe's ``inputs`` names, read from ``folder`` (where its PNG lies)."""
    from nbinpaint.requests import as_mask, as_rgb

    references = recipe.get("inputs")
    if not isinstance(references, Mapping):
        raise RecipeError(
            "the recipe names no saved inputs (no 'inputs' entry): results saved by the history's autosave "
            "or nbinpaint.recipes.save_result have them. Otherwise pass the pixels yourself: "
            "request_from_recipe(recipe, image=..., mask=...)."
        )
    loaded: dict[str, Image.Image] = {}
    for role, relative in references.items():
        path = Path(folder) / relative
        if not path.is_file():
            raise RecipeError(
                f"the recipe's {role} should be at {path}, but there is no such file: keep the "
                f"{INPUTS_FOLDER}/ folder beside the result PNG, or pass {role}= to request_from_recipe."
            )
        try:
            loaded[role] = as_mask(str(path)) if role == "mask" else as_rgb(str(path))
        except NbinpaintError as error:
            raise RecipeError(f"the recipe's {role} at {path} cannot be used: {error}") from error
    return loaded


def rerun(
    png: str | os.PathLike[str] | Image.Image, manager: Any = None, *, folder: str | os.PathLike[str] | None = None
) -> Any:
    """Run a saved result's recipe again: same model, parameters, seed, base image and mask.

    The inputs are found by the recipe's references, relative to the PNG's folder (``folder`` when
    ``png`` is an image rather than a path). Returns the new `InpaintResult`; ``manager`` defaults to
    the kernel's shared one.
    """
    recipe = load_recipe(png)
    if folder is None:
        if isinstance(png, Image.Image):
            filename = getattr(png, "filename", "")
            if not filename:
                raise RecipeError("rerun of an image that has no file needs folder=<where its inputs/ folder is>.")
            folder = Path(filename).parent
        else:
            folder = Path(png).parent
    request = request_from_recipe(recipe, **load_inputs(recipe, folder))
    if manager is None:
        from nbinpaint.pipeline_manager import shared_manager

        manager = shared_manager()
    return manager.run(request)
