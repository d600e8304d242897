"""The request API on its own: validation, sizes, and which parameters reach a pipeline's ``__call__``."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nbinpaint.errors import InvalidRequestError, UnsupportedParameterError
from nbinpaint.requests import InpaintRequest, accepted_parameters, as_mask, multiple_of_8
from nbinpaint.runner import run_request
from tests.conftest import make_scene


class Output:
    def __init__(self, images):
        self.images = images


class RecordingPipeline:
    """A stand-in with an SD-inpaint-like signature that records what it is called with."""

    def __init__(self):
        self.calls = []

    def __call__(
        self,
        prompt=None,
        image=None,
        mask_image=None,
        height=None,
        width=None,
        strength=1.0,
        num_inference_steps=50,
        guidance_scale=7.5,
        negative_prompt=None,
        num_images_per_prompt=1,
        generator=None,
        output_type="pil",
        callback_on_step_end=None,
        **kwargs,
    ):
        self.calls.append(dict(locals(), self=None))
        steps = int(num_inference_steps * strength)
        for i in range(steps):
            if callback_on_step_end is not None:
                callback_on_step_end(self, i, 999 - i, {"latents": None})
        color = int(generator.initial_seed() % 256)
        return Output([Image.new("RGB", (width, height), (color, 0, 0))] * num_images_per_prompt)


def test_kwargs_only_contains_what_was_set():
    image, mask = make_scene(64)
    request = InpaintRequest(prompt="a cat", image=image, mask=mask, strength=0.6).validated()
    kwargs = request.call_kwargs(RecordingPipeline())
    assert set(kwargs) == {"prompt", "image", "mask_image", "strength", "width", "height", "output_type"}
    assert kwargs["strength"] == 0.6


def test_unsupported_parameter_names_it_and_the_fix():
    class NoStrength:
        def __call__(self, prompt, image, mask_image, height=512, width=512, **kwargs):
            pass

    image, mask = make_scene(64)
    request = InpaintRequest(prompt="x", image=image, mask=mask, strength=0.5).validated()
    with pytest.raises(UnsupportedParameterError, match=r"strength is not accepted by NoStrength.*unset it"):
        request.call_kwargs(NoStrength())


def test_var_keyword_does_not_count_as_accepting_everything():
    assert "strength" not in accepted_parameters(lambda prompt, **kwargs: None)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"strength": 0}, "strength=0 is invalid"),
        ({"strength": 1.5}, "strength=1.5 is invalid"),
        ({"steps": 0}, "steps=0 is invalid"),
        ({"steps": 2, "strength": 0.3}, r"int\(steps\*strength\) = 0"),
        ({"guidance_scale": -1}, "guidance_scale=-1 is invalid"),
        ({"seed": -1}, "seed=-1 is invalid"),
        ({"seed": 2**64}, "seed=18446744073709551616 is invalid"),
        ({"padding_mask_crop": 64}, "padding_mask_crop=64 is invalid"),
        ({"width": 100}, "width=100 is invalid"),
        ({"task": "paint"}, "task must be one of"),
        ({"mask": None}, "inpainting needs a mask"),
        ({"output_type": "np"}, "output_type must be one of"),
    ],
)
def test_validation_names_the_parameter(changes, message):
    image, mask = make_scene(64)
    with pytest.raises(InvalidRequestError, match=message):
        InpaintRequest(prompt="x", image=image, mask=mask).replace(**changes).validated()


def test_mask_size_mismatch_says_how_to_fix():
    image, _ = make_scene(64)
    _, mask = make_scene(32)
    with pytest.raises(InvalidRequestError, match=r"resize the mask to the image's size"):
        InpaintRequest(image=image, mask=mask).validated()


def test_size_defaults_to_the_image_rounded_down_to_multiple_of_8():
    image = Image.new("RGB", (203, 117))
    mask = Image.new("L", (203, 117))
    mask.paste(255, (50, 30, 150, 90))
    request = InpaintRequest(image=image, mask=mask).validated()
    assert (request.width, request.height) == (200, 112) == multiple_of_8(image.size)


def test_validated_leaves_the_original_untouched():
    image, mask = make_scene(64)
    original = InpaintRequest(image=image, mask=np.array(mask))
    original.validated()
    assert isinstance(original.mask, np.ndarray) and original.width is None


def test_masks_from_numpy_bool_float_and_rgb_are_binary():
    for mask in (np.eye(8, dtype=bool), np.eye(8, dtype=np.float32), np.dstack([np.eye(8) * 255] * 3)):
        as_pil = as_mask(mask)
        assert as_pil.mode == "L" and set(np.unique(np.array(as_pil))) == {0, 255}


def test_from_kwargs_refuses_unknown_names():
    # diffusers' own name is accepted since issue 15; a misspelling of it is not, and names the right one.
    with pytest.raises(
        InvalidRequestError,
        match=r"unknown parameter.*num_inference_step \(did you mean num_inference_steps\?\).*extra",
    ):
        InpaintRequest.from_kwargs(num_inference_step=3)
    with pytest.raises(InvalidRequestError, match=r"unknown parameter.*num_inference_step \(did you mean"):
        InpaintRequest(num_inference_step=3)


def test_both_vocabularies_make_the_same_request():
    short = InpaintRequest.from_kwargs(prompt="x", steps=3, num_images=2, mask=np.ones((8, 8)))
    long = InpaintRequest.from_kwargs(
        prompt="x", num_inference_steps=3, num_images_per_prompt=2, mask_image=np.ones((8, 8))
    )
    assert (long.steps, long.num_images) == (short.steps, short.num_images) == (3, 2)
    assert np.array_equal(np.array(long.mask), np.array(short.mask))
    assert InpaintRequest(num_inference_steps=4).steps == 4
    with pytest.raises(InvalidRequestError, match=r"steps= and num_inference_steps= are the same parameter"):
        InpaintRequest.from_kwargs(steps=3, num_inference_steps=4)


def test_run_request_restores_input_size_and_preserves_unmasked_pixels():
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (60, 70, 3), dtype=np.uint8))
    mask = np.zeros((60, 70), np.uint8)
    mask[10:30, 20:40] = 255
    request = InpaintRequest(prompt="x", image=image, mask=mask, seed=5, preserve_unmasked=True)
    result = run_request(RecordingPipeline(), request)
    out = np.array(result.image)
    assert result.image.size == (70, 60)
    keep = mask == 0
    assert np.array_equal(out[keep], np.array(image)[keep])
    assert result.recipe["seed"] == 5 and result.recipe["run_size"] == [64, 56]


def test_step_callback_counts_strength_times_steps():
    image, mask = make_scene(64)
    seen = []
    request = InpaintRequest(prompt="x", image=image, mask=mask, steps=10, strength=0.5, seed=1)
    run_request(RecordingPipeline(), request, on_step=lambda step, total, _: seen.append((step, total)))
    assert seen == [(i, 5) for i in range(1, 6)]


def test_a_misspelt_extra_parameter_is_refused_before_the_call_with_did_you_mean():
    calls = []

    class Kandinskyish:
        def __call__(self, prompt, image, mask_image, prior_guidance_scale=4.0, num_inference_steps=50, **kwargs):
            calls.append(kwargs)  # a TypeError could only come from here: it must never be reached

    image, mask = make_scene(64)
    request = InpaintRequest(prompt="x", image=image, mask=mask, extra={"prior_guidance_scal": 4, "zzz": 1})
    refused = r"prior_guidance_scal, zzz are not accepted.*Did you mean 'prior_guidance_scale'"
    with pytest.raises(UnsupportedParameterError, match=refused) as raised:
        run_request(Kandinskyish(), request)
    assert "'zzz'?" not in str(raised.value) and not calls
