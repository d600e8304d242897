"""MaskCanvas without a browser: the messages the browser would send are replayed on the widgets.

Mouse events go to the MultiCanvas (``_handle_msg`` with a ``custom`` message, as ipycanvas's front end
sends them), keys to the ipyevents ``Event``; drawing commands are recorded by wrapping the ipycanvas
canvas manager's ``_send_custom`` (private API: ipycanvas is pinned in the project's dependencies).
"""

from __future__ import annotations

import io
import math
import sys
import threading
import types

import numpy as np
import pytest
from ipycanvas.canvas import COMMANDS
from PIL import Image
from traitlets import TraitError

from nbinpaint.masks import MaskError, feather
from nbinpaint.widgets import canvas as canvas_module
from nbinpaint.widgets.canvas import MaskCanvas, held, key_action

PUT_IMAGE_DATA = COMMANDS["putImageData"]
STROKE_RECT = COMMANDS["strokeRect"]
SWITCH = COMMANDS["switchCanvas"]


def scene(w: int = 128, h: int = 96) -> Image.Image:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[:, : w // 2] = (30, 60, 90)  # a flat region for the wand
    return Image.fromarray(img)


def mouse(widget: MaskCanvas, event: str, x: float, y: float) -> None:
    content = {"event": event, "x": x, "y": y}
    widget._layers._handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})


def key(widget: MaskCanvas, key: str, *, ctrl: bool = False, shift: bool = False, meta: bool = False) -> None:
    content = {
        "event": "keydown",
        "type": "keydown",
        "key": key,
        "ctrlKey": ctrl,
        "shiftKey": shift,
        "metaKey": meta,
        "altKey": False,
    }
    widget._events._handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})


def drag(widget: MaskCanvas, points: list[tuple[float, float]]) -> None:
    mouse(widget, "mouse_down", *points[0])
    for p in points[1:]:
        mouse(widget, "mouse_move", *p)
    mouse(widget, "mouse_up", *points[-1])


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Sent:
    """Every message the canvas manager sends: (commands, buffers), one entry per batch."""

    def __init__(self) -> None:
        self.batches: list[tuple[list, list]] = []

    def __call__(self, command, buffers=()) -> None:
        self.batches.append((command, list(buffers)))

    def commands(self, batch: int = -1) -> list:
        command = self.batches[batch][0]
        return command if command and isinstance(command[0], list) else [command]

    def targeted(self) -> list[tuple[str, list]]:
        """Every command sent so far, with the canvas it drew on (``IPY_MODEL_<id>``)."""
        out, current = [], None
        for i in range(len(self.batches)):
            for command in self.commands(i):
                if command[0] == SWITCH:
                    current = command[1][0]
                else:
                    out.append((current, command))
        return out

    def images(self, batch: int = -1) -> list[np.ndarray]:
        """The images put in one batch, decoded (buffers are in command order)."""
        return [np.asarray(Image.open(io.BytesIO(bytes(b)))) for b in self.batches[batch][1]]


@pytest.fixture
def sent(monkeypatch) -> Sent:
    from ipycanvas.canvas import _CANVAS_MANAGER

    recorder = Sent()
    monkeypatch.setattr(_CANVAS_MANAGER, "_send_custom", recorder)
    monkeypatch.setattr(_CANVAS_MANAGER, "_current_canvas", None)  # so recordings start with a switch
    return recorder


@pytest.fixture
def widget(sent) -> MaskCanvas:
    w = MaskCanvas(scene(), brush_size=20)
    w._clock = Clock()
    sent.batches.clear()
    w._layers._canvas_manager._current_canvas = None
    return w


def rows_painted(mask: Image.Image | np.ndarray, col: int) -> list[int]:
    return np.flatnonzero(np.asarray(mask)[:, col]).tolist()


# --- drawing with the mouse ----------------------------------------------------------------------------------


