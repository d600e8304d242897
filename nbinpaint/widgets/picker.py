"""`ModelPicker`: the model chosen by a friendly name from a grouped list, or any repo id typed in.

The list has three groups, in this order: the checkpoints (each with what it needs: its weights' memory in
half precision, 4-bit where that helps, and its usual steps, from `nbinpaint.model_names.MODEL_NEEDS`), the
classical fills (real pictures without weights), and "Your own repo id…", which reveals a text box.
`MODEL_NAMES` is the one table of friendly names; an id it does not name is shown as itself. `default_model`
decides what a new panel starts on: in twin mode a classical fill, since a twin checkpoint's pictures are noise.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets
from traitlets import Bool, Unicode, observe

from nbinpaint.model_names import (
    CUSTOM,
    MODEL_NAMES,
    TWIN_DEFAULT_MODEL,
    default_model,
    guide_models,
    model_choices,
    model_name,
    needs_text,
)

__all__ = [
    "CUSTOM",
    "MODEL_NAMES",
    "TWIN_DEFAULT_MODEL",
    "ModelPicker",
    "default_model",
    "guide_models",
    "model_choices",
    "model_name",
    "model_options",
]


def model_options(twin: bool = False) -> list[tuple[str, str]]:
    """The dropdown's ``(label, value)`` pairs, grouped by a prefix: checkpoints (marked as twins in twin
    mode), classical fills, then "Your own repo id…" (value `CUSTOM`)."""
    from nbinpaint.backends import BACKENDS

    mark = " (twin: noise)" if twin else ""

    def label(repo: str) -> str:
        needs = needs_text(repo)
        return f"Checkpoint · {model_name(repo)}{' · ' + needs if needs else ''}{mark}"

    return [
        *((label(repo), repo) for repo in guide_models()),
        *((f"Classical fill · {model_name(fill)}", fill) for fill in BACKENDS),
        ("Your own repo id…", CUSTOM),
    ]


class ModelPicker(widgets.VBox):
    """A "Model" label, a grouped dropdown of friendly names, and a repo-id box shown for "Your own repo id…".

    ``value`` is the model id either way; setting it to an id the list lacks selects "Your own repo id…" and
    puts the id in the box.

    Parameters
    ----------
    value:
        The model id to start on.
    twin:
        Mark the checkpoints as twins (their pictures are noise); default: whether twin mode is on.
    """

    value = Unicode("", help="The chosen model: a Hugging Face repo id or a classical backend id.")
    # Not synced: a box's own tooltip breaks its view in ipywidgets 8.1 ("Could not create a view"); the
    # dropdown and the repo-id box show it instead.
    tooltip = Unicode(None, allow_none=True, help="The tooltip of the dropdown and the repo-id box.")
    disabled = Bool(False, help="Whether the dropdown and the repo-id box are off, as any control's.")

    def __init__(self, value: str = "", *, twin: bool | None = None, **kwargs: Any) -> None:
        if twin is None:
            from nbinpaint.twins import twin_mode

            twin = twin_mode()
        self._syncing = False
        self.dropdown = widgets.Dropdown(
            options=model_options(twin), layout=widgets.Layout(width="100%", margin="2px 0")
        )
        self.custom = widgets.Text(
            placeholder="owner/name of a Hugging Face repo, then Enter",
            continuous_update=False,
            layout=widgets.Layout(width="100%", margin="2px 0", display="none"),
        )
        super().__init__(
            children=[
                widgets.HTML("<b>Model</b>", layout=widgets.Layout(height="20px", margin="0")),
                self.dropdown,
                self.custom,
            ],
            layout=kwargs.pop("layout", widgets.Layout(width="100%")),
            **kwargs,
        )
        self.dropdown.observe(self._on_dropdown, "value")
        self.custom.observe(self._on_custom, "value")
        self.value = value
        self._show(self.value)

    @property
    def listed(self) -> list[str]:
        """The model ids the dropdown lists."""
        return [value for _label, value in self.dropdown.options if value != CUSTOM]

    @observe("value")
    def _on_value(self, change: Any) -> None:
        if not self._syncing:
            self._show(change["new"])

    @observe("disabled")
    def _on_disabled(self, change: Any) -> None:
        self.dropdown.disabled = self.custom.disabled = change["new"]

    @observe("tooltip")
    def _on_tooltip(self, change: Any) -> None:
        self.dropdown.tooltip = self.custom.tooltip = change["new"]

    def _show(self, model: str) -> None:
        """Point the dropdown (and the box) at ``model`` without echoing it back into ``value``."""
        self._syncing = True
        try:
            if model in self.listed:
                self.dropdown.value = model
                self.custom.layout.display = "none"
            elif model:
                self.dropdown.value = CUSTOM
                self.custom.value = model
                self.custom.layout.display = "flex"
        finally:
            self._syncing = False

    def _on_dropdown(self, change: Any) -> None:
        if self._syncing:
            return
        if change["new"] == CUSTOM:
            self.custom.layout.display = "flex"
            typed = self.custom.value.strip()
            if typed:  # until an id is typed the model stays as it was
                self.value = typed
            return
        self.custom.layout.display = "none"
        self.value = change["new"]

    def _on_custom(self, change: Any) -> None:
        if not self._syncing and change["new"].strip():
            self.value = change["new"].strip()
