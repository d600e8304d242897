"""Who may use the workshop server: one shared token, or one token per participant, and an admin token.

With a shared token, participants name themselves (the client id their kernel sends: the JupyterHub user
name by default), which is enough for fair queueing in a class. With per-user tokens the token decides the
name, so nobody can take another participant's turns. Tokens are compared with `secrets.compare_digest`,
against every known token, so the time taken says nothing about which one nearly matched.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from nbinpaint.serve.errors import AuthenticationError

__all__ = ["Identity", "Tokens", "client_id", "new_token", "read_tokens_file"]

_CLIENT_ID = re.compile(r"[^A-Za-z0-9._@+-]")
_MAX_CLIENT_ID = 64


def new_token() -> str:
    """A fresh random token, safe to paste into a URL or an environment variable."""
    return secrets.token_urlsafe(24)


def client_id(text: str | None, fallback: str = "anonymous") -> str:
    """A participant name safe for logs and status tables: letters, digits and ``._@+-``, at most 64."""
    cleaned = _CLIENT_ID.sub("_", (text or "").strip())[:_MAX_CLIENT_ID]
    return cleaned or fallback


@dataclass(frozen=True)
class Identity:
    """Who sent a request: the client id queues are keyed by, and whether they may see the admin status."""

    client: str
    admin: bool = False


class Tokens:
    """The tokens a server accepts.

    Parameters
    ----------
    shared:
        One token for the whole class; the client names itself in the ``X-Nbinpaint-Client`` header.
    users:
        ``{user name: token}``; the user name becomes the client id.
    admin:
        A token for the admin status. Without one, any valid token may read it (it shows queue lengths,
        client ids and memory, no request contents).
    """

    def __init__(
        self, shared: str | None = None, users: Mapping[str, str] | None = None, admin: str | None = None
    ) -> None:
        self._entries: list[tuple[bytes, str | None]] = []  # (token, user name or None for the shared token)
        if shared:
            self._entries.append((shared.encode(), None))
        for user, token in (users or {}).items():
            if not token:
                raise ValueError(f"user {user!r} has an empty token")
            self._entries.append((token.encode(), client_id(user)))
        self._admin = admin.encode() if admin else None
        if not self._entries:
            raise ValueError("a workshop server needs a token: pass shared=..., users={...} or a tokens file")

    @classmethod
    def from_file(cls, path: str | Path, *, admin: str | None = None) -> Tokens:
        """Per-user tokens from a file (`read_tokens_file`)."""
        return cls(users=read_tokens_file(path), admin=admin)

    def identify(self, authorization: str | None, declared_client: str | None = None) -> Identity:
        """The identity an ``Authorization: Bearer <token>`` header proves; raises `AuthenticationError`."""
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
            raise AuthenticationError(
                "the workshop server refused the token: check NBINPAINT_TOKEN (or connect(token=...)) against "
                "the one your instructor gave you."
            )
        name = user if user is not None else client_id(declared_client)
        return Identity(client=name, admin=is_admin or (self._admin is None and matched))


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