def test_horizontal_stroke_of_size_20_paints_exactly_the_band(widget):
    versions = []
    widget.observe(lambda change: versions.append(change["new"]), "mask_version")
    drag(widget, [(10, 50), (40, 50), (70, 50), (90, 50)])
    mask = np.asarray(widget.mask)
    assert widget.mask.mode == "L" and widget.mask.size == (128, 96)
    for col in range(10, 90):
        assert rows_painted(mask, col) == list(range(40, 60)), col
    cols = np.flatnonzero(mask.any(axis=0))
    assert (cols[0], cols[-1]) == (0, 99)
    assert versions == [1], "one stroke, one notification, at mouse-up"


@pytest.mark.parametrize(
    ("size", "max_display"),
    [((128, 96), 768), ((1024, 1024), 512), ((1000, 750), 768), ((3000, 2000), 768), ((640, 480), 300)],
)
def test_strokes_land_on_the_same_image_pixels_at_any_display_scale(sent, size, max_display):
    w = MaskCanvas(Image.new("RGB", size), max_display_size=max_display, brush_size=16)
    shown = w.display_size
    scale = size[0] / shown[0]
    assert max(shown) == min(max(size), max_display)
    y, x0, x1 = shown[1] * 0.5, shown[0] * 0.25, shown[0] * 0.75
    drag(w, [(x0, y), (x1, y)])
    mask = np.asarray(w.mask)
    assert mask.shape == (size[1], size[0]), "the mask stays at full resolution"
    centre = y * size[1] / shown[1]
    middle = round((x0 + x1) / 2 * scale)
    first = int(np.floor(centre - 8 + 0.5))  # the brush rule: 16 rows from floor(c - 16/2 + 1/2)
    assert rows_painted(mask, middle) == list(range(first, first + 16))
    cols = np.flatnonzero(mask.any(axis=0))
    assert abs(cols[0] - (x0 * scale - 8)) <= max(1, scale)  # within 1 px of display scale
    assert abs(cols[-1] + 1 - (x1 * scale + 8)) <= max(1, scale)


def test_mouse_out_ends_the_stroke(widget):
    mouse(widget, "mouse_down", 10, 10)
    mouse(widget, "mouse_move", 40, 10)
    mouse(widget, "mouse_out", 60, 10)
    assert widget.editor.drawing is None and widget.mask_version == 1
    mouse(widget, "mouse_move", 80, 80)  # hovering afterwards paints nothing
    assert not np.asarray(widget.mask)[70:].any()


