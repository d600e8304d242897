"""Who may use the workshop server, and under which name its fair queue and limits count them.

A participant's name must be one they cannot choose, or rotating it would buy more turns and more requests
than ``--max-outstanding`` allows. Three ways to get one, strongest first:

1. **Hub mode** (``nbinpaint serve --hub``): the kernel sends its own JupyterHub API token and the hub says
   whose it is (`nbinpaint.serve.hub`). Nothing to hand out; nobody can pose as anyone else.
2. **Per-participant tokens** (``--tokens FILE``, minted with ``nbinpaint serve --tokens FILE --mint-tokens
   NAMES``): the token decides the name.
3. **A shared token** (``--token``): the server cannot tell people apart by it, so each connecting kernel
   opens a session (``POST /v1/session``) and the server names it ``<name>#<number>``, the number its own.
   Every later call carries the session (`SESSION_HEADER`), signed by the server (HMAC with a secret that
   never leaves it), so a forged or rotated one names nobody. The name a kernel asks for is only a label.
   Opening sessions is bounded: at most ``max_sessions`` live ones, the least recently used idle one making
   room for a new one, and none while every one has a request waiting or running. What remains: someone
   with the shared token can hold up to ``max_sessions`` sessions at once, so ``max_sessions *
   max_outstanding`` requests and as many turns per round. Use hub mode or per-participant tokens for a class.

Tokens are compared with `secrets.compare_digest`, against every known token, so the time taken says nothing
about which one nearly matched.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import os
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from nbinpaint.serve.errors import AuthenticationError, QueueFullError
from nbinpaint.serve.hub import HubIdentities, HubSettings

__all__ = [
    "DEFAULT_MAX_SESSIONS",
    "Identity",
    "Sessions",
    "Tokens",
    "client_id",
    "mint_tokens",
    "mint_tokens_file",
    "new_token",
    "read_tokens_file",
    "write_tokens_file",
]

_CLIENT_ID = re.compile(r"[^A-Za-z0-9._@+-]")
_NUMBER = re.compile(r"[0-9]{1,18}")  # ASCII digits only: str.isdigit() also takes "²", which int() refuses
_MAX_CLIENT_ID = 64
DEFAULT_MAX_SESSIONS = 64
"""Live sessions on a shared token: room for a class, and a bound on what one holder of the token can take."""

Via = Literal["user", "hub", "session", "shared", "admin"]


def new_token() -> str:
    """A fresh random token, safe to paste into a URL or an environment variable."""
    return secrets.token_urlsafe(24)


def client_id(text: str | None, fallback: str = "anonymous") -> str:
    """A participant name safe for logs and status tables: letters, digits and ``._@+-``, at most 64."""
    cleaned = _CLIENT_ID.sub("_", (text or "").strip())[:_MAX_CLIENT_ID]
    return cleaned or fallback


@dataclass(frozen=True)
class Identity:
    """Who sent a request: the client id queues and limits are keyed by, whether they may see the admin
    status, and what proved it (``user``: a per-participant token; ``hub``: a JupyterHub token; ``session``:
    the shared token and a session; ``shared``: the shared token alone, enough only to open a session;
    ``admin``: the admin token alone)."""

    client: str
    admin: bool = False
    via: Via = "user"


class Sessions:
    """Participants on a shared token, told apart by sessions this server issued.

    A session id is ``<number>.<mac>``: the number indexes a server-side table, the mac (HMAC-SHA256 of the
    number with a secret made at start) proves the server issued it; both are checked on every call.

    Parameters
    ----------
    limit:
        Most live sessions. Opening one more drops the least recently used session with nothing waiting or
        running; if every session is busy, the new one is refused (`QueueFullError`).
    """

    def __init__(self, limit: int = DEFAULT_MAX_SESSIONS) -> None:
        if limit < 1:
            raise ValueError(f"max_sessions must be at least 1, not {limit}")
        self.limit = limit
        self._secret = secrets.token_bytes(32)
        self._live: OrderedDict[int, str] = OrderedDict()  # number -> client id, least recently used first
        self._numbers = itertools.count(1)

    def open(self, name: str | None, outstanding: Callable[[str], int]) -> tuple[str, str]:
        """A new session for a participant who asks to be called ``name``: (session id, client id).

        ``outstanding(client)``: how many requests a client has waiting or running (a busy session is kept).
        """
        while len(self._live) >= self.limit:
            idle = next((number for number, client in self._live.items() if not outstanding(client)), None)
            if idle is None:
                raise QueueFullError(
                    f"the workshop server already has {self.limit} sessions on the shared token, each with a "
                    "request waiting or running (the most it allows, --max-sessions): connect again in a "
                    "moment, or ask your instructor for a personal token."
                )
            del self._live[idle]
        number = next(self._numbers)
        client = f"{client_id(name, fallback='participant')}#{number}"
        self._live[number] = client
        return f"{number}.{self._mac(number)}", client

    def client(self, session: str | None) -> str | None:
        """The client id of a live session this server issued; None for anything else."""
        number_text, _, mac = (session or "").strip().partition(".")
        if not _NUMBER.fullmatch(number_text):
            return None
        number = int(number_text)
        if not hmac.compare_digest(mac.encode(), self._mac(number).encode()):
            return None
        client = self._live.get(number)
        if client is not None:
            self._live.move_to_end(number)
        return client

    def __len__(self) -> int:
        return len(self._live)

    def _mac(self, number: int) -> str:
        digest = hmac.new(self._secret, str(number).encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class Tokens:
    """The tokens a server accepts, and the names they prove.

    Parameters
    ----------
    shared:
        One token for the whole class; each kernel opens a session with it (`Sessions`).
    users:
        ``{user name: token}``; the user name becomes the client id.
    admin:
        A token for the admin status. Without one, any valid token may read it (it shows queue lengths,
        client ids and memory, no request contents).
    hub:
        Also accept JupyterHub users' API tokens, checked with that hub (`nbinpaint.serve.hub`).
    max_sessions:
        Most live sessions on the shared token.
    """

    def __init__(
        self,
        shared: str | None = None,
        users: Mapping[str, str] | None = None,
        admin: str | None = None,
        *,
        hub: HubSettings | None = None,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
    ) -> None:
        self._entries: list[tuple[bytes, str | None]] = []  # (token, user name or None for the shared token)
        if shared:
            self._entries.append((shared.encode(), None))
        for user, token in (users or {}).items():
            if not token:
                raise ValueError(f"user {user!r} has an empty token")
            self._entries.append((token.encode(), client_id(user)))
        self._admin = admin.encode() if admin else None
        self.hub = HubIdentities(hub) if hub is not None else None
        self.sessions = Sessions(max_sessions)
        if not self._entries and self.hub is None:
            raise ValueError(
                "a workshop server needs a token: pass shared=..., users={...}, a tokens file, or hub mode"
            )

    @classmethod
    def from_file(cls, path: str | Path, *, admin: str | None = None) -> Tokens:
        """Per-user tokens from a file (`read_tokens_file`)."""
        return cls(users=read_tokens_file(path), admin=admin)

    @property
    def accepts(self) -> list[str]:
        """What a kernel may send: ``token`` (one the instructor gave) and/or ``hub`` (its hub API token)."""
        return [*(["token"] if self._entries or self._admin else []), *(["hub"] if self.hub else [])]

    def identify(self, authorization: str | None, session: str | None = None, *, opening: bool = False) -> Identity:
        """The identity an ``Authorization: Bearer <token>`` header (and, for the shared token, a session)
        proves; raises `AuthenticationError`. ``opening``: the request opens a session, so the shared token
        alone is enough. Tokens of hub users are checked by `authenticate`."""
        token = _bearer(authorization)
        user: str | None = None
        matched = False
        for known, name in self._entries:  # no early exit: every comparison is made
            if secrets.compare_digest(known, token):
                matched, user = True, name
        is_admin = self._admin is not None and secrets.compare_digest(self._admin, token)
        if not token:
            raise AuthenticationError(
                "the workshop server needs a token: set NBINPAINT_TOKEN (or connect(token=...)) to the one your "
                "instructor gave you."
            )
        if not matched and not is_admin:
            raise _UnknownToken(
                "the workshop server refused the token: check NBINPAINT_TOKEN (or connect(token=...)) against "
                "the one your instructor gave you."
            )
        admin = is_admin or (self._admin is None and matched)
        if user is not None:
            return Identity(user, admin, "user")
        if not matched:
            return Identity("admin", True, "admin")
        if opening:
            return Identity("", admin, "shared")
        client = self.sessions.client(session)
        if client is None:
            raise AuthenticationError(
                "on a shared token this workshop server tells participants apart by the session it gave their "
                "kernel, and this request has none it knows (the server restarted, or many others connected "
                "since): connect again with nbinpaint.connect(...)."
            )
        return Identity(client, admin, "session")

    async def authenticate(
        self, authorization: str | None, session: str | None = None, *, opening: bool = False
    ) -> Identity:
        """`identify`, then, in hub mode, the hub for a token this server did not issue."""
        try:
            return self.identify(authorization, session, opening=opening)
        except _UnknownToken:
            if self.hub is None:
                raise
        name = await self.hub.user_for_token(_bearer(authorization).decode())
        if name is None:
            raise AuthenticationError(
                "the workshop server refused the token: it is neither one your instructor gave out nor the API "
                "token of a user of its JupyterHub. In a hub notebook, leave NBINPAINT_TOKEN unset (the kernel's "
                "own JUPYTERHUB_API_TOKEN is sent), or set it to the token your instructor gave you."
            )
        return Identity(client_id(name), self._admin is None, "hub")

    def open_session(
        self, identity: Identity, name: str | None, outstanding: Callable[[str], int]
    ) -> dict[str, object]:
        """Answer ``POST /v1/session``: a new session for the shared token; for any other token its own name
        (``session`` None: the token itself names the participant)."""
        session = None
        client = identity.client
        if identity.via == "shared":
            session, client = self.sessions.open(name, outstanding)
        return {"client": client, "session": session, "admin": identity.admin, "via": identity.via}


class _UnknownToken(AuthenticationError):
    """No token this server issued; in hub mode, the hub is asked next."""


def mint_tokens(names: Sequence[str], existing: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{name: token}`` for ``names``, keeping the tokens ``existing`` already gives; a fresh token for the rest.

    A name must already be a clean client id (`client_id`), so the name in the file is the name shown.
    """
    users = dict(existing or {})
    for name in names:
        if client_id(name, fallback="") != name:
            raise ValueError(f"{name!r} cannot be a participant name: use letters, digits and ._@+- only, at most 64.")
        users.setdefault(name, new_token())
    return users


