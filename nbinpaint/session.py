"""The kernel's session: its one shared manager (local, or a workshop server's), and re-running a saved PNG.

Kept apart from `nbinpaint.pipeline_manager` and `nbinpaint.remote` so that neither needs the other:
this module is the only one that knows both kinds of manager. Everything that runs "on the kernel's
manager" (`nbinpaint.inpaint`, the studio, chains, sweeps, `rerun`) looks it up here at call time.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from PIL import Image

from nbinpaint import outpainting, recipes, remote
from nbinpaint.contract import Manager
from nbinpaint.notices import notice
from nbinpaint.pipeline_manager import PipelineManager

__all__ = ["connect", "connect_from_env", "disconnect", "rerun", "set_shared_manager", "shared_manager"]

_previous: Manager | None = None  # the local manager `connect` replaced, for `disconnect`


_shared: Manager | None = None
_shared_lock = threading.Lock()


def shared_manager() -> Manager:
    """The kernel's one manager (created on first use); widgets and `nbinpaint.inpaint` all use it.

    Looked up at call time, never captured at import, so that `set_shared_manager` (for example a remote
    manager in workshop mode) reaches every widget already on screen.
    """
    global _shared
    with _shared_lock:
        if _shared is None:
            # Workshop mode: NBINPAINT_SERVER (set by a hub admin) makes the kernel's manager the remote one;
            # an unreachable server or a wrong token raises with its message, never a silent local load.
            _shared = connect_from_env() or PipelineManager()
        return _shared


def set_shared_manager(manager: Manager) -> Manager | None:
    """Replace the kernel's manager; returns the previous one (which keeps its pipelines until released)."""
    global _shared
    with _shared_lock:
        previous, _shared = _shared, manager
    return previous


def connect(
    url: str | None = None,
    token: str | None = None,
    *,
    client_id: str | None = None,
    timeout: float = 120.0,
    image_format: str | None = None,
) -> remote.RemoteManager:
    """Make this kernel's manager the workshop server at ``url`` (default ``$NBINPAINT_SERVER``).

    The studio, sweeps, history, chains and `nbinpaint.inpaint` then run there, unchanged. ``token`` defaults
    to ``$NBINPAINT_TOKEN``, then to the kernel's ``$JUPYTERHUB_API_TOKEN`` if the server accepts hub tokens
    (`nbinpaint.remote`'s docstring says why in that order). Raises `AuthenticationError` for a wrong token and
    `ServerUnavailableError` when the server cannot be reached, leaving the kernel's manager as it was.
    """
    manager = remote.from_env(url, token, client_id=client_id, timeout=timeout, image_format=image_format)
    manager.check()
    global _previous
    previous = set_shared_manager(manager)
    if not isinstance(previous, remote.RemoteManager):
        _previous = previous
    notice(
        f"connected to the workshop server {manager.url} as {manager.client_id!r}: models "
        f"{', '.join(manager.info.get('models', [])) or 'none preloaded'}; nbinpaint.manager now runs there.",
        once=False,
    )
    return manager


def connect_from_env() -> remote.RemoteManager | None:
    """The workshop server ``$NBINPAINT_SERVER`` names, contacted (with a notice); None when it is not set.

    What `shared_manager` uses on first use, so that a hub admin's environment
    variables put every kernel in workshop mode without a line of code. Raises like `connect`.
    """
    if not os.environ.get(remote.SERVER_ENV):
        return None
    manager = remote.from_env()
    manager.check()
    notice(f"workshop mode ({remote.SERVER_ENV}): nbinpaint.manager runs on {manager.url} as {manager.client_id!r}.")
    return manager


def disconnect() -> Any:
    """Go back to the local manager this kernel had before `connect` (a new one if it had none); returns it."""
    global _previous
    local, _previous = _previous, None
    local = local if local is not None else PipelineManager()
    set_shared_manager(local)
    return local


def rerun(
    png: str | os.PathLike[str] | Image.Image, manager: Any = None, *, folder: str | os.PathLike[str] | None = None
) -> Any:
    """Run a saved result's recipe again: same model, parameters, seed, base image and mask.

    The inputs are found by the recipe's references, relative to the PNG's folder (``folder`` when
    ``png`` is an image rather than a path). Returns the new `InpaintResult`; ``manager`` defaults to
    the kernel's shared one.
    """
    recipe = recipes.load_recipe(png)
    if folder is None:
        if isinstance(png, Image.Image):
            filename = getattr(png, "filename", "")
            if not filename:
                raise recipes.RecipeError(
                    "rerun of an image that has no file needs folder=<where its inputs/ folder is>."
                )
            folder = Path(filename).parent
        else:
            folder = Path(png).parent
    request = recipes.request_from_recipe(recipe, **recipes.load_inputs(recipe, folder))
    manager = manager if manager is not None else shared_manager()
    extended = recipe.get(outpainting.RECIPE_KEY)
    if extended is None:
        return manager.run(request)
    # An outpainting: the saved image is its canvas; the composite is done again over it.
    result = manager.run(request, recipe_extra={outpainting.RECIPE_KEY: extended})
    return outpainting.finish(result, outpainting.Outpaint.from_recipe(extended))
