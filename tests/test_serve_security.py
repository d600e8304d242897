"""Workshop mode against a hostile participant: paths and URLs, huge bodies, limits walked around, a second
server on a taken port, SIGTERM, and a participant's bad ``extra`` reported as theirs.

The gateway tests run without Ray (scripted replicas, one event loop per scenario in its own thread). The
loopback tests share one twin server on Ray Serve (per-participant tokens; every wait bounded; Ray shut down
at the module's end); the command-line test starts ``nbinpaint serve`` itself as a subprocess.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from nbinpaint.chains import run_chain
from nbinpaint.errors import InvalidRequestError, UnsupportedParameterError
from nbinpaint.requests import InpaintRequest
from nbinpaint.serve import protocol
from nbinpaint.serve.config import ServerConfig
from nbinpaint.serve.errors import ServerLimitError
from nbinpaint.serve.gateway import Gateway
from nbinpaint.serve.policy import Limits, steps_of
from nbinpaint.serve.protocol import read_event, request_to_wire
from tests.conftest import make_scene

SD = "runwayml/stable-diffusion-inpainting"
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
BACKEND = "classical/telea"
NOT_PIXELS = protocol.NOT_PIXELS
WAIT = 120  # seconds: the longest any single wait in this module may take


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(scenario: Any) -> None:
    """Run ``scenario()`` on a fresh event loop in its own thread (as tests/test_gateway.py does)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, scenario()).result(timeout=WAIT)


def wire_request(**changes: Any) -> dict[str, Any]:
    image, mask = make_scene()
    return request_to_wire(InpaintRequest(image=image, mask=mask, model=BACKEND).replace(**changes))


# --------------------------------------------------------------------------------------------------------
# 1. Only pixels cross the wire: no path or URL is opened, and every one gets the same answer.
# --------------------------------------------------------------------------------------------------------


def forbid_opening(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """From now on, fail the test if anything reads an image from a path or URL in this process."""
    opened: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> None:
        opened.append(args)
        raise AssertionError(f"the server tried to open {args!r}")

    import diffusers.utils

    monkeypatch.setattr(diffusers.utils, "load_image", refuse)
    monkeypatch.setattr(Image, "open", refuse)
    return opened


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("image", "/etc/hostname"),
        ("image", "/no/such/file.png"),
        ("image", "http://127.0.0.1:9/internal"),
        ("mask", "/etc/hostname"),
        ("control_image", "/etc/hostname"),
        ("control_image", ["/etc/hostname"]),
        ("extra", {"ip_adapter_image": "/etc/hostname"}),
        ("extra", {"ip_adapter_image": [{"__nbinpaint__": "png", "data": ""}, "http://127.0.0.1:9/x"]}),
        ("extra", {"mask_image": {"nested": ["/etc/hostname"]}}),
    ],
)
def test_a_path_or_url_for_any_image_input_is_refused_before_it_is_looked_at(field, value, monkeypatch):
    wire = {**wire_request(), field: value}
    opened = forbid_opening(monkeypatch)
    with pytest.raises(InvalidRequestError) as refused:
        protocol.request_from_wire(wire)
    assert str(refused.value).endswith(NOT_PIXELS)
    assert "hostname" not in str(refused.value) and "127.0.0.1" not in str(refused.value)
    assert not opened


def test_pixels_numbers_and_text_elsewhere_still_travel():
    image = Image.new("RGB", (64, 64), (1, 2, 3))
    extra = {"ip_adapter_image": [image], "image_guidance_scale": 1.5, "prompt_2": "/a prompt is only text"}
    request = protocol.request_from_wire(wire_request(extra=extra))
    assert np.array_equal(np.asarray(request.extra["ip_adapter_image"][0]), np.asarray(image))
    assert request.extra["prompt_2"] == "/a prompt is only text" and request.extra["image_guidance_scale"] == 1.5
    big = np.zeros((200, 200, 3), np.uint8)
    with pytest.raises(ServerLimitError, match="holds 120000 values"):
        protocol.request_from_wire(wire_request(extra={"ip_adapter_image": big}), max_pixels=100 * 100)


