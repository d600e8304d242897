"""Issue 15: one road from a request to the pipeline, one parameter table, both vocabularies, results that save.

Every generation (plain, chain stage, follow-up) goes through `PipelineManager.run`, so each reports one
progress call per step, gives previews and stops within one step of Cancel.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from PIL import Image

import nbinpaint
from nbinpaint import chains, codegen, parameters, recipes
from nbinpaint.errors import GenerationCancelled, InvalidRequestError
from nbinpaint.requests import InpaintRequest
from tests.conftest import make_scene

SD15 = chains.SD15
SD_INPAINT = "runwayml/stable-diffusion-inpainting"
KANDINSKY = chains.KANDINSKY_INPAINT


class Recorder:
    """The three callbacks of a run, recording what they were called with; stops after ``stop_after`` steps."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.steps: list[tuple[int, int]] = []
        self.previews: list[tuple[int, int, Image.Image]] = []
        self.stop_after = stop_after

    def on_step(self, step: int, total: int, tensors: object) -> None:
        self.steps.append((step, total))

    def on_preview(self, step: int, total: int, image: Image.Image) -> None:
        self.previews.append((step, total, image))

    def should_stop(self) -> bool:
        return self.stop_after is not None and len(self.steps) >= self.stop_after

    def callbacks(self) -> dict[str, object]:
        return {"on_step": self.on_step, "should_stop": self.should_stop, "on_preview": self.on_preview}


def same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b))


# -- both vocabularies, and a result that saves itself --------------------------------------------------------


def test_diffusers_names_give_the_same_pixels_as_the_short_ones(twins_dir, tmp_path, monkeypatch):
    manager = nbinpaint.PipelineManager(device="cpu")
    monkeypatch.setattr("nbinpaint.session._shared", manager)
    image, mask = make_scene(64)
    long = nbinpaint.inpaint(image, mask, "a cat", num_inference_steps=3, seed=1)
    short = nbinpaint.inpaint(image, mask, "a cat", steps=3, seed=1)
    assert long.request.steps == 3 and same_pixels(long.image, short.image)
    again = manager.run(
        InpaintRequest.from_kwargs(image=image, mask_image=mask, prompt="a cat", num_images_per_prompt=2)
    )
    assert len(again.images) == 2 and again.request.num_images == 2

    path = long.save(tmp_path / "cat.png")
    recipe = nbinpaint.load_recipe(path)
    assert recipe["parameters"] == long.recipe["parameters"] and recipe["seed"] == 1
    assert recipes.request_from_recipe(recipe, image=image, mask=mask).steps == 3
    assert same_pixels(Image.open(path).convert("RGB"), long.image)


def test_a_misspelt_name_is_refused_with_the_closest_one():
    image, mask = make_scene(32)
    with pytest.raises(InvalidRequestError, match=r"num_inference_step \(did you mean num_inference_steps\?\)"):
        nbinpaint.inpaint(image, mask, "a cat", num_inference_step=3)
    with pytest.raises(InvalidRequestError, match=r"gudance_scale \(did you mean guidance_scale\?\)"):
        InpaintRequest.from_kwargs(gudance_scale=3)


def test_save_refuses_what_would_lose_the_recipe(manager, twins_dir, tmp_path):
    image, mask = make_scene(32)
    result = manager.run(InpaintRequest(prompt="x", image=image, mask=mask, steps=1, seed=3))
    with pytest.raises(InvalidRequestError, match=r"'out.jpg' is not a \.png name.*'out\.png'"):
        result.save(tmp_path / "out.jpg")
    with pytest.raises(InvalidRequestError, match="out of range: this result has 1 image"):
        result.save(tmp_path / "out.png", index=1)
    latent = manager.run(InpaintRequest(prompt="x", image=image, mask=mask, steps=1, seed=3, output_type="latent"))
    with pytest.raises(InvalidRequestError, match="holds latents"):
        latent.save(tmp_path / "latent.png")
    assert not list(tmp_path.iterdir())


