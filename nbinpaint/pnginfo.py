"""A recipe inside a PNG: the JSON recipe in one text chunk, an A1111-style summary in another.

Kept apart from `nbinpaint.recipes` (which reads recipes back and checks them) so that a result can save
itself (`nbinpaint.results.InpaintResult.save`) without the result types depending on the reading side.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, BinaryIO

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from nbinpaint.parameters import PARAMETERS, Parameter

RECIPE_KEY = "nbinpaint-recipe"
"""PNG text chunk holding the recipe as JSON (what `nbinpaint.recipes.load_recipe` reads)."""
PARAMETERS_KEY = "parameters"
"""PNG text chunk A1111 writes, and other tools (PNG Info panels, image hosts) show: a readable summary."""


def to_json(recipe: Mapping[str, Any]) -> str:
    """The recipe as JSON text; values JSON cannot hold (tensors in ``extra``, say) are stored as their repr."""
    return json.dumps(recipe, default=repr, sort_keys=False)


def parameters_text(recipe: Mapping[str, Any]) -> str:
    """A1111's "parameters" layout: the prompt, a ``Negative prompt:`` line if any, then one settings line.

    A1111 reads the last line as ``Key: value, ...`` pairs and every line above it as the prompt, so the
    prompt keeps its own line(s) here; the settings line says ``Twin: yes`` for twin results. The keys are
    the parameter table's ``a1111`` names, A1111's own first four (Steps, CFG scale, Seed, Size) leading.
    """
    p, versions = recipe.get("parameters", {}), recipe.get("versions")
    values = {row.a1111: _parameter(recipe, p, row) for row in PARAMETERS if row.a1111 and row.kind != "text"}
    settings: dict[str, Any] = {key: values.pop(key, None) for key in _A1111_FIRST}
    settings["Size"] = "x".join(str(v) for v in recipe["run_size"]) if recipe.get("run_size") else None
    settings.update(values)
    settings.update(
        {
            "Pipeline": recipe.get("pipeline"),
            "Twin": "yes (tiny random-weight twin; the image is noise)" if recipe.get("twin") else None,
            "Version": f"nbinpaint {versions.get('nbinpaint', '?') if isinstance(versions, Mapping) else '?'}",
        }
    )
    pairs = ", ".join(f"{key}: {_a1111_value(value)}" for key, value in settings.items() if value is not None)
    lines = [str(p.get("prompt") or "")]
    if p.get("negative_prompt"):
        lines.append(f"Negative prompt: {p['negative_prompt']}")
    lines.append(pairs)
    return "\n".join(lines)


_A1111_FIRST = ("Steps", "CFG scale", "Seed")


def _parameter(recipe: Mapping[str, Any], p: Mapping[str, Any], row: Parameter) -> Any:
    """One setting for the summary: None (left out) when unset, a number at its non-None default, a switch
    that is off, or an option at its default (A1111 writes "Soft inpainting enabled" only when on)."""
    value = recipe.get(row.name) if row.name in ("seed", "model", "task") else p.get(row.name)
    if value is None or (row.kind in ("int", "float") and row.default is not None and value == row.default):
        return None
    at_default = row.kind == "choice" and row.name != "task" and value == row.default
    if at_default or (row.kind == "bool" and value is False):
        return None
    return value


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