# --------------------------------------------------------------------------------------------------------
# 2. The token before the body; the body only up to its limit.
# --------------------------------------------------------------------------------------------------------


class Workers:
    """Replicas that answer at once; a chain stage returns a stand-in result. Records the jobs it started."""

    capacity = 1

    def __init__(self) -> None:
        self.started: list[tuple[str, int | None]] = []
        self.release: dict[tuple[str, int | None], asyncio.Event] = {}

    def gate(self, job: str, index: int | None = None) -> asyncio.Event:
        return self.release.setdefault((job, index), asyncio.Event())

    async def stream(self, kind: str, payload: dict[str, Any]):
        key = (payload["job"], payload.get("index"))
        self.started.append(key)
        yield {"event": "started", "replica": "fake"}
        await asyncio.wait_for(self.gate(*key).wait(), 10)  # a test that went wrong still ends
        if kind == "chain_stage":
            handoffs = payload["handoffs"] or [{"mode": "pixels", "reason": "test"}] * (len(payload["requests"]) - 1)
            yield {"event": "result", "stage": {"index": payload["index"]}, "handoffs": handoffs, "output": None}
        else:
            yield {"event": "result", "job": payload["job"]}

    async def call(self, method: str, **kwargs: Any) -> Any:
        return {"replica": "fake", "device": "cpu", "models": []}

    def deployments(self) -> dict[str, Any]:
        return {}


def gateway(**limits: Any) -> tuple[Gateway, Workers]:
    workers = Workers()
    config = ServerConfig(models=(), users={"ann": "t-ann", "bob": "t-bob"}, limits=Limits(**limits))
    return Gateway(config, workers, heartbeat_s=0.05), workers


class Body:
    """A request body arriving in chunks, which records how much of it was read."""

    def __init__(self, chunks: int, size: int = 64 * 1024) -> None:
        self.chunks, self.size, self.read = chunks, size, 0

    def __aiter__(self) -> Body:
        return self

    async def __anext__(self) -> bytes:
        if self.read >= self.chunks:
            raise StopAsyncIteration
        self.read += 1
        return b" " * self.size


@pytest.mark.parametrize("token", [None, "", "Bearer wrong", "Bearer t-ann2"])
def test_a_request_without_a_valid_token_is_answered_before_its_body_is_read(token):
    async def scenario() -> None:
        gw, _ = gateway()
        body = Body(chunks=6400)  # 400 MiB, if anyone read it
        headers = {"Content-Length": str(400 * 2**20)} | ({"Authorization": token} if token is not None else {})
        reply = await gw.handle("POST", "/v1/generate", headers, body)
        assert reply.status == 401 and reply.body["error"]["type"] == "AuthenticationError"
        assert body.read == 0, "the body of an unauthenticated request was read"

    run(scenario)


def test_the_http_ingress_hands_the_gateway_the_body_unread():
    """The Ray Serve ingress passes the body's stream; the gateway, not the ingress, decides to read it."""
    pytest.importorskip("starlette")
    from nbinpaint.serve.app import GatewayReplica

    class Request:
        method, scope, headers = "POST", {}, {"content-length": str(400 * 2**20)}
        url = type("URL", (), {"path": "/v1/generate"})()
        body_read = False
        stream_body = Body(chunks=6400)

        async def body(self) -> bytes:
            self.body_read = True
            return b""

        def stream(self) -> Body:
            return self.stream_body

    async def scenario() -> None:
        replica = object.__new__(GatewayReplica)  # no Ray: the ingress over a plain gateway
        replica.gateway, _ = gateway()
        request = Request()
        response = await replica(request)
        assert response.status_code == 401
        assert not request.body_read and request.stream_body.read == 0

    run(scenario)


@pytest.mark.parametrize("declared", ["absent", "lying"])
def test_a_body_past_the_limit_is_refused_once_the_bytes_read_pass_it(declared):
    async def scenario() -> None:
        gw, _ = gateway(max_body_bytes=1_000_000)
        headers = {"Authorization": "Bearer t-ann"} | ({"Content-Length": "100"} if declared == "lying" else {})
        body = Body(chunks=6400)
        reply = await gw.handle("POST", "/v1/generate", headers, body)
        assert reply.status == 413 and reply.body["error"]["type"] == "ServerLimitError"
        assert body.read == 1_000_000 // body.size + 1, "reading went on past the limit"

    run(scenario)


