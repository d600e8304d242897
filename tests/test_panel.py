"""ParameterPanel without a browser: controls set as a user would, Generate pressed, and a spy around the twin
pipeline's real ``__call__`` shows exactly what reached diffusers.

The panel here is bound to a plain image and mask (no canvas): the low-code route. Runs happen on the
panel's worker thread; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import subprocess
import sys
import threading
import types
from typing import Any

import numpy as np
import pytest
from diffusers.image_processor import VaeImageProcessor
from PIL import Image

from nbinpaint import parameters, previews
from nbinpaint.control import make_inpaint_condition
from nbinpaint.generation import pipeline_parameters
from nbinpaint.history import History
from nbinpaint.pipeline_manager import PipelineManager
from nbinpaint.requests import DEFAULT_MODEL
from nbinpaint.widgets.panel import TOOLTIPS, ParameterPanel, guide_models, model_choices, reasons_sentence
from nbinpaint.widgets.picker import CUSTOM, TWIN_DEFAULT_MODEL, default_model
from tests.conftest import make_scene

SD_INPAINT = "runwayml/stable-diffusion-inpainting"
KANDINSKY = "kandinsky-community/kandinsky-2-2-decoder-inpaint"
CONTROLNET = "lllyasviel/control_v11p_sd15_inpaint"
WAIT = 60


@pytest.fixture(scope="module")
def manager(twins_dir) -> PipelineManager:
    """One manager per module, as one kernel has: each autoencoder's preview palette is fitted once."""
    return PipelineManager(device="cpu")


def spy_calls(monkeypatch: pytest.MonkeyPatch, pipeline: Any, before: Any = None) -> list[dict[str, Any]]:
    """Record the keyword arguments of every call of ``pipeline``'s class, then call the real ``__call__``
    (``before(kwargs)`` runs first: it may block or raise). functools.wraps keeps the signature."""
    calls: list[dict[str, Any]] = []
    original = type(pipeline).__call__

    @functools.wraps(original)
    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        if before is not None:
            before(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(pipeline), "__call__", spy)
    return calls


@pytest.fixture
def history() -> History:
    return History(output=False)


@pytest.fixture
def panel(manager, history, twins_dir):
    image, mask = make_scene(64)
    widget = ParameterPanel(image, mask, manager=manager, history=history, model=SD_INPAINT, steps=3, prompt="a boat")
    assert widget.wait_ready(WAIT)
    yield widget
    close(widget)


def close(panel: ParameterPanel) -> None:
    """Close after any model lookup and run have ended: two managers loading at once (one per test here)
    would race inside diffusers' loading, which is not thread-safe across managers."""
    assert panel.wait_ready(WAIT)
    panel.close()
    assert panel.controller.wait(WAIT)


def press_generate(panel: ParameterPanel) -> Any:
    panel.generate_button.click()
    run = panel.last_run
    assert run is not None, panel.status
    assert run.wait(timeout=WAIT)
    return run


def same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b))


# -- what reaches the pipeline ----------------------------------------------------------------------------------


def test_controls_reach_the_pipeline_call_exactly(panel, manager, history, monkeypatch):
    calls = spy_calls(monkeypatch, manager.get(SD_INPAINT))
    c = panel.controls
    c["prompt"].value = "a red boat on a lake"
    c["negative_prompt"].value = "blurry, low quality"
    c["strength"].value = 0.75
    c["guidance_scale"].value = 5.5
    c["steps"].value = 4
    c["crop"].value = True
    c["padding_mask_crop"].value = 16
    c["num_images"].value = 2
    c["seed"].value = 1234
    c["lock_seed"].value = True
    image, mask = panel.image.copy(), panel.mask.copy()

    run = press_generate(panel)

    assert run.status == "done", run.traceback
    (kwargs,) = calls
    assert kwargs["prompt"] == "a red boat on a lake"
    assert kwargs["negative_prompt"] == "blurry, low quality"
    assert kwargs["strength"] == 0.75
    assert kwargs["guidance_scale"] == 5.5
    assert kwargs["num_inference_steps"] == 4
    assert kwargs["padding_mask_crop"] == 16
    assert kwargs["num_images_per_prompt"] == 2
    assert kwargs["generator"].initial_seed() == 1234
    assert same_pixels(kwargs["image"], image)
    assert same_pixels(kwargs["mask_image"], mask)
    assert run.steps == 3, "int(4 steps x 0.75)"
    assert panel.progress.value == panel.progress.max == 3
    assert len(panel.result.images) == 2
    assert len(history) == 2, "one history entry per image"
    assert panel.seed == 1234, "a locked seed stays"
    assert "Done" in panel.status and "seed 1234" in panel.status


