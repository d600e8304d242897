"""The history model: entries, selection, the studio's hooks, autosave, and reloading in a fresh kernel."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from nbinpaint import notices, recipes
from nbinpaint.history import DEFAULT_OUTPUT, OUTPUT_ENV, History, output_folder
from nbinpaint.pipeline_manager import PipelineManager
from nbinpaint.requests import InpaintRequest
from tests.conftest import make_scene

ROOT = Path(__file__).resolve().parents[1]
SD_INPAINT = "runwayml/stable-diffusion-inpainting"


@pytest.fixture(scope="module")
def shared(twins_dir) -> PipelineManager:
    return PipelineManager(device="cpu")


def run(manager: PipelineManager, seed: int, **changes):
    image, mask = make_scene(64, seed=seed)
    request = InpaintRequest(prompt=f"scene {seed}", image=image, mask=mask, steps=2, seed=seed, model=SD_INPAINT)
    return manager.run(request.replace(**changes))


def test_output_folder_argument_env_default_and_off(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(OUTPUT_ENV, raising=False)
    # By default, the user's data folder: never the working directory, where the lessons are.
    import platformdirs

    assert output_folder() == platformdirs.user_data_path("nbinpaint") / DEFAULT_OUTPUT
    assert tmp_path not in output_folder().parents
    monkeypatch.setenv(OUTPUT_ENV, str(tmp_path / "elsewhere"))
    assert output_folder() == tmp_path / "elsewhere"
    assert output_folder(tmp_path / "given") == tmp_path / "given"
    monkeypatch.setenv(OUTPUT_ENV, "off")
    assert output_folder() is None and History().output is None
    assert output_folder(False) is None


def test_autosave_writes_image_mask_and_recipe(shared, tmp_path):
    history = History(output=tmp_path)
    result = run(shared, 1)
    (entry,) = history.add(result)
    assert entry.id == "00001-seed1" and (tmp_path / entry.files["result"]).is_file()
    assert recipes.load_recipe(tmp_path / entry.files["result"]) == entry.recipe
    assert {k: v for k, v in entry.recipe.items() if k != "inputs"} == result.recipe
    with Image.open(tmp_path / entry.files["mask"]) as mask:
        assert np.array_equal(np.asarray(mask), np.asarray(result.request.mask))
    with Image.open(tmp_path / entry.files["result"]) as saved:
        assert np.array_equal(np.asarray(saved), np.asarray(result.image))


def test_restore_calls_back_with_the_exact_request(shared, tmp_path):
    history = History(output=False)
    first, second = run(shared, 1), run(shared, 2, strength=0.7, guidance_scale=3.0)
    history.add(first)
    history.add(second)
    received = []

    def callback(request, result):
        received.append((request, result))

    history.on_restore(callback)
    history.select(1)
    history.restore()
    ((request, result),) = received
    assert result is second and request.parameters() == second.request.parameters()
    assert request.strength == 0.7 and request.seed == 2
    assert np.array_equal(np.asarray(request.mask), np.asarray(make_scene(64, seed=2)[1]))
    assert np.array_equal(np.asarray(request.image), np.asarray(make_scene(64, seed=2)[0]))
    history.on_restore(callback, remove=True)
    history.restore(0)
    assert len(received) == 1


def test_use_as_base_and_send_to_img2img_build_runnable_requests(shared):
    history = History(output=False)
    (entry,) = history.add(run(shared, 3, blur_factor=4.0, preserve_unmasked=True))
    bases, img2img = [], []
    history.on_use_as_base(lambda request, result: bases.append(request))
    history.on_send_to_img2img(lambda request, result: img2img.append(request))
    history.use_as_base(entry)
    history.send_to_img2img(entry.id)
    assert bases[0].image is entry.image and bases[0].mask is entry.request.mask and bases[0].seed is None
    sent = img2img[0].validated()  # inpainting-only settings were cleared, so it validates as img2img
    assert sent.task == "img2img" and sent.mask is None and not sent.preserve_unmasked
    assert np.array_equal(np.asarray(sent.image), np.asarray(entry.image))


def test_selection_follows_removal_and_state_is_json(shared):
    history = History(output=False)
    results = [run(shared, seed) for seed in (1, 2, 3)]
    for result in results:
        history.add(result)
    selections = []
    history.on_select(selections.append)
    history.select("mem-3")
    history.remove(0)
    assert history.selected_index == 1 and history.selected.result is results[2]
    history.remove(history.selected)
    assert history.selected is None and len(history) == 1
    state = json.loads(json.dumps(history.to_json()))
    assert [e["id"] for e in state["entries"]] == ["mem-2"] and state["selected"] is None
    assert selections[0].id == "mem-3"
    with pytest.raises(KeyError, match="no history entry 'mem-9'"):
        history.select("mem-9")


def test_autosave_failure_warns_once_and_keeps_the_result(shared, tmp_path, capsys):
    notices.reset()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    history = History(output=blocker / "out")
    history.add(run(shared, 1))
    history.add(run(shared, 2))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("nbinpaint: autosave")]
    assert len(lines) == 1 and "failed" in lines[0] and "stays in memory" in lines[0]
    assert [e.id for e in history] == ["mem-1", "mem-2"] and history[1].files == {}


_FRESH_KERNEL = """
import hashlib, json, sys
import numpy as np
from nbinpaint.history import History
from nbinpaint.widgets.gallery import HistoryGallery
history = History.load(sys.argv[1])
gallery = HistoryGallery(history)
restored = []
history.on_restore(lambda request, result: restored.append(request))
history.restore(0)
print(json.dumps({
    "state": history.to_json(),
    "pixels": [hashlib.sha256(np.asarray(e.image).tobytes()).hexdigest() for e in history],
    "masks": [hashlib.sha256(np.asarray(e.request.mask).tobytes()).hexdigest() for e in history],
    "captions": list(gallery.grid.captions),
    "restored": restored[0].parameters(),
}))
"""


def digest(image: Image.Image) -> str:
    return hashlib.sha256(np.asarray(image).tobytes()).hexdigest()


def test_history_load_rebuilds_the_same_gallery_in_a_fresh_kernel(shared, tmp_path):
    history = History(output=tmp_path)
    history.add(run(shared, 1))
    history.add(run(shared, 2, strength=0.8))
    Image.new("RGB", (8, 8)).save(tmp_path / "a-grid-saved-by-hand.png")  # no recipe: skipped, not fatal
    env = {**os.environ, "NBINPAINT_OUTPUT": "off"}
    done = subprocess.run(
        [sys.executable, "-c", _FRESH_KERNEL, str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded["state"]["entries"] == history.to_json()["entries"]
    assert loaded["state"]["output"] == str(tmp_path)
    assert loaded["pixels"] == [digest(e.image) for e in history]
    assert loaded["masks"] == [digest(e.request.mask) for e in history]
    assert loaded["captions"] == [e.caption for e in history]
    assert loaded["restored"] == history[0].request.parameters()
    assert "skipped 1 PNG(s)" in done.stdout and "a-grid-saved-by-hand.png" in done.stdout


def test_loaded_entries_share_inputs_and_keep_autosaving(shared, tmp_path):
    history = History(output=tmp_path)
    result = run(shared, 5)
    history.add(result)
    history.add(run(shared, 5, strength=0.5))
    loaded = History.load(tmp_path)
    assert loaded[0].request.mask is loaded[1].request.mask  # one file, one image in memory
    assert loaded[0].request.parameters() == result.request.parameters()
    loaded.add(run(shared, 6))
    assert loaded[2].id == "00003-seed6"


def test_several_images_of_one_result_reload_in_order(shared, tmp_path):
    history = History(output=tmp_path)
    entries = history.add(run(shared, 9, num_images=2))
    assert [e.id for e in entries] == ["00001-seed9-0", "00001-seed9-1"]
    assert [e.recipe["image_index"] for e in entries] == [0, 1]
    assert not np.array_equal(np.asarray(entries[0].image), np.asarray(entries[1].image))
    loaded = History.load(tmp_path)
    assert loaded.to_json()["entries"] == history.to_json()["entries"]
    names = [Path(n) for n in ("00002-seed1-10.png", "00010-seed1.png", "00002-seed1-9.png", "00001-seed5.png")]
    assert [p.name for p in sorted(names, key=recipes.saved_order)] == [
        "00001-seed5.png",
        "00002-seed1-9.png",
        "00002-seed1-10.png",
        "00010-seed1.png",
    ]


def rewrite_recipe(path: Path, change) -> None:
    """Edit a saved PNG's recipe by hand, as someone sharing it could: same pixels, recipe ``change(recipe)``."""
    recipe = recipes.load_recipe(path)
    with Image.open(path) as opened:
        pixels = opened.convert("RGB")
    info = PngInfo()
    info.add_text(recipes.RECIPE_KEY, json.dumps(change(recipe)), zip=True)
    pixels.save(path, format="PNG", pnginfo=info)