def test_rectangle_lasso_and_wand_tools(widget):
    widget.tool = "rectangle"
    mouse(widget, "mouse_down", 10, 10)
    mouse(widget, "mouse_move", 30, 20)
    assert not np.asarray(widget.mask).any(), "a shape is only previewed while dragging"
    mouse(widget, "mouse_up", 30, 20)
    assert int(np.asarray(widget.mask).sum() // 255) == 20 * 10
    widget.tool = "lasso"
    drag(widget, [(100, 10), (120, 10), (120, 30), (100, 30)])
    assert np.asarray(widget.mask)[10:30, 100:120].all()
    widget.clear()
    widget.tool, widget.tolerance = "wand", 0
    mouse(widget, "mouse_down", 5, 5)
    mouse(widget, "mouse_up", 5, 5)
    mask = np.asarray(widget.mask)
    assert mask[:, :64].all() and not mask[:, 64:].all() and widget.mask_version == 4
    widget.subtract = True
    mouse(widget, "mouse_down", 5, 5)
    assert not np.asarray(widget.mask)[:, :64].any()


def test_shape_preview_goes_to_the_pointer_layer(widget, sent):
    widget.tool = "rectangle"
    mouse(widget, "mouse_down", 10, 10)
    widget._clock.now += 1
    mouse(widget, "mouse_move", 30, 20)
    rects = [(canvas, c[1]) for canvas, c in sent.targeted() if c[0] == STROKE_RECT]
    assert rects == [(f"IPY_MODEL_{widget._layers[2].model_id}", [10, 10, 20, 10])]
    assert not np.asarray(widget.mask).any()


# --- redraws: batched, throttled, lossless --------------------------------------------------------------------


def test_moves_are_throttled_and_mouse_up_always_redraws(widget, sent):
    mouse(widget, "mouse_down", 10, 10)
    assert len(sent.batches) == 1, "mouse-down shows the dab at once, in one batch"
    for i in range(10):  # ten moves within 10 ms: rasterised, not redrawn
        widget._clock.now += 0.001
        mouse(widget, "mouse_move", 10 + 5 * i, 10)
    assert len(sent.batches) == 1
    assert widget.editor.mask[10, 50], "the live mask is up to date at once"
    assert not np.asarray(widget.mask)[10, 50], "the public mask is the last completed one"
    widget._clock.now += 0.05
    mouse(widget, "mouse_move", 70, 10)
    assert len(sent.batches) == 2
    widget._clock.now += 0.001
    mouse(widget, "mouse_up", 75, 10)
    assert len(sent.batches) == 3, "mouse-up redraws even inside the throttle interval"
    assert np.asarray(widget.mask)[10, 50] and widget.mask_version == 1


def test_overlay_is_rgba_png_drawn_from_the_python_mask(widget, sent):
    drag(widget, [(20, 30), (60, 30)])
    commands = sent.commands()
    puts = [c for c in commands if c[0] == PUT_IMAGE_DATA]
    assert puts, "the overlay was sent"
    buffers = sent.batches[-1][1]
    assert all(bytes(b[:8]) == b"\x89PNG\r\n\x1a\n" for b in buffers), "lossless PNG, never JPEG"
    x, y = puts[-1][1][:2]
    patch = sent.images()[-1]
    assert patch.shape[2] == 4
    mask = np.asarray(widget.mask)[y : y + patch.shape[0], x : x + patch.shape[1]]
    assert np.array_equal(patch[..., 3] > 0, mask > 0)
    assert np.all(patch[..., 3][mask > 0] == round(255 * widget.opacity))


def test_held_flushes_and_releases_even_when_drawing_fails(widget, sent):
    from ipycanvas.canvas import _CANVAS_MANAGER

    batched = []

    def draw_then_fail():
        with held():
            widget._layers[2].fill_rect(0, 0, 5, 5)
            batched.append(len(sent.batches))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        draw_then_fail()
    assert batched == [0], "nothing sent while held"
    assert len(sent.batches) == 1 and not _CANVAS_MANAGER._caching


def test_client_ready_redraws_every_layer(widget, sent):
    widget._layers[2]._handle_frontend_event(None, {"event": "client_ready"}, [])
    assert len(sent.batches) == 1
    images = sent.images()
    assert images[0].shape == (96, 128, 4), "the base image, RGBA (lossless)"
    assert np.array_equal(images[0][..., :3], np.asarray(widget.image))


def test_blur_factor_previews_diffusers_blur(widget, sent):
    drag(widget, [(20, 30), (100, 30)])
    batches = len(sent.batches)
    widget.blur_factor = 6
    assert len(sent.batches) == batches + 1, "a new feather redraws the overlay, in one batch"
    expected = feather(np.asarray(widget.mask), 6)
    assert np.array_equal(np.asarray(widget.feathered_mask), expected)
    overlay = sent.images()[-1]
    assert np.array_equal(overlay[..., 3], np.round(expected.astype(np.float32) * 0.5).astype(np.uint8))
    widget._clock.now += 1
    drag(widget, [(20, 70), (40, 70)])  # incremental redraws include the feather's reach
    patch_puts = [c for c in sent.commands() if c[0] == PUT_IMAGE_DATA]
    _, y = patch_puts[-1][1][:2]
    assert y <= 70 - 10 - 6 * 3


# --- keys, buttons, traits ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "action"),
    [
        ({"key": "["}, "smaller"),
        ({"key": "]"}, "bigger"),
        ({"key": "x"}, "swap"),
        ({"key": "X"}, "swap"),
        ({"key": "z", "ctrlKey": True}, "undo"),
        ({"key": "z", "metaKey": True}, "undo"),
        ({"key": "Z", "ctrlKey": True, "shiftKey": True}, "redo"),
        ({"key": "y", "ctrlKey": True}, "redo"),
        ({"key": "z"}, None),
        ({"key": "x", "ctrlKey": True}, None),
        ({"key": "a"}, None),
    ],
)
def test_key_actions(event, action):
    assert key_action(event) == action


