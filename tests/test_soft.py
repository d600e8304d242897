"""Soft (differential) inpainting on the twins: a grey mask is a per-pixel strength, run in the step loop.

The issue's check: a mask 0 on the left third, 128 in the middle and 255 on the right third changes the left
not at all (the composite keeps it exactly), the right most, the middle in between. And a binary mask with
``soft=True`` gives the pixels of plain inpainting with ``preserve_unmasked=True`` on a regular checkpoint,
whose pipeline already does the same per-step blend with the same noise (see `nbinpaint.soft`).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from nbinpaint import soft
from nbinpaint.errors import GenerationCancelled, InvalidRequestError
from nbinpaint.generation import pipeline_parameters
from nbinpaint.pipeline_manager import PipelineManager
from nbinpaint.recipes import load_recipe, request_from_recipe, save_result
from nbinpaint.requests import InpaintRequest

SD_INPAINT = "runwayml/stable-diffusion-inpainting"
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SDXL_INPAINT = "diffusers/stable-diffusion-xl-1.0-inpainting-0.1"
KANDINSKY = "kandinsky-community/kandinsky-2-2-decoder-inpaint"
WIDTH, HEIGHT = 96, 64  # thirds of 32 px: four latent columns each


@pytest.fixture(scope="module")
def shared(twins_dir) -> PipelineManager:
    return PipelineManager(device="cpu")


def picture() -> Image.Image:
    rng = np.random.default_rng(7)
    return Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8), "RGB")


def bands(left: int, middle: int, right: int) -> Image.Image:
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    third = WIDTH // 3
    mask[:, :third], mask[:, third : 2 * third], mask[:, 2 * third :] = left, middle, right
    return Image.fromarray(mask, "L")


def change_by_third(result: Image.Image, image: Image.Image) -> list[float]:
    """Mean absolute change from the input in the left, middle and right thirds."""
    change = np.abs(np.asarray(result, np.float64) - np.asarray(image, np.float64)).mean(axis=(0, 2))
    third = WIDTH // 3
    return [float(change[:third].mean()), float(change[third : 2 * third].mean()), float(change[2 * third :].mean())]


@pytest.mark.parametrize("model", [SD_INPAINT, SD15, SDXL_INPAINT])
def test_three_bands_change_nothing_some_and_most(shared, model):
    image = picture()
    result = shared.run(
        InpaintRequest(prompt="moss", image=image, mask=bands(0, 128, 255), model=model, steps=6, seed=11)
    )
    assert result.request.soft is True, "a grey mask turns soft inpainting on by itself"
    left, middle, right = change_by_third(result.image, image)
    print(model, [round(x, 2) for x in (left, middle, right)])
    assert left == 0.0, "black keeps the input's pixels exactly (the composite)"
    assert 0 < middle < right
    assert middle > 0.2 * right, "128 repaints the second half of the steps: a real change"


def test_a_grey_band_repaints_less_than_the_same_band_in_white(shared):
    """Without soft inpainting 128 reads as white (thresholded at half): the middle changes as the right does."""
    image = picture()
    hard = shared.run(InpaintRequest(image=image, mask=bands(0, 128, 255), model=SD15, steps=6, seed=11, soft=False))
    soft_run = shared.run(InpaintRequest(image=image, mask=bands(0, 128, 255), model=SD15, steps=6, seed=11))
    assert hard.request.soft is False and set(np.unique(hard.request.mask)) == {0, 255}
    assert change_by_third(soft_run.image, image)[1] < change_by_third(hard.image, image)[1]


def test_a_binary_mask_with_soft_gives_plain_inpaintings_pixels_on_a_regular_checkpoint(shared):
    image, mask = picture(), bands(0, 0, 255)
    plain = shared.run(InpaintRequest(image=image, mask=mask, model=SD15, steps=5, seed=3, preserve_unmasked=True))
    soft_run = shared.run(InpaintRequest(image=image, mask=mask, model=SD15, steps=5, seed=3, soft=True))
    assert soft_run.request.soft is True
    assert np.array_equal(np.asarray(soft_run.image), np.asarray(plain.image))


def test_a_binary_mask_with_soft_on_an_inpaint_checkpoint_keeps_the_unmasked_pixels(shared):
    """The 9-channel pipeline blends no latents of its own, so soft's blend changes what its UNet sees near
    the mask: the repainted third differs from plain inpainting, the kept two thirds are the input's."""
    image, mask = picture(), bands(0, 0, 255)
    plain = shared.run(InpaintRequest(image=image, mask=mask, model=SD_INPAINT, steps=4, seed=3))
    soft_run = shared.run(InpaintRequest(image=image, mask=mask, model=SD_INPAINT, steps=4, seed=3, soft=True))
    kept = np.asarray(mask) == 0
    assert np.array_equal(np.asarray(soft_run.image)[kept], np.asarray(image)[kept])
    assert not np.array_equal(np.asarray(plain.image)[kept], np.asarray(image)[kept]), "plain: VAE round trip"


