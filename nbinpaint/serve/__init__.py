"""Workshop mode, server side: one process's pipeline managers served to a class of notebook kernels.

``nbinpaint serve`` (or `start`) runs a Ray Serve application (`nbinpaint.serve.app`): a gateway that checks
tokens (`auth`), validates each request as a local run would and applies the admin's allow-list and limits
(`policy`), queues it fairly across participants (`fair_queue`), and relays it to a pipeline replica
(`worker`) that streams progress back. `protocol` is the wire format both sides share; participants'
kernels use it through `nbinpaint.remote`. Only `app` needs Ray (``pip install "nbinpaint[serve]"``), and only
inside its functions: everything else here is plain Python, tested without it.
"""

from __future__ import annotations

from nbinpaint.serve.app import build_app, local_server, start, stop
from nbinpaint.serve.auth import Tokens, new_token
from nbinpaint.serve.config import ServerConfig
from nbinpaint.serve.errors import (
    AuthenticationError,
    ModelNotAllowedError,
    QueueFullError,
    ReplicaDiedError,
    ServerError,
    ServerLimitError,
    ServerUnavailableError,
)
from nbinpaint.serve.fair_queue import FairQueue
from nbinpaint.serve.policy import AllowList, Limits

__all__ = [
    "AllowList",
    "AuthenticationError",
    "FairQueue",
    "Limits",
    "ModelNotAllowedError",
    "QueueFullError",
    "ReplicaDiedError",
    "ServerConfig",
    "ServerError",
    "ServerLimitError",
    "ServerUnavailableError",
    "Tokens",
    "build_app",
    "local_server",
    "new_token",
    "start",
    "stop",
]
