"""Workshop mode end to end: a twin server on Ray Serve over loopback, and participants' kernels as threads.

One local Ray instance (2 CPUs, 127.0.0.1) serves the whole module and is shut down at its end. Every
result is compared pixel for pixel with a local `PipelineManager` in this process (same twins, device,
dtype and torch thread count). Every wait is bounded. The replica-killing test runs last.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from nbinpaint import chains
from nbinpaint.chains import run_chain, run_stage
from nbinpaint.errors import GenerationCancelled, InvalidRequestError, ModelLoadError, UnsupportedParameterError
from nbinpaint.pipeline_manager import PipelineManager
from nbinpaint.remote import RemoteManager
from nbinpaint.requests import InpaintRequest, accepted_parameters
from nbinpaint.serve import Limits, ServerConfig, local_server
from nbinpaint.serve.errors import (
    AuthenticationError,
    ModelNotAllowedError,
    ReplicaDiedError,
    ServerLimitError,
    ServerUnavailableError,
)
from nbinpaint.sweeps import sweep
from tests.conftest import make_scene

pytestmark = [
    pytest.mark.slow,
    # Ray Serve 2.60 declares its config with pydantic-1-style Field arguments: warnings from its import.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*"),
    pytest.mark.filterwarnings("ignore:Using extra keyword arguments on `Field`"),
]

SD = "runwayml/stable-diffusion-inpainting"
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
TOKEN = "workshop-test-token"
WAIT = 120  # seconds: the longest any single wait in this module may take


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(twins_dir):
    """The server's URL: SD inpaint twin preloaded, SD 1.5 allowed, 12 outstanding requests per client."""
    config = ServerConfig(
        models=(SD,),
        allow=(SD15,),
        token=TOKEN,
        twins=True,
        twins_dir=str(twins_dir),
        port=free_port(),
        threads=torch.get_num_threads(),  # on a CPU, pixels match a local run only at the same thread count
        limits=Limits(max_steps=60, max_outstanding=12),
        health_check_period_s=1.0,
    )
    with local_server(config, num_cpus=2) as url:
        yield url


@pytest.fixture(scope="module")
def local():
    """The local reference: what the same requests give in this process."""
    return PipelineManager(device="cpu")


def participant(url: str, name: str) -> RemoteManager:
    manager = RemoteManager(url, TOKEN, client_id=name, timeout=WAIT)
    manager.check()
    return manager


def same_pixels(a, b) -> bool:
    return len(a.images) == len(b.images) and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a.images, b.images, strict=True)
    )


def request(seed: int = 0, size: int = 64, **params) -> InpaintRequest:
    image, mask = make_scene(size, seed=seed)
    params = {"prompt": "a small cat", "steps": 2, "seed": seed, "model": SD, **params}
    return InpaintRequest(image=image, mask=mask, **params)


def test_twenty_clients_get_the_local_pixels(server, local):
    pool = [
        request(1),
        request(2, strength=0.6, steps=4),
        request(3, guidance_scale=1.0, negative_prompt="blurry"),
        request(4, padding_mask_crop=8),
        request(5, preserve_unmasked=True, blur_factor=4),
        request(6, num_images=2),
        request(7, model="classical/telea", steps=None),
        request(8, size=72),
    ]
    references = [local.run(r) for r in pool]
    clients = [participant(server, f"kernel-{index:02d}") for index in range(20)]

    def session(index: int) -> list[tuple[int, object]]:
        mine = [index % len(pool), (index + 3) % len(pool)]
        return [(which, clients[index].run(pool[which])) for which in mine]

    with ThreadPoolExecutor(20) as threads:
        sessions = [threads.submit(session, index) for index in range(20)]
        results = [pair for future in sessions for pair in future.result(timeout=WAIT)]
    assert len(results) == 40
    for which, result in results:
        assert result.seed == references[which].seed
        assert same_pixels(result, references[which]), f"request {which} differs from the local run"
        assert result.recipe["model"] == references[which].recipe["model"]
        assert result.recipe["remote"]["server"] == server


