"""Hub mode: participants are JupyterHub users, proven by their kernel's own hub API token.

Every kernel a JupyterHub spawns has ``$JUPYTERHUB_API_TOKEN``, a token the hub issued for that user's server.
A workshop server started with ``nbinpaint serve --hub`` accepts such a token and asks the hub whose it is
(`jupyterhub.services.auth.HubAuth.user_for_token`, which calls ``GET /hub/api/user`` with the token itself and
caches the answer, refusals included, for ``cache_max_age`` seconds). The hub's user name becomes the client
id, so a participant pastes nothing and cannot pose as anyone else: only the hub can vouch for a name.

The check needs no privilege on the hub, only its API URL (``$JUPYTERHUB_API_URL`` when the server runs as a
hub service). What the kernel's token allows on the hub (by default: report activity, read its own name) is
what a server in hub mode could do with it, so point participants only at a server you run.

jupyterhub is imported only when a hub token is checked: the rest of the server runs without it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from nbinpaint.serve.errors import ServerError, ServerUnavailableError

__all__ = ["API_TOKEN_ENV", "API_URL_ENV", "HubIdentities", "HubSettings"]

API_URL_ENV = "JUPYTERHUB_API_URL"
"""The hub's REST API (e.g. ``http://127.0.0.1:8081/hub/api``); set by the hub in kernels and services."""
API_TOKEN_ENV = "JUPYTERHUB_API_TOKEN"
"""In a kernel: the user's server token, sent as the participant's token. In a service: the service's token."""


@dataclass(frozen=True)
class HubSettings:
    """Where the hub is; plain data, so Ray can hand it to the gateway replica.

    Parameters
    ----------
    api_url:
        The hub's REST API, ending in ``/hub/api``.
    api_token:
        This server's own service token, if it is a hub service (not needed to identify users).
    cache_max_age:
        Seconds a hub's answer about a token is reused before the hub is asked again.
    """

    api_url: str
    api_token: str = ""
    cache_max_age: int = 300

    @classmethod
    def from_env(cls, api_url: str | None = None) -> HubSettings:
        """The hub this process was started by (``$JUPYTERHUB_API_URL``), or the one ``api_url`` names."""
        url = api_url or os.environ.get(API_URL_ENV)
        if not url:
            raise ServerError(
                f"hub mode needs the hub's API URL: run nbinpaint serve as a JupyterHub service (the hub sets "
                f"{API_URL_ENV}), or pass it: nbinpaint serve --hub http://HUB-HOST:8081/hub/api"
            )
        return cls(api_url=url.rstrip("/"), api_token=os.environ.get(API_TOKEN_ENV, ""))


class HubIdentities:
    """Asks the hub which user a token belongs to, with `HubAuth`'s cache."""

    def __init__(self, settings: HubSettings) -> None:
        self.settings = settings
        self._auth: Any = None

    def _hub_auth(self) -> Any:
        if self._auth is None:
            try:
                from jupyterhub.services.auth import HubAuth
            except ImportError as error:
                raise ServerError(
                    "this workshop server is in hub mode but jupyterhub is not installed where it runs: "
                    "pip install jupyterhub (the hub's own version)."
                ) from error
            self._auth = HubAuth(
                api_url=self.settings.api_url,
                api_token=self.settings.api_token,
                cache_max_age=self.settings.cache_max_age,
            )
        return self._auth

    async def user_for_token(self, token: str) -> str | None:
        """The hub user name ``token`` belongs to; None for a token the hub does not know or a service's token."""
        try:
            model = await self._hub_auth().user_for_token(token, sync=False)
        except ServerError:
            raise
        except Exception as error:  # tornado's HTTPError when the hub is down or answers 5xx
            raise ServerUnavailableError(
                f"the workshop server could not ask JupyterHub ({self.settings.api_url}) whose token this is "
                f"({type(error).__name__}: {error}); try again in a moment, or tell your instructor."
            ) from error
        if not model or model.get("kind", "user") != "user" or not model.get("name"):
            return None  # a service's token names no participant
        return str(model["name"])
