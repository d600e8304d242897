"""InpaintStudio without a browser: canvas, panel and viewer wired together.

Mouse events are replayed on the canvas as ipycanvas's front end sends them, buttons are clicked, and the
twin pipeline's real ``__call__`` is wrapped to see (and hold) what reaches it. Every wait is bounded.
"""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image

from nbinpaint import chains
from nbinpaint.generation import GenerationRun
from nbinpaint.history import History
from nbinpaint.pipeline_manager import PipelineManager
from nbinpaint.widgets.studio import DEFAULT_SAMPLE, TWIN_BANNER, InpaintStudio, studio
from tests.conftest import make_scene
from tests.test_panel import same_pixels, spy_calls

SD_INPAINT = "runwayml/stable-diffusion-inpainting"
WAIT = 60


@pytest.fixture(scope="module")
def manager(twins_dir) -> PipelineManager:
    """One manager per module, as one kernel has: each autoencoder's preview palette is fitted once."""
    return PipelineManager(device="cpu")


def mouse(widget: InpaintStudio, event: str, x: float, y: float) -> None:
    content = {"event": event, "x": x, "y": y}
    widget.canvas._layers._handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})


def stroke(widget: InpaintStudio, y: float) -> None:
    mouse(widget, "mouse_down", 2, y)
    mouse(widget, "mouse_move", 30, y)
    mouse(widget, "mouse_up", 60, y)


@pytest.fixture
def history() -> History:
    return History(output=False)


@pytest.fixture
def open_studio(manager, history, twins_dir):
    image, mask = make_scene(64)
    widget = InpaintStudio(image, mask, manager=manager, history=history, model=SD_INPAINT, steps=4, prompt="a boat")
    widget.canvas.brush_size = 6
    assert widget.panel.wait_ready(WAIT)
    yield widget
    close(widget)


def close(widget: InpaintStudio) -> None:
    """Close after any model lookup and run have ended: two managers loading at once (one per test here)
    would race inside diffusers' loading, which is not thread-safe across managers."""
    assert widget.panel.wait_ready(WAIT)
    widget.close()
    assert widget.panel.controller.wait(WAIT)


def generate(widget: InpaintStudio):
    widget.panel.generate_button.click()
    run = widget.panel.last_run
    assert run is not None, widget.panel.status
    assert run.wait(timeout=WAIT)
    return run


def test_studio_opens_on_the_sample_when_given_no_image(manager, history, twins_dir):
    from nbinpaint import samples

    widget = studio(manager=manager, history=history)
    try:
        sample = samples.load(DEFAULT_SAMPLE)
        assert same_pixels(widget.canvas.image, sample.image)
        assert same_pixels(widget.canvas.mask, sample.mask)
        assert widget.panel.canvas is widget.canvas
    finally:
        close(widget)


def test_generate_shows_the_result_in_grid_compare_and_history(open_studio, history):
    run = generate(open_studio)
    assert run.status == "done", run.traceback
    result = open_studio.result
    assert open_studio.grid.images == [result.image]
    assert str(result.seed) in open_studio.grid.captions[0]
    assert same_pixels(open_studio.compare.before, open_studio.canvas.image)
    assert open_studio.compare.after is result.image
    assert len(history) == 1
    assert len(open_studio.gallery.grid.images) == 1
    assert not any(button.disabled for button in open_studio.buttons.values())


def test_the_canvas_stays_live_during_a_run_which_uses_the_click_time_mask(open_studio, manager, monkeypatch):
    entered, release = threading.Event(), threading.Event()

    def hold(kwargs):
        entered.set()
        assert release.wait(WAIT)

    calls = spy_calls(monkeypatch, manager.get(SD_INPAINT), before=hold)
    at_click = open_studio.canvas.mask
    version = open_studio.canvas.mask_version
    open_studio.panel.generate_button.click()
    run = open_studio.panel.last_run
    assert entered.wait(WAIT)

    stroke(open_studio, 4)  # drawn while the worker is inside the pipeline call
    assert open_studio.panel.running, "the run is still going"
    assert open_studio.canvas.mask_version == version + 1, "the stroke was handled at once, not after the run"
    assert not same_pixels(open_studio.canvas.mask, at_click)

    release.set()
    assert run.wait(WAIT)
    assert run.status == "done", run.traceback
    assert same_pixels(calls[0]["mask_image"], at_click), "the run used the mask as it was at the click"
    assert same_pixels(open_studio.result.request.mask, at_click)


