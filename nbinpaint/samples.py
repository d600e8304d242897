"""Offline sample scenes: photos that ship inside scikit-image, each with a mask drawn to fit an object.

``samples.load("chelsea")`` gives a base image and a mask (white = repaint) without any download, so a
notebook or the studio can start anywhere::

    image, mask = samples.load("chelsea")

The inpainting guide loads its images from URLs. Each of those has a stand-in here of the same pixel size
and the same role (`guide_image`), and `load_image_or_standin` uses it when the URL cannot be reached.
"""

from __future__ import annotations

import os
import socket
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Literal
from urllib.parse import urlparse

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from nbinpaint.errors import NbinpaintError
from nbinpaint.notices import notice

__all__ = [
    "STANDINS",
    "Sample",
    "StandIn",
    "UnknownSampleError",
    "guide_image",
    "load",
    "load_image_or_standin",
    "names",
]


class UnknownSampleError(NbinpaintError, KeyError):
    """No sample or guide image by that name; the message lists the ones there are."""

    def __str__(self) -> str:
        # KeyError prints its argument as a repr, in quotes; this message is meant to be read.
        return str(self.args[0])


@dataclass(frozen=True, eq=False)
class Sample:
    """A base image and its mask (white = repaint); unpacks as ``image, mask = samples.load(name)``.

    ``stands_in_for`` names the guide's images (file names) this sample replaces offline, if any.
    """

    name: str
    image: Image.Image
    mask: Image.Image
    description: str
    source: str
    stands_in_for: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[Image.Image]:
        return iter((self.image, self.mask))

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), the same for image and mask."""
        return self.image.size

    def resized(self, size: tuple[int, int]) -> Sample:
        """Both resized to ``size`` (width, height): the image with Lanczos, the mask with NEAREST (stays 0/255)."""
        return self._replace(
            self.image.resize(size, Image.Resampling.LANCZOS), self.mask.resize(size, Image.Resampling.NEAREST)
        )

    def fitted(self, size: tuple[int, int], centering: tuple[float, float] = (0.5, 0.5)) -> Sample:
        """Both cropped to the aspect ratio of ``size`` and then resized (`PIL.ImageOps.fit`): no distortion."""
        return self._replace(
            ImageOps.fit(self.image, size, Image.Resampling.LANCZOS, centering=centering),
            ImageOps.fit(self.mask, size, Image.Resampling.NEAREST, centering=centering),
        )

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The image as a uint8 (H, W, 3) array and the hole as a boolean (H, W) array, for numeric checks."""
        return np.array(self.image), np.array(self.mask) > 127

    def _replace(self, image: Image.Image, mask: Image.Image) -> Sample:
        return Sample(self.name, image, mask, self.description, self.source, self.stands_in_for)

    def _repr_png_(self) -> bytes:
        """Image and mask side by side, so a notebook cell that ends in ``samples.load(...)`` shows both."""
        import io

        from diffusers.utils import make_image_grid

        buffer = io.BytesIO()
        make_image_grid([self.image, self.mask.convert("RGB")], rows=1, cols=2).save(buffer, format="PNG")
        return buffer.getvalue()


# --------------------------------------------------------------------------------------------------------
# The scenes. Coordinates are in the photo's own pixels, placed by looking at each photo; each photo is
# then centre-cropped to a multiple of 8 on both sides (chelsea 451x300 -> 448x296, rocket 640x427 ->
# 640x424), so every default size is one a diffusion pipeline takes without rounding.
# --------------------------------------------------------------------------------------------------------

Shape = tuple[Literal["ellipse", "rectangle", "polygon"], tuple[int, ...]]


@dataclass(frozen=True)
class _Scene:
    photo: str  # a function of skimage.data that needs no download
    description: str  # what the mask covers
    shapes: tuple[Shape, ...]  # drawn white, in order


