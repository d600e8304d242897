"""Sweeps on the twins: the parameters each cell's pipeline call received, one seed, fail-fast, cancel."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from nbinpaint.errors import InvalidRequestError, UnsupportedParameterError
from nbinpaint.pipeline_manager import PipelineManager
from nbinpaint.requests import InpaintRequest
from nbinpaint.sweeps import SweepResult, sweep
from tests.conftest import make_scene

SD_INPAINT = "runwayml/stable-diffusion-inpainting"
KANDINSKY = "kandinsky-community/kandinsky-2-2-decoder-inpaint"


@pytest.fixture(scope="module")
def shared(twins_dir) -> PipelineManager:
    return PipelineManager(device="cpu")


@pytest.fixture
def calls(shared):
    """Spy on the twin pipeline's ``__call__``: a list of the keyword arguments of every call."""
    pipeline = shared.get(SD_INPAINT)
    original_class = type(pipeline)
    seen: list[dict] = []

    @functools.wraps(original_class.__call__)  # keeps the signature, which decides the accepted parameters
    def spy(self, *args, **kwargs):
        seen.append(kwargs)
        return original_class.__call__(self, *args, **kwargs)

    pipeline.__class__ = type("Spied", (original_class,), {"__call__": spy})
    yield seen
    pipeline.__class__ = original_class


def base(**changes) -> InpaintRequest:
    image, mask = make_scene(64)
    return InpaintRequest(prompt="a castle", image=image, mask=mask, steps=4, seed=11, model=SD_INPAINT).replace(
        **changes
    )


def test_two_by_three_sweep_passes_each_cells_values_to_the_pipeline(shared, calls):
    finished = []
    outcome = sweep(
        base(),
        x=("strength", [0.5, 1.0]),
        y=("guidance_scale", [2.5, 7.5, 12.5]),
        manager=shared,
        on_result=lambda key, result: finished.append(key),
    )
    expected = [(s, g) for g in (2.5, 7.5, 12.5) for s in (0.5, 1.0)]
    assert len(outcome) == 6 and not outcome.cancelled
    assert [(c["strength"], c["guidance_scale"]) for c in calls] == expected  # what the pipeline received
    assert finished == expected == outcome.cell_keys()
    for (strength, guidance), result in outcome.results.items():
        assert result.request.strength == strength and result.request.guidance_scale == guidance
        assert result.seed == 11 and result.recipe["seed"] == 11
        assert result.recipe["sweep"] == {"x": ["strength", strength], "y": ["guidance_scale", guidance]}
    assert outcome.shape == (3, 2)
    assert not np.array_equal(np.asarray(outcome[(0.5, 2.5)].image), np.asarray(outcome[(1.0, 2.5)].image))


def test_one_random_seed_is_chosen_for_the_whole_grid(shared):
    outcome = sweep(base(seed=None), x=("guidance_scale", [1.0, 5.0, 9.0]), manager=shared)
    assert {result.seed for result in outcome.results.values()} == {outcome.seed}
    assert outcome[5.0].request.guidance_scale == 5.0 and outcome.y is None and outcome.shape == (1, 3)
    seeds = sweep(base(seed=None), x=("seed", [1, 2]), y=("strength", [0.5]), manager=shared)  # seed as an axis
    assert [seeds[(s, 0.5)].seed for s in (1, 2)] == [1, 2]


def test_stopping_between_cells_keeps_the_finished_ones(shared, calls):
    finished = []
    outcome = sweep(
        base(),
        x=("strength", [0.5, 0.75, 1.0]),
        y=("guidance_scale", [2.5, 7.5]),
        manager=shared,
        should_stop=lambda: len(finished) >= 2,
        on_result=lambda key, result: finished.append(key),
    )
    assert outcome.cancelled and len(outcome) == 2 and len(calls) == 2
    assert list(outcome.results) == [(0.5, 2.5), (0.75, 2.5)]
    assert outcome.images()[2:] == [None] * 4
    assert shared.run(base(seed=3)).image.size == (64, 64)  # the manager is still usable