def test_one_hand_edited_png_is_skipped_and_every_other_restored(shared, tmp_path, capsys):
    history = History(output=tmp_path)
    for seed in (1, 2, 3, 4):
        history.add(run(shared, seed))
    rewrite_recipe(tmp_path / "00002-seed2.png", lambda recipe: {**recipe, "seed": [1]})
    rewrite_recipe(tmp_path / "00003-seed3.png", lambda recipe: {**recipe, "versions": "all of them"})
    notices.reset()
    loaded = History.load(tmp_path)
    assert [entry.id for entry in loaded] == ["00001-seed1", "00004-seed4"]
    assert [entry.recipe for entry in loaded] == [history[0].recipe, history[3].recipe]
    out = capsys.readouterr().out
    assert f"skipped 2 PNG(s) in {tmp_path} and restored 2: 00002-seed2.png (entry 'seed'), " in out
    assert "00003-seed3.png (entry 'versions')" in out and "'seed' must be a number or null, not a list ([1])" in out


def test_deleting_the_output_folder_mid_session_never_repeats_an_entry_id(shared, tmp_path):
    import shutil

    folder = tmp_path / "out"
    history = History(output=folder)
    result = run(shared, 42)
    (first,) = history.add(result)
    shutil.rmtree(folder)  # the user tidies up while the kernel keeps going
    (second,) = history.add(result)  # same seed, so the same file name but for its number
    assert first.id != second.id and second.id == "00002-seed42"
    assert history.index(second.id) == 1 and (folder / second.files["result"]).is_file()
    reloaded = History.load(folder)  # a history loaded from a folder continues its numbering too
    (third,) = reloaded.add(result)
    assert third.id == "00003-seed42"
