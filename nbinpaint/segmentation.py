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
from nbinpaint.errors import InvalidRequestError
from nbinpaint.inputs import to_rgb
from nbinpaint.segmenter import DEFAULT_SEGMENTER, Proposal, check_points
from nbinpaint.session import shared_manager

__all__ = ["DEFAULT_SEGMENTER", "propose", "segment", "segment_code"]


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


def segment_code(points: Any, labels: Any = None, *, model: str = DEFAULT_SEGMENTER, image: str = "image.png") -> str:
    """The plain transformers script that gives `segment`'s mask for ``points`` on the picture saved at
    ``image``: what the Segment tool's Show code prints. Every value is written with ``repr``."""
    for name, value in (("model", model), ("image", image)):
        if not isinstance(value, str):
            raise InvalidRequestError(f"{name} must be a string (a repo id, a path), not {type(value).__name__}.")
    size = (2**31, 2**31)  # points are checked for shape and labels here; their range needs the image
    points, labels = check_points(points, labels, size)
    point_list = [[float(x), float(y)] for x, y in points]
    label_list = [int(label) for label in labels]
    return f"""import numpy as np
import torch
from PIL import Image
from transformers import SamModel, SamProcessor

image = Image.open({image!r}).convert("RGB")
points = {point_list!r}  # (x, y) in image pixels
labels = {label_list!r}  # 1 = on the object, 0 = not on it

model = SamModel.from_pretrained({model!r})
processor = SamProcessor.from_pretrained({model!r})
inputs = processor(image, input_points=[[points]], input_labels=[[labels]], return_tensors="pt")
with torch.no_grad():
    outputs = model(**inputs, multimask_output=True)
masks = processor.image_processor.post_process_masks(
    outputs.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"]
)
best = int(outputs.iou_scores[0, 0].argmax())  # the proposal with the highest predicted IoU
mask = Image.fromarray(np.where(masks[0][0, best].numpy(), 255, 0).astype(np.uint8), "L")
mask.save("mask.png")
"""
