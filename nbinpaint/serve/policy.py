"""What a workshop server agrees to run: allow-listed checkpoints, within size limits its admin sets.

Checked on the gateway after `InpaintRequest.validated` (the same validation as a local run, so a mistake
gets the same message), before the request is queued. A participant can name only allow-listed repo ids
(loaded with safetensors only, never with remote code: the `PipelineManager` defaults), cannot pass
pipeline arguments that would bypass these limits or the run machinery (callbacks, generators), and cannot
make the server open a file path: images arrive as pixels.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from nbinpaint.errors import InvalidRequestError
from nbinpaint.requests import CALL_PARAMETERS, InpaintRequest
from nbinpaint.serve.errors import ModelNotAllowedError, ServerLimitError

__all__ = ["RESERVED_EXTRAS", "STEP_PARAMETERS", "AllowList", "Limits", "steps_of"]

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


STEP_PARAMETERS = ("timesteps", "sigmas", "num_inference_steps")
"""What sets how many denoising steps a pipeline runs, strongest first: a ``timesteps`` or ``sigmas`` list
(one step per entry) overrides ``num_inference_steps``. A prefixed family (Kandinsky's ``prior_...``) is a
second loop in the same call."""


@dataclass(frozen=True)
class Limits:
    """Per-request limits, the per-participant queue limit, and the limits of a chain.

    Limits count the work a run does, however it is asked for: the steps of every loop of a pipeline call
    (``steps``, a ``timesteps`` or ``sigmas`` list, ``*_num_inference_steps``; see `steps_of`), and for a
    chain, the sum over its stages.

    Parameters
    ----------
    max_pixels:
        Largest input image and largest run size, in pixels (width x height).
    max_steps:
        Most denoising steps of each loop of a pipeline call: ``steps``, the length of a ``timesteps`` or
        ``sigmas`` list, a pipeline's own ``*_num_inference_steps`` (such as Kandinsky's prior).
    max_images:
        Most images per request (``num_images``).
    max_outstanding:
        Requests one participant may have queued or running at once.
    max_body_bytes:
        Largest request body.
    max_chain_stages:
        Most stages in one chain.
    max_chain_steps:
        Most denoising steps of a whole chain, summed over its stages (pipeline defaults counted where a
        stage leaves steps unset); None: 3 x ``max_steps``. A chain runs one stage per turn of the fair
        queue, so it never holds a replica longer than one stage while others wait.
    """

    max_pixels: int = 1024 * 1024
    max_steps: int = 100
    max_images: int = 4
    max_outstanding: int = 4
    max_body_bytes: int = 64 * 2**20
    max_chain_stages: int = 4
    max_chain_steps: int | None = None

    def __post_init__(self) -> None:
        if self.max_chain_steps is None:
            object.__setattr__(self, "max_chain_steps", 3 * self.max_steps)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def check(self, request: InpaintRequest) -> None:
        """Refuse a validated request above a limit, with a `ServerLimitError` naming the limit and the fix."""
        for name in request.extra:
            if name in RESERVED_EXTRAS:
                field = next((f for f, parameter in CALL_PARAMETERS.items() if parameter == name), None)
                fix = f"set {field}= on the request instead" if field else "leave it out: the server sets it"
                raise ServerLimitError(f"extra={{{name!r}: ...}} cannot be sent to a workshop server: {fix}.")
        for name, steps in steps_of(request).items():
            if steps > self.max_steps:
                raise _over_steps(name, steps, self.max_steps)
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

    def check_defaults(self, request: InpaintRequest, pipeline: Any) -> None:
        """Refuse a request whose unset steps would take the pipeline's own default above ``max_steps``."""
        explicit = steps_of(request)
        for name, steps in steps_of(request, pipeline).items():
            if name not in explicit and steps > self.max_steps:
                what = "steps" if name == "num_inference_steps" else f"extra={{{name!r}: ...}}"
                raise ServerLimitError(
                    f"{type(pipeline).__name__} runs {steps} {name} by default, above this workshop "
                    f"server's limit of {self.max_steps}: set {what} to {self.max_steps} or fewer."
                )

    def check_chain_stages(self, stages: int) -> None:
        """Refuse a chain of more than ``max_chain_stages`` stages."""
        if stages > self.max_chain_stages:
            raise ServerLimitError(
                f"the chain has {stages} stages, above this workshop server's limit of {self.max_chain_stages}: "
                "split it, and continue from its result in a second chain."
            )

    def check_chain(self, requests: Sequence[InpaintRequest], pipelines: Sequence[Any] | None = None) -> None:
        """Refuse a chain of more than ``max_chain_stages`` stages, or more than ``max_chain_steps`` steps in
        all. Without ``pipelines`` only the steps a request sets are counted (the gateway, before queueing);
        with them, the pipelines' defaults too (the replica, before the first stage runs)."""
        self.check_chain_stages(len(requests))
        pipelines = pipelines if pipelines is not None else [None] * len(requests)
        per_stage = [sum(steps_of(r, p).values()) for r, p in zip(requests, pipelines, strict=True)]
        if sum(per_stage) > self.max_chain_steps:
            raise ServerLimitError(
                f"the chain runs {' + '.join(map(str, per_stage))} = {sum(per_stage)} denoising steps, above this "
                f"workshop server's limit of {self.max_chain_steps} for a whole chain: set fewer steps per stage."
            )


