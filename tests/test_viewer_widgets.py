"""The viewer widgets, headless: grid layout and captions, clicks, downloads, the wipe, and the gallery.

Widgets are driven as the browser would drive them (ipyevents messages through ``_handle_msg``, slider
``set_state``, ``button.click()``), then their state and the bytes they would send are checked.
"""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from diffusers.utils import make_image_grid
from PIL import Image
from traitlets import TraitError

from nbinpaint import recipes
from nbinpaint.history import History
from nbinpaint.recipes import build_recipe
from nbinpaint.requests import InpaintRequest, InpaintResult
from nbinpaint.widgets import compare as compare_module
from nbinpaint.widgets.compare import CompareView, wipe
from nbinpaint.widgets.gallery import HistoryGallery
from nbinpaint.widgets.grid import GridError, ImageGrid, compose_grid, grid_shape
from nbinpaint.widgets.result import ResultView, shown_size
from tests.conftest import make_scene


def solid(value: int, size: tuple[int, int] = (64, 64)) -> Image.Image:
    return Image.new("RGB", size, (value, 255 - value, 40))


def click(event_widget) -> None:
    """What the browser sends when an ipyevents-watched element is clicked."""
    event_widget._handle_msg({"content": {"data": {"method": "custom", "content": {"type": "click"}}}, "buffers": []})


def decoded(link_html: str) -> Image.Image:
    """The image an HTML download anchor would save."""
    match = re.search(r'href="data:image/png;base64,([^"]+)"', link_html)
    assert match, link_html[:200]
    return Image.open(io.BytesIO(base64.b64decode(match.group(1))))


def fake_result(seed: int, strength: float = 0.8) -> InpaintResult:
    """A result without running a pipeline: the widgets only look at pixels, request and recipe."""
    image, mask = make_scene(64, seed=seed)
    request = InpaintRequest(prompt=f"p{seed}", image=image, mask=mask, steps=2, seed=seed, strength=strength)
    request = request.validated()
    output = Image.fromarray(255 - np.asarray(image))
    return InpaintResult([output], request, seed, {}, build_recipe(request, object(), run_size=(64, 64)))


# -- grid layout ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "rows", "cols", "expected"),
    [
        (5, 2, None, (2, 3)),
        (5, None, 2, (3, 2)),
        (5, None, None, (2, 3)),
        (9, None, None, (3, 3)),
        (1, None, None, (1, 1)),
        (7, 3, 3, (3, 3)),
    ],
)
def test_grid_shape_for_uneven_counts(count, rows, cols, expected):
    assert grid_shape(count, rows, cols) == expected


def test_grid_shape_refuses_a_grid_too_small():
    with pytest.raises(GridError, match="5 images do not fit 2 rows x 2 columns"):
        grid_shape(5, 2, 2)


def test_five_images_in_two_rows_with_captions_in_order():
    images = [solid(v) for v in (0, 50, 100, 150, 200)]
    grid = ImageGrid(images, rows=2, captions=[f"cell {i}" for i in range(5)], cell_size=96)
    assert grid.shape == (2, 3)
    assert grid.positions() == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    cells = grid._grid.children
    assert len(cells) == 6 and grid._grid.layout.grid_template_columns == "repeat(3, 96px)"
    shown = [cell.children[1].value for cell in cells[:5]]
    assert all(f"cell {i}" in text for i, text in enumerate(shown))
    assert cells[5].children == () and grid._events[4] is not None
    picture = cells[3].children[0]
    assert (picture.layout.width, picture.layout.height) == ("96px", "96px")  # explicit size, even for 64 px
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(picture.value))), np.asarray(images[3]))


def test_a_shape_too_small_is_refused_and_the_grid_kept():
    grid = ImageGrid([solid(0)] * 5, rows=2)
    with pytest.raises(TraitError, match="5 images do not fit 2 rows x 2 columns"):
        grid.cols = 2
    with pytest.raises(TraitError, match="7 images given"):
        ImageGrid([solid(0)] * 5, rows=2, cols=3).images = [solid(0)] * 7
    assert grid.cols is None and grid.shape == (2, 3) and len(grid._grid.children) == 6


