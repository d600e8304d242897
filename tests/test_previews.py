"""Live x0 previews on the tiny twins: when they arrive, what they show, and that the run is left untouched."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from nbinpaint import notices, previews, samples
from nbinpaint.bench.previews import preview_overhead
from nbinpaint.errors import GenerationCancelled, InvalidRequestError
from nbinpaint.pipeline_manager import PipelineManager
from nbinpaint.requests import InpaintRequest
from tests.conftest import make_scene

SD_INPAINT = "runwayml/stable-diffusion-inpainting"  # DDIM
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"  # PNDM: reports no x0
SDXL = "diffusers/stable-diffusion-xl-1.0-inpainting-0.1"  # Euler
KANDINSKY = "kandinsky-community/kandinsky-2-2-decoder-inpaint"  # DDPM, MoVQ


@pytest.fixture(scope="module")
def shared(twins_dir) -> PipelineManager:
    """One manager for the module: palettes are fitted once per autoencoder, as in a kernel."""
    return PipelineManager(device="cpu")


def request_for(model: str, **changes) -> InpaintRequest:
    image, mask = make_scene(64)
    return InpaintRequest(prompt="a castle", image=image, mask=mask, model=model, steps=4, seed=3).replace(**changes)


def wrapped(scheduler) -> bool:
    """Whether a tap's wrapper still shadows the class's ``step``."""
    return "step" in vars(scheduler)


# ------------------------------------------------------------------------------------------------ schedule


def test_tap_yields_none_without_callback(shared):
    pipeline = shared.get(SD_INPAINT)
    with previews.tap(pipeline, None, total=10) as tap:
        assert tap is None
        assert not wrapped(pipeline.scheduler)


@given(total=st.integers(1, 1000))
def test_adaptive_schedule_spreads_about_seven_previews(total):
    steps = previews.preview_steps(total)
    assert len(steps) == min(previews.PREVIEWS_PER_RUN, total - 1)
    assert steps == sorted(set(steps))  # strictly increasing: never two previews after one step
    assert all(1 <= step < total for step in steps)  # never after the last step
    if total >= 2:
        assert steps  # at least one preview


@given(total=st.integers(1, 200), every=st.integers(1, 50))
def test_fixed_period(total, every):
    assert previews.preview_steps(total, every) == [s for s in range(1, total) if s % every == 0]


@pytest.mark.parametrize("every", [0, -2, 1.5])
def test_bad_period_is_refused_with_the_fix(every):
    with pytest.raises(InvalidRequestError, match="preview_every"):
        previews.preview_steps(10, every)


# ------------------------------------------------------------------------------------------------ runs


@pytest.mark.parametrize(
    ("model", "steps", "strength", "every"),
    [
        (SD_INPAINT, 4, 0.5, None),
        (SD_INPAINT, 8, 0.5, None),
        (SDXL, 4, 0.5, None),
        (SDXL, 6, 0.5, None),
        (KANDINSKY, 3, None, None),  # Kandinsky's inpaint pipeline has no strength: every step runs
        (KANDINSKY, 5, None, 2),
    ],
)
def test_previews_arrive_after_the_scheduled_steps(shared, model, steps, strength, every):
    changes = {"steps": steps} if strength is None else {"steps": steps, "strength": strength}
    request = request_for(model, **changes)
    seen: list[tuple[int, int, Image.Image]] = []
    shared.run(request, on_preview=lambda step, total, image: seen.append((step, total, image)), preview_every=every)
    total = int(steps * (strength or 1.0))
    assert [step for step, _, _ in seen] == previews.preview_steps(total, every)
    assert all(t == total for _, t, _ in seen)
    for _, _, image in seen:
        assert isinstance(image, Image.Image) and image.mode == "RGB"
        assert image.size == (64, 64)  # the run's size (latents are 8x8, upscaled)
    assert not wrapped(shared.get(model).scheduler)


@pytest.mark.parametrize("model", [SD_INPAINT, SD15, SDXL, KANDINSKY])
def test_previews_leave_the_final_pixels_unchanged(shared, model):
    request = request_for(model, steps=3)
    plain = shared.run(request)
    seen: list[int] = []
    totals: list[int] = []
    previewed = shared.run(
        request,
        on_step=lambda step, total, tensors: totals.append(total),
        on_preview=lambda step, total, image: seen.append(step),
        preview_every=1,
    )
    # Previews did happen (PNDM's through the computed x0), after every step but the expected last one.
    assert len(totals) >= 2 and seen == list(range(1, totals[0]))
    assert np.array_equal(np.array(plain.image), np.array(previewed.image))


def test_preview_is_the_predicted_x0_not_the_noisy_latent(shared, monkeypatch):
    """In a real DDIM run, the computed x0 equals the scheduler's pred_original_sample at every previewed step."""
    pipeline = shared.get(SD_INPAINT)
    compared: list[float] = []
    record = previews.PreviewTap.record

    def checking_record(self, output):
        computed = previews._x0(*self._inputs)  # set by record_inputs just before the step
        record(self, output)
        compared.append(float((computed - self.x0()).abs().max() / self.x0().abs().max()))

    monkeypatch.setattr(previews.PreviewTap, "record", checking_record)
    shared.run(request_for(SD_INPAINT, steps=4), on_preview=lambda *args: None, preview_every=1)
    assert len(compared) == 3
    assert max(compared) < 1e-5
    assert not wrapped(pipeline.scheduler)


