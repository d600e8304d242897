"""LCM-LoRA fused into a checkpoint and PAG pipelines, on the twins (`nbinpaint.lora`).

What must hold: the LoRA twin has the real file's layout and loads offline by repo id; a LoRA run switches
the scheduler and the steps and says so in its recipe, which restores it; the plain pipeline gives the same
pixels afterwards (the fused weights are a checkpoint of their own, counted in the manager's memory);
`Show code` reproduces both; PAG changes the picture, leaves the shared UNet as it was even when cancelled,
and is refused, with its reason in the panel, where diffusers has no PAG pipeline.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import nbinpaint
from nbinpaint import codegen, lora, twins
from nbinpaint.errors import GenerationCancelled, InvalidRequestError, ModelLoadError, UnsupportedParameterError
from nbinpaint.generation import pipeline_parameters
from nbinpaint.history import History
from nbinpaint.pipeline_manager import PipelineManager
from nbinpaint.recipes import load_recipe, request_from_recipe, save_result
from nbinpaint.requests import InpaintRequest
from nbinpaint.session import rerun
from nbinpaint.studio_state import PanelState
from tests.conftest import make_scene

SD_INPAINT = "runwayml/stable-diffusion-inpainting"
SDXL = "diffusers/stable-diffusion-xl-1.0-inpainting-0.1"
KANDINSKY = "kandinsky-community/kandinsky-2-2-decoder-inpaint"
LCM = "latent-consistency/lcm-lora-sdv1-5"


def pixels(result) -> np.ndarray:
    return np.asarray(result.image)


@pytest.fixture(scope="module")
def shared(twins_dir) -> PipelineManager:
    return PipelineManager(device="cpu")


@pytest.fixture(scope="module")
def runs(shared):
    """A plain run, an LCM-LoRA run (steps counted), the plain run again, PAG on and PAG at scale 0."""
    image, mask = make_scene(64, seed=3)
    plain = InpaintRequest(image=image, mask=mask, model=SD_INPAINT, prompt="a boat", steps=3, seed=7, strength=1.0)
    made = {"plain": shared.run(plain)}
    steps: list[int] = []
    made["lcm"] = shared.run(plain.replace(steps=None, lora=LCM), on_step=lambda step, total, _: steps.append(total))
    made["lcm_steps"] = steps
    made["plain_again"] = shared.run(plain)
    made["pag"] = shared.run(plain.replace(enable_pag=True, pag_scale=3.0))
    made["pag_off"] = shared.run(plain.replace(enable_pag=True, pag_scale=0.0))
    made["plain_after_pag"] = shared.run(plain)
    return made


# -- the twin ------------------------------------------------------------------------------------------------


def test_lora_twin_has_the_real_files_name_and_kohya_layout_that_diffusers_converts(twins_dir):
    from diffusers import StableDiffusionInpaintPipeline
    from safetensors.torch import load_file

    assert LCM in twins.REPO_IDS and "latent-consistency/lcm-lora-sdxl" in twins.REPO_IDS
    snapshot = twins._snapshot_dir(twins_dir, LCM)
    assert twins.is_twin_path(snapshot)
    tensors = load_file(snapshot / "pytorch_lora_weights.safetensors")
    assert all(key.startswith("lora_unet_") for key in tensors)
    suffixes = {key.split(".", 1)[1] for key in tensors}
    assert suffixes == {"lora_down.weight", "lora_up.weight", "alpha"}
    assert {t.dtype for t in tensors.values()} == {__import__("torch").float16}
    # convolutions (resnets, 1x1 proj_in of SD 1.x) get 4-d LoRA weights, as in the real file
    assert tensors["lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight"].ndim == 4
    assert tensors["lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight"].ndim == 4
    converted, alphas = StableDiffusionInpaintPipeline.lora_state_dict(dict(tensors))[:2]
    assert converted and all(key.startswith("unet.") for key in converted)
    assert len(alphas) == len(tensors) // 3


# -- LCM-LoRA ------------------------------------------------------------------------------------------------


def test_lcm_lora_switches_the_scheduler_runs_4_steps_and_says_so(runs):
    recipe = runs["lcm"].recipe
    assert runs["lcm_steps"] and set(runs["lcm_steps"]) == {4}
    assert recipe["scheduler"] == "LCMScheduler"
    assert recipe["parameters"]["lora"] == LCM
    assert recipe["parameters"]["steps"] == 4 and recipe["parameters"]["guidance_scale"] == 1.0
    assert recipe["pipeline"] == "StableDiffusionInpaintPipeline"
    assert runs["plain"].recipe["scheduler"] == "DDIMScheduler"
    assert not np.array_equal(pixels(runs["lcm"]), pixels(runs["plain"]))


def test_the_plain_pipeline_gives_the_same_pixels_after_a_lora_run(runs):
    assert np.array_equal(pixels(runs["plain_again"]), pixels(runs["plain"]))
    assert runs["plain_again"].recipe["scheduler"] == "DDIMScheduler"


def test_steps_and_guidance_set_by_the_request_win_over_the_loras(shared, scene):
    image, mask = scene
    request = InpaintRequest(image=image, mask=mask, model=SD_INPAINT, lora=LCM, steps=2, guidance_scale=1.5)
    checked = request.validated()
    assert (checked.steps, checked.guidance_scale) == (2, 1.5)
    assert InpaintRequest(image=image, mask=mask, lora="some/other-lora").validated().steps is None


def test_the_fused_weights_are_a_checkpoint_of_their_own_in_the_memory_accounting(shared, runs):
    rows = {row["model"]: row for row in shared.status().rows}
    fused = rows[f"{SD_INPAINT} + {LCM}"]
    assert fused["bytes"] > 0 and fused["twin"]
    plain_pipe = shared.get(SD_INPAINT)
    lcm_pipe = shared.get(SD_INPAINT, lora=LCM)
    assert plain_pipe is not lcm_pipe and type(lcm_pipe.scheduler).__name__ == "LCMScheduler"
    assert not hasattr(lcm_pipe.unet.down_blocks[0].resnets[0].conv1, "lora_A")  # fused, LoRA layers dropped
    shared_storages = set(lora_storages := _storages(lcm_pipe)) & set(_storages(plain_pipe))
    assert not shared_storages  # no weight of the plain pipeline was touched
    assert shared.resident_bytes() >= sum(lora_storages.values()) + sum(_storages(plain_pipe).values())


def _storages(pipeline):
    from nbinpaint.pipeline_manager import storages_of

    return storages_of(pipeline)


def test_a_budget_evicts_the_fused_checkpoint_like_any_other(twins_dir, scene):
    image, mask = scene
    manager = PipelineManager(device="cpu")
    manager.run(InpaintRequest(image=image, mask=mask, model=SD_INPAINT, steps=1, seed=0))
    one = manager.resident_bytes()
    manager.memory_budget = int(one * 1.5)  # room for one copy of the weights, not two
    manager.run(InpaintRequest(image=image, mask=mask, model=SD_INPAINT, lora=LCM, seed=0))
    assert [row["model"] for row in manager.status().rows] == [f"{SD_INPAINT} + {LCM}"]
    assert manager.resident_bytes() <= manager.memory_budget
    manager.release(LCM)  # a LoRA's id releases the checkpoints it is fused into
    assert manager.status().rows == [] and manager.resident_bytes() == 0


def test_the_recipe_restores_the_lora_run(runs, shared, tmp_path):
    saved = save_result(runs["lcm"], tmp_path)
    recipe = load_recipe(saved.paths[0])
    assert recipe["scheduler"] == "LCMScheduler" and recipe["parameters"]["lora"] == LCM
    assert request_from_recipe(recipe).lora == LCM
    again = rerun(saved.paths[0], shared)
    assert np.array_equal(pixels(again), pixels(runs["lcm"]))


def test_inpaint_takes_the_lora_by_repo_id(twins_dir):
    image, mask = make_scene(64, seed=4)
    result = nbinpaint.inpaint(image, mask, model=SD_INPAINT, lora=LCM, seed=1)
    assert result.recipe["scheduler"] == "LCMScheduler" and result.request.steps == 4


def test_a_lora_that_does_not_fit_or_a_pipeline_without_loras_is_refused_by_name(shared, scene):
    image, mask = scene
    with pytest.raises(ModelLoadError, match="made for Stable Diffusion 1.x"):
        shared.get(SDXL, lora=LCM)
    with pytest.raises(InvalidRequestError, match="cannot load a LoRA"):
        shared.get(KANDINSKY, lora=LCM)
    with pytest.raises(InvalidRequestError, match="lora_scale is set but no lora"):
        InpaintRequest(image=image, mask=mask, lora_scale=0.5).validated()
    with pytest.raises(InvalidRequestError, match="lora_scale"):
        InpaintRequest(image=image, mask=mask, lora=LCM, lora_scale=-1).validated()


# -- PAG -----------------------------------------------------------------------------------------------------


def test_pag_changes_the_picture_and_scale_0_is_the_plain_pipeline(runs, shared):
    assert runs["pag"].recipe["pipeline"] == "StableDiffusionPAGInpaintPipeline"
    assert runs["pag"].recipe["parameters"]["enable_pag"] is True
    assert not np.array_equal(pixels(runs["pag"]), pixels(runs["plain"]))
    assert np.array_equal(pixels(runs["pag_off"]), pixels(runs["plain"]))
    assert np.array_equal(pixels(runs["plain_after_pag"]), pixels(runs["plain"]))
    pag = shared.get(SD_INPAINT, enable_pag=True)
    assert pag.unet is shared.get(SD_INPAINT).unet  # a slot of the same checkpoint: no second copy


def test_a_cancelled_pag_run_leaves_the_shared_unet_as_it_was(shared, scene):
    image, mask = scene
    unet = shared.get(SD_INPAINT).unet
    before = dict(unet.attn_processors)
    request = InpaintRequest(image=image, mask=mask, model=SD_INPAINT, steps=3, seed=0, enable_pag=True, pag_scale=3)
    with pytest.raises(GenerationCancelled):
        shared.run(request, should_stop=lambda: True)
    assert all(unet.attn_processors[name] is processor for name, processor in before.items())


def test_pag_is_refused_where_diffusers_has_no_pag_pipeline(shared, scene):
    image, mask = scene
    with pytest.raises(lora.PagUnsupportedError, match="no PAG version of KandinskyV22InpaintCombinedPipeline"):
        shared.run(InpaintRequest(image=image, mask=mask, model=KANDINSKY, steps=2, enable_pag=True))
    with pytest.raises(UnsupportedParameterError, match="pag_scale is not accepted by StableDiffusionInpaintPipeline"):
        shared.run(InpaintRequest(image=image, mask=mask, model=SD_INPAINT, steps=2, pag_scale=3.0))


def test_the_panel_greys_out_pag_with_its_reason(shared):
    found = pipeline_parameters(shared, KANDINSKY, enable_pag=True)
    reasons = found.unsupported()
    assert reasons["enable_pag"] == "diffusers has no PAG version of KandinskyV22InpaintCombinedPipeline"
    assert "pag_scale" in reasons
    assert "pag_scale" in pipeline_parameters(shared, SD_INPAINT).unsupported()  # PAG off: plain pipeline
    assert "pag_scale" not in pipeline_parameters(shared, SD_INPAINT, enable_pag=True).unsupported()

    image, mask = make_scene(64)
    state = PanelState(history=History(output=False), manager=shared, model=KANDINSKY, image=image, mask=mask)
    try:
        state.enable_pag = True
        assert state.wait_ready(60)
        assert state.disabled_reasons.get("enable_pag", "").startswith("diffusers has no PAG version")
        request = state.request()
        assert request.enable_pag is False and request.pag_scale is None
        state.model = SD_INPAINT
        assert state.wait_ready(60)
        assert "pag_scale" not in state.disabled_reasons and "enable_pag" not in state.disabled_reasons
        assert state.request().enable_pag is True and state.request().pag_scale == 3.0
    finally:
        state.detach()


# -- Show code ------------------------------------------------------------------------------------------------

RUNNER = """
import os, runpy, sys
for folder in sys.argv[1:]:
    os.chdir(folder)
    runpy.run_path("reproduce.py", run_name="__main__")