def test_axis_labels_add_a_label_row_and_column():
    grid = ImageGrid([solid(0)] * 4, rows=2, col_labels=["x=1", "x=2"], row_labels=["y=a", "y=b"])
    children = grid._grid.children
    assert len(children) == 3 + 2 * 3  # corner + two column labels, then a label and two cells per row
    assert "x=2" in children[2].value and "y=b" in children[6].value
    assert grid._grid.layout.grid_template_columns.startswith("max-content repeat(2,")


def test_click_enlarges_and_offers_the_image_with_its_recipe():
    images = [solid(v) for v in (0, 80, 160)]
    recipe = {"nbinpaint_recipe": 1, "parameters": {"prompt": "x"}, "seed": 3}
    grid = ImageGrid(images, recipes=[None, recipe, None], captions=["a", "b", "c"])
    assert grid.selected == -1 and grid._enlarged.layout.display == "none"
    click(grid._events[1])
    assert grid.selected == 1 and grid._enlarged.layout.display == "flex"
    downloaded = decoded(grid._big_download.value)
    assert np.array_equal(np.asarray(downloaded), np.asarray(images[1]))
    assert recipes.load_recipe(downloaded) == recipe
    click(grid._events[1])  # a second click on the same image closes the view
    assert grid.selected == -1
    click(grid._events[2])
    grid._close.click()
    assert grid.selected == -1 and grid._big.value == b""


def test_selected_refuses_empty_and_missing_cells():
    grid = ImageGrid([solid(0), None])
    assert grid._events[1] is None  # an empty cell is not clickable
    with pytest.raises(TraitError, match="no image in that cell"):
        grid.selected = 1
    with pytest.raises(TraitError):
        grid.selected = 5


def test_grid_download_and_save_are_make_image_grid(tmp_path):
    images = [solid(v) for v in (0, 60, 120, 180, 240)]
    grid = ImageGrid(images, rows=2)
    reference = make_image_grid([*images, Image.new("RGB", (64, 64), (236, 236, 236))], rows=2, cols=3)
    assert np.array_equal(np.asarray(decoded(grid._download.value)), np.asarray(reference))
    grid.save(tmp_path / "grid.png")
    with Image.open(tmp_path / "grid.png") as saved:
        assert np.array_equal(np.asarray(saved), np.asarray(reference))
    assert 'download="nbinpaint-grid.png"' in grid._download.value


def test_compose_with_labels_places_cells_after_the_margins():
    images = [solid(10, (32, 48)), solid(200, (64, 64))]  # the second is resized to the first's size
    composed = compose_grid(images, 1, 2, col_labels=["a", "b"], row_labels=["row"])
    left, top = composed.width - 64, composed.height - 48
    assert left > 0 and top > 0
    pixels = np.asarray(composed)
    assert (pixels[top + 5, left + 5] == (10, 245, 40)).all() and (pixels[top + 5, left + 40] == (200, 55, 40)).all()


def test_rebuild_closes_replaced_widgets():
    grid = ImageGrid([solid(0), solid(1)])
    old_picture, old_event = grid._grid.children[0].children[0], grid._events[0]
    grid.images = [solid(2)]
    assert old_picture.comm is None and old_event.comm is None and len(grid._grid.children) == 1


def test_a_growing_grid_keeps_the_cells_it_already_shows_and_their_clicks_follow_the_images():
    images = [solid(v) for v in (0, 60, 120)]
    grid = ImageGrid(images[1:], captions=["b", "c"])
    kept = {id(image): cell.widget for image, cell in zip(images[1:], grid._kept, strict=True)}
    grid.set_images(images, captions=["a", "b", "c"])  # a gallery's new entry comes first: the others shift
    assert [id(cell.widget) for cell in grid._kept[1:]] == [id(kept[id(image)]) for image in images[1:]]
    assert all(widget.comm is not None for widget in kept.values())  # reused, so still open
    click(grid._events[2])  # the reused cell now third: its click selects index 2, not its old 1
    assert grid.selected == 2
    click(grid._events[2])
    grid.set_images(images, captions=["a", "b", "renamed"])  # a new caption is a new cell
    assert grid._kept[2].widget is not kept[id(images[2])] and kept[id(images[2])].comm is None


