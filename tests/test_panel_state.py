"""PanelState without a widget: form values -> request, greying-out from a lookup, restoring a request.

A fake manager answers the lookups (no pipeline is loaded), so these tests need no twins and no front end.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nbinpaint.history import History
from nbinpaint.parameters import CALL_NAMES, row
from nbinpaint.requests import InpaintRequest
from nbinpaint.studio_state import FIELD_WORDS, TOOLTIPS, PanelState, reasons_sentence
from tests.conftest import make_scene

SD_INPAINT = "runwayml/stable-diffusion-inpainting"
ALL = frozenset({*CALL_NAMES.values(), "generator", "callback_on_step_end"})  # as every SD pipeline


class FakeManager:
    """Answers lookups as a local manager would, from a table of model -> (class name, parameters)."""

    def __init__(self, pipelines: dict[str, tuple[str, frozenset[str]]]) -> None:
        self.pipelines = pipelines

    def accepted_parameters(self, model: str, task: str = "inpaint", **kwargs) -> frozenset[str]:
        return self.pipelines[model][1]

    def pipeline_class(self, model: str, task: str = "inpaint", **kwargs) -> str:
        return self.pipelines[model][0]


@pytest.fixture
def state():
    manager = FakeManager(
        {
            SD_INPAINT: ("StableDiffusionInpaintPipeline", ALL),
            "some/no-eta": ("KandinskyLikePipeline", ALL - {"eta"}),
        }
    )
    image, mask = make_scene(64)
    made = PanelState(history=History(output=False), manager=manager, model=SD_INPAINT, image=image, mask=mask)
    assert made.wait_ready(10)
    yield made
    made.detach()


def test_the_state_module_loads_no_widget_module():
    root = Path(__file__).resolve().parents[1]
    code = (
        "import sys, nbinpaint.studio_state; "
        "print([m for m in sys.modules if m.startswith(('nbinpaint.widgets', 'ipywidgets', 'ipycanvas'))])"
    )
    shown = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "[]"


def test_values_make_the_request_the_panel_made(state):
    state.prompt, state.negative_prompt = "a red boat", ""
    state.strength, state.guidance_scale, state.steps = 0.75, 5.5, 4
    state.seed, state.num_images, state.blur_factor = 1234, 2, 8
    state.crop, state.padding_mask_crop = True, 16
    state.preserve_unmasked = True
    state.controlnet_conditioning_scale = 0.3  # ControlNet off: not sent

    made = state.request()

    # What ParameterPanel._control_values() built before the state existed.
    expected = InpaintRequest.from_kwargs(
        image=state.image,
        mask=state.mask,
        model=SD_INPAINT,
        task="inpaint",
        prompt="a red boat",
        negative_prompt=None,
        strength=0.75,
        guidance_scale=5.5,
        steps=4,
        seed=1234,
        num_images=2,
        padding_mask_crop=16,
        blur_factor=8.0,
        preserve_unmasked=True,
    )
    for name in (*CALL_NAMES, "model", "task", "seed", "blur_factor", "preserve_unmasked", "controlnet"):
        if name not in ("image", "mask"):
            assert getattr(made, name) == getattr(expected, name), name
    assert isinstance(made.blur_factor, float)
    state.crop = False
    assert state.request().padding_mask_crop is None


def test_clamping_seed_rolling_and_weighting(state):
    state.steps, state.strength, state.eta, state.seed = 500, 0, 9, -3
    assert (state.steps, state.strength, state.eta, state.seed) == (150, 0.01, 1.0, 0)
    assert state.roll_seed() == state.seed
    assert state.weighted_prompt() is None
    state.prompt = "a red++ boat"
    assert state.weighted_prompt() == {"prompt": "a red++ boat", "negative_prompt": None}


def test_eta_comes_from_its_row_alone(state):
    eta = row("eta")
    assert TOOLTIPS["eta"] == eta.tooltip
    assert FIELD_WORDS["eta"] == "eta"
    assert state.eta == 0.0 and state.request().eta is None, "0: the pipeline's default (deterministic DDIM)"
    state.eta = 0.5
    assert state.request().eta == 0.5
    assert "eta" not in state.disabled_reasons

    state.model = "some/no-eta"
    assert state.wait_ready(10)
    assert state.disabled_reasons["eta"] == "KandinskyLikePipeline does not take eta"
    assert state.values()["eta"] is None
    assert state.request().eta is None
    assert state.reasons_text() == "some/no-eta has no eta."
    assert reasons_sentence("x/y", {"eta": "why", "strength": "why"}) == "x/y has no strength."


def test_apply_request_restores_the_form(state):
    image, mask = make_scene(32)
    request = InpaintRequest.from_kwargs(
        image=image, mask=mask, model=SD_INPAINT, prompt="p", seed=7, padding_mask_crop=24, eta=0.5, blur_factor=3
    )
    state.apply_request(request)
    assert (state.prompt, state.seed, state.lock_seed) == ("p", 7, True)
    assert (state.crop, state.padding_mask_crop, state.eta, state.blur_factor) == (True, 24, 0.5, 3)
    assert state.image.size == (32, 32)
    state.apply_request(InpaintRequest.from_kwargs(image=image, mask=mask, model=SD_INPAINT, steps=None))
    assert state.eta == 0.0, "None is the row's unset value, so Generate repeats the request"
    assert not state.crop
    assert state.steps == 30, "a field left to the pipeline keeps the form's value"