def test_keyboard_shortcuts(widget):
    key(widget, "]")
    assert widget.brush_size == 24
    key(widget, "[")
    key(widget, "[")
    assert widget.brush_size == 17
    key(widget, "x")
    assert widget.tool == "eraser"
    key(widget, "x")
    assert widget.tool == "brush"
    widget.tool = "lasso"
    key(widget, "x")
    assert widget.subtract and widget.tool == "lasso"
    widget.tool = "brush"
    drag(widget, [(10, 10), (50, 10)])
    key(widget, "z", ctrl=True)
    assert not np.asarray(widget.mask).any()
    key(widget, "z", ctrl=True, shift=True)
    assert np.asarray(widget.mask).any() and widget.mask_version == 3


def test_brush_size_never_goes_below_one(widget):
    widget.brush_size = 1
    key(widget, "[")
    assert widget.brush_size == 1


def test_buttons_edit_the_mask(widget):
    drag(widget, [(40, 40), (60, 40)])
    before = np.asarray(widget.mask).copy()
    widget._buttons["grow"].click()
    grown = np.asarray(widget.mask)
    assert grown.sum() > before.sum() and (grown[before > 0] == 255).all()
    widget._buttons["shrink"].click()
    widget._buttons["invert"].click()
    assert np.asarray(widget.mask)[0, 0] == 255
    widget._buttons["clear"].click()
    assert not np.asarray(widget.mask).any()
    for _ in range(4):
        widget._buttons["undo"].click()
    assert np.array_equal(np.asarray(widget.mask), before)
    widget._buttons["redo"].click()
    assert np.array_equal(np.asarray(widget.mask), grown)


def test_a_background_reader_never_sees_half_a_stroke(widget, monkeypatch):
    """A generation running in a thread may read the mask while the user draws: it sees only completed
    masks (copy-on-write in the editor), never a stroke in progress."""
    monkeypatch.setattr(widget, "redraw_interval", 0.0)  # flush the live stroke on every move
    seen: set[int] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.add(int(np.count_nonzero(widget.mask_array)))

    thread = threading.Thread(target=reader)
    thread.start()
    committed = {0}
    try:
        for i in range(15):
            y = 5 + 6 * i
            drag(widget, [(2 + x, y) for x in range(0, 120, 4)])
            committed.add(int(np.count_nonzero(widget.mask_array)))
    finally:
        stop.set()
        thread.join()
    assert len(committed) == 16 and len(seen) > 1
    assert seen <= committed


def test_undo_keeps_at_least_fifty_steps(widget):
    for i in range(60):
        drag(widget, [(i * 2, 5), (i * 2 + 1, 5)])
    for _ in range(55):
        assert widget.undo()
    assert np.asarray(widget.mask).any(), "five strokes left"


def test_traits_validate_and_controls_follow(widget):
    widget.brush_size = 10_000
    assert widget.brush_size == canvas_module.MAX_BRUSH
    assert widget._controls["brush_size"].value == canvas_module.MAX_BRUSH
    widget._controls["opacity"].value = 0.25
    assert widget.opacity == 0.25
    widget.opacity = 3
    assert widget.opacity == 1.0
    widget._controls["tool"].value = "ellipse"
    assert widget.tool == "ellipse"
    widget.blur_factor = -4
    assert widget.blur_factor == 0
    with pytest.raises(TraitError, match="colour"):
        widget.color = "not-a-colour"
    with pytest.raises(TraitError):
        widget.tool = "spray"
    with pytest.raises(TraitError):
        widget.mask_version = 99


def test_every_trait_has_help():
    own = set(MaskCanvas.class_trait_names()) - set(canvas_module.widgets.VBox.class_trait_names())
    assert own >= {"tool", "brush_size", "mask_version", "blur_factor", "opacity"}
    for name in own:
        assert MaskCanvas.class_traits()[name].help, name