def test_the_recipe_records_model_parameters_seed_sizes_and_versions(panel):
    panel.controls["strength"].value = 0.5
    panel.controls["steps"].value = 4
    run = press_generate(panel)
    recipe = panel.result.recipe
    assert run.status == "done"
    assert recipe["model"] == SD_INPAINT
    assert recipe["seed"] == panel.seed
    assert recipe["parameters"]["strength"] == 0.5
    assert recipe["parameters"]["steps"] == 4
    assert recipe["parameters"]["prompt"] == "a boat"
    assert recipe["input_size"] == [64, 64]
    assert recipe["run_size"] == [64, 64]
    assert set(recipe["versions"]) >= {"nbinpaint", "diffusers", "torch"}


def test_an_unlocked_seed_is_new_each_run_and_shown(panel, manager, monkeypatch):
    calls = spy_calls(monkeypatch, manager.get(SD_INPAINT))
    seeds = []
    for _ in range(2):
        run = press_generate(panel)
        assert run.status == "done"
        seeds.append(panel.seed)
        assert calls[-1]["generator"].initial_seed() == panel.seed == panel.result.seed
    assert seeds[0] != seeds[1]


def test_the_panel_takes_diffusers_names_too(manager, history, twins_dir):
    image, mask = make_scene(32)
    widget = ParameterPanel(
        image, mask, manager=manager, history=history, model=SD_INPAINT, num_inference_steps=7, guidance_scale=5.0
    )
    try:
        assert widget.steps == 7 and widget.controls["steps"].value == 7 and widget.request().steps == 7
    finally:
        close(widget)


def test_traits_are_clamped_to_their_controls_range(panel):
    panel.steps = 500
    panel.strength = 0
    panel.controls["num_images"].value = 99
    panel.seed = -3
    assert (panel.steps, panel.controls["steps"].value) == (150, 150)
    assert panel.strength == panel.controls["strength"].value == 0.01
    assert panel.num_images == 8
    assert panel.seed == 0


def test_dice_draws_a_new_seed(panel):
    panel.seed = 5
    panel.dice.click()
    assert panel.seed != 5
    assert panel.controls["seed"].value == panel.seed


def test_blur_and_preserve_unmasked(panel, manager, monkeypatch):
    calls = spy_calls(monkeypatch, manager.get(SD_INPAINT))
    panel.controls["blur_factor"].value = 8
    run = press_generate(panel)
    assert run.status == "done"
    expected = VaeImageProcessor.blur(panel.mask, blur_factor=8)
    assert same_pixels(calls[-1]["mask_image"], expected), "the mask goes in feathered by diffusers' own blur"

    panel.controls["blur_factor"].value = 0
    panel.controls["preserve_unmasked"].value = True
    run = press_generate(panel)
    assert run.status == "done"
    keep = np.asarray(panel.mask) == 0
    assert np.array_equal(np.asarray(panel.result.image)[keep], np.asarray(panel.image)[keep])


# -- controls a pipeline does not take ------------------------------------------------------------------------------