# ------------------------------------------------------------------------------------------------ x0 formula


def _twin_scheduler(shared, model, cls_name=None, **config):
    import diffusers

    scheduler = shared.get(model).scheduler
    cls = type(scheduler) if cls_name is None else getattr(diffusers, cls_name)
    return cls.from_config({**scheduler.config, **config})


@pytest.mark.parametrize(
    ("model", "prediction_type"),
    [
        (SD_INPAINT, "epsilon"),  # DDIM
        (SD_INPAINT, "v_prediction"),
        (SD_INPAINT, "sample"),
        (SDXL, "epsilon"),  # Euler: samples in sigma space
        (SDXL, "v_prediction"),
        (KANDINSKY, "epsilon"),  # DDPM
    ],
)
def test_x0_formula_matches_pred_original_sample(shared, model, prediction_type):
    scheduler = _twin_scheduler(shared, model, prediction_type=prediction_type)
    scheduler.set_timesteps(10)
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 8, 8, generator=generator) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        scheduler.scale_model_input(sample, t)  # as pipelines do; Euler sets its step index here
        model_output = torch.randn(1, 4, 8, 8, generator=generator)
        computed = previews.predicted_x0(scheduler, model_output, t, sample)
        output = scheduler.step(model_output, t, sample, generator=generator)
        torch.testing.assert_close(computed, output.pred_original_sample, rtol=1e-4, atol=1e-5)
        sample = output.prev_sample


def test_x0_formula_matches_dpmsolver_data_prediction(shared):
    """DPMSolver++ reports no x0, but converts each model output to one internally: the same numbers."""
    scheduler = _twin_scheduler(shared, SD_INPAINT, "DPMSolverMultistepScheduler")
    scheduler.set_timesteps(8)
    generator = torch.Generator().manual_seed(1)
    sample = torch.randn(1, 4, 8, 8, generator=generator)
    for t in scheduler.timesteps:
        model_output = torch.randn(1, 4, 8, 8, generator=generator)
        computed = previews.predicted_x0(scheduler, model_output, t, sample)
        sample = scheduler.step(model_output, t, sample).prev_sample
        torch.testing.assert_close(computed, scheduler.model_outputs[-1], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------------ palette


@pytest.mark.parametrize("model", [SD_INPAINT, KANDINSKY])
def test_fitted_palette_beats_a_constant_image(shared, model):
    """On an image it was not fitted on, the linear map is closer to the real decode than the best constant."""
    vae = previews.autoencoder_of(shared.get(model))
    palette = previews.palette_for(vae)
    assert palette is previews.palette_for(vae)  # cached per autoencoder
    assert "rocket" not in previews.FIT_SAMPLES
    with torch.no_grad():
        pixels = previews._pixels(samples.load("rocket", 128).image, next(vae.parameters()))
        latents = previews._encode(vae, pixels)
        decoded = (previews._decode(vae, latents) / 2 + 0.5).clamp(0, 1)
    target = torch.nn.functional.avg_pool2d(decoded, palette.scale)
    linear_error = (palette.rgb(latents) - target).pow(2).mean()
    constant_error = (target - target.mean(dim=(0, 2, 3), keepdim=True)).pow(2).mean()
    assert linear_error < 0.97 * constant_error


def test_half_precision_vae_that_asks_for_it_is_fitted_in_float32_and_left_as_it_was(shared):
    """SDXL's VAE overflows in float16 (``force_upcast``): the fit runs in float32, as the pipeline decodes."""
    vae = copy.deepcopy(previews.autoencoder_of(shared.get(SDXL))).half()
    assert vae.config.force_upcast
    before = {name: tensor.clone() for name, tensor in vae.state_dict().items()}
    seen: list[torch.dtype] = []
    vae.decoder.register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
    palette = previews.fit_palette(vae)
    assert seen and set(seen) == {torch.float32}
    assert vae.dtype == torch.float16
    assert all(torch.equal(before[name], tensor) for name, tensor in vae.state_dict().items())
    assert torch.isfinite(palette.weight).all() and torch.isfinite(palette.bias).all()


def test_unknown_autoencoder_takes_the_slow_decode_path(shared):
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    tiny = AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1,) * 4,
        num_decoder_blocks=(1,) * 4,
    ).eval()
    assert previews.palette_for(tiny) is None
    image = previews.render(tiny, torch.randn(2, 4, 8, 8))
    assert image.mode == "RGB" and image.size == (64, 64)  # a real decode: 8 pixels per latent


