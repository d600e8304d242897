"""Hub mode against a real JupyterHub on loopback: each user's own hub token names them, and nothing else does.

The hub (``jupyterhub`` from PyPI, configurable-http-proxy from npm: both installed by scripts/setup) runs
with the dummy authenticator and no spawner; a test service holding ``admin:users`` and ``tokens`` creates the
users ann and bob through the hub's REST API, and for each a token with the scopes of the token JupyterHub puts
in a kernel (the ``server`` role). One hub serves the module and is stopped at its end.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from nbinpaint.remote import HUB_TOKEN_ENV, TOKEN_ENV, RemoteManager, from_env
from nbinpaint.requests import InpaintRequest
from nbinpaint.serve import Limits, ServerConfig, local_server
from nbinpaint.serve.errors import AuthenticationError
from nbinpaint.serve.gateway import Gateway
from nbinpaint.serve.hub import HubSettings
from nbinpaint.serve.protocol import CLIENT_HEADER, SESSION_HEADER
from tests.conftest import make_scene
from tests.test_gateway import BACKEND, ScriptedWorkers, body, next_event, run
from tests.test_serve import free_port

ADMIN = "test-admin-service-token-0123456789"  # a hub service that creates users and tokens
SERVICE = "nbinpaint-service-token-0123456789"  # the workshop server, registered as a hub service
KERNEL_SCOPES = ["users:activity!user", "access:servers!server"]  # JupyterHub's `server` role
START_S = 60  # seconds the hub may take to answer


def proxy_command() -> str | None:
    """configurable-http-proxy: where scripts/setup puts it (in the venv), else on PATH."""
    local = Path(sys.prefix) / "node_modules" / ".bin" / "configurable-http-proxy"
    return str(local) if local.exists() else shutil.which("configurable-http-proxy")


class Hub:
    """A running hub: its API URL, and the kernel-like token of each user."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url
        self.tokens: dict[str, str] = {}

    def api(self, method: str, path: str, data: Any = None, token: str = ADMIN) -> Any:
        request = urllib.request.Request(
            f"{self.api_url}/{path}",
            data=None if data is None else json.dumps(data).encode(),
            method=method,
            headers={"Authorization": f"token {token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    if importlib.util.find_spec("jupyterhub") is None:
        pytest.skip("jupyterhub is not installed (bash scripts/setup installs it with the test extra)")
    proxy = proxy_command()
    if proxy is None:
        pytest.skip("configurable-http-proxy is not installed (bash scripts/setup installs it from npm)")
    folder = tmp_path_factory.mktemp("hub")
    port, hub_port = free_port(), free_port()
    (folder / "jupyterhub_config.py").write_text(
        f"""
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.db_url = "sqlite:///{folder}/hub.sqlite"
c.JupyterHub.cookie_secret_file = "{folder}/cookie_secret"
c.JupyterHub.pid_file = "{folder}/hub.pid"
c.ConfigurableHTTPProxy.command = [{proxy!r}]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{free_port()}"
c.ConfigurableHTTPProxy.pid_file = "{folder}/proxy.pid"
c.JupyterHub.services = [
    {{"name": "test-admin", "api_token": {ADMIN!r}}},
    {{"name": "nbinpaint", "api_token": {SERVICE!r}}},
]
c.JupyterHub.load_roles = [{{"name": "test-admin", "scopes": ["admin:users", "tokens"], "services": ["test-admin"]}}]
"""
    )
    log = (folder / "hub.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub", "-f", "jupyterhub_config.py"],
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={key: value for key, value in os.environ.items() if not key.startswith("JUPYTERHUB_")},
    )
    hub = Hub(f"http://127.0.0.1:{hub_port}/hub/api")
    try:
        deadline = time.monotonic() + START_S
        while True:
            try:
                hub.api("GET", "")
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the hub did not start in {START_S} s:\n{(folder / 'hub.log').read_text()[-3000:]}")
                time.sleep(0.1)
        hub.api("POST", "users", {"usernames": ["ann", "bob"]})
        for name in ("ann", "bob"):
            hub.tokens[name] = hub.api("POST", f"users/{name}/tokens", {"scopes": KERNEL_SCOPES, "note": "kernel"})[
                "token"
            ]
        yield hub
    finally:
        process.send_signal(signal.SIGTERM)  # the hub stops its proxy on the way out
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        proxy_pid = folder / "proxy.pid"
        if proxy_pid.exists():  # left behind only if the hub was killed
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(proxy_pid.read_text()), signal.SIGTERM)
        log.close()


