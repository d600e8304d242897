"""Click-to-segment on the twin SAM, offline: the function, the manager's accounting, errors, the Segment tool."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import nbinpaint
from nbinpaint.errors import InvalidRequestError, MaskError, ModelLoadError
from nbinpaint.masks import MaskEditor
from nbinpaint.pipeline_manager import PipelineManager
from nbinpaint.remote import RemoteManager
from nbinpaint.segmentation import segment_code
from nbinpaint.segmenter import DEFAULT_SEGMENTER, Proposal, Segmenter, check_points
from nbinpaint.widgets.canvas import MaskCanvas
from nbinpaint.widgets.segment_tool import SegmentClicks, composite

SAM = DEFAULT_SEGMENTER
SD_INPAINT = "runwayml/stable-diffusion-inpainting"


@pytest.fixture
def photo() -> Image.Image:
    """A non-square picture (96x64): the mask must come back at this size, not SAM's 1024 or 256."""
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    pixels[16:48, 24:72] = (200, 40, 40)
    return Image.fromarray(pixels, "RGB")


def plain_transformers_mask(image: Image.Image, points: list, labels: list) -> np.ndarray:
    """What the Segment tool's "show code" amounts to: transformers' own SAM recipe, best IoU of three."""
    from transformers import SamModel, SamProcessor

    model = SamModel.from_pretrained(SAM)
    processor = SamProcessor.from_pretrained(SAM)
    inputs = processor(images=image, input_points=[[points]], input_labels=[[labels]], return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs, multimask_output=True)
    masks = processor.image_processor.post_process_masks(
        outputs.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"]
    )
    best = int(outputs.iou_scores[0, 0].argmax())
    return masks[0][0, best].numpy()


# --- nbinpaint.segment --------------------------------------------------------------------------------------------


def test_a_click_gives_a_mask_of_the_image_size_as_plain_transformers_does(manager, photo, twins_dir):
    mask = nbinpaint.segment(photo, [(48, 32)], manager=manager)
    assert mask.mode == "L" and mask.size == photo.size
    values = np.asarray(mask)
    assert set(np.unique(values)) <= {0, 255}
    assert 0 < (values > 0).mean() < 1, "the twin proposes part of the image, not all or nothing"
    np.testing.assert_array_equal(values > 0, plain_transformers_mask(photo, [[48, 32]], [1]))


def test_the_best_of_three_is_chosen_and_outside_points_change_the_proposal(manager, photo, twins_dir):
    segmenter = manager.segmenter(SAM)
    one = segmenter.predict(photo, [(48, 32)])
    assert len(one.scores) == 3 and one.score == max(one.scores) and one.scores[one.chosen] == one.score
    two = segmenter.predict(photo, [(48, 32), (5, 5)], [1, 0])
    both_inside = segmenter.predict(photo, [(48, 32), (5, 5)], [1, 1])
    assert not np.array_equal(one.mask, two.mask) and not np.array_equal(two.mask, both_inside.mask)
    np.testing.assert_array_equal(two.mask, plain_transformers_mask(photo, [[48, 32], [5, 5]], [1, 0]))


def test_the_image_embedding_is_computed_once_per_image(manager, photo, twins_dir, monkeypatch):
    segmenter = manager.segmenter(SAM)
    calls = []
    original = segmenter.model.get_image_embeddings
    monkeypatch.setattr(segmenter.model, "get_image_embeddings", lambda *a, **k: calls.append(1) or original(*a, **k))
    segmenter.predict(photo, [(10, 10)])
    segmenter.predict(photo, [(10, 10), (50, 30)], [1, 1])
    assert len(calls) == 1
    segmenter.predict(photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT), [(10, 10)])
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("points", "labels", "match"),
    [
        ([(96, 10)], None, r"point 0 at \(96, 10\) lies outside the image: .* 0 <= x < 96 and 0 <= y < 64"),
        ([(10, 10), (-1, 5)], None, r"point 1 at \(-1, 5\) lies outside"),
        ([(10, float("nan"))], None, "lies outside"),
        ([(1, 2, 3)], None, "cannot be read as a list of"),
        ("here", None, "are not numbers"),
        ([], None, "cannot be read as a list of"),
        ([(10, 10)], [1, 0], "2 label.* for 1 point"),
        ([(10, 10)], [2], "each label is 1 .* or 0"),
    ],
)
def test_bad_points_are_refused_before_anything_loads(manager, photo, points, labels, match):
    with pytest.raises(InvalidRequestError, match=match):
        nbinpaint.segment(photo, points, labels, manager=manager)
    assert manager.status().rows == []


