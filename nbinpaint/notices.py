"""One-line notices for notebook users: said once per process, in plain words, never a traceback."""

from __future__ import annotations

import sys

_said: set[str] = set()


def notice(message: str, *, once: bool = True) -> bool:
    """Print ``nbinpaint: <message>`` to stdout; with ``once`` a repeated message is skipped.

    Stdout rather than ``warnings`` because notebooks show it in the cell, and nbval compares it.
    Returns whether the message was printed.
    """
    if once and message in _said:
        return False
    _said.add(message)
    print(f"nbinpaint: {message}", file=sys.stdout, flush=True)
    return True


def reset() -> None:
    """Forget what was said (tests use this to observe notices again)."""
    _said.clear()
