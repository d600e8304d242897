"""Every mistake a user can make in a request: an automatic fix with a one-line notice, or an error naming the fix.

One test per case of ``docs/bad-input.md`` (parametrised where natural). Messages are matched on the
words that name the fix, so a message that stops telling the user what to do fails here.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nbinpaint import inputs, notices
from nbinpaint.errors import InvalidRequestError, UnsupportedParameterError
from nbinpaint.pipeline_manager import PipelineManager
from nbinpaint.requests import InpaintRequest, as_mask, as_rgb
from nbinpaint.runner import run_request
from tests.conftest import make_scene

SD_INPAINT = "runwayml/stable-diffusion-inpainting"
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
KANDINSKY = "kandinsky-community/kandinsky-2-2-decoder-inpaint"


@pytest.fixture(scope="module")
def shared(twins_dir) -> PipelineManager:
    return PipelineManager(device="cpu")


@pytest.fixture(autouse=True)
def fresh_notices():
    notices.reset()  # every test sees its own notices, once


class Output:
    def __init__(self, images):
        self.images = images


class EchoPipeline:
    """An SD-inpaint-like stand-in that returns the image it is given at the size it is asked for."""

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
        num_images_per_prompt=1,
        generator=None,
        output_type="pil",
        padding_mask_crop=None,
        callback_on_step_end=None,
    ):
        self.calls.append({"image": image, "mask_image": mask_image, "width": width, "height": height})
        return Output([image.resize((width, height))])


def request(**changes) -> InpaintRequest:
    image, mask = make_scene(64)
    return InpaintRequest(prompt="a castle", image=image, mask=mask, steps=2, seed=3, model=SD_INPAINT).replace(
        **changes
    )


def said(capsys) -> str:
    return capsys.readouterr().out


# --- images and masks ---------------------------------------------------------------------------------------


def test_mask_of_another_size_says_resize_the_mask():
    _, mask = make_scene(48)
    with pytest.raises(InvalidRequestError, match=r"mask is 48x48 but the image is 64x64: resize the mask"):
        request(mask=mask).validated()


def test_size_not_a_multiple_of_8_runs_rounded_down_and_comes_back_full_size(capsys):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (61, 75, 3), dtype=np.uint8))
    mask = np.zeros((61, 75), np.uint8)
    mask[10:40, 20:50] = 255
    pipeline = EchoPipeline()
    result = run_request(pipeline, request(image=image, mask=mask))
    assert (pipeline.calls[0]["width"], pipeline.calls[0]["height"]) == (72, 56)
    assert result.image.size == (75, 61)
    assert "75x61, not a multiple of 8: generating at 72x56 and resizing the result back" in said(capsys)


def _mode_image(mode: str) -> tuple[Image.Image, tuple[int, int, int], str | None]:
    """An image of ``mode`` whose top-left pixel has a known RGB meaning, and the notice it must give."""
    if mode == "RGBA":
        array = np.zeros((16, 16, 4), np.uint8)
        array[..., :3] = (200, 0, 0)
        array[0, 0, 3] = 0  # one transparent pixel: flattened onto white
        array[1:, :, 3] = 255
        array[0, 1:, 3] = 255
        return Image.fromarray(array, "RGBA"), (255, 255, 255), "transparent pixels: flattened onto white"
    if mode == "LA":
        return Image.new("LA", (16, 16), (90, 255)), (90, 90, 90), None  # opaque: no notice
    if mode == "P":
        image = Image.new("P", (16, 16), 1)
        image.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
        return image, (10, 200, 30), None
    if mode == "I;16":
        array = np.full((16, 16), 65535, np.uint16)
        array[0, 0] = 32896  # 128 * 257: the middle of the 16-bit range
        return Image.fromarray(array), (128, 128, 128), "scaled to 8-bit"
    if mode == "CMYK":
        return Image.new("CMYK", (16, 16), (0, 255, 255, 0)), (255, 0, 0), "CMYK image was converted"
    if mode == "1":
        return Image.new("1", (16, 16), 1), (255, 255, 255), None
    raise AssertionError(mode)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "I;16", "CMYK", "1"])
def test_image_modes_become_rgb_with_the_right_colours(mode, capsys):
    image, expected, notice_text = _mode_image(mode)
    original = image.copy()
    rgb = as_rgb(image)
    assert rgb.mode == "RGB" and rgb.size == image.size
    assert rgb.getpixel((0, 0)) == expected
    assert image.tobytes() == original.tobytes() and image.mode == mode  # the user's image is untouched
    out = said(capsys)
    assert (notice_text in out) if notice_text else "nbinpaint:" not in out


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGBA", "LA", "I;16"])
def test_mask_modes_become_binary_l(mode):
    square = np.zeros((16, 16), bool)
    square[4:12, 4:12] = True
    if mode == "1":
        mask = Image.fromarray(square)
    elif mode == "I;16":
        mask = Image.fromarray(square.astype(np.uint16) * 40000)  # 40000 > half of 65535
    else:
        mask = Image.fromarray((square * 255).astype(np.uint8)).convert(mode)
    converted = as_mask(mask)
    assert converted.mode == "L"
    assert np.array_equal(np.asarray(converted), np.where(square, 255, 0))


def test_a_16_bit_mask_is_thresholded_at_half_its_range():
    soft = Image.fromarray(np.array([[1000, 30000, 40000, 65535]], np.uint16))
    assert np.asarray(as_mask(soft)).tolist() == [[0, 0, 255, 255]]


def _exif_photo(path, orientation: int) -> None:
    array = np.zeros((20, 40, 3), np.uint8)
    array[:, :20] = (250, 250, 250)  # left half white as stored
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(array).save(path, exif=exif, quality=95)


def test_exif_rotated_photo_is_turned_upright_with_a_notice(tmp_path, capsys):
    path = tmp_path / "phone.jpg"
    _exif_photo(path, 6)  # "rotate 90 clockwise to view"
    rgb = as_rgb(path)
    assert rgb.size == (20, 40)  # stored 40x20, shown 20x40
    assert np.asarray(rgb)[:10].mean() > 200 and np.asarray(rgb)[30:].mean() < 50  # white half now on top
    assert "EXIF orientation 6: rotated to 20x40" in said(capsys)
    # A mask drawn on the stored (unrotated) pixels is refused with the hint that explains why.
    with pytest.raises(InvalidRequestError, match="rotated by its EXIF orientation.*exif_transpose"):
        InpaintRequest(image=Image.open(path), mask=np.ones((20, 40), np.uint8) * 255).validated()


def test_all_black_mask_is_refused_naming_what_to_paint():
    image, _ = make_scene(64)
    with pytest.raises(InvalidRequestError, match="all black.*paint the area to change in white"):
        request(mask=Image.new("L", image.size, 0)).validated()


def test_all_white_mask_runs_with_a_notice(capsys):
    image, _ = make_scene(64)
    checked = request(mask=Image.new("L", image.size, 255)).validated()
    assert np.asarray(checked.mask).min() == 255
    assert "mask is all white: the whole image is repainted" in said(capsys)


def test_mask_that_looks_inverted_gets_a_hint_to_invert(capsys):
    painted_around = np.full((64, 64), 255, np.uint8)
    painted_around[28:36, 28:36] = 0  # a small object kept, everything else repainted: 98% white
    request(mask=painted_around).validated()
    assert "98% white" in (out := said(capsys)) and "invert the mask" in out
    request().validated()  # a normal mask: no hint
    assert "invert" not in said(capsys)


def test_large_image_is_generated_within_the_pixel_budget_and_resized_back(capsys):
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))
    mask = np.zeros((300, 400), np.uint8)
    mask[100:200, 100:300] = 255
    pipeline = EchoPipeline()
    result = run_request(pipeline, request(image=image, mask=mask).validated(max_pixels=20_000))
    width, height = pipeline.calls[0]["width"], pipeline.calls[0]["height"]
    assert width * height <= 20_000 and (width, height) == inputs.run_size((400, 300), 20_000)
    assert abs(width / height - 4 / 3) < 0.1  # aspect kept
    assert result.image.size == (400, 300)
    assert "above the pixel budget" in (out := said(capsys)) and "max_pixels" in out and "NBINPAINT_MAX_PIXELS" in out


def test_pixel_budget_comes_from_the_manager_then_the_environment(monkeypatch, shared):
    big = request(image=Image.new("RGB", (400, 300), (9, 9, 9)), mask=np.pad(np.ones((100, 200)), 100))
    monkeypatch.setenv(inputs.MAX_PIXELS_ENV, "30000")
    assert big.validated().width * big.validated().height <= 30_000
    assert big.validated(max_pixels=0).width == 400  # 0: no budget
    monkeypatch.setenv(inputs.MAX_PIXELS_ENV, "off")
    assert big.validated().width == 400
    monkeypatch.setenv(inputs.MAX_PIXELS_ENV, "lots")
    with pytest.raises(InvalidRequestError, match="NBINPAINT_MAX_PIXELS=.*use e.g."):
        big.validated()
    with pytest.raises(InvalidRequestError, match="max_pixels=-1 is invalid"):
        PipelineManager(device="cpu", max_pixels=-1)
    monkeypatch.delenv(inputs.MAX_PIXELS_ENV)
    budgeted = PipelineManager(device="cpu", max_pixels=20_000)
    result = budgeted.run(big.replace(steps=2))
    assert result.image.size == (400, 300) and result.recipe["run_size"][0] * result.recipe["run_size"][1] <= 20_000


@pytest.mark.parametrize(
    ("source", "fix"),
    [
        ("missing.png", "no image file at .*check the path"),
        ("notes.txt", "damaged, truncated or not an image. Re-save it"),
        ("cut.png", "damaged, truncated or not an image. Re-save it"),
        (12, "image must be a PIL image.*load it with PIL.Image.open"),
        (np.zeros((8, 8, 2)), r"\(height, width, 3 or 4 channels\)"),
        (np.full((8, 8, 3), np.nan), "NaN or infinite.*np.nan_to_num"),
    ],
)
def test_unreadable_images_name_the_fix(source, fix, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("not an image")
    make_scene(64)[0].save(tmp_path / "whole.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "whole.png").read_bytes()[:300])
    with pytest.raises(InvalidRequestError, match=fix):
        request(image=source).validated()


def test_normalised_float_arrays_in_minus_one_to_one_are_read_as_diffusers_range(capsys):
    array = np.linspace(-1, 1, 8 * 8 * 3, dtype=np.float32).reshape(8, 8, 3)
    rgb = np.asarray(as_rgb(array))
    assert rgb.min() == 0 and rgb.max() == 255
    assert "values in [-1, 1]" in said(capsys)


def test_tiny_image_is_refused_with_the_minimum_size():
    with pytest.raises(InvalidRequestError, match="at least 8x8 pixels"):
        request(image=Image.new("RGB", (4, 30)), mask=np.ones((30, 4))).validated()


# --- numbers ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "fix"),
    [
        ({"strength": 0}, "Set strength between 0 and 1"),
        ({"strength": 1.01}, "Set strength between 0 and 1"),
        ({"strength": float("nan")}, "Set strength between 0 and 1"),
        ({"steps": 0}, r"steps=0 is invalid.*Use e.g. steps=30"),
        ({"steps": 2.5}, r"steps=2.5 is invalid.*whole number"),
        ({"steps": 3, "strength": 0.2}, r"int\(steps\*strength\) = 0.*raise steps or strength \(e.g. steps=5"),
        ({"guidance_scale": -0.5}, "guidance_scale=-0.5 is invalid.*Use e.g. 7.5"),
        ({"guidance_scale": float("inf")}, "guidance_scale=inf is invalid"),
        ({"padding_mask_crop": 64}, r"padding_mask_crop=64 is invalid: it is not smaller than the image.*e.g. 32"),
        ({"padding_mask_crop": -1}, "padding_mask_crop=-1 is invalid.*None to turn it off"),
        ({"seed": -1}, r"seed=-1 is invalid.*\[0, 18446744073709551615\].*seed=None"),
        ({"seed": 2**64}, "seed=18446744073709551616 is invalid"),
        ({"seed": True}, "seed=True is invalid"),
        ({"num_images": 0}, "num_images=0 is invalid.*num_images=1"),
        ({"width": 100}, r"width=100 is invalid.*Round it, e.g. 96"),
        ({"blur_factor": -3}, "blur_factor=-3 is invalid.*0 for a hard edge"),
        # absurd sizes, as a hand-edited recipe in a shared PNG could ask for: refused, not attempted
        ({"steps": 10**6}, r"steps=1000000 is invalid.*\[1, 10000\]"),
        ({"num_images": 2**64}, r"num_images=18446744073709551616 is invalid.*\[1, 64\]"),
        ({"width": 2**20}, r"width=1048576 is invalid.*\[8, 8192\].*e.g. 8192"),
        ({"blur_factor": 1e9}, r"blur_factor=1000000000.0 is invalid.*\[0, 1024\]"),
        ({"strength": 10**400}, "Set strength between 0 and 1"),  # too large for a float: no OverflowError
        ({"guidance_scale": -(10**400)}, "guidance_scale=.* is invalid"),
        ({"prompt": ["a", "b"]}, "prompt must be text.*num_images=N"),
        ({"extra": "steps=3"}, "extra must be a dict"),
    ],
)
def test_out_of_range_parameters_name_the_fix(changes, fix):
    with pytest.raises(InvalidRequestError, match=fix):
        request(**changes).validated()


def test_whole_number_floats_and_numpy_scalars_become_plain_numbers():
    checked = request(steps=4.0, seed=np.uint64(7), strength=np.float32(0.5), num_images=np.int64(1)).validated()
    assert (checked.steps, checked.seed, checked.num_images) == (4, 7, 1)
    assert type(checked.steps) is int and type(checked.seed) is int and type(checked.strength) is float


def test_default_steps_times_a_small_strength_is_refused_before_running(shared):
    pipeline = shared.get(SD_INPAINT)
    checked = request(steps=None, strength=0.01).validated()  # the pipeline's default: 50 steps
    with pytest.raises(InvalidRequestError, match=r"steps=50 with strength=0.01 \(the pipeline's defaults"):
        checked.call_kwargs(pipeline)


def test_more_steps_than_the_scheduler_has_is_refused(shared):
    pipeline = shared.get(SD_INPAINT)
    limit = pipeline.scheduler.config.num_train_timesteps
    with pytest.raises(InvalidRequestError, match=f"steps={limit + 1} is more than.*use steps <= {limit}"):
        request(steps=limit + 1).validated().call_kwargs(pipeline)


# --- prompts and pipeline parameters ------------------------------------------------------------------------


def test_prompt_longer_than_the_text_encoder_says_what_is_cut(shared, capsys):
    pipeline = shared.get(SD_INPAINT)
    tokenizer = pipeline.tokenizer
    prompt = "a red castle on a green hill under a blue sky " * 3 + "with golden flags"
    ids = tokenizer(prompt).input_ids
    limit = tokenizer.model_max_length
    assert len(ids) > limit  # the case under test
    result = shared.run(request(prompt=prompt))
    out = said(capsys)
    assert f"the prompt is {len(ids) - 2} tokens but the text encoder reads {limit - 2}" in out
    cut = out.split("“")[1].split("”")[0]
    assert cut and prompt.replace(" ", "").endswith(cut.replace(" ", ""))  # the end of the prompt is what goes
    assert result.request.prompt == prompt  # the recipe keeps the full prompt as typed
    shared.run(request(prompt=prompt))
    assert "tokens" not in said(capsys)  # said once
    shared.run(request(negative_prompt=prompt))
    assert "the negative prompt is" in said(capsys)


def test_empty_prompt_is_allowed_everywhere_and_none_means_empty(shared):
    for model, extra in ((SD_INPAINT, {}), (KANDINSKY, {"prior_num_inference_steps": 2})):
        for prompt in ("", None):
            result = shared.run(request(model=model, prompt=prompt, extra=extra))
            assert result.request.prompt == "" and result.image.size == (64, 64)


def test_a_required_pipeline_argument_left_unset_is_named():
    class NeedsControl:
        def __call__(self, prompt, image, mask_image, control_image, width=None, height=None):
            raise AssertionError("never called")

    with pytest.raises(InvalidRequestError, match="NeedsControl.*needs control_image: set control_image="):
        request(steps=None).validated().call_kwargs(NeedsControl())


def test_unsupported_parameter_is_refused_naming_what_to_unset(shared):
    with pytest.raises(UnsupportedParameterError, match=r"strength is not accepted by KandinskyV22.*unset it"):
        shared.run(request(model=KANDINSKY, strength=0.5, extra={"prior_num_inference_steps": 2}))
    with pytest.raises(UnsupportedParameterError, match=r"steps is not accepted.*pass as steps=\.\.\., not in extra"):
        request(steps=None, extra={"steps": 3}).validated().call_kwargs(shared.get(SD_INPAINT))


def test_a_parameter_set_twice_or_a_generator_in_extra_is_refused(shared):
    pipeline = shared.get(SD_INPAINT)
    with pytest.raises(InvalidRequestError, match="num_inference_steps is set twice.*use steps="):
        request(extra={"num_inference_steps": 5}).validated().call_kwargs(pipeline)
    with pytest.raises(InvalidRequestError, match="pass seed="):
        request(extra={"generator": None}).validated().call_kwargs(pipeline)


def test_image_to_image_pipelines_get_inputs_at_the_run_size(shared):
    """SD image-to-image has no width/height: the budgeted run size reaches it as a resized image."""
    pipeline = shared.get(SD15, "img2img")
    image = Image.new("RGB", (400, 300), (20, 40, 60))
    checked = InpaintRequest(prompt="x", image=image, task="img2img", model=SD15, steps=2).validated(max_pixels=20_000)
    kwargs = checked.call_kwargs(pipeline)
    assert "width" not in kwargs and kwargs["image"].size == (checked.width, checked.height) != image.size
    result = shared.run(checked.replace(seed=1))
    assert result.image.size == (400, 300)


# --- transposed masks, rotated photos given as paths, strokes on transparency, long text -------------------


@pytest.mark.parametrize("image_as", ["pil", "array"])
def test_a_numpy_mask_with_height_and_width_swapped_says_so(image_as):
    image = Image.new("RGB", (96, 64), (90, 90, 90))  # 96 wide, 64 high
    mask = np.zeros((96, 64), np.uint8)  # built as (width, height)
    mask[10:30, 10:30] = 255
    source = image if image_as == "pil" else np.asarray(image)
    with pytest.raises(InvalidRequestError, match=r"mask is 64x96 but the image is 96x64.*\(height, width\).*mask\.T"):
        request(image=source, mask=mask).validated()


@pytest.mark.parametrize("suffix", ["jpg", "png"])
@pytest.mark.parametrize("mask_as", ["pil", "array", "path"])
def test_an_exif_rotated_photo_given_as_a_path_gets_the_rotation_hint(tmp_path, suffix, mask_as):
    path = tmp_path / f"phone.{suffix}"
    _exif_photo(path, 6)  # stored 40x20, shown 20x40
    stored = np.zeros((20, 40), np.uint8)  # drawn on the stored pixels
    stored[5:15, 5:15] = 255
    mask = {"pil": Image.fromarray(stored), "array": stored, "path": tmp_path / "mask.png"}[mask_as]
    Image.fromarray(stored).save(tmp_path / "mask.png")
    with pytest.raises(InvalidRequestError, match=r"mask is 40x20 but the image is 20x40.*rotated by its EXIF.*exif_"):
        InpaintRequest(image=str(path), mask=mask).validated()
    with pytest.raises(InvalidRequestError, match="rotated by its EXIF orientation"):
        InpaintRequest(image=path, mask=mask).validated()  # a pathlib.Path too


def _strokes_layer(colour: tuple[int, int, int]) -> np.ndarray:
    """A 64x64 RGBA layer: strokes of ``colour`` on transparent black, as a paint program exports them."""
    layer = np.zeros((64, 64, 4), np.uint8)
    layer[16:48, 20:40, :3] = colour
    layer[16:48, 20:40, 3] = 255
    return layer


@pytest.mark.parametrize("colour", [(0, 0, 0), (255, 0, 0), (255, 255, 255)])
@pytest.mark.parametrize("given_as", ["pil", "array"])
def test_strokes_of_one_colour_on_a_transparent_layer_repaint_where_painted(colour, given_as):
    layer = _strokes_layer(colour)
    mask = request(mask=Image.fromarray(layer, "RGBA") if given_as == "pil" else layer).validated().mask
    expected = np.where(layer[..., 3] >= 128, 255, 0)
    assert np.array_equal(np.asarray(mask), expected)


def test_dark_strokes_of_several_colours_on_transparency_get_the_alpha_hint():
    layer = _strokes_layer((0, 0, 0))
    layer[16:32, 20:40, :3] = (60, 0, 0)  # two dark colours: read by brightness, transparent = keep: all black
    with pytest.raises(InvalidRequestError, match=r"all black.*transparent layer, pass its alpha.*getchannel\('A'\)"):
        request(mask=Image.fromarray(layer, "RGBA")).validated()


def test_a_very_long_prompt_gives_a_short_one_line_truncation_notice(shared, capsys):
    prompt = "a castle on a hill,\n" * 500  # 10,000 characters over many lines
    shared.run(request(prompt=prompt, steps=1, image=make_scene(32)[0], mask=make_scene(32)[1]))
    lines = [line for line in said(capsys).splitlines() if "is cut" in line]
    assert lines and all(len(line) < 400 for line in lines)
    assert "more characters" in lines[0]


def test_a_long_value_is_quoted_short_in_the_error():
    with pytest.raises(InvalidRequestError, match=r"steps='x+…\(9,9\d\d more characters\)…x+' is invalid") as raised:
        request(steps="x" * 10_000).validated()
    assert len(str(raised.value)) < 300


@pytest.mark.parametrize("mode", ["LAB", "HSV"])
def test_lab_and_hsv_images_are_converted_to_rgb(mode):
    rgb = Image.new("RGB", (16, 16), (200, 40, 40))
    converted = rgb.convert(mode) if mode == "HSV" else Image.new("LAB", (16, 16), (136, 208, 195))  # red in LAB
    result = as_rgb(converted)
    assert result.mode == "RGB"
    r, g, b = result.getpixel((0, 0))
    assert r > 150 and g < 80 and b < 80  # still red


def test_a_file_above_the_decompression_bomb_limit_names_the_fix(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    Image.new("RGB", (64, 64), "white").save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64*64 = 4096 is above twice the limit
    with pytest.raises(InvalidRequestError, match=r"decompression-bomb guard.*MAX_IMAGE_PIXELS = None.*downscale"):
        request(image=str(path), mask=np.ones((64, 64), np.uint8) * 255).validated()