def test_one_point_may_be_given_alone_and_labels_default_to_inside():
    points, labels = check_points((3, 4), None, (10, 10))
    assert points.tolist() == [[3.0, 4.0]] and labels.tolist() == [1]


# --- the manager --------------------------------------------------------------------------------------------------


def test_the_manager_caches_counts_and_lists_the_segmenter(manager, photo, twins_dir):
    segmenter = manager.segmenter(SAM)
    assert isinstance(segmenter, Segmenter) and manager.segmenter(SAM) is segmenter
    assert type(segmenter.model).__name__ == "SamModel" and type(segmenter.processor).__name__ == "SamProcessor"
    assert segmenter.device == "cpu" and segmenter.dtype == torch.float32
    nbinpaint.segment(photo, [(20, 20)], manager=manager)
    (row,) = manager.status().rows
    assert row["model"] == SAM and row["tasks"] == ["segment"] and row["twin"] and row["runs"] == 1
    weights = sum(p.numel() * p.element_size() for p in segmenter.model.parameters())
    assert row["bytes"] >= weights > 0 and manager.resident_bytes() == row["bytes"]
    assert manager.release(SAM)["after"] == 0
    assert manager.status().rows == []


def test_the_segmenter_shares_the_pipelines_memory_budget(twins_dir):
    manager = PipelineManager(device="cpu", memory_budget=0)  # keep nothing idle: each load evicts the last
    manager.get(SD_INPAINT)
    manager.segmenter(SAM)
    assert [row["model"] for row in manager.status().rows] == [SAM]
    manager.get(SD_INPAINT)
    assert [row["model"] for row in manager.status().rows] == [SD_INPAINT]


def test_a_segmenter_in_use_is_pinned_and_locked_like_a_pipeline(manager, photo, twins_dir, monkeypatch):
    segmenter = manager.segmenter(SAM)
    seen = []
    real = segmenter.model.forward

    def forward(*args, **kwargs):
        (checkpoint,) = manager._checkpoints.values()
        seen.append((checkpoint.pins, checkpoint.lock._is_owned()))
        return real(*args, **kwargs)

    monkeypatch.setattr(segmenter.model, "forward", forward)
    segmenter.predict(photo, [(20, 20)])
    assert seen == [(1, True)]


@pytest.mark.parametrize("offload", ["model", "sequential"])
def test_offload_gives_the_same_mask(twins_dir, photo, offload):
    plain = PipelineManager(device="cpu").segmenter(SAM).predict(photo, [(30, 20)])
    manager = PipelineManager(device="cpu")
    manager.offload = offload  # as on a GPU machine (on a CPU set_offload is a no-op); "cpu" plays the device
    segmenter = manager.segmenter(SAM)
    offloaded = segmenter.predict(photo, [(30, 20)])
    np.testing.assert_array_equal(offloaded.mask, plain.mask)
    assert segmenter._offload == offload and manager._checkpoints[(SAM, torch.float32)].hooked is segmenter
    segmenter.remove_all_hooks()
    assert segmenter._offload == "none"


def test_load_errors_name_the_fix(manager, twins_dir):
    with pytest.raises(ModelLoadError, match="diffusers pipeline, not a Segment Anything model"):
        manager.segmenter(SD_INPAINT)
    with pytest.raises(ModelLoadError, match="twin mode is on and there is no twin of it"):
        manager.segmenter("someone/no-such-sam")
    manager.get(SD_INPAINT)
    with pytest.raises(ModelLoadError, match="loaded as a diffusers pipeline"):
        manager.segmenter(SD_INPAINT)
    assert [row["model"] for row in manager.status().rows] == [SD_INPAINT]


def test_a_workshop_manager_says_segmenting_runs_locally(photo):
    remote = RemoteManager("http://127.0.0.1:9", "token")
    with pytest.raises(ModelLoadError, match=r"runs in this kernel only.*manager=nbinpaint.PipelineManager\(\)"):
        nbinpaint.segment(photo, [(5, 5)], manager=remote)


# --- the Segment tool ---------------------------------------------------------------------------------------------