# --- loading, saving, errors --------------------------------------------------------------------------------


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def upload(widget: MaskCanvas, name: str, content: bytes) -> None:
    widget._upload.set_state(
        {
            "value": [
                {
                    "name": name,
                    "type": "image/png",
                    "size": len(content),
                    "last_modified": 0,
                    "content": memoryview(content),
                }
            ]
        }
    )


def test_upload_loads_a_mask_and_bad_uploads_lose_nothing(widget):
    drag(widget, [(10, 10), (50, 10)])
    kept, version = np.asarray(widget.mask).copy(), widget.mask_version
    upload(widget, "small.png", png_bytes(np.zeros((10, 10), np.uint8)))
    assert "small.png" in widget.message and "128x96" in widget.message and "unchanged" in widget.message
    assert "&#9888;" in widget._status.value
    upload(widget, "notes.png", b"hello")
    assert "Could not read" in widget.message
    assert np.array_equal(np.asarray(widget.mask), kept) and widget.mask_version == version
    assert widget._upload.value == (), "cleared, so the same file can be chosen again"
    good = np.zeros((96, 128), np.uint8)
    good[:, :10] = 255
    upload(widget, "good.png", png_bytes(good))
    assert np.array_equal(np.asarray(widget.mask), good) and widget.mask_version == version + 1
    assert "good.png" in widget.message and "&#9888;" not in widget._status.value


def test_load_and_save(widget, tmp_path):
    mask = np.zeros((96, 128), bool)
    mask[5:15, 5:25] = True
    widget.mask = mask
    assert np.array_equal(np.asarray(widget.mask) > 0, mask)
    path = widget.save_mask(tmp_path / "m.png")
    assert np.array_equal(np.asarray(Image.open(path)), np.asarray(widget.mask))
    widget._path.value = str(tmp_path / "via-button.png")
    widget._buttons["save"].click()
    assert (tmp_path / "via-button.png").exists() and "Saved" in widget.message
    with pytest.raises(MaskError, match=r"\.png"):
        widget.save_mask(tmp_path / "m.jpg")
    widget._path.value = str(tmp_path / "no-such-dir" / "m.png")
    widget._buttons["save"].click()
    assert "writable" in widget.message
    with pytest.raises(MaskError, match="resize"):
        widget.load_mask(np.zeros((5, 5)))
    assert np.array_equal(np.asarray(widget.mask) > 0, mask)


def test_mask_array_is_a_read_only_view(widget):
    with pytest.raises(ValueError, match="read-only"):
        widget.mask_array[0, 0] = 255


def test_handler_errors_show_in_the_widget(widget, monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(widget.editor, "press", broken)
    mouse(widget, "mouse_down", 5, 5)  # must not raise into the comm machinery
    assert "ZeroDivisionError" in widget.message and not np.asarray(widget.mask).any()


def test_set_image_rescales_or_resets(widget):
    widget.tool = "rectangle"
    drag(widget, [(0, 0), (64, 96)])
    assert widget.set_image(scene(256, 192)) == "rescaled"
    assert widget.mask.size == (256, 192) and np.asarray(widget.mask)[:, :128].all()
    assert widget._layers.width == 256 and widget._layers.layout.width == "256px"
    version = widget.mask_version
    assert widget.set_image(Image.new("RGB", (100, 100))) == "reset"
    assert not np.asarray(widget.mask).any() and widget.mask_version == version + 1
    assert "reset" in widget.message


def test_large_images_get_an_explicit_scaled_layout(sent):
    w = MaskCanvas(Image.new("RGB", (2048, 1024)))
    assert w.display_size == (768, 384)
    assert (w._layers.width, w._layers.height) == (768, 384)
    assert (w._layers.layout.width, w._layers.layout.height) == ("768px", "384px")


def test_sync_overlay_pixels_is_a_test_only_opt_in(sent):
    assert not MaskCanvas(scene()).overlay_layer.sync_image_data
    assert MaskCanvas(scene(), sync_overlay_pixels=True).overlay_layer.sync_image_data


def test_colab_gets_the_custom_widget_manager(monkeypatch, sent):
    calls = []
    output = types.SimpleNamespace(enable_custom_widget_manager=lambda: calls.append(True))
    colab = types.ModuleType("google.colab")
    colab.output = output
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    MaskCanvas(scene())
    assert calls == [True]
    monkeypatch.delitem(sys.modules, "google.colab")
    MaskCanvas(scene())
    assert calls == [True], "nothing to do outside Colab"


# --- zoom and pan ---------------------------------------------------------------------------------------------

STROKE_CIRCLE = COMMANDS["strokeCircle"]


def dom_event(widget: MaskCanvas, event: str, x: float, y: float, **fields) -> None:
    """An ipyevents event over the canvas, as the browser sends it (CSS pixels from the canvas's corner)."""
    w, h = widget.display_size
    content = {
        "event": event,
        "type": event,
        "relativeX": x,
        "relativeY": y,
        "boundingRectWidth": w,
        "boundingRectHeight": h,
        "button": 0,
        **fields,
    }
    widget._events._handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})