def test_controls_the_pipeline_lacks_are_disabled_with_the_reason(panel, manager, monkeypatch):
    strength, crop = panel.controls["strength"], panel.controls["crop"]
    assert not strength.disabled
    assert strength.tooltip == TOOLTIPS["strength"]

    panel.controls["model"].value = KANDINSKY
    assert panel.wait_ready(WAIT)
    assert panel.pipeline_name == "KandinskyV22InpaintCombinedPipeline"
    assert strength.disabled
    assert strength.tooltip == "Off: KandinskyV22InpaintCombinedPipeline does not take strength."
    assert crop.disabled
    assert panel.controls["padding_mask_crop"].disabled
    assert panel.controls["compare_weighting"].disabled
    assert "does not take prompt_embeds" in panel.controls["compare_weighting"].tooltip
    assert "has no strength" in panel._reasons.value
    assert not panel.controls["steps"].disabled

    calls = spy_calls(monkeypatch, manager.get(KANDINSKY))
    panel.strength = 0.4  # set, but the pipeline has no such parameter: it is not sent
    run = press_generate(panel)
    assert run.status == "done", run.traceback
    assert "strength" not in calls[-1]
    assert calls[-1]["num_inference_steps"] == 3

    panel.controls["model"].value = SD_INPAINT
    assert panel.wait_ready(WAIT)
    assert not strength.disabled
    assert strength.tooltip == TOOLTIPS["strength"]


def test_eta_comes_from_its_table_row(panel, manager, monkeypatch):
    eta = panel.controls["eta"]
    row = parameters.row("eta")
    assert eta in panel.advanced.children[0].children, "a new row goes under Advanced"
    assert (eta.min, eta.max, eta.step, eta.description) == (0.0, 1.0, 0.05, row.label)
    assert not eta.disabled
    assert eta.tooltip == TOOLTIPS["eta"] == row.tooltip
    assert panel.request().eta is None, "0: the pipeline's default (unset)"
    eta.value = 0.5
    assert panel.eta == 0.5 and panel.request().eta == 0.5

    calls = spy_calls(monkeypatch, manager.get(SD_INPAINT))
    run = press_generate(panel)
    assert run.status == "done", run.traceback
    assert calls[-1]["eta"] == 0.5
    assert panel.result.recipe["parameters"]["eta"] == 0.5
    monkeypatch.undo()

    panel.controls["model"].value = KANDINSKY
    assert panel.wait_ready(WAIT)
    assert eta.disabled
    assert eta.tooltip == "Off: KandinskyV22InpaintCombinedPipeline does not take eta."
    assert panel.request().eta is None


def test_generate_before_the_lookup_finishes_uses_the_signature_anyway(panel, manager, monkeypatch):
    calls = spy_calls(monkeypatch, manager.get(KANDINSKY))
    panel.crop = True
    panel.controls["model"].value = KANDINSKY
    run = press_generate(panel)  # at once, without waiting for the lookup
    assert run.status == "done", run.traceback
    assert "padding_mask_crop" not in calls[-1]
    assert "strength" not in calls[-1]
    assert panel.controls["strength"].disabled


def test_a_value_re_enabled_by_the_model_is_sent_even_before_the_lookup(panel, manager, monkeypatch):
    panel.controls["model"].value = KANDINSKY
    assert panel.wait_ready(WAIT)
    panel.strength = 0.6
    assert panel.values()["strength"] is None, "Kandinsky takes no strength"
    assert panel.request().strength is None
    calls = spy_calls(monkeypatch, manager.get(SD_INPAINT))
    panel.controls["model"].value = SD_INPAINT
    run = press_generate(panel)  # at once: the panel may still show Kandinsky's disabled controls
    assert run.status == "done", run.traceback
    assert calls[-1]["strength"] == 0.6
    assert panel.wait_ready(WAIT)
    assert panel.request().strength == 0.6


def test_classical_backend_disables_the_diffusion_controls(panel):
    panel.controls["model"].value = "classical/telea"
    assert panel.wait_ready(WAIT)
    for name in ("steps", "guidance_scale", "strength", "crop"):
        assert panel.controls[name].disabled, name
    # A fill is deterministic and reads no prompt: those are off too (it accepts them for the call shape).
    for name in ("seed", "prompt", "negative_prompt"):
        assert panel.controls[name].disabled, name
    run = press_generate(panel)
    assert run.status == "done", run.traceback
    assert panel.result.recipe["pipeline"] == "ClassicalInpaintPipeline"