def fake_proposal(image: Image.Image, points: np.ndarray, labels: np.ndarray) -> Proposal:
    """A stand-in for SAM: the box around the inside points, grown by 4 pixels."""
    inside = points[labels == 1]
    mask = np.zeros((image.size[1], image.size[0]), bool)
    (x0, y0), (x1, y1) = inside.min(axis=0).astype(int) - 4, inside.max(axis=0).astype(int) + 5
    mask[max(y0, 0) : y1, max(x0, 0) : x1] = True
    return Proposal(mask, 0.5, (0.5, 0.1, 0.2), 0)


def test_clicks_accept_as_one_undo_step_and_undo(photo):
    editor = MaskEditor(photo)
    clicks = SegmentClicks(fake_proposal)
    clicks.add(editor.image, 10, 10)
    clicks.add(editor.image, 30, 20)
    clicks.add(editor.image, 60, 60, inside=False)
    assert clicks.labels == [1, 1, 0] and clicks.proposal.mask[8:25, 8:35].all()
    assert editor.committed_mask.max() == 0, "a proposal is not the mask until accepted"
    proposed = clicks.proposal.mask
    assert clicks.accept(editor)
    np.testing.assert_array_equal(editor.committed_mask, np.where(proposed, 255, 0))
    assert clicks.points == [] and clicks.proposal is None
    assert editor.undo() and editor.committed_mask.max() == 0
    assert editor.redo() and (editor.committed_mask > 0).sum() == proposed.sum()


def test_subtract_removes_the_proposal_and_nothing_to_accept_says_what_to_do(photo):
    editor = MaskEditor(photo, np.full((64, 96), 255, np.uint8))
    clicks = SegmentClicks(fake_proposal)
    with pytest.raises(MaskError, match="click inside an object"):
        clicks.accept(editor)
    clicks.add(photo, 40, 30)
    with pytest.raises(MaskError, match="image changed"):  # points clicked on another picture
        clicks.accept(editor)
    clicks.add(editor.image, 40, 30)
    clicks.accept(editor, subtract=True)
    assert editor.committed_mask[30, 40] == 0 and editor.committed_mask[0, 0] == 255


def test_a_failed_click_changes_nothing(photo):
    clicks = SegmentClicks(fake_proposal)
    clicks.add(photo, 10, 10)
    with pytest.raises(InvalidRequestError, match="outside the image"):
        clicks.add(photo, 200, 10)
    wrong = SegmentClicks(lambda image, points, labels: Proposal(np.zeros((4, 4), bool), 0.0, (0.0,), 0))
    with pytest.raises(MaskError, match="at the image's size"):
        wrong.add(photo, 10, 10)
    assert clicks.points == [(10.0, 10.0)] and wrong.points == [] and wrong.proposal is None


def test_composite_lays_one_layer_over_another():
    under = np.array([[[255, 0, 0, 255], [255, 0, 0, 128], [0, 0, 0, 0]]], np.uint8)
    over = np.array([[[0, 0, 255, 255], [0, 0, 255, 0], [0, 255, 0, 128]]], np.uint8)
    assert composite(under, over).tolist() == [[[0, 0, 255, 255], [255, 0, 0, 128], [0, 255, 0, 128]]]


def test_the_canvas_segment_tool_proposes_accepts_and_undoes(manager, twins_dir):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8))
    canvas = MaskCanvas(image, max_display_size=150)  # shown at half size: clicks map to image pixels
    canvas.segment_tool.manager = manager
    assert canvas.segment_tool.bar.layout.display == "none"
    canvas.tool = "segment"
    assert canvas.segment_tool.bar.layout.display == "flex"
    tool = canvas.segment_tool
    # The DOM's mousedown: CSS pixels in a 150x100 box (as shown 1:1), Shift up; display (50, 40) is image (100, 80).
    press = {"type": "mousedown", "button": 0, "shiftKey": False, "altKey": False, "relativeX": 50, "relativeY": 40}
    press.update(boundingRectWidth=150, boundingRectHeight=100)
    canvas._on_mouse_down(50, 40)  # ipycanvas' event of the same click: ignored by the Segment tool
    tool._on_mousedown(press)
    canvas._on_mouse_up(50, 40)
    assert tool.clicks.points == [(100.0, 80.0)] and canvas.editor.drawing is None
    proposal = tool.clicks.proposal
    assert proposal.mask.shape == (200, 300) and "Proposal from 1 point" in canvas.message
    assert canvas.mask_version == 0 and canvas.mask_array.max() == 0
    shown = canvas.display_size
    rgba = np.zeros((shown[1], shown[0], 4), np.uint8)
    assert (tool.overlay(rgba, shown, None)[..., 3] > 0).any(), "the proposal is drawn over the overlay"

    tool._on_mousedown({**press, "shiftKey": True, "relativeX": 20, "relativeY": 20, "boundingRectWidth": 300})
    assert tool.clicks.labels == [1, 0], "Shift-click marks a point outside the object"
    assert tool.clicks.points[1] == (20.0, 40.0), "a DOM box twice the canvas's width halves x"
    tool._on_mousedown({**press, "button": 2})
    assert len(tool.clicks.points) == 2, "other buttons do nothing"

    proposed = tool.clicks.proposal.mask
    tool._accept.click()
    assert canvas.mask_version == 1 and "Accepted the proposal" in canvas.message
    np.testing.assert_array_equal(canvas.mask_array > 0, proposed)
    expected = manager.segmenter(SAM).predict(image, [(100, 80), (20, 40)], [1, 0]).mask
    np.testing.assert_array_equal(proposed, expected)
    assert proposed.any() and tool.clicks.points == []
    canvas.undo()
    assert canvas.mask_version == 2 and canvas.mask_array.max() == 0
    canvas.redo()
    assert (canvas.mask_array > 0).sum() == proposed.sum()


