"""Outpainting: the plan's geometry, the mask and its feathered seam, runs on the twins and a classical fill,
the recipe, Show code's script (run in a fresh process: same pixels), and the studio's Expand buttons."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import nbinpaint
from nbinpaint import codegen, outpainting
from nbinpaint.errors import InvalidRequestError
from nbinpaint.history import History
from nbinpaint.outpainting import Outpaint, plan
from nbinpaint.pipeline_manager import PipelineManager
from nbinpaint.recipes import RecipeError, load_recipe, parse_recipe, save_result
from nbinpaint.session import rerun, set_shared_manager
from tests.test_codegen import RUNNER, SCRIPT_TIMEOUT_S

SD_INPAINT = "runwayml/stable-diffusion-inpainting"
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SDXL = "diffusers/stable-diffusion-xl-1.0-inpainting-0.1"
KANDINSKY = "kandinsky-community/kandinsky-2-2-decoder-inpaint"
WAIT = 120


@pytest.fixture(scope="module")
def shared(twins_dir) -> PipelineManager:
    return PipelineManager(device="cpu")


def photo(width: int, height: int, seed: int = 3) -> Image.Image:
    """A smooth seeded picture (gradients and a disc), so blends and fills have something to continue."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    red = 255 * x / max(width - 1, 1)
    green = 255 * y / max(height - 1, 1)
    blue = np.where((x - width / 2) ** 2 + (y - height / 2) ** 2 < (min(width, height) / 3) ** 2, 220, 40)
    pixels = np.stack([red, green, blue], -1) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


# -- the plan: geometry, mask, weights ---------------------------------------------------------------------


def test_the_issue_case_512_by_128_left_and_right_is_768_by_512():
    p = plan((512, 512), left=128, right=128)
    assert p.size == (768, 512) and p.box == (128, 0, 640, 512)
    assert (p.overlap, p.feather, p.fill) == (32, 32, "blur")


@pytest.mark.parametrize(
    ("image_size", "asked", "margins", "size"),
    [
        ((500, 333), {"right": 100}, (0, 100, 0, 3), (600, 336)),  # an axis not extended grows at its bottom
        ((512, 512), {"left": 10, "right": 10}, (12, 12, 0, 0), (536, 512)),  # 532 -> 536, shared
        ((512, 512), {"left": 5, "right": 6}, (7, 9, 0, 0), (528, 512)),  # 523 -> 528: the right takes the odd px
        ((203, 139), {"top": 7}, (0, 5, 13, 0), (208, 152)),
        ((512, 512), {"size": (700, 600)}, (96, 96, 44, 44), (704, 600)),  # 700 is no multiple of 8: 704
        ((512, 512), {"aspect": "16:9"}, (200, 200, 0, 0), (912, 512)),  # 910 -> 912
        ((512, 288), {"aspect": 1.0}, (0, 0, 112, 112), (512, 512)),
    ],
)
def test_sizes_are_rounded_up_to_multiples_of_8_by_growing_the_margins(image_size, asked, margins, size):
    p = plan(image_size, **asked)
    assert (p.left, p.right, p.top, p.bottom) == margins
    assert p.size == size and size[0] % 8 == 0 and size[1] % 8 == 0
    assert p.box[2] - p.box[0] == image_size[0] and p.box[3] - p.box[1] == image_size[1]  # never cropped


def test_the_mask_is_the_new_area_plus_the_band_and_the_weights_ramp_across_the_band():
    p = plan((64, 48), left=16, bottom=8, overlap=8, feather=4)
    mask = np.asarray(p.mask()) > 127
    assert p.size == (80, 56)
    assert mask[:, :16].all() and mask[48:, :].all()  # the new area
    assert mask[:48, 16:24].all() and not mask[:40, 24:].any()  # 8 px band on the left, none on top or right
    assert mask[40:48, 16:].all()  # 8 px band along the bottom
    weight = p.weights()
    assert (weight[p.new_area()] == 1).all()
    assert (weight[~mask] == 0).all()  # outside the mask: the original exactly
    # left band, distance d from the original's edge: clip((8 - d) / 4, 0, 1)
    assert weight[10, 16:26].tolist() == [1, 1, 1, 1, 1, 0.75, 0.5, 0.25, 0, 0]


def test_a_small_image_gets_a_narrower_default_band():
    p = plan((16, 16), left=8, right=8)
    assert p.overlap == 7  # both bands together leave one column of the original
    assert plan((16, 16), right=8).overlap == 15


