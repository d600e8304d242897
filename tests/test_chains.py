"""Chained pipelines on the twins: latents or pixels between stages, decided from the components."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
import torch
from PIL import Image

from nbinpaint import chains
from nbinpaint.errors import InvalidRequestError
from nbinpaint.pipeline_manager import storages_of
from nbinpaint.requests import InpaintRequest
from tests.conftest import make_scene

SD_INPAINT = "runwayml/stable-diffusion-inpainting"
SD15 = chains.SD15
REFINER = chains.SDXL_REFINER
KANDINSKY = chains.KANDINSKY_INPAINT
CONTROLNET = "lllyasviel/control_v11p_sd15_inpaint"
ELDEN_RING = "nitrosocke/elden-ring-diffusion"
FAST_PRIOR = {"extra": {"prior_num_inference_steps": 2}}


def record(monkeypatch: pytest.MonkeyPatch, events: list[str], target: Any, method: str, label: str) -> None:
    """Log ``label`` in ``events`` each time ``target.method`` runs (an instance, or a class for ``__call__``)."""
    original = getattr(target, method)

    @functools.wraps(original)  # keeps the signature: the request API reads it
    def spy(*args: Any, **kwargs: Any) -> Any:
        events.append(label)
        return original(*args, **kwargs)

    monkeypatch.setattr(target, method, spy)


def count(events: list[str], label: str) -> int:
    return events.count(label)


def test_latent_handoff_between_sd_pipelines_decodes_once_at_the_end(manager, twins_dir, monkeypatch):
    image, mask = make_scene(64)
    inpaint, img2img = manager.get(SD15, "inpaint"), manager.get(SD15, "img2img")
    events: list[str] = []
    record(monkeypatch, events, inpaint.vae, "decode", "decode")
    record(monkeypatch, events, inpaint.vae, "encode", "encode")
    record(monkeypatch, events, type(img2img), "__call__", "img2img")

    chain = chains.inpaint_to_img2img(
        image, mask, "a castle", inpaint_model=SD15, img2img_model=SD15, steps=3, seed=1,
        img2img_params={"strength": 0.7}, manager=manager,
    )  # fmt: skip

    assert chain.handoffs[0].mode == "latent"
    latents = chain.stages[0].images
    assert isinstance(latents, torch.Tensor) and latents.shape == (1, 4, 8, 8)
    start = events.index("img2img")
    assert count(events[:start], "decode") == 0  # nothing decoded between the stages
    assert events[start:] == ["img2img", "decode"]  # no encode in stage 2: it starts from the latents
    assert isinstance(chain.image, Image.Image) and chain.image.size == (64, 64)


def test_same_repo_chain_reuses_one_checkpoint(manager, twins_dir):
    image, mask = make_scene(64)
    chains.inpaint_to_img2img(
        image, mask, "a castle", inpaint_model=SD15, img2img_model=SD15, steps=2, seed=1, manager=manager
    )
    rows = manager.status().rows
    assert len(rows) == 1 and rows[0]["model"] == SD15
    assert rows[0]["tasks"] == ["inpaint", "img2img"] and rows[0]["runs"] == 2
    inpaint, img2img = manager.get(SD15, "inpaint"), manager.get(SD15, "img2img")
    assert set(storages_of(inpaint)) == set(storages_of(img2img))
    assert img2img.vae is inpaint.vae


def test_guide_chain_sd_to_refiner_is_pixels_and_refiner_to_img2img_is_latent(manager, twins_dir, monkeypatch):
    image, mask = make_scene(64)
    requests = [
        InpaintRequest(prompt="a castle", image=image, mask=mask, model=SD_INPAINT, steps=2, seed=3),
        InpaintRequest(prompt="a castle", mask=mask, model=REFINER, steps=2, seed=3),
        InpaintRequest(prompt="a castle", task="img2img", model=REFINER, steps=4, strength=0.5, seed=3),
    ]
    sd, refiner = manager.get(SD_INPAINT), manager.get(REFINER, "inpaint")
    assert type(refiner).__name__ == "StableDiffusionXLInpaintPipeline"  # AutoPipelineForInpainting, as the guide
    events: list[str] = []
    record(monkeypatch, events, sd.vae, "decode", "sd decode")
    record(monkeypatch, events, refiner.vae, "decode", "refiner decode")
    record(monkeypatch, events, refiner.vae, "encode", "refiner encode")
    record(monkeypatch, events, type(manager.get(REFINER, "img2img")), "__call__", "img2img")

    chain = chains.run_chain(requests, name="guide", manager=manager)

    first, second = chain.handoffs
    assert first.mode == "pixels" and "scaling_factor 0.18215 vs 0.13025" in first.reason
    assert second.mode == "latent" and "same AutoencoderKL" in second.reason
    start = events.index("img2img")
    assert events[0] == "sd decode" and count(events, "sd decode") == 1  # SD's own decode, then pixels
    assert set(events[1:start]) == {"refiner encode"}  # the refiner encodes the pixels (and masked pixels)
    assert events[start:] == ["img2img", "refiner decode"]  # latents into img2img, decoded once at the end
    assert manager.get(REFINER, "img2img").vae is refiner.vae  # from_pipe, not a second load
    assert [row["model"] for row in manager.status().rows] == [SD_INPAINT, REFINER]


def test_kandinsky_to_sd_decodes_and_encodes_once_in_between(manager, twins_dir, monkeypatch):
    image, mask = make_scene(64)
    kandinsky, img2img = manager.get(KANDINSKY), manager.get(SD15, "img2img")
    events: list[str] = []
    record(monkeypatch, events, kandinsky.movq, "decode", "movq decode")
    record(monkeypatch, events, img2img.vae, "encode", "vae encode")
    record(monkeypatch, events, img2img.vae, "decode", "vae decode")
    record(monkeypatch, events, type(img2img), "__call__", "img2img")

    chain = chains.inpaint_to_img2img(
        image, mask, "a castle", inpaint_model=KANDINSKY, img2img_model=SD15, steps=2, seed=1,
        inpaint_params=FAST_PRIOR, manager=manager,
    )  # fmt: skip

    assert chain.handoffs[0].mode == "pixels"
    assert chain.handoffs[0].reason == "different autoencoders: VQModel vs AutoencoderKL"
    assert events == ["movq decode", "img2img", "vae encode", "vae decode"]
    assert isinstance(chain.stages[0].image, Image.Image)


def test_controlnet_inpaint_then_another_checkpoints_img2img_is_a_second_load(manager, twins_dir):
    image, mask = make_scene(64)
    chain = chains.inpaint_to_img2img(
        image, mask, "a castle", "elden ring style castle", controlnet=CONTROLNET, img2img_model=ELDEN_RING,
        steps=2, seed=1, img2img_params={"negative_prompt": "bad architecture"}, manager=manager,
    )  # fmt: skip
    inpaint, style = chain.stages
    assert inpaint.recipe["pipeline"] == "StableDiffusionControlNetInpaintPipeline"
    assert inpaint.request.control_image is not None and style.request.negative_prompt == "bad architecture"
    assert style.recipe["pipeline"] == "StableDiffusionImg2ImgPipeline"
    rows = {row["model"]: row["tasks"] for row in manager.status().rows}
    assert rows == {
        SD_INPAINT: [f"inpaint+controlnet:{CONTROLNET}"],
        ELDEN_RING: ["img2img"],
        CONTROLNET: ["controlnet"],
    }
    assert manager.get(ELDEN_RING, "img2img").unet is not manager.get(SD_INPAINT, controlnet=CONTROLNET).unet
    # Two repos whose VAEs are configured alike (SD 1.5's): the latents pass between them.
    assert chain.handoffs[0].mode == "latent" and "identically configured" in chain.handoffs[0].reason


def test_text_to_inpaint_runs_at_the_masks_size_and_records_the_chain(manager, twins_dir):
    _, mask = make_scene(64)
    chain = chains.text_to_inpaint(
        "an elven castle", mask, "a waterfall", steps=2, seed=5, inpaint_params=FAST_PRIOR, manager=manager
    )
    text, inpaint = chain.stages
    assert text.request.task == "text2img" and text.request.model == SD15 and text.image.size == (64, 64)
    assert inpaint.request.model == KANDINSKY and inpaint.request.prompt == "a waterfall"
    assert chain.handoffs[0].mode == "pixels"
    assert inpaint.request.image.tobytes() == text.image.tobytes()  # the generated image is the inpaint's base
    recipe = inpaint.recipe["chain"]
    assert recipe["name"] == "text_to_inpaint" and recipe["stage"] == 2
    assert recipe["stages"] == [{"model": SD15, "task": "text2img"}, {"model": KANDINSKY, "task": "inpaint"}]
    assert recipe["handoff_in"]["mode"] == "pixels" and recipe["input"] == "pixels of stage 1"
    assert text.recipe["chain"]["stage"] == 1 and text.recipe["chain"]["input"] is None
    assert chain.seed == 5 and text.seed == 5
    assert set(chain.timings) == {"stage1_s", "stage2_s", "total_s"}


@pytest.mark.parametrize(
    ("source", "target", "change", "mode", "reason"),
    [
        ((SD15, "text2img"), (SD15, "inpaint"), {}, "pixels", "masks its image in pixel space"),
        ((SD_INPAINT, "inpaint"), (REFINER, "inpaint"), {}, "pixels", "scaling_factor"),
        ((REFINER, "inpaint"), (REFINER, "img2img"), {}, "latent", "same AutoencoderKL"),
        ((REFINER, "img2img"), (REFINER, "inpaint"), {}, "latent", "same AutoencoderKL"),
        ((SD_INPAINT, "inpaint"), (ELDEN_RING, "img2img"), {}, "latent", "identically"),
        ((SD15, "inpaint"), (SD15, "img2img"), {"padding_mask_crop": 8}, "pixels", "padding_mask_crop"),
        ((SD15, "inpaint"), (SD15, "img2img"), {"preserve_unmasked": True}, "pixels", "preserve_unmasked"),
        ((SD15, "img2img"), (SD_INPAINT, "inpaint"), {}, "pixels", "UNet takes 9 channels"),
        ((KANDINSKY, "inpaint"), (SD15, "img2img"), {}, "pixels", "VQModel vs AutoencoderKL"),
    ],
)
def test_plan_handoff_decides_from_the_components(manager, twins_dir, source, target, change, mode, reason):
    source_request = InpaintRequest(model=source[0], task=source[1], **change)
    target_request = InpaintRequest(model=target[0], task=target[1])
    handoff = chains.plan_handoff(
        manager.get(*source), manager.get(*target), source_request=source_request, target_request=target_request
    )
    assert handoff.mode == mode and reason in handoff.reason


def test_to_img2img_and_refine_continue_a_result(manager, twins_dir):
    image, mask = make_scene(64)
    result = manager.run(InpaintRequest(prompt="a castle", image=image, mask=mask, model=SD15, steps=2, seed=2))

    sent = chains.to_img2img(result, manager=manager, strength=0.7)
    assert [r.request.task for r in sent.stages] == ["inpaint", "img2img"]
    assert sent.final.request.model == SD15 and sent.final.request.prompt == "a castle"
    assert sent.final.request.steps == 2  # inherited from the result
    assert sent.handoffs[0].reason == "the result was already decoded"
    assert manager.status().rows[0]["tasks"] == ["inpaint", "img2img"]

    refined = chains.refine(sent, "a sharper castle", manager=manager, strength=0.5)
    assert len(refined.stages) == 3 and refined.name == "to_img2img"
    last = refined.final
    assert last.request.model == REFINER and last.request.task == "inpaint"
    assert last.recipe["pipeline"] == "StableDiffusionXLInpaintPipeline"
    assert last.request.prompt == "a sharper castle"
    assert last.request.mask.getextrema() == (255, 255)  # the img2img result had no mask: refine it all
    assert last.recipe["chain"]["stage"] == 3 and len(last.recipe["chain"]["stages"]) == 3
    assert refined.image.size == (64, 64)


def test_refine_repaints_the_results_mask(manager, twins_dir):
    image, mask = make_scene(64)
    result = manager.run(InpaintRequest(prompt="a castle", image=image, mask=mask, steps=2, seed=2))
    refined = chains.refine(result, manager=manager, steps=2)
    assert refined.final.request.mask.tobytes() == result.request.mask.tobytes()
    assert refined.final.request.image.tobytes() == result.image.tobytes()


def test_img2img_on_an_inpainting_checkpoint_names_a_plain_one(manager, twins_dir, monkeypatch):
    image, mask = make_scene(64)
    calls: list[str] = []
    record(monkeypatch, calls, type(manager.get(SD_INPAINT)), "__call__", "inpaint")
    with pytest.raises(
        InvalidRequestError, match=r"inpainting checkpoint.*stable-diffusion-v1-5/stable-diffusion-v1-5"
    ):
        chains.inpaint_to_img2img(image, mask, "a castle", img2img_model=SD_INPAINT, steps=2, manager=manager)
    assert calls == []  # refused before the first stage ran


def test_a_later_stage_with_its_own_image_is_refused(manager):
    image, mask = make_scene(64)
    first = InpaintRequest(prompt="a", image=image, mask=mask)
    with pytest.raises(InvalidRequestError, match="leave its image=None"):
        chains.run_chain([first, first], manager=manager)


def test_pipeline_extras_lists_kandinskys_prior_settings_and_extra_reaches_the_prior(manager, twins_dir, monkeypatch):
    pipeline = manager.get(KANDINSKY)
    extras = chains.pipeline_extras(pipeline)
    assert set(extras) == {"prior_guidance_scale", "prior_num_inference_steps"}
    assert extras["prior_num_inference_steps"].default == 25
    sdxl = chains.pipeline_extras(manager.get(REFINER, "inpaint"))
    assert {"aesthetic_score", "prompt_2", "guidance_rescale"} <= set(sdxl)
    assert not {"prompt", "image", "latents", "callback_on_step_end", "return_dict", "generator"} & set(sdxl)

    seen: dict[str, Any] = {}
    original: Callable[..., Any] = type(pipeline.prior_pipe).__call__

    @functools.wraps(original)
    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(pipeline.prior_pipe), "__call__", spy)
    image, mask = make_scene(64)
    request = InpaintRequest(
        prompt="a castle", image=image, mask=mask, model=KANDINSKY, steps=2, seed=1,
        extra={"prior_num_inference_steps": 2, "prior_guidance_scale": 1.5},
    )  # fmt: skip
    manager.run(request)
    assert seen["num_inference_steps"] == 2 and seen["guidance_scale"] == 1.5