def test_a_kernel_switched_by_connect_runs_nbinpaint_inpaint_there(server, local, monkeypatch):
    import nbinpaint
    from nbinpaint.remote import SERVER_ENV, TOKEN_ENV
    from nbinpaint.session import connect, connect_from_env, disconnect

    r = request(10)
    try:
        remote = connect(server, token=TOKEN, client_id="notebook")
        assert nbinpaint.manager is remote
        result = nbinpaint.inpaint(r.image, r.mask, r.prompt, steps=r.steps, seed=r.seed, model=SD)
    finally:
        disconnect()
    assert not isinstance(nbinpaint.manager, RemoteManager)
    assert same_pixels(result, local.run(r))
    monkeypatch.setenv(SERVER_ENV, server)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    assert connect_from_env().info["models"] == [SD], "a hub admin's variables are enough"


def test_single_requests_finish_before_a_sweep_queued_ahead_of_them(server):
    sweeper = participant(server, "sweeper")
    singles = [participant(server, f"single-{index}") for index in range(5)]
    admin = participant(server, "instructor")
    cells = [request(20 + index, steps=3) for index in range(12)]  # one participant's 12-image sweep, all queued
    positions: dict[int, list[int]] = {index: [] for index in range(5)}
    for index, single in enumerate(singles):
        single.on_queue(positions[index].append)

    def timed(manager: RemoteManager, r: InpaintRequest) -> float:
        manager.run(r)
        return time.monotonic()

    with ThreadPoolExecutor(17) as threads:
        sweep_done = [threads.submit(timed, sweeper, cell) for cell in cells]
        deadline = time.monotonic() + WAIT
        while admin.server_status().data["clients"].get(sweeper.client_id, {}).get("queued", 0) < 10:
            assert time.monotonic() < deadline, "the sweep's cells never reached the server's queue"
            time.sleep(0.05)
        single_done = [threads.submit(timed, single, request(40 + i)) for i, single in enumerate(singles)]
        singles_finished = [future.result(timeout=WAIT) for future in single_done]
        sweep_finished = max(future.result(timeout=WAIT) for future in sweep_done)
    assert max(singles_finished) < sweep_finished, "a single request waited for the whole sweep"
    for index, seen in positions.items():
        assert seen, f"single-{index} was never told its place in the queue"
        assert seen[0] <= 5, f"single-{index} was queued behind the sweep: positions {seen}"


def test_cancel_stops_within_one_step_and_the_others_run(server, local):
    canceller, other = participant(server, "canceller"), participant(server, "bystander")
    events: list[dict] = []
    canceller.on_event(events.append)
    stop = threading.Event()

    def on_step(step: int, total: int, tensors: dict) -> None:
        if step >= 2:
            stop.set()

    long_run = request(50, size=96, steps=60)
    waiting = request(51)
    with ThreadPoolExecutor(2) as threads:
        cancelled = threads.submit(canceller.run, long_run, on_step=on_step, should_stop=stop.is_set)
        deadline = time.monotonic() + WAIT
        while not any(event["event"] == "step" for event in events):
            assert time.monotonic() < deadline and not cancelled.done(), "the long run never started"
            time.sleep(0.01)
        queued_behind = threads.submit(other.run, waiting)
        with pytest.raises(GenerationCancelled):
            cancelled.result(timeout=WAIT)
        bystander_result = queued_behind.result(timeout=WAIT)
    report = next(event for event in events if event["event"] == "cancelled")
    assert report["stopped_after_step"] - report["cancel_seen_after_step"] <= 1, report
    assert report["stopped_after_step"] < 60
    assert same_pixels(bystander_result, local.run(waiting))
    again = request(52)
    assert same_pixels(canceller.run(again), local.run(again)), "the pipeline works after a cancel"


def test_progress_and_previews_match_a_local_run(server, local):
    r = request(60, steps=4)
    runs = {}
    for name, manager in (("remote", participant(server, "progress")), ("local", local)):
        steps, previews = [], []
        result = manager.run(
            r,
            on_step=lambda step, total, tensors, steps=steps: steps.append((step, total)),
            on_preview=lambda step, total, image, previews=previews: previews.append((step, total, np.asarray(image))),
            preview_every=1,
        )
        runs[name] = (steps, previews, result)
    (remote_steps, remote_previews, remote_result), (local_steps, local_previews, local_result) = runs.values()
    assert remote_steps == local_steps == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert same_pixels(remote_result, local_result)
    # Previews (x0 approximations) arrive as the local run makes them: same steps, same pixels.
    assert remote_previews, "no preview reached the kernel"
    assert [p[:2] for p in remote_previews] == [p[:2] for p in local_previews]
    assert all(np.array_equal(a[2], b[2]) for a, b in zip(remote_previews, local_previews, strict=True))