def test_the_same_image_twice_gets_two_cells_and_none_leaks_when_it_goes():
    image = solid(30)
    grid = ImageGrid([image, image])
    first, second = grid._kept
    assert first.widget is not second.widget
    grid.set_images([image, image])
    assert [cell.widget for cell in grid._kept] == [first.widget, second.widget]
    grid.set_images([solid(90)])
    assert all(w.comm is None for cell in (first, second) for w in (cell.widget, cell.click))


def test_closing_a_grid_closes_its_cells_and_click_watchers():
    grid = ImageGrid([solid(0), solid(1)])
    picture, watcher = grid._grid.children[0].children[0], grid._events[0]
    grid.close()
    assert picture.comm is None and watcher.comm is None and grid.comm is None


# -- before/after wipe -------------------------------------------------------------------------------------


def test_wipe_takes_columns_left_of_the_split_from_before():
    before = np.zeros((4, 100, 3), np.uint8)
    after = np.full((4, 100, 3), 200, np.uint8)
    frame = wipe(before, after, 0.3, divider=False)
    assert (frame[:, :30] == 0).all() and (frame[:, 30:] == 200).all()
    assert (wipe(before, after, 0.0) == after).all() and (wipe(before, after, 1.0) == before).all()
    lined = wipe(before, after, 0.5)
    assert (lined[:, 49:51] == 255).all() and (lined[:, 48] == 0).all() and (lined[:, 52:] == 200).all()


def test_compare_slider_recomposes_from_cached_arrays(monkeypatch):
    before, after = solid(0, (80, 40)), solid(250, (160, 80))  # after is resized to line up with before
    view = CompareView(before, after)
    prepared = []

    def rebuilt(*args):
        prepared.append(args)
        raise AssertionError("the display arrays must not be rebuilt on a slider move")

    monkeypatch.setattr(compare_module, "display_arrays", rebuilt)
    frames = set()
    for value in (0.25, 0.5, 0.75):
        view._slider.set_state({"value": value})  # as the browser sends a drag
        frames.add(view._view.value)
        split = round(value * 80)
        frame = np.asarray(view.frame())  # the composition is exact
        assert (frame[:, : split - 2] == (0, 255, 40)).all() and (frame[:, split + 2 :] == (250, 5, 40)).all()
        shown = np.asarray(Image.open(io.BytesIO(view._view.value))).astype(int)  # what the view sends: JPEG
        assert shown.shape == frame.shape
        # JPEG rings within one 8 px block of the divider; elsewhere it stays within a few levels.
        assert np.abs(shown[:, : split - 8] - (0, 255, 40)).max() <= 3
        assert np.abs(shown[:, split + 8 :] - (250, 5, 40)).max() <= 3
    assert view.position == 0.75 and len(frames) == 3 and prepared == []
    assert (view._view.layout.width, view._view.layout.height) == ("512px", "256px")


def test_compare_clamps_position_and_picks_between_any_two():
    a, b, c = solid(0), solid(100), solid(200)
    view = CompareView(choices={"base": a, "first": b, "second": c})
    assert view.before is a and view.after is c  # first and last choice by default
    view.pick("first", "second")
    assert view.before is b and view.after is c and view.before_label == "first"
    view._pick_before.value = "base"  # as the dropdown does
    assert view.before is a
    view.position = 3.0
    assert view.position == 1.0
    with pytest.raises(KeyError, match="no choice 'other'"):
        view.pick("other", "base")


# -- history gallery ----------------------------------------------------------------------------------------


