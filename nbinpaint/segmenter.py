"""Segment Anything as the manager serves it: a loaded ``SamModel`` with its ``SamProcessor``, and click points.

`Segmenter` is the model+processor pair `PipelineManager.segmenter` loads, caches and places like a pipeline
(same cache, memory budget, device, dtype and offload). `Segmenter.predict` turns points in image pixels into
the best of SAM's three multimask proposals at the image's own size, the way transformers' SAM guide does:

1. ``processor(image, input_points=..., input_labels=...)`` resizes the longest side to 1024, pads to
   1024x1024 and maps the points into that frame.
2. The vision encoder runs once per image; its embeddings are kept, so further clicks on the same image
   run only the prompt encoder and the mask decoder.
3. The decoder gives three masks (whole, part, sub-part) with predicted IoU scores; the best score wins.
4. ``post_process_masks`` upsamples its 256x256 logits, crops the padding and resizes to the original size.

Points are ``(x, y)`` in image pixels (``(0, 0)`` the top-left corner, as `nbinpaint.masks` counts them);
label 1 marks a point inside the object, 0 one outside it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from nbinpaint.errors import InvalidRequestError, ModelLoadError, quote

__all__ = ["DEFAULT_SEGMENTER", "SEGMENT_TASK", "Proposal", "Segmenter", "check_points", "load_segmenter"]

DEFAULT_SEGMENTER = "facebook/sam-vit-base"
"""The Segment Anything checkpoint used unless another is named (twinned, so it also runs offline)."""
SEGMENT_TASK = "segment"
"""The task name a segmenter is listed under in the manager's status, beside a pipeline's ``inpaint``."""

INSIDE, OUTSIDE = 1, 0
"""SAM's point labels: 1 = the point is on the object, 0 = it is background."""


