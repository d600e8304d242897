"""The wire format between a participant's kernel and the workshop server: JSON, with lossless pixels.

Requests and results travel as JSON objects. Values JSON cannot hold are wrapped in a tagged object:
PIL images lossless, so the same request and seed give the same pixels remotely as locally (as PNG, or as
raw pixels where the network is local: `IMAGE_FORMATS`), tensors and numpy arrays as safetensors (plain
data: decoding one can never run code). Progress travels
back as NDJSON, one event per line (`EVENTS`). Errors travel by the name of their class, and the client
raises the same class from `ERROR_TYPES`, an explicit table: a name outside it becomes a `ServerError`, never
a class looked up by name.

Nothing here imports Ray: the client (`nbinpaint.remote`) and the server share this module.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image

from nbinpaint import errors
from nbinpaint.inputs import to_mask
from nbinpaint.requests import InpaintRequest, InpaintResult, as_rgb
from nbinpaint.serve import errors as serve_errors

__all__ = [
    "API",
    "CLIENT_HEADER",
    "ERROR_TYPES",
    "EVENTS",
    "IMAGE_FORMATS",
    "NOT_PIXELS",
    "PROTOCOL_VERSION",
    "SESSION_HEADER",
    "decode",
    "encode",
    "error_from_wire",
    "error_to_wire",
    "holds_text",
    "image_parameter",
    "read_event",
    "refuse_not_pixels",
    "request_from_wire",
    "request_to_wire",
    "result_from_wire",
    "result_to_wire",
    "write_event",
]

PROTOCOL_VERSION = 1
API = "/v1"
"""Every endpoint lives under this path (after the server's route prefix)."""
CLIENT_HEADER = "X-Nbinpaint-Client"
"""Sent by older clients to name themselves; the server ignores it (a name a participant can choose would let
them rotate it past the limits and the fair queue: see `nbinpaint.serve.auth`)."""
SESSION_HEADER = "X-Nbinpaint-Session"
"""The session the server issued to a kernel on its shared token (``POST /v1/session``), sent on every call."""

EVENTS = ("accepted", "queue", "started", "step", "preview", "heartbeat", "result", "cancelled", "error")
"""What a generate stream says, in order: accepted (job id), queue (position: how many requests start before
it; repeated as a heartbeat while it waits), started (replica), step (step, total), preview (step, total,
image), heartbeat (while a replica is silent, e.g. loading a model), then one of result, cancelled or error."""

IMAGE_FORMATS = ("png", "raw")
"""How images travel: ``png`` (half the bytes of a photo, 20-30 ms to encode at 512 px) or ``raw`` (the pixels
as they are: about 1 ms, for a loopback or local network where bytes are cheap and encoding is not)."""

_TAG = "__nbinpaint__"
_PNG_MODES = {"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"}
_RAW_BANDS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}  # modes that travel raw: one byte per band, no palette

ERROR_TYPES: dict[str, type[Exception]] = {
    cls.__name__: cls
    for cls in (
        errors.NbinpaintError,
        errors.InvalidRequestError,
        errors.UnsupportedParameterError,
        errors.ModelLoadError,
        errors.GenerationCancelled,
        serve_errors.ServerError,
        serve_errors.AuthenticationError,
        serve_errors.ModelNotAllowedError,
        serve_errors.ServerLimitError,
        serve_errors.QueueFullError,
        serve_errors.ReplicaDiedError,
        serve_errors.ServerUnavailableError,
    )
}
"""The exceptions that cross the wire as themselves: a participant's kernel raises the same type and text."""


# --------------------------------------------------------------------------------------------------------
# Values: JSON as is, pixels as PNG, tensors and arrays as safetensors.
# --------------------------------------------------------------------------------------------------------


