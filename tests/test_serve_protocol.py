"""The workshop wire format (no Ray): lossless pixels, tensors, requests, results, errors, events."""

from __future__ import annotations

import base64
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


def wire_round_trip(value, images="png", **kwargs):
    """Encode, go through JSON text as on the wire, decode."""
    return protocol.decode(json.loads(json.dumps(protocol.encode(value, images=images))), **kwargs)


@pytest.mark.parametrize("images", protocol.IMAGE_FORMATS)
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "I;16", "1", "P"])
def test_images_travel_losslessly(mode, images):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8), "RGB").convert(mode)
    wire = protocol.encode(image, images=images)
    # raw carries one byte per band; modes with palettes or wider pixels go as PNG whatever was asked
    expected = "raw" if images == "raw" and mode in ("RGB", "RGBA", "L", "LA") else "png"
    assert wire["__nbinpaint__"] == expected
    back = wire_round_trip(image, images)
    assert back.mode == image.mode
    assert np.array_equal(np.asarray(back), np.asarray(image))


def test_raw_images_are_checked_before_their_pixels_are_made():
    wire = protocol.encode(Image.new("RGB", (300, 200), (1, 2, 3)), images="raw")
    with pytest.raises(ServerLimitError, match="300x200 = 60000 pixels, above this server's limit of 50000"):
        protocol.decode(wire, max_pixels=50_000, where="image")
    with pytest.raises(InvalidRequestError, match="holds 179999 bytes, not the 180000 of a 300x200 RGB image"):
        protocol.decode({**wire, "data": base64.b64encode(b"x" * 179_999).decode()}, where="image")
    for bad in ({"mode": "P"}, {"mode": "I;16"}, {"size": [300]}, {"size": [0, 200]}, {"size": ["300", 200]}):
        with pytest.raises(InvalidRequestError, match="not valid raw image data"):
            protocol.decode({**wire, **bad}, where="image")


@pytest.mark.parametrize(
    ("host", "expected"),
    [("127.0.0.1", "raw"), ("::1", "raw"), ("10.1.2.3", "raw"), ("192.168.0.7", "raw"), ("8.8.8.8", "png")],
)
def test_images_travel_raw_only_on_a_local_network(host, expected):
    from nbinpaint.remote import RemoteManager, wire_image_format

    assert wire_image_format(host) == expected
    assert wire_image_format("no-such-host.invalid") == "png"
    assert (
        RemoteManager(f"http://{host}:8000" if ":" not in host else f"http://[{host}]:8000", "t").image_format
        == expected
    )
    assert RemoteManager("http://127.0.0.1:8000", "t", image_format="png").image_format == "png"
    with pytest.raises(InvalidRequestError, match="image_format='jpeg': use one of png, raw"):
        RemoteManager("http://127.0.0.1:8000", "t", image_format="jpeg")


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


@pytest.mark.parametrize("images", protocol.IMAGE_FORMATS)
def test_result_round_trip(manager, scene, images):
    image, mask = scene
    request = InpaintRequest(prompt="x", image=image, mask=mask, seed=3, model="classical/telea")
    result = manager.run(request)
    wire = json.loads(json.dumps(protocol.result_to_wire(result, images=images)))
    assert wire["images"][0]["__nbinpaint__"] == images
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