def wheel(widget: MaskCanvas, x: float, y: float, delta_y: float = -100) -> None:
    dom_event(widget, "wheel", x, y, deltaY=delta_y, deltaMode=0)


def keyup(widget: MaskCanvas, key: str) -> None:
    content = {"event": "keyup", "type": "keyup", "key": key, "ctrlKey": False, "shiftKey": False, "metaKey": False}
    widget._events._handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})


@pytest.fixture
def big(sent) -> MaskCanvas:
    """A 600x400 image on a 300x200 canvas: at fit one canvas pixel covers 2x2 image pixels."""
    pixels = np.zeros((400, 600, 3), np.uint8)
    pixels[..., 0] = np.arange(600) % 256  # red says the column, green the row
    pixels[..., 1] = (np.arange(400) % 256)[:, None]
    w = MaskCanvas(Image.fromarray(pixels), max_display_size=300, brush_size=16)
    w._clock = Clock()
    w._last_redraw = float("-inf")
    sent.batches.clear()
    return w


def test_a_stroke_at_zoom_3_with_pan_lands_on_the_computed_image_pixels(big):
    big.zoom, big.pan = 3, (200, 100)  # 1.5 canvas px per image px; canvas (0, 0) is image (200, 100)
    assert (big.zoom, big.pan) == (3, (200, 100))
    drag(big, [(30, 60), (90, 60), (150, 60)])  # image y = 100 + 60 / 1.5 = 140, x from 220 to 300
    mask = np.asarray(big.mask)
    for col in (230, 260, 290):
        assert rows_painted(mask, col) == list(range(132, 148)), col  # 16 rows from floor(140 - 8 + 0.5)
    cols = np.flatnonzero(mask.any(axis=0))
    assert (cols[0], cols[-1]) == (212, 307), "the caps reach 8 image pixels past each end"
    assert big.mask_version == 1


def test_image_point_maps_either_kind_of_event(big):
    big.zoom, big.pan = 4, (100, 50)  # 2 canvas px per image px
    assert big.image_point({"x": 10.5, "y": 20}) == (105.25, 60)
    assert big.image_point({"relativeX": 10, "relativeY": 20}) == (105, 60)
    # a canvas shown at twice its size in CSS (browser zoom): CSS pixels are scaled back to canvas pixels
    event = {"relativeX": 20, "relativeY": 40, "boundingRectWidth": 600, "boundingRectHeight": 400}
    assert big.image_point(event) == (105, 60)


def test_the_wheel_zooms_about_the_pointer(big):
    point = big.image_point({"x": 60, "y": 150})
    wheel(big, 60, 150)
    assert big.zoom == pytest.approx(1.25)
    assert big.image_point({"x": 60, "y": 150}) == pytest.approx(point)
    for _ in range(4):
        wheel(big, 60, 150)
    assert big.zoom == pytest.approx(1.25**5)
    assert big.image_point({"x": 60, "y": 150}) == pytest.approx(point)
    assert "3.05x" in big._zoom_readout.value and "153%" in big._zoom_readout.value
    wheel(big, 60, 150, delta_y=10_000)
    assert (big.zoom, big.pan) == (1, (0, 0)), "never below fit"
    drag(big, [(60, 150), (61, 150)])
    assert np.asarray(big.mask)[300, 120], "after zooming back out the stroke maps as at fit"