def encode(value: Any, *, where: str = "value", images: str = "png") -> Any:
    """``value`` as JSON-able data; images (in the ``images`` format of `IMAGE_FORMATS`), tensors and arrays
    wrapped in a tagged object.

    Raises `InvalidRequestError` naming ``where`` for values that cannot travel (callables, generators...).
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Image.Image):
        if images == "raw" and value.mode in _RAW_BANDS:
            return {_TAG: "raw", "mode": value.mode, "size": list(value.size), "data": _b64(value.tobytes())}
        image = value if value.mode in _PNG_MODES else value.convert("RGB")
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=1)  # lossless at any level; 1 is the fastest
        return {_TAG: "png", "data": _b64(buffer.getvalue())}
    if isinstance(value, np.ndarray):
        from safetensors.numpy import save

        return {_TAG: "array", "data": _b64(save({"value": np.ascontiguousarray(value)}))}
    if _is_tensor(value):
        from safetensors.torch import save

        return {_TAG: "tensor", "data": _b64(save({"value": value.detach().cpu().contiguous()}))}
    if isinstance(value, Mapping):
        return {str(key): encode(item, where=f"{where}[{key!r}]", images=images) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(item, where=f"{where}[{index}]", images=images) for index, item in enumerate(value)]
    raise errors.InvalidRequestError(
        f"{where} is a {type(value).__name__}, which cannot be sent to the workshop server: use numbers, "
        "strings, PIL images, numpy arrays or tensors."
    )


def decode(value: Any, *, max_pixels: int | None = None, where: str = "value") -> Any:
    """The inverse of `encode`; images larger than ``max_pixels`` are refused before their pixels are read."""
    if isinstance(value, list):
        return [decode(item, max_pixels=max_pixels, where=where) for item in value]
    if not isinstance(value, dict):
        return value
    kind = value.get(_TAG)
    if kind is None:
        return {key: decode(item, max_pixels=max_pixels, where=f"{where}[{key!r}]") for key, item in value.items()}
    try:
        data = base64.b64decode(value["data"], validate=True)
    except (KeyError, TypeError, ValueError) as error:
        raise errors.InvalidRequestError(f"{where} is not valid {kind} data ({error}).") from error
    if kind == "png":
        return _decode_png(data, max_pixels, where)
    if kind == "raw":
        return _decode_raw(value, data, max_pixels, where)
    if kind == "array":
        from safetensors.numpy import load

        return _load_safetensors(load, data, where)
    if kind == "tensor":
        from safetensors.torch import load

        return _load_safetensors(load, data, where)
    raise errors.InvalidRequestError(f"{where} has an unknown encoding {kind!r}: update nbinpaint on both sides.")


def _decode_png(data: bytes, max_pixels: int | None, where: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data), formats=["PNG"])
    except (OSError, ValueError) as error:
        raise errors.InvalidRequestError(f"{where} is not a readable PNG image ({error}).") from error
    _check_pixels(*image.size, max_pixels, where)
    image.load()
    return image


def _decode_raw(value: Mapping[str, Any], data: bytes, max_pixels: int | None, where: str) -> Image.Image:
    mode, size = value.get("mode"), value.get("size")
    if mode not in _RAW_BANDS or not (
        isinstance(size, list) and len(size) == 2 and all(isinstance(n, int) and n > 0 for n in size)
    ):
        raise errors.InvalidRequestError(
            f"{where} is not valid raw image data (mode {mode!r}, size {size!r}): send a PIL image in "
            f"one of the modes {', '.join(_RAW_BANDS)}."
        )
    width, height = size
    _check_pixels(width, height, max_pixels, where)
    if len(data) != width * height * _RAW_BANDS[mode]:
        raise errors.InvalidRequestError(
            f"{where} holds {len(data)} bytes, not the {width * height * _RAW_BANDS[mode]} of a {width}x{height} "
            f"{mode} image: it was cut short on the way; send it again."
        )
    return Image.frombytes(mode, (width, height), data)


def _check_pixels(width: int, height: int, max_pixels: int | None, where: str) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise serve_errors.ServerLimitError(
            f"{where} is {width}x{height} = {width * height} pixels, above this server's limit of {max_pixels}: "
            f"resize it first, e.g. image.thumbnail((1024, 1024))."
        )


def _load_safetensors(load: Any, data: bytes, where: str) -> Any:
    try:
        return load(data)["value"]
    except Exception as error:  # safetensors raises its own error types for malformed input
        raise errors.InvalidRequestError(f"{where} is not valid safetensors data ({error}).") from error


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _is_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")  # a tensor can only exist once torch is imported
    return torch is not None and isinstance(value, torch.Tensor)


# --------------------------------------------------------------------------------------------------------
# Requests and results.
# --------------------------------------------------------------------------------------------------------

_INPUTS = ("image", "mask", "control_image")


def request_to_wire(request: InpaintRequest, *, images: str = "png") -> dict[str, Any]:
    """Every field of ``request``, image and mask normalised as `InpaintRequest.validated` does it.

    Normalising here (EXIF rotation, RGB, a mask of 0..255 levels) makes the PNG carry exactly the pixels a local run
    would use, and reads file paths in the kernel, where they exist: the server never opens a path it is sent.
    """
    fields = {f.name: getattr(request, f.name) for f in dataclasses.fields(request)}
    if fields["image"] is not None:
        fields["image"] = as_rgb(fields["image"])
    if fields["mask"] is not None:  # grey levels kept unless soft=False: the run reads them (nbinpaint.soft)
        fields["mask"] = to_mask(fields["mask"], grey=request.soft is not False)
    return {name: encode(value, where=name, images=images) for name, value in fields.items()}


def request_from_wire(wire: Any, *, max_pixels: int | None = None) -> InpaintRequest:
    """The `InpaintRequest` a client sent (not yet validated); unknown fields are refused by name.

    This is the server's boundary: every image input (`image_parameter`) must arrive as pixels. A string there
    (a file path or a URL, which `InpaintRequest.validated` or a pipeline would open) is refused before
    anything looks at it, with one message whatever it names (`NOT_PIXELS`), so a participant can neither
    read the server's files, nor probe which exist, nor make the server fetch a URL.
    """
    if not isinstance(wire, dict):
        raise errors.InvalidRequestError("the request must be a JSON object of InpaintRequest fields.")
    for name in _INPUTS:  # image, mask, control_image (a list of them for several ControlNets)
        if wire.get(name) is not None and not _is_pixels(wire[name]):
            raise refuse_not_pixels(name)
    extra = wire.get("extra")
    for name, value in extra.items() if isinstance(extra, dict) else ():
        if image_parameter(name) and holds_text(value):  # ip_adapter_image, mask_image, a list of images...
            raise refuse_not_pixels(f"extra[{name!r}]")
    fields = {name: decode(value, max_pixels=max_pixels, where=name) for name, value in wire.items()}
    for name in _INPUTS:
        _check_array_pixels(fields.get(name), max_pixels, name)
    for name, value in fields["extra"].items() if isinstance(fields.get("extra"), dict) else ():
        if image_parameter(name):
            _check_array_pixels(value, max_pixels, f"extra[{name!r}]")
    return InpaintRequest.from_kwargs(**fields)


NOT_PIXELS = (
    "is not pixels: a workshop server takes images only as pixels (a PIL image, numpy array or tensor) and never "
    "opens a file path or URL it is sent. Open the file in your notebook, e.g. PIL.Image.open(path), and pass "
    "the image (nbinpaint.connect's manager does this for image= and mask= itself)."
)
"""The refusal of an image input that is not pixels: the same text whatever the string names, so its
answer tells nothing about the server's files (`refuse_not_pixels` puts the parameter's name in front)."""

_PIXEL_TAGS = ("png", "raw", "array", "tensor")


def refuse_not_pixels(where: str) -> errors.InvalidRequestError:
    """The `InvalidRequestError` for an image input ``where`` that came as something other than pixels."""
    return errors.InvalidRequestError(f"{where} {NOT_PIXELS}")


def image_parameter(name: str) -> bool:
    """Whether a pipeline parameter named ``name`` takes images (``image``, ``mask_image``,
    ``ip_adapter_image``, ``control_image``...): on a server it may hold pixels, numbers, never text."""
    return "image" in name or "mask" in name


def _is_pixels(value: Any) -> bool:
    """Whether wire ``value`` is encoded pixels (PNG, raw, array, tensor), or a list of them."""
    if isinstance(value, list):
        return bool(value) and all(_is_pixels(item) for item in value)
    return isinstance(value, dict) and value.get(_TAG) in _PIXEL_TAGS


def holds_text(value: Any) -> bool:
    """Whether ``value`` (wire data, or decoded values) holds a string or path anywhere outside encoded data:
    something a pipeline or ``load_image`` would open."""
    if isinstance(value, (str, os.PathLike)):
        return True
    if isinstance(value, (list, tuple)):
        return any(holds_text(item) for item in value)
    if isinstance(value, dict):
        return _TAG not in value and any(holds_text(item) for item in value.values())
    return False


def _check_array_pixels(value: Any, max_pixels: int | None, where: str) -> None:
    """Refuse an array or tensor image input with more values than a ``max_pixels`` RGBA image holds (a PNG
    or raw image was checked by `decode` already)."""
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_array_pixels(item, max_pixels, f"{where}[{index}]")
        return
    size = value.size if isinstance(value, np.ndarray) else value.numel() if _is_tensor(value) else None
    if max_pixels is not None and size is not None and size > 4 * max_pixels:
        raise serve_errors.ServerLimitError(
            f"{where} holds {size} values, more than an image of this server's limit of {max_pixels} pixels: "
            "send a smaller image, e.g. image.thumbnail((1024, 1024))."
        )


def result_to_wire(result: InpaintResult, *, with_inputs: bool = False, images: str = "png") -> dict[str, Any]:
    """A result as JSON: images (PNG, or safetensors for latents), seed, timings, recipe, and its request.

    The request's input images are left out unless ``with_inputs``: for a plain run the client still has
    them. Chain stages after the first set it, since their input was made on the server.
    """
    request = {
        f.name: encode(getattr(result.request, f.name), where=f.name, images=images)
        for f in dataclasses.fields(result.request)
        if with_inputs or f.name not in _INPUTS
    }
    images_out = result.images if isinstance(result.images, list) else [result.images]
    return {
        "images": [encode(image, where="image", images=images) for image in images_out],
        "batched": not isinstance(result.images, list),
        "seed": result.seed,
        "timings": dict(result.timings),
        "recipe": json.loads(json.dumps(result.recipe, default=repr)),
        "request": request,
    }


def result_from_wire(wire: Mapping[str, Any], sent: InpaintRequest | None = None) -> InpaintResult:
    """An `InpaintResult` from `result_to_wire` output; inputs left out come from ``sent`` (normalised)."""
    fields = {name: decode(value, where=name) for name, value in wire["request"].items()}
    if sent is not None:
        for name in _INPUTS:
            if name not in fields:
                value = getattr(sent, name)
                if name == "image" and value is not None:
                    value = as_rgb(value)
                elif name == "mask" and value is not None:
                    value = to_mask(value, grey=sent.soft is not False)
                fields[name] = value
    images = [decode(image, where="image") for image in wire["images"]]
    if wire.get("batched"):  # latents come back as the pipeline's one batch tensor, as run_request keeps them
        images = images[0]
    return InpaintResult(
        images=images,
        request=InpaintRequest(**fields),
        seed=int(wire["seed"]),
        timings=dict(wire["timings"]),
        recipe=dict(wire["recipe"]),
    )


# --------------------------------------------------------------------------------------------------------
# Errors and events.
# --------------------------------------------------------------------------------------------------------


def error_to_wire(error: BaseException) -> dict[str, str]:
    """``{"type", "message"}`` for an exception: its own class name if the client knows it, else ServerError."""
    for cls in type(error).__mro__:
        if ERROR_TYPES.get(cls.__name__) is cls:
            return {"type": cls.__name__, "message": str(error)}
    return {
        "type": "ServerError",
        "message": f"the workshop server failed on this request ({type(error).__name__}: {error}). "
        "Tell your instructor; other requests are not affected.",
    }


def error_from_wire(wire: Any) -> Exception:
    """The exception a client raises for an error the server sent: the same class and text."""
    if not isinstance(wire, Mapping):
        return serve_errors.ServerError(f"the workshop server answered with an unreadable error: {wire!r}")
    cls = ERROR_TYPES.get(str(wire.get("type")), serve_errors.ServerError)
    return cls(str(wire.get("message", "")))


def write_event(event: Mapping[str, Any]) -> bytes:
    """One NDJSON line."""
    return (json.dumps(event, separators=(",", ":")) + "\n").encode()


def read_event(line: bytes) -> dict[str, Any]:
    """The event on one NDJSON line."""
    event = json.loads(line)
    if not isinstance(event, dict) or event.get("event") not in EVENTS:
        raise serve_errors.ServerError(f"the workshop server sent an event this nbinpaint does not know: {line!r}")
    return event
