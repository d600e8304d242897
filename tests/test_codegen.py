"""Copy-as-code on the tiny twins: the exported script, run in a fresh process, gives the same pixels."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from nbinpaint import codegen
from nbinpaint.control import controlnet_request
from nbinpaint.pipeline_manager import PipelineManager
from nbinpaint.recipes import RecipeError, load_recipe, save_result
from nbinpaint.requests import InpaintRequest
from tests.conftest import make_scene

SD_INPAINT = "runwayml/stable-diffusion-inpainting"
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SDXL = "diffusers/stable-diffusion-xl-1.0-inpainting-0.1"
KANDINSKY = "kandinsky-community/kandinsky-2-2-decoder-inpaint"
SCRIPT_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def shared(twins_dir) -> PipelineManager:
    return PipelineManager(device="cpu")


def scene(width: int, height: int) -> tuple[Image.Image, Image.Image]:
    image, mask = make_scene(max(width, height), seed=5)
    return image.resize((width, height)), mask.resize((width, height), Image.Resampling.NEAREST)


# Each case makes one result; `round_trips` exports them all and runs every script, as __main__, in one fresh
# interpreter (one torch/diffusers import for all of them instead of one each).
CASES = {}


def case(function):
    CASES[function.__name__] = function
    return function


@case
def sd_inpaint_crop_overlay_blur_odd_size(manager):
    image, mask = scene(203, 139)  # run at 200x136, resized back
    request = InpaintRequest(
        prompt="a stone bridge",
        negative_prompt="blurry",
        image=image,
        mask=mask,
        model=SD_INPAINT,
        steps=3,
        strength=0.8,
        guidance_scale=6.5,
        seed=1234,
        padding_mask_crop=8,
        preserve_unmasked=True,
        blur_factor=5,
    )
    result = manager.run(request)
    assert result.image.size == (203, 139) and (result.request.width, result.request.height) == (200, 136)
    return result


@case
def sdxl(manager):
    image, mask = scene(64, 64)
    return manager.run(
        InpaintRequest(prompt="a lighthouse", image=image, mask=mask, model=SDXL, steps=4, strength=0.5, seed=9)
    )


@case
def kandinsky(manager):
    image, mask = scene(64, 64)
    extra = {"prior_guidance_scale": 2.0}
    return manager.run(
        InpaintRequest(prompt="a red door", image=image, mask=mask, model=KANDINSKY, steps=2, seed=11, extra=extra)
    )


@case
def controlnet(manager):
    image, mask = scene(64, 64)
    base = InpaintRequest(prompt="an elven castle", image=image, mask=mask, model=SD15, steps=2, seed=21)
    return manager.run(controlnet_request(base))


@case
def sdxl_weighted_prompt(manager):
    """Compel embeddings (SDXL's pooled ones in extra) travel as tensors.safetensors."""
    from nbinpaint.weighting import weighted_request

    image, mask = scene(64, 64)
    request = InpaintRequest(prompt="a (red)1.4 boat", image=image, mask=mask, model=SDXL, steps=2, seed=4)
    result = manager.run(weighted_request(request, manager.get(SDXL)))
    assert result.request.prompt_embeds is not None
    return result


@case
def classical_telea(manager):
    image, mask = scene(101, 67)  # run at 96x64: resize in, fill, resize back, overlay
    return manager.run(InpaintRequest(image=image, mask=mask, model="classical/telea", preserve_unmasked=True))


@case
def classical_biharmonic(manager):
    image, mask = scene(101, 67)
    return manager.run(InpaintRequest(image=image, mask=mask, model="classical/biharmonic", blur_factor=2))


def grey_bands(width: int, height: int) -> Image.Image:
    """A mask of three vertical bands: keep, half (128), repaint."""
    mask = np.zeros((height, width), np.uint8)
    mask[:, width // 3 : 2 * width // 3], mask[:, 2 * width // 3 :] = 128, 255
    return Image.fromarray(mask, "L")


@case
def sd15_soft_blur_telea_odd_size(manager):
    """Soft inpainting (grey mask, feathered) from a Telea start on a regular checkpoint, resized back."""
    image, _ = scene(101, 67)
    request = InpaintRequest(
        image=image,
        mask=grey_bands(101, 67),
        model=SD15,
        steps=3,
        strength=0.8,
        seed=8,
        blur_factor=3,
        masked_content="telea",
    )
    result = manager.run(request)
    assert result.request.soft and result.request.masked_content == "telea"
    return result


@case
def sd_inpaint_soft_latent_noise(manager):
    image, _ = scene(64, 64)
    request = InpaintRequest(
        image=image,
        mask=grey_bands(64, 64),
        model=SD_INPAINT,
        steps=3,
        strength=0.7,
        seed=2,
        masked_content="latent_noise",
    )
    return manager.run(request)


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


@pytest.fixture(scope="module")
def round_trips(shared, twins_dir, tmp_path_factory):
    """name -> (result, folder with the script's result.png or error.txt); failures kept per case."""
    made = {}
    for name, build in CASES.items():
        try:
            result = build(shared)
            folder = tmp_path_factory.mktemp(name)
            codegen.export(result, folder)
            made[name] = (result, folder)
        except Exception as error:  # reported by that case's test, not by every test
            made[name] = (error, None)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(twins_dir)}
    env.pop("NBINPAINT_TWINS", None)  # the scripts know nothing of nbinpaint: plain hub settings only
    folders = [str(folder) for _, folder in made.values() if folder is not None]
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", RUNNER, *folders], env=env, timeout=SCRIPT_TIMEOUT_S, check=True)
    print(f"{len(folders)} scripts run in {time.perf_counter() - started:.1f} s")
    return made


@pytest.mark.parametrize("name", list(CASES))
def test_exported_script_gives_identical_pixels(round_trips, name):
    result, folder = round_trips[name]
    if isinstance(result, Exception):
        raise result
    error = folder / "error.txt"
    assert not error.exists(), error.read_text()
    with Image.open(folder / "result.png") as saved:
        assert saved.size == result.image.size
        assert np.array_equal(np.array(saved), np.array(result.image))


def test_script_shapes(round_trips):
    """What each script does is visible in its text: condition rebuilt, OpenCV or scikit-image, the finish."""
    texts = {name: (folder / codegen.SCRIPT_FILE).read_text() for name, (_, folder) in round_trips.items() if folder}
    assert '"lllyasviel/control_v11p_sd15_inpaint", dtype=torch.float32' in texts["controlnet"]
    assert "make_inpaint_condition(init_image, mask_image)" in texts["controlnet"]
    assert "cv2.inpaint" in texts["classical_telea"] and "inpaint_biharmonic" not in texts["classical_telea"]
    assert "inpaint_biharmonic" in texts["classical_biharmonic"] and "cv2" not in texts["classical_biharmonic"]
    assert "apply_overlay" in texts["sd_inpaint_crop_overlay_blur_odd_size"]
    assert "VaeImageProcessor.blur(mask_image, blur_factor=5" in texts["sd_inpaint_crop_overlay_blur_odd_size"]
    assert "prior_guidance_scale=2.0" in texts["kandinsky"]
    for name in ("sd15_soft_blur_telea_odd_size", "sd_inpaint_soft_latent_noise"):
        assert "class LatentBlend:" in texts[name] and "callback_on_step_end=blend.after_step" in texts[name]
        assert "apply_overlay(soft_mask, init_image, image)" in texts[name]
    assert 'start_image = masked_start(init_image, condition_mask, "telea")' in texts["sd15_soft_blur_telea_odd_size"]
    assert "noise_mask=condition_mask.point(" in texts["sd_inpaint_soft_latent_noise"]
    assert 'prompt_embeds=tensors["prompt_embeds"]' in texts["sdxl_weighted_prompt"]
    assert (round_trips["sdxl_weighted_prompt"][1] / codegen.TENSORS_FILE).is_file()


def test_weighted_recipe_without_tensors_is_refused(round_trips):
    result, _ = round_trips["sdxl_weighted_prompt"]
    with pytest.raises(codegen.CodegenError, match="code_for\\(result\\)"):
        codegen.code_for(result.recipe)


def call_keywords(text: str) -> dict:
    """The literal keyword arguments of the script's ``pipeline(...)`` call, read back by Python's parser."""
    tree = ast.parse(text)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "pipeline"]
    assert len(calls) == 1
    return {k.arg: ast.literal_eval(k.value) for k in calls[0].keywords if isinstance(k.value, ast.Constant)}