def test_a_declared_length_past_the_limit_is_refused_unread_and_a_small_body_is_read():
    async def scenario() -> None:
        gw, _ = gateway(max_body_bytes=1_000_000)
        body = Body(chunks=100)
        reply = await gw.handle(
            "POST", "/v1/generate", {"Authorization": "Bearer t-ann", "Content-Length": "6553600"}, body
        )
        assert reply.status == 413 and "6553600 bytes" in reply.body["error"]["message"] and body.read == 0

        async def chunks():
            for part in (b'{"kind": "run", "job": "j", ', b'"request": ' + json.dumps(wire_request()).encode() + b"}"):
                yield part

        accepted = await gw.handle("POST", "/v1/generate", {"Authorization": "Bearer t-ann"}, chunks())
        assert accepted.status == 200 and accepted.stream is not None
        await accepted.stream.aclose()

    run(scenario)


# --------------------------------------------------------------------------------------------------------
# 5. Limits count the work done: step lists, every loop, whole chains; a chain takes one turn per stage.
# --------------------------------------------------------------------------------------------------------


def test_every_parameter_that_sets_steps_is_limited():
    limits = Limits(max_steps=50)
    request = InpaintRequest(model=SD, steps=20)
    limits.check(request)
    for extra, name in (
        ({"timesteps": list(range(999, 0, -10))}, "'timesteps' has 100 entries"),
        ({"sigmas": np.linspace(14.0, 0.0, 60).tolist()}, "'sigmas' has 60 entries"),
        ({"timesteps": torch.arange(51)}, "'timesteps' has 51 entries"),
        ({"prior_num_inference_steps": 51}, "prior_num_inference_steps"),
        ({"prior_timesteps": list(range(80))}, "'prior_timesteps' has 80 entries"),
    ):
        with pytest.raises(ServerLimitError, match=name):
            limits.check(request.replace(extra=extra))
    limits.check(request.replace(extra={"timesteps": list(range(50))}))
    with pytest.raises(InvalidRequestError, match="must be a list of timesteps"):
        limits.check(request.replace(extra={"timesteps": 5}))
    with pytest.raises(InvalidRequestError, match="must be a whole number"):
        limits.check(request.replace(extra={"prior_num_inference_steps": "1000"}))

    class Pipeline:
        def __call__(self, prompt="", num_inference_steps=50, prior_num_inference_steps=25, timesteps=None):
            pass

    defaults = {"num_inference_steps": 50, "prior_num_inference_steps": 25}
    assert steps_of(request.replace(steps=None), Pipeline()) == defaults
    assert steps_of(request.replace(extra={"timesteps": [1, 2, 3]}), Pipeline())["timesteps"] == 3


def test_a_chain_is_limited_by_its_stages_and_its_total_steps():
    limits = Limits(max_steps=50, max_chain_stages=3)
    assert limits.max_chain_steps == 150, "a whole chain: three requests' worth by default"
    stage = InpaintRequest(model=SD, steps=50)
    limits.check_chain([stage] * 3)
    with pytest.raises(ServerLimitError, match="the chain has 4 stages, above this workshop server's limit of 3"):
        limits.check_chain([stage] * 4)
    with pytest.raises(ServerLimitError, match=r"50 \+ 50 \+ 60 = 160 denoising steps.*limit of 150"):
        limits.check_chain([stage, stage, stage.replace(steps=None, extra={"timesteps": list(range(60))})])

    class Pipeline:
        def __call__(self, prompt="", num_inference_steps=50):
            pass

    unset = stage.replace(steps=None)
    limits.check_chain([unset] * 3)  # the gateway does not know the defaults...
    with pytest.raises(ServerLimitError, match="50 \\+ 50 \\+ 50 \\+ 1 = 151"):  # ...the replica does
        Limits(max_steps=50, max_chain_stages=4).check_chain([unset] * 3 + [stage.replace(steps=1)], [Pipeline()] * 4)


