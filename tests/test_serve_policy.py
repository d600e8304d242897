"""Who may use a workshop server and what it agrees to run: tokens, the allow-list, limits (no Ray)."""

from __future__ import annotations

import secrets

import pytest

from nbinpaint.requests import InpaintRequest
from nbinpaint.serve.auth import Tokens, client_id
from nbinpaint.serve.errors import AuthenticationError, ModelNotAllowedError, ServerLimitError
from nbinpaint.serve.policy import RESERVED_EXTRAS, AllowList, Limits

SD = "runwayml/stable-diffusion-inpainting"


def test_a_shared_token_names_a_participant_only_by_a_session_the_server_issued():
    tokens = Tokens(shared="s3cret")  # more in tests/test_serve_auth.py
    opened = tokens.open_session(tokens.identify("Bearer s3cret", opening=True), "ann@host", lambda client: 0)
    assert opened["client"] == "ann@host#1"
    assert tokens.identify("token s3cret", opened["session"]).client == "ann@host#1"
    with pytest.raises(AuthenticationError, match="session"):
        tokens.identify("Bearer s3cret", "ann@host")  # a name is no session


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer wrong", "Basic s3cret", "s3cret", "Bearer s3cret2"])
def test_wrong_or_missing_tokens_are_refused(header):
    with pytest.raises(AuthenticationError, match="NBINPAINT_TOKEN"):
        Tokens(shared="s3cret").identify(header, "ann")


def test_per_user_tokens_decide_the_name_and_admin_token_the_status(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text("# workshop\nann  tok-ann\nbob tok-bob  # second\n")
    tokens = Tokens.from_file(path, admin="tok-admin")
    assert tokens.identify("Bearer tok-bob", "pretending-to-be-ann").client == "bob"
    assert not tokens.identify("Bearer tok-ann").admin
    assert tokens.identify("Bearer tok-admin").admin
    json_file = tmp_path / "tokens.json"
    json_file.write_text('{"cy": "tok-cy"}')
    assert Tokens.from_file(json_file).identify("Bearer tok-cy").client == "cy"
    path.write_text("ann\n")
    with pytest.raises(ValueError, match="expected 'user token'"):
        Tokens.from_file(path)


def test_tokens_are_compared_in_constant_time(monkeypatch):
    compared = []
    real = secrets.compare_digest
    monkeypatch.setattr(secrets, "compare_digest", lambda a, b: compared.append(a) or real(a, b))
    Tokens(users={"ann": "a" * 20, "bob": "b" * 20}).identify("Bearer " + "a" * 20)
    assert compared == [b"a" * 20, b"b" * 20], "every token is compared, even after a match"


def test_a_server_without_tokens_is_refused():
    with pytest.raises(ValueError, match="needs a token"):
        Tokens()


def test_client_ids_are_cleaned():
    assert client_id("ann smith/../<x>") == "ann_smith_..__x_"
    assert client_id("") == "anonymous"
    assert len(client_id("x" * 500)) == 64


def test_allow_list_refuses_other_repos_and_controlnets():
    allow = AllowList([SD])
    allow.check(InpaintRequest(model=SD))
    allow.check(InpaintRequest(model="classical/telea"))  # nbinpaint's own backends load no weights
    with pytest.raises(ModelNotAllowedError, match=r"'someone/model' is not on this workshop server's allow-list"):
        allow.check(InpaintRequest(model="someone/model"))
    with pytest.raises(ModelNotAllowedError, match="controlnet 'x/controlnet'"):
        allow.check(InpaintRequest(model=SD, controlnet="x/controlnet"))
    with pytest.raises(ModelNotAllowedError):
        allow.check(InpaintRequest(model="/etc"))  # a path on the server is not a repo id on the list
    assert "classical/telea" not in AllowList([SD], backends=False)


def test_limits_name_the_limit_and_the_fix(scene):
    image, mask = scene
    limits = Limits(max_pixels=64 * 64, max_steps=10, max_images=2)
    request = InpaintRequest(image=image, mask=mask, model=SD).validated()
    limits.check(request)
    with pytest.raises(ServerLimitError, match="steps=11 is above this workshop server's limit of 10"):
        limits.check(request.replace(steps=11))
    with pytest.raises(ServerLimitError, match="num_images=3"):
        limits.check(request.replace(num_images=3))
    with pytest.raises(ServerLimitError, match="run size 72x64"):
        limits.check(request.replace(width=72))
    with pytest.raises(ServerLimitError, match="set steps= on the request instead"):
        limits.check(request.replace(extra={"num_inference_steps": 1000}))
    with pytest.raises(ServerLimitError, match="prior_num_inference_steps"):
        limits.check(request.replace(extra={"prior_num_inference_steps": 1000}))
    assert {"generator", "callback_on_step_end", "return_dict"} <= RESERVED_EXTRAS


def test_pipeline_defaults_above_the_step_limit_are_refused():
    class Pipeline:
        def __call__(self, prompt="", num_inference_steps=50, prior_num_inference_steps=25):
            pass

    Limits(max_steps=50).check_defaults(InpaintRequest(), Pipeline())
    with pytest.raises(ServerLimitError, match="runs 50 num_inference_steps by default"):
        Limits(max_steps=30).check_defaults(InpaintRequest(), Pipeline())
    Limits(max_steps=30).check_defaults(InpaintRequest(steps=30), Pipeline())


@pytest.mark.parametrize(
    "name", ["generator", "callback_on_step_end", "callback", "return_dict", "num_inference_steps"]
)
def test_run_machinery_cannot_be_passed_through_extra(scene, name):
    image, mask = scene
    request = InpaintRequest(image=image, mask=mask, model=SD).validated()
    with pytest.raises(ServerLimitError, match=f"extra={{'{name}': ...}} cannot be sent to a workshop server"):
        Limits().check(request.replace(extra={name: 1}))
