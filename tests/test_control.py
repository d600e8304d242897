"""The inpaint ControlNet's condition image, its preview, and a request that runs the ControlNet pipeline."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest
import torch

from nbinpaint import control
from nbinpaint.errors import InvalidRequestError
from nbinpaint.requests import InpaintRequest
from tests.conftest import make_scene

SD_INPAINT = "runwayml/stable-diffusion-inpainting"


def test_condition_is_minus_one_exactly_where_the_mask_is_white():
    image, mask = make_scene(64, seed=3)
    image = image.crop((0, 0, 64, 48))  # not square: catches a height/width mix-up
    mask = mask.crop((0, 0, 64, 48))
    condition = control.make_inpaint_condition(image, mask)

    assert condition.shape == (1, 3, 48, 64) and condition.dtype == torch.float32
    white = np.asarray(mask) > 127
    pixels = condition[0].permute(1, 2, 0).numpy()
    assert (pixels[white] == -1.0).all()
    expected = np.asarray(image, dtype=np.float32) / 255.0
    np.testing.assert_array_equal(pixels[~white], expected[~white])
    assert pixels[~white].min() >= 0.0 and pixels[~white].max() <= 1.0


def test_condition_refuses_mismatched_sizes():
    image, mask = make_scene(64)
    with pytest.raises(InvalidRequestError, match="resize the mask"):
        control.make_inpaint_condition(image, mask.resize((32, 32)))


def test_preview_shows_the_image_and_paints_the_masked_pixels():
    image, mask = make_scene(64, seed=4)
    condition = control.make_inpaint_condition(image, mask)
    white = np.asarray(mask) > 127

    preview = np.asarray(control.condition_preview(condition))
    assert preview.shape == (64, 64, 3)
    assert (preview[white] == 0).all()
    np.testing.assert_array_equal(preview[~white], np.asarray(image)[~white])

    magenta = np.asarray(control.condition_preview(condition, masked_color=(255, 0, 255)))
    assert (magenta[white] == (255, 0, 255)).all()


def test_controlnet_request_runs_the_controlnet_inpaint_pipeline(manager, twins_dir, monkeypatch):
    image, mask = make_scene(64)
    request = control.controlnet_request(
        InpaintRequest(prompt="a castle", image=image, mask=mask, model=SD_INPAINT, steps=2, seed=1),
        conditioning_scale=0.7,
    )
    assert request.controlnet == control.DEFAULT_CONTROLNET and request.controlnet_conditioning_scale == 0.7
    pipeline = manager.get(SD_INPAINT, controlnet=request.controlnet)
    assert type(pipeline).__name__ == "StableDiffusionControlNetInpaintPipeline"

    seen: dict[str, Any] = {}
    original = type(pipeline).__call__

    @functools.wraps(original)
    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(pipeline), "__call__", spy)
    result = manager.run(request)

    assert seen["control_image"] is request.control_image
    assert seen["controlnet_conditioning_scale"] == 0.7
    assert result.recipe["pipeline"] == "StableDiffusionControlNetInpaintPipeline"
    assert [row["tasks"] for row in manager.status().rows] == [
        [f"inpaint+controlnet:{control.DEFAULT_CONTROLNET}"],
        ["controlnet"],
    ]


def test_controlnet_request_needs_inpainting_with_image_and_mask():
    image, mask = make_scene(64)
    with pytest.raises(InvalidRequestError, match="task='inpaint'"):
        control.controlnet_request(InpaintRequest(prompt="a", image=image, task="img2img"))
    with pytest.raises(InvalidRequestError, match="pass both"):
        control.controlnet_request(InpaintRequest(prompt="a", image=image))
    with pytest.raises(InvalidRequestError, match="conditioning_scale"):
        control.controlnet_request(InpaintRequest(prompt="a", image=image, mask=mask), conditioning_scale=-1)