def test_text_names_model_and_seed_compiles_and_stands_alone(shared):
    image, mask = scene(64, 64)
    prompt = "a 'quoted' \"prompt\" with a \\ backslash, été"
    result = shared.run(InpaintRequest(prompt=prompt, image=image, mask=mask, steps=2, seed=987654321))
    text = codegen.code_for(result, image_path="in/base.png", mask_path="in/hole.png", output_path="out.png")
    compile(text, "reproduce.py", "exec")
    assert "manual_seed(987654321)" in text
    assert f'"{SD_INPAINT}"' in text
    assert 'load_image("in/base.png")' in text and 'load_image("in/hole.png")' in text
    assert 'image.save("out.png")' in text
    assert "import nbinpaint" not in text and "from nbinpaint" not in text
    assert call_keywords(text) == {
        "prompt": prompt,
        "num_inference_steps": 2,
        "width": 64,
        "height": 64,
        "output_type": "pil",
    }


def test_recipe_gives_the_same_script_as_the_result(shared, tmp_path):
    image, mask = scene(203, 139)
    request = InpaintRequest(prompt="moss", image=image, mask=mask, steps=2, seed=5, blur_factor=3, padding_mask_crop=8)
    result = shared.run(request)
    saved = save_result(result, tmp_path)
    assert codegen.code_for(load_recipe(saved.paths[0])) == codegen.code_for(result)