def browser_drag(widget: MaskCanvas, points: list[tuple[float, float]], button: int = 0) -> None:
    """A drag as the browser reports it: ipycanvas's event for each step, then ipyevents' (with the button)."""
    buttons = {0: 1, 1: 4}[button]  # the DOM's bit for the left and the middle button
    mouse(widget, "mouse_down", *points[0])
    dom_event(widget, "mousedown", *points[0], button=button, buttons=buttons)
    for point in points[1:]:
        mouse(widget, "mouse_move", *point)
        dom_event(widget, "mousemove", *point, buttons=buttons)
    mouse(widget, "mouse_up", *points[-1])
    dom_event(widget, "mouseup", *points[-1], button=button, buttons=0)


def test_space_drag_pans_without_painting(big):
    big.zoom = 4  # about the centre: pan (225, 150)
    assert big.pan == (225, 150)
    key(big, " ")
    browser_drag(big, [(100, 100), (120, 90), (140, 80)])  # 40 canvas px right = 20 image px
    assert big.pan == (205, 160)
    assert not np.asarray(big.mask).any() and big.mask_version == 0
    keyup(big, " ")
    browser_drag(big, [(100, 100), (102, 100)])
    assert big.pan == (205, 160)
    assert np.asarray(big.mask)[160 + 50, 205 + 50], "space released: the brush paints again"


def test_middle_button_pans_and_takes_back_the_press(big):
    big.zoom = 4
    browser_drag(big, [(100, 100), (90, 100), (80, 100)], button=1)
    assert big.pan == (235, 150)
    assert not np.asarray(big.mask).any() and big.mask_version == 0
    big.tool, big.tolerance = "wand", 255
    browser_drag(big, [(100, 100), (100, 100)], button=1)  # the wand acts on the press: it is undone
    assert not np.asarray(big.mask).any()
    # under load ipyevents' press may come first: then ipycanvas's press never starts a stroke
    big.tool = "brush"
    dom_event(big, "mousedown", 100, 100, button=1, buttons=4)
    mouse(big, "mouse_down", 100, 100)
    for y in (110, 120):
        dom_event(big, "mousemove", 100, y, buttons=4)
        mouse(big, "mouse_move", 100, y)
    dom_event(big, "mouseup", 100, 120, button=1, buttons=0)
    mouse(big, "mouse_up", 100, 120)
    assert big.pan == (235, 140) and not np.asarray(big.mask).any()
    # released outside the canvas: the next move without a button ends the pan
    dom_event(big, "mousedown", 100, 100, button=1, buttons=4)
    dom_event(big, "mousemove", 90, 100, buttons=0)
    dom_event(big, "mousemove", 80, 100, buttons=0)
    assert big.pan == (235, 140)
    drag(big, [(100, 100), (101, 100)])
    assert big.mask_version > 0, "and the brush paints again"


def test_zoomed_redraws_send_only_the_visible_crop(big, sent):
    big.zoom, big.pan = 4, (100, 50)  # 2 canvas px per image px: image pixels show as 2x2 squares
    image, overlay = sent.images()[:2]
    assert image.shape == (200, 300, 3), "the canvas's size, not the image's; RGB, sent as a quick JPEG"
    assert bytes(sent.batches[-1][1][0][:2]) == b"\xff\xd8"
    expected = np.asarray(big.image)[50:150, 100:250].repeat(2, axis=0).repeat(2, axis=1)
    assert np.abs(image.astype(int) - expected).mean() < 3, "the visible crop, each image pixel a 2x2 square"
    assert not overlay[..., 3].any()
    big._clock.now += 1
    drag(big, [(40, 40), (60, 40)])  # image (120, 70) to (130, 70)
    puts = [c for c in sent.commands() if c[0] == PUT_IMAGE_DATA]
    assert len(puts) == 1, "a stroke redraws the overlay only"
    x, y = puts[0][1][:2]
    patch = sent.images()[-1]
    assert patch.shape[0] < 60 and patch.shape[1] < 60, "only around the stroke"
    crop = np.asarray(big.mask)[
        50 + y // 2 : 50 + (y + patch.shape[0]) // 2, 100 + x // 2 : 100 + (x + patch.shape[1]) // 2
    ]
    assert np.array_equal(patch[::2, ::2, 3] > 0, crop > 0)