def test_gallery_follows_history_and_its_buttons_call_the_hooks():
    history = History(output=False)
    gallery = HistoryGallery(history, columns=2)
    assert gallery._empty.layout.display == "block" and gallery.buttons["restore"].disabled
    results = [fake_result(seed) for seed in (1, 2, 3)]
    for result in results:
        history.add(result)
    assert gallery.grid.images == [r.image for r in results] and gallery.grid.shape == (2, 2)
    assert gallery.grid.captions[1] == "“p2” s=0.8 steps=2 seed=2"

    click(gallery.grid._events[1])  # selecting a thumbnail selects the history entry
    assert history.selected_index == 1 and not gallery.buttons["restore"].disabled
    assert "Seed: 2" in gallery._details.value
    restored = []
    history.on_restore(lambda request, result: restored.append((request, result)))
    gallery.buttons["restore"].click()
    assert restored[0][1] is results[1]
    assert np.array_equal(np.asarray(restored[0][0].mask), np.asarray(results[1].request.mask))

    gallery.buttons["compare"].click()
    assert gallery.compare.layout.display == "flex"
    assert gallery.compare.before is results[1].request.image and gallery.compare.after is results[1].image

    history.select(0)  # the model drives the view as well
    assert gallery.grid.selected == 0 and gallery.compare.after is results[0].image
    gallery.buttons["remove"].click()
    assert len(history) == 2 and gallery.grid.images == [results[1].image, results[2].image]
    assert gallery.grid.selected == -1 and gallery.buttons["restore"].disabled
    gallery.close()
    history.add(fake_result(4))
    assert len(gallery.grid.images) == 2  # a closed gallery no longer follows


# -- ResultView --------------------------------------------------------------------------------------------------


def test_shown_size_fits_the_box_and_keeps_the_aspect():
    assert shown_size((448, 296), 384, 512) == (384, 254)
    assert shown_size((64, 64), 384, 512) == (384, 384), "small results are enlarged to be seen"
    assert shown_size((300, 900), 384, 300) == (100, 300)


def test_result_view_reserves_its_box_shows_previews_then_the_result():
    view = ResultView(max_width=384, max_height=296)
    view.reserve((448, 296))
    assert view.size == (384, 254)
    assert view._placeholder.layout.display == "block" and view.image.layout.display == "none"
    assert view.toggle.disabled, "nothing to toggle before a result"

    view.show_preview(solid(10, (448, 296)))
    assert view.preview.layout.display == "block" and view._placeholder.layout.display == "none"
    view.end_preview()  # cancelled: back to the placeholder
    assert view.preview.layout.display == "none" and view._placeholder.layout.display == "block"

    before, after = solid(10, (448, 296)), solid(200, (448, 296))
    view.set_result(before, after, "Telea fill")
    assert view.image.layout.display == "block" and view.size == (384, 254)
    assert Image.open(io.BytesIO(view.image.value)).size == (384, 254)
    assert "Telea fill" in view._caption.value
    result_bytes = view.image.value
    view.toggle.value = "before"
    assert view.image.value != result_bytes
    view.set_result(before, solid(100, (448, 296)))
    assert view.showing == "result", "a new result is shown as the result"


def test_two_grids_showing_one_image_encode_its_thumbnail_once(monkeypatch):
    from nbinpaint.widgets import grid as grid_module

    encoded = []
    original = grid_module.thumbnail
    monkeypatch.setattr(grid_module, "thumbnail", lambda *a, **k: encoded.append(1) or original(*a, **k))
    image = solid(90, (300, 200))
    first, second = ImageGrid([image], cell_size=120), ImageGrid([image], cell_size=120)
    assert len(encoded) == 1
    assert first._grid.children[0].children[0].value == second._grid.children[0].children[0].value
    ImageGrid([image], cell_size=80)  # another size is its own thumbnail
    assert len(encoded) == 2


def test_a_paused_compare_view_draws_only_when_unpaused():
    before, after = solid(10, (200, 100)), solid(200, (200, 100))
    view = CompareView(paused=True)
    view.set_pair(before, after)
    assert view.after is after and view._view.value == b""  # nothing encoded while hidden
    view.paused = False
    assert Image.open(io.BytesIO(view._view.value)).size == (200, 100) and view._view.layout.width == "512px"