def mint_tokens_file(path: str | Path, names: Sequence[str]) -> tuple[dict[str, str], int]:
    """Add a token for each of ``names`` to the tokens file ``path`` (made if missing; names already in it keep
    theirs); returns every ``{name: token}`` in it and how many are new. A single number ``N`` as ``names``
    means ``participant-01`` ... ``participant-N``."""
    if len(names) == 1 and _NUMBER.fullmatch(names[0]):
        count = int(names[0])
        names = [f"participant-{index:0{max(2, len(str(count)))}d}" for index in range(1, count + 1)]
    path = Path(path)
    existing = read_tokens_file(path) if path.exists() else {}
    users = mint_tokens(names, existing)
    write_tokens_file(path, users)
    return users, len(users) - len(existing)


def write_tokens_file(path: str | Path, users: Mapping[str, str]) -> None:
    """Write ``{user: token}`` as lines ``user token`` (what `read_tokens_file` reads), readable by its owner only."""
    lines = ["# nbinpaint workshop tokens: one 'name token' per line; give each participant their own line"]
    lines += [f"{user} {token}" for user, token in users.items()]
    path = Path(path)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write("\n".join(lines) + "\n")
    path.chmod(0o600)  # an existing file keeps its mode through os.open


def read_tokens_file(path: str | Path) -> dict[str, str]:
    """``{user: token}`` from JSON ``{"ann": "token", ...}``, or from lines ``ann token`` (``#`` comments)."""
    text = Path(path).read_text()
    if text.lstrip().startswith("{"):
        return {str(user): str(token) for user, token in json.loads(text).items()}
    users = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}:{number}: expected 'user token', got {line!r}")
        users[parts[0]] = parts[1]
    return users


def _bearer(authorization: str | None) -> bytes:
    if not authorization:
        return b""
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() not in ("bearer", "token"):
        return b""
    return value.strip().encode()
