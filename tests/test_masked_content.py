"""The masked-content start (A1111's "Masked content"): what the masked area starts from, on the run path."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nbinpaint import notices
from nbinpaint.backends.classical import fill
from nbinpaint.errors import InvalidRequestError
from nbinpaint.generation import pipeline_parameters
from nbinpaint.pipeline_manager import PipelineManager
from nbinpaint.requests import InpaintRequest
from nbinpaint.soft import masked_start
from tests.conftest import make_scene

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SD_INPAINT = "runwayml/stable-diffusion-inpainting"
KANDINSKY = "kandinsky-community/kandinsky-2-2-decoder-inpaint"
STARTS = ("fill", "latent_noise", "telea")


@pytest.fixture(scope="module")
def shared(twins_dir) -> PipelineManager:
    return PipelineManager(device="cpu")


def halves() -> tuple[Image.Image, Image.Image]:
    """Red on the left, blue on the right, and a hole across the middle."""
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[:, :32, 0], rgb[:, 32:, 2] = 200, 200
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    return Image.fromarray(rgb, "RGB"), Image.fromarray(mask, "L")


def test_fill_blurs_the_surroundings_in_and_keeps_the_rest():
    image, mask = halves()
    filled = np.asarray(masked_start(image, mask, "fill")).astype(int)
    hole = np.asarray(mask) > 0
    assert np.array_equal(filled[~hole], np.asarray(image)[~hole])
    assert filled[32, 18, 0] > filled[32, 18, 2] and filled[32, 46, 2] > filled[32, 46, 0], "each side's colour"
    assert filled[hole].max() <= 200 and filled[hole, 1].max() == 0, "only colours from around the hole"


def test_telea_is_the_classical_backends_fill():
    image, mask = make_scene(64, seed=3)
    hole = np.asarray(mask) > 127
    assert np.array_equal(np.asarray(masked_start(image, mask, "telea")), fill(np.asarray(image), hole, "telea"))


def test_each_start_changes_a_regular_checkpoint_below_strength_1_and_is_recorded(shared):
    image, mask = make_scene(64, seed=4)
    base = InpaintRequest(prompt="grass", image=image, mask=mask, model=SD15, steps=4, strength=0.5, seed=6)
    original = shared.run(base)
    assert original.recipe["parameters"]["masked_content"] == "original"
    assert np.array_equal(
        np.asarray(shared.run(base.replace(masked_content="original")).image), np.asarray(original.image)
    )
    for start in STARTS:
        result = shared.run(base.replace(masked_content=start))
        assert result.recipe["parameters"]["masked_content"] == start
        assert not np.array_equal(np.asarray(result.image), np.asarray(original.image)), start


def test_latent_noise_at_strength_1_changes_nothing_and_says_so(shared, capsys):
    image, mask = make_scene(64, seed=4)
    base = InpaintRequest(image=image, mask=mask, model=SD_INPAINT, steps=2, strength=1.0, seed=6)
    notices.reset()
    noisy = shared.run(base.replace(masked_content="latent_noise"))
    assert np.array_equal(np.asarray(noisy.image), np.asarray(shared.run(base).image))
    assert "changes nothing at strength 1" in capsys.readouterr().out


def test_a_pipeline_without_strength_refuses_it_and_the_panel_says_why(shared):
    image, mask = make_scene(64, seed=4)
    with pytest.raises(InvalidRequestError, match="which masked content needs"):
        shared.run(InpaintRequest(image=image, mask=mask, model=KANDINSKY, steps=2, masked_content="telea"))
    reason = pipeline_parameters(shared, KANDINSKY).reason("masked_content")
    assert reason.startswith("KandinskyV22InpaintCombinedPipeline does not take strength")
    assert pipeline_parameters(shared, SD15).reason("masked_content") is None
    with pytest.raises(InvalidRequestError, match="masked_content=.noise. is invalid.*one of .original., .fill."):
        InpaintRequest(image=image, mask=mask, masked_content="noise").validated()
    assert InpaintRequest(image=image, mask=mask, masked_content=None).validated().masked_content == "original"