@pytest.mark.parametrize(
    ("kwargs", "fix"),
    [
        ({"left": -16}, r"left=-16 is negative.*Pass left=0.*crop it first"),
        ({}, r"nothing to extend.*left=, right=, top= or bottom=.*size=.*aspect="),
        ({"right": 128, "overlap": 600}, r"overlap=600 does not fit the 512x512 image.*Use 0 to 511"),
        ({"left": 8, "right": 8, "overlap": 256}, r"overlap=256 does not fit.*Use 0 to 255"),
        ({"right": 128, "feather": 40}, r"feather=40 does not fit the 32 px overlap band.*Use 0"),
        ({"size": (400, 600)}, r"smaller than the image \(512x512\): outpainting never crops.*at least 512x512"),
        ({"left": 8, "size": (600, 600)}, r"pass one way to extend, not left= and size="),
        ({"aspect": "wide"}, r"aspect='wide' is not an aspect ratio.*'16:9'"),
        ({"aspect": 1}, r"already has the aspect ratio 1"),
        ({"right": 12.5}, r"right=12.5 is invalid: it must be a whole number of pixels"),
        ({"right": 8, "fill": "mirror"}, r"fill='mirror' is not a start fill: use one of edge, blur, telea, noise"),
        ({"right": 9000}, r"above the 8192 px limit"),
    ],
)
def test_bad_inputs_name_the_fix(kwargs, fix):
    with pytest.raises(InvalidRequestError, match=fix):
        plan((512, 512), **kwargs)


def test_requests_refuse_what_outpainting_cannot_do():
    image = photo(64, 64)
    p = plan(image.size, right=16)
    with pytest.raises(InvalidRequestError, match="needs an inpainting pipeline; task 'text2img'"):
        outpainting.request_for(image, p, task="text2img")
    with pytest.raises(InvalidRequestError, match="makes its own mask.*drop mask="):
        outpainting.request_for(image, p, mask=Image.new("L", (64, 64)))
    with pytest.raises(InvalidRequestError, match="output_type as 'pil'"):
        outpainting.request_for(image, p, output_type="latent")
    assert outpainting.unavailable("inpaint", frozenset({"image", "prompt"}), "SomePipeline") == (
        "SomePipeline takes no image and mask_image, so it cannot paint a masked border"
    )
    assert outpainting.unavailable("inpaint", frozenset({"image", "mask_image"}), "X") is None


@pytest.mark.parametrize("fill", list(outpainting.FILLS))
def test_every_start_fill_keeps_the_original_and_fills_the_new_area(fill):
    image = photo(96, 64)
    p = plan(image.size, left=32, top=16, fill=fill)
    canvas = p.canvas(image, seed=7)
    assert canvas.size == p.size
    assert np.array_equal(np.asarray(p.original(canvas)), np.asarray(image))
    new = np.asarray(canvas)[p.new_area()]
    assert new.std() > 0  # something, not a flat zero
    if fill != "noise":  # the new area continues the image: its colours come from the edge
        edge = np.asarray(image)[:, 0].mean(0)
        assert np.abs(np.asarray(canvas)[20:, :8].mean((0, 1)) - edge).max() < 40
    assert np.array_equal(np.asarray(canvas), np.asarray(p.canvas(image, seed=7)))  # deterministic


# -- runs: the twins and a classical fill ---------------------------------------------------------------------


def check_outpainted(result, image: Image.Image, p: Outpaint) -> None:
    """768x512-style checks: the size, the original outside the band byte for byte, the band feathered."""
    raw = result.request.image  # the canvas the run started from
    assert result.image.size == p.size
    out, original = np.asarray(result.image).astype(int), np.asarray(image).astype(int)
    left, top, right, bottom = p.box
    inside = out[top:bottom, left:right]
    keep = np.asarray(p.mask())[top:bottom, left:right] == 0
    assert keep.any() and np.array_equal(inside[keep], original[keep])
    assert np.array_equal(np.asarray(p.original(raw)), np.asarray(image))
    # In the band the composite lies between the original and the pipeline's picture, and strictly between
    # for most pixels (a feathered seam, not a step).
    generated = np.asarray(result.generated).astype(int)[top:bottom, left:right]
    weight = p.weights()[top:bottom, left:right]
    band = (weight > 0) & (weight < 1)
    low, high = np.minimum(generated, original), np.maximum(generated, original)
    assert ((inside >= low) & (inside <= high))[band].all()
    strictly = ((inside > low) & (inside < high))[band]
    assert strictly.mean() > 0.5
    new = p.new_area()
    assert np.array_equal(np.asarray(result.image)[new], np.asarray(result.generated)[new])


