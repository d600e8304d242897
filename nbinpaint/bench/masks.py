"""Benchmark rows for the mask canvas: stroke rasterising, feather preview, overlay, browser round trip."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from nbinpaint.bench.common import Skip, on_finish, row, timed


def _stroke_points(n: int = 500, size: int = 1024) -> list[tuple[float, float]]:
    # A wavy left-to-right drag, as a hand makes it: about 1.6 px between points.
    t = np.linspace(0.0, 1.0, n)
    return list(zip((0.1 + 0.8 * t) * size, (0.5 + 0.3 * np.sin(12 * t)) * size, strict=True))


def _mask_1024() -> np.ndarray:
    from nbinpaint.masks import rasterise_stroke

    mask = np.zeros((1024, 1024), np.uint8)
    rasterise_stroke(mask, _stroke_points(), 64)
    return mask


# --- rows ---------------------------------------------------------------------------------------------------


@row("stroke_500pt_1024", "rasterise a 500-point stroke (brush 32) into a 1024x1024 mask", "< 5 ms")
def stroke_500pt_1024(repeat: int) -> list[float]:
    from nbinpaint.masks import rasterise_stroke

    points, mask = _stroke_points(), np.zeros((1024, 1024), np.uint8)
    return timed(lambda: rasterise_stroke(mask, points, 32), repeat, setup=lambda: mask.fill(0))


@row("editor_stroke_500pt_1024", "same stroke through MaskEditor press/drag/release, undo step included")
def editor_stroke_500pt_1024(repeat: int) -> list[float]:
    from PIL import Image

    from nbinpaint.masks import MaskEditor

    points = _stroke_points()
    editor = MaskEditor(Image.new("RGB", (1024, 1024)))

    def stroke() -> None:
        editor.press("brush", *points[0], brush_size=32)
        for x, y in points[1:]:
            editor.drag(x, y)
        editor.release()

    return timed(stroke, repeat, setup=editor.clear)


def _drag_canvas() -> tuple[Any, list[tuple[float, float]]]:
    from PIL import Image

    from nbinpaint.widgets.canvas import MaskCanvas

    canvas = MaskCanvas(Image.new("RGB", (1024, 1024)), brush_size=32)  # shown at 768
    return canvas, [(x * 0.75, y * 0.75) for x, y in _stroke_points()]


def _mouse_moves(repeat: int, *, redraw: bool) -> list[float]:
    canvas, points = _drag_canvas()
    canvas._on_mouse_down(*points[0])
    samples = []
    for i in range(repeat):
        x, y = points[1 + i % (len(points) - 1)]
        canvas._last_redraw = float("-inf") if redraw else time.monotonic()
        start = time.perf_counter()
        canvas._on_mouse_move(x, y)
        samples.append(time.perf_counter() - start)
    canvas._on_mouse_up(*points[-1])
    return samples


@row("mouse_move_throttled", "kernel cost of a mouse-move during a drag, between redraws (1024 image)")
def mouse_move_throttled(repeat: int) -> list[float]:
    return _mouse_moves(repeat, redraw=False)


@row("mouse_move_redraw", "kernel cost of a mouse-move that redraws (at most every 30 ms): patch + PNG + send")
def mouse_move_redraw(repeat: int) -> list[float]:
    return _mouse_moves(repeat, redraw=True)


@row("feather_1024_bf33", "VaeImageProcessor.blur(mask, 33) on a 1024x1024 mask (the feather preview's core)")
def feather_1024(repeat: int) -> list[float]:
    from nbinpaint.masks import feather

    mask = _mask_1024()
    feather(mask, 33)  # import diffusers outside the timing
    return timed(lambda: feather(mask, 33), repeat)


@row("overlay_1024_to_768_bf33", "feather preview overlay: blur, scale 1024 -> 768, RGBA (whole canvas)")
def overlay_1024(repeat: int) -> list[float]:
    from nbinpaint.masks import render_overlay

    mask = _mask_1024()
    render_overlay(mask, (768, 768), blur_factor=33)
    return timed(lambda: render_overlay(mask, (768, 768), blur_factor=33), repeat)


@row("overlay_1024_to_768", "overlay without feather: scale 1024 -> 768, RGBA (whole canvas)")
def overlay_1024_plain(repeat: int) -> list[float]:
    from nbinpaint.masks import render_overlay

    mask = _mask_1024()
    return timed(lambda: render_overlay(mask, (768, 768)), repeat)


class _Lab:
    """One JupyterLab server and Chromium shared by the browser rows, closed when the rows are done."""

    def __init__(self) -> None:
        import tempfile

        from playwright.sync_api import sync_playwright

        self.harness = _browser_harness()
        reason = self.harness.missing_browser()
        if reason:
            raise Skip(reason)
        self._tmp = tempfile.TemporaryDirectory()
        self.root = Path(self._tmp.name)
        self._playwright = sync_playwright().start()
        self.lab = self.harness.LabServer(self.root).start()
        self.browser = self.harness.launch_chromium(self._playwright)
        on_finish(self.close)

    def close(self) -> None:
        for step in (self.browser.close, self.lab.stop, self._playwright.stop, self._tmp.cleanup):
            try:
                step()
            except Exception:  # closing is best effort: one failure must not keep the rest open
                continue


_LAB: list[_Lab] = []


def _lab() -> _Lab:
    if not _LAB:
        _LAB.append(_Lab())
        on_finish(_LAB.clear)
    return _LAB[0]


def _mouse_up_to_overlay(size: int, repeat: int) -> list[float]:
    lab = _lab()
    harness = lab.harness
    shown = min(size, 768)
    notebook = harness.REPO_ROOT / "tests" / "browser" / "notebooks" / "mask_canvas.ipynb"
    page = lab.browser.new_page(viewport={"width": 1280, "height": 1100})
    try:
        path = harness.copy_notebook(
            notebook,
            lab.root,
            name=f"overlay_{size}.ipynb",
            parameters=f"IMAGE_SIZE = {size}\nMAX_DISPLAY = 768\nSYNC_OVERLAY_PIXELS = False",
        )
        harness.open_notebook(page, lab.lab, path)
        harness.run_all_cells(page, path)
        harness.wait_for_widget(page)
        n = max(3, min(repeat, 9))
        ys = np.linspace(0.05, 0.95, n) * shown
        samples = harness.overlay_latency_ms(page, [(0.1 * shown, y, 0.3 * shown, y) for y in ys])
    finally:
        page.close()
        lab.lab.delete_sessions()
    if any(s is None for s in samples):
        raise RuntimeError(f"the overlay did not update after some mouse-ups: {samples}")
    return [s / 1000 for s in samples]


@row("browser_mouse_up_to_overlay_512", "mouse-up to updated overlay in Chromium, 512x512 image (JupyterLab)")
def browser_mouse_up_to_overlay_512(repeat: int) -> list[float]:
    return _mouse_up_to_overlay(512, repeat)


@row("browser_mouse_up_to_overlay_1024", "the same, 1024x1024 image shown at 768: the canvas-kernel round trip")
def browser_mouse_up_to_overlay_1024(repeat: int) -> list[float]:
    return _mouse_up_to_overlay(1024, repeat)


def _browser_harness() -> Any:
    # The harness lives with the browser tests (tests/browser/harness.py): available in a source checkout.
    repo = Path(__file__).resolve().parents[2]
    if not (repo / "tests" / "browser" / "harness.py").exists():
        raise Skip("needs a source checkout (tests/browser/harness.py)")
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    from tests.browser import harness

    return harness