"""


def test_show_code_fuses_the_lora_switches_the_scheduler_and_reproduces_the_pixels(runs, twins_dir, tmp_path):
    text = codegen.code_for(runs["lcm"])
    assert f'pipeline.load_lora_weights("{LCM}"' in text and "pipeline.fuse_lora(lora_scale=1.0)" in text
    assert "pipeline.scheduler = LCMScheduler.from_config(pipeline.scheduler.config)" in text
    assert "enable_pag=True" in codegen.code_for(runs["pag"])
    folders = []
    for name in ("lcm", "pag"):
        codegen.export(runs[name], tmp_path / name)
        folders.append(str(tmp_path / name))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(twins_dir)}
    env.pop("NBINPAINT_TWINS", None)  # the scripts know nothing of nbinpaint
    subprocess.run([sys.executable, "-c", RUNNER, *folders], env=env, timeout=300, check=True, capture_output=True)
    for name, folder in zip(("lcm", "pag"), folders, strict=True):
        with Image.open(os.path.join(folder, "result.png")) as saved:
            assert np.array_equal(np.asarray(saved), pixels(runs[name])), name


def test_a_workshop_server_loads_only_loras_on_its_allow_list(scene):
    from nbinpaint.serve.policy import AllowList, ModelNotAllowedError

    image, mask = scene
    request = InpaintRequest(image=image, mask=mask, model=SD_INPAINT, lora=LCM)
    with pytest.raises(ModelNotAllowedError, match=f"lora '{LCM}' is not on this workshop server's allow-list"):
        AllowList([SD_INPAINT]).check(request)
    AllowList([SD_INPAINT, LCM]).check(request)