def check_points(points: Any, labels: Any, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Points and labels as SAM takes them, checked where they enter: ``((n, 2) float, (n,) int)``.

    ``points`` is one ``(x, y)`` or a sequence of them, in pixels of an image of ``size`` (width, height);
    ``labels`` one 0/1 per point, all 1 (inside) when None. Anything else is an `InvalidRequestError` that
    says what a point must be.
    """
    width, height = size
    how = f"points are (x, y) in image pixels, 0 <= x < {width} and 0 <= y < {height} for this {width}x{height} image"
    try:
        array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InvalidRequestError(f"points={quote(points)} are not numbers: {how}.") from error
    if array.ndim == 1 and array.shape == (2,):
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 2 or len(array) == 0:
        raise InvalidRequestError(f"points of shape {array.shape} cannot be read as a list of (x, y): {how}.")
    for index, (x, y) in enumerate(array):
        if not (math.isfinite(x) and math.isfinite(y) and 0 <= x < width and 0 <= y < height):
            raise InvalidRequestError(f"point {index} at ({x:g}, {y:g}) lies outside the image: {how}.")
    if labels is None:
        return array, np.full(len(array), INSIDE, np.int64)
    marks = np.atleast_1d(np.asarray(labels))
    if marks.shape != (len(array),):
        raise InvalidRequestError(
            f"{marks.size} label(s) for {len(array)} point(s): give one label per point (1 = inside, 0 = outside)."
        )
    if not np.isin(marks, (INSIDE, OUTSIDE)).all() or marks.dtype.kind not in "iub":
        raise InvalidRequestError(f"labels={quote(labels)}: each label is 1 (inside the object) or 0 (outside).")
    return array, marks.astype(np.int64)


@dataclass(frozen=True)
class Proposal:
    """SAM's best mask for some points: ``mask`` (bool, image height x width), its predicted IoU ``score``,
    and the scores of all its multimask outputs (``chosen`` indexes them)."""

    mask: np.ndarray
    score: float
    scores: tuple[float, ...]
    chosen: int

    def image(self) -> Image.Image:
        """The mask as a PIL "L" image: 255 inside the proposed object, 0 outside."""
        return Image.fromarray(np.where(self.mask, 255, 0).astype(np.uint8), "L")


class Segmenter:
    """A loaded Segment Anything model and its processor, placed on a device as the manager placed it.

    Behaves as a pipeline does towards the manager: ``components`` (its weights, for the memory budget),
    ``to``, the two CPU offload methods and ``remove_all_hooks``. ``hold(self)`` is entered around each
    prediction; the manager that loaded it passes its ``running``, so a prediction pins the checkpoint,
    takes its lock and has it placed, as a pipeline run does.
    """

    def __init__(
        self,
        repo_id: str,
        model: Any,
        processor: Any,
        *,
        hold: Callable[[Segmenter], AbstractContextManager[Any]] | None = None,
    ) -> None:
        self.repo_id = repo_id
        self.model = model
        self.processor = processor
        self._hold = hold
        self._device = str(model.device)
        self._offload = "none"
        self._embedded: tuple[bytes, Any] | None = None  # (image digest, its embeddings): step 2's cache

    def __repr__(self) -> str:
        return f"Segmenter({self.repo_id!r}, {type(self.model).__name__} on {self._device}, {self.model.dtype})"

    # -- what the manager uses, as for a pipeline ------------------------------------------------------------

    @property
    def components(self) -> dict[str, Any]:
        """The weights, by name (what `nbinpaint.pipeline_manager.storages_of` counts)."""
        return {"model": self.model}

    @property
    def device(self) -> str:
        """Where predictions compute (with offload, where the weights go for a call)."""
        return self._device

    @property
    def dtype(self) -> Any:
        return self.model.dtype

    def to(self, device: Any) -> Segmenter:
        self.model.to(device)
        self._device = str(device)
        self._embedded = None
        return self

    def enable_model_cpu_offload(self, device: Any = "cuda") -> None:
        """Keep the weights in CPU memory and move them to ``device`` for each prediction only."""
        self.model.to("cpu")
        self._device, self._offload = str(device), "model"

    def enable_sequential_cpu_offload(self, device: Any = "cuda") -> None:
        """As `enable_model_cpu_offload`: the whole model moves for each prediction.

        accelerate's per-submodule hooks (``cpu_offload``) fail on SamModel ("Cannot copy out of meta
        tensor", accelerate 1.16), and SAM is small next to a diffusion pipeline: moving it whole is the
        saving that remains.
        """
        self.enable_model_cpu_offload(device)
        self._offload = "sequential"

    def remove_all_hooks(self) -> None:
        """Undo either offload: the weights stay in CPU memory until `to` places them."""
        self._offload = "none"

    # -- predicting ------------------------------------------------------------------------------------------

    def predict(self, image: Image.Image, points: Any, labels: Any = None) -> Proposal:
        """SAM's best proposal for ``points`` (image pixels) with ``labels`` (1 inside, 0 outside) on ``image``."""
        import torch

        image = image.convert("RGB")
        points, labels = check_points(points, labels, image.size)
        with self._hold(self) if self._hold is not None else nullcontext(), torch.inference_mode():
            with self._placed():
                inputs = self.processor(
                    images=image,
                    input_points=[[points.tolist()]],
                    input_labels=[[labels.tolist()]],
                    return_tensors="pt",
                )
                embeddings = self._embeddings(image, inputs["pixel_values"])
                outputs = self.model(
                    image_embeddings=embeddings,
                    input_points=inputs["input_points"].to(self._device, self.model.dtype),
                    input_labels=inputs["input_labels"].to(self._device),
                    multimask_output=True,
                )
            logits = outputs.pred_masks.float().cpu()  # (1 image, 1 prompt, 3 masks, 256, 256)
            masks = self.processor.image_processor.post_process_masks(
                logits, inputs["original_sizes"], inputs["reshaped_input_sizes"]
            )[0][0]
            scores = outputs.iou_scores.float().cpu()[0, 0]
        chosen = int(scores.argmax())
        return Proposal(
            mask=masks[chosen].numpy().astype(bool),
            score=float(scores[chosen]),
            scores=tuple(float(s) for s in scores),
            chosen=chosen,
        )

    @contextmanager
    def _placed(self) -> Iterator[None]:
        """With model offload, the weights on the device for one prediction, back in CPU memory after."""
        if self._offload == "none":
            yield
            return
        self.model.to(self._device)
        try:
            yield
        finally:
            self.model.to("cpu")

    def _embeddings(self, image: Image.Image, pixel_values: Any) -> Any:
        """The vision encoder's output for ``image``: computed once per image (step 2), then reused."""
        digest = hashlib.sha1(image.tobytes(), usedforsecurity=False)
        digest.update(repr((image.size, self._device, str(self.model.dtype))).encode())
        key = digest.digest()
        if self._embedded is None or self._embedded[0] != key:
            pixels = pixel_values.to(self._device, self.model.dtype)
            self._embedded = (key, self.model.get_image_embeddings(pixels))
        return self._embedded[1]


def load_segmenter(
    repo_id: str,
    *,
    dtype: Any,
    allow_pickle: bool,
    hub_kwargs: dict[str, Any],
    hold: Callable[[Segmenter], AbstractContextManager[Any]] | None = None,
) -> Segmenter:
    """Load ``repo_id``'s ``SamModel`` and ``SamProcessor`` (safetensors only unless ``allow_pickle``).

    A checkpoint that is not Segment Anything (a diffusers pipeline, another transformers model) is a
    `ModelLoadError` naming one that is; other failures are raised as they come, for the manager to explain.
    """
    from transformers import AutoConfig, SamModel, SamProcessor

    _refuse_pipeline_repo(repo_id, hub_kwargs)
    config = AutoConfig.from_pretrained(repo_id, **hub_kwargs)
    if getattr(config, "model_type", None) != "sam":
        raise ModelLoadError(
            f"{quote(repo_id)} is a {quote(getattr(config, 'model_type', None))} model, not Segment Anything: use a "
            f"SamModel checkpoint such as {DEFAULT_SEGMENTER!r} (or facebook/sam-vit-large, facebook/sam-vit-huge)."
        )
    model = SamModel.from_pretrained(repo_id, dtype=dtype, use_safetensors=None if allow_pickle else True, **hub_kwargs)
    processor = SamProcessor.from_pretrained(repo_id, **hub_kwargs)
    return Segmenter(repo_id, model.eval(), processor, hold=hold)


def _refuse_pipeline_repo(repo_id: str, hub_kwargs: dict[str, Any]) -> None:
    """A diffusers pipeline repo has no config.json at its root, and transformers' message for that (a missing
    file, "offline mode") would read like a cache miss: say what it is instead."""
    from huggingface_hub import try_to_load_from_cache

    cache_dir = hub_kwargs.get("cache_dir")
    index = try_to_load_from_cache(repo_id, "model_index.json", cache_dir=cache_dir)
    config = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir)
    if isinstance(index, str) and not isinstance(config, str):
        raise ModelLoadError(
            f"{quote(repo_id)} is a diffusers pipeline, not a Segment Anything model: segment with a SamModel "
            f"checkpoint such as {DEFAULT_SEGMENTER!r}, and inpaint with {quote(repo_id)}."
        )
