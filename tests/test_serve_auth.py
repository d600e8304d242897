"""Who the workshop server takes a participant for (no Ray, no hub): shared-token sessions, minted tokens, the client.

The attack these tests stand against: with one shared token, a participant who names themselves anew on every
request (``X-Nbinpaint-Client``) gets past ``--max-outstanding`` and takes extra turns. The gateway runs over
the scripted replicas of tests/test_gateway.py, so the tests decide what runs when.
"""

from __future__ import annotations

import json
import stat
from typing import Any

import pytest

from nbinpaint.__main__ import main
from nbinpaint.remote import HUB_TOKEN_ENV, TOKEN_ENV, RemoteManager, from_env
from nbinpaint.serve.auth import Sessions, Tokens, read_tokens_file
from nbinpaint.serve.cli import config_from_args, parser
from nbinpaint.serve.config import ServerConfig
from nbinpaint.serve.errors import AuthenticationError, QueueFullError, ServerError
from nbinpaint.serve.gateway import Gateway
from nbinpaint.serve.policy import Limits
from nbinpaint.serve.protocol import CLIENT_HEADER, SESSION_HEADER
from tests.test_gateway import ScriptedWorkers, body, next_event, run

SHARED = "class-token"


def shared_gateway(max_outstanding: int = 2, max_sessions: int = 8) -> tuple[Gateway, ScriptedWorkers]:
    workers = ScriptedWorkers()
    config = ServerConfig(
        models=(), token=SHARED, limits=Limits(max_outstanding=max_outstanding), max_sessions=max_sessions
    )
    return Gateway(config, workers, heartbeat_s=0.05), workers


async def call(gw: Gateway, method: str, path: str, data: Any = None, **headers: str) -> Any:
    """A request with the shared token and any further headers (``session=``, ``client=``)."""
    sent = {"Authorization": f"Bearer {SHARED}"}
    if "session" in headers:
        sent[SESSION_HEADER] = headers["session"]
    if "client" in headers:
        sent[CLIENT_HEADER] = headers["client"]
    return await gw.handle(method, path, sent, json.dumps(data or {}).encode())


async def open_session(gw: Gateway, name: str) -> tuple[str, str]:
    reply = await call(gw, "POST", "/v1/session", {"name": name})
    assert reply.status == 200, reply.body
    return reply.body["session"], reply.body["client"]


def test_rotating_the_client_header_on_a_shared_token_buys_no_extra_requests():
    async def scenario() -> None:
        gw, _ = shared_gateway(max_outstanding=2)
        accepted = []
        for index in range(6):  # what a script could do: a new name on every request
            reply = await call(gw, "POST", "/v1/generate", body(f"j{index}"), client=f"sock-{index}")
            accepted.append(reply.status)
        assert accepted.count(200) <= 2, f"a rotated header bought {accepted.count(200)} requests past the limit of 2"
        assert 200 not in accepted and set(accepted) == {401}, "without a session, a shared token names nobody"

    run(scenario)


def test_with_a_session_the_limit_holds_whatever_the_header_says():
    async def scenario() -> None:
        gw, _ = shared_gateway(max_outstanding=2)
        session, client = await open_session(gw, "ann")
        assert client == "ann#1"
        statuses = [
            (await call(gw, "POST", "/v1/generate", body(f"j{index}"), session=session, client=f"sock-{index}")).status
            for index in range(5)
        ]
        assert statuses == [200, 200, 429, 429, 429]
        assert gw.queue.clients() == {"ann#1": {"queued": 1, "running": 1}}, "one participant, whatever the header"
        info = await call(gw, "GET", "/v1/info", session=session, client="bob")
        assert info.body["client"] == "ann#1"

    run(scenario)


def test_a_forged_or_tampered_session_names_nobody():
    async def scenario() -> None:
        gw, _ = shared_gateway()
        session, _ = await open_session(gw, "ann")
        number, mac = session.split(".")
        forged = [
            "",
            "1",
            "2." + mac,  # another number with ann's mac
            f"{number}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}",  # one character changed
            f"{number}.",
            "ann",
            "²." + mac,  # a digit to str.isdigit, not to int()
            "99999999999999999999999." + mac,
        ]
        for value in forged:
            reply = await call(gw, "GET", "/v1/info", session=value, client="ann#1")
            assert reply.status == 401 and "session" in reply.body["error"]["message"], value
        assert (await call(gw, "GET", "/v1/info", session=session)).body["client"] == "ann#1"

    run(scenario)


