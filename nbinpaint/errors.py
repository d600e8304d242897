"""The exceptions nbinpaint raises where a user's input enters: each message says what to do."""

from __future__ import annotations


class NbinpaintError(Exception):
    """Base class: every message names the problem and the fix."""


class InvalidRequestError(NbinpaintError, ValueError):
    """A request parameter is out of range or inconsistent (raised before any pipeline runs)."""


class UnsupportedParameterError(InvalidRequestError):
    """The chosen pipeline's ``__call__`` has no such parameter."""


class ModelLoadError(NbinpaintError, OSError):
    """A checkpoint could not be loaded (unknown id, hub unreachable, unsafe weights, no such task)."""


class GenerationCancelled(NbinpaintError):
    """A run was cancelled by the user; the pipeline stays usable."""


class NotEnoughMemoryError(NbinpaintError, MemoryError):
    """A run ran out of device memory even after the manager freed memory and retried with offload."""
