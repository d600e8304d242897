"""The canvas's Segment tool in a real browser: pick the tool, click an object (and Shift-click outside it), see
the proposal drawn, Accept it into the kernel's mask, then Undo it, all with Chromium's own mouse and keys.

The kernel runs in twin mode (the test session's environment), so the twin SAM answers: its masks are noise,
but they are the size of the image and come through the same road as the real checkpoint's.
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
    run_all_cells,
    run_in_kernel,
    wait_for_kernel_json,
    wait_for_widget,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = Path(__file__).parent / "notebooks" / "mask_canvas.ipynb"

# One function call per read: widget messages are handled between a cell's statements (see the canvas test).
_STATE = """
def _test_segment_state():
    import json
    tool = canvas.segment_tool
    version = canvas.mask_version
    proposal = tool.clicks.proposal
    return json.dumps({"version": version, "tool": canvas.tool, "points": tool.clicks.points,
                       "labels": tool.clicks.labels, "message": canvas.message,
                       "proposal": None if proposal is None else int(proposal.mask.sum()),
                       "proposal_shape": None if proposal is None else list(proposal.mask.shape),
                       "masked": int((canvas.mask_array > 0).sum())})
print(_test_segment_state())
"""


def state(page, path: str, until, timeout: float = 60.0) -> dict:
    return wait_for_kernel_json(page, path, _STATE, until, timeout=timeout)


def test_segment_tool_click_accept_and_undo(page, lab, lab_root):
    started = time.monotonic()
    params = "IMAGE_SIZE = 512\nMAX_DISPLAY = 384\nSYNC_OVERLAY_PIXELS = False"
    path = copy_notebook(NOTEBOOK, lab_root, name="segment_tool.ipynb", parameters=params)
    open_notebook(page, lab, path)
    run_all_cells(page, path)
    canvas = wait_for_widget(page)
    run_in_kernel(page, path, "assert canvas.tool == 'brush' and canvas.segment_tool.clicks.points == []")

    page.locator(f"{PANEL} .widget-toggle-button:has-text('Segment')").click()
    accept = page.locator(f"{PANEL} button:has-text('Accept')")
    accept.wait_for(state="visible", timeout=15_000)
    assert state(page, path, lambda s: s["tool"] == "segment")["tool"] == "segment"

    box = canvas.bounding_box()
    page.mouse.move(box["x"] + 190, box["y"] + 200)  # ipyevents sees keys while the pointer is over the canvas
    page.mouse.click(box["x"] + 190, box["y"] + 200)
    first = state(page, path, lambda s: s["proposal"] is not None or "outside" in s["message"])
    (x, y), scale = first["points"][0], 512 / 384
    assert abs(x - 190 * scale) <= 1.5 and abs(y - 200 * scale) <= 1.5, f"display (190, 200) is image {first}"
    assert first["proposal_shape"] == [512, 512] and first["masked"] == 0, first

    page.keyboard.down("Shift")
    page.mouse.click(box["x"] + 40, box["y"] + 40)
    page.keyboard.up("Shift")
    second = state(page, path, lambda s: len(s["points"]) == 2)
    assert second["labels"] == [1, 0], f"Shift-click marks a point outside the object: {second}"
    shot = artifacts_dir() / "segment-tool-proposal.png"
    page.locator(f"{PANEL} .jp-OutputArea-output:has(canvas)").first.screenshot(path=str(shot))

    proposed = second["proposal"]
    accept.click()
    accepted = state(page, path, lambda s: s["version"] == second["version"] + 1)
    assert accepted["masked"] == proposed > 0, f"the mask is the accepted proposal: {accepted}"
    assert accepted["points"] == [] and "Accepted" in accepted["message"]

    page.locator(f"{PANEL} button:has-text('Undo')").click()
    undone = state(page, path, lambda s: s["version"] == accepted["version"] + 1)
    assert undone["masked"] == 0, f"Undo takes the accepted proposal back: {undone}"
    print(
        f"segment tool in the browser: proposal {proposed} px of 512x512, screenshot {shot}; "
        f"test took {time.monotonic() - started:.1f} s; {json.dumps(undone['message'])}"
    )
