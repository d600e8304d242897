"""Offline sample scenes and the stand-ins for the guide's image URLs."""

from __future__ import annotations

import numpy as np
import pytest

from nbinpaint import samples
from tests.test_guide import CODE_URLS, GUIDE


@pytest.mark.parametrize("name", samples.names())
def test_every_sample_loads_with_a_binary_mask_of_its_size(name):
    image, mask = samples.load(name)
    assert image.mode == "RGB" and mask.mode == "L" and image.size == mask.size
    values = set(np.unique(np.array(mask)))
    assert values == {0, 255}


def test_samples_are_deterministic_and_resizable():
    a, b = samples.load("chelsea"), samples.load("chelsea")
    assert np.array_equal(np.array(a.image), np.array(b.image))
    small = samples.load("chelsea", (448, 296))
    assert small.image.size == small.mask.size == (448, 296)
    assert set(np.unique(np.array(small.mask))) == {0, 255}


def test_unknown_sample_lists_the_names():
    with pytest.raises(KeyError, match="astronaut, astronaut-helmet"):
        samples.load("dog")


def test_every_image_url_of_the_guide_has_a_standin_of_the_guide_size():
    assert GUIDE.exists(), f"the guide is missing at {GUIDE}"
    urls = set(CODE_URLS)
    assert urls, "no image URLs parsed from the guide"
    assert urls <= set(samples.STANDINS)
    for url in urls:
        assert samples.guide_image(url).size == samples.STANDINS[url][2]


def test_offline_load_uses_the_standin_with_a_notice(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    url = next(iter(samples.STANDINS))
    tried = []
    image = samples.load_image_or_standin(url, reachable=lambda u: tried.append(u) or True)
    assert tried == []  # offline: the network is not even tried
    assert image.size == samples.STANDINS[url][2]
    assert "stand-in" in capsys.readouterr().out
