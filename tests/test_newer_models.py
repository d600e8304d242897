"""Today's inpainting models (SD3.5 medium, Flux Fill) and quantized loading, on their tiny twins.

Each new repo id loads offline as a twin by its repo id, runs a 2-step generation through `nbinpaint.inpaint`,
names its pipeline class in the recipe, and its Show code script gives the same pixels; Flux Fill refuses a
negative prompt with the table's reason; ``quantize`` on a CPU falls back to full weights with a notice.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import nbinpaint
from nbinpaint import codegen, notices, twins
from nbinpaint.errors import UnsupportedParameterError
from nbinpaint.generation import pipeline_parameters
from nbinpaint.model_names import default_guidance, model_choices, needs_text
from nbinpaint.pipeline_manager import PipelineManager
from nbinpaint.recipes import parse_recipe
from nbinpaint.requests import InpaintRequest
from nbinpaint.runner import size_multiple
from nbinpaint.session import shared_manager
from nbinpaint.studio_state import PanelState, reasons_for
from tests.conftest import make_scene

SD3 = "stabilityai/stable-diffusion-3.5-medium"
FLUX_FILL = "black-forest-labs/FLUX.1-Fill-dev"
CLASSES = {SD3: "StableDiffusion3InpaintPipeline", FLUX_FILL: "FluxFillPipeline"}


def odd_scene() -> tuple[Image.Image, Image.Image]:
    """72x56: a multiple of 8 but not of 16, which both new pipelines need."""
    image, mask = make_scene(72, seed=3)
    return image.resize((72, 56)), mask.resize((72, 56), Image.Resampling.NEAREST)


@pytest.mark.parametrize("model", list(CLASSES))
def test_each_new_repo_id_loads_as_a_twin_and_inpaints_in_two_steps(twins_dir, model):
    image, mask = odd_scene()
    result = nbinpaint.inpaint(image, mask, "a red boat", model=model, steps=2, seed=7)
    assert result.recipe["pipeline"] == CLASSES[model]
    assert result.recipe["twin"] is True
    assert result.image.size == image.size  # run at 64x48, resized back
    assert (result.request.width, result.request.height) == (64, 48)
    assert parse_recipe(result.recipe)["pipeline"] == CLASSES[model]
    pipeline = shared_manager().get(model)
    assert twins.is_twin(pipeline) and size_multiple(pipeline) == 16
    assert pipeline.vae.config.latent_channels == 16 and pipeline.vae_scale_factor == 8
    again = nbinpaint.inpaint(image, mask, "a red boat", model=model, steps=2, seed=7)
    assert np.array_equal(np.asarray(again.image), np.asarray(result.image))


def test_the_twins_keep_the_real_layouts(twins_dir):
    manager = shared_manager()
    sd3, flux = manager.get(SD3), manager.get(FLUX_FILL)
    assert type(sd3.text_encoder_3).__name__ == "T5EncoderModel"
    assert type(sd3.tokenizer_3).__name__ in ("T5TokenizerFast", "T5Tokenizer")  # one class in transformers 5
    assert sd3.transformer.config.patch_size == 2 and sd3.vae.config.shift_factor == 0.0609
    assert sd3.scheduler.config.shift == 3.0
    # Flux Fill's transformer takes packed latents, masked-image latents and the 8x8 mask: 64 + 64 + 256.
    assert flux.transformer.config.in_channels == 384 and flux.transformer.config.guidance_embeds
    assert flux.scheduler.config.use_dynamic_shifting and flux.vae.config.scaling_factor == 0.3611
    assert type(flux.text_encoder_2).__name__ == "T5EncoderModel"


def test_show_code_reproduces_the_pixels_with_the_class_the_manager_loaded(twins_dir, tmp_path):
    image, mask = odd_scene()
    made = {}
    for model in CLASSES:
        result = nbinpaint.inpaint(image, mask, "a lighthouse", model=model, steps=2, seed=11, guidance_scale=4.0)
        folder = tmp_path / model.split("/")[1]
        codegen.export(result, folder)
        made[model] = (result, folder)
    flux_script = (made[FLUX_FILL][1] / "reproduce.py").read_text()
    assert "FluxFillPipeline.from_pretrained(" in flux_script and "AutoPipelineFor" not in flux_script
    assert "AutoPipelineForInpainting.from_pretrained(" in (made[SD3][1] / "reproduce.py").read_text()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(twins_dir)}
    env.pop("NBINPAINT_TWINS", None)  # the scripts know nothing of nbinpaint
    for model, (result, folder) in made.items():
        subprocess.run([sys.executable, "reproduce.py"], cwd=folder, env=env, timeout=300, check=True)
        pixels = np.asarray(Image.open(folder / "result.png").convert("RGB"))
        assert np.array_equal(pixels, np.asarray(result.image)), model


def test_flux_fill_refuses_a_negative_prompt_and_the_panel_greys_it_out_with_the_reason(twins_dir):
    image, mask = odd_scene()
    with pytest.raises(UnsupportedParameterError, match="negative_prompt is not accepted by FluxFillPipeline"):
        nbinpaint.inpaint(image, mask, "a cat", negative_prompt="blurry", model=FLUX_FILL, steps=2)
    found = pipeline_parameters(shared_manager(), FLUX_FILL)
    reasons = reasons_for(found, FLUX_FILL)
    assert reasons["negative_prompt"] == "FluxFillPipeline does not take negative_prompt"
    assert reasons["padding_mask_crop"] == "FluxFillPipeline does not take padding_mask_crop"
    assert "negative_prompt" not in reasons_for(pipeline_parameters(shared_manager(), SD3), SD3)
    state = PanelState(model=FLUX_FILL, manager=shared_manager(), image=image, mask=mask)
    assert state.wait_ready(120)
    assert state.disabled_reasons["negative_prompt"] == "FluxFillPipeline does not take negative_prompt"
    assert state.values()["negative_prompt"] is None


def test_the_guidance_scale_follows_each_models_own_default_unless_the_user_chose_one(twins_dir):
    assert default_guidance(FLUX_FILL) == 30.0
    state = PanelState(manager=shared_manager(), start=False)
    state.model = "runwayml/stable-diffusion-inpainting"
    assert state.guidance_scale == 7.5
    state.model = FLUX_FILL
    assert state.guidance_scale == 30.0  # not clamped by the slider
    state.model = SD3
    assert state.guidance_scale == 7.0
    state.guidance_scale = 5.0
    state.model = FLUX_FILL
    assert state.guidance_scale == 5.0  # the user's choice is kept
    assert PanelState(model=FLUX_FILL, manager=shared_manager(), start=False).guidance_scale == 30.0
    given = PanelState(model=FLUX_FILL, guidance_scale=7.5, manager=shared_manager(), start=False)
    assert given.guidance_scale == 7.5  # asked for with the model: kept


def test_the_picker_lists_the_new_models_with_what_they_need():
    from nbinpaint.widgets.picker import model_options

    assert {SD3, FLUX_FILL} <= set(model_choices())
    labels = {value: label for label, value in model_options()}
    assert "4-bit" in labels[FLUX_FILL] and "50 steps" in labels[FLUX_FILL]
    assert needs_text(SD3) in labels[SD3] and "28 steps" in labels[SD3]


def test_quantize_on_a_cpu_falls_back_with_a_notice_runs_and_the_recipe_says_what_ran(twins_dir, capsys):
    notices.reset()
    manager = PipelineManager(device="cpu")
    image, mask = odd_scene()
    request = InpaintRequest(prompt="a cat", image=image, mask=mask, model=SD3, steps=2, seed=5, quantize="4bit")
    result = manager.run(request)
    assert "quantize='4bit' needs a CUDA GPU" in capsys.readouterr().out
    assert result.request.quantize is None and result.recipe["quantize_asked"] == "4bit"
    assert result.recipe["parameters"]["quantize"] is None
    plain = manager.run(request.replace(quantize=None))
    assert np.array_equal(np.asarray(plain.image), np.asarray(result.image))
    assert len(manager.status().rows) == 1  # the fallback is the same float32 checkpoint, loaded once


def test_quantize_is_refused_when_misspelt_and_configures_bitsandbytes_for_the_large_parts(twins_dir):
    from nbinpaint.errors import InvalidRequestError
    from nbinpaint.pipeline_manager import quantization_config

    image, mask = odd_scene()
    with pytest.raises(InvalidRequestError, match="quantize must be one of '4bit', '8bit'"):
        InpaintRequest(image=image, mask=mask, model=SD3, quantize="4-bit").validated()
    sd3 = quantization_config(SD3, "4bit", torch.float16)
    assert sd3.quant_backend == "bitsandbytes_4bit" and sd3.quant_kwargs["bnb_4bit_quant_type"] == "nf4"
    assert sd3.components_to_quantize == ["text_encoder_3", "transformer"]
    flux = quantization_config(FLUX_FILL, "8bit", torch.bfloat16)
    assert flux.quant_backend == "bitsandbytes_8bit"
    assert flux.components_to_quantize == ["text_encoder_2", "transformer"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")
@pytest.mark.filterwarnings("ignore:Using extra keyword arguments on `Field`")
def test_a_workshop_server_serves_the_new_models_with_the_local_pixels(twins_dir):
    """`nbinpaint serve --models` with SD3.5 and Flux Fill: a participant gets the local pixels, and the same
    refusal of a negative prompt; quantize travels with the request and falls back on the CPU server too."""
    pytest.importorskip("ray.serve")
    from nbinpaint.remote import RemoteManager
    from nbinpaint.serve import Limits, ServerConfig, local_server
    from tests.test_serve import TOKEN, free_port

    config = ServerConfig(
        models=tuple(CLASSES),
        token=TOKEN,
        twins=True,
        twins_dir=str(twins_dir),
        port=free_port(),
        threads=torch.get_num_threads(),  # on a CPU, pixels match a local run only at the same thread count
        limits=Limits(max_steps=60, max_outstanding=4),
        health_check_period_s=1.0,
    )
    image, mask = odd_scene()
    local = PipelineManager(device="cpu")
    with local_server(config, num_cpus=2) as url:
        remote = RemoteManager(url, TOKEN, client_id="participant", timeout=120)
        remote.check()
        for model in CLASSES:
            request = InpaintRequest(prompt="a cat", image=image, mask=mask, model=model, steps=2, seed=3)
            assert remote.pipeline_class(model) == CLASSES[model]
            theirs, ours = remote.run(request.replace(quantize="4bit")), local.run(request)
            assert np.array_equal(np.asarray(theirs.image), np.asarray(ours.image)), model
            assert theirs.recipe["pipeline"] == CLASSES[model] and theirs.request.quantize is None
        with pytest.raises(UnsupportedParameterError, match="negative_prompt is not accepted by FluxFillPipeline"):
            remote.run(InpaintRequest(prompt="a", negative_prompt="b", image=image, mask=mask, model=FLUX_FILL))
