"""Batched runs without Ray: which requests may share a pipeline call, `run_batch` against single runs, a
replica's batch (`WorkerCore.execute_batch`) and the gateway's round-robin order for a batch's slots.

Each sample of a batch must be its request's own: the single run's pixels within `BATCH_TOLERANCE`, its
recipe, its own steps and previews, and a cancel that drops only that sample.
"""

from __future__ import annotations

import numpy as np
import pytest

from nbinpaint.errors import GenerationCancelled
from nbinpaint.requests import InpaintRequest
from nbinpaint.results import InpaintResult, RunOptions
from nbinpaint.runner import BATCH_TOLERANCE, batch_key, run_batch
from nbinpaint.serve.config import ServerConfig
from nbinpaint.serve.gateway import Gateway
from nbinpaint.serve.policy import Limits
from nbinpaint.serve.worker import JobControl, WorkerCore
from tests.conftest import make_scene
from tests.test_gateway import ScriptedWorkers, body, next_event, run, send, until

SD = "runwayml/stable-diffusion-inpainting"


def request(seed: int, size: int = 64, **params) -> InpaintRequest:
    image, mask = make_scene(size, seed=seed)
    params = {
        "image": image,
        "mask": mask,
        "prompt": f"a small cat {seed}",
        "steps": 3,
        "seed": seed,
        "model": SD,
        **params,
    }
    return InpaintRequest(**params)


def largest_difference(a, b) -> int:
    return int(np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max())


def without_time(recipe: dict) -> dict:
    return {key: value for key, value in recipe.items() if key != "created"}