def test_a_chain_result_saves_its_final_image_with_the_chain_in_its_recipe(manager, twins_dir, tmp_path):
    image, mask = make_scene(64)
    chain = chains.inpaint_to_img2img(image, mask, "a castle", manager=manager, steps=2, seed=4, img2img_model=SD15)
    recipe = nbinpaint.load_recipe(chain.save(tmp_path / "chain.png"))
    assert recipe["chain"]["stage"] == 2 and recipe["chain"]["name"] == "inpaint_to_img2img"


def test_recipes_from_other_tools_may_use_diffusers_names(manager, twins_dir):
    image, mask = make_scene(32)
    result = manager.run(InpaintRequest(prompt="x", image=image, mask=mask, steps=2, seed=3))
    edited = {**result.recipe, "parameters": {**result.recipe["parameters"]}}
    edited["parameters"]["num_inference_steps"] = edited["parameters"].pop("steps")
    assert recipes.parse_recipe(edited)["parameters"]["steps"] == 2
    edited["parameters"]["steps"] = 2
    with pytest.raises(recipes.RecipeError, match="repeats 'steps' under diffusers' name"):
        recipes.parse_recipe(edited)


# -- one road: every stage reports steps and previews, and stops on Cancel -----------------------------------


def count_denoiser_calls(pipelines: list[object]) -> list[int]:
    """A counter of UNet forward calls (one per denoising step: these twins batch guidance into one call)."""
    calls = [0]
    for unet in {id(p.unet): p.unet for p in pipelines}.values():
        unet.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def numbered_from_one(steps: list[tuple[int, int]]) -> list[list[int]]:
    """The reported step numbers split into runs (stages) that each count 1, 2, 3..."""
    runs: list[list[int]] = []
    for step, _total in steps:
        if step == 1:
            runs.append([])
        runs[-1].append(step)
    return runs


def test_a_follow_up_reports_each_step_gives_previews_and_stops_on_cancel(twins_dir):
    manager = nbinpaint.PipelineManager(device="cpu")
    image, mask = make_scene(64)
    result = manager.run(InpaintRequest(prompt="a castle", image=image, mask=mask, model=SD15, steps=4, seed=2))
    calls = count_denoiser_calls([manager.get(SD15, "img2img"), manager.get(chains.SDXL_REFINER)])

    seen = Recorder()
    chains.to_img2img(result, manager=manager, strength=0.5, **seen.callbacks())
    assert numbered_from_one(seen.steps) == [list(range(1, calls[0] + 1))] and calls[0] >= 2  # one call per step
    assert seen.previews and all(isinstance(image, Image.Image) for _, _, image in seen.previews)

    calls[0] = 0
    refined = Recorder()
    chains.refine(result, manager=manager, strength=0.5, **refined.callbacks())
    assert [step for step, _ in refined.steps] == list(range(1, calls[0] + 1)) and calls[0] >= 2

    stopped = Recorder(stop_after=1)
    with pytest.raises(GenerationCancelled):
        chains.refine(result, manager=manager, strength=1.0, **stopped.callbacks())
    assert len(stopped.steps) == 1


def test_every_stage_of_a_chain_reports_its_steps_and_cancel_stops_the_chain(twins_dir):
    manager = nbinpaint.PipelineManager(device="cpu")
    image, mask = make_scene(64)
    calls = count_denoiser_calls([manager.get(SD_INPAINT), manager.get(SD15, "img2img")])
    seen = Recorder()
    chain = chains.inpaint_to_img2img(
        image,
        mask,
        "a castle",
        manager=manager,
        steps=4,
        seed=1,
        img2img_model=SD15,
        img2img_params={"strength": 0.5},
        **seen.callbacks(),
    )
    assert len(chain.stages) == 2
    stages = numbered_from_one(seen.steps)
    assert len(stages) == 2 and sum(map(len, stages)) == calls[0]
    assert seen.previews

    stopped = Recorder(stop_after=2)
    with pytest.raises(GenerationCancelled):
        chains.run_chain(
            [
                InpaintRequest(prompt="a", image=image, mask=mask, steps=4, seed=1),
                InpaintRequest(prompt="b", task="img2img", model=SD15, steps=4, strength=0.5),
            ],
            manager=manager,
            **stopped.callbacks(),
        )
    assert len(stopped.steps) == 2  # stopped in the first stage: the second never ran


