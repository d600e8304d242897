"""The workshop wire format (no Ray): lossless pixels, tensors, requests, results, errors, events."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from nbinpaint.errors import GenerationCancelled, InvalidRequestError, ModelLoadError, UnsupportedParameterError
from nbinpaint.requests import InpaintRequest
from nbinpaint.serve import protocol
from nbinpaint.serve.errors import ServerError, ServerLimitError


def wire_round_trip(value, **kwargs):
    """Encode, go through JSON text as on the wire, decode."""
    return protocol.decode(json.loads(json.dumps(protocol.encode(value))), **kwargs)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "I;16", "1", "P"])
def test_images_travel_losslessly(mode):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8), "RGB").convert(mode)
    back = wire_round_trip(image)
    assert back.mode == image.mode
    assert np.array_equal(np.asarray(back), np.asarray(image))


def test_tensors_arrays_and_nested_values_travel():
    tensor = torch.randn(1, 4, 8, 8)
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    back = wire_round_trip({"t": tensor, "a": [array, 1, "x", None, (2.5, True)]})
    assert torch.equal(back["t"], tensor)
    assert np.array_equal(back["a"][0], array)
    assert back["a"][1:] == [1, "x", None, [2.5, True]]


def test_values_that_cannot_travel_are_named():
    with pytest.raises(InvalidRequestError, match=r"extra\['callback'\] is a function"):
        protocol.encode({"callback": lambda: None}, where="extra")


def test_oversized_and_corrupt_images_are_refused_before_decoding():
    big = protocol.encode(Image.new("RGB", (300, 200)))
    with pytest.raises(ServerLimitError, match="300x200 = 60000 pixels, above this server's limit of 50000"):
        protocol.decode(big, max_pixels=50_000, where="image")
    with pytest.raises(InvalidRequestError, match="not a readable PNG"):
        protocol.decode({"__nbinpaint__": "png", "data": "aGVsbG8="}, where="image")
    jpeg = io.BytesIO()
    Image.new("RGB", (8, 8)).save(jpeg, format="JPEG")
    import base64

    with pytest.raises(InvalidRequestError, match="not a readable PNG"):
        protocol.decode({"__nbinpaint__": "png", "data": base64.b64encode(jpeg.getvalue()).decode()}, where="image")
    with pytest.raises(InvalidRequestError, match="unknown encoding 'pickle'"):
        protocol.decode({"__nbinpaint__": "pickle", "data": ""}, where="x")


def test_a_request_arrives_with_the_pixels_a_local_run_would_use(tmp_path, scene):
    image, mask = scene
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF orientation: rotate 90°
    image.save(rotated, exif=exif, quality=95)
    request = InpaintRequest(
        prompt="a cat",
        image=str(rotated),
        mask=np.asarray(mask.rotate(90, expand=True)),
        strength=0.7,
        seed=5,
        extra={"eta": 0.1},
    )
    arrived = protocol.request_from_wire(json.loads(json.dumps(protocol.request_to_wire(request))))
    local, remote = request.validated(), arrived.validated()
    assert np.array_equal(np.asarray(local.image), np.asarray(remote.image)), "EXIF rotation applied in the kernel"
    assert np.array_equal(np.asarray(local.mask), np.asarray(remote.mask))
    assert local.parameters() == remote.parameters()


def test_unknown_fields_are_refused_with_the_local_message():
    with pytest.raises(InvalidRequestError, match="unknown parameter"):
        protocol.request_from_wire({"prompt": "x", "magic": 1})


def test_result_round_trip(manager, scene):
    image, mask = scene
    request = InpaintRequest(prompt="x", image=image, mask=mask, seed=3, model="classical/telea")
    result = manager.run(request)
    wire = json.loads(json.dumps(protocol.result_to_wire(result)))
    assert "image" not in wire["request"], "the kernel still has its inputs: they are not sent back"
    back = protocol.result_from_wire(wire, request)
    assert np.array_equal(np.asarray(back.image), np.asarray(result.image))
    assert back.seed == result.seed and back.recipe["model"] == result.recipe["model"]
    assert back.request.parameters() == result.request.parameters()
    assert np.array_equal(np.asarray(back.request.mask), np.asarray(result.request.mask))


@pytest.mark.parametrize(
    "error",
    [
        InvalidRequestError("strength=2 is invalid"),
        UnsupportedParameterError("padding_mask_crop is not accepted"),
        ModelLoadError("could not load"),
        GenerationCancelled("generation cancelled"),
        ServerLimitError("over the limit"),
    ],
)
def test_errors_cross_as_their_own_type_and_text(error):
    back = protocol.error_from_wire(json.loads(json.dumps(protocol.error_to_wire(error))))
    assert type(back) is type(error)
    assert str(back) == str(error)


def test_unknown_errors_become_server_errors_never_classes_looked_up_by_name():
    wire = protocol.error_to_wire(ZeroDivisionError("division by zero"))
    assert wire["type"] == "ServerError" and "ZeroDivisionError: division by zero" in wire["message"]
    assert type(protocol.error_from_wire({"type": "SystemExit", "message": "bye"})) is ServerError
    assert type(protocol.error_from_wire("garbage")) is ServerError


def test_events_are_checked():
    assert protocol.read_event(protocol.write_event({"event": "step", "step": 1, "total": 2}))["step"] == 1
    with pytest.raises(ServerError, match="does not know"):
        protocol.read_event(b'{"event": "surprise"}\n')
