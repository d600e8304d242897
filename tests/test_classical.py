"""Classical backends: real fills without weights, the pipeline call shape, and nothing outside the mask."""

from __future__ import annotations

import inspect
import time

import numpy as np
import pytest
import torch
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from nbinpaint import samples
from nbinpaint.backends import BACKENDS, ClassicalInpaintPipeline, get_backend, is_backend_id
from nbinpaint.backends.classical import fill
from nbinpaint.errors import GenerationCancelled, InvalidRequestError, ModelLoadError, UnsupportedParameterError
from nbinpaint.notices import reset as reset_notices
from nbinpaint.requests import InpaintRequest
from tests.conftest import make_scene

IDS = list(BACKENDS)
CALL_PARAMETERS = [
    "prompt", "image", "mask_image", "negative_prompt", "height", "width", "num_images_per_prompt", "generator",
    "output_type", "return_dict", "callback_on_step_end", "callback_on_step_end_tensor_inputs",
]  # fmt: skip


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse))


@pytest.mark.parametrize("model", IDS)
def test_fill_recovers_a_smooth_region_far_better_than_flat_grey(model):
    # The mask covers a patch of the astronaut photo's smooth backdrop: the truth is known, so score it.
    wall = samples.load("astronaut-wall")
    truth, hole = wall.arrays()
    out = np.array(get_backend(model)(image=wall.image, mask_image=wall.mask).images[0])
    filled_db = psnr(out[hole], truth[hole])
    grey_db = psnr(np.full_like(truth[hole], 128), truth[hole])
    print(f"{model}: PSNR inside the mask {filled_db:.1f} dB; flat grey {grey_db:.1f} dB")
    assert filled_db >= 28, f"{model}: {filled_db:.1f} dB"
    assert filled_db > grey_db + 15
    assert np.array_equal(out[~hole], truth[~hole])


@pytest.mark.parametrize("model", IDS)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    box=st.tuples(st.integers(0, 40), st.integers(0, 40), st.integers(1, 24), st.integers(1, 24)),
    seed=st.integers(0, 2**16),
)
def test_pixels_outside_the_mask_come_back_identical(model, box, seed):
    image, _ = make_scene(48, seed)
    left, top, w, h = box
    mask = np.zeros((48, 48), np.uint8)
    mask[top : top + h, left : left + w] = 255
    mask[0, 47] = 200  # grey above 127 counts as hole, 100 does not
    mask[47, 0] = 100
    out = np.array(get_backend(model)(image=image, mask_image=Image.fromarray(mask)).images[0])
    keep = mask <= 127
    assert np.array_equal(out[keep], np.array(image)[keep])


@pytest.mark.parametrize("model", IDS)
def test_signature_is_the_pipeline_call_shape_without_diffusion_parameters(model):
    parameters = inspect.signature(get_backend(model).__call__).parameters
    assert list(parameters) == CALL_PARAMETERS
    assert not any(p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in parameters.values())
    for diffusion_only in ("strength", "guidance_scale", "num_inference_steps", "padding_mask_crop"):
        assert diffusion_only not in parameters


def test_request_layer_refuses_strength_naming_the_backend(manager):
    scene = samples.load("chelsea", 64)
    request = InpaintRequest(image=scene.image, mask=scene.mask, model="classical/telea", strength=0.5)
    with pytest.raises(UnsupportedParameterError, match=r"strength.*classical/telea"):
        manager.run(request)


def test_runs_through_the_manager_with_blur_and_preserve_unmasked(manager):
    scene = samples.load("coffee", (160, 104))
    request = InpaintRequest(
        image=scene.image, mask=scene.mask, model="classical/ns", seed=0, blur_factor=8, preserve_unmasked=True
    )
    result = manager.run(request)
    out, (truth, hole) = np.array(result.image), scene.arrays()
    assert result.image.size == scene.image.size
    assert np.array_equal(out[~hole], truth[~hole])
    assert not np.array_equal(out[hole], truth[hole])


def test_prompt_is_ignored_with_one_notice(capsys):
    reset_notices()
    backend, (image, mask) = get_backend("classical/telea"), make_scene()
    quiet = backend(prompt="", image=image, mask_image=mask).images[0]
    assert capsys.readouterr().out == ""
    loud = backend(prompt="a boat", image=image, mask_image=mask).images[0]
    backend(prompt="a boat", image=image, mask_image=mask)
    assert capsys.readouterr().out.count("classical/telea ignores the prompt") == 1
    assert np.array_equal(np.array(quiet), np.array(loud))


def test_height_and_width_resize_the_input_and_binarise_the_mask():
    image, _ = make_scene(64)
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 160  # grey: binarised to hole after the resize
    out = get_backend("classical/telea")(image=image, mask_image=Image.fromarray(mask), height=32, width=48).images[0]
    assert out.size == (48, 32)
    resized = np.array(image.resize((48, 32), Image.Resampling.LANCZOS))
    keep = np.array(Image.fromarray(mask).resize((48, 32), Image.Resampling.NEAREST)) <= 127
    assert np.array_equal(np.array(out)[keep], resized[keep])
    assert not np.array_equal(np.array(out)[~keep], resized[~keep])
    only_height = get_backend("classical/telea")(image=image, mask_image=Image.fromarray(mask), height=32).images[0]
    assert only_height.size == (64, 32)


