"""Click-to-segment: a few points on an object in, a mask of it out, from Segment Anything.

The model is loaded through the kernel's manager (`Manager.segmenter`), so it shares the cache, the memory
budget, the device and dtype choice and the offload with the pipelines; the canvas's Segment tool
(`nbinpaint.widgets.segment_tool`) calls the same functions. Twin mode twins ``facebook/sam-vit-base`` like
the pipelines: the code path is the real one, the masks are noise.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from nbinpaint.contract import Manager
from nbinpaint.inputs import to_rgb
from nbinpaint.segmenter import DEFAULT_SEGMENTER, Proposal, check_points
from nbinpaint.session import shared_manager

__all__ = ["DEFAULT_SEGMENTER", "propose", "segment"]


def propose(
    image: Any,
    points: Any,
    labels: Any = None,
    *,
    model: str = DEFAULT_SEGMENTER,
    manager: Manager | None = None,
) -> Proposal:
    """SAM's best proposal for ``points`` on ``image``, with its predicted IoU score (see `segment`)."""
    picture = to_rgb(image)
    points, labels = check_points(points, labels, picture.size)  # refused before anything loads
    segmenter = (manager if manager is not None else shared_manager()).segmenter(model)
    return segmenter.predict(picture, points, labels)


def segment(
    image: Any,
    points: Any,
    labels: Any = None,
    *,
    model: str = DEFAULT_SEGMENTER,
    manager: Manager | None = None,
) -> Image.Image:
    """The mask of the object under ``points``: a PIL "L" image the size of ``image``, 255 on the object.

    Parameters:
        image: a PIL image, array or path (anything `nbinpaint.inputs.to_rgb` reads).
        points: one ``(x, y)`` or a list of them, in image pixels.
        labels: one per point, 1 = on the object (the default), 0 = not on it.
        model: a Segment Anything checkpoint (transformers ``SamModel``).
        manager: the manager that loads it (default: the kernel's shared one).

    Of SAM's three multimask outputs the one with the highest predicted IoU is returned, post-processed to
    the image's size. Use it as an inpainting mask, or merge it into one with `numpy.maximum`.
    """
    return propose(image, points, labels, model=model, manager=manager).image()
