"""Classical backends: real fills without weights, the pipeline call shape, and nothing outside the mask."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from nbinpaint import samples
from nbinpaint.backends import BACKENDS, get_backend
from nbinpaint.errors import ModelLoadError, UnsupportedParameterError
from nbinpaint.requests import InpaintRequest

IDS = list(BACKENDS)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse))


@pytest.mark.parametrize("model", IDS)
def test_fill_beats_flat_grey_inside_and_keeps_outside(model, manager):
    wall = samples.load("astronaut-wall")
    truth, hole = samples.as_array(wall)
    result = manager.run(InpaintRequest(image=wall.image, mask=wall.mask, model=model, seed=0))
    out = np.array(result.image)
    grey = np.full_like(truth, 128)
    fill_db, grey_db = psnr(out[hole], truth[hole]), psnr(grey[hole], truth[hole])
    print(f"{model}: PSNR inside the mask {fill_db:.1f} dB, flat grey {grey_db:.1f} dB")
    assert fill_db >= 25 and fill_db > grey_db + 10
    assert np.array_equal(out[~hole], truth[~hole])


@pytest.mark.parametrize("model", IDS)
def test_signature_refuses_diffusion_only_parameters(model, manager):
    backend = get_backend(model)
    assert "strength" not in inspect.signature(backend.__call__).parameters
    scene = samples.load("chelsea")
    message = f"strength is not accepted by ClassicalInpaintPipeline.*{model}"
    with pytest.raises(UnsupportedParameterError, match=message):
        manager.run(InpaintRequest(image=scene.image, mask=scene.mask, model=model, strength=0.5))


def test_prompt_is_ignored_with_a_notice(manager, capsys):
    scene = samples.load("rocket")
    manager.run(InpaintRequest(prompt="a boat", image=scene.image, mask=scene.mask, model="classical/telea"))
    assert "ignores the prompt" in capsys.readouterr().out


def test_blur_and_preserve_unmasked_apply_around_a_backend(manager):
    scene = samples.load("coffee")
    request = InpaintRequest(image=scene.image, mask=scene.mask, model="classical/ns", blur_factor=8,
                             preserve_unmasked=True)
    out = np.array(manager.run(request).image)
    hole = np.array(scene.mask) > 0
    assert np.array_equal(out[~hole], np.array(scene.image)[~hole])


def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(ModelLoadError, match="classical/telea, classical/ns, classical/biharmonic"):
        get_backend("classical/magic")