def chain_body(job: str, stages: int, steps: int = 2) -> dict[str, Any]:
    first = wire_request(steps=steps)
    later = request_to_wire(InpaintRequest(model=BACKEND, task="img2img", steps=steps))
    return {"kind": "chain", "job": job, "requests": [first] + [later] * (stages - 1), "name": "test"}


async def events_of(reply: Any, until_event: str) -> list[dict[str, Any]]:
    seen = []
    while True:
        event = read_event(await asyncio.wait_for(reply.stream.__anext__(), 5))
        seen.append(event)
        if event["event"] in (until_event, "error", "cancelled", "result"):
            return seen


def test_a_chain_takes_one_turn_per_stage_so_another_participant_waits_for_one_stage_only():
    async def scenario() -> None:
        gw, workers = gateway(max_chain_stages=3)
        headers_ann, headers_bob = {"Authorization": "Bearer t-ann"}, {"Authorization": "Bearer t-bob"}
        chain = await gw.handle("POST", "/v1/generate", headers_ann, json.dumps(chain_body("c", 3)).encode())
        assert chain.status == 200, chain.body
        await events_of(chain, "started")
        body = {"kind": "run", "job": "s", "request": wire_request()}
        single = await gw.handle("POST", "/v1/generate", headers_bob, json.dumps(body).encode())
        await events_of(single, "queue")
        workers.gate("ann/c", 0).set()  # stage 1 ends: bob's request is next, not stage 2
        await events_of(single, "started")
        assert workers.started == [("ann/c", 0), ("bob/s", None)]
        workers.gate("bob/s").set()
        assert (await events_of(single, "result"))[-1]["event"] == "result"
        workers.gate("ann/c", 1).set()
        workers.gate("ann/c", 2).set()
        final = (await events_of(chain, "result"))[-1]
        assert final["event"] == "result" and [s["index"] for s in final["chain"]["stages"]] == [0, 1, 2]
        assert len(final["chain"]["handoffs"]) == 2
        assert workers.started == [("ann/c", 0), ("bob/s", None), ("ann/c", 1), ("ann/c", 2)]

        refused = await gw.handle("POST", "/v1/generate", headers_ann, json.dumps(chain_body("d", 4)).encode())
        assert refused.status == 413 and "4 stages" in refused.body["error"]["message"]

    run(scenario)


def test_a_chain_cancelled_between_stages_runs_no_further_stage():
    async def scenario() -> None:
        gw, workers = gateway()
        headers = {"Authorization": "Bearer t-ann"}
        chain = await gw.handle("POST", "/v1/generate", headers, json.dumps(chain_body("c", 3)).encode())
        await events_of(chain, "started")
        answer = await gw.handle("POST", "/v1/cancel", headers, json.dumps({"job": "c"}).encode())
        assert answer.body == {"state": "stopping"}
        workers.gate("ann/c", 0).set()
        end = (await events_of(chain, "cancelled"))[-1]
        assert end["event"] == "cancelled" and "after stage 1 of 3" in end["message"]
        assert workers.started == [("ann/c", 0)]
        assert not gw.queue.running() and len(gw.queue) == 0

    run(scenario)


# --------------------------------------------------------------------------------------------------------
# Loopback: a twin server on Ray Serve.
# --------------------------------------------------------------------------------------------------------

USERS = {"ann": "tok-ann", "bob": "tok-bob", "cy": "tok-cy"}


@pytest.fixture(scope="module")
def server(twins_dir):
    from nbinpaint.serve import local_server

    config = ServerConfig(
        models=(SD,),
        allow=(SD15,),
        users=USERS,
        twins=True,
        twins_dir=str(twins_dir),
        port=free_port(),
        threads=torch.get_num_threads(),
        limits=Limits(
            max_steps=40, max_outstanding=4, max_chain_stages=3, max_chain_steps=100, max_body_bytes=8 * 2**20
        ),
        health_check_period_s=1.0,
    )
    with local_server(config, num_cpus=2) as url:
        yield url


def participant(url: str, name: str) -> Any:
    from nbinpaint.remote import RemoteManager

    manager = RemoteManager(url, USERS[name], client_id=name, timeout=WAIT)
    manager.check()
    return manager


