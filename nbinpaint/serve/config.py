"""One workshop server's settings: what `nbinpaint serve` parses its flags into, and what each replica receives."""

from __future__ import annotations

from dataclasses import dataclass, field

from nbinpaint.requests import DEFAULT_MODEL
from nbinpaint.serve.auth import DEFAULT_MAX_SESSIONS, Tokens
from nbinpaint.serve.hub import HubSettings
from nbinpaint.serve.policy import AllowList, Limits

__all__ = ["ServerConfig"]


@dataclass
class ServerConfig:
    """Everything a workshop server needs; plain data, so Ray can hand it to every replica.

    Parameters
    ----------
    models:
        Repo ids loaded on every replica at start (and allowed).
    allow:
        Further repo ids participants may use, loaded on first use. nbinpaint's classical backends are
        always allowed.
    host, port, route_prefix:
        Where the HTTP endpoint listens: 127.0.0.1 unless told otherwise.
    token, users, admin_token:
        A shared token, and/or per-user tokens (``{name: token}``); an optional admin token for the status.
    hub:
        Also accept JupyterHub users' own API tokens, checked with this hub (`nbinpaint.serve.hub`).
    max_sessions:
        Most live sessions on the shared token (`nbinpaint.serve.auth.Sessions`).
    limits:
        Per-request and per-participant limits (`Limits`).
    twins:
        Load tiny random-weight twins instead of real checkpoints (`nbinpaint.twins`), offline.
    twins_dir:
        The twins' hub-cache folder (default: `nbinpaint.twins.default_dir()` on each replica).
    address:
        A Ray cluster to join (``ray://...`` or ``host:port``); None starts a local Ray instance.
    replicas:
        Pipeline replicas; None means one per GPU in the cluster, or one without GPUs.
    gpus_per_replica:
        GPUs each replica reserves when the cluster has GPUs.
    cpus_per_replica:
        CPUs each replica reserves.
    threads:
        torch CPU threads per replica (Ray starts workers with one). On a CPU, results match a local run
        pixel for pixel only with the same thread count.
    device, offload:
        Passed to each replica's `PipelineManager`.
    app_name:
        The Ray Serve application's name.
    health_check_period_s:
        How often Serve checks a replica; a replica that died is replaced after the next check.
    max_batch_size:
        Most requests one replica runs as one batched pipeline call (Ray Serve's ``@serve.batch``); 1 turns
        batching off. Requests share a call only when `nbinpaint.runner.batch_key` allows it.
    batch_wait_ms:
        How long a replica waits for more requests to fill a batch once the first arrived.
    """

    models: tuple[str, ...] = (DEFAULT_MODEL,)
    allow: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8000
    route_prefix: str = "/"
    token: str | None = None
    users: dict[str, str] = field(default_factory=dict)
    admin_token: str | None = None
    hub: HubSettings | None = None
    max_sessions: int = DEFAULT_MAX_SESSIONS
    limits: Limits = field(default_factory=Limits)
    twins: bool = False
    twins_dir: str | None = None
    address: str | None = None
    replicas: int | None = None
    gpus_per_replica: float = 1.0
    cpus_per_replica: float = 1.0
    threads: int | None = None
    device: str | None = None
    offload: str = "none"
    app_name: str = "nbinpaint"
    health_check_period_s: float = 2.0
    max_batch_size: int = 1
    batch_wait_ms: float = 20.0

    def __post_init__(self) -> None:
        if not isinstance(self.max_batch_size, int) or self.max_batch_size < 1:
            raise ValueError(
                f"max_batch_size must be a whole number >= 1 (1: no batching), not {self.max_batch_size!r}"
            )
        if not self.batch_wait_ms >= 0:
            raise ValueError(f"batch_wait_ms must be a number of milliseconds >= 0, not {self.batch_wait_ms!r}")

    def tokens(self) -> Tokens:
        return Tokens(
            shared=self.token, users=self.users, admin=self.admin_token, hub=self.hub, max_sessions=self.max_sessions
        )

    def allow_list(self) -> AllowList:
        return AllowList((*self.models, *self.allow))

    def url(self) -> str:
        """The address participants connect to (``http://host:port/prefix``)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        prefix = self.route_prefix.rstrip("/")
        return f"http://{host}:{self.port}{prefix}"