def test_an_unknown_model_says_so_and_leaves_the_controls_usable(panel):
    panel.controls["model"].value = "nobody/no-such-model"
    assert panel.wait_ready(WAIT)
    assert panel.model_state == "error"
    assert "no twin of it" in panel._model_note.value
    assert not panel.controls["strength"].disabled


def test_every_guide_model_in_the_picker_is_an_inpainting_pipeline(manager, twins_dir):
    offered = model_choices()
    assert CONTROLNET not in offered
    for model in guide_models():
        found = pipeline_parameters(manager, model)
        assert "mask_image" in found.accepted, model
    assert "classical/telea" in offered


def test_every_control_has_a_tooltip(panel):
    panel.crop = True  # the padding slider is off while cropping is: not a pipeline matter
    for name, control in panel.controls.items():
        if control.disabled:
            assert control.tooltip.startswith("Off: "), name
        elif name in TOOLTIPS:
            assert control.tooltip == TOOLTIPS[name], name
        else:
            assert control.tooltip, name
    assert panel.controls["controlnet_conditioning_scale"].tooltip == "Off: turn on ControlNet inpaint to use it."


# -- errors, busy, cancel -------------------------------------------------------------------------------------------


def test_a_pipeline_error_shows_in_the_panel_and_loses_nothing(panel, manager, history, monkeypatch):
    first = press_generate(panel)
    assert first.status == "done"
    mask_before = np.asarray(panel.mask).copy()
    entries_before = history.entries

    def explode(kwargs):
        raise RuntimeError("CUDA error: device-side assert triggered")

    spy_calls(monkeypatch, manager.get(SD_INPAINT), before=explode)
    run = press_generate(panel)

    assert run.status == "failed"
    assert panel.status_is_error
    assert panel.status.startswith("RuntimeError: CUDA error: device-side assert triggered")
    assert "Traceback" not in panel.status
    details = "".join(output.get("text", "") for output in panel.details.outputs)
    assert "Traceback (most recent call last)" in details
    assert panel._details_box.layout.display == "flex"
    assert np.array_equal(np.asarray(panel.mask), mask_before)
    assert history.entries == entries_before
    assert panel.result is not None and panel.result is first.result[0][1], "the previous result stays"
    assert not panel.generate_button.disabled
    assert panel.cancel_button.disabled
    assert not panel.running

    monkeypatch.undo()
    again = press_generate(panel)
    assert again.status == "done"
    assert not panel.status_is_error


def test_a_second_click_while_running_is_refused_with_a_message(panel, manager, monkeypatch):
    entered, release = threading.Event(), threading.Event()

    def hold(kwargs):
        entered.set()
        assert release.wait(WAIT)

    calls = spy_calls(monkeypatch, manager.get(SD_INPAINT), before=hold)
    panel.generate_button.click()
    run = panel.last_run
    assert entered.wait(WAIT)
    seed = panel.seed
    assert panel.running
    assert panel.generate_button.disabled and not panel.cancel_button.disabled
    panel.generate_button.click()  # a double click that reached the kernel before the button turned off
    assert panel.status_is_error
    assert "already running" in panel.status
    assert panel.last_run is run
    assert panel.seed == seed, "the refused click did not roll the running run's seed"
    release.set()
    assert run.wait(WAIT)
    assert run.status == "done"
    assert len(calls) == 1


