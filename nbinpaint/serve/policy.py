"""What a workshop server agrees to run: allow-listed checkpoints, within size limits its admin sets.

Checked on the gateway after `InpaintRequest.validated` (the same validation as a local run, so a mistake
gets the same message), before the request is queued. A participant can name only allow-listed repo ids
(loaded with safetensors only, never with remote code: the `PipelineManager` defaults), cannot pass
pipeline arguments that would bypass these limits or the run machinery (callbacks, generators), and cannot
make the server open a file path: images arrive as pixels.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from nbinpaint.requests import CALL_PARAMETERS, InpaintRequest
from nbinpaint.serve.errors import ModelNotAllowedError, ServerLimitError

__all__ = ["RESERVED_EXTRAS", "AllowList", "Limits"]

RESERVED_EXTRAS = frozenset(CALL_PARAMETERS.values()) | {
    "generator",
    "return_dict",
    "callback",
    "callback_steps",
    "callback_on_step_end",
    "callback_on_step_end_tensor_inputs",
}
"""Pipeline arguments an ``extra={...}`` may not set on a server: each has its own request field (which the
limits check), or belongs to the run machinery (seeding, progress, cancel)."""


@dataclass(frozen=True)
class Limits:
    """Per-request limits, and the per-participant queue limit.

    Parameters
    ----------
    max_pixels:
        Largest input image and largest run size, in pixels (width x height).
    max_steps:
        Most denoising steps (also for a pipeline's own ``*_num_inference_steps``, such as Kandinsky's prior).
    max_images:
        Most images per request (``num_images``).
    max_outstanding:
        Requests one participant may have queued or running at once.
    max_body_bytes:
        Largest request body.
    """

    max_pixels: int = 1024 * 1024
    max_steps: int = 100
    max_images: int = 4
    max_outstanding: int = 4
    max_body_bytes: int = 64 * 2**20

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def check(self, request: InpaintRequest) -> None:
        """Refuse a validated request above a limit, with a `ServerLimitError` naming the limit and the fix."""
        if request.steps is not None and request.steps > self.max_steps:
            raise _over("steps", request.steps, self.max_steps, f"use steps={self.max_steps} or fewer")
        images = request.num_images or 1
        if images > self.max_images:
            raise _over("num_images", images, self.max_images, "ask for fewer images, or run the request again")
        if request.width is not None and request.height is not None:
            pixels = request.width * request.height
            if pixels > self.max_pixels:
                raise ServerLimitError(
                    f"the run size {request.width}x{request.height} = {pixels} pixels is above this workshop "
                    f"server's limit of {self.max_pixels}: use a smaller image or width/height, e.g. "
                    "image.thumbnail((1024, 1024))."
                )
        for name, value in request.extra.items():
            if name in RESERVED_EXTRAS:
                field = next((f for f, parameter in CALL_PARAMETERS.items() if parameter == name), None)
                fix = f"set {field}= on the request instead" if field else "leave it out: the server sets it"
                raise ServerLimitError(f"extra={{{name!r}: ...}} cannot be sent to a workshop server: {fix}.")
            if name.endswith("num_inference_steps") and isinstance(value, (int, float)) and value > self.max_steps:
                raise _over(f"extra {name!r}", value, self.max_steps, f"use {self.max_steps} or fewer")

    def check_defaults(self, request: InpaintRequest, pipeline: Any) -> None:
        """Refuse a request whose unset steps would take the pipeline's own default above ``max_steps``."""
        parameters = inspect.signature(pipeline.__call__).parameters
        for name, parameter in parameters.items():
            if not name.endswith("num_inference_steps") or parameter.default is inspect.Parameter.empty:
                continue
            unset = request.steps is None if name == "num_inference_steps" else name not in request.extra
            if unset and isinstance(parameter.default, int) and parameter.default > self.max_steps:
                what = "steps" if name == "num_inference_steps" else f"extra={{{name!r}: ...}}"
                raise ServerLimitError(
                    f"{type(pipeline).__name__} runs {parameter.default} {name} by default, above this workshop "
                    f"server's limit of {self.max_steps}: set {what} to {self.max_steps} or fewer."
                )


def _over(name: str, value: Any, limit: int, fix: str) -> ServerLimitError:
    return ServerLimitError(f"{name}={value} is above this workshop server's limit of {limit}: {fix}.")


class AllowList:
    """The repo ids a server may load (and, unless ``backends=False``, nbinpaint's classical backends)."""

    def __init__(self, repo_ids: Iterable[str], *, backends: bool = True) -> None:
        ids = set(repo_ids)
        if backends:
            from nbinpaint.backends import BACKENDS

            ids |= set(BACKENDS)
        self._ids = frozenset(ids)

    def __contains__(self, repo_id: object) -> bool:
        return repo_id in self._ids

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._ids))

    def __len__(self) -> int:
        return len(self._ids)

    def check_id(self, repo_id: str | None, role: str = "model") -> None:
        """Raise `ModelNotAllowedError` unless ``repo_id`` (a ``role`` of the request) is allowed."""
        if repo_id is None or repo_id in self._ids:
            return
        raise ModelNotAllowedError(
            f"{role} {repo_id!r} is not on this workshop server's allow-list, so the server will not load it. "
            f"Pick one of: {', '.join(self)}; or ask your instructor to add it (nbinpaint serve --allow {repo_id})."
        )

    def check(self, request: InpaintRequest) -> None:
        """Refuse a request naming a model or ControlNet outside the list."""
        self.check_id(request.model, "model")
        self.check_id(request.controlnet, "controlnet")