def test_two_kernels_asking_for_one_name_are_two_participants_and_cannot_cancel_each_other():
    async def scenario() -> None:
        gw, workers = shared_gateway()
        first, first_client = await open_session(gw, "ann")
        second, second_client = await open_session(gw, "ann")
        assert first_client != second_client and {first_client, second_client} == {"ann#1", "ann#2"}
        running = await call(gw, "POST", "/v1/generate", body("same"), session=first)
        await next_event(running), await next_event(running)
        waiting = await call(gw, "POST", "/v1/generate", body("same"), session=second)
        assert (await next_event(waiting))["event"] == "accepted"
        other = await call(gw, "POST", "/v1/cancel", {"job": "same"}, session=second)  # cancels its own, waiting
        assert other.body == {"state": "cancelled"}
        assert "ann#1/same" not in gw._cancelled, "the first kernel's run was not touched"
        workers.finish("ann#1/same")
        assert (await next_event(running))["event"] == "result"

    run(scenario)


def test_opening_sessions_is_bounded_so_minting_many_buys_at_most_max_sessions_participants():
    async def scenario() -> None:
        gw, _ = shared_gateway(max_outstanding=1, max_sessions=3)
        idle, _ = await open_session(gw, "idle")
        busy = []
        for index in range(2):
            session, _ = await open_session(gw, f"mint-{index}")
            assert (await call(gw, "POST", "/v1/generate", body("j"), session=session)).status == 200
            busy.append(session)
        # The table is full: the idle session makes room (its kernel reconnects when it next calls) ...
        third, _ = await open_session(gw, "mint-2")
        assert (await call(gw, "GET", "/v1/info", session=idle)).status == 401
        assert (await call(gw, "POST", "/v1/generate", body("j"), session=third)).status == 200
        # ... but busy ones are never dropped: a fourth is refused, and the token never holds more than
        # max_sessions * max_outstanding requests.
        refused = await call(gw, "POST", "/v1/session", {"name": "mint-3"})
        assert refused.status == 429 and "--max-sessions" in refused.body["error"]["message"]
        assert len(gw.queue) + len(gw.queue.running()) == 3
        for session in busy:
            assert (await call(gw, "GET", "/v1/info", session=session)).status == 200

    run(scenario)


def test_a_personal_token_names_its_owner_and_needs_no_session():
    async def scenario() -> None:
        config = ServerConfig(models=(), token=SHARED, users={"ann": "tok-ann"})
        gw = Gateway(config, ScriptedWorkers(), heartbeat_s=0.05)
        headers = {"Authorization": "Bearer tok-ann", CLIENT_HEADER: "bob", SESSION_HEADER: "1.x"}
        opened = await gw.handle("POST", "/v1/session", headers, b'{"name": "bob"}')
        assert opened.body["session"] is None and opened.body["client"] == "ann" and opened.body["via"] == "user"
        assert (await gw.handle("GET", "/v1/info", headers, b"")).body["client"] == "ann"
        health = await gw.handle("GET", "/v1/health", {}, b"")
        assert health.body["auth"] == ["token"], "no hub: a kernel must not send its hub token here"

    run(scenario)


def test_sessions_table_drops_the_least_recently_used_idle_session():
    sessions = Sessions(limit=2)
    a, _ = sessions.open("a", lambda client: 0)
    b, _ = sessions.open("b", lambda client: 0)
    assert sessions.client(a) == "a#1"  # a is now the most recently used
    c, _ = sessions.open("c", lambda client: 0)
    assert sessions.client(b) is None and sessions.client(a) == "a#1" and sessions.client(c) == "c#3"
    with pytest.raises(QueueFullError):
        sessions.open("d", lambda client: 1)
    assert Sessions().client(a) is None, "another server's secret: not a session here"


def test_the_admin_token_alone_is_the_admin_not_a_name_it_chooses():
    tokens = Tokens(shared=SHARED, admin="tok-admin")
    identity = tokens.identify("Bearer tok-admin", "whoever")
    assert identity.client == "admin" and identity.admin
    with pytest.raises(AuthenticationError, match="session"):
        tokens.identify(f"Bearer {SHARED}", "admin")  # the shared token needs a session, whatever the name