def test_public_chain_functions_take_the_run_callbacks():
    run = inspect.signature(nbinpaint.PipelineManager.run).parameters
    for function in (
        chains.run_chain,
        chains.to_img2img,
        chains.refine,
        chains.text_to_inpaint,
        chains.inpaint_to_img2img,
    ):
        taken = inspect.signature(function).parameters
        for name in ("on_step", "should_stop", "on_preview"):
            assert name in taken and taken[name].default is None and name in run, (function.__name__, name)


def test_the_local_manager_satisfies_the_contract():
    from nbinpaint.contract import Manager

    assert isinstance(nbinpaint.PipelineManager(device="cpu"), Manager)
    for name, method in inspect.getmembers(Manager, inspect.isfunction):
        if name.startswith("_"):
            continue
        ours = inspect.signature(getattr(nbinpaint.PipelineManager, name)).parameters
        for parameter in inspect.signature(method).parameters.values():
            assert parameter.name in ours, (name, parameter.name)
            assert ours[parameter.name].kind == parameter.kind and ours[parameter.name].default == parameter.default


# -- one row adds a parameter: clip_skip ------------------------------------------------------------------------


def test_eta_from_its_row_alone_reaches_the_call_the_recipe_and_the_code(manager, twins_dir):
    row = parameters.row("eta")
    assert row.call == "eta" and row.in_panel and row.a1111 == "Eta" and row.from_panel(0.0) is None
    image, mask = make_scene(64)
    request = InpaintRequest(prompt="x", image=image, mask=mask, steps=3, seed=5, eta=1.0)
    pipeline = manager.get(SD_INPAINT)  # its twin runs DDIM, which reads eta
    assert request.validated().call_kwargs(pipeline)["eta"] == 1.0
    result = manager.run(request)
    plain = manager.run(request.replace(eta=None))
    assert not same_pixels(result.image, plain.image)  # DDIM added fresh noise at each step
    assert result.recipe["parameters"]["eta"] == 1.0
    assert "Eta: 1.0" in recipes.parameters_text(result.recipe)
    assert "eta=1.0" in codegen.code_for(result)
    with pytest.raises(InvalidRequestError, match=r"eta=1.5 is invalid: it must be a number in \[0, 1\]"):
        request.replace(eta=1.5).validated()
    with pytest.raises(nbinpaint.UnsupportedParameterError, match="eta is not accepted by KandinskyV22InpaintCombined"):
        manager.run(request.replace(model=KANDINSKY))


def test_the_table_and_the_request_agree():
    import dataclasses

    assert [f.name for f in dataclasses.fields(InpaintRequest)] == [p.name for p in parameters.PARAMETERS]
    for p in parameters.PARAMETERS:
        assert parameters.canonical(p.diffusers_name) == p.name
        if p.kind in ("int", "float"):
            assert p.rule and p.fix, p.name  # a refused number always says the rule and the fix
        if p.in_panel:
            assert p.tooltip and p.words, p.name


def test_kandinsky_runs_at_sizes_that_are_not_multiples_of_64(manager, twins_dir, capsys):
    """Kandinsky 2.2 makes latents of ceil(side / 64) * 8 and its mask of side / 8: at 448x296 (chelsea) diffusers
    failed with a tensor-size error. The run size is rounded to 64, said once, and the result resized back."""
    image = Image.new("RGB", (448, 296), "gray")
    mask = np.zeros((296, 448), np.uint8)
    mask[80:200, 100:300] = 255
    request = InpaintRequest(image=image, mask=Image.fromarray(mask), prompt="a cat", steps=2, seed=1, model=KANDINSKY)
    result = manager.run(request)
    assert result.image.size == (448, 296)
    assert (result.request.width, result.request.height) == (448, 256)
    assert "multiples of 64" in capsys.readouterr().out
