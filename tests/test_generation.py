"""The background-run controller without widgets: one run at a time, cancel within one step, errors captured,
progress and previews as throttled plain values, and the parameter lookup a remote manager can answer.

Every wait is bounded (``run.wait(timeout=...)``) so no test can hang on a stuck worker.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

import pytest
from PIL import Image

from nbinpaint import weighting
from nbinpaint.errors import GenerationCancelled, InvalidRequestError
from nbinpaint.generation import (
    PANEL_PARAMETERS,
    GenerationBusy,
    GenerationController,
    GenerationRun,
    PipelineParameters,
    error_message,
    pipeline_parameters,
)
from nbinpaint.pipeline_manager import PipelineManager
from nbinpaint.requests import CALL_PARAMETERS, InpaintRequest
from tests.conftest import make_scene

SD_INPAINT = "runwayml/stable-diffusion-inpainting"
SDXL_INPAINT = "diffusers/stable-diffusion-xl-1.0-inpainting-0.1"
KANDINSKY = "kandinsky-community/kandinsky-2-2-decoder-inpaint"
WAIT = 60  # seconds: a bound on every wait, far above a twin run's time


@pytest.fixture(scope="module")
def manager(twins_dir) -> PipelineManager:
    """One manager per module, as one kernel has: each autoencoder's preview palette is fitted once."""
    return PipelineManager(device="cpu")


def small_request(model: str = SD_INPAINT, **changes: Any) -> InpaintRequest:
    image, mask = make_scene(64)
    return InpaintRequest(prompt="a lighthouse", image=image, mask=mask, model=model, steps=3, seed=7).replace(
        **changes
    )


