"""The notebook widgets, one per module; each is a thin view over plain-Python logic elsewhere in nbinpaint.

- `canvas.MaskCanvas`: draw the mask over the image.
- `panel.ParameterPanel`: parameters, Generate/Cancel, progress, previews, errors, code.
- `studio.InpaintStudio` (opened by ``nbinpaint.widgets.studio.studio(image)``): canvas, panel and viewer.
- `expand.ExpandControls`: the studio's outpainting buttons (one per side, with a size and a start fill).
- `picker.ModelPicker`: the panel's grouped model dropdown (or your own repo id).
- `result.ResultView`: the latest result, large, with a Result / Before toggle.
- `grid.ImageGrid`, `compare.CompareView`, `gallery.HistoryGallery`: the viewer.

Classes load on first use (``nbinpaint.widgets.InpaintStudio``), so importing one widget module does not
import the others.
"""

from __future__ import annotations

import importlib
from typing import Any

_WIDGETS = {
    "MaskCanvas": "canvas",
    "ParameterPanel": "panel",
    "InpaintStudio": "studio",
    "ImageGrid": "grid",
    "CompareView": "compare",
    "HistoryGallery": "gallery",
    "ModelPicker": "picker",
    "ExpandControls": "expand",
    "ResultView": "result",
}

__all__ = sorted(_WIDGETS)


def __getattr__(name: str) -> Any:
    if name in _WIDGETS:
        return getattr(importlib.import_module(f"{__name__}.{_WIDGETS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WIDGETS))
