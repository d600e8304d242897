"""Offline sample scenes, and the stand-ins for the images the inpainting guide loads from URLs."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw

from nbinpaint import samples
from nbinpaint.errors import NbinpaintError
from nbinpaint.notices import reset as reset_notices
from tests import guide_source

# The guide's images and their real pixel sizes (width, height), written down independently of samples.py.
# The seashore pair is recalled, not measured (no network here): confirm it when online.
GUIDE_IMAGE_SIZES = {
    "inpaint.png": (512, 512),
    "inpaint_mask.png": (512, 512),
    "road-mask.png": (512, 512),
    "seashore.png": (1024, 1024),
    "seashore_mask.png": (1024, 1024),
    "overture-creations-5sI6fQgYIuo.png": (512, 512),
    "overture-creations-5sI6fQgYIuo_mask.png": (512, 512),
    "inpaint_text-chain-mask.png": (512, 512),
}


def guide_loaded_urls(text: str) -> set[str]:
    """URLs the guide passes to ``load_image``: literally, or through a variable assigned a URL."""
    literal = set(re.findall(r"""load_image\(\s*["'](https?://[^"']+)["']""", text))
    variables = set(re.findall(r"load_image\(\s*([A-Za-z_]\w*)\s*\)", text))
    assigned = {
        url for name in variables for url in re.findall(rf"""^\s*{name}\s*=\s*["'](https?://[^"']+)["']""", text, re.M)
    }
    return literal | assigned


@pytest.mark.parametrize("name", samples.names())
def test_every_sample_loads_binary_mask_over_part_of_it(name):
    sample = samples.load(name)
    image, mask = sample  # unpacks like a pair
    assert image is sample.image and mask is sample.mask
    assert image.mode == "RGB" and mask.mode == "L" and image.size == mask.size == sample.size
    assert image.width % 8 == 0 and image.height % 8 == 0, f"{name}: default size {image.size}"
    assert set(np.unique(np.array(mask))) == {0, 255}
    covered = (np.array(mask) == 255).mean()
    assert 0.01 < covered < 0.6, f"{name}: mask covers {covered:.0%} of the image"
    assert sample.description and sample.source.startswith("skimage.data.")


def test_same_name_gives_identical_pixels_and_edits_do_not_leak():
    first = samples.load("chelsea")
    ImageDraw.Draw(first.image).rectangle((0, 0, 50, 50), fill=(255, 0, 0))
    ImageDraw.Draw(first.mask).rectangle((0, 0, 50, 50), fill=255)
    a, b = samples.load("chelsea"), samples.load("chelsea")
    assert a.image is not b.image
    assert np.array_equal(np.array(a.image), np.array(b.image))
    assert np.array_equal(np.array(a.mask), np.array(b.mask))
    assert not np.array_equal(np.array(first.image), np.array(a.image))  # the edit stayed in its own copy


@pytest.mark.parametrize(("size", "expected"), [((320, 208), (320, 208)), (256, (256, 256))])
def test_size_resizes_both_and_keeps_the_mask_binary(size, expected):
    sample = samples.load("coffee", size)
    assert sample.image.size == sample.mask.size == expected
    assert set(np.unique(np.array(sample.mask))) == {0, 255}


def test_unknown_name_lists_the_samples():
    with pytest.raises(samples.UnknownSampleError) as caught:
        samples.load("dog")
    assert isinstance(caught.value, KeyError) and isinstance(caught.value, NbinpaintError)
    assert str(caught.value).startswith("there is no sample 'dog'")  # readable, not a quoted repr
    assert all(name in str(caught.value) for name in samples.names())


def test_every_image_the_guide_loads_has_a_standin_of_its_real_size():
    guide = guide_source.text()
    if not guide:
        pytest.skip(guide_source.reason())
    urls = guide_loaded_urls(guide)
    assert len(urls) >= 8, f"parsed only {len(urls)} load_image URLs from the guide ({guide_source.reason()})"
    assert urls == set(samples.STANDINS), "the stand-in table and the guide disagree"
    for url in urls:
        assert samples.guide_image(url).size == GUIDE_IMAGE_SIZES[url.rsplit("/", 1)[-1]], url


@pytest.mark.parametrize("url", list(samples.STANDINS))
def test_standin_has_the_role_and_size_of_the_guide_image(url):
    standin = samples.STANDINS[url]
    image = samples.guide_image(url)
    assert image.mode == "RGB"  # as diffusers.utils.load_image returns, masks included
    assert image.size == standin.size == GUIDE_IMAGE_SIZES[url.rsplit("/", 1)[-1]]
    values = np.unique(np.array(image))
    if standin.role == "mask":
        assert set(values) == {0, 255}
        assert 0.01 < (np.array(image)[..., 0] == 255).mean() < 0.6
    else:
        assert len(values) > 100  # a photo, not a mask
    assert np.array_equal(np.array(image), np.array(samples.guide_image(url.rsplit("/", 1)[-1])))


def test_guide_pairs_share_their_base_image_size():
    by_file = {url.rsplit("/", 1)[-1]: samples.guide_image(url) for url in samples.STANDINS}
    assert by_file["inpaint.png"].size == by_file["inpaint_mask.png"].size == by_file["road-mask.png"].size
    assert by_file["seashore.png"].size == by_file["seashore_mask.png"].size
    assert by_file["overture-creations-5sI6fQgYIuo.png"].size == by_file["overture-creations-5sI6fQgYIuo_mask.png"].size
    assert samples.load("astronaut").stands_in_for == ("inpaint.png", "inpaint_mask.png")


def test_guide_image_unknown_name_lists_the_known_ones():
    with pytest.raises(samples.UnknownSampleError, match="inpaint.png, inpaint_mask.png"):
        samples.guide_image("https://example.com/cat.png")


URL = "https://huggingface.co/datasets/huggingface/documentation-images/resolve/main/diffusers/inpaint.png"


@pytest.fixture
def fresh_notices():
    reset_notices()
    yield
    reset_notices()


@pytest.fixture
def fake_load_image(monkeypatch):
    """diffusers.utils.load_image replaced by a recorder that returns a 1x1 image (no network)."""
    calls: list[str] = []

    def load_image(url):
        calls.append(url)
        return Image.new("RGB", (1, 1))

    monkeypatch.setattr("diffusers.utils.load_image", load_image)
    return calls


def test_offline_mode_uses_the_standin_without_probing(monkeypatch, capsys, fresh_notices, fake_load_image):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    probed = []
    image = samples.load_image_or_standin(URL, reachable=lambda url, timeout: probed.append(url) or True)
    assert probed == [] and fake_load_image == []
    assert np.array_equal(np.array(image), np.array(samples.guide_image(URL)))
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and URL in out and "samples.guide_image('inpaint.png')" in out


def test_online_loads_through_diffusers(monkeypatch, fresh_notices, fake_load_image):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("NBINPAINT_TWINS", raising=False)
    image = samples.load_image_or_standin(URL, reachable=lambda url, timeout: True)
    assert fake_load_image == [URL] and image.size == (1, 1)


def test_unreachable_or_failing_url_falls_back(monkeypatch, capsys, fresh_notices):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("NBINPAINT_TWINS", raising=False)
    image = samples.load_image_or_standin(URL, reachable=lambda url, timeout: False)
    assert image.size == (512, 512) and "no connection" in capsys.readouterr().out

    def broken(url):
        raise ConnectionError("reset by peer")

    monkeypatch.setattr("diffusers.utils.load_image", broken)
    image = samples.load_image_or_standin(URL, reachable=lambda url, timeout: True)
    assert image.size == (512, 512) and "ConnectionError" in capsys.readouterr().out


def test_connection_probe_gives_up_in_time():
    started = time.perf_counter()
    # 192.0.2.0/24 is reserved for documentation: nothing answers there.
    assert not samples._reachable("https://192.0.2.1/image.png", 0.3)
    assert time.perf_counter() - started < 1.0


def test_local_paths_and_other_urls_go_straight_to_load_image(tmp_path, fake_load_image):
    path = tmp_path / "photo.png"
    samples.load_image_or_standin(str(path))
    assert fake_load_image == [str(path)]