def test_step_callback_is_called_once_like_a_one_step_run():
    calls = []
    backend, (image, mask) = get_backend("classical/ns"), make_scene()
    backend(image=image, mask_image=mask, callback_on_step_end=lambda *args: calls.append(args) or {})
    assert calls == [(backend, 0, None, {})]
    with pytest.raises(InvalidRequestError, match="no tensors"):
        backend(image=image, mask_image=mask, callback_on_step_end_tensor_inputs=["latents"])


def test_cancel_from_the_step_callback_stops_the_run_and_leaves_the_backend_usable(manager):
    scene = samples.load("rocket", 64)
    request = InpaintRequest(image=scene.image, mask=scene.mask, model="classical/telea")
    with pytest.raises(GenerationCancelled):
        manager.run(request, should_stop=lambda: True)
    steps = []
    manager.run(request, on_step=lambda step, total, tensors: steps.append(step))
    assert steps == [1]


def test_progress_total_is_one_step(manager):
    scene = samples.load("rocket", 64)
    totals = []
    manager.run(
        InpaintRequest(image=scene.image, mask=scene.mask, model="classical/telea"),
        on_step=lambda step, total, tensors: totals.append(total),
    )
    assert totals == [1]


def test_output_types_batches_and_tuples():
    backend, (image, mask) = get_backend("classical/biharmonic"), make_scene(32)
    output = backend(image=image, mask_image=mask, num_images_per_prompt=2)
    assert isinstance(output, ImagePipelineOutput) and len(output.images) == 2
    assert output.images[0] is not output.images[1]
    array = backend(image=image, mask_image=mask, output_type="np").images
    assert array.shape == (1, 32, 32, 3) and array.dtype == np.float32 and 0 <= array.min() <= array.max() <= 1
    tensor = backend(image=[image, image], mask_image=mask, output_type="pt", return_dict=False)[0]
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (2, 3, 32, 32)
    assert len(backend(prompt=["a", "b"], image=image, mask_image=mask).images) == 2
    assert np.allclose(array[0], np.array(output.images[0]) / 255)
    with pytest.raises(InvalidRequestError, match="latent"):
        backend(image=image, mask_image=mask, output_type="latent")


def test_numpy_inputs_and_an_empty_mask():
    image, mask = make_scene(32)
    backend = get_backend("classical/telea")
    from_arrays = backend(image=np.array(image) / 255.0, mask_image=np.array(mask)).images[0]
    assert np.array_equal(np.array(from_arrays), np.array(backend(image=image, mask_image=mask).images[0]))
    untouched = backend(image=image, mask_image=Image.new("L", image.size)).images[0]
    assert np.array_equal(np.array(untouched), np.array(image))
    with pytest.raises(InvalidRequestError, match="whole image"):
        fill(np.array(image), np.ones((32, 32), bool), "telea")
    with pytest.raises(InvalidRequestError, match="PIL image"):
        backend(image="photo.png", mask_image=mask)


@pytest.mark.parametrize("model", IDS)
def test_fast_enough_at_512_with_a_typical_mask(model):
    scene = samples.load("astronaut")  # 512x512, the head masked (9% of the image)
    backend = get_backend(model)
    wall, cpu = [], []
    for _ in range(2):
        started, started_cpu = time.perf_counter(), time.process_time()
        backend(image=scene.image, mask_image=scene.mask)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    print(f"{model} at 512x512, head mask: {min(wall) * 1000:.0f} ms wall, {min(cpu) * 1000:.0f} ms CPU")
    # CPU time, so that a busy test machine does not fail this; biharmonic is a sparse solve (~0.4 s here).
    assert min(cpu) < (1.0 if model == "classical/biharmonic" else 0.25)


def test_registry_ids_errors_and_pipeline_niceties():
    assert IDS == ["classical/telea", "classical/ns", "classical/biharmonic"]
    assert is_backend_id("classical/ns") and is_backend_id("classical/magic")
    assert not is_backend_id("runwayml/stable-diffusion-inpainting")
    with pytest.raises(ModelLoadError, match="classical/telea, classical/ns, classical/biharmonic"):
        get_backend("classical/magic")
    backend = get_backend("classical/telea")
    assert isinstance(backend, ClassicalInpaintPipeline) and backend is not get_backend("classical/telea")
    assert backend.to("cuda") is backend and backend.components == {}
    assert backend.name == backend.config._name_or_path == "classical/telea" and backend.config.radius == 3
    assert ClassicalInpaintPipeline("ns", radius=7).radius == 7
    with pytest.raises(InvalidRequestError, match="radius"):
        ClassicalInpaintPipeline("ns", radius=0)
    with pytest.raises(InvalidRequestError, match="telea, ns, biharmonic"):
        ClassicalInpaintPipeline("magic")