def test_a_pipeline_error_leaves_mask_and_results_as_they_were(open_studio, manager, history, monkeypatch):
    assert generate(open_studio).status == "done"
    stroke(open_studio, 6)
    mask, shown = open_studio.canvas.mask, list(open_studio.grid.images)

    def fail(kwargs):
        raise RuntimeError("expected all tensors to be on the same device")

    spy_calls(monkeypatch, manager.get(SD_INPAINT), before=fail)
    run = generate(open_studio)
    assert run.status == "failed"
    assert open_studio.panel.status.startswith("RuntimeError: expected all tensors to be on the same device")
    assert same_pixels(open_studio.canvas.mask, mask)
    assert open_studio.grid.images == shown
    assert len(history) == 1


def test_use_as_base_button_replaces_the_image_and_keeps_the_mask(open_studio):
    assert generate(open_studio).status == "done"
    mask = open_studio.canvas.mask
    open_studio.buttons["use_as_base"].click()
    assert same_pixels(open_studio.canvas.image, open_studio.result.image)
    assert same_pixels(open_studio.canvas.mask, mask)
    assert "new base image" in open_studio.panel.status


def test_send_to_image_to_image_runs_the_chain_in_the_background(open_studio, history):
    assert generate(open_studio).status == "done"
    inpainted = open_studio.result
    open_studio.buttons["to_img2img"].click()
    run = open_studio.panel.last_run
    assert run.wait(WAIT)
    assert run.status == "done", run.traceback
    follow_up = open_studio.result
    assert follow_up.recipe["task"] == "img2img"
    assert follow_up.recipe["model"] == chains.SD15
    assert follow_up.recipe["chain"]["stage"] == 2
    assert same_pixels(follow_up.request.image, inpainted.image)
    assert open_studio.grid.images == [follow_up.image]
    assert len(history) == 2


def test_refine_with_the_sdxl_refiner(open_studio):
    assert generate(open_studio).status == "done"
    open_studio.buttons["refine"].click()
    run = open_studio.panel.last_run
    assert run.wait(WAIT)
    assert run.status == "done", run.traceback
    assert open_studio.result.recipe["model"] == chains.SDXL_REFINER
    assert open_studio.result.request.strength == pytest.approx(0.3)
    assert same_pixels(open_studio.result.request.mask, open_studio.canvas.mask)


def test_a_follow_up_reports_each_step_shows_previews_and_stops_on_cancel(open_studio, monkeypatch):
    open_studio.panel.steps = 20
    assert generate(open_studio).status == "done"
    open_studio.buttons["refine"].click()  # strength 0.3 of 20 steps: 6 denoising steps
    run = open_studio.panel.last_run
    assert run.wait(WAIT) and run.status == "done", run.traceback
    assert run.steps == run.total == 6 and run.previews >= 1  # it used to bypass manager.run: 0 steps, no preview

    original = GenerationRun.on_step

    def on_step_then_cancel(self: GenerationRun, step: int, total: int, tensors: object = None) -> None:
        original(self, step, total, tensors)
        self.cancel()  # as a click on Cancel during the first step

    monkeypatch.setattr(GenerationRun, "on_step", on_step_then_cancel)
    open_studio.buttons["to_img2img"].click()
    run = open_studio.panel.last_run
    assert run.wait(WAIT) and run.status == "cancelled", run.traceback
    assert run.steps == 1


def test_an_inpainting_checkpoint_for_img2img_is_explained(open_studio):
    assert generate(open_studio).status == "done"
    open_studio.img2img_model.value = SD_INPAINT
    open_studio.buttons["to_img2img"].click()
    run = open_studio.panel.last_run
    assert run.wait(WAIT)
    assert run.status == "failed"
    assert "inpainting checkpoint" in open_studio.panel.status
    assert chains.SD15 in open_studio.panel.status


def test_gallery_restore_puts_settings_and_mask_back_on_the_canvas(open_studio, history):
    open_studio.panel.controls["prompt"].value = "first"
    first_mask = open_studio.canvas.mask
    assert generate(open_studio).status == "done"
    first = open_studio.result

    open_studio.canvas.clear()
    stroke(open_studio, 10)
    open_studio.panel.controls["prompt"].value = "second"
    assert generate(open_studio).status == "done"

    history.select(0)  # as a click on the gallery's first thumbnail does
    open_studio.gallery.buttons["restore"].click()
    assert open_studio.panel.prompt == "first"
    assert open_studio.panel.seed == first.seed
    assert same_pixels(open_studio.canvas.mask, first_mask)
    assert open_studio.canvas.editor.history.can_undo, "restoring the mask is one undoable step"