def test_chain_stage_from_latents_is_refused_with_the_way_out(shared):
    image, mask = scene(64, 64)
    result = shared.run(InpaintRequest(image=image, mask=mask, steps=2, seed=1))
    recipe = {**result.recipe, "input_latents": [1, 4, 8, 8]}
    with pytest.raises(codegen.CodegenError, match="first stage"):
        codegen.code_for(recipe)


def test_export_refuses_a_recipe(shared, tmp_path):
    image, mask = scene(64, 64)
    result = shared.run(InpaintRequest(image=image, mask=mask, steps=2, seed=1))
    with pytest.raises(codegen.CodegenError, match="InpaintResult"):
        codegen.export(result.recipe, tmp_path)


def test_show_code_of_a_result_whose_recipe_was_tampered_with_runs_nothing(shared, tmp_path):
    """The issue's case: a device value that closes the docstring. Refused for a result (what the panel's
    Show code passes) and for its saved recipe alike; nothing is written into a script."""
    image, mask = scene(64, 64)
    result = shared.run(InpaintRequest(image=image, mask=mask, steps=2, seed=1))
    hostile = 'cpu\n"""\nimport os; os.system("echo pwned > pwned.txt")\n"""'
    result.recipe["device"] = hostile
    with pytest.raises(RecipeError, match=r"'device' must be a torch device such as 'cpu'"):
        codegen.code_for(result)
    with pytest.raises(RecipeError, match=r"'device' must be a torch device"):
        codegen.code_for(dict(result.recipe))
    with pytest.raises(RecipeError, match=r"'device' must be a torch device"):
        codegen.export(result, tmp_path)
    assert not (tmp_path / codegen.SCRIPT_FILE).exists()
