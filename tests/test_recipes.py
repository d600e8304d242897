"""Recipes in PNG files: exact round trip, A1111 summary, clear errors, saved inputs and rerun on the twins."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from nbinpaint import recipes, session
from nbinpaint.pipeline_manager import PipelineManager
from nbinpaint.recipes import RecipeError
from nbinpaint.requests import InpaintRequest
from tests.conftest import make_scene

SD_INPAINT = "runwayml/stable-diffusion-inpainting"


@pytest.fixture(scope="module")
def shared(twins_dir) -> PipelineManager:
    """One manager for the module: loading the twin once keeps these tests fast."""
    return PipelineManager(device="cpu")


@pytest.fixture(scope="module")
def result(shared):
    image, mask = make_scene(64)
    request = InpaintRequest(
        prompt="a castle, at dusk: “misty” 城",
        negative_prompt="blurry",
        image=image,
        mask=mask,
        steps=2,
        seed=7,
        strength=0.9,
        guidance_scale=6.5,
        model=SD_INPAINT,
    )
    return shared.run(request)


def test_recipe_round_trips_through_a_saved_png_exactly(result, tmp_path):
    path = tmp_path / "out.png"
    recipes.save_png(result.image, result.recipe, path)
    assert recipes.load_recipe(path) == result.recipe
    with Image.open(path) as opened:  # an opened image works as well as a path
        assert recipes.load_recipe(opened) == result.recipe
        assert np.array_equal(np.asarray(opened.convert("RGB")), np.asarray(result.image))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
# Entries of the recipe's own are checked by type (tests/test_recipe_safety.py); any other entry, such as a
# chain's or a caller's recipe_extra, is kept as it was when it is plain JSON.
unknown_keys = st.text(min_size=1, max_size=10).filter(lambda key: key not in recipes._FIELDS)


@settings(max_examples=40, deadline=None)
@given(extra=st.dictionaries(unknown_keys, json_values, max_size=5))
def test_any_json_recipe_round_trips(extra):
    recipe = {**extra, "nbinpaint_recipe": recipes.RECIPE_VERSION, "parameters": {"prompt": "x"}, "seed": 1}
    buffer = io.BytesIO()
    recipes.save_png(Image.new("RGB", (8, 8)), recipe, buffer)
    buffer.seek(0)
    assert recipes.load_recipe(Image.open(buffer)) == recipe


def test_parameters_chunk_is_a1111_style_and_says_twin(result, tmp_path):
    path = tmp_path / "out.png"
    recipes.save_png(result.image, result.recipe, path)
    with Image.open(path) as opened:
        text = opened.text[recipes.PARAMETERS_KEY]
    prompt, negative, settings_line = text.split("\n")
    assert prompt == "a castle, at dusk: “misty” 城"
    assert negative == "Negative prompt: blurry"
    assert settings_line.startswith("Steps: 2, CFG scale: 6.5, Seed: 7, Size: 64x64, ")
    assert "Denoising strength: 0.9" in settings_line and "Twin: yes" in settings_line
    assert recipes.short_line(result.recipe) == "“a castle, at dusk: “mis…” s=0.9 g=6.5 steps=2 seed=7 twin"
    assert recipes.short_line(result.recipe, width=30).endswith("… twin")
    not_twin = {**result.recipe, "twin": False}
    assert "Twin" not in recipes.parameters_text(not_twin) and "twin" not in recipes.short_line(not_twin)


def test_png_without_recipe_names_what_was_expected(tmp_path):
    path = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(path)
    with pytest.raises(RecipeError, match=r"carries no nbinpaint recipe: expected a PNG text chunk 'nbinpaint-recipe'"):
        recipes.load_recipe(path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(RecipeError, match="cannot read .*notes.txt as an image"):
        recipes.load_recipe(tmp_path / "notes.txt")


def test_recipe_from_a_newer_version_says_to_upgrade(result, tmp_path):
    newer = {**result.recipe, "nbinpaint_recipe": recipes.RECIPE_VERSION + 1, "versions": {"nbinpaint": "9.0"}}
    path = tmp_path / "newer.png"
    recipes.save_png(result.image, newer, path)
    with pytest.raises(RecipeError, match=r"recipe format 2, written by nbinpaint 9\.0.*up to 1\. Upgrade"):
        recipes.load_recipe(path)
    with pytest.raises(RecipeError, match="Upgrade"):
        recipes.request_from_recipe(newer)


def test_save_result_writes_image_inputs_and_recipe_once(result, tmp_path):
    first = recipes.save_result(result, tmp_path)
    second = recipes.save_result(result, tmp_path)
    assert [p.name for p in first.paths + second.paths] == ["00001-seed7.png", "00002-seed7.png"]
    inputs = sorted(p.name for p in (tmp_path / "inputs").iterdir())
    assert len(inputs) == 2 and inputs[0].startswith("image-") and inputs[1].startswith("mask-")  # shared, once
    saved = recipes.load_recipe(first.paths[0])
    assert saved == first.recipe and saved["inputs"]["mask"] == f"inputs/{inputs[1]}"
    assert {k: v for k, v in saved.items() if k != "inputs"} == result.recipe
    with Image.open(tmp_path / saved["inputs"]["mask"]) as mask:
        assert np.array_equal(np.asarray(mask), np.asarray(result.request.mask))
    with Image.open(tmp_path / saved["inputs"]["image"]) as image:
        assert np.array_equal(np.asarray(image), np.asarray(result.request.image))


def test_request_from_recipe_is_the_run_request(result):
    request = recipes.request_from_recipe(result.recipe, image=result.request.image, mask=result.request.mask)
    assert request.parameters() == result.request.parameters()
    assert request.seed == 7 and request.strength == 0.9 and request.width == 64


def test_rerun_repeats_the_pixels_from_the_png_alone(result, shared, tmp_path):
    path = recipes.save_result(result, tmp_path).paths[0]
    again = session.rerun(path, manager=shared)
    assert np.array_equal(np.asarray(again.image), np.asarray(result.image))
    assert again.request.parameters() == result.request.parameters()


def test_rerun_with_missing_inputs_names_the_file(result, shared, tmp_path):
    path = recipes.save_result(result, tmp_path).paths[0]
    mask_file = tmp_path / recipes.load_recipe(path)["inputs"]["mask"]
    mask_file.unlink()
    with pytest.raises(RecipeError, match=f"mask should be at {mask_file}, but there is no such file"):
        session.rerun(path, manager=shared)
    bare = tmp_path / "bare.png"
    recipes.save_png(result.image, result.recipe, bare)
    with pytest.raises(RecipeError, match="names no saved inputs"):
        session.rerun(bare, manager=shared)


def test_non_json_extras_are_saved_as_their_repr(result):
    odd = {**result.recipe, "parameters": {**result.recipe["parameters"], "extra": {"obj": object}}}
    assert json.loads(recipes.to_json(odd))["parameters"]["extra"]["obj"] == repr(object)


def test_rerun_reads_no_input_outside_the_results_folder(result, tmp_path):
    folder = tmp_path / "results"
    path = recipes.save_result(result, folder).paths[0]
    secret = tmp_path / "secret.png"  # a picture of the user's, beside the results folder
    Image.new("RGB", (64, 64), (255, 0, 0)).save(secret)
    recipe = recipes.load_recipe(path)
    for reference in ("../secret.png", str(secret), "inputs/../../secret.png"):
        edited = folder / "shared.png"
        info = PngInfo()
        info.add_text(recipes.RECIPE_KEY, json.dumps({**recipe, "inputs": {**recipe["inputs"], "image": reference}}))
        result.image.save(edited, format="PNG", pnginfo=info)
        with pytest.raises(RecipeError, match=r"'inputs.image' must be a path inside the recipe's folder") as refused:
            session.rerun(edited, manager=None)  # refused before any manager is made
        assert refused.value.field == "inputs.image" and repr(reference)[:20] in str(refused.value)
