"""nbinpaint.masks: exact results on small fixtures, and properties (hypothesis) of rasteriser and undo."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy.ndimage import binary_dilation
from skimage.draw import ellipse as sk_ellipse
from skimage.morphology import dilation, disk, erosion

from nbinpaint import masks
from nbinpaint.errors import InvalidRequestError, NbinpaintError
from nbinpaint.inputs import mask_array
from nbinpaint.masks import (
    MaskEditor,
    MaskError,
    MaskHistory,
    Stroke,
    display_box,
    display_size,
    display_to_image,
    feather,
    fill_ellipse,
    fill_polygon,
    fill_rectangle,
    grow,
    image_to_display,
    invert,
    magic_wand,
    rasterise_stroke,
    render_overlay,
    shrink,
)


def blank(w: int = 100, h: int = 100) -> np.ndarray:
    return np.zeros((h, w), np.uint8)


def painted(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(first row, last row, first column, last column) of the white pixels."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def random_mask(seed: int, shape=(24, 32), p: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.where(rng.random(shape) < p, 255, 0).astype(np.uint8)


# --- mask_array: any input to uint8 0/255 ---------------------------------------------------------------------


def test_errors_are_project_errors_and_value_errors():
    assert issubclass(MaskError, InvalidRequestError)
    assert issubclass(MaskError, NbinpaintError)
    assert issubclass(MaskError, ValueError)


def test_gray_pil_mask_is_thresholded_at_half():
    gray = Image.fromarray(np.array([[0, 127, 128, 255]], np.uint8), "L")
    assert mask_array(gray).tolist() == [[0, 0, 255, 255]]


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "I", "F", "I;16"])
def test_pil_modes(mode):
    src = np.zeros((4, 6), np.uint8)
    src[1:3, 2:5] = 255
    img = Image.fromarray(src, "L").convert(mode)
    out = mask_array(img)
    assert out.dtype == np.uint8
    assert out.tolist() == src.tolist()


def test_transparent_pixels_count_as_keep():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 255, 255, 255)  # opaque white: repaint
    rgba[0, 1] = (255, 255, 255, 0)  # transparent white (an eraser's trace in some editors): keep
    rgba[1, 0] = (0, 0, 0, 255)
    assert mask_array(Image.fromarray(rgba, "RGBA")).tolist() == [[255, 0], [0, 0]]


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.array([[True, False]]), [[255, 0]]),
        (np.array([[0.49, 0.5]]), [[0, 255]]),  # 0..1 floats
        (np.array([[0, 1]], np.uint8), [[0, 255]]),  # 0/1 integers read as 0..1
        (np.array([[127, 128, 255]], np.int64), [[0, 255, 255]]),  # 0..255
        (np.array([[[[0.0, 1.0]]]], np.float32), [[0, 255]]),  # (1, 1, H, W) as pipelines use
        (np.array([[[255], [0]]], np.uint8), [[255, 0]]),  # (H, W, 1)
        (np.array([[[255, 255, 255], [10, 10, 10]]], np.uint8), [[255, 0]]),  # colour
    ],
)
def test_arrays(array, expected):
    assert mask_array(array).tolist() == expected


def test_tensor_like_objects_are_accepted():
    class FakeTensor:  # what a torch tensor offers: detach().cpu().numpy()
        def detach(self):
            return self

        def cpu(self):
            return self

        def numpy(self):
            return np.array([[0.0, 1.0]], np.float32)

        def __array__(self, dtype=None, copy=None):
            raise AssertionError("must go through .numpy()")

    assert mask_array(FakeTensor()).tolist() == [[0, 255]]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (np.array([[np.nan, 1.0]]), "NaN"),
        (np.zeros((2, 2, 2, 2)), "2-D"),
        (np.array([["a", "b"]]), "numeric"),
        (object(), "file path"),
        (b"not an image at all", "save the mask as a PNG"),
    ],
)
def test_bad_inputs_name_the_fix(value, fragment):
    with pytest.raises(MaskError, match=fragment):
        mask_array(value)


def test_wrong_size_is_refused_with_both_sizes_and_the_fix():
    with pytest.raises(MaskError) as info:
        mask_array(np.zeros((10, 20)), size=(64, 48))
    message = str(info.value)
    assert "20x10" in message and "64x48" in message and "resize" in message


def test_paths_bytes_and_npy(tmp_path):
    src = random_mask(1)
    Image.fromarray(src).save(tmp_path / "m.png")
    assert np.array_equal(mask_array(tmp_path / "m.png"), src)
    assert np.array_equal(mask_array(str(tmp_path / "m.png")), src)
    assert np.array_equal(mask_array((tmp_path / "m.png").read_bytes()), src)
    buf = io.BytesIO()
    np.save(buf, src > 0)
    assert np.array_equal(mask_array(buf.getvalue()), src)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(MaskError, match="No mask file"):
        mask_array(tmp_path / "nope.png")
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(MaskError, match="Could not read"):
        mask_array(tmp_path / "notes.png")


def test_fit_mask_keeps_binary_values():
    out = masks.fit_mask(random_mask(2, (10, 10)), (25, 25))
    assert out.shape == (25, 25)
    assert set(np.unique(out)) <= {0, 255}


# --- display <-> image coordinates --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "max_size", "shown"),
    [
        ((512, 512), 768, (512, 512)),
        ((1024, 1024), 512, (512, 512)),
        ((1024, 768), 512, (512, 384)),
        ((3000, 2000), 768, (768, 512)),
        ((1000, 10), 768, (768, 8)),
    ],
)
def test_display_size(size, max_size, shown):
    assert display_size(size, max_size) == shown


@pytest.mark.parametrize(
    ("size", "shown"),
    [((1024, 1024), (512, 512)), ((1000, 750), (768, 576)), ((3000, 2000), (768, 512)), ((64, 64), (64, 64))],
)
def test_coordinate_mapping_round_trips(size, shown):
    for x, y in [(0, 0), (shown[0], shown[1]), (13.25, 7.5), (shown[0] / 3, shown[1] / 2)]:
        ix, iy = display_to_image(x, y, size, shown)
        assert ix == pytest.approx(x * size[0] / shown[0]) and iy == pytest.approx(y * size[1] / shown[1])
        assert image_to_display(ix, iy, size, shown) == pytest.approx((x, y))
    assert display_to_image(shown[0], shown[1], size, shown) == pytest.approx(size)


def test_display_box_covers_the_image_box():
    # image pixels 10..29 at scale 2 are display pixels 5..14; an odd edge rounds outwards
    assert display_box((10, 10, 30, 31), (100, 100), (50, 50)) == (5, 5, 15, 16)
    assert display_box((-5, 90, 10, 130), (100, 100), (50, 50)) == (0, 45, 5, 50)
    assert display_box((200, 200, 210, 210), (100, 100), (50, 50)) is None


# --- brush strokes ------------------------------------------------------------------------------------------


def test_horizontal_stroke_of_size_20_paints_exactly_the_band():
    mask = blank()
    box = rasterise_stroke(mask, [(10, 50), (50, 50), (90, 50)], size=20)
    on = mask > 0
    # between the end points: exactly rows 40..59 (20 rows centred on y = 50)
    for col in range(10, 90):
        assert np.flatnonzero(on[:, col]).tolist() == list(range(40, 60)), col
    # round caps reach 10 px beyond the end points, and no farther
    assert painted(mask) == (40, 59, 0, 99)
    assert not on[40, 0] and not on[59, 99]  # a cap's corner is outside the disc
    assert on[49, 0] and on[50, 99]
    assert set(np.unique(mask)) == {0, 255}
    x0, y0, x1, y1 = box
    assert x0 <= 0 and y0 <= 40 and x1 >= 100 and y1 >= 60


def test_vertical_stroke_and_odd_size():
    mask = blank()
    rasterise_stroke(mask, [(30, 20), (30, 70)], size=7)
    for row in range(20, 70):
        assert np.flatnonzero(mask[row]).tolist() == list(range(27, 34)), row


@pytest.mark.parametrize("size", [1, 2])
def test_tiny_brush_dabs(size):
    mask = blank(10, 10)
    rasterise_stroke(mask, [(4.2, 5.7)], size=size)
    assert int(mask.sum() // 255) == size * size


def test_eraser_value_clears():
    mask = np.full((40, 40), 255, np.uint8)
    rasterise_stroke(mask, [(0, 20), (40, 20)], size=10, value=0)
    assert np.flatnonzero(mask[:, 20] == 0).tolist() == list(range(15, 25))
    assert mask[:15].all() and mask[25:].all()


def test_stroke_copies_into_the_mask_only_on_flush():
    mask = blank(50, 50)
    stroke = Stroke(mask, 6)
    box = stroke.add(10, 10)
    stroke.add(30, 10)
    assert not mask.any(), "drawing goes to the stroke's own surface first"
    assert stroke.flush() is not None
    assert mask.any()
    assert stroke.flush() is None, "nothing new to copy"
    assert box is not None


def test_stroke_size_must_be_positive():
    with pytest.raises(MaskError, match="at least 1"):
        Stroke(blank(), 0)


# Multiples of 1/64: shifting them by the padding below is exact in floating point, so any difference
# would come from clipping, not from rounding.
coords = st.integers(-80 * 64, 150 * 64).map(lambda v: v / 64)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    w=st.integers(4, 48),
    h=st.integers(4, 48),
    size=st.integers(1, 30),
    points=st.lists(st.tuples(coords, coords), min_size=1, max_size=8),
    value=st.sampled_from([0, 255]),
)
def test_rasteriser_never_writes_outside_the_image(w, h, size, points, value):
    """The box returned lies inside the image and holds every changed pixel, and the image shows the same
    stroke as a padded canvas would: no wrap-around of negative indices, no clipping artefacts. (PIL's
    wide-line polygons may round a border pixel differently once clipped: a 1-px edge tolerance.)"""
    start = 0 if value else 255
    mask = np.full((h, w), start, np.uint8)
    box = rasterise_stroke(mask, points, size, value)
    pad = 200
    big = np.full((h + 2 * pad, w + 2 * pad), start, np.uint8)
    rasterise_stroke(big, [(x + pad, y + pad) for x, y in points], size, value)
    changed, reference = mask != start, big[pad : pad + h, pad : pad + w] != start
    assert not (changed & ~binary_dilation(reference, np.ones((3, 3), bool))).any()
    assert not (reference & ~binary_dilation(changed, np.ones((3, 3), bool))).any()
    if size <= 2:
        assert np.array_equal(changed, reference), "thin strokes (unit dabs) are exact"
    if box is None:
        assert not changed.any()
        return
    x0, y0, x1, y1 = box
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    inside = np.zeros_like(changed)
    inside[y0:y1, x0:x1] = True
    assert not (changed & ~inside).any()


# --- shapes, lasso, wand -------------------------------------------------------------------------------------


def test_rectangle_covers_pixel_centres_inside():
    mask = blank(40, 40)
    assert fill_rectangle(mask, (20, 30), (10, 10)) == (10, 10, 20, 30)
    assert painted(mask) == (10, 29, 10, 19)
    assert int(mask.sum() // 255) == 10 * 20


def test_rectangle_is_clipped_and_empty_rectangles_do_nothing():
    mask = blank(40, 40)
    assert fill_rectangle(mask, (-10, -10), (5, 3)) == (0, 0, 5, 3)
    assert fill_rectangle(mask, (50, 50), (60, 60)) is None
    assert fill_rectangle(mask, (10, 10), (10.2, 20)) is None  # no pixel centre inside
    assert int(mask.sum() // 255) == 15


def test_ellipse_matches_skimage():
    mask = blank(12, 10)
    fill_ellipse(mask, (1, 1), (11, 8))  # centre (6, 4.5), radii 5 and 3.5
    rr, cc = sk_ellipse(4.5 - 0.5, 6 - 0.5, 3.5, 5, shape=mask.shape)  # skimage: pixel centres at integers
    expected = blank(12, 10)
    expected[rr, cc] = 255
    assert np.array_equal(mask, expected)


def test_lasso_square_equals_rectangle_and_triangle_is_filled():
    a, b = blank(30, 30), blank(30, 30)
    fill_polygon(a, [(5, 5), (20, 5), (20, 15), (5, 15)])
    fill_rectangle(b, (5, 5), (20, 15))
    assert np.array_equal(a, b)
    tri = blank(10, 10)
    assert fill_polygon(tri, [(0, 0), (10, 0), (0, 10)]) is not None
    rows, cols = np.mgrid[0:10, 0:10]
    assert (tri[rows + cols < 9] == 255).all()  # centres strictly inside
    assert (tri[rows + cols > 9] == 0).all()  # centres strictly outside


def test_lasso_needs_three_points():
    mask = blank(10, 10)
    assert fill_polygon(mask, [(1, 1), (5, 5)]) is None
    assert not mask.any()


def wand_fixture() -> np.ndarray:
    img = np.zeros((10, 12, 3), np.uint8)
    img[:, :6] = (100, 0, 0)
    img[:, 6:] = (200, 0, 0)
    img[4:6, 9:11] = (100, 0, 0)  # an island of the left colour, not connected to it
    return img


def test_wand_selects_the_connected_same_colour_region():
    region = magic_wand(wand_fixture(), (1.5, 1.5), tolerance=0)
    expected = np.zeros((10, 12), bool)
    expected[:, :6] = True
    assert np.array_equal(region, expected)


def test_wand_tolerance_is_inclusive_per_channel():
    img = np.zeros((3, 10, 3), np.uint8)
    img[:, :, 1] = np.arange(10) * 10  # green ramp 0, 10, ..., 90
    region = magic_wand(img, (0.5, 1.5), tolerance=30)
    assert region.all(axis=0).tolist() == [True] * 4 + [False] * 6
    assert magic_wand(wand_fixture(), (0.5, 0.5), tolerance=100).all()


def test_wand_is_four_connected_and_ignores_seeds_outside():
    img = np.zeros((3, 3, 3), np.uint8)
    img[0, 0] = img[1, 1] = (255, 255, 255)  # touching only diagonally
    assert magic_wand(img, (0.5, 0.5), tolerance=0).sum() == 1
    assert not magic_wand(img, (-1, 0.5), tolerance=255).any()


# --- whole-mask operations ----------------------------------------------------------------------------------


def test_invert():
    mask = random_mask(3)
    assert np.array_equal(invert(mask), np.where(mask > 0, 0, 255))
    assert np.array_equal(invert(invert(mask)), mask)


@pytest.mark.parametrize("radius", [1, 2, 3, 5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grow_and_shrink_equal_morphology_with_a_disc(radius, seed):
    mask = random_mask(seed, p=0.08 if seed else 0.6)
    assert np.array_equal(grow(mask, radius), dilation(mask, disk(radius)))
    assert np.array_equal(shrink(mask, radius), erosion(mask, disk(radius)))


def test_shrink_keeps_a_mask_painted_to_the_border():
    mask = blank(20, 20)
    mask[:, :8] = 255  # painted up to the left edge on purpose
    out = shrink(mask, 3)
    assert out[:, :5].all() and not out[:, 5:].any()


def test_grow_shrink_edge_cases():
    assert not grow(blank(8, 8), 3).any()
    full = np.full((8, 8), 255, np.uint8)
    assert shrink(full, 3).all()
    mask = random_mask(4)
    assert np.array_equal(grow(mask, 0), mask) and np.array_equal(shrink(mask, 0), mask)


def test_feather_is_diffusers_own_blur(monkeypatch):
    from diffusers.image_processor import VaeImageProcessor

    mask = random_mask(5, (40, 40))
    expected = np.asarray(VaeImageProcessor.blur(Image.fromarray(mask), 4))
    assert np.array_equal(feather(mask, 4), expected)
    assert feather(mask, 0) is mask
    calls = []
    original = VaeImageProcessor.blur

    def spy(image, blur_factor=4):
        calls.append(blur_factor)
        return original(image, blur_factor)

    monkeypatch.setattr(VaeImageProcessor, "blur", staticmethod(spy))
    feather(mask, 7)
    assert calls == [7]


@pytest.mark.parametrize(("size", "shown"), [((64, 64), (64, 64)), ((128, 128), (64, 64)), ((100, 75), (77, 58))])
@pytest.mark.parametrize("blur", [0, 3])
def test_overlay_patches_equal_the_whole_overlay(size, shown, blur):
    mask = random_mask(6, (size[1], size[0]), p=0.2)
    mask = grow(mask, 2)
    full, origin = render_overlay(mask, shown, color="#00ff00", opacity=0.5, blur_factor=blur)
    assert origin == (0, 0) and full.shape == (shown[1], shown[0], 4)
    for box in [(0, 0, 10, 10), (13, 7, 40, 31), (shown[0] - 9, shown[1] - 5, shown[0], shown[1])]:
        patch, (x, y) = render_overlay(mask, shown, color="#00ff00", opacity=0.5, blur_factor=blur, box=box)
        assert (x, y) == box[:2]
        region = full[box[1] : box[3], box[0] : box[2]]
        assert np.abs(patch.astype(int) - region.astype(int)).max() <= 1, box


def test_overlay_colour_and_opacity():
    mask = blank(4, 2)
    mask[0] = 255
    rgba, _ = render_overlay(mask, (4, 2), color="#102030", opacity=0.5)
    assert rgba[0, 0].tolist() == [16, 32, 48, 128]
    assert rgba[1, 0, 3] == 0


# --- undo / redo ----------------------------------------------------------------------------------------------


def test_history_undo_redo_and_redo_cleared_by_a_new_change():
    history = MaskHistory(depth=60)
    states = [blank(16, 16)]
    for i in range(55):  # more than 50 steps
        new = states[-1].copy()
        new[i % 16, (i * 7) % 16] ^= 255
        assert history.record(states[-1], new)
        states.append(new)
    current = states[-1]
    for i in range(55):
        current = history.undo(current)
        assert np.array_equal(current, states[-2 - i])
    assert history.undo(current) is None
    current = history.redo(current)
    assert np.array_equal(current, states[1])
    other = current.copy()
    other[0, 0] ^= 255
    history.record(current, other)
    assert not history.can_redo and history.redo(other) is None


def test_history_is_bounded_and_ignores_no_ops():
    history = MaskHistory(depth=50)
    mask = blank(8, 8)
    assert not history.record(mask, mask.copy())
    for i in range(70):
        new = mask.copy()
        new[i % 8, i // 8 % 8] ^= 255
        history.record(mask, new)
        mask = new
    assert len(history) == 50
    with pytest.raises(ValueError, match="at least 1"):
        MaskHistory(0)


def test_history_stores_full_frame_changes_compactly_and_soft_values_exactly():
    history = MaskHistory()
    before = blank(1024, 1024)
    history.record(before, invert(before))
    change = history._undo[-1]
    assert change.packed and change.before.nbytes + change.after.nbytes <= 2 * 1024 * 1024 // 8
    soft = np.arange(64, dtype=np.uint8).reshape(8, 8)
    history.record(blank(8, 8), soft)  # not 0/255: stored raw, restored exactly
    assert np.array_equal(history.undo(soft), blank(8, 8))
    assert np.array_equal(history.redo(blank(8, 8)), soft)


# --- the editor -----------------------------------------------------------------------------------------------


def editor(w: int = 40, h: int = 30) -> MaskEditor:
    return MaskEditor(Image.fromarray(wand_fixture()).resize((w, h), Image.NEAREST))


def test_a_stroke_is_one_change_committed_on_release():
    ed = editor()
    ed.press("brush", 5, 15, brush_size=4)
    ed.drag(20, 15)
    assert ed.version == 0 and ed.mask.any(), "the live mask shows the stroke while drawing"
    box = ed.release(30, 15)
    assert box is not None and ed.version == 1 and len(ed.history) == 1
    assert ed.undo() and not ed.mask.any() and ed.version == 2
    assert ed.redo() and ed.mask.any()


def test_shapes_change_the_mask_only_on_release():
    ed = editor()
    ed.press("rectangle", 2, 2)
    ed.drag(10, 12)
    assert not ed.mask.any() and ed.drawing.points == [(2, 2), (10, 12)]
    assert ed.release(12, 10) == (2, 2, 12, 10)
    assert int(ed.mask.sum() // 255) == 80
    ed.press("ellipse", 20, 2, subtract=False)
    ed.release(30, 12)
    ed.press("rectangle", 0, 0, subtract=True)
    ed.release(40, 6)
    assert not ed.mask[:6].any() and ed.version == 3


def test_lasso_and_wand_through_the_editor():
    ed = editor(12, 10)
    for point in [(1, 1), (5, 1), (5, 5)]:
        if ed.drawing is None:
            ed.press("lasso", *point)
        else:
            ed.drag(*point)
    ed.release(1, 5)
    assert int(ed.mask.sum() // 255) == 16
    ed.clear()
    assert ed.press("wand", 1, 1, tolerance=0) is not None
    assert ed.drawing is None, "the wand acts at once"
    assert ed.mask[:, :6].all() and not ed.mask[:, 6:].any()
    ed.press("wand", 1, 1, tolerance=0, subtract=True)
    assert not ed.mask.any()


def test_eraser_and_cancel():
    ed = editor()
    ed.set_mask(np.full((30, 40), 255, np.uint8))
    ed.press("eraser", 0, 15, brush_size=6)
    ed.drag(40, 15)
    ed.cancel()
    assert ed.mask.all() and ed.drawing is None
    ed.press("eraser", 0, 15, brush_size=6)
    ed.release(40, 15)
    assert not ed.mask[12:18].any() and ed.mask[:12].all()


def test_bad_input_keeps_the_mask():
    ed = editor()
    ed.set_mask(np.full((30, 40), 255, np.uint8))
    version = ed.version
    with pytest.raises(MaskError, match="resize"):
        ed.set_mask(np.zeros((10, 10)))
    with pytest.raises(MaskError, match="Unknown tool"):
        ed.press("spray", 1, 1)
    assert ed.mask.all() and ed.version == version


def test_set_image_keeps_rescales_or_resets():
    ed = editor(40, 30)
    ed.press("rectangle", 0, 0)
    ed.release(20, 30)
    assert ed.set_image(Image.new("RGB", (40, 30))) == "kept" and ed.history.can_undo
    assert ed.set_image(Image.new("RGB", (80, 60))) == "rescaled"
    assert ed.mask.shape == (60, 80) and ed.mask[:, :40].all() and not ed.mask[:, 40:].any()
    assert not ed.history.can_undo, "undo across sizes would not fit"
    assert ed.set_image(Image.new("RGB", (50, 50))) == "reset"
    assert ed.mask.shape == (50, 50) and not ed.mask.any()


OPS = st.one_of(
    st.tuples(
        st.just("stroke"),
        st.sampled_from(["brush", "eraser"]),
        st.integers(1, 9),
        st.lists(st.tuples(st.integers(-5, 45), st.integers(-5, 35)), min_size=1, max_size=5),
    ),
    st.tuples(
        st.just("shape"),
        st.sampled_from(["rectangle", "ellipse", "lasso"]),
        st.booleans(),
        st.lists(st.tuples(st.integers(-5, 45), st.integers(-5, 35)), min_size=2, max_size=5),
    ),
    st.tuples(st.just("wand"), st.integers(0, 39), st.integers(0, 29), st.booleans()),
    st.tuples(st.just("whole"), st.sampled_from(["invert", "clear", "grow", "shrink"]), st.integers(1, 3)),
)


def apply_op(ed: MaskEditor, op) -> None:
    kind = op[0]
    if kind == "stroke":
        _, tool, size, points = op
        ed.press(tool, *points[0], brush_size=size)
        for p in points[1:]:
            ed.drag(*p)
        ed.release()
    elif kind == "shape":
        _, tool, subtract, points = op
        ed.press(tool, *points[0], subtract=subtract)
        for p in points[1:]:
            ed.drag(*p)
        ed.release()
    elif kind == "wand":
        ed.press("wand", op[1], op[2], tolerance=50, subtract=op[3])
    else:
        _, name, n = op
        getattr(ed, name)(*([n] if name in ("grow", "shrink") else []))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(OPS, min_size=1, max_size=12))
def test_undo_restores_every_previous_mask_bit_for_bit(ops):
    ed = editor()
    snapshots = [ed.mask.copy()]
    for op in ops:
        before = ed.version
        apply_op(ed, op)
        if ed.version != before:
            snapshots.append(ed.mask.copy())
    for expected in reversed(snapshots[:-1]):
        assert ed.undo()
        assert np.array_equal(ed.mask, expected)
    assert not ed.undo()
    for expected in snapshots[1:]:
        assert ed.redo()
        assert np.array_equal(ed.mask, expected)