class Clock:
    """A hand-moved clock, so throttling is tested without sleeping."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# -- runs on the twins ------------------------------------------------------------------------------------------


def test_generate_runs_in_the_background_and_reports_plain_values(manager, twins_dir):
    controller = GenerationController(manager, progress_interval=0)
    progress: list[tuple[int, int]] = []
    finished = []
    run = controller.generate(
        small_request(), on_progress=lambda s, t: progress.append((s, t)), on_finish=finished.append
    )
    assert run.wait(timeout=WAIT)
    assert run.status == "done", run.traceback
    assert run.thread is not threading.current_thread()
    assert finished == [run]
    assert isinstance(run.result.image, Image.Image)
    assert run.result.seed == 7
    assert progress == [(1, 3), (2, 3), (3, 3)], "every step as (step, total) ints, no tensors"
    assert run.steps == 3
    assert not controller.busy


def test_a_second_start_while_running_is_refused_and_the_first_run_is_unaffected(manager, twins_dir):
    controller = GenerationController(manager)
    release = threading.Event()
    entered = threading.Event()

    def slow(run):
        entered.set()
        assert release.wait(WAIT)
        return "first"

    first = controller.start(slow, label="generation")
    assert entered.wait(WAIT)
    with pytest.raises(GenerationBusy, match="already running in this studio.*press Cancel"):
        controller.start(lambda run: "second")
    assert controller.busy
    release.set()
    assert first.wait(timeout=WAIT)
    assert first.result == "first"
    second = controller.start(lambda run: "second")
    assert second.wait(timeout=WAIT)
    assert second.result == "second"


def _spy_denoiser(monkeypatch, pipeline, controller: GenerationController, cancel_at: int) -> list[bool]:
    """Wrap the pipeline's UNet forward: record, per call, whether Cancel had been pressed before it started;
    press Cancel (from inside the call, as a click arriving mid-step) during call number ``cancel_at``."""
    unet = pipeline.unet
    original = unet.forward
    started_after_cancel: list[bool] = []

    def forward(*args, **kwargs):
        run = controller.current
        started_after_cancel.append(run.cancel_requested)
        if len(started_after_cancel) == cancel_at:
            run.cancel()
        return original(*args, **kwargs)

    monkeypatch.setattr(unet, "forward", forward)
    return started_after_cancel


@pytest.mark.parametrize("model", [SD_INPAINT, KANDINSKY])
def test_cancel_stops_within_one_step_and_the_next_run_works(manager, twins_dir, monkeypatch, model):
    pipeline = manager.get(model)
    controller = GenerationController(manager)
    forwards = _spy_denoiser(monkeypatch, pipeline, controller, cancel_at=3)
    run = controller.generate(small_request(model, steps=8))
    assert run.wait(timeout=WAIT)
    assert run.status == "cancelled"
    assert isinstance(run.error, GenerationCancelled)
    assert run.steps == 3, "the step in progress when Cancel came finished; no other started"
    assert run.steps_after_cancel == 1
    assert forwards == [False, False, False], "no denoiser call began after Cancel"
    assert "Cancelled after 3 steps" in run.message

    monkeypatch.undo()  # the UNet as it was: the next run goes all the way
    again = controller.generate(small_request(model, steps=4))
    assert again.wait(timeout=WAIT)
    assert again.status == "done", again.traceback
    assert again.steps == 4
    assert isinstance(again.result.image, Image.Image)


def test_pipeline_error_is_captured_with_message_and_traceback(manager, twins_dir, monkeypatch):
    pipeline = manager.get(SD_INPAINT)

    def broken(*args, **kwargs):
        raise RuntimeError("the UNet caught fire")

    monkeypatch.setattr(pipeline.unet, "forward", broken)
    controller = GenerationController(manager)
    run = controller.generate(small_request())
    assert run.wait(timeout=WAIT)
    assert run.status == "failed"
    assert run.message.startswith("RuntimeError: the UNet caught fire")
    assert "full traceback is under Details" in run.message
    assert "Traceback (most recent call last)" in run.traceback
    assert "broken" in run.traceback
    assert not controller.busy


def test_user_errors_keep_their_own_message(manager, twins_dir):
    controller = GenerationController(manager)
    run = controller.generate(small_request(strength=1.5))
    assert run.wait(timeout=WAIT)
    assert run.status == "failed"
    assert isinstance(run.error, InvalidRequestError)
    assert run.message == str(run.error)
    assert "strength" in run.message


def test_a_failing_finish_callback_still_ends_the_run(manager):
    def bad_view(run):
        raise ValueError("view broke")

    controller = GenerationController(manager)
    run = controller.start(lambda run: 42, on_finish=bad_view)
    assert run.wait(timeout=WAIT)
    assert run.status == "done"
    assert run.result == 42
    assert not controller.busy


def test_cancel_before_the_job_starts_runs_nothing():
    """Cancel pressed while the run waits (for a model load, say): the job is never called."""
    calls = []
    run = GenerationRun(
        calls.append,
        label="generation",
        on_progress=None,
        on_preview=None,
        on_finish=None,
        progress_interval=0,
        preview_interval=0,
        clock=Clock(),
    )
    assert run.cancel()
    run._work()
    assert run.status == "cancelled"
    assert calls == []
    assert run.done
    assert not run.cancel(), "a finished run cannot be cancelled again"


def test_compare_through_observed_manager_reports_both_runs_and_honours_cancel(manager, twins_dir):
    controller = GenerationController(manager, progress_interval=0)
    progress: list[tuple[int, int]] = []
    request = small_request(prompt="a lighthouse++", steps=2)
    run = controller.start(
        lambda run: weighting.compare(request, manager=run.observed(manager)),
        on_progress=lambda s, t: progress.append((s, t)),
    )
    assert run.wait(timeout=WAIT)
    assert run.status == "done", run.traceback
    plain, weighted = run.result
    assert plain.seed == weighted.seed
    assert progress == [(1, 2), (2, 2), (1, 2), (2, 2)], "both runs of the comparison report their steps"

    def cancel_first(step, total):
        controller.cancel()

    stopped = controller.start(
        lambda run: weighting.compare(request, manager=run.observed(manager)), on_progress=cancel_first
    )
    assert stopped.wait(timeout=WAIT)
    assert stopped.status == "cancelled"
    assert stopped.steps == 1


# -- throttling (no pipeline) -------------------------------------------------------------------------------------


def test_progress_is_throttled_but_the_last_step_always_passes(manager):
    clock = Clock()
    controller = GenerationController(manager, progress_interval=0.1, clock=clock)
    seen: list[int] = []

    def job(run):
        for step in range(1, 11):
            clock.now += 0.04  # 25 steps a second: faster than a widget needs
            run.on_step(step, 10, {})
        return None

    run = controller.start(job, on_progress=lambda s, t: seen.append(s))
    assert run.wait(timeout=WAIT)
    assert run.steps == 10
    assert seen == [1, 4, 7, 10], "at most one per 0.1 s (every third step at 0.04 s a step), and the last"


def test_previews_are_passed_at_most_four_times_a_second(manager):
    clock = Clock()
    controller = GenerationController(manager, clock=clock)
    shown: list[tuple[int, float]] = []
    picture = Image.new("RGB", (8, 8))

    def job(run):
        for step in range(1, 41):
            clock.now += 0.05  # a preview offered every step, 20 a second
            run.on_preview(step, 40, picture)
        return None

    run = controller.start(job, on_preview=lambda s, t, image: shown.append((s, clock.now)))
    assert run.wait(timeout=WAIT)
    times = [t for _s, t in shown]
    assert all(b - a >= 0.25 - 1e-9 for a, b in itertools.pairwise(times)), times
    assert run.previews == len(shown) >= 7  # 2 s of run: about 8


# -- which parameters a model takes ---------------------------------------------------------------------------------


def test_panel_parameters_come_from_the_request_table():
    for field, parameter in PANEL_PARAMETERS.items():
        if field in CALL_PARAMETERS:
            assert parameter == CALL_PARAMETERS[field]
    assert PANEL_PARAMETERS["seed"] == "generator"


@pytest.mark.parametrize(
    ("model", "missing", "pipeline_class"),
    [
        (KANDINSKY, {"strength", "padding_mask_crop", "prompt_weighting"}, "KandinskyV22InpaintCombinedPipeline"),
        ("classical/telea", {"steps", "guidance_scale", "strength", "padding_mask_crop"}, "ClassicalInpaintPipeline"),
        (SD_INPAINT, set(), "StableDiffusionInpaintPipeline"),
        (SDXL_INPAINT, set(), "StableDiffusionXLInpaintPipeline"),
    ],
)
def test_pipeline_parameters_read_the_real_signature(manager, twins_dir, model, missing, pipeline_class):
    found = pipeline_parameters(manager, model)
    assert found.pipeline == pipeline_class
    unsupported = set(found.unsupported()) - {"controlnet_conditioning_scale", "pag_scale"}  # load options
    assert missing <= unsupported
    if not missing:
        assert unsupported == set()
    for field in missing:
        assert found.reason(field) == f"{pipeline_class} does not take {PANEL_PARAMETERS[field]}"


def test_controlnet_pipeline_takes_the_conditioning_scale(manager, twins_dir):
    plain = pipeline_parameters(manager, SD_INPAINT)
    controlled = pipeline_parameters(manager, SD_INPAINT, controlnet="lllyasviel/control_v11p_sd15_inpaint")
    assert not plain.supports("controlnet_conditioning_scale")
    assert controlled.supports("controlnet_conditioning_scale")
    assert controlled.pipeline == "StableDiffusionControlNetInpaintPipeline"


def test_a_remote_manager_is_asked_through_the_contract_not_by_loading():
    class Remote:
        def __init__(self) -> None:
            self.asked: list[tuple] = []

        def accepted_parameters(self, model, task, **kwargs):
            self.asked.append((model, task, kwargs))
            return {"prompt", "image", "mask_image", "num_inference_steps", "generator"}

        def pipeline_class(self, model, task, **kwargs):
            return "StableDiffusionInpaintPipeline"

        def get(self, *args, **kwargs):
            raise AssertionError("a remote manager's pipelines are never fetched")

    remote = Remote()
    found = pipeline_parameters(remote, "some/model")
    assert isinstance(found, PipelineParameters)
    assert found.supports("steps")
    assert found.reason("strength") == "StableDiffusionInpaintPipeline does not take strength"
    pipeline_parameters(remote, "some/model", controlnet="cn/id")
    assert remote.asked == [
        ("some/model", "inpaint", {"controlnet": None}),
        ("some/model", "inpaint", {"controlnet": "cn/id"}),
    ]


def test_error_message_wording():
    assert error_message(InvalidRequestError("steps=0 is invalid. Use e.g. steps=30.")) == (
        "steps=0 is invalid. Use e.g. steps=30."
    )
    text = error_message(KeyError("unet"))
    assert text.startswith("KeyError: 'unet'")
    assert "Details" in text


def test_at_exit_running_runs_are_cancelled_and_waited_for(manager, twins_dir):
    """A thread still inside torch at interpreter exit aborts the process: exit cancels runs and joins."""
    from nbinpaint import generation

    controller = GenerationController(manager)
    entered = threading.Event()

    def job(run):
        entered.set()
        return manager.run(small_request(steps=50), **run.callbacks())

    run = controller.start(job)
    assert entered.wait(WAIT)
    generation._stop_at_exit()
    assert run.done, "the exit hook returned only after the run ended"
    assert run.status == "cancelled"
    assert run.steps < 50
