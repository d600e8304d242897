"""Property-based tests: random sizes, modes and parameters never escape as anything but nbinpaint's errors.

Each property feeds the public entry points (the request validator, the image and mask normalisers, the
mask operations, recipes in PNGs) with values a user or a damaged file could produce, and checks that the
outcome is either a well-formed result or an `InvalidRequestError`/`RecipeError` with a message.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from nbinpaint import inputs, masks, recipes
from nbinpaint.errors import InvalidRequestError
from nbinpaint.requests import TASKS, InpaintRequest, as_mask, as_rgb

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# PIL modes a file or a library can hand over (every one converts to RGB with Pillow >= 10, LAB and HSV too).
MODES = (
    "1",
    "L",
    "P",
    "RGB",
    "RGBA",
    "RGBX",
    "RGBa",
    "LA",
    "La",
    "PA",
    "I",
    "I;16",
    "F",
    "CMYK",
    "YCbCr",
    "LAB",
    "HSV",
)

anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.fractions(),
    st.text(max_size=4),
    st.lists(st.integers(), max_size=2),
)
sizes = st.tuples(st.integers(1, 40), st.integers(1, 40))
# Any code point, lone surrogates included (st.text leaves those out): what a broken copy-paste can produce.
unicode_text = st.lists(st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=40).map("".join)


def outcome(call, *args, errors=(InvalidRequestError,)):
    """``(result, None)``, or ``(None, error)`` when ``call`` refused with one of ``errors`` (a message)."""
    try:
        return call(*args), None
    except errors as error:
        refused = error
    assert str(refused)  # every refusal says why
    return None, refused


class SignaturePipeline:
    """Only a signature, SD-inpaint-like: what `call_kwargs` reads."""

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
        padding_mask_crop=None,
        callback_on_step_end=None,
    ):
        raise AssertionError("never called")


@st.composite
def pil_images(draw, modes=MODES):
    mode = draw(st.sampled_from(modes))
    size = draw(sizes)
    length = len(Image.new(mode, size).tobytes())
    data = draw(st.binary(min_size=length, max_size=length))
    return Image.frombytes(mode, size, data)


@st.composite
def arrays(draw):
    dtype = draw(st.sampled_from((np.uint8, np.uint16, np.int32, np.float32, np.float64, bool)))
    shape = draw(
        st.sampled_from(
            ((8, 8), (8, 8, 1), (8, 8, 3), (8, 8, 4), (3, 8, 8), (8, 8, 2), (2, 2, 2, 2), (0, 8), (1, 1, 8, 8))
        )
    )
    if dtype is bool:
        values = st.booleans()
    elif np.dtype(dtype).kind == "f":
        values = st.floats(allow_nan=True, allow_infinity=True, width=32)
    else:
        info = np.iinfo(dtype)
        values = st.integers(int(info.min), int(info.max))
    flat = draw(st.lists(values, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
    return np.array(flat, dtype=dtype).reshape(shape)


# Values that pass, per request field; a test makes a few fields wild (`anything`) and the rest valid.
VALID = {
    "strength": st.one_of(st.none(), st.floats(0.05, 1)),
    "steps": st.one_of(st.none(), st.integers(20, 60), st.just(25.0)),
    "guidance_scale": st.one_of(st.none(), st.floats(0, 20)),
    "seed": st.one_of(st.none(), st.integers(0, 2**64 - 1)),
    "num_images": st.one_of(st.none(), st.integers(1, 3)),
    "padding_mask_crop": st.none(),
    "blur_factor": st.one_of(st.just(0.0), st.floats(0, 50)),
    "width": st.none(),
    "height": st.none(),
    "prompt": st.one_of(st.text(max_size=20), st.none(), unicode_text),
    "negative_prompt": st.one_of(st.text(max_size=20), st.none(), unicode_text),
    "controlnet_conditioning_scale": st.none(),
}


@SETTINGS
@given(
    data=st.data(),
    wild=st.sets(st.sampled_from(sorted(VALID)), max_size=2),
    task=st.sampled_from((*TASKS, "paint")),
    output_type=st.sampled_from(("pil", "latent", "np")),
    size=sizes,
    density=st.floats(0, 1),
)
def test_the_validator_only_raises_invalid_request_error(data, wild, task, output_type, size, density):
    fields = {name: data.draw(anything if name in wild else strategy, label=name) for name, strategy in VALID.items()}
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    mask = Image.fromarray(np.where(rng.random((size[1], size[0])) < density, 255, 0).astype(np.uint8))
    request = InpaintRequest(image=image, mask=mask, task=task, output_type=output_type, **fields)
    checked, refused = outcome(request.validated)
    if refused:
        return
    # Whatever passed is in range, with whole numbers as ints, and the caller's request untouched.
    assert request.image is image and request.steps is fields["steps"]
    assert checked.strength is None or 0 < checked.strength <= 1
    assert checked.steps is None or (type(checked.steps) is int and checked.steps >= 1)
    assert checked.seed is None or 0 <= checked.seed < 2**64
    assert checked.width % 8 == 0 and checked.height % 8 == 0 and checked.width >= 8
    assert checked.mask.size == checked.image.size == image.size
    assert isinstance(checked.prompt, str)
    kwargs, refused = outcome(checked.call_kwargs, SignaturePipeline())
    if refused:
        return
    assert {"prompt", "image", "width", "height"} <= set(kwargs)


@SETTINGS
@given(image=st.one_of(pil_images(), arrays()))
@example(image=Image.new("La", (2, 2)))  # premultiplied alpha: PIL converts it to LA only
def test_any_image_becomes_rgb_of_its_size_or_a_clear_error(image):
    rgb, refused = outcome(as_rgb, image)
    if refused:
        return
    assert rgb.mode == "RGB" and rgb is not image
    if isinstance(image, Image.Image):
        assert rgb.size == image.size
    else:
        assert rgb.size[0] * rgb.size[1] * 3 >= image.size // 4  # every pixel of the array is there


@SETTINGS
@given(mask=st.one_of(pil_images(), arrays()))
@example(mask=Image.new("La", (2, 2)))  # found by hypothesis: the mask reader (inputs.mask_array) failed on it
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf pixels, then refused
def test_any_mask_becomes_binary_l_or_a_clear_error(mask):
    converted, refused = outcome(as_mask, mask)
    if refused:
        return
    assert converted.mode == "L" and set(np.unique(np.asarray(converted))) <= {0, 255}
    if isinstance(mask, Image.Image):
        assert converted.size == mask.size


@SETTINGS
@given(
    size=sizes,
    density=st.floats(0, 1),
    pixels=st.integers(-5, 50),
    blur=st.integers(-5, 80),
    corners=st.lists(st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6)), min_size=2, max_size=6),
    tolerance=st.integers(-10, 300),
    target=st.tuples(st.integers(1, 48), st.integers(1, 48)),
)
def test_mask_operations_keep_shape_and_binary_values(size, density, pixels, blur, corners, tolerance, target):
    rng = np.random.default_rng(int(density * 1000))
    mask = np.where(rng.random((size[1], size[0])) < density, 255, 0).astype(np.uint8)
    before = mask.copy()
    for result in (masks.grow(mask, pixels), masks.shrink(mask, pixels), masks.invert(mask)):
        assert result.shape == mask.shape and result.dtype == np.uint8 and set(np.unique(result)) <= {0, 255}
    assert masks.feather(mask, blur).shape == mask.shape
    np.testing.assert_array_equal(mask, before)  # operations return new arrays
    canvas = mask.copy()
    for fill in (masks.fill_rectangle, masks.fill_ellipse):
        box = fill(canvas, corners[0], corners[1])
        assert box is None or (0 <= box[0] < box[2] <= size[0] and 0 <= box[1] < box[3] <= size[1])
    masks.fill_polygon(canvas, corners)
    assert set(np.unique(canvas)) <= {0, 255}
    pixels_rgb = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    selected = masks.magic_wand(pixels_rgb, corners[0], tolerance)
    assert selected.shape == mask.shape and selected.dtype == bool
    fitted = masks.fit_mask(mask, target)
    assert fitted.shape == (target[1], target[0]) and set(np.unique(fitted)) <= {0, 255}


@SETTINGS
@given(white=st.floats(0, 1), size=sizes)
def test_mask_check_refuses_only_an_empty_mask(white, size):
    rng = np.random.default_rng(1)
    mask = Image.fromarray(np.where(rng.random((size[1], size[0])) < white, 255, 0).astype(np.uint8))
    painted = (np.asarray(mask) > 0).mean()
    if painted == 0:
        with pytest.raises(InvalidRequestError, match="all black"):
            inputs.check_mask(mask)
    else:
        assert inputs.check_mask(mask) == pytest.approx(painted)


@SETTINGS
@given(
    size=st.tuples(st.integers(1, 20000), st.integers(1, 20000)),
    budget=st.one_of(st.none(), st.integers(64, 2**24)),
)
def test_run_size_fits_the_budget_in_multiples_of_8(size, budget):
    width, height = inputs.run_size(size, budget)
    assert width % 8 == 0 and height % 8 == 0 and width >= 8 and height >= 8
    assert width <= max(8, size[0]) and height <= max(8, size[1])
    if budget is not None and width > 8 and height > 8:
        assert width * height <= budget


@SETTINGS
@given(prompt=unicode_text, seed=st.integers(0, 2**64 - 1))
def test_any_unicode_prompt_survives_a_png_round_trip(prompt, seed):
    recipe = {
        "nbinpaint_recipe": recipes.RECIPE_VERSION,
        "parameters": {"prompt": prompt, "negative_prompt": prompt},
        "seed": seed,
        "run_size": [8, 8],
        "model": "m",
    }
    buffer = io.BytesIO()
    recipes.save_png(Image.new("RGB", (8, 8)), recipe, buffer)
    buffer.seek(0)
    with Image.open(buffer) as image:
        loaded = recipes.load_recipe(image)
    if not any("\ud800" <= c <= "\udfff" for c in prompt):
        assert loaded == recipe
    # (requests refuse surrogates; saving one anyway still works, though JSON joins a pair into one character)


@pytest.fixture(scope="module")
def saved_png() -> bytes:
    recipe = {"nbinpaint_recipe": recipes.RECIPE_VERSION, "parameters": {"prompt": "x"}, "seed": 1}
    buffer = io.BytesIO()
    recipes.save_png(Image.new("RGB", (16, 16), (9, 9, 9)), recipe, buffer)
    return buffer.getvalue()


@SETTINGS
@given(cut=st.integers(0, 400), flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=4))
def test_damaged_pngs_give_a_recipe_error_or_a_recipe(saved_png, tmp_path_factory, cut, flips):
    data = bytearray(saved_png[: max(cut, 0) or len(saved_png)])
    for position, value in flips:
        if position < len(data):
            data[position] = value
    path = tmp_path_factory.mktemp("png") / "damaged.png"
    path.write_bytes(bytes(data))
    recipe, refused = outcome(recipes.load_recipe, path, errors=(recipes.RecipeError,))
    if refused:
        return
    assert isinstance(recipe, dict) and isinstance(recipe["nbinpaint_recipe"], int)