class Watched:
    """One sample's options: the steps and previews its owner saw; a cancel after ``stop_after`` steps."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.steps: list[tuple[int, int]] = []
        self.previews: list[tuple[int, np.ndarray]] = []
        self.stop_after = stop_after

    def options(self) -> RunOptions:
        return RunOptions(
            on_step=lambda step, total, tensors: self.steps.append((step, total)),
            should_stop=lambda: self.stop_after is not None and len(self.steps) >= self.stop_after,
            on_preview=lambda step, total, image: self.previews.append((step, np.asarray(image))),
            preview_every=1,
        )


# -- which requests share a call ----------------------------------------------------------------------------


def test_the_batch_key_comes_from_the_parameter_table():
    base = request(1).validated()
    # What the table marks "each" may differ: prompt, seed, image, mask, blur, overlay.
    others = [
        request(2).validated(),
        request(3, prompt="a dog", blur_factor=4, preserve_unmasked=True).validated(),
    ]
    assert all(batch_key(other) == batch_key(base) for other in others)
    # Everything else must be equal: one pipeline call has one value of each.
    for changes in (
        {"steps": 4},
        {"strength": 0.5},
        {"guidance_scale": 1.0},
        {"eta": 0.5},
        {"model": "stable-diffusion-v1-5/stable-diffusion-v1-5"},
        {"task": "img2img", "preserve_unmasked": False},
        {"width": 56},
        {"dtype": "bfloat16"},
        {"negative_prompt": "blurry"},  # None and a text are not the same call (SDXL zeroes a missing one)
    ):
        assert batch_key(request(4, **changes).validated()) != batch_key(base), changes
    # Some requests run alone: diffusers takes one crop, one extra, one generator draw of several images.
    for changes in ({"padding_mask_crop": 8}, {"extra": {"clip_skip": 1}}, {"num_images": 2}):
        assert batch_key(request(5, **changes).validated()) is None, changes
    assert batch_key(request(5, num_images=1).validated()) == batch_key(base), "the panel's num_images=1 batches"


def test_runs_with_work_around_the_call_run_alone():
    """Soft inpainting's step-loop blend, a masked-content start and PAG's processors are set up per run."""
    _image, mask = make_scene(64, seed=6)
    grey = mask.point(lambda v: 128 if v else 0)  # soft=None: on by itself for a grey mask
    for changes in (
        {"soft": True},
        {"mask": grey},
        {"masked_content": "fill", "strength": 0.6},
        {"enable_pag": True},
    ):
        assert batch_key(request(6, **changes).validated()) is None, changes
    assert batch_key(request(6, mask=grey, soft=False).validated()) is not None, "soft=False thresholds: batches"


# -- run_batch against single runs -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sd(twins_dir):
    from nbinpaint.pipeline_manager import PipelineManager

    manager = PipelineManager(device="cpu")
    return manager, manager.get(SD)


def test_each_sample_of_a_batch_is_its_single_run_within_the_tolerance(sd):
    manager, pipeline = sd
    requests = [
        request(10).validated(),
        request(11, prompt="a red boat", preserve_unmasked=True).validated(),
        request(12, blur_factor=3).validated(),
        request(13, size=72, width=64, height=64).validated(),  # another input size, the same run size
    ]
    watched = [Watched() for _ in requests]
    with manager.running(pipeline):
        results = run_batch(pipeline, requests, [w.options() for w in watched])
    for request_, result, seen in zip(requests, results, watched, strict=True):
        alone_seen = Watched()
        single = manager.run(request_, **_callbacks(alone_seen))
        assert isinstance(result, InpaintResult)
        assert result.image.size == single.image.size == request_.image.size
        assert largest_difference(result.image, single.image) <= BATCH_TOLERANCE
        assert without_time(result.recipe) == without_time(single.recipe), "the recipe of the single run"
        assert result.seed == single.seed and result.timings["batch"] == 4
        assert seen.steps == alone_seen.steps == [(1, 3), (2, 3), (3, 3)]
        # Each owner sees their own sample's preview: the single run's, not a neighbour's.
        assert [step for step, _ in seen.previews] == [step for step, _ in alone_seen.previews] == [1, 2]
        for (_, mine), (_, single_preview) in zip(seen.previews, alone_seen.previews, strict=True):
            assert largest_difference(mine, single_preview) <= BATCH_TOLERANCE
    assert largest_difference(watched[0].previews[-1][1], watched[1].previews[-1][1]) > BATCH_TOLERANCE


def _callbacks(watched: Watched) -> dict:
    options = watched.options()
    return {"on_step": options.on_step, "on_preview": options.on_preview, "preview_every": options.preview_every}


def test_a_cancel_drops_only_its_own_sample_and_the_others_run_on(sd):
    manager, pipeline = sd
    requests = [request(20, steps=8).validated(), request(21, steps=8).validated(), request(22, steps=8).validated()]
    watched = [Watched(), Watched(stop_after=2), Watched()]
    with manager.running(pipeline):
        results = run_batch(pipeline, requests, [w.options() for w in watched])
    assert isinstance(results[1], GenerationCancelled) and "dropped" in str(results[1])
    assert len(watched[1].steps) == 2, "no step reported to a sample after its owner cancelled"
    assert [len(w.steps) for w in (watched[0], watched[2])] == [8, 8]
    for index in (0, 2):
        assert largest_difference(results[index].image, manager.run(requests[index]).image) <= BATCH_TOLERANCE
    # When every owner cancels, the call itself stops at the end of that step; the pipeline works after it.
    everyone = [Watched(stop_after=1) for _ in requests]
    with manager.running(pipeline), pytest.raises(GenerationCancelled):
        run_batch(pipeline, requests, [w.options() for w in everyone])
    assert [len(w.steps) for w in everyone] == [1, 1, 1]


def test_incompatible_requests_are_refused_by_run_batch(sd):
    _, pipeline = sd
    with pytest.raises(Exception, match="cannot share one pipeline call"):
        run_batch(pipeline, [request(30).validated(), request(31, steps=5).validated()], [RunOptions()] * 2)


# -- a replica's batch, without Ray -----------------------------------------------------------------------


def test_a_replica_batches_compatible_jobs_and_runs_the_rest_alone(twins_dir):
    core = WorkerCore(ServerConfig(models=(SD,), twins=True, twins_dir=str(twins_dir), device="cpu"))
    requests = [
        request(40),
        request(41, steps=4),  # another step count: its own call
        request(42),
        request(43, padding_mask_crop=8),  # runs alone
        request(44),
        request(45, strength=2.0),  # fails its checks: alone, with its own message
    ]
    events: list[list[dict]] = [[] for _ in requests]
    controls = [JobControl() for _ in requests]

    def emitter(index: int):
        def emit(event: dict) -> None:
            events[index].append(event)
            if index == 2 and event["event"] == "step" and event["step"] == 1:
                controls[2].stop()  # the participant of job 2 cancels after its first step

        return emit

    jobs = [("run", {"request": r, "job": f"j{i}"}, controls[i], emitter(i)) for i, r in enumerate(requests)]
    gone, early = JobControl(), []
    gone.stop()  # cancelled while Serve gathered the batch
    core.execute_batch([*jobs, ("run", {"request": request(46), "job": "gone"}, gone, early.append)])
    assert [e["event"] for e in early] == ["cancelled"] and "nothing ran" in early[0]["message"]
    batches = [next(e for e in job_events if e["event"] == "started").get("batch") for job_events in events]
    assert batches == [3, None, 3, None, 3, None]
    endings = [job_events[-1]["event"] for job_events in events]
    assert endings == ["result", "result", "cancelled", "result", "result", "error"]
    cancelled = events[2][-1]
    assert cancelled["stopped_after_step"] - cancelled["cancel_seen_after_step"] <= 1
    assert [e["step"] for e in events[0] if e["event"] == "step"] == [1, 2, 3], "the others ran every step"
    assert events[5][-1]["error"]["type"] == "InvalidRequestError"
    assert core.running == 0 and core.jobs == len(requests) + 1


# -- the gateway fills a batch's slots in round-robin order --------------------------------------------------


def test_a_batch_takes_each_waiting_participant_s_next_request():
    """One replica taking batches of 4: ann's 12-image sweep fills the first batch alone (nobody else waits),
    but once bob and cy wait, the next batch holds bob's, cy's, then ann's next cells."""

    async def scenario() -> None:
        workers = ScriptedWorkers()
        workers.capacity = 4
        config = ServerConfig(
            models=(), users={name: f"t-{name}" for name in ("ann", "bob", "cy")}, limits=Limits(max_outstanding=12)
        )
        gw = Gateway(config, workers, heartbeat_s=0.05)
        replies = [await send(gw, "POST", "/v1/generate", body(f"s{i}"), client="ann") for i in range(12)]
        for reply in replies:
            await next_event(reply, skip=("heartbeat", "queue"))  # accepted
        await until(lambda: len(workers.started) == 4)
        singles = [await send(gw, "POST", "/v1/generate", body("one"), client=name) for name in ("bob", "cy")]
        for reply in singles:
            await next_event(reply)
        for index in range(4):
            workers.finish(f"ann/s{index}")
        await until(lambda: len(workers.started) == 8)
        assert workers.started[:4] == ["ann/s0", "ann/s1", "ann/s2", "ann/s3"]
        assert workers.started[4:] == ["bob/one", "cy/one", "ann/s4", "ann/s5"]

    run(scenario)


def test_the_info_names_the_batch_size():
    async def scenario() -> None:
        workers = ScriptedWorkers()
        config = ServerConfig(models=(), users={"ann": "t-ann"}, max_batch_size=4)
        info = await send(Gateway(config, workers), "GET", "/v1/info")
        assert info.body["max_batch_size"] == 4

    run(scenario)