_SCENES: dict[str, _Scene] = {
    "astronaut": _Scene("astronaut", "the astronaut's head: the central object", (("ellipse", (146, 8, 308, 200)),)),
    "astronaut-road": _Scene(
        "astronaut",
        "a strip from the bottom edge up the middle of the suit, shaped like a road into the distance",
        (("polygon", (200, 512, 300, 512, 262, 300, 238, 300)),),
    ),
    "astronaut-shuttle": _Scene(
        "astronaut",
        "the space shuttle model behind her shoulder",
        (("polygon", (392, 0, 440, 0, 462, 60, 466, 270, 440, 285, 362, 285, 352, 230, 372, 120, 380, 60)),),
    ),
    "astronaut-helmet": _Scene("astronaut", "the helmet at the bottom right", (("ellipse", (276, 340, 512, 560)),)),
    "astronaut-wall": _Scene(
        "astronaut",
        "a patch of the smooth studio backdrop (a region a fill can truly recover)",
        (("rectangle", (308, 24, 367, 135)),),
    ),
    "chelsea": _Scene("chelsea", "the cat's face: eyes and nose", (("ellipse", (130, 50, 370, 296)),)),
    "coffee": _Scene(
        "coffee", "the cup and its handle", (("ellipse", (168, 14, 414, 304)), ("ellipse", (190, 225, 262, 310)))
    ),
    "rocket": _Scene(
        "rocket",
        "the rocket standing on its launch pad",
        (("polygon", (310, 128, 321, 124, 333, 128, 340, 150, 340, 410, 302, 410, 302, 150)),),
    ),
}


def names() -> list[str]:
    """The names `load` accepts."""
    return list(_SCENES)


def load(name: str, size: tuple[int, int] | int | None = None) -> Sample:
    """The named sample, new PIL images on every call (so editing one never changes the next).

    ``size`` is (width, height) or one side of a square; image and mask are resized together, the mask
    with NEAREST so that it stays 0/255. Default sizes are multiples of 8.
    """
    if name not in _SCENES:
        raise UnknownSampleError(f"there is no sample {name!r}; the samples are: {', '.join(_SCENES)}.")
    rgb, hole = _render(name)
    scene = _SCENES[name]
    sample = Sample(
        name=name,
        image=Image.fromarray(rgb, "RGB"),
        mask=Image.fromarray(hole, "L"),
        description=scene.description,
        source=f"skimage.data.{scene.photo}()",
        stands_in_for=tuple(url.rsplit("/", 1)[-1] for url, s in STANDINS.items() if s.sample == name),
    )
    if size is not None:
        sample = sample.resized((size, size) if isinstance(size, int) else (int(size[0]), int(size[1])))
    return sample