def test_mint_tokens_writes_a_file_the_server_reads(tmp_path, capsys):
    path = tmp_path / "tokens.txt"
    assert main(["serve", "--tokens", str(path), "--mint-tokens", "ann", "bob"]) == 0
    assert "2 participant tokens (2 new)" in capsys.readouterr().out
    first = read_tokens_file(path)
    assert sorted(first) == ["ann", "bob"] and first["ann"] != first["bob"] and len(first["ann"]) >= 24
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, "readable by the instructor only"

    assert main(["serve", "--tokens", str(path), "--mint-tokens", "bob", "cy"]) == 0
    second = read_tokens_file(path)
    assert second["ann"] == first["ann"] and second["bob"] == first["bob"], "names already there keep their tokens"
    assert sorted(second) == ["ann", "bob", "cy"]

    config, generated = config_from_args(parser().parse_args(["--tokens", str(path)]))
    assert not generated and config.token is None
    tokens = config.tokens()
    assert {name: tokens.identify(f"Bearer {token}").client for name, token in second.items()} == {
        "ann": "ann",
        "bob": "bob",
        "cy": "cy",
    }

    numbered = tmp_path / "class.txt"
    assert main(["serve", "--tokens", str(numbered), "--mint-tokens", "3"]) == 0
    assert sorted(read_tokens_file(numbered)) == ["participant-01", "participant-02", "participant-03"]


def test_hub_mode_from_the_command_line(monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.delenv("JUPYTERHUB_API_URL", raising=False)
    config, generated = config_from_args(parser().parse_args(["--hub", "http://127.0.0.1:8081/hub/api/"]))
    assert config.hub.api_url == "http://127.0.0.1:8081/hub/api" and config.token is None and not generated
    assert config.tokens().accepts == ["hub"]
    with pytest.raises(ServerError, match="JUPYTERHUB_API_URL"):  # --hub alone, outside a hub
        config_from_args(parser().parse_args(["--hub"]))
    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://hub:8081/hub/api")
    config, _ = config_from_args(parser().parse_args(["--hub", "--tokens", "/dev/null", "--max-sessions", "5"]))
    assert config.hub.api_url == "http://hub:8081/hub/api" and config.max_sessions == 5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--mint-tokens", "ann"], "needs --tokens FILE"),
        (["--tokens", "{path}", "--mint-tokens", "ann smith/.."], "cannot be a participant name"),
    ],
)
def test_mint_tokens_refuses_what_it_cannot_write(tmp_path, capsys, argv, message):
    argv = [arg.replace("{path}", str(tmp_path / "t.txt")) for arg in argv]
    with pytest.raises(SystemExit):
        main(["serve", *argv])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "t.txt").exists()


def test_connect_drops_a_trailing_v1_and_says_so(capsys):
    for url in ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1/", "127.0.0.1:8000/prefix/v1"):
        manager = RemoteManager(url, "t")
        assert not manager.url.endswith("/v1")
        assert "ends in /v1, which nbinpaint adds itself" in capsys.readouterr().out
    assert RemoteManager("http://127.0.0.1:8000/prefix/v1", "t").url == "http://127.0.0.1:8000/prefix"
    assert RemoteManager("http://127.0.0.1:8000/v10", "t").url == "http://127.0.0.1:8000/v10"


@pytest.mark.parametrize(
    ("explicit", "env_token", "server_accepts", "sent"),
    [
        (None, None, ["token", "hub"], "hub-tok"),  # a hub kernel pastes nothing
        (None, None, ["token"], ""),  # never to a server that did not ask for hub tokens
        (None, "env-tok", ["token", "hub"], "env-tok"),  # a token given on purpose wins
        ("arg-tok", "env-tok", ["token", "hub"], "arg-tok"),
    ],
)
def test_which_token_the_kernel_sends(monkeypatch, explicit, env_token, server_accepts, sent):
    monkeypatch.setenv(HUB_TOKEN_ENV, "hub-tok")
    if env_token is None:
        monkeypatch.delenv(TOKEN_ENV, raising=False)
    else:
        monkeypatch.setenv(TOKEN_ENV, env_token)
    calls = []

    class Answer:  # what _send returns: a connection to close and a response to read
        def __init__(self, data: Any) -> None:
            self.data = json.dumps(data).encode()

        def read(self) -> bytes:
            return self.data

        def close(self) -> None:
            pass

    def fake_send(self: RemoteManager, method: str, endpoint: str, body: Any = None) -> Any:
        calls.append((endpoint, self._token))
        if endpoint == "health":
            return Answer(None), Answer({"ok": True, "auth": server_accepts})
        return Answer(None), Answer({"client": "someone", "session": None} if endpoint == "session" else {})

    monkeypatch.setattr(RemoteManager, "_send", fake_send)
    manager = from_env("http://127.0.0.1:1", explicit)
    manager.check()
    assert ("session", sent) in calls
    assert all(token != "hub-tok" for _, token in calls) or "hub" in server_accepts
