"""Workshop mode's command line and connecting, without a server: flags, env vars, failures that change nothing."""

from __future__ import annotations

import socket

import pytest

import nbinpaint
from nbinpaint.__main__ import main
from nbinpaint.app import NOTEBOOK, open_studio, voila_command
from nbinpaint.errors import InvalidRequestError
from nbinpaint.remote import SERVER_ENV, TOKEN_ENV, from_env
from nbinpaint.serve.cli import config_from_args, parser
from nbinpaint.serve.config import ServerConfig
from nbinpaint.serve.errors import ServerUnavailableError
from nbinpaint.session import connect, connect_from_env, shared_manager


def closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens once the socket is closed


def test_serve_flags_become_the_server_config(monkeypatch, tmp_path):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    config, generated = config_from_args(parser().parse_args(["--twins", "--max-steps", "20", "--allow", "a/b"]))
    assert config.host == "127.0.0.1", "loopback unless told otherwise"
    assert generated and len(config.token) >= 24
    assert config.limits.max_steps == 20 and config.allow == ("a/b",) and config.twins
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("ann tok-ann\n")
    config, generated = config_from_args(parser().parse_args(["--tokens", str(tokens)]))
    assert not generated and config.token is None and config.users == {"ann": "tok-ann"}
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    assert config_from_args(parser().parse_args([]))[0].token == "from-env"


def test_batching_flags_become_the_server_config(monkeypatch, capsys):
    monkeypatch.setenv(TOKEN_ENV, "t")
    config, _ = config_from_args(parser().parse_args([]))
    assert config.max_batch_size == 1, "batching is off unless asked for"
    config, _ = config_from_args(parser().parse_args(["--max-batch-size", "4", "--batch-wait-ms", "35"]))
    assert config.max_batch_size == 4 and config.batch_wait_ms == 35.0
    for flags in (["--max-batch-size", "0"], ["--max-batch-size", "two"], ["--batch-wait-ms", "-1"]):
        with pytest.raises(SystemExit):
            parser().parse_args(flags)
        assert flags[1] in capsys.readouterr().err
    with pytest.raises(ValueError, match="max_batch_size must be a whole number >= 1"):
        ServerConfig(max_batch_size=0)


def test_the_twins_command_still_works(twins_dir, capsys):
    assert main(["twins", str(twins_dir), "--quiet"]) == 0
    assert str(twins_dir) in capsys.readouterr().out


def test_connect_needs_a_server_and_a_failed_connect_changes_nothing(monkeypatch):
    monkeypatch.delenv(SERVER_ENV, raising=False)
    with pytest.raises(InvalidRequestError, match=SERVER_ENV):
        from_env()
    before = shared_manager()
    with pytest.raises(ServerUnavailableError, match="cannot reach the workshop server"):
        connect(closed_port(), token="x")
    assert shared_manager() is before
    assert nbinpaint.manager is before


def test_environment_variables_choose_workshop_mode(monkeypatch):
    monkeypatch.delenv(SERVER_ENV, raising=False)
    assert connect_from_env() is None, "no server named: the kernel keeps a local manager"
    monkeypatch.setenv(SERVER_ENV, closed_port())
    monkeypatch.setenv(TOKEN_ENV, "x")
    with pytest.raises(ServerUnavailableError, match=SERVER_ENV):  # never a silent local fallback
        connect_from_env()


def test_the_app_says_what_to_fix_when_the_server_is_down():
    before = shared_manager()
    page = open_studio(closed_port(), "x")
    assert "cannot reach the workshop server" in page.value
    assert shared_manager() is before


def test_the_app_notebook_ships_inside_the_package():
    assert NOTEBOOK.is_file() and NOTEBOOK.parent.name == "app"
    command = voila_command(port=9999, token="t")
    assert str(NOTEBOOK) in command and "--port=9999" in command and "--Voila.ip=127.0.0.1" in command
