"""The inpaint studio in a real browser: a stroke drawn in Chromium, Generate clicked, the result shown.

``notebooks/studio.ipynb`` opens a studio on a 128 px sample with the SD inpaint twin in JupyterLab. The test
drags the mouse over the canvas, clicks Generate, waits for the result thumbnail to appear in the page, and
checks in the kernel that the run used the drawn mask. A second case slows every denoising step down (a
stand-in for a real model's step time) and checks that a stroke drawn while the run goes on reaches the
kernel's mask at once, and that Cancel stops the run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.browser.harness import (
    PANEL,
    artifacts_dir,
    copy_notebook,
    open_notebook,
    output_text,
    run_all_cells,
    run_in_kernel,
    wait_for_kernel_json,
    wait_for_widget,
    wait_until_still,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = Path(__file__).parent / "notebooks" / "studio.ipynb"
VIEWPORT = {"width": 1600, "height": 1400}  # canvas and panel side by side, beside JupyterLab's file browser
RESULT = f"{PANEL} img.nbinpaint-grid-zoom"  # the Result tab's thumbnails (ImageGrid's zoomable images)

# One function call per read: ipykernel dispatches widget messages between top-level statements.
_STATE = """
def _test_state():
    import json
    import numpy as np
    panel = studio.panel
    result = studio.result
    return json.dumps({
        "version": studio.canvas.mask_version,
        "painted": int((np.asarray(studio.canvas.mask) > 0).sum()),
        "running": panel.running,
        "model_state": panel.model_state,
        "status": panel.status,
        "results": len(studio.grid.images),
        "run_status": panel.last_run.status if panel.last_run else None,
        "steps": panel.last_run.steps if panel.last_run else 0,
        "steps_after_cancel": panel.last_run.steps_after_cancel if panel.last_run else 0,
        "used_painted": int((np.asarray(result.request.mask) > 0).sum()) if result else None,
        "recipe_steps": result.recipe["parameters"]["steps"] if result else None,
    })
print(_test_state())
"""


def state(page, path: str, until=lambda s: True, timeout: float = 30.0) -> dict:
    return wait_for_kernel_json(page, path, _STATE, until, timeout=timeout)


def open_studio(page, lab, lab_root: Path, name: str, parameters: str):
    page.set_viewport_size(VIEWPORT)
    path = copy_notebook(NOTEBOOK, lab_root, name=name, parameters=parameters)
    open_notebook(page, lab, path, timeout=120)
    run_all_cells(page, path)
    canvas = wait_for_widget(page, timeout=120)
    ready = state(page, path, lambda s: s["model_state"] != "loading", timeout=120)
    assert ready["model_state"] == "ready", ready
    return path, canvas


def drag(page, canvas, y_fraction: float) -> None:
    """A horizontal stroke across the canvas, which is first scrolled into view and left to settle (the
    panel beside it grows while a run shows its progress and preview)."""
    canvas.scroll_into_view_if_needed()
    box = wait_until_still(canvas)
    y = box["y"] + y_fraction * box["height"]
    page.mouse.move(box["x"] + 0.2 * box["width"], y)
    page.mouse.down()
    page.mouse.move(box["x"] + 0.8 * box["width"], y, steps=12)
    page.mouse.up()


def button(page, label: str):
    return page.locator(f"{PANEL} button.widget-button", has_text=label).first


def test_draw_generate_and_see_the_result(page, lab, lab_root):
    started = time.monotonic()
    path, canvas = open_studio(
        page, lab, lab_root, "studio_generate.ipynb", "IMAGE_SIZE = 128\nSTEPS = 4\nSLOW_STEP_S = 0.0"
    )
    before = state(page, path)
    assert before["painted"] == 0 and before["results"] == 0

    drag(page, canvas, 0.5)
    drawn = state(page, path, lambda s: s["version"] > before["version"])
    assert drawn["painted"] > 0, f"the stroke did not reach the kernel's mask: {drawn}"

    button(page, "Generate").click()
    thumbnail = page.locator(RESULT).first
    try:
        thumbnail.wait_for(state="visible", timeout=120_000)
    except Exception as exc:
        raise AssertionError(f"no result appeared; kernel: {state(page, path)}; outputs:\n{output_text(page)}") from exc
    page.wait_for_function(
        "sel => { const img = document.querySelector(sel); return img && img.complete && img.naturalWidth > 0; }",
        arg=RESULT,
        timeout=30_000,
    )
    done = state(page, path, lambda s: not s["running"] and s["results"] > 0)
    assert done["run_status"] == "done", done
    assert done["used_painted"] == drawn["painted"], "the run used the mask drawn in the browser"
    assert done["recipe_steps"] == 4
    assert "Done" in done["status"]

    widget = page.locator(f"{PANEL} .jp-OutputArea-output:has(canvas)").first
    widget.scroll_into_view_if_needed()
    shot = artifacts_dir() / "studio-lab-result.png"
    widget.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}; test took {time.monotonic() - started:.1f} s")


def test_strokes_reach_the_kernel_during_a_run_and_cancel_stops_it(page, lab, lab_root):
    params = "IMAGE_SIZE = 128\nSTEPS = 150\nSLOW_STEP_S = 0.2"  # about 30 s if nothing stopped it
    path, canvas = open_studio(page, lab, lab_root, "studio_cancel.ipynb", params)
    idle_started = time.monotonic()
    drag(page, canvas, 0.3)
    first = state(page, path, lambda s: s["version"] >= 1)
    idle_s = time.monotonic() - idle_started

    button(page, "Generate").click()
    running = state(page, path, lambda s: s["running"] and s["steps"] >= 1, timeout=60)
    assert running["running"], running

    clicked = time.monotonic()
    drag(page, canvas, 0.7)
    during = state(page, path, lambda s: s["version"] > first["version"])
    stroke_s = time.monotonic() - clicked
    assert during["version"] == first["version"] + 1, during
    assert during["running"], f"the stroke was handled while the run went on, not after it: {during}"
    assert during["painted"] > first["painted"]

    steps_at_cancel = state(page, path)["steps"]
    button(page, "Cancel").click()
    stopped = state(page, path, lambda s: not s["running"], timeout=30)
    assert stopped["run_status"] == "cancelled", stopped
    assert stopped["steps"] < 150
    assert stopped["steps_after_cancel"] <= 1, "at most the step in progress when the click reached the kernel"
    assert "Cancelled" in stopped["status"]
    figures = {  # drag (12 moves) plus polling the kernel every 0.1 s: compare the two, not the absolutes
        "stroke_to_kernel_idle_s": round(idle_s, 3),
        "stroke_to_kernel_during_run_s": round(stroke_s, 3),
        "steps_at_cancel_click": steps_at_cancel,
        "steps_when_stopped": stopped["steps"],
        "steps_after_cancel_reached_kernel": stopped["steps_after_cancel"],
        "slow_step_s": 0.2,
    }
    print(f"during a run: {figures}")
    (artifacts_dir() / "studio-browser-figures.json").write_text(json.dumps(figures, indent=1))

    # The studio is usable again: a run of a few steps finishes (the slow UNet stays, so keep it short).
    run_in_kernel(page, path, "studio.panel.steps = 2")
    button(page, "Generate").click()
    again = state(page, path, lambda s: s["run_status"] == "done" and not s["running"], timeout=60)
    assert again["run_status"] == "done", again
