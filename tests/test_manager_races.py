"""Threads against the manager's memory budget: a checkpoint in use is never evicted from under its run."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
import torch

from nbinpaint import notices
from nbinpaint.errors import ModelLoadError
from nbinpaint.pipeline_manager import PipelineManager
from nbinpaint.requests import InpaintRequest
from tests.conftest import make_scene

MODELS = ("runwayml/stable-diffusion-inpainting", "stable-diffusion-v1-5/stable-diffusion-inpainting")
THREADS = 4  # two studios' worth: two threads per model
RUNS_PER_THREAD = 50


@pytest.fixture
def one_thread_per_run():
    """Four threads at once, each with torch's own thread pool, oversubscribe two cores many times over."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def one_checkpoint_bytes() -> int:
    probe = PipelineManager(device="cpu")
    probe.get(MODELS[0])
    return probe.resident_bytes()


def hammer(manager: PipelineManager) -> tuple[int, Counter]:
    """Two threads per model, each running tiny requests back to back; returns runs done and errors by text."""
    image, mask = make_scene(32)
    errors: Counter = Counter()
    done = [0]
    count = threading.Lock()
    start = threading.Barrier(THREADS)

    def work(model: str, offset: int) -> None:
        start.wait()
        for i in range(RUNS_PER_THREAD):
            request = InpaintRequest(prompt="x", image=image, mask=mask, steps=1, seed=offset + i, model=model)
            try:
                result = manager.run(request)
                assert result.request.model == model
            except Exception as error:  # every kind counts, so the assertion below shows them all
                with count:
                    errors[f"{type(error).__name__}: {error}"[:160]] += 1
            else:
                with count:
                    done[0] += 1

    threads = [threading.Thread(target=work, args=(MODELS[n % 2], 1000 * n)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a run hung"
    return done[0], errors


@pytest.mark.parametrize("budget", ["zero", "one checkpoint"])
def test_two_models_four_threads_under_a_budget_never_fail(twins_dir, one_thread_per_run, budget, capsys):
    notices.reset()
    limit = 0 if budget == "zero" else int(one_checkpoint_bytes() * 1.5)
    manager = PipelineManager(device="cpu", memory_budget=limit)
    done, errors = hammer(manager)
    assert not errors, dict(errors)
    assert done == THREADS * RUNS_PER_THREAD
    # Every run ended, so nothing is pinned, and the next load brings the budget back.
    assert all(c.pins == 0 for c in manager._checkpoints.values())
    manager.get(MODELS[0])
    assert len(manager.status().rows) == 1


def test_a_pinned_checkpoint_is_kept_and_the_budget_exceeded_with_a_notice(twins_dir, capsys):
    notices.reset()
    manager = PipelineManager(device="cpu", memory_budget=0)
    held = manager.get(MODELS[0])
    entered, release = threading.Event(), threading.Event()

    def on_step(step, total, tensors):
        entered.set()
        assert release.wait(60)

    image, mask = make_scene(32)
    request = InpaintRequest(prompt="x", image=image, mask=mask, steps=1, seed=1, model=MODELS[0])
    runner = threading.Thread(target=manager.run, args=(request,), kwargs={"on_step": on_step})
    runner.start()
    try:
        assert entered.wait(60)
        other = manager.get(MODELS[1])  # would evict MODELS[0] mid-run without the pin
        assert {row["model"] for row in manager.status().rows} == set(MODELS)
        assert "in use by a run" in capsys.readouterr().out
    finally:
        release.set()
        runner.join(60)
    # The run's end brings the budget back: the idle checkpoint goes, the one just used stays.
    assert [row["model"] for row in manager.status().rows] == [MODELS[0]]
    assert held is manager.get(MODELS[0]) and other is not manager.get(MODELS[1])


def test_a_pipeline_evicted_after_get_is_registered_again_when_used(twins_dir):
    manager = PipelineManager(device="cpu")
    pipeline = manager.get(MODELS[0])
    assert manager.evict() == [MODELS[0]]
    # A chain holding the pipeline from `get` runs it through the manager: no KeyError, and it is managed again.
    with manager.running(pipeline):
        pipeline(prompt="x", image=make_scene(32)[0], mask_image=make_scene(32)[1], num_inference_steps=1)
    assert [row["model"] for row in manager.status().rows] == [MODELS[0]]
    assert manager.status().rows[0]["runs"] == 1
    assert manager.get(MODELS[0]) is pipeline


def test_an_evicted_pipeline_whose_checkpoint_was_loaded_again_is_refused_with_the_fix(twins_dir):
    manager = PipelineManager(device="cpu")
    stale = manager.get(MODELS[0])
    manager.evict()
    fresh = manager.get(MODELS[0])
    assert fresh is not stale
    with pytest.raises(ModelLoadError, match=r"was evicted.*get the current one with manager.get"):
        manager.lock_for(stale)
    with pytest.raises(KeyError, match="not managed here"):
        manager.lock_for(object())


def test_a_chain_stage_is_held_like_a_run_under_a_budget(twins_dir, one_thread_per_run):
    """A chain's stage calls its pipeline through `manager.running`, so another thread's load cannot evict it."""
    from nbinpaint.chains import run_stage

    image, mask = make_scene(32)
    manager = PipelineManager(device="cpu", memory_budget=0)
    errors: list[str] = []
    start = threading.Barrier(2)

    def stages() -> None:
        start.wait()
        for i in range(25):
            try:
                run_stage(manager, InpaintRequest(prompt="x", image=image, mask=mask, steps=1, seed=i, model=MODELS[0]))
            except Exception as error:
                errors.append(f"{type(error).__name__}: {error}"[:160])

    def runs() -> None:
        start.wait()
        for i in range(25):
            try:
                manager.run(InpaintRequest(prompt="x", image=image, mask=mask, steps=1, seed=i, model=MODELS[1]))
            except Exception as error:
                errors.append(f"{type(error).__name__}: {error}"[:160])

    threads = [threading.Thread(target=stages), threading.Thread(target=runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a run hung"
    assert not errors, errors
    assert all(c.pins == 0 for c in manager._checkpoints.values())


def test_two_threads_first_runs_in_a_fresh_kernel_do_not_race_on_importing_diffusers(twins_dir):
    """The first two clicks of two studios in a new kernel: both threads used to import diffusers at once."""
    import os
    import subprocess
    import sys

    code = (
        f"MODELS = {MODELS!r}\n"
        + """
import threading, torch
torch.set_num_threads(1)
from nbinpaint.pipeline_manager import PipelineManager
from nbinpaint.requests import InpaintRequest
from tests.conftest import make_scene
image, mask = make_scene(32)
manager = PipelineManager(device="cpu")
start, failures = threading.Barrier(2), []
def work(model):
    start.wait()
    try:
        manager.run(InpaintRequest(prompt="x", image=image, mask=mask, steps=1, seed=1, model=model))
    except Exception as error:
        failures.append(repr(error)[:200])
threads = [threading.Thread(target=work, args=(m,)) for m in MODELS]
[t.start() for t in threads]
[t.join(120) for t in threads]
print("FAILURES", failures)
"""
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=240, env=os.environ.copy()
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "FAILURES []" in done.stdout, done.stdout[-2000:]