def post(url: str, body: dict[str, Any], token: str = "tok-ann") -> tuple[int, dict[str, Any]]:
    """A raw generate call; (status, the JSON answer or the events' last line)."""
    raw = urllib.request.Request(
        f"{url}/v1/generate",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(raw, timeout=WAIT) as response:
            lines = [line for line in response.read().splitlines() if line.strip()]
            return response.status, json.loads(lines[-1])
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def listener():
    """A tiny HTTP server on loopback that records every request it gets."""
    got: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            got.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", got
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.slow
def test_the_server_opens_no_path_or_url_and_answers_each_the_same(server, listener, tmp_path):
    internal, got = listener
    secret = tmp_path / "secret.png"
    Image.new("RGB", (64, 64), (250, 1, 2)).save(secret)
    probes = [str(secret), str(tmp_path / "missing.png"), f"{internal}/internal.png"]
    answers = []
    for probe in probes:
        request = wire_request(model=SD, steps=2, preserve_unmasked=True)
        for body in (
            {"kind": "run", "job": "p", "request": {**request, "image": probe}},
            {"kind": "run", "job": "p", "request": {**request, "mask": probe}},
            {"kind": "stage", "job": "p", "request": {**request, "image": probe}},
            {"kind": "chain", "job": "p", "requests": [{**request, "image": probe}]},
            {"kind": "run", "job": "p", "request": {**request, "extra": {"ip_adapter_image": [probe]}}},
        ):
            status, answer = post(server, body)
            assert status == 400 and "images" not in answer, answer
            answers.append((body["kind"], answer["error"]))
    assert all(error["type"] == "InvalidRequestError" for _, error in answers)
    assert all(error["message"].endswith(NOT_PIXELS) for _, error in answers)
    per_probe = [[error["message"] for _, error in answers[i * 5 : i * 5 + 5]] for i in range(3)]
    assert per_probe[0] == per_probe[1] == per_probe[2], "an existing file, a missing one and a URL differ"
    time.sleep(0.5)
    assert got == [], f"the server fetched {got}"


@pytest.mark.slow
def test_a_large_body_without_a_token_is_refused_before_it_is_sent(server):
    host, port = server.removeprefix("http://").split("/")[0].split(":")
    declared = 48 * 2**20
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            f"POST /v1/generate HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {declared}\r\n\r\n".encode()
            + b"{" * 65536
        )
        started = time.monotonic()
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            assert chunk, f"the server closed the connection without an answer: {answer!r}"
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert time.monotonic() - started < 15, "the answer waited for the body"


@pytest.mark.slow
def test_step_lists_and_long_chains_are_held_to_the_limits(server):
    ann = participant(server, "ann")
    image, mask = make_scene(64, seed=3)
    base = InpaintRequest(prompt="a cat", image=image, mask=mask, model=SD, steps=2, seed=3)
    with pytest.raises(ServerLimitError, match="'timesteps' has 41 entries"):
        ann.run(base.replace(extra={"timesteps": list(range(999, 0, -24))[:41]}))
    later = InpaintRequest(prompt="more", model=SD15, task="img2img", steps=2, seed=4)
    with pytest.raises(ServerLimitError, match="the chain has 4 stages"):
        ann.run_chain([base.replace(model=SD15)] + [later] * 3)
    with pytest.raises(ServerLimitError, match="40 \\+ 40 \\+ 40 = 120 denoising steps.*limit of 100"):
        ann.run_chain([base.replace(model=SD15, steps=40)] + [later.replace(steps=40)] * 2, name="long")