def test_a_run_nobody_watches_streams_no_step_events(server, local):
    manager, events = participant(server, "quiet"), []
    manager.on_event(events.append)
    r = request(61, steps=3)
    assert same_pixels(manager.run(r), local.run(r))
    kinds = [event["event"] for event in events]
    assert "result" in kinds and "step" not in kinds, kinds
    events.clear()
    manager.run(r, on_step=lambda *args: None)
    assert [event["step"] for event in events if event["event"] == "step"] == [1, 2, 3]


def test_the_pipeline_replica_runs_at_the_priority_of_a_local_run(server):
    manager, events = participant(server, "priority"), []
    manager.on_event(events.append)
    manager.run(request(62))
    pid = next(event["pid"] for event in events if event["event"] == "started")
    # Ray starts workers at niceness 15: the replica would then lose the CPU to anything else on the machine.
    assert os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(os.PRIO_PROCESS, 0)


def test_wrong_token_is_refused(server):
    with pytest.raises(AuthenticationError, match="refused the token"):
        RemoteManager(server, "not-the-token").check()
    with pytest.raises(AuthenticationError, match="needs a token"):
        RemoteManager(server, "").run(request(0))
    # The server refuses, not just the client: a raw request without a token gets 401 and no stream.
    raw = urllib.request.Request(f"{server}/v1/generate", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(raw, timeout=30)
    assert refused.value.code == 401
    assert json.loads(refused.value.read())["error"]["type"] == "AuthenticationError"


def test_repos_outside_the_allow_list_are_refused(server):
    remote = participant(server, "curious")
    with pytest.raises(ModelNotAllowedError, match="'someone/else' is not on this workshop server's allow-list"):
        remote.run(request(0, model="someone/else"))
    with pytest.raises(ModelLoadError, match="allow-list"):  # caught where a local load failure is caught
        remote.accepted_parameters("someone/else")
    with pytest.raises(ModelNotAllowedError, match="controlnet"):
        remote.run(request(0, controlnet="someone/controlnet"))
    loaded = {row["model"] for row in remote.status().rows}
    assert "someone/else" not in loaded and SD in loaded


@pytest.mark.parametrize(
    "changes",
    [
        {"strength": 1.5},
        {"steps": 0},
        {"mask": make_scene(48)[1]},
        {"padding_mask_crop": 500},
        {"extra": {"not_a_parameter": 1}},
        {"model": "classical/telea", "task": "img2img"},
    ],
    ids=["strength", "steps", "mask-size", "padding", "unsupported", "backend-task"],
)
def test_a_bad_request_gets_the_local_message(server, local, changes):
    bad = request(70).replace(**changes)
    with pytest.raises(InvalidRequestError) as here:
        local.run(bad)
    with pytest.raises(InvalidRequestError) as there:
        participant(server, "mistaken").run(bad)
    assert type(there.value) is type(here.value)
    assert str(there.value) == str(here.value)


def test_server_limits_are_named(server):
    remote = participant(server, "greedy")
    with pytest.raises(ServerLimitError, match="steps=61 is above this workshop server's limit of 60"):
        remote.run(request(0, steps=61))
    with pytest.raises(ServerLimitError, match="set steps= on the request instead"):
        remote.run(request(0, extra={"num_inference_steps": 500}))
    with pytest.raises(ServerLimitError, match="runs its models in float32"):  # no second copy in bfloat16
        remote.run(request(0, dtype="bfloat16"))


def test_parameters_lookup_and_a_sweep_work_remotely(server, local):
    remote = participant(server, "sweeping")
    assert remote.accepted_parameters(SD) == accepted_parameters(local.get(SD))
    assert remote.pipeline_class(SD) == local.pipeline_class(SD) == remote.get(SD).class_name
    base = request(80)
    there = sweep(base, ("strength", [0.5, 1.0]), manager=remote)
    here = sweep(base, ("strength", [0.5, 1.0]), manager=local)
    assert all(same_pixels(there[key], here[key]) for key in here.results)
    with pytest.raises(UnsupportedParameterError) as remote_refusal:
        sweep(base.replace(extra={"not_a_parameter": 1}), ("strength", [0.5]), manager=remote)
    with pytest.raises(UnsupportedParameterError) as local_refusal:
        sweep(base.replace(extra={"not_a_parameter": 1}), ("strength", [0.5]), manager=local)
    assert str(remote_refusal.value) == str(local_refusal.value), "checked up front, with the local message"


def test_a_chain_runs_on_the_server_with_its_latent_hand_off(server, local):
    remote = participant(server, "chaining")
    image, mask = make_scene(64, seed=90)
    stages = [
        InpaintRequest(prompt="a cat", image=image, mask=mask, model=SD15, steps=2, seed=90),
        InpaintRequest(prompt="a cat, oil painting", model=SD15, task="img2img", steps=2, seed=91),
    ]
    there = remote.run_chain(stages, name="inpaint_to_img2img")
    here = run_chain(stages, name="inpaint_to_img2img", manager=local)
    assert [h.mode for h in there.handoffs] == [h.mode for h in here.handoffs]
    assert np.array_equal(np.asarray(there.image), np.asarray(here.image))
    assert there.stages[1].recipe["chain"]["stage"] == 2
    # Continuing a shown result (the studio's "send to image-to-image") sends its pixels for one more stage.
    follow_up = InpaintRequest(prompt="a cat", image=here.image, model=SD15, task="img2img", steps=2, seed=92)
    chain = {"name": "inpaint_to_img2img", "stage": 3}
    assert same_pixels(remote.run_stage(follow_up, chain=chain), run_stage(local, follow_up, chain=chain))


class Watched:
    """The callbacks a studio passes: the steps and previews it was shown, and a Cancel after ``stop_after``
    steps (None: never)."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.steps: list[tuple[int, int]] = []
        self.previews: list[tuple[int, int]] = []
        self.stop_after = stop_after

    def callbacks(self) -> dict:
        return {"on_step": self.on_step, "should_stop": self.should_stop, "on_preview": self.on_preview}

    def on_step(self, step: int, total: int, tensors: dict) -> None:
        self.steps.append((step, total))

    def on_preview(self, step: int, total: int, image) -> None:
        assert image.size[0] > 0
        self.previews.append((step, total))

    def should_stop(self) -> bool:
        return self.stop_after is not None and len(self.steps) >= self.stop_after


def stage_steps(*stages: tuple[int, float]) -> list[tuple[int, int]]:
    """The step calls of stages of ``(steps, strength)``: int(steps * strength) per stage, counted per stage.

    Exact for DDIM (the SD inpaint twin); SD 1.5's PNDM scheduler runs one more timestep from an image."""
    return [(step, int(n * s)) for n, s in stages for step in range(1, int(n * s) + 1)]


def one_per_step(steps: list[tuple[int, int]]) -> bool:
    """Whether step calls count 1, 2, 3... within each stage (a stage starts again at 1)."""
    return bool(steps) and all(
        step == (1 if i == 0 or step == 1 else steps[i - 1][0] + 1) for i, (step, _) in enumerate(steps)
    )


def test_follow_ups_report_every_step_and_previews_as_locally(server, local):
    remote = participant(server, "following")
    first = request(110)
    there, here = remote.run(first), local.run(first)
    follow_ups = {
        "to_img2img": lambda result, manager, watched: chains.to_img2img(
            result,
            "a cat, oil painting",
            model=SD15,
            steps=6,
            strength=0.5,
            seed=120,
            manager=manager,
            **watched.callbacks(),
        ),
        "refine": lambda result, manager, watched: chains.refine(
            result, model=SD, steps=6, strength=0.5, seed=121, manager=manager, **watched.callbacks()
        ),
    }
    for name, follow_up in follow_ups.items():
        remote_watch, local_watch = Watched(), Watched()
        remote_chain = follow_up(there, remote, remote_watch)
        local_chain = follow_up(here, local, local_watch)
        assert remote_watch.steps == local_watch.steps and one_per_step(remote_watch.steps), name
        assert remote_watch.previews and remote_watch.previews == local_watch.previews, name
        assert same_pixels(remote_chain.final, local_chain.final), name
        assert remote_chain.final.recipe["chain"]["stage"] == 2
    assert remote_watch.steps == stage_steps((6, 0.5)), "refine runs on DDIM: int(steps * strength) steps"


def test_a_run_from_latents_reports_steps_previews_and_stops_on_cancel(server, local):
    remote = participant(server, "from-latents")
    first = local.run(request(111, model=SD15, output_type="latent")).images[0]
    latents = first if first.ndim == 4 else first.unsqueeze(0)
    follow = InpaintRequest(prompt="a cat", model=SD15, task="img2img", steps=6, strength=0.5, seed=112)
    remote_watch, local_watch = Watched(), Watched()
    there = remote.run(follow, latents=latents, preview_every=1, **remote_watch.callbacks())
    here = local.run(follow, latents=latents, preview_every=1, **local_watch.callbacks())
    assert remote_watch.steps == local_watch.steps and one_per_step(remote_watch.steps)
    assert remote_watch.previews and remote_watch.previews == local_watch.previews
    assert same_pixels(there, here)
    # Cancel after the first step: the server stops within one step of seeing it.
    long_latents = torch.zeros(1, 4, 12, 12)
    events: list[dict] = []
    remote.on_event(events.append)
    watched = Watched(stop_after=1)
    long_stage = follow.replace(steps=60, strength=1.0)
    with pytest.raises(GenerationCancelled):
        remote.run(long_stage, latents=long_latents, **watched.callbacks())
    assert_stopped_within_one_step(events, watched, total=60)


def assert_stopped_within_one_step(events: list[dict], watched: Watched, total: int) -> None:
    report = next(event for event in events if event["event"] == "cancelled")
    assert report["stopped_after_step"] - report["cancel_seen_after_step"] <= 1, report
    assert watched.steps and len(watched.steps) <= report["stopped_after_step"] < total


def test_a_chain_reports_every_stage_s_steps_and_stops_on_cancel(server, local):
    remote = participant(server, "chain-progress")
    image, mask = make_scene(64, seed=113)
    stages = [
        InpaintRequest(prompt="a cat", image=image, mask=mask, model=SD, steps=4, seed=113),
        InpaintRequest(prompt="a cat, oil painting", model=SD15, task="img2img", steps=6, strength=0.5, seed=114),
    ]
    remote_watch, local_watch = Watched(), Watched()
    there = remote.run_chain(stages, name="watched", preview_every=1, **remote_watch.callbacks())
    here = chains.run_chain(stages, name="watched", manager=local, preview_every=1, **local_watch.callbacks())
    assert remote_watch.steps == local_watch.steps and one_per_step(remote_watch.steps)
    assert remote_watch.steps[:5] == [*stage_steps((4, 1.0)), (1, 3)], "the DDIM stage's four, then the next stage's"
    assert remote_watch.previews and remote_watch.previews == local_watch.previews
    assert np.array_equal(np.asarray(there.image), np.asarray(here.image))
    # The guide's chain as one call, on the server, cancelled in its first stage.
    events: list[dict] = []
    remote.on_event(events.append)
    watched = Watched(stop_after=1)
    big, big_mask = make_scene(96, seed=115)
    with pytest.raises(GenerationCancelled):
        chains.inpaint_to_img2img(
            big,
            big_mask,
            "a cat",
            inpaint_model=SD,
            img2img_model=SD15,
            steps=60,
            seed=115,
            manager=remote,
            **watched.callbacks(),
        )
    assert_stopped_within_one_step(events, watched, total=60)
    assert not any(event.get("event") == "result" for event in events), "no stage after the cancel ran"


def test_admin_status_shows_queue_models_and_memory(server):
    status = participant(server, "instructor").server_status()
    assert status.waiting == 0
    replica = status.replicas[0]
    assert replica["memory"]["allocated"] > 0
    assert SD in {row["model"] for row in replica["models"]}
    assert SD in status.model_load()
    text = str(status)
    assert "queue: 0 waiting" in text and SD in text and "MB in use" in text


def test_a_replica_dying_mid_run_gives_a_clear_error_and_the_next_request_works(server, local):
    victim = participant(server, "victim")
    started: list[dict] = []
    victim.on_event(lambda event: started.append(event) if event["event"] == "started" else None)
    killed: list[int] = []

    def kill_after_two_steps(step: int, total: int, tensors: dict) -> None:
        if step >= 2 and not killed:
            killed.append(started[-1]["pid"])
            os.kill(killed[0], signal.SIGKILL)

    with pytest.raises(ReplicaDiedError, match="run the request again") as died:
        victim.run(request(99, size=96, steps=60), on_step=kill_after_two_steps)
    assert killed, "the replica was never killed: the run ended first"
    assert "stopped" in str(died.value)

    after = request(100)
    deadline = time.monotonic() + WAIT
    while True:  # Serve replaces the replica after its next health check; until then requests fail clearly
        try:
            result = victim.run(after)
            break
        except (ReplicaDiedError, ServerUnavailableError):
            assert time.monotonic() < deadline, "the replica did not come back"
            time.sleep(1)
    assert same_pixels(result, local.run(after))
    assert started[-1]["pid"] != killed[0], "a new replica process served it"
