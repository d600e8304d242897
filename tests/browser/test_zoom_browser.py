"""Zoom and pan on the mask canvas, in a real browser: a stroke drawn at 1x and the same stroke drawn at 3x
(zoomed by real wheel events at a point) land on the same image pixels; space-drag and middle-drag pan
without painting; Fit shows the whole image again.

It opens the mask canvas notebook of `test_canvas_browser` (a 1024x1024 image on a 512x512 canvas), moves
Chromium's mouse, and reads the canvas's state from the kernel after the events.
"""

from __future__ import annotations

import base64
import io
import json
import math

import numpy as np
import pytest
from PIL import Image

from nbinpaint.viewport import WHEEL_STEP
from tests.browser.harness import PANEL, artifacts_dir, run_in_kernel, wait_for_kernel_json, wait_until_still
from tests.browser.test_canvas_browser import BRUSH, distance_to_segment, open_canvas

pytestmark = [pytest.mark.browser, pytest.mark.slow]

IMAGE, SHOWN = 1024, 512
A, B = np.array([440.0, 380.0]), np.array([600.0, 440.0])  # the stroke, in image pixels
P = np.array([512.0, 400.0])  # the image point the wheel zooms about

_STATE = """
def _zoom_state():
    import base64, io, json
    version = canvas.mask_version  # first: a mask read after it is at least that new
    buf = io.BytesIO()
    canvas.mask.save(buf, format="PNG")
    return json.dumps({"zoom": canvas.zoom, "pan": canvas.pan, "version": version, "message": canvas.message,
                       "p": canvas.image_point({"x": %r, "y": %r}),
                       "mask_png": base64.b64encode(buf.getvalue()).decode()})
print(_zoom_state())
"""


def state(page, path: str, until=lambda s: True, at=(0.0, 0.0)) -> dict:
    """The canvas's zoom, pan, version and mask (and the image point under canvas point ``at``)."""
    value = wait_for_kernel_json(page, path, _STATE % (float(at[0]), float(at[1])), until)
    value["mask"] = np.asarray(Image.open(io.BytesIO(base64.b64decode(value.pop("mask_png"))))) > 0
    return value


def to_view(zoom: float, pan: list[float], point: np.ndarray) -> np.ndarray:
    scale = zoom * SHOWN / IMAGE
    return (point - np.asarray(pan)) * scale


def stroke(page, box: dict, a: np.ndarray, b: np.ndarray, button: str = "left") -> None:
    page.mouse.move(box["x"] + a[0], box["y"] + a[1])
    page.mouse.down(button=button)
    page.mouse.move(box["x"] + b[0], box["y"] + b[1], steps=20)
    page.mouse.up(button=button)


def check_capsule(mask: np.ndarray, slack: float, label: str) -> None:
    distance = distance_to_segment(mask.shape, A, B)
    stray, missed = mask & (distance > BRUSH / 2 + slack), ~mask & (distance < BRUSH / 2 - slack)
    assert not stray.any() and not missed.any(), (
        f"{label}: {stray.sum()} painted pixels off the stroke, {missed.sum()} on it not painted"
    )


def screenshot(page, name: str) -> None:
    shot = artifacts_dir() / name
    page.locator(f"{PANEL} .jp-OutputArea-output:has(canvas)").first.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