def outpaint_keeping_the_raw(manager, image, **kwargs):
    """`outpainting.run` with the pipeline's own picture kept on the result as ``generated``."""
    runs = []

    class Keep:
        def run(self, request, **options):
            result = manager.run(request, **options)
            runs.append(result.image)
            return result

    result = outpainting.run(Keep(), image, **kwargs)
    result.generated = runs[0]
    return result


@pytest.mark.parametrize(
    ("model", "params"),
    [(SD_INPAINT, {"steps": 2, "seed": 4, "prompt": "a wide meadow"}), ("classical/telea", {})],
    ids=["sd15-inpaint-twin", "classical-telea"],
)
def test_512_extended_128_left_and_right_is_768_with_the_original_kept_and_the_seam_feathered(shared, model, params):
    image = photo(512, 512)
    p = plan(image.size, left=128, right=128)
    result = outpaint_keeping_the_raw(shared, image, left=128, right=128, model=model, **params)
    assert result.image.size == (768, 512)
    check_outpainted(result, image, p)
    assert result.recipe["outpaint"] == p.as_recipe()
    assert (result.request.width, result.request.height) == (768, 512)  # the pipeline ran at the canvas's size


def test_nbinpaint_outpaint_runs_on_the_shared_manager_and_gives_the_same_pixels(shared):
    image = photo(64, 48)
    previous = set_shared_manager(shared)
    try:
        result = nbinpaint.outpaint(image, right=20, bottom=4, prompt="sea", steps=2, seed=8, fill="edge")
    finally:
        set_shared_manager(previous) if previous is not None else None
    again = outpainting.run(shared, image, right=20, bottom=4, prompt="sea", steps=2, seed=8, fill="edge")
    assert result.image.size == (88, 56)
    assert np.array_equal(np.asarray(result.image), np.asarray(again.image))


@pytest.mark.parametrize("model", [SDXL, KANDINSKY], ids=["sdxl-twin", "kandinsky-twin"])
def test_sdxl_and_kandinsky_inpaint_checkpoints_outpaint_too(shared, model):
    image = photo(64, 64)
    extra = {"extra": {"prior_num_inference_steps": 2}} if model == KANDINSKY else {}
    # 64 px more: Kandinsky 2.2's pipeline needs sides that are multiples of 64 (a limit of nbinpaint's run
    # size, which rounds to 8, for inpainting as much as outpainting).
    result = outpaint_keeping_the_raw(shared, image, top=64, model=model, steps=2, seed=2, **extra)
    check_outpainted(result, image, plan(image.size, top=64))


def test_the_inpaint_controlnet_is_an_option_for_sd15(shared):
    image = photo(64, 64)
    result = outpainting.run(shared, image, right=16, model=SD15, controlnet=True, steps=2, seed=3, fill="telea")
    assert result.request.controlnet == "lllyasviel/control_v11p_sd15_inpaint"
    assert result.recipe["pipeline"] == "StableDiffusionControlNetInpaintPipeline"
    condition = result.request.control_image  # -1 where the canvas is repainted
    assert (condition[0, :, :, 64:] == -1).all() and (condition[0, :, :, :32] >= 0).all()
    assert np.array_equal(np.asarray(result.image)[:, :32], np.asarray(image)[:, :32])


# -- recipes, rerun and Show code ------------------------------------------------------------------------------


def test_the_recipe_keeps_the_outpainting_and_rerun_repeats_it(shared, tmp_path):
    image = photo(96, 64)
    result = outpainting.run(shared, image, left=24, top=8, fill="noise", overlap=12, feather=6, steps=2, seed=5)
    saved = save_result(result, tmp_path)
    recipe = load_recipe(saved.paths[0])
    assert recipe["outpaint"] == {
        "original_size": [96, 64],
        "left": 24,
        "right": 0,
        "top": 8,
        "bottom": 0,
        "fill": "noise",
        "overlap": 12,
        "feather": 6,
    }
    assert Outpaint.from_recipe(recipe["outpaint"]) == plan(
        (96, 64), left=24, top=8, fill="noise", overlap=12, feather=6
    )
    again = rerun(saved.paths[0], shared)
    assert again.recipe["outpaint"] == recipe["outpaint"]
    assert np.array_equal(np.asarray(again.image), np.asarray(result.image))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"overlap": 500}, "overlap=500 does not fit"),
        ({"fill": "__import__('os')"}, "is not a start fill"),
        ({"left": "24"}, "must be a whole number"),
        ({"left": 32}, "extends to"),  # the canvas no longer matches the recipe's input_size
    ],
)
def test_a_tampered_outpaint_entry_is_refused_where_the_recipe_enters(shared, change, field):
    result = outpainting.run(shared, photo(64, 64), left=24, seed=5, model="classical/telea")
    recipe = {**result.recipe, "outpaint": {**result.recipe["outpaint"], **change}}
    with pytest.raises(RecipeError, match=field) as caught:
        parse_recipe(recipe)
    assert caught.value.field == "outpaint"
    with pytest.raises(RecipeError):
        codegen.code_for(recipe)