def test_soft_is_decided_by_the_mask_and_refused_where_the_pipeline_cannot(shared):
    image = picture()
    binary = shared.run(InpaintRequest(image=image, mask=bands(0, 255, 255), model=SD15, steps=2, seed=1))
    assert binary.request.soft is False and binary.recipe["parameters"]["soft"] is False
    jpeg_noise = bands(3, 252, 255)  # levels within GREY_TOLERANCE of black and white: not a painted gradient
    assert shared.run(InpaintRequest(image=image, mask=jpeg_noise, model=SD15, steps=2, seed=1)).request.soft is False
    # Kandinsky 2.2 takes no strength and blends its own latents: soft stays off, and asking for it is refused.
    square, grey = image.crop((0, 0, 64, 64)), bands(0, 128, 255).crop((0, 0, 64, 64))  # Kandinsky: 64 px steps
    auto = shared.run(InpaintRequest(image=square, mask=grey, model=KANDINSKY, steps=2, seed=1))
    assert auto.request.soft is False
    with pytest.raises(InvalidRequestError, match="does not take strength, which soft inpainting needs"):
        shared.run(InpaintRequest(image=square, mask=grey, model=KANDINSKY, steps=2, seed=1, soft=True))
    with pytest.raises(InvalidRequestError, match="padding_mask_crop"):
        InpaintRequest(image=image, mask=bands(0, 128, 255), soft=True, padding_mask_crop=8).validated()
    with pytest.raises(InvalidRequestError, match="inpainting only"):
        InpaintRequest(image=image, task="img2img", soft=True).validated()


def test_the_panel_greys_soft_out_for_kandinsky_and_classical_fills_with_the_reason(shared):
    assert pipeline_parameters(shared, SD15).reason("soft") is None
    assert pipeline_parameters(shared, SDXL_INPAINT).reason("soft") is None
    reason = pipeline_parameters(shared, KANDINSKY).reason("soft")
    assert reason.startswith("KandinskyV22InpaintCombinedPipeline does not take strength, which soft inpainting")
    assert (
        pipeline_parameters(shared, "classical/telea")
        .reason("soft")
        .startswith("ClassicalInpaintPipeline does not take strength")
    )


def test_the_blend_chains_with_progress_previews_and_cancel(shared):
    image, mask = picture(), bands(0, 128, 255)
    steps, previews = [], []
    request = InpaintRequest(image=image, mask=mask, model=SD15, steps=4, seed=2)
    result = shared.run(request, on_step=lambda *a: steps.append(a[0]), on_preview=lambda *a: previews.append(a[0]))
    # PNDM (this twin's scheduler) runs 4 steps over 5 timesteps: every one reported, each blended.
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 4 and previews and result.request.soft
    quiet = shared.run(request)  # the listeners only listen: same pixels without them
    assert np.array_equal(np.asarray(quiet.image), np.asarray(result.image))
    with pytest.raises(GenerationCancelled):
        shared.run(request, should_stop=lambda: True)
    pipeline = shared.get(SD15)
    assert "prepare_latents" not in vars(pipeline), "the wrapper is gone after a run, cancelled or not"
    assert np.array_equal(np.asarray(shared.run(request).image), np.asarray(result.image))


