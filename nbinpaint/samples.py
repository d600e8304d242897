"""Offline sample scenes: photos that ship inside scikit-image, each with a mask drawn to fit an object.

``samples.load("chelsea")`` gives a base image and a mask (white = repaint) without any download, so a
notebook or the studio can start anywhere. The guide's image URLs have stand-ins of the same size and role
here (`guide_image`), used by `load_image_or_standin` only when the URL cannot be reached.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlparse

import numpy as np
from PIL import Image, ImageDraw

from nbinpaint.notices import notice


@dataclass(frozen=True)
class Sample:
    """A base image and its mask; unpacks as ``image, mask = samples.load(name)``."""

    name: str
    image: Image.Image
    mask: Image.Image
    description: str
    source: str

    def __iter__(self) -> Iterator[Image.Image]:
        return iter((self.image, self.mask))

    def resized(self, size: tuple[int, int]) -> Sample:
        """Both resized: the image smoothly, the mask with NEAREST so it stays 0/255."""
        return Sample(
            self.name,
            self.image.resize(size, Image.Resampling.LANCZOS),
            self.mask.resize(size, Image.Resampling.NEAREST),
            self.description,
            self.source,
        )


@dataclass(frozen=True)
class _Scene:
    photo: str
    description: str
    shapes: tuple[tuple[str, tuple[int, ...]], ...]  # ("ellipse" | "rectangle" | "polygon", coordinates)


# Coordinates are in the photo's own pixels, placed by looking at each photo.
_SCENES: dict[str, _Scene] = {
    "astronaut": _Scene(
        "astronaut", "the space shuttle model behind the astronaut", (("ellipse", (350, 0, 468, 292)),)
    ),
    "astronaut-helmet": _Scene("astronaut", "the helmet on the astronaut's arm", (("ellipse", (278, 338, 508, 512)),)),
    "astronaut-wall": _Scene("astronaut", "a patch of the smooth grey wall", (("rectangle", (88, 32, 127, 111)),)),
    "chelsea": _Scene("chelsea", "the cat's face", (("ellipse", (95, 20, 395, 300)),)),
    "coffee": _Scene("coffee", "the coffee cup and its handle", (("ellipse", (160, 8, 420, 305)),)),
    "rocket": _Scene("rocket", "the rocket on its launch pad", (("rectangle", (298, 118, 348, 427)),)),
}


def names() -> list[str]:
    """The sample names `load` accepts."""
    return list(_SCENES)


def load(name: str, size: tuple[int, int] | int | None = None) -> Sample:
    """The named sample; ``size`` (width, height) or a side length resizes image and mask together."""
    if name not in _SCENES:
        raise KeyError(f"no sample {name!r}: choose one of {', '.join(_SCENES)}.")
    sample = _build(name)
    if size is not None:
        sample = sample.resized((size, size) if isinstance(size, int) else tuple(size))
    return sample


@cache
def _build(name: str) -> Sample:
    import skimage.data

    scene = _SCENES[name]
    image = Image.fromarray(getattr(skimage.data, scene.photo)()).convert("RGB")
    mask = Image.new("L", image.size, 0)
    draw = ImageDraw.Draw(mask)
    for kind, coordinates in scene.shapes:
        getattr(draw, kind)(coordinates, fill=255)
    return Sample(name, image, mask, scene.description, f"skimage.data.{scene.photo}()")


# The guide's image URLs -> (sample, role, size of the guide's image): same size and role, offline.
_GUIDE = "https://huggingface.co/datasets/huggingface/documentation-images/resolve/main/diffusers/"
_TESTING = "https://huggingface.co/datasets/YiYiXu/testing-images/resolve/main/"
_OVERTURE = "https://raw.githubusercontent.com/CompVis/latent-diffusion/main/data/inpainting_examples/"
STANDINS: dict[str, tuple[str, str, tuple[int, int]]] = {
    _GUIDE + "inpaint.png": ("astronaut", "image", (512, 512)),
    _GUIDE + "inpaint_mask.png": ("astronaut", "mask", (512, 512)),
    _GUIDE + "road-mask.png": ("astronaut-helmet", "mask", (512, 512)),
    _GUIDE + "inpaint_text-chain-mask.png": ("astronaut", "mask", (512, 512)),
    _TESTING + "seashore.png": ("rocket", "image", (1024, 1024)),
    _TESTING + "seashore_mask.png": ("rocket", "mask", (1024, 1024)),
    _OVERTURE + "overture-creations-5sI6fQgYIuo.png": ("chelsea", "image", (512, 512)),
    _OVERTURE + "overture-creations-5sI6fQgYIuo_mask.png": ("chelsea", "mask", (512, 512)),
}


def guide_image(url: str) -> Image.Image:
    """The offline stand-in for one of the guide's image URLs: same pixel size, same role."""
    if url not in STANDINS:
        raise KeyError(f"no stand-in for {url}: the guide's images are {', '.join(sorted(STANDINS))}.")
    name, role, size = STANDINS[url]
    sample = load(name, size)
    return sample.image if role == "image" else sample.mask.convert("RGB")


def load_image_or_standin(url: str, *, reachable: Callable[[str], bool] | None = None) -> Image.Image:
    """``diffusers.utils.load_image(url)`` when the URL can be reached, else its stand-in, with a notice.

    Offline (twin mode or ``HF_HUB_OFFLINE``) the network is not tried at all, so nothing hangs.
    """
    from diffusers.utils import load_image

    offline = any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("NBINPAINT_TWINS", "HF_HUB_OFFLINE"))
    if not offline and (reachable or _reachable)(url):
        try:
            return load_image(url)
        except Exception as error:  # a flaky network must not stop a notebook that has a stand-in
            notice(f"could not fetch {url} ({type(error).__name__}); using an offline stand-in.", once=False)
    name, role, _ = STANDINS[url]
    notice(f"offline: {url.rsplit('/', 1)[-1]} -> stand-in from samples.load({name!r}) ({role})", once=False)
    return guide_image(url)


def _reachable(url: str, timeout: float = 2.0) -> bool:
    host = urlparse(url).hostname or ""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def as_array(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """Image and boolean hole of a sample, for numeric checks."""
    return np.array(sample.image), np.array(sample.mask) > 127