def test_the_canvas_shows_a_click_outside_the_image_and_clears_points_on_leaving_the_tool(manager, twins_dir):
    canvas = MaskCanvas(Image.new("RGB", (80, 60), "gray"))
    canvas.segment_tool.manager = manager
    canvas.tool = "segment"
    press = {"type": "mousedown", "button": 0, "relativeX": 85, "relativeY": 10}
    press.update(boundingRectWidth=80, boundingRectHeight=60)
    canvas.segment_tool._on_mousedown(press)
    assert "lies outside the image" in canvas.message and canvas.segment_tool.clicks.points == []
    canvas.segment_tool._on_mousedown({**press, "relativeX": 40, "relativeY": 30})
    assert canvas.segment_tool.clicks.points
    canvas.segment_tool._accept.click()  # then nothing is left to accept
    canvas.segment_tool._accept.click()
    assert "There is no proposal to accept" in canvas.message
    canvas.segment_tool.click(40, 30)
    canvas.tool = "brush"
    version = canvas.mask_version
    canvas.segment_tool._on_mousedown({**press, "relativeX": 40, "relativeY": 30})
    canvas._on_mouse_down(40, 30)
    canvas._on_mouse_up(40, 30)
    assert canvas.mask_version == version + 1, "the brush paints; the Segment tool's event is ignored"
    assert canvas.segment_tool.clicks.points == [] and canvas.segment_tool.bar.layout.display == "none"


def test_show_code_is_a_plain_transformers_script_giving_the_same_mask(
    manager, photo, twins_dir, tmp_path, monkeypatch
):
    points, labels = [(48.5, 32.0), (5, 5)], [1, 0]
    code = segment_code(points, labels, image="photo.png")
    assert "nbinpaint" not in code and "SamModel.from_pretrained('facebook/sam-vit-base')" in code
    photo.save(tmp_path / "photo.png")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "segment_code", "exec"), {})
    written = np.asarray(Image.open(tmp_path / "mask.png"))
    np.testing.assert_array_equal(written, np.asarray(nbinpaint.segment(photo, points, labels, manager=manager)))
    with pytest.raises(InvalidRequestError, match="each label is 1"):
        segment_code(points, [1, 5])
    with pytest.raises(InvalidRequestError, match="model must be a string"):
        segment_code(points, model=["__import__('os')"])


def test_the_tool_shows_its_code_and_greys_out_with_the_reason_where_it_cannot_segment(manager, photo, twins_dir):
    canvas = MaskCanvas(photo)
    tool = canvas.segment_tool
    tool.manager = RemoteManager("http://127.0.0.1:9", "token")
    canvas.tool = "segment"
    assert tool._accept.disabled and tool._mode.disabled and "unavailable" in tool._note.value
    assert canvas.message.startswith("click-to-segment") and "runs in this kernel only" in canvas.message
    canvas.tool = "brush"
    tool.manager = manager
    canvas.tool = "segment"
    assert not tool._accept.disabled and tool._note.value == "" and "Click the object" in canvas.message
    tool._code.click()
    assert "Click the object first" in canvas.message and tool.code_view.value == ""
    tool.click(48, 32)
    tool._code.click()
    assert "input_points=[[points]]" in tool.code_view.value and "[[48.0, 32.0]]" in tool.code_view.value