def test_gallery_to_img2img_runs_from_the_chosen_entry(open_studio, history):
    assert generate(open_studio).status == "done"
    history.select(0)
    open_studio.gallery.buttons["send_to_img2img"].click()
    run = open_studio.panel.last_run
    assert run.wait(WAIT)
    assert run.status == "done", run.traceback
    assert open_studio.result.recipe["task"] == "img2img"
    assert same_pixels(open_studio.result.request.image, history[0].image)


def test_image_from_a_path(manager, history, twins_dir, tmp_path):
    image, _ = make_scene(64)
    path = tmp_path / "base.png"
    image.save(path)
    widget = studio(str(path), manager=manager, history=history)
    try:
        assert same_pixels(widget.canvas.image, image)
        assert np.asarray(widget.canvas.mask).max() == 0, "no mask given: an empty one to paint on"
        assert isinstance(widget.canvas.image, Image.Image)
    finally:
        close(widget)


def test_the_widgets_package_names_each_widget():
    import nbinpaint.widgets as package
    from nbinpaint.widgets.panel import ParameterPanel

    assert package.InpaintStudio is InpaintStudio
    assert package.ParameterPanel is ParameterPanel
    assert set(package.__all__) <= set(dir(package))


# -- the first hour: twin mode said, the latest result large beside the canvas ------------------------------


def test_twin_mode_shows_the_banner_and_captions_twin_results(open_studio):
    assert open_studio.banner.layout.display != "none"
    assert "Twin mode:</b> pictures are noise from random weights; classical fills are real." in (
        open_studio.banner.value
    )
    assert TWIN_BANNER == "Twin mode: pictures are noise from random weights; classical fills are real."
    assert generate(open_studio).status == "done"
    assert open_studio.result.recipe["twin"]
    assert "twin" in open_studio.grid.captions[0]
    assert "twin" in open_studio.panel.result_view.caption
    assert "a twin" in open_studio.panel.status


def test_without_twin_mode_there_is_no_banner(manager, history, twins_dir, monkeypatch):
    monkeypatch.setenv("NBINPAINT_TWINS", "0")
    image, mask = make_scene(64)
    widget = InpaintStudio(image, mask, manager=manager, history=history, model="classical/telea")
    try:
        assert widget.banner.layout.display == "none"
        assert not any("(twin" in label for label, _ in widget.panel.controls["model"].dropdown.options)
    finally:
        close(widget)


def test_the_studio_opens_on_a_classical_fill_in_twin_mode(manager, history, twins_dir):
    widget = studio(manager=manager, history=history)
    try:
        assert widget.panel.model == "classical/telea"
        assert widget.panel.wait_ready(WAIT)
        assert "Telea fill has no prompts" in widget.panel._reasons.value
        run = generate(widget)
        assert run.status == "done", run.traceback
        assert not widget.result.recipe["twin"], "a real fill: no twin mark"
        assert widget.grid.captions == ["Telea fill"]
    finally:
        close(widget)


def test_the_latest_result_is_shown_about_canvas_size_with_a_before_toggle(manager, history, twins_dir):
    from nbinpaint import samples

    sample = samples.load("chelsea")
    widget = InpaintStudio(sample.image, sample.mask, manager=manager, history=history, model="classical/telea")
    try:
        view = widget.panel.result_view
        canvas_w, canvas_h = widget.canvas.display_size
        assert view.size[0] >= canvas_w / 2 and view.size[1] >= canvas_h / 2, "the box is reserved before a run"
        reserved = view.size
        assert generate(widget).status == "done"
        assert view.after is widget.result.image and view.size == reserved, "nothing moves when the result comes"
        shown = Image.open(io.BytesIO(view.image.value))
        assert shown.size == view.size and view.image.layout.display == "block"
        view.toggle.value = "before"
        before = Image.open(io.BytesIO(view.image.value))
        assert not np.array_equal(np.asarray(before), np.asarray(shown)), "Before shows the base image"
        assert same_pixels(view.before, widget.canvas.image)
        assert widget.panel.run_box in widget.panel.children
        assert widget.panel.children.index(widget.panel.run_box) < widget.panel.children.index(widget.panel.advanced)
        assert widget.panel.advanced.selected_index is None, "the advanced controls start folded"
    finally:
        close(widget)