def test_brush_outline_is_the_brush_in_image_pixels_at_any_zoom(big, sent):
    def outline_radius() -> float:
        circles = [c for _, c in sent.targeted() if c[0] == STROKE_CIRCLE]
        return circles[-1][1][2]

    mouse(big, "mouse_move", 150, 100)
    assert outline_radius() == 16 * 0.5 / 2, "16 image px at 0.5 canvas px each"
    wheel(big, 150, 100, delta_y=-100 * math.log(6) / math.log(1.25))  # zoom 6: 3 canvas px per image px
    assert big.zoom == pytest.approx(6)
    assert outline_radius() == pytest.approx(16 * 3 / 2)


def test_edits_fit_and_set_image_work_while_zoomed(big, sent):
    big.zoom, big.pan = 4, (100, 50)
    drag(big, [(40, 40), (60, 40)])
    painted = np.asarray(big.mask).copy()
    big.invert()
    overlay = sent.images()[-1]
    assert overlay.shape == (200, 300, 4)
    visible = np.asarray(big.mask)[50:150, 100:250]
    assert np.array_equal(overlay[::2, ::2, 3] > 0, visible > 0), "the whole visible overlay, redrawn"
    big.undo()
    assert np.array_equal(np.asarray(big.mask), painted)
    big.clear()
    big.undo()
    assert np.array_equal(np.asarray(big.mask), painted)
    big._buttons["fit"].click()
    assert (big.zoom, big.pan) == (1, (0, 0))
    assert sent.images()[0].shape == (200, 300, 3) and "1.00x" in big._zoom_readout.value, "a quick JPEG frame"
    big._layers[2]._handle_frontend_event(None, {"event": "client_ready"}, [])
    assert sent.images()[0].shape == (200, 300, 4), "a whole redraw is lossless"
    big._buttons["zoom_in"].click()
    assert big.zoom == 1.5 and big.pan == pytest.approx((100, 400 / 6))
    big._buttons["zoom_out"].click()
    assert big.zoom == 1
    big.zoom, big.pan = 4, (100, 50)
    loaded = np.zeros((400, 600), np.uint8)
    loaded[60:70, 110:130] = 255
    big.load_mask(loaded)
    overlay = sent.images()[-1]
    assert np.array_equal(np.asarray(big.mask), loaded) and overlay.shape == (200, 300, 4)
    assert np.array_equal(overlay[::2, ::2, 3] > 0, loaded[50:150, 100:250] > 0), "loaded, shown zoomed"
    big.set_image(Image.new("RGB", (300, 200)))
    assert (big.zoom, big.pan) == (1, (0, 0)), "a new image is shown whole"


def test_zoom_and_pan_are_validated(big):
    big.zoom = 0.1
    assert big.zoom == 1
    big.zoom = 1e9
    assert big.zoom == 32, "16 canvas px per image px: 600 px image on a 300 px canvas"
    big.pan = (-10, 1e9)
    assert big.pan == (0, 400 - 400 / 32)
    big.zoom = 2
    x0, y0, x1, y1 = big.viewport.visible
    assert x0 >= 0 and x1 <= 600 and y0 >= 0 and y1 <= 400


def test_a_pan_that_cannot_move_sends_no_image(big, sent):
    key(big, " ")
    browser_drag(big, [(100, 100), (150, 120), (200, 140)])  # at fit there is nowhere to pan to
    puts = [c for _, c in sent.targeted() if c[0] == PUT_IMAGE_DATA]
    assert big.pan == (0, 0) and puts == [], "no frame re-encoded for a view that did not change"
