"""Seam and colour repair: the ΔE measure, each repair on a known colour shift, the request field on the one run
path, its recipe, panel control and Show code."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import nbinpaint
from nbinpaint import codegen, samples, seams
from nbinpaint.bench.seams import SHIFT, known_shift
from nbinpaint.errors import InvalidRequestError
from nbinpaint.pipeline_manager import PipelineManager
from nbinpaint.pnginfo import parameters_text
from nbinpaint.recipes import RecipeError, load_recipe, parse_recipe, request_from_recipe
from nbinpaint.requests import InpaintRequest
from tests.conftest import make_scene

SD_INPAINT = "runwayml/stable-diffusion-inpainting"


@pytest.fixture(scope="module")
def shared(twins_dir) -> PipelineManager:
    return PipelineManager(device="cpu")


@pytest.fixture(scope="module")
def photo():
    """A small photo and its mask (the cat's face), and the photo with the masked area shifted by `SHIFT`."""
    shifted, original, mask = known_shift()
    size = (224, 148)
    small = samples.load("chelsea", size)
    return shifted.resize(size, Image.Resampling.NEAREST), small.image, small.mask, original, mask


def shift_inside(image: Image.Image, mask: Image.Image, shift) -> Image.Image:
    rgb, inside = np.asarray(image).astype(np.int16), np.asarray(mask) > 127
    rgb[inside] += np.asarray(shift, np.int16)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def noisy(image: Image.Image, seed: int = 3) -> Image.Image:
    """``image`` with noise everywhere: a stand-in for a pipeline output that changed the unmasked area too."""
    rng = np.random.default_rng(seed)
    rgb = np.asarray(image).astype(np.int16) + rng.integers(-20, 21, np.asarray(image).shape)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


# -- the measure ----------------------------------------------------------------------------------------------


def test_delta_e_is_zero_on_an_untouched_image_and_grows_with_the_shift(photo):
    _, image, mask, _, _ = photo
    assert seams.boundary_delta_e(image, image, mask) < 1e-6
    figures = [seams.boundary_delta_e(shift_inside(image, mask, (k, -k, -k)), image, mask) for k in (2, 5, 10, 20, 40)]
    assert figures == sorted(figures) and figures[0] > 0.5 and figures[-1] > 15
    # the picture's own step across the edge is not a seam: a sharp-edged scene, untouched, is 0 too
    hard = np.zeros((64, 64, 3), np.uint8)
    hard[16:48, 16:48] = (250, 20, 20)
    square = Image.fromarray(np.where(hard[..., 0] > 0, 255, 0).astype(np.uint8), "L")
    assert seams.boundary_delta_e(Image.fromarray(hard), Image.fromarray(hard), square) < 1e-6


def test_delta_e_needs_an_edge_and_one_size(photo):
    _, image, mask, _, _ = photo
    assert seams.boundary_delta_e(image, image, Image.new("L", image.size)) == 0.0
    assert seams.boundary_delta_e(noisy(image), image, Image.new("L", image.size, 255)) == 0.0
    with pytest.raises(InvalidRequestError, match="the mask is 10x10"):
        seams.boundary_delta_e(image, image, Image.new("L", (10, 10)))
    with pytest.raises(InvalidRequestError, match="original is 10x10"):
        seams.boundary_delta_e(image, image.resize((10, 10)), mask)


# -- each repair on the known shift -------------------------------------------------------------------------------


def test_each_repair_on_the_known_shift():
    shifted, original, mask = known_shift()
    before = seams.boundary_delta_e(shifted, original, mask)
    assert before > 5
    after = {m: seams.boundary_delta_e(seams.repair(shifted, original, mask, m), original, mask) for m in seams.METHODS}
    assert after["match"] <= 0.5 * before  # the bar: histogram matching at least halves it
    assert after["poisson"] <= 0.5 * before
    # overlay restores what is outside the mask, which the known shift left as it was: nothing to change
    assert after["overlay"] == pytest.approx(before)
    assert seams.repair(shifted, original, mask, "overlay").tobytes() == shifted.tobytes()


@pytest.mark.parametrize("method", ["match", "poisson", "overlay"])
def test_black_pixels_are_never_changed(photo, method):
    """match keeps the image's own unmasked pixels; poisson and overlay put the original's there (their point)."""
    _, image, mask, _, _ = photo
    picture = noisy(shift_inside(image, mask, SHIFT))
    repaired = np.asarray(seams.repair(picture, image, mask, method))
    keep = np.asarray(mask) == 0
    expected = np.asarray(picture if method == "match" else image)
    assert np.array_equal(repaired[keep], expected[keep])
    inside = ~keep
    assert not np.array_equal(repaired[inside], np.asarray(image)[inside])  # the repainted area stays repainted


def test_match_follows_a_feathered_mask(photo):
    _, image, mask, _, _ = photo
    picture = shift_inside(image, mask, SHIFT)
    grey = Image.fromarray((np.asarray(mask) // 255 * 192).astype(np.uint8), "L")  # 192 where white
    hard = np.asarray(seams.repair(picture, image, mask, "match")).astype(int)
    soft = np.asarray(seams.repair(picture, image, grey, "match")).astype(int)
    inside = np.asarray(mask) > 0
    # the same mapping (grey above half counts as inside), blended in by the grey level
    correction, partial = hard - np.asarray(picture).astype(int), soft - np.asarray(picture).astype(int)
    assert np.abs(correction[inside]).mean() > 10
    assert np.abs(partial[inside] - correction[inside] * 192 / 255).max() <= 1


def test_poisson_handles_border_and_empty_masks(photo):
    _, image, _, _, _ = photo
    picture = noisy(shift_inside(image, Image.new("L", image.size, 255), SHIFT), seed=4)  # new detail everywhere
    top = np.zeros(image.size[::-1], np.uint8)
    top[:20, 40:120] = 255  # touches the top border
    repaired = np.asarray(seams.repair(picture, image, Image.fromarray(top), "poisson")).astype(int)
    original = np.asarray(image).astype(int)
    # the border is no edge: the top rows get the new detail (seamlessClone alone keeps the original there)
    assert (repaired[:2, 42:118] != original[:2, 42:118]).any(-1).mean() > 0.9
    assert (repaired[19, 42:118] == original[19, 42:118]).all()  # the mask's own edge is the original's
    assert abs((repaired[:20, 40:120] - original[:20, 40:120]).mean()) < 3  # the shift is gone: levelled
    empty = Image.new("L", image.size)
    assert seams.repair(picture, image, empty, "poisson").tobytes() == image.tobytes()
    assert seams.repair(picture, image, empty, "match").tobytes() == picture.tobytes()
    full = Image.new("L", image.size, 255)
    assert seams.repair(picture, image, full, "match").tobytes() == picture.tobytes()  # no edge to match across
    assert seams.repair(picture, image, full, "poisson").size == image.size


@pytest.mark.parametrize(("width", "height"), [(64, 48), (65, 49)])
def test_poisson_keeps_the_picture_in_place(width, height):
    """src == dst comes back as it was, up to the solver's rounding (a level): a clone placed one pixel off
    would differ by about 85 levels on this noise."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    for box in ((5, 7, 30, 40), (0, 0, 31, 20), (10, 3, width, height)):
        inside = np.zeros((height, width), bool)
        inside[box[1] : box[3], box[0] : box[2]] = True
        assert np.abs(seams.poisson_blend(rgb, rgb, inside).astype(int) - rgb).max() <= 1


# -- names -------------------------------------------------------------------------------------------------------


def test_bad_method_names_say_did_you_mean(photo):
    _, image, mask, _, _ = photo
    with pytest.raises(InvalidRequestError, match="did you mean match"):
        seams.repair(image, image, mask, "mach")
    with pytest.raises(InvalidRequestError, match="did you mean poisson"):
        nbinpaint.repair_seams(image, image, mask, "poison")
    with pytest.raises(InvalidRequestError, match=r"seam_repair='overlap' is invalid \(did you mean overlay\?\)"):
        InpaintRequest(image=image, mask=mask, seam_repair="overlap").validated()
    with pytest.raises(InvalidRequestError, match="'match', 'poisson', 'overlay', or None"):
        InpaintRequest(image=image, mask=mask, seam_repair=3).validated()
    with pytest.raises(InvalidRequestError, match="inpainting result's pixels"):
        InpaintRequest(image=image, task="img2img", seam_repair="match").validated()
    with pytest.raises(InvalidRequestError, match="output_type='pil'"):
        InpaintRequest(image=image, mask=mask, output_type="latent", seam_repair="match").validated()


# -- on the run path ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(shared):
    """method -> the SD twin's result with that seam_repair (None: none), one seed and scene."""
    image, mask = make_scene(64, seed=5)
    base = InpaintRequest(prompt="moss", image=image, mask=mask, model=SD_INPAINT, steps=2, seed=7)
    return {m: shared.run(base.replace(seam_repair=m)) for m in (None, *seams.METHODS)}


@pytest.mark.parametrize("method", seams.METHODS)
def test_the_run_applies_the_repair_and_repair_seams_repeats_it(runs, method):
    plain, repaired = runs[None], runs[method]
    request = plain.request
    assert repaired.request.seam_repair == method and repaired.recipe["parameters"]["seam_repair"] == method
    assert repaired.image.tobytes() == seams.repair(plain.image, request.image, request.mask, method).tobytes()
    again = nbinpaint.repair_seams(plain, method=method)
    assert again.image.tobytes() == repaired.image.tobytes()
    assert again.request.seam_repair == method and again.recipe["parameters"] == repaired.recipe["parameters"]
    assert plain.recipe["parameters"]["seam_repair"] is None  # the original result is left as it was
    with pytest.raises(InvalidRequestError, match="already had seam_repair"):
        nbinpaint.repair_seams(repaired, method="match")
    with pytest.raises(InvalidRequestError, match="carries its own original and mask"):
        nbinpaint.repair_seams(plain, request.image, request.mask, method)
    from_latents = dataclasses.replace(plain, request=request.replace(image=None))  # a chain stage's result
    with pytest.raises(InvalidRequestError, match="holds no original picture"):
        nbinpaint.repair_seams(from_latents, method=method)


def test_recipe_round_trip_and_a1111_text(runs, shared, tmp_path):
    result = runs["poisson"]
    path = result.save(tmp_path / "poisson.png")
    recipe = load_recipe(path)
    assert recipe["parameters"]["seam_repair"] == "poisson"
    assert "Seam repair: poisson" in parameters_text(recipe)
    assert "Seam repair" not in parameters_text(runs[None].recipe)
    request = request_from_recipe(recipe, image=result.request.image, mask=result.request.mask)
    assert request.seam_repair == "poisson"
    assert shared.run(request).image.tobytes() == result.image.tobytes()
    broken = {**recipe, "parameters": {**recipe["parameters"], "seam_repair": "poison"}}
    with pytest.raises(RecipeError, match="seam_repair"):
        parse_recipe(broken)


def test_panel_control_restores_from_a_recipe(runs, shared):
    from nbinpaint.history import History
    from nbinpaint.widgets.panel import ParameterPanel

    image, mask = runs[None].request.image, runs[None].request.mask
    panel = ParameterPanel(image, mask, manager=shared, history=History(output=False), seam_repair="match")
    try:
        control = panel.controls["seam_repair"]
        assert tuple(control.options) == ("none", *seams.METHODS) and control.value == "match"
        assert "histogram matching" in panel.controls["seam_repair"].tooltip
        assert panel.request().seam_repair == "match"
        control.value = "none"
        assert panel.request().seam_repair is None
        panel.apply_request(runs["overlay"].request, runs["overlay"].recipe)
        assert control.value == "overlay" and panel.request().seam_repair == "overlay"
    finally:
        panel.detach()


# -- Show code ---------------------------------------------------------------------------------------------------

RUNNER = """
import os, runpy, sys, traceback
for folder in sys.argv[1:]:
    os.chdir(folder)
    try:
        runpy.run_path("reproduce.py", run_name="__main__")
    except BaseException:
        with open("error.txt", "w") as error:
            error.write(traceback.format_exc())
"""


def test_show_code_reproduces_the_repaired_pixels(runs, shared, twins_dir, tmp_path):
    image, mask = make_scene(67, seed=2)
    cases = {m: runs[m] for m in seams.METHODS}
    cases["telea_match_overlaid"] = shared.run(
        InpaintRequest(image=image, mask=mask, model="classical/telea", preserve_unmasked=True, seam_repair="match")
    )
    folders = {}
    for name, result in cases.items():
        folders[name] = tmp_path / name
        codegen.export(result, folders[name])
    texts = {name: (folder / codegen.SCRIPT_FILE).read_text() for name, folder in folders.items()}
    assert "def match_colours(" in texts["match"] and "match_histograms" in texts["match"]
    assert "cv2.seamlessClone" in texts["poisson"] and "def match_colours(" not in texts["poisson"]
    assert texts["overlay"].count("apply_overlay(mask_image, init_image, image)") == 1
    assert all("import nbinpaint" not in text and "from nbinpaint" not in text for text in texts.values())
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(twins_dir)}
    env.pop("NBINPAINT_TWINS", None)
    subprocess.run([sys.executable, "-c", RUNNER, *map(str, folders.values())], env=env, timeout=300, check=True)
    for name, folder in folders.items():
        assert not (folder / "error.txt").exists(), (folder / "error.txt").read_text()
        with Image.open(folder / "result.png") as saved:
            assert np.array_equal(np.asarray(saved), np.asarray(cases[name].image)), name