def hub_gateway(hub: Hub, **limits: Any) -> tuple[Gateway, ScriptedWorkers]:
    workers = ScriptedWorkers()
    config = ServerConfig(models=(), hub=HubSettings(hub.api_url, SERVICE), limits=Limits(**limits))
    return Gateway(config, workers, heartbeat_s=0.05), workers


async def send(gw: Gateway, method: str, path: str, token: str, data: Any = None, **headers: str) -> Any:
    """A request with a hub token (as JupyterHub writes it: ``token <value>``) and any further headers."""
    raw = json.dumps(data or {}).encode()
    return await gw.handle(method, path, {"Authorization": f"token {token}", **headers}, raw)


def test_each_users_hub_token_is_accepted_as_that_user(hub):
    async def scenario() -> None:
        gw, _ = hub_gateway(hub)
        assert (await gw.handle("GET", "/v1/health", {}, b"")).body["auth"] == ["hub"]
        for name in ("ann", "bob"):
            opened = await send(gw, "POST", "/v1/session", hub.tokens[name], {"name": "someone-else"})
            assert opened.body == {"client": name, "session": None, "admin": True, "via": "hub"}
            assert (await send(gw, "GET", "/v1/info", hub.tokens[name])).body["client"] == name

    run(scenario)


def test_one_hub_user_cannot_act_as_the_other_and_a_forged_header_changes_nothing(hub):
    async def scenario() -> None:
        gw, workers = hub_gateway(hub, max_outstanding=1)
        ann, bob = hub.tokens["ann"], hub.tokens["bob"]
        running = await send(gw, "POST", "/v1/generate", ann, body("job"))
        await next_event(running), await next_event(running)
        # ann's second request, whatever name she sends, is still ann's: over her limit of 1.
        again = await send(gw, "POST", "/v1/generate", ann, body("j2"), **{CLIENT_HEADER: "carol"})
        assert again.status == 429 and again.body["error"]["type"] == "QueueFullError"
        # bob, claiming to be ann by header and by a made-up session, is bob: queued as bob ...
        claims = {CLIENT_HEADER: "ann", SESSION_HEADER: "1.forged"}
        waiting = await send(gw, "POST", "/v1/generate", bob, body("job"), **claims)
        assert waiting.status == 200 and (await next_event(waiting))["event"] == "accepted"
        # ... and cannot cancel ann's run of the same job id: his cancel finds his own waiting request.
        assert (await send(gw, "POST", "/v1/cancel", bob, {"job": "job"}, **claims)).body == {"state": "cancelled"}
        assert "ann/job" not in gw._cancelled and gw.queue.get("ann/job").state == "running"
        follow = await send(gw, "POST", "/v1/generate", bob, body("later"), **claims)
        status = (await send(gw, "GET", "/v1/status", bob, **claims)).body
        assert [row["client"] for row in status["running"]] == ["ann"]
        assert [row["client"] for row in status["waiting"]] == ["bob"]
        assert status["clients"] == {"ann": {"queued": 0, "running": 1}, "bob": {"queued": 1, "running": 0}}
        workers.finish("ann/job")
        assert (await next_event(running))["event"] == "result"
        assert (await next_event(follow, skip=("heartbeat", "accepted", "queue")))["event"] == "started"
        assert workers.started == ["ann/job", "bob/later"]
        workers.finish("bob/later")
        assert (await next_event(follow))["event"] == "result"

    run(scenario)


