"""The session's history: every result with its exact request and recipe, autosaved so a restart loses nothing.

`History` is a plain-Python model (entries, selection, callbacks) that tests drive without a kernel; the
gallery widget (`nbinpaint.widgets.gallery.HistoryGallery`, ``HistoryGallery(history)``) is a thin view over
it. The view imports this model, never the other way round: this module knows no widgets. Each added result is
autosaved as PNG + recipe, with its base image and mask under ``inputs/``, into the output folder, and
`History.load` rebuilds the same entries from that folder in a fresh kernel.

The studio's panel binds to three hooks, each called as ``callback(request, result)``:
`on_restore` (the exact request, mask included), `on_use_as_base` (the result becomes the base image)
and `on_send_to_img2img` (the result as the image of an image-to-image request).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from nbinpaint import recipes
from nbinpaint.callbacks import Callbacks
from nbinpaint.errors import NbinpaintError
from nbinpaint.notices import notice
from nbinpaint.requests import InpaintRequest, InpaintResult

__all__ = [
    "DEFAULT_OUTPUT",
    "OUTPUT_ENV",
    "History",
    "HistoryEntry",
    "default_output",
    "output_folder",
    "shared_history",
]

OUTPUT_ENV = "NBINPAINT_OUTPUT"
"""Environment variable naming the autosave folder; ``off`` (or 0, false, no, none) turns autosave off."""
DEFAULT_OUTPUT = "results"
"""The autosave folder's name inside the user's data folder (`default_output`)."""
_OFF = {"off", "0", "false", "no", "none"}
HISTORY_FORMAT = 1

Callback = Callable[[InpaintRequest, InpaintResult], Any]


def default_output() -> Path:
    """The user's own data folder for nbinpaint's results (``~/.local/share/nbinpaint/results`` on Linux,
    the platform's equivalent elsewhere): the same in every notebook and working directory, and never among
    the lessons or a project's files, where a results folder would be committed or overwritten."""
    import platformdirs

    return platformdirs.user_data_path("nbinpaint") / DEFAULT_OUTPUT


def output_folder(setting: str | os.PathLike[str] | bool | None = None) -> Path | None:
    """Where results are autosaved, or None when autosave is off.

    ``setting``: a folder; False to turn autosave off; None or True to use ``$NBINPAINT_OUTPUT`` if set,
    else `default_output`. Relative folders are resolved now, so a later ``cd`` in the notebook does not
    scatter results over two folders.
    """
    if setting is False:
        return None
    if setting is None or setting is True:
        setting = os.environ.get(OUTPUT_ENV, "").strip()
        if setting.lower() in _OFF:
            return None
        if not setting:
            return default_output()
    return Path(setting).expanduser().resolve()


@dataclass(eq=False)
class HistoryEntry:
    """One image of one result: its pixels, the exact request that made it, its recipe and saved files.

    ``id`` is the saved file's stem (``00012-seed42``), or ``mem-N`` while it is only in memory. ``files``
    names the saved ``result`` PNG and the request's inputs (``image``, ``mask``...), relative to the folder.
    """

    id: str
    image: Image.Image
    request: InpaintRequest
    recipe: dict[str, Any]
    result: InpaintResult
    files: dict[str, str] = field(default_factory=dict)

    @property
    def caption(self) -> str:
        """The gallery caption: a short recipe line."""
        return recipes.short_line(self.recipe)

    def to_json(self) -> dict[str, Any]:
        """Id, recipe and file references (relative to the output folder); pixels live in the files."""
        return {"id": self.id, "recipe": self.recipe, "files": dict(self.files)}


class History:
    """Every result of a session, in order, with a selection and the hooks the studio binds to.

    Parameters
    ----------
    output:
        Autosave folder; False turns autosave off; None uses `output_folder`'s default.
    """

    def __init__(self, output: str | os.PathLike[str] | bool | None = None) -> None:
        self.output = output_folder(output)
        self._entries: list[HistoryEntry] = []
        self._selected: int | None = None
        self._memory_ids = 0
        self._next_number = 1  # autosave numbers only grow, even if the folder is deleted meanwhile
        self._lock = threading.RLock()  # sweeps may add from a worker thread while the gallery reads
        self._change = Callbacks()
        self._select = Callbacks()
        self._restore = Callbacks()
        self._use_as_base = Callbacks()
        self._send_to_img2img = Callbacks()

    # -- the list ------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[HistoryEntry]:
        return iter(list(self._entries))

    def __getitem__(self, index: int) -> HistoryEntry:
        return self._entries[index]

    @property
    def entries(self) -> list[HistoryEntry]:
        """A copy of the entries, oldest first."""
        return list(self._entries)

    def add(self, result: InpaintResult) -> list[HistoryEntry]:
        """Add a result (one entry per image) and autosave it; a failed save keeps it in memory, with a notice."""
        images = [image for image in result.images if isinstance(image, Image.Image)]
        if not images:
            raise NbinpaintError("the history keeps images: this result has none (output_type='latent'?).")
        saved = self._autosave(result)
        recipe = saved.recipe if saved else dict(result.recipe)
        new = []
        with self._lock:
            for index, image in enumerate(images):
                own = recipe if len(images) == 1 else {**recipe, "image_index": index}
                if saved:
                    entry_id, files = saved.paths[index].stem, {"result": saved.paths[index].name}
                    files.update(recipe["inputs"])
                else:
                    self._memory_ids += 1
                    entry_id, files = f"mem-{self._memory_ids}", {}
                new.append(HistoryEntry(entry_id, image, result.request, own, result, files))
            self._entries.extend(new)
        self._change(self)
        return new

    def _autosave(self, result: InpaintResult) -> recipes.SavedResult | None:
        if self.output is None:
            return None
        try:
            saved = recipes.save_result(result, self.output, first_number=self._next_number)
        except (OSError, ValueError) as error:  # unwritable folder, disk full, read-only file system
            reason = getattr(error, "strerror", None) or str(error)
            notice(
                f"autosave to {self.output} failed ({reason}); the result stays in memory and in the history. "
                f"Set {OUTPUT_ENV} or History(output=...) to a writable folder, or output=False to stop saving."
            )
            return None
        self._next_number = max(self._next_number, (recipes.saved_number(saved.paths[0]) or 0) + 1)
        return saved

    def index(self, entry: HistoryEntry | int | str) -> int:
        """The position of an entry given as itself, its position or its id."""
        if isinstance(entry, int):
            if not -len(self._entries) <= entry < len(self._entries):
                raise IndexError(f"history has {len(self._entries)} entries; there is no entry {entry}.")
            return entry % len(self._entries)
        for position, candidate in enumerate(self._entries):
            if candidate is entry or candidate.id == entry:
                return position
        raise KeyError(f"no history entry {entry if isinstance(entry, str) else entry.id!r}.")

    def remove(self, entry: HistoryEntry | int | str) -> HistoryEntry:
        """Drop an entry from the history (its saved files stay on disk: deleting work is the user's call)."""
        with self._lock:
            position = self.index(entry)
            removed = self._entries.pop(position)
            deselected = self._selected == position
            if deselected:
                self._selected = None
            elif self._selected is not None and self._selected > position:
                self._selected -= 1
        self._change(self)
        if deselected:
            self._select(None)
        return removed

    def clear(self) -> None:
        """Forget every entry (files on disk stay)."""
        with self._lock:
            self._entries.clear()
            deselected, self._selected = self._selected is not None, None
        self._change(self)
        if deselected:
            self._select(None)

    # -- selection and the studio's hooks -------------------------------------------------------------------

    @property
    def selected(self) -> HistoryEntry | None:
        """The selected entry, or None."""
        return None if self._selected is None else self._entries[self._selected]

    @property
    def selected_index(self) -> int | None:
        return self._selected

    def select(self, entry: HistoryEntry | int | str | None) -> HistoryEntry | None:
        """Select an entry (None clears the selection); ``on_select`` callbacks get it."""
        position = None if entry is None else self.index(entry)
        if position != self._selected:
            self._selected = position
            self._select(self.selected)
        return self.selected

    def restore(self, entry: HistoryEntry | int | str | None = None) -> InpaintRequest:
        """Send an entry's exact request (mask included) to ``on_restore`` callbacks; default the selected one."""
        chosen = self._chosen(entry)
        self._restore(chosen.request, chosen.result)
        return chosen.request

    def use_as_base(self, entry: HistoryEntry | int | str | None = None) -> InpaintRequest:
        """Offer an entry's image as the next base image (iterative inpainting) to ``on_use_as_base`` callbacks.

        The request passed on is the entry's, with ``image`` the result and the seed cleared; the old mask
        comes along as a starting point, since the next edit is often near the last one.
        """
        chosen = self._chosen(entry)
        request = chosen.request.replace(image=chosen.image, seed=None)
        self._use_as_base(request, chosen.result)
        return request

    def send_to_img2img(self, entry: HistoryEntry | int | str | None = None) -> InpaintRequest:
        """Offer an entry's image to ``on_send_to_img2img`` callbacks as an image-to-image request.

        Inpainting-only settings (mask, blur, preserve_unmasked, seam repair, padding crop) are cleared so the
        request validates as ``task="img2img"``; prompt, model and the other settings are kept.
        """
        chosen = self._chosen(entry)
        request = chosen.request.replace(
            task="img2img",
            image=chosen.image,
            mask=None,
            blur_factor=0.0,
            preserve_unmasked=False,
            seam_repair=None,
            padding_mask_crop=None,
            seed=None,
        )
        self._send_to_img2img(request, chosen.result)
        return request

    def _chosen(self, entry: HistoryEntry | int | str | None) -> HistoryEntry:
        if entry is not None:
            return self._entries[self.index(entry)]
        if self.selected is None:
            raise NbinpaintError("no history entry is selected: select one, or pass the entry.")
        return self.selected

    def on_change(self, callback: Callable[[History], Any], remove: bool = False) -> None:
        """Call ``callback(history)`` after entries are added or removed."""
        self._change.register_callback(callback, remove=remove)

    def on_select(self, callback: Callable[[HistoryEntry | None], Any], remove: bool = False) -> None:
        """Call ``callback(entry)`` when the selection changes (None when cleared)."""
        self._select.register_callback(callback, remove=remove)

    def on_restore(self, callback: Callback, remove: bool = False) -> None:
        """Call ``callback(request, result)`` to restore an entry's parameters and mask into a panel."""
        self._restore.register_callback(callback, remove=remove)

    def on_use_as_base(self, callback: Callback, remove: bool = False) -> None:
        """Call ``callback(request, result)`` with a request whose ``image`` is the chosen result."""
        self._use_as_base.register_callback(callback, remove=remove)

    def on_send_to_img2img(self, callback: Callback, remove: bool = False) -> None:
        """Call ``callback(request, result)`` with an image-to-image request built on the chosen result."""
        self._send_to_img2img.register_callback(callback, remove=remove)

    # -- persistence ----------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The history as JSON-able data: entries (id, recipe, files), the selection and the folder."""
        return {
            "nbinpaint_history": HISTORY_FORMAT,
            "output": None if self.output is None else str(self.output),
            "selected": self._selected,
            "entries": [entry.to_json() for entry in self._entries],
        }

    @classmethod
    def load(cls, folder: str | os.PathLike[str] | None = None, *, autosave: bool = True) -> History:
        """Rebuild a history from an output folder: same entries, recipes and pixels, oldest first.

        New results keep being autosaved into that folder unless ``autosave=False``. PNGs there without a
        readable recipe (a grid saved by hand, a newer nbinpaint's, a damaged or truncated file, a hand-edited
        recipe with a malformed entry, or one whose inputs are damaged or lie outside the folder) are skipped,
        each on its own, with one notice naming them and the entry at fault; every other PNG is restored.
        """
        source = output_folder(folder)
        if source is None or not source.is_dir():
            raise NbinpaintError(f"no output folder at {source}: pass the folder the history autosaved into.")
        history = cls(output=source if autosave else False)
        inputs: dict[tuple[str, str], Image.Image] = {}  # a sweep's results share their base image and mask
        skipped: list[tuple[str, Exception]] = []
        for path in sorted(source.glob("*.png"), key=recipes.saved_order):
            try:
                entry = _entry(path, source, inputs)
            except _UNREADABLE as error:  # this file is skipped; the others are still restored
                skipped.append((path.name, error))
                continue
            history._entries.append(entry)
            history._next_number = max(history._next_number, (recipes.saved_number(path) or 0) + 1)
        if skipped:
            named = ", ".join(f"{name} ({_at_fault(error)})" for name, error in skipped[:5])
            notice(
                f"History.load skipped {len(skipped)} PNG(s) in {source} and restored {len(history)}: {named}"
                f"{' …' if len(skipped) > 5 else ''} (first reason: {skipped[0][1]})",
                once=False,
            )
        return history


_UNREADABLE = (NbinpaintError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)
"""What a damaged, hand-edited or foreign PNG in an output folder raises while it is read back."""


def _entry(path: Path, folder: Path, inputs: dict[tuple[str, str], Image.Image]) -> HistoryEntry:
    """The history entry saved as ``path``; its inputs are read through ``inputs``, shared between entries."""
    recipe = recipes.load_recipe(path)  # parsed: every entry has its type, inputs stay inside the folder
    files = {}
    for role, relative in (recipe.get("inputs") or {}).items():
        if (role, relative) not in inputs:
            inputs[role, relative] = recipes.load_inputs({**recipe, "inputs": {role: relative}}, folder)[role]
        files[role] = inputs[role, relative]
    request = recipes.request_from_recipe(recipe, **files)
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    result = InpaintResult([image], request, int(recipe.get("seed") or 0), {}, recipe)
    references = {"result": path.name, **(recipe.get("inputs") or {})}
    return HistoryEntry(path.stem, image, request, recipe, result, references)


def _at_fault(error: Exception) -> str:
    """What a skip notice says about one file: the recipe entry at fault, or the kind of damage."""
    if isinstance(error, recipes.RecipeError):
        return f"entry {error.field!r}" if error.field else "no readable recipe"
    return type(error).__name__


_shared: History | None = None
_shared_lock = threading.Lock()


def shared_history() -> History:
    """The kernel's one history (created on first use, autosaving by `output_folder`'s default)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = History()
        return _shared