@cache
def _render(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Photo and mask of a scene as read-only arrays (cached: PIL images are mutable, arrays made read-only)."""
    import skimage.data

    scene = _SCENES[name]
    image = Image.fromarray(getattr(skimage.data, scene.photo)()).convert("RGB")
    mask = Image.new("L", image.size, 0)
    draw = ImageDraw.Draw(mask)
    for kind, coordinates in scene.shapes:
        getattr(draw, kind)(coordinates, fill=255)
    # Centre-crop to multiples of 8, after drawing, so the coordinates above stay the photo's own.
    width, height = image.size
    left, top = (width % 8) // 2, (height % 8) // 2
    box = (left, top, left + width // 8 * 8, top + height // 8 * 8)
    rgb, hole = np.array(image.crop(box)), np.array(mask.crop(box))
    rgb.flags.writeable = hole.flags.writeable = False
    return rgb, hole


# --------------------------------------------------------------------------------------------------------
# Stand-ins for the images the guide loads from URLs: same pixel size, same role.
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StandIn:
    """How one image the guide loads is made offline: from which sample, as image or mask, at what size."""

    sample: str
    role: Literal["image", "mask"]
    size: tuple[int, int]  # (width, height) of the guide's own image
    use: str  # what the guide does with it


_DOCS = "https://huggingface.co/datasets/huggingface/documentation-images/resolve/main/diffusers/"
_TESTING = "https://huggingface.co/datasets/YiYiXu/testing-images/resolve/main/"
_LDM = "https://raw.githubusercontent.com/CompVis/latent-diffusion/main/data/inpainting_examples/"

STANDINS: dict[str, StandIn] = {
    _DOCS + "inpaint.png": StandIn("astronaut", "image", (512, 512), "the base image of most examples"),
    _DOCS + "inpaint_mask.png": StandIn("astronaut", "mask", (512, 512), "mask over the central object"),
    _DOCS + "road-mask.png": StandIn(
        "astronaut-road", "mask", (512, 512), "mask over the road of inpaint.png (the prompt is 'road')"
    ),
    # The seashore pair's size is from memory, not measured: correct it here if the real one differs.
    _TESTING + "seashore.png": StandIn("rocket", "image", (1024, 1024), "large base image for padding_mask_crop"),
    _TESTING + "seashore_mask.png": StandIn(
        "rocket", "mask", (1024, 1024), "small mask in a large image: mask blur and padding_mask_crop"
    ),
    _LDM + "overture-creations-5sI6fQgYIuo.png": StandIn(
        "chelsea", "image", (512, 512), "the cat on a bench, base image for apply_overlay"
    ),
    _LDM + "overture-creations-5sI6fQgYIuo_mask.png": StandIn(
        "chelsea", "mask", (512, 512), "mask over the cat, for apply_overlay"
    ),
    _DOCS + "inpaint_text-chain-mask.png": StandIn(
        "rocket", "mask", (512, 512), "mask for the text-to-image output (a tall region for a waterfall)"
    ),
}


def guide_image(url: str) -> Image.Image:
    """The offline stand-in for an image the guide loads, by URL or file name (``"inpaint.png"``).

    RGB like ``diffusers.utils.load_image`` returns, masks included (white = repaint), at the guide
    image's own pixel size: the sample is cropped to that aspect ratio, then resized.
    """
    standin = _standin(url)
    if standin is None:
        raise UnknownSampleError(
            f"there is no stand-in for {url!r}; the guide's images are: "
            f"{', '.join(u.rsplit('/', 1)[-1] for u in STANDINS)}."
        )
    sample = load(standin.sample).fitted(standin.size)
    return sample.image if standin.role == "image" else sample.mask.convert("RGB")


def _standin(url: str) -> StandIn | None:
    if url in STANDINS:
        return STANDINS[url]
    by_file = {u.rsplit("/", 1)[-1]: s for u, s in STANDINS.items()}
    return by_file.get(url)


def load_image_or_standin(
    url: str, *, timeout: float = 2.0, reachable: Callable[[str, float], bool] | None = None
) -> Image.Image:
    """``diffusers.utils.load_image(url)``, or the URL's stand-in when the URL is out of reach.

    The network is not tried at all in twin mode or with ``HF_HUB_OFFLINE`` set; otherwise a connection
    to the host (or to the configured proxy) must open within ``timeout`` seconds. Each fallback says so
    once, naming the URL and its stand-in. URLs without a stand-in, and local paths, go straight to
    ``load_image``. ``reachable(url, timeout)`` replaces the connection probe (tests use it).
    """
    from diffusers.utils import load_image

    standin = STANDINS.get(url)
    if standin is None:
        return load_image(url)
    if _offline():
        why = "offline mode"
    elif not (reachable or _reachable)(url, timeout):
        why = f"no connection within {timeout:g} s"
    else:
        try:
            return load_image(url)
        except OSError as error:  # requests' errors and PIL's UnidentifiedImageError are OSErrors
            why = f"{type(error).__name__} while fetching"
    file = url.rsplit("/", 1)[-1]
    notice(
        f"{url} not fetched ({why}); using samples.guide_image({file!r}), "
        f"{standin.size[0]}x{standin.size[1]} from samples.load({standin.sample!r}) ({standin.role})."
    )
    return guide_image(url)


def _offline() -> bool:
    from nbinpaint.twins import twin_mode

    return twin_mode() or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _reachable(url: str, timeout: float) -> bool:
    """Whether a TCP connection to the URL's host, or to the proxy that would carry it, opens in time.

    The probe runs in a daemon thread so that a slow DNS lookup cannot stretch the wait past ``timeout``.
    """
    parts = urlparse(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        parts = urlparse(proxy if "://" in proxy else f"http://{proxy}")
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    if not host:
        return False
    opened: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                opened.append(True)
        except OSError:
            opened.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(opened and opened[0])