def test_stopping_within_a_cell_drops_only_that_cell(shared, calls):
    outcome = sweep(base(), x=("strength", [0.5, 0.75, 1.0]), manager=shared, should_stop=lambda: len(calls) >= 3)
    assert len(calls) == 3  # the third cell started, then was stopped from its step callback
    assert outcome.cancelled and list(outcome.results) == [(0.5, None), (0.75, None)]
    grid = outcome.grid()
    assert grid.captions == ["seed 11", "seed 11", "not run"] and grid.images[2] is None
    assert grid.col_labels == ["strength=0.5", "strength=0.75", "strength=1.0"] and grid.row_labels == []


def test_a_bad_value_fails_before_any_cell_runs(shared, calls):
    with pytest.raises(InvalidRequestError, match=r"sweep cell strength=1\.5, guidance_scale=2\.5: strength=1\.5"):
        sweep(base(), x=("strength", [0.5, 1.5]), y=("guidance_scale", [2.5]), manager=shared)
    with pytest.raises(InvalidRequestError, match="not sweepable; choose one of prompt, negative_prompt"):
        sweep(base(), x=("strenght", [0.5]), manager=shared)
    with pytest.raises(InvalidRequestError, match="lists a value twice"):
        sweep(base(), x=("strength", [0.5, 0.5]), manager=shared)
    with pytest.raises(InvalidRequestError, match="both sweep 'strength'"):
        sweep(base(), x=("strength", [0.5]), y=("strength", [1.0]), manager=shared)
    assert calls == []


def test_a_parameter_the_pipeline_lacks_fails_before_any_cell_runs(shared):
    request = base(model=KANDINSKY, extra={"prior_num_inference_steps": 2})
    with pytest.raises(UnsupportedParameterError, match="sweep cell strength=0.5: strength is not accepted"):
        sweep(request, x=("strength", [0.5, 1.0]), manager=shared)
    assert all(row["runs"] == 0 for row in shared.status().rows if row["model"] == KANDINSKY)


def test_sweep_result_composes_a_labelled_grid(tmp_path):
    from PIL import Image

    from nbinpaint.requests import InpaintResult

    outcome = SweepResult(base(), "strength", [0.5, 1.0], "guidance_scale", [2.5], 11)
    outcome.results[(0.5, 2.5)] = InpaintResult([Image.new("RGB", (64, 64), "red")], base(), 11, {}, {})
    outcome.save(tmp_path / "sweep.png")
    with Image.open(tmp_path / "sweep.png") as saved:
        assert saved.width > 128 and saved.height > 64  # labels add margins
        pixels = np.asarray(saved.convert("RGB"))
    assert (pixels[-10, saved.width - 100] == (255, 0, 0)).all()  # the red cell, left column
    assert (pixels[-10, saved.width - 10] == (236, 236, 236)).all()  # the empty cell


def test_save_cells_writes_each_cell_with_its_recipe(shared, tmp_path):
    import nbinpaint

    image, mask = make_scene(32)
    base = InpaintRequest(prompt="x", image=image, mask=mask, seed=3)
    result = sweep(base, x=("model", ["runwayml/stable-diffusion-inpainting", "classical/telea"]), manager=shared)
    paths = result.save_cells(tmp_path / "cells")
    assert [p.name for p in paths] == [
        "01-model=runwayml_stable-diffusion-inpainting.png",
        "02-model=classical_telea.png",
    ]
    assert [nbinpaint.load_recipe(p)["model"] for p in paths] == [
        "runwayml/stable-diffusion-inpainting",
        "classical/telea",
    ]


def test_an_axis_may_use_diffusers_names_and_a_typo_names_the_field(shared):
    image, mask = make_scene(32)
    base = InpaintRequest(prompt="x", image=image, mask=mask, seed=3)
    result = sweep(base, x=("num_inference_steps", [1, 2]), manager=shared)
    assert result.x == "steps" and [r.request.steps for r in result.results.values()] == [1, 2]
    with pytest.raises(InvalidRequestError, match=r"'strenght', which is not sweepable.* \(did you mean strength\?\)"):
        sweep(base, x=("strenght", [0.5]), manager=shared)
