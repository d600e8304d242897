"""`HistoryGallery`: the session's results as thumbnails; pick one to see its recipe and act on it.

A thin view over `nbinpaint.history.History`: it redraws when the history changes and turns clicks into
the history's own calls (select, restore, use as base, send to image-to-image, remove). Everything it
does can be done, and is tested, on the `History` alone.
"""

from __future__ import annotations

import html
import json
from typing import Any

import ipywidgets as widgets
from traitlets import Int, observe, validate

from nbinpaint.history import History, HistoryEntry, shared_history
from nbinpaint.recipes import parameters_text
from nbinpaint.widgets.compare import CompareView
from nbinpaint.widgets.grid import ImageGrid

__all__ = ["HistoryGallery"]

_PRE = "white-space:pre-wrap;word-break:normal;overflow-wrap:break-word;margin:4px 0;max-width:760px"
_ACTIONS = {  # name: (label, icon, tooltip)
    "restore": ("Restore", "undo", "Put this result's parameters and mask back into the panel"),
    "use_as_base": ("Use as base", "image", "Continue inpainting on this result"),
    "send_to_img2img": ("To img2img", "share", "Start an image-to-image run from this result"),
    "compare": ("Compare", "columns", "Wipe between the base image and this result"),
    "remove": ("Remove", "trash", "Drop from the history (saved files stay on disk)"),
}


class HistoryGallery(widgets.VBox):
    """Thumbnails of every result in a `History`, captioned with a short recipe line, and actions on one.

    Parameters
    ----------
    history:
        The model to show; the kernel's shared history when None.
    """

    columns = Int(4, help="Thumbnails per row (1 to 12).")
    cell_size = Int(160, help="Longest side of each thumbnail, in CSS pixels.")

    def __init__(self, history: History | None = None, **kwargs: Any) -> None:
        if history is None:
            history = shared_history()
        self.history = history
        self._syncing = False
        self.grid = ImageGrid(grid_download=False, filename="nbinpaint-result", enlarged_size=384)
        self.buttons = {
            name: widgets.Button(
                description=label, icon=icon, tooltip=tip, disabled=True, layout=widgets.Layout(width="auto")
            )
            for name, (label, icon, tip) in _ACTIONS.items()
        }
        for name, button in self.buttons.items():
            button.on_click(lambda _b, name=name: self._act(name))
        self._details = widgets.HTML(layout=widgets.Layout(width="auto"))
        self.compare = CompareView(display_size=384, layout=widgets.Layout(display="none"))
        self._empty = widgets.HTML("<i>No results yet: each generation appears here.</i>")
        super().__init__(
            children=[
                self._empty,
                self.grid,
                widgets.HBox(list(self.buttons.values()), layout=widgets.Layout(flex_flow="row wrap")),
                self._details,
                self.compare,
            ],
            **kwargs,
        )
        self.grid.observe(self._on_grid_selected, "selected")
        history.on_change(self._refresh)
        history.on_select(self._on_history_selected)
        self._refresh(history)

    @validate("columns")
    def _valid_columns(self, proposal: Any) -> int:
        return min(max(int(proposal["value"]), 1), 12)

    @observe("columns", "cell_size")
    def _on_shape(self, change: Any) -> None:
        self._refresh(self.history)

    def close(self) -> None:
        """Stop following the history, then close as any widget."""
        self.history.on_change(self._refresh, remove=True)
        self.history.on_select(self._on_history_selected, remove=True)
        super().close()

    # -- history -> view ------------------------------------------------------------------------------------

    def _refresh(self, history: History) -> None:
        entries = history.entries
        self._syncing = True
        try:
            self.grid.cols = self.columns
            self.grid.cell_size = self.cell_size
            self.grid.set_images(
                [entry.image for entry in entries],
                captions=[entry.caption for entry in entries],
                recipes=[entry.recipe for entry in entries],
            )
            selected = history.selected_index
            self.grid.selected = -1 if selected is None else selected
        finally:
            self._syncing = False
        self._empty.layout.display = "none" if entries else "block"
        self._show(history.selected)

    def _on_history_selected(self, entry: HistoryEntry | None) -> None:
        self._syncing = True
        try:
            self.grid.selected = -1 if entry is None else self.history.index(entry)
        finally:
            self._syncing = False
        self._show(entry)

    def _show(self, entry: HistoryEntry | None) -> None:
        for button in self.buttons.values():
            button.disabled = entry is None
        if entry is None:
            self._details.value = ""
            self.compare.layout.display = "none"
            return
        where = f" · saved as {html.escape(entry.files['result'])}" if entry.files.get("result") else " · not saved"
        self._details.value = (
            f"<div style='font-size:12px'><b>{html.escape(entry.id)}</b>{where}"
            f"<pre style='{_PRE}'>{html.escape(parameters_text(entry.recipe))}</pre>"
            f"<details><summary>Recipe (JSON)</summary><pre style='{_PRE}'>"
            f"{html.escape(json.dumps(entry.recipe, indent=1, default=repr))}</pre></details></div>"
        )
        if self.compare.layout.display != "none":
            self._show_compare(entry)

    # -- view -> history ------------------------------------------------------------------------------------

    def _on_grid_selected(self, change: Any) -> None:
        if not self._syncing:
            self.history.select(None if change["new"] < 0 else change["new"])

    def _act(self, name: str) -> None:
        entry = self.history.selected
        if entry is None:
            return
        if name == "compare":
            showing = self.compare.layout.display != "none"
            self.compare.layout.display = "none" if showing else "flex"
            if not showing:
                self._show_compare(entry)
        elif name == "remove":
            self.history.remove(entry)
        else:
            getattr(self.history, name)(entry)

    def _show_compare(self, entry: HistoryEntry) -> None:
        """Base image against the entry by default; the pickers offer every other result too."""
        choices = {f"{e.id}": e.image for e in self.history}
        base = entry.request.image
        if base is not None:
            choices = {f"base of {entry.id}": base, **choices}
        self.compare.choices = choices
        self.compare.pick(f"base of {entry.id}" if base is not None else entry.id, entry.id)