def test_cancel_button_stops_the_run_and_generate_works_again(panel, manager, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    pipeline = manager.get(SD_INPAINT)
    original = pipeline.unet.forward

    def forward(*args, **kwargs):
        entered.set()
        assert release.wait(WAIT)
        return original(*args, **kwargs)

    monkeypatch.setattr(pipeline.unet, "forward", forward)
    panel.steps = 10
    panel.generate_button.click()
    run = panel.last_run
    assert entered.wait(WAIT)
    panel.cancel_button.click()
    release.set()
    assert run.wait(WAIT)
    assert run.status == "cancelled"
    assert run.steps == 1
    assert "Cancelled after 1 step" in panel.status
    assert not panel.status_is_error
    assert panel.result is None, "nothing was recorded"

    monkeypatch.undo()
    panel.steps = 3
    again = press_generate(panel)
    assert again.status == "done"
    assert again.steps == 3


def test_without_an_image_the_click_explains_what_to_set(manager, history, twins_dir):
    panel = ParameterPanel(manager=manager, history=history)
    try:
        panel.generate_button.click()
        assert panel.status_is_error
        assert "set panel.image and panel.mask" in panel.status
        assert panel.last_run is None
    finally:
        close(panel)


def test_an_invalid_mask_size_is_reported_by_the_run(panel):
    panel.mask = Image.new("L", (32, 32), 255)
    run = press_generate(panel)
    assert run.status == "failed"
    assert "resize the mask" in panel.status


# -- history ---------------------------------------------------------------------------------------------------------


def test_restoring_a_history_entry_restores_values_and_mask_and_repeats_the_result(panel, history):
    panel.controls["strength"].value = 0.8
    panel.controls["prompt"].value = "first"
    panel.controls["crop"].value = True
    panel.controls["padding_mask_crop"].value = 8
    first_mask = panel.mask.copy()
    assert press_generate(panel).status == "done"
    first = panel.result

    panel.controls["strength"].value = 0.5
    panel.controls["prompt"].value = "second"
    panel.controls["crop"].value = False
    panel.mask = Image.new("L", (64, 64), 255)
    assert press_generate(panel).status == "done"

    history.select(0)
    history.restore()
    assert panel.prompt == "first"
    assert panel.strength == 0.8
    assert panel.crop and panel.padding_mask_crop == 8
    assert panel.seed == first.seed and panel.lock_seed
    assert same_pixels(panel.mask, first_mask)
    assert "Restored" in panel.status

    assert press_generate(panel).status == "done"
    assert same_pixels(panel.result.image, first.image), "same settings, mask and seed: the same pixels"


def test_use_as_base_replaces_the_image_and_keeps_the_mask(panel, history):
    assert press_generate(panel).status == "done"
    mask = panel.mask.copy()
    history.use_as_base(0)
    assert same_pixels(panel.image, history[0].image)
    assert same_pixels(panel.mask, mask)


# -- prompt weighting and ControlNet ---------------------------------------------------------------------------------


def test_a_weighted_prompt_runs_as_compel_embeddings(panel, manager, monkeypatch):
    calls = spy_calls(monkeypatch, manager.get(SD_INPAINT))
    panel.controls["prompt"].value = "a red++ boat"
    assert "Compel" in panel._weighting.value
    run = press_generate(panel)
    assert run.status == "done", run.traceback
    assert "prompt" not in calls[-1]
    assert calls[-1]["prompt_embeds"].shape[0] == 1
    assert panel.result.recipe["prompt_weighting"]["prompt"] == "a red++ boat"


def test_compare_plain_and_weighted_side_by_side(panel, history):
    panel.controls["prompt"].value = "a red++ boat"
    panel.controls["compare_weighting"].value = True
    run = press_generate(panel)
    assert run.status == "done", run.traceback
    plain, weighted = panel.results
    assert panel.captions == ["plain", "weighted"]
    assert plain.seed == weighted.seed == panel.seed
    assert plain.request.prompt == "a red++ boat"
    assert weighted.request.prompt_embeds is not None
    assert len(history) == 2


def test_controlnet_inpaint_condition_and_scale(panel, manager, monkeypatch):
    panel.controls["controlnet"].value = True
    assert panel.condition.layout.display == "block", "the condition preview shows at once"
    assert panel.wait_ready(WAIT)
    assert panel.pipeline_name == "StableDiffusionControlNetInpaintPipeline"
    scale = panel.controls["controlnet_conditioning_scale"]
    assert not scale.disabled
    scale.value = 0.6
    calls = spy_calls(monkeypatch, manager.get(SD_INPAINT, controlnet=CONTROLNET))
    run = press_generate(panel)
    assert run.status == "done", run.traceback
    assert calls[-1]["controlnet_conditioning_scale"] == 0.6
    assert calls[-1]["control_image"].equal(make_inpaint_condition(panel.image, panel.mask))
    assert panel.result.recipe["parameters"]["controlnet"] == CONTROLNET

    panel.controls["controlnet"].value = False
    assert panel.wait_ready(WAIT)
    assert scale.disabled
    assert panel.condition.layout.display == "none"


# -- previews and code -----------------------------------------------------------------------------------------------


def test_previews_from_the_engine_reach_the_preview_image(panel, monkeypatch):
    @contextlib.contextmanager
    def tap(pipeline, on_preview, *, total, every=None):
        class Tap:
            def after_step(self, done, total):
                on_preview(done, total, Image.new("RGB", (8, 8), (200, 10, 10)))

        yield None if on_preview is None else Tap()

    monkeypatch.setattr(previews, "tap", tap)
    run = press_generate(panel)
    assert run.status == "done"
    assert run.previews >= 1
    shown = Image.open(io.BytesIO(panel.preview.value))  # JPEG: a few levels off at most
    assert shown.format == "JPEG" and panel.preview.format == "jpeg"
    assert max(abs(a - b) for a, b in zip(shown.getpixel((0, 0))[:3], (200, 10, 10), strict=True)) <= 3


def test_show_code_displays_what_code_for_returns(panel, monkeypatch):
    assert panel.show_code() is None
    assert "Generate first" in panel.status
    assert press_generate(panel).status == "done"
    seen = []
    fake = types.ModuleType("nbinpaint.codegen")
    fake.code_for = lambda result, **kwargs: seen.append(result) or f"# seed {result.seed}\nimport diffusers\n"
    monkeypatch.setitem(sys.modules, "nbinpaint.codegen", fake)
    panel.code_button.click()
    assert seen == [panel.result]
    assert panel.code.value == f"# seed {panel.result.seed}\nimport diffusers\n"
    assert panel.code.layout.display == "block"


def test_show_code_with_the_real_code_generator(panel):
    assert press_generate(panel).status == "done"
    try:
        from nbinpaint.codegen import code_for
    except ImportError:  # not landed yet: the panel says so instead of failing
        assert panel.show_code() is None
        assert "needs nbinpaint.codegen" in panel.status
        return
    assert panel.show_code() == code_for(panel.result)
    assert panel.code.value == code_for(panel.result)


# -- the first hour: model picker, plain reasons, twin default, status, code that follows the result ---------


def test_the_model_picker_groups_checkpoints_fills_and_your_own_repo_id(panel):
    picker = panel.controls["model"]
    labels = [label for label, _value in picker.dropdown.options]
    values = [value for _label, value in picker.dropdown.options]
    kinds = [label.split(" · ")[0] for label in labels[:-1]]
    assert kinds == sorted(kinds, key=["Checkpoint", "Classical fill"].index), "checkpoints first, then fills"
    assert labels[-1] == "Your own repo id…" and values[-1] == CUSTOM
    assert values[:-1] == model_choices()
    sd15 = "Checkpoint · Stable Diffusion 1.5 inpainting · ~2.1 GB, 50 steps (twin: noise)"
    assert sd15 in labels, "friendly, with what it needs, and marked as twin"
    assert "Classical fill · Telea fill" in labels
    assert not any("/" in label for label in labels), "friendly names, not repo ids"

    picker.dropdown.value = "classical/telea"  # chosen by its friendly name in the browser
    assert panel.model == "classical/telea"
    assert picker.custom.layout.display == "none"
    picker.dropdown.value = CUSTOM
    assert picker.custom.layout.display == "flex", "your own repo id reveals the text box"
    assert panel.model == "classical/telea", "nothing typed yet: the model stays"
    picker.custom.value = "  someone/their-inpainting-model "
    assert panel.model == "someone/their-inpainting-model"
    panel.model = SD_INPAINT  # a restored recipe, say
    assert picker.dropdown.value == SD_INPAINT and picker.custom.layout.display == "none"
    panel.model = "another/repo"
    assert picker.dropdown.value == CUSTOM and picker.custom.value == "another/repo"
    assert panel.wait_ready(WAIT)


def test_disabled_controls_are_named_in_one_plain_sentence(panel):
    panel.controls["model"].value = "classical/telea"
    assert panel.wait_ready(WAIT)
    sentence = panel._reasons.value
    assert "Telea fill has no prompts, strength, steps or seed." in sentence
    assert "__call__" not in sentence and "Pipeline" not in sentence
    for name in ("prompt", "negative_prompt", "strength", "steps", "seed"):
        assert panel.controls[name].disabled, name
    assert panel.controls["seed"].tooltip == "Off: a classical fill is deterministic: a seed changes nothing."

    panel.controls["model"].value = KANDINSKY
    assert panel.wait_ready(WAIT)
    assert "Kandinsky 2.2 inpainting has no strength." in panel._reasons.value
    assert "__call__" not in panel._reasons.value
    assert not panel.controls["prompt"].disabled and not panel.controls["seed"].disabled

    panel.controls["model"].value = SD_INPAINT
    assert panel.wait_ready(WAIT)
    assert panel._reasons.value == "", "the SD inpaint checkpoint takes every basic control"


def test_reasons_sentence_names_basic_controls_else_the_advanced_ones():
    reasons = dict.fromkeys(["steps", "guidance_scale", "prompt", "strength", "negative_prompt", "seed"], "why")
    assert reasons_sentence("classical/telea", reasons) == "Telea fill has no prompts, strength, steps or seed."
    assert reasons_sentence("some/repo", {"padding_mask_crop": "why"}) == "some/repo has no crop padding."
    assert reasons_sentence(KANDINSKY, {"strength": "why", "prompt_weighting": "why"}) == (
        "Kandinsky 2.2 inpainting has no strength."
    )
    assert reasons_sentence(SD_INPAINT, {}) == ""


def test_twin_mode_starts_on_a_classical_fill(manager, history, twins_dir, monkeypatch):
    image, mask = make_scene(64)
    panel = ParameterPanel(image, mask, manager=manager, history=history)
    try:
        assert panel.model == TWIN_DEFAULT_MODEL == "classical/telea", "a real picture offline, not twin noise"
        assert panel.controls["model"].dropdown.value == "classical/telea"
    finally:
        close(panel)
    monkeypatch.setenv("NBINPAINT_TWINS", "0")
    assert default_model() == DEFAULT_MODEL, "real checkpoints: the request's own default"


def test_a_fill_reports_no_seed_or_steps_and_the_status_says_where_results_are_saved(manager, twins_dir, tmp_path):
    image, mask = make_scene(64)
    history = History(output=tmp_path / "results")
    panel = ParameterPanel(image, mask, manager=manager, history=history, model="classical/telea")
    try:
        assert panel.wait_ready(WAIT)
        assert f"Results are saved to {tmp_path / 'results'}/" in panel.status
        run = press_generate(panel)
        assert run.status == "done", run.traceback
        assert panel.status.startswith("Done in ")
        done = panel.status.split(" Saved in ")[0]  # (the folder's own name holds "seed")
        assert "step" not in done and "seed" not in done, panel.status
        assert f"Saved in {tmp_path / 'results'}/" in panel.status
        assert history[0].files["result"] in {path.name for path in (tmp_path / "results").iterdir()}
        assert panel.result_view.after is panel.result.image
        assert panel.result_view.caption == "Telea fill"
    finally:
        close(panel)


def test_show_code_follows_each_new_result_and_reproduces_the_second(panel, twins_dir, tmp_path):
    assert press_generate(panel).status == "done"
    first = panel.result
    assert panel.show_code() is not None
    assert press_generate(panel).status == "done"  # unlocked seed: a new picture
    second = panel.result
    assert second.seed != first.seed
    from nbinpaint.codegen import code_for, export

    assert panel.code.value == code_for(second) != code_for(first), "the code on show is the latest result's"

    export(second, tmp_path)  # its image and mask; the script run is the one on show
    (tmp_path / "reproduce.py").write_text(panel.code.value, encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(twins_dir)}
    env.pop("NBINPAINT_TWINS", None)  # the script knows nothing of nbinpaint
    subprocess.run([sys.executable, "reproduce.py"], cwd=tmp_path, env=env, timeout=300, check=True)
    with Image.open(tmp_path / "result.png") as made:
        assert same_pixels(made.convert("RGB"), second.image)