def steps_of(request: InpaintRequest, pipeline: Any = None) -> dict[str, int]:
    """The denoising steps a run of ``request`` does, per loop of the pipeline call: ``{parameter: steps}``.

    Each loop is a family of `STEP_PARAMETERS` with one prefix (``""``, Kandinsky's ``"prior_"``): a
    ``timesteps`` or ``sigmas`` list counts its entries, else ``num_inference_steps`` (``steps`` on the
    request) counts. Given ``pipeline``, a loop left unset counts its ``__call__`` default; without it,
    only what the request sets. ``strength`` is not counted (it only shortens a loop). Raises
    `InvalidRequestError` for a step setting that is not a number or a list.
    """
    values: dict[str, Any] = {name: value for name, value in request.extra.items() if _step_parameter(name)}
    if request.steps is not None:
        values["num_inference_steps"] = request.steps
    defaults: dict[str, int] = {}
    if pipeline is not None:
        for name, parameter in inspect.signature(pipeline.__call__).parameters.items():
            if name.endswith("num_inference_steps") and isinstance(parameter.default, int):
                defaults[name] = parameter.default
    prefixes = {_prefix(name) for name in (*values, *defaults)}
    counts: dict[str, int] = {}
    for prefix in sorted(prefixes):
        for suffix in STEP_PARAMETERS:
            name = prefix + suffix
            if values.get(name) is not None:
                counts[name] = _count_steps(name, values[name])
                break
        else:
            if prefix + "num_inference_steps" in defaults:
                counts[prefix + "num_inference_steps"] = defaults[prefix + "num_inference_steps"]
    return counts


def _step_parameter(name: str) -> bool:
    return any(name == suffix or name.endswith("_" + suffix) for suffix in STEP_PARAMETERS)


def _prefix(name: str) -> str:
    return next(name[: -len(suffix)] for suffix in STEP_PARAMETERS if name.endswith(suffix))


def _count_steps(name: str, value: Any) -> int:
    if name.endswith("num_inference_steps"):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise InvalidRequestError(f"extra={{{name!r}: {value!r}}}: {name} must be a whole number, e.g. 25.")
        return int(value)
    if isinstance(value, (list, tuple)):
        return len(value)
    if hasattr(value, "shape") and len(value.shape) == 1:  # a numpy array or tensor of timesteps
        return int(value.shape[0])
    raise InvalidRequestError(
        f"extra={{{name!r}: ...}} must be a list of {name.rsplit('_', 1)[-1]} (one per step), not a "
        f"{type(value).__name__}."
    )


def _over_steps(name: str, steps: int, limit: int) -> ServerLimitError:
    if name == "num_inference_steps":
        return _over("steps", steps, limit, f"use steps={limit} or fewer")
    if name.endswith("num_inference_steps"):
        return _over(f"extra {name!r}", steps, limit, f"use {limit} or fewer")
    return ServerLimitError(
        f"extra {name!r} has {steps} entries, so the pipeline would run {steps} denoising steps, above this "
        f"workshop server's limit of {limit}: pass {limit} or fewer."
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
        """Refuse a request naming a model, ControlNet or LoRA outside the list."""
        self.check_id(request.model, "model")
        self.check_id(request.controlnet, "controlnet")
        self.check_id(request.lora, "lora")
