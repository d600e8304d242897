"""The errors of workshop mode: what a participant's kernel raises when the server, not the request, is at fault.

Each subclasses the local error a notebook already catches where there is one (a model outside the allow-list
is a `ModelLoadError`, a server limit an `InvalidRequestError`), so code written for a local manager handles
them unchanged. Every message says what happened and what to do; none of them means anything in the kernel
(mask, results, history) was lost.
"""

from __future__ import annotations

from nbinpaint.errors import InvalidRequestError, ModelLoadError, NbinpaintError

__all__ = [
    "AuthenticationError",
    "ModelNotAllowedError",
    "QueueFullError",
    "ReplicaDiedError",
    "ServerError",
    "ServerLimitError",
    "ServerUnavailableError",
]


class ServerError(NbinpaintError):
    """The workshop server could not serve a request (not a mistake in the request itself)."""


class AuthenticationError(ServerError, PermissionError):
    """The token is missing or wrong."""


class ModelNotAllowedError(ModelLoadError):
    """The repo id is not on the server's allow-list, so the server will not load it."""


class ServerLimitError(InvalidRequestError):
    """The request is valid locally but above a limit the server's admin set (pixels, steps, images)."""


class QueueFullError(ServerError):
    """This participant already has as many requests waiting or running as the server allows."""


class ReplicaDiedError(ServerError, ConnectionError):
    """The server process running the request stopped mid-run; the server restarts it."""


class ServerUnavailableError(ServerError, ConnectionError):
    """The server cannot be reached, or the connection dropped before the result arrived."""
