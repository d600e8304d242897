"""`Callbacks`: listeners of a model object (a `History`, a remote manager), without a widget library.

What ``ipywidgets.CallbackDispatcher`` does, kept here so that objects with no widgets (the history, the
panel's state, the remote manager) do not load ipywidgets: a listener that raises is reported (its
traceback in the notebook, a log warning elsewhere) and the others still run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

__all__ = ["Callbacks"]

log = logging.getLogger(__name__)


class Callbacks:
    """An ordered set of callables called together; ``register_callback(f, remove=True)`` takes one out."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[..., Any]] = []

    def register_callback(self, callback: Callable[..., Any], remove: bool = False) -> None:
        if remove:
            if callback in self.callbacks:
                self.callbacks.remove(callback)
        elif callback not in self.callbacks:
            self.callbacks.append(callback)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call every listener; the last non-None value returned."""
        value = None
        for callback in list(self.callbacks):
            try:
                returned = callback(*args, **kwargs)
            except Exception as error:
                _report(callback, error)
            else:
                value = returned if returned is not None else value
        return value


def _report(callback: Callable[..., Any], error: Exception) -> None:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with every notebook
        get_ipython = None  # type: ignore[assignment]
    shell = get_ipython() if get_ipython is not None else None
    if shell is None:
        log.warning("exception in callback %s: %s", callback, error, exc_info=True)
    else:
        shell.showtraceback()