def test_tokens_the_hub_does_not_vouch_for_a_user_are_refused(hub):
    async def scenario() -> None:
        gw, _ = hub_gateway(hub)
        for token in ("not-a-hub-token", SERVICE, ADMIN, ""):  # a service's token names no participant
            reply = await send(gw, "GET", "/v1/info", token)
            assert reply.status == 401 and reply.body["error"]["type"] == "AuthenticationError", token
        # What the hub said is cached: asking again does not reach the hub.
        started = time.perf_counter()
        for _ in range(50):
            await send(gw, "GET", "/v1/info", hub.tokens["ann"])
        assert time.perf_counter() - started < 2.0

    run(scenario)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")
@pytest.mark.filterwarnings("ignore:Using extra keyword arguments on `Field`")
def test_kernels_connect_by_hub_token_own_token_or_shared_session_end_to_end(hub, twins_dir, monkeypatch):
    """One Ray server on loopback: hub users, a personal token, and the shared token's sessions."""
    config = ServerConfig(
        models=(),
        token="class-token",
        users={"cy": "tok-cy"},
        hub=HubSettings(hub.api_url, SERVICE),
        twins=True,
        twins_dir=str(twins_dir),
        port=free_port(),
        limits=Limits(max_outstanding=1),
        max_sessions=2,
        health_check_period_s=1.0,
    )
    image, mask = make_scene(64)
    request = InpaintRequest(image=image, mask=mask, model=BACKEND)
    with local_server(config, num_cpus=2) as url:
        # A hub kernel: no NBINPAINT_TOKEN, its own JUPYTERHUB_API_TOKEN; the name it asks for is ignored.
        monkeypatch.delenv(TOKEN_ENV, raising=False)
        monkeypatch.setenv(HUB_TOKEN_ENV, hub.tokens["ann"])
        ann = from_env(url, client_id="bob")
        ann.check()
        assert ann.client_id == "ann"
        assert ann.run(request).images[0].size == (64, 64)
        # A token given on purpose wins over the kernel's hub token.
        monkeypatch.setenv(TOKEN_ENV, "tok-cy")
        cy = from_env(url)
        cy.check()
        assert cy.client_id == "cy"

        # The shared token: each kernel gets a session; two more sessions push the idle first one out
        # (max_sessions=2), and its kernel opens a new one by itself on its next call.
        monkeypatch.delenv(HUB_TOKEN_ENV)
        dee = RemoteManager(url, "class-token", client_id="dee", timeout=60)
        dee.check()
        assert dee.client_id.startswith("dee#")
        first = dee.client_id
        for name in ("eve", "fay"):
            RemoteManager(url, "class-token", client_id=name).check()
        assert dee.run(request).images[0].size == (64, 64)
        assert dee.client_id.startswith("dee#") and dee.client_id != first

        # Without a session the shared token names nobody, whatever the header says.
        host, port = url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.request("GET", "/v1/info", headers={"Authorization": "Bearer class-token", CLIENT_HEADER: "dee"})
        assert connection.getresponse().status == 401
        connection.close()
        # Any first call opens the session (here `nbinpaint serve --status` with the shared token: no admin token).
        assert RemoteManager(url, "class-token", client_id="gus").server_status().data["capacity"] == 1
        with pytest.raises(AuthenticationError, match="refused the token"):
            from_env(url, "not-a-token").check()


def test_a_hub_that_cannot_be_reached_is_a_503_that_says_so():
    pytest.importorskip("jupyterhub", reason="jupyterhub is not installed (scripts/setup installs it)")

    async def scenario() -> None:
        config = ServerConfig(models=(), hub=HubSettings(f"http://127.0.0.1:{free_port()}/hub/api", SERVICE))
        gw = Gateway(config, ScriptedWorkers(), heartbeat_s=0.05)
        reply = await send(gw, "GET", "/v1/info", "a-kernel-token")
        assert reply.status == 503, reply.body
        assert reply.body["error"]["type"] == "ServerUnavailableError"

    run(scenario)