SCRIPT_CASES = {
    "sd_inpaint_noise_blur_factor": {
        **{"left": 20, "top": 4, "fill": "noise", "model": SD_INPAINT},
        **{"steps": 2, "seed": 12, "prompt": "a field", "blur_factor": 3},
    },
    "sd_inpaint_blur_fill_overlay": {"right": 40, "fill": "blur", "steps": 2, "seed": 13, "preserve_unmasked": True},
    "controlnet_telea_fill": {"bottom": 16, "fill": "telea", "model": SD15, "controlnet": True, "steps": 2, "seed": 14},
    "classical_telea_edge_fill": {
        **{"left": 16, "right": 16, "fill": "edge", "model": "classical/telea"},
        **{"overlap": 6, "feather": 3},
    },
}


@pytest.fixture(scope="module")
def scripts(shared, twins_dir, tmp_path_factory):
    """name -> (result, folder holding the exported script's result.png or error.txt)."""
    made = {}
    for name, kwargs in SCRIPT_CASES.items():
        result = outpainting.run(shared, photo(90, 60), **kwargs)
        folder = tmp_path_factory.mktemp(name)
        codegen.export(result, folder)
        made[name] = (result, folder)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(twins_dir)}
    env.pop("NBINPAINT_TWINS", None)
    folders = [str(folder) for _, folder in made.values()]
    subprocess.run([sys.executable, "-c", RUNNER, *folders], env=env, timeout=SCRIPT_TIMEOUT_S, check=True)
    return made


@pytest.mark.parametrize("name", list(SCRIPT_CASES))
def test_show_code_reproduces_the_outpainted_pixels(scripts, name):
    result, folder = scripts[name]
    error = folder / "error.txt"
    assert not error.exists(), error.read_text()
    text = (folder / codegen.SCRIPT_FILE).read_text()
    assert "import nbinpaint" not in text and "from nbinpaint" not in text
    assert 'original = load_image("image.png")' in text and "blend" in text
    assert not (folder / "mask.png").exists()  # the script makes the mask
    with Image.open(folder / "image.png") as original:
        assert original.size == (90, 60)
    with Image.open(folder / "result.png") as saved:
        assert saved.size == result.image.size
        assert np.array_equal(np.asarray(saved), np.asarray(result.image))


def test_the_code_from_a_saved_recipe_is_the_code_of_the_result(scripts, tmp_path):
    result, _ = scripts["sd_inpaint_noise_blur_factor"]
    saved = save_result(result, tmp_path)
    assert codegen.code_for(load_recipe(saved.paths[0])) == codegen.code_for(result)


# -- the studio's Expand buttons ----------------------------------------------------------------------------------


def test_the_studio_expands_on_a_click_and_greys_the_buttons_where_the_pipeline_cannot(shared, twins_dir):
    from nbinpaint.widgets.studio import InpaintStudio

    image = photo(64, 48)
    studio = InpaintStudio(image, manager=shared, history=History(output=False), model="classical/telea")
    try:
        assert studio.panel.wait_ready(WAIT)
        assert studio.expand.reason == "" and not studio.expand.buttons["right"].disabled
        studio.expand.grow.value = 24
        studio.expand.fill.value = "edge"
        studio.expand.buttons["right"].click()
        assert studio.panel.controller.wait(WAIT)
        result = studio.result
        assert result is not None and result.image.size == (88, 48)
        assert result.recipe["outpaint"]["right"] == 24 and result.recipe["outpaint"]["fill"] == "edge"
        assert np.array_equal(np.asarray(result.image)[:, :32], np.asarray(image)[:, :32])
        assert "blend" in studio.panel.code_text()
        # A pipeline that takes no mask cannot outpaint: the buttons say so.
        studio.panel.apply_parameters(
            outpainting_parameters("StableDiffusionImg2ImgPipeline", {"image", "prompt", "strength"}), SD15
        )
        assert studio.expand.reason == (
            "StableDiffusionImg2ImgPipeline takes no image and mask_image, so it cannot paint a masked border"
        )
        assert all(button.disabled for button in studio.expand.buttons.values())
        assert studio.expand.buttons["left"].tooltip.startswith("Off: StableDiffusionImg2ImgPipeline takes no")
    finally:
        studio.close()


def outpainting_parameters(pipeline: str, accepted: set[str]):
    from nbinpaint.generation import PipelineParameters

    return PipelineParameters(pipeline, frozenset(accepted))
