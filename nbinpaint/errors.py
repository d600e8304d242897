"""The exceptions nbinpaint raises where a user's input enters: each message says what to do."""

from __future__ import annotations

from typing import Any

QUOTE_LIMIT = 80
"""Most characters of a user's value quoted in a message or notice (a pasted essay stays one short line)."""


def quote(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """A user's value as a message shows it: its ``repr`` (one line: newlines are escaped), cut in the middle
    beyond ``limit`` characters, so both ends stay readable: ``'xxxxx…(9,952 more characters)…xxxxx'``."""
    return _cut(repr(value), limit)


def shorten(text: str, limit: int = QUOTE_LIMIT) -> str:
    """Plain text for a one-line message: whitespace runs (newlines too) made one space, cut in the middle."""
    return _cut(" ".join(text.split()), limit)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    keep = max(limit - 30, 10) // 2
    return f"{text[:keep]}…({len(text) - 2 * keep:,} more characters)…{text[-keep:]}"


class NbinpaintError(Exception):
    """Base class: every message names the problem and the fix."""


class InvalidRequestError(NbinpaintError, ValueError):
    """A request parameter is out of range or inconsistent (raised before any pipeline runs)."""


class ConfigurationError(InvalidRequestError):
    """A setting is invalid: an environment variable (``NBINPAINT_*``) or a manager option; the message names it."""


class UnsupportedParameterError(InvalidRequestError):
    """The chosen pipeline's ``__call__`` has no such parameter."""


class MaskError(InvalidRequestError):
    """A mask could not be used as given (unreadable, wrong size, wrong shape); the message says the fix."""


class ModelLoadError(NbinpaintError, OSError):
    """A checkpoint could not be loaded (unknown id, hub unreachable, unsafe weights, no such task)."""


class GenerationCancelled(NbinpaintError):
    """A run was cancelled by the user; the pipeline stays usable."""


class NotEnoughMemoryError(NbinpaintError, MemoryError):
    """A run ran out of device memory even after the manager freed memory and retried with offload."""