def test_the_recipe_restores_soft_and_the_grey_mask(shared, tmp_path):
    image = picture()
    result = shared.run(
        InpaintRequest(image=image, mask=bands(0, 128, 255), model=SD15, steps=3, seed=5, blur_factor=4)
    )
    saved = save_result(result, tmp_path)
    recipe = load_recipe(saved.paths[0])
    assert recipe["parameters"]["soft"] is True
    again = shared.run(request_from_recipe(recipe, image=image, mask=result.request.mask))
    assert again.request.soft is True and again.request.blur_factor == 4
    assert np.array_equal(np.asarray(again.image), np.asarray(result.image))


class _Scheduler:
    """Noising that marks which latents were held: the image latents plus the timestep."""

    timesteps = torch.tensor([900, 700, 500, 300, 100])

    def add_noise(self, latents, noise, timestep):
        return latents + noise + float(timestep[0])


class _Pipe:
    num_timesteps = 5
    scheduler = _Scheduler()


def test_a_pixel_of_grey_m_is_held_while_one_minus_m_is_above_the_schedules_fraction():
    """The rule of differential diffusion, on one latent row of three greys: 0 (held to the end), 0.5 (held
    while 0.5 > (i + 1) / 5, so after steps 0 and 1), 1 (never held)."""
    mask = Image.fromarray(np.repeat(np.array([[0, 128, 255]], np.uint8), 8, axis=1).repeat(8, axis=0), "L")
    blend = soft.LatentBlend(_Pipe(), seed=0, soft_mask=mask)
    blend.image_latents, blend.noise = torch.zeros(1, 1, 1, 3), torch.zeros(1, 1, 1, 3)
    held = []
    for step in range(5):
        latents = blend.after_step(_Pipe(), step, None, {"latents": torch.full((1, 1, 1, 3), -1.0)})["latents"]
        held.append([bool(value >= 0) for value in latents.flatten()])
        if step < 4:
            assert latents.flatten()[0] == float(_Scheduler.timesteps[step + 1]), "noised to the next timestep"
    # After the last step nothing is blended: the composite keeps black exact.
    assert held == [[True, True, False]] * 2 + [[True, False, False]] * 2 + [[False, False, False]]


def test_the_panel_has_a_soft_switch_and_a_masked_content_choice_from_their_rows(shared):
    import ipywidgets

    from nbinpaint.history import History
    from nbinpaint.widgets.panel import ParameterPanel

    image, mask = picture(), bands(0, 0, 255)
    panel = ParameterPanel(image, mask, manager=shared, history=History(output=False), model=SD15)
    try:
        assert panel.wait_ready(120)
        switch, choice = panel.controls["soft"], panel.controls["masked_content"]
        assert isinstance(switch, ipywidgets.Checkbox) and isinstance(choice, ipywidgets.Dropdown)
        assert choice.options == ("original", "fill", "latent_noise", "telea")
        assert not switch.disabled and not choice.disabled
        assert panel.request().soft is None, "unticked: on by itself for a grey mask"
        switch.value, choice.value = True, "telea"
        made = panel.request()
        assert made.soft is True and made.masked_content == "telea"
        panel.controls["model"].value = KANDINSKY
        assert panel.wait_ready(120)
        assert switch.disabled and choice.disabled
        assert switch.tooltip.startswith("Off: KandinskyV22InpaintCombinedPipeline does not take strength")
        made = panel.request()
        assert made.soft is None and made.validated().masked_content == "original", "greyed out: not sent"
    finally:
        panel.close()