@pytest.mark.slow
def test_a_chain_gives_the_replica_up_between_stages_and_keeps_the_local_pixels(server):
    from nbinpaint.pipeline_manager import PipelineManager

    ann, bob = participant(server, "ann"), participant(server, "bob")
    image, mask = make_scene(64, seed=90)
    stages = [
        InpaintRequest(prompt="a cat", image=image, mask=mask, model=SD15, steps=30, seed=90),
        InpaintRequest(prompt="a cat, oil painting", model=SD15, task="img2img", steps=30, seed=91),
        InpaintRequest(prompt="a cat, ink", model=SD15, task="img2img", steps=30, seed=92),
    ]
    events: list[dict[str, Any]] = []
    ann.on_event(events.append)
    finished: dict[str, float] = {}

    def timed(name: str, call: Any) -> Any:
        result = call()
        finished[name] = time.monotonic()
        return result

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        chain = pool.submit(timed, "chain", lambda: ann.run_chain(stages, name="three"))
        deadline = time.monotonic() + WAIT
        while not any(event["event"] == "started" for event in events):
            assert time.monotonic() < deadline and not chain.done(), "the chain never started"
            time.sleep(0.01)
        quick = InpaintRequest(image=image, mask=mask, model=SD, steps=2)
        single = pool.submit(timed, "single", lambda: bob.run(quick))
        there = chain.result(timeout=WAIT)
        single.result(timeout=WAIT)
    assert finished["single"] < finished["chain"], "the single request waited for the whole chain"
    assert sum(event["event"] == "started" for event in events) == 3, "one turn per stage"
    here = run_chain(stages, name="three", manager=PipelineManager(device="cpu"))
    assert [h.mode for h in there.handoffs] == [h.mode for h in here.handoffs]
    for remote_stage, local_stage in zip(there.stages, here.stages, strict=True):
        if isinstance(local_stage.images, torch.Tensor):
            assert torch.equal(remote_stage.images, local_stage.images)
        else:
            assert np.array_equal(np.asarray(remote_stage.image), np.asarray(local_stage.image))
    assert there.stages[2].recipe["chain"] == here.stages[2].recipe["chain"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra",
    [{"not_a_parameter": 1}, {"clip_skip": "two"}, {"timesteps": [999, 500]}],
    ids=["unknown", "wrong-type", "unsupported-by-scheduler"],
)
def test_a_bad_extra_is_the_participants_error_not_the_servers(server, extra):
    image, mask = make_scene(64, seed=5)
    with pytest.raises(UnsupportedParameterError) as refused:
        participant(server, "cy").run(InpaintRequest(image=image, mask=mask, model=SD, steps=2, extra=extra))
    assert "instructor" not in str(refused.value) and next(iter(extra)) in str(refused.value)


# --------------------------------------------------------------------------------------------------------
# 10. One server per port; SIGTERM shuts Ray down.
# --------------------------------------------------------------------------------------------------------


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc), with their command lines."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def read_until(process: subprocess.Popen, text: str, timeout: float, out: list[str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        out.append(line)
        if text in line:
            return
    raise AssertionError(f"no {text!r} within {timeout} s: {''.join(out)[-3000:]}")


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_second_server_on_a_taken_port_refuses_and_sigterm_shuts_ray_down(twins_dir):
    port = free_port()
    # python -m: the nbinpaint of this checkout (the one on sys.path), what the `nbinpaint` script runs
    command = [sys.executable, "-m", "nbinpaint", "serve", "--twins", "--port", str(port)]
    command += ["--token", "t", "--models", BACKEND]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    started: set[int] = set()
    out: list[str] = []
    try:
        read_until(first, "ready at", 180, out)
        started = descendants(first.pid)
        assert any("raylet" in _cmdline(pid) for pid in started), "Ray was not started under the server"

        second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            stdout, stderr = second.communicate(timeout=90)
        except subprocess.TimeoutExpired:  # it started (and Ray with it): stop all of it, then fail
            for pid in descendants(second.pid) | {second.pid}:
                os.kill(pid, signal.SIGKILL)
            stdout, stderr = second.communicate(timeout=30)
            raise AssertionError(f"a second server on port {port} did not refuse to start: {stdout[-2000:]}") from None
        assert second.returncode != 0 and f"port {port} is in use" in stderr, stderr
        assert "--port" in stderr and "ready" not in stdout

        started |= descendants(first.pid)
        first.send_signal(signal.SIGTERM)
        rest = first.communicate(timeout=90)[0]
        assert first.returncode == 0, rest
        assert "stopped; Ray and its processes are shut down" in rest
        deadline = time.monotonic() + 30
        while (left := {pid for pid in started if alive(pid)}) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not left, f"processes outlived the server: {[_cmdline(pid) for pid in left]}"
    finally:
        for pid in {first.pid} | started:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        first.wait(timeout=30)


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