# ------------------------------------------------------------------------------------------------ restoring


def test_step_restored_after_cancel(shared):
    pipeline = shared.get(SD_INPAINT)
    with pytest.raises(GenerationCancelled):
        shared.run(request_for(SD_INPAINT), on_preview=lambda *args: None, preview_every=1, should_stop=lambda: True)
    assert not wrapped(pipeline.scheduler)


def test_step_restored_after_an_error_inside_the_run(shared):
    pipeline = shared.get(SD_INPAINT)

    def broken(step, total, tensors):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        shared.run(request_for(SD_INPAINT), on_step=broken, on_preview=lambda *args: None)
    assert not wrapped(pipeline.scheduler)


def test_failing_preview_stops_previews_with_one_notice_and_the_run_goes_on(shared, capsys):
    pipeline = shared.get(SD_INPAINT)
    calls: list[int] = []

    def failing(step, total, image):
        calls.append(step)
        raise ValueError("widget gone")

    request = request_for(SD_INPAINT, steps=4)
    notices.reset()
    result = shared.run(request, on_preview=failing, preview_every=1)
    assert calls == [1]  # stopped after the first failure, though steps 2 and 3 were due
    out = capsys.readouterr().out
    assert out.count("nbinpaint: previews stopped for this run (ValueError: widget gone)") == 1
    assert np.array_equal(np.array(result.image), np.array(shared.run(request).image))
    assert not wrapped(pipeline.scheduler)


def test_scheduler_without_x0_gives_one_notice_and_an_unchanged_run(shared, monkeypatch, capsys):
    """PNDM reports no x0; when it cannot be computed either, the run still ends as it would have."""
    request = request_for(SD15, steps=3)
    plain = shared.run(request)

    def unknown(scheduler, timestep):
        raise NotImplementedError("no noise level")

    monkeypatch.setattr(previews, "_alpha_prod", unknown)
    calls: list[int] = []
    result = shared.run(request, on_preview=lambda step, total, image: calls.append(step), preview_every=1)
    assert calls == []
    assert capsys.readouterr().out.count("previews stopped for this run (NotImplementedError: no noise level)") == 1
    assert np.array_equal(np.array(plain.image), np.array(result.image))
    assert not wrapped(shared.get(SD15).scheduler)


def test_step_restored_when_the_scheduler_had_its_own_step(shared):
    """A ``step`` set on the instance before the run (another tool's wrapper) is put back, not deleted."""
    pipeline = shared.get(SD_INPAINT)
    scheduler = pipeline.scheduler
    own = scheduler.step  # the bound method, set on the instance
    scheduler.step = own
    try:
        shared.run(request_for(SD_INPAINT), on_preview=lambda *args: None, preview_every=1)
        assert vars(scheduler)["step"] is own
    finally:
        del scheduler.step


# ------------------------------------------------------------------------------------------------ benchmark


def test_preview_overhead_reports_both_timings(shared):
    figures = preview_overhead(shared, steps=4, repeats=1, size=64)
    assert figures["steps_run"] == 4
    assert figures["previews_per_run"] == len(previews.preview_steps(4))
    assert figures["per_step_s_without"] > 0 and figures["per_step_s_with"] > 0
    assert figures["fit_s"] is not None and figures["render_s"] > 0
