"""The canvas's zoom and pan geometry (`nbinpaint.viewport`), without widgets: worked examples, then properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from nbinpaint.masks import display_size
from nbinpaint.viewport import MAX_PIXEL_SIZE, WHEEL_STEP, ImagePyramid, Viewport, render_view, wheel_factor

SETTINGS = settings(max_examples=200, deadline=None)


def test_the_module_docstring_example():
    view = Viewport((2048, 1536), (512, 384))
    assert view.scale == (0.25, 0.25) and view.to_image(10, 20) == (40, 80)
    view = Viewport((2048, 1536), (512, 384), zoom=4, pan=(1000, 600))
    assert view.scale == (1.0, 1.0)
    assert view.to_image(10, 20) == (1010, 620)
    assert view.visible == (1000, 600, 1512, 984)
    deeper = view.zoomed_at(10, 20, 8)
    assert deeper.pan == (1005, 610) and deeper.to_image(10, 20) == (1010, 620)


def test_zoom_one_is_the_fit_mapping_the_canvas_always_used():
    # 1000x750 shown at 768x576: image x = canvas x * 1000 / 768, as before zoom existed
    view = Viewport((1000, 750), display_size((1000, 750), 768))
    assert view.to_image(384, 288) == pytest.approx((500, 375))
    assert view.visible == (0, 0, 1000, 750)


def test_construction_clamps_zoom_and_pan():
    view = Viewport((400, 200), (400, 200), zoom=2, pan=(-50, 1e9))
    assert view.pan == (0, 100), "the view stays inside the image"
    assert Viewport((400, 200), (400, 200), zoom=0.2).zoom == 1, "never below fit"
    assert Viewport((400, 200), (400, 200), zoom=1e6).zoom == MAX_PIXEL_SIZE
    assert Viewport((4000, 2000), (400, 200), zoom=1e6).scale == (MAX_PIXEL_SIZE, MAX_PIXEL_SIZE)
    assert Viewport((400, 200), (400, 200), zoom=1, pan=(30, 30)).pan == (0, 0)
    nan = Viewport((400, 200), (400, 200), zoom=float("nan"), pan=(float("inf"), 5))
    assert nan.zoom == 1 and nan.pan == (0, 0)
    with pytest.raises(ValueError, match="positive"):
        Viewport((0, 10), (10, 10))


def test_panned_by_moves_the_image_with_the_pointer_and_stops_at_the_edge():
    view = Viewport((800, 800), (400, 400), zoom=4, pan=(300, 300))  # 2 canvas px per image px
    moved = view.panned_by(40, -20)  # drag right and up: the image follows, showing more on the left
    assert moved.pan == (280, 310)
    assert view.panned_by(1e6, -1e6).pan == (0, 600)


def test_view_box_covers_the_changed_pixels_and_clips():
    view = Viewport((800, 800), (400, 400), zoom=4, pan=(300, 300))
    assert view.view_box((310, 320, 311, 321)) == (20, 40, 22, 42)
    assert view.view_box((0, 0, 10, 10)) is None, "off view"
    assert view.view_box((250, 250, 310, 310)) == (0, 0, 20, 20)


def test_wheel_factor_one_notch_and_trackpad_deltas():
    assert wheel_factor(-100) == pytest.approx(WHEEL_STEP)
    assert wheel_factor(100) == pytest.approx(1 / WHEEL_STEP)
    assert wheel_factor(-3, delta_mode=1) == pytest.approx(WHEEL_STEP), "three lines are one notch"
    assert wheel_factor(-50) ** 2 == pytest.approx(WHEEL_STEP), "small deltas add up to the same zoom"


def test_render_view_resamples_only_the_visible_crop():
    pixels = np.zeros((64, 64, 3), np.uint8)
    pixels[16:32, 16:32] = 255  # a white square
    view = Viewport((64, 64), (64, 64), zoom=4, pan=(16, 16))
    shown = np.asarray(render_view(Image.fromarray(pixels), view))
    assert shown.shape == (64, 64, 3) and shown.min() == 255, "zoomed onto the square: all white"
    view = Viewport((64, 64), (64, 64), zoom=4, pan=(12, 16))  # 4 image px (16 canvas px) of black on the left
    shown = np.asarray(render_view(Image.fromarray(pixels), view))
    assert shown[:, :16].max() == 0 and shown[:, 16:].min() == 255, "nearest at 4 canvas px per pixel"


def test_a_zoomed_out_view_of_a_large_image_resamples_a_smaller_level():
    ramp = np.tile(np.arange(2048, dtype=np.float32) / 8, (1024, 1))  # smooth, so levels agree
    image = Image.fromarray(np.dstack([ramp] * 3).astype(np.uint8))
    pyramid = ImagePyramid(image)
    view = Viewport((2048, 1024), (512, 256), zoom=1.5, pan=(300, 100))  # 0.375 canvas px per image px
    assert pyramid.level(min(view.scale)).size == (1024, 512), "2 level pixels per canvas pixel"
    assert [level.size for level in pyramid.levels] == [(2048, 1024), (1024, 512)], "built only as needed"
    fast, exact = np.asarray(render_view(pyramid, view), float), np.asarray(render_view(image, view), float)
    assert np.abs(fast - exact).max() <= 1
    assert pyramid.level(4).size == (2048, 1024), "magnified: the full image"


# --- properties ---------------------------------------------------------------------------------------------

image_sizes = st.tuples(st.integers(1, 5000), st.integers(1, 5000))


@st.composite
def viewports(draw):
    size = draw(image_sizes)
    shown = display_size(size, draw(st.integers(16, 1024)))
    zoom = draw(st.floats(0.5, 200))
    pan = (draw(st.floats(-100, 6000)), draw(st.floats(-100, 6000)))
    return Viewport(size, shown, zoom, pan)


def canvas_points(view: Viewport):
    return st.tuples(st.floats(0, view.view_size[0]), st.floats(0, view.view_size[1]))


@SETTINGS
@given(viewports(), st.data())
def test_view_to_image_round_trips(view, data):
    x, y = data.draw(canvas_points(view))
    ix, iy = view.to_image(x, y)
    assert view.to_view(ix, iy) == pytest.approx((x, y), abs=1e-6)
    x0, y0, x1, y1 = view.visible
    assert x0 - 1e-6 <= ix <= x1 + 1e-6 and y0 - 1e-6 <= iy <= y1 + 1e-6


@SETTINGS
@given(viewports())
def test_the_view_always_lies_inside_the_image(view):
    x0, y0, x1, y1 = view.visible
    w, h = view.image_size
    assert 1 <= view.zoom <= view.max_zoom
    assert x0 >= 0 and y0 >= 0
    assert x1 <= w * (1 + 1e-9) and y1 <= h * (1 + 1e-9)
    assert view.to_image(*view.view_size) == pytest.approx((x1, y1))


@SETTINGS
@given(viewports(), st.data(), st.floats(1, 8))
def test_zooming_in_about_a_point_keeps_that_image_point_under_it(view, data, factor):
    x, y = data.draw(canvas_points(view))
    before = view.to_image(x, y)
    after = view.zoomed_at(x, y, view.zoom * factor)
    assert after.zoom == pytest.approx(min(view.zoom * factor, view.max_zoom))
    assert after.to_image(x, y) == pytest.approx(before, abs=1e-6)


@SETTINGS
@given(viewports(), st.data(), st.floats(0.05, 1))
def test_zooming_out_keeps_the_point_unless_the_view_reaches_an_edge(view, data, factor):
    x, y = data.draw(canvas_points(view))
    before = view.to_image(x, y)
    after = view.zoomed_at(x, y, view.zoom * factor)
    w, h = view.image_size
    for axis, limit in ((0, w - w / after.zoom), (1, h - h / after.zoom)):
        at_edge = math.isclose(after.pan[axis], 0, abs_tol=1e-9) or math.isclose(after.pan[axis], limit, abs_tol=1e-6)
        assert at_edge or after.to_image(x, y)[axis] == pytest.approx(before[axis], abs=1e-6)


@SETTINGS
@given(viewports(), st.floats(-500, 500), st.floats(-500, 500))
def test_panning_there_and_back_returns_unless_clamped(view, dx, dy):
    there = view.panned_by(dx, dy)
    assert there.zoom == view.zoom
    target = (view.pan[0] - dx / view.scale[0], view.pan[1] - dy / view.scale[1])
    if there.pan == pytest.approx(target, abs=1e-9):  # not clamped on the way there
        assert there.panned_by(-dx, -dy).pan == pytest.approx(view.pan, abs=1e-6)