def test_a_stroke_lands_on_the_same_image_pixels_at_1x_and_3x(page, lab, lab_root):
    path, canvas = open_canvas(page, lab, lab_root, IMAGE, SHOWN, sync=False)
    box = canvas.bounding_box()
    start = state(page, path)
    assert (start["zoom"], start["pan"], start["version"]) == (1.0, [0.0, 0.0], 0)

    # 1x: one canvas pixel is two image pixels
    stroke(page, box, to_view(1, [0, 0], A), to_view(1, [0, 0], B))
    at_1x = state(page, path, until=lambda s: s["version"] == 1)
    check_capsule(at_1x["mask"], 2 * 2, "at 1x")  # within 2 canvas pixels
    screenshot(page, "zoom-1x-stroke.png")
    run_in_kernel(page, path, "canvas.undo()")
    assert not state(page, path, until=lambda s: s["version"] == 2)["mask"].any(), "undo works"

    # zoom to 3x by five wheel events at P (a notch is WHEEL_STEP, so this is ln 3 / ln WHEEL_STEP notches)
    p_view = to_view(1, [0, 0], P)
    box = wait_until_still(canvas)  # the screenshot scrolled the page
    page.mouse.move(box["x"] + p_view[0], box["y"] + p_view[1])
    delta = 100 * math.log(3) / math.log(WHEEL_STEP) / 5
    for _ in range(5):
        page.mouse.wheel(0, -delta)
    zoomed = state(page, path, until=lambda s: abs(s["zoom"] - 3) < 1e-3, at=p_view)
    assert zoomed["zoom"] == pytest.approx(3, abs=1e-3), f"five wheel events gave zoom {zoomed['zoom']}"
    # ipyevents rounds each wheel position to a CSS pixel: P stays within a pixel
    assert np.abs(np.asarray(zoomed["p"]) - P).max() <= 1, f"the wheel zoomed about {zoomed['p']}, not {P}"

    # 3x: the same image points, now 1.5 canvas pixels per image pixel
    a_view, b_view = to_view(zoomed["zoom"], zoomed["pan"], A), to_view(zoomed["zoom"], zoomed["pan"], B)
    assert (a_view > 0).all() and (b_view < SHOWN).all(), "the stroke is in view"
    box = wait_until_still(canvas)
    stroke(page, box, a_view, b_view)
    at_3x = state(page, path, until=lambda s: s["version"] == 3)
    check_capsule(at_3x["mask"], 2 / 1.5 + 0.5, "at 3x")  # within 2 canvas pixels, 1.3 image pixels
    screenshot(page, "zoom-3x-stroke.png")
    differ = at_1x["mask"] ^ at_3x["mask"]
    edge = np.abs(distance_to_segment(differ.shape, A, B) - BRUSH / 2)
    assert (edge[differ] <= 4).all(), "where the two strokes differ, it is at their edge"
    iou = (at_1x["mask"] & at_3x["mask"]).sum() / (at_1x["mask"] | at_3x["mask"]).sum()
    print(f"1x/3x stroke IoU {iou:.3f}, {differ.sum()} pixels differ")
    assert iou >= 0.9

    # space held: a drag pans (100 canvas px left = 66.7 image px) and paints nothing
    before = zoomed["pan"]
    box = wait_until_still(canvas)
    page.mouse.move(box["x"] + 300, box["y"] + 300)
    page.keyboard.down("Space")
    stroke(page, box, np.array([300.0, 300.0]), np.array([200.0, 300.0]))
    page.keyboard.up("Space")
    expected = [before[0] + 100 / 1.5, before[1]]
    panned = state(page, path, until=lambda s: np.allclose(s["pan"], expected, atol=1))
    assert panned["pan"] == pytest.approx(expected, abs=1), "the image followed the pointer"
    assert panned["version"] == 3, "the space drag painted nothing"

    # the middle button pans too
    stroke(page, box, np.array([300.0, 300.0]), np.array([300.0, 240.0]), button="middle")
    expected = [panned["pan"][0], panned["pan"][1] + 60 / 1.5]
    middle = state(page, path, until=lambda s: np.allclose(s["pan"], expected, atol=1))
    assert middle["pan"] == pytest.approx(expected, abs=1)
    assert middle["version"] == 3 and np.array_equal(middle["mask"], at_3x["mask"]), "nothing painted"
    screenshot(page, "zoom-3x-panned.png")

    page.locator(f"{PANEL} button:has-text('Fit')").first.click()
    fit = state(page, path, until=lambda s: s["zoom"] == 1)
    assert (fit["zoom"], fit["pan"]) == (1.0, [0.0, 0.0])
    print(json.dumps({"zoom": zoomed["zoom"], "pan_3x": zoomed["pan"], "after_space": panned["pan"]}))
