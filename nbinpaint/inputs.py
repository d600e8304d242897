"""What a user hands in, made safe to run: image modes, EXIF rotation, transparency, masks, size budget, prompts.

Pure functions over PIL/numpy, called by `InpaintRequest.validated` (and `call_kwargs` for prompts) where
the user's input enters. Each automatic fix is announced once with `nbinpaint.notices.notice`; anything that
cannot be fixed safely raises `InvalidRequestError` naming the fix. Nothing here changes the caller's
objects: every conversion returns a new image. The table of cases is ``docs/bad-input.md``.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from nbinpaint.errors import ConfigurationError, InvalidRequestError, MaskError, quote, shorten
from nbinpaint.notices import notice

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "INVERTED_HINT_FRACTION",
    "MAX_PIXELS_ENV",
    "MIN_SIDE",
    "MaskLike",
    "alpha_mask",
    "announce_run_size",
    "check_mask",
    "exif_orientation",
    "has_grey",
    "mask_array",
    "pixel_budget",
    "prompt_truncation",
    "run_size",
    "to_mask",
    "to_rgb",
]

MAX_PIXELS_ENV = "NBINPAINT_MAX_PIXELS"
"""Environment variable setting the pixel budget (a whole number; ``off`` turns the budget off)."""
DEFAULT_MAX_PIXELS = 2**21
"""Largest automatic run size, in pixels: 2,097,152 (1920x1080 fits; a 12 MP phone photo runs at 1672x1248)."""
MIN_SIDE = 8
"""Smallest image side: the VAE works on 8x8 pixel blocks."""
INVERTED_HINT_FRACTION = 0.8
"""A mask whiter than this (but not all white) gets the "did you mean to invert it?" hint."""
_OFF = {"off", "0", "none", "false", "no"}
_ORIENTATION = 0x0112  # the EXIF tag PIL.ImageOps.exif_transpose reads
_HIGH_DEPTH = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
_REPAINT, _KEEP = 255, 0

#: What `mask_array` and `to_mask` accept (array-likes such as torch tensors too).
MaskLike = str | os.PathLike | bytes | bytearray | memoryview | Image.Image | np.ndarray


# --- images -------------------------------------------------------------------------------------------------


def to_rgb(image: Any) -> Image.Image:
    """Any image input as a new PIL RGB image, the way viewers show it.

    Accepts a PIL image of any mode, a file path or URL, or a numpy array ((H, W), (H, W, 1|3|4) or
    channel-first (C, H, W); uint8, 16-bit, bool, floats in [0, 1] or diffusers' [-1, 1]). EXIF rotation is applied
    (``diffusers.utils.load_image`` does it); 16-bit and float images are scaled to 8 bits; transparent
    pixels are flattened onto white; CMYK is converted. Each of those fixes says so once.
    """
    if isinstance(image, np.ndarray):
        image = _array_image(image)
    elif isinstance(image, (str, os.PathLike)):
        image = _open(os.fspath(image), "image")
    elif not isinstance(image, Image.Image):
        raise InvalidRequestError(
            f"image must be a PIL image, a numpy array or a file path, not {type(image).__name__}: "
            "load it with PIL.Image.open(path) or pass the path."
        )
    from diffusers.utils import load_image

    orientation = exif_orientation(image)
    try:
        rgb = load_image(image, convert_method=_flatten)  # EXIF transpose, then our mode conversion
    except InvalidRequestError:
        raise
    except _READ_ERRORS as error:
        raise InvalidRequestError(f"the image could not be read ({error}): re-save it as PNG or JPEG.") from error
    if orientation not in (None, 1):
        notice(
            f"the image carries EXIF orientation {orientation}: rotated to {rgb.size[0]}x{rgb.size[1]} as photo "
            "viewers show it. Draw the mask on the rotated image (PIL.ImageOps.exif_transpose(image))."
        )
    return rgb


def alpha_mask(image: Image.Image) -> Image.Image:
    """A mask that repaints an image's transparent pixels (white where alpha < 128): the outpainting case."""
    if not isinstance(image, Image.Image):
        raise InvalidRequestError("alpha_mask needs a PIL image with transparency (mode RGBA, LA or P).")
    alpha = np.asarray(image.convert("RGBA").getchannel("A"))
    return Image.fromarray(np.where(alpha < 128, 255, 0).astype(np.uint8), "L")


def _open(path: str, role: str) -> Image.Image:
    """A file or URL opened and fully read, with errors that say what to do."""
    if path.startswith(("http://", "https://")):
        from diffusers.utils import load_image

        try:
            return load_image(path, convert_method=lambda opened: opened)
        except _READ_ERRORS as error:  # requests' errors are OSErrors
            raise InvalidRequestError(
                f"could not fetch the {role} at {path} ({type(error).__name__}): check the URL and the network, "
                "or download it and pass the file."
            ) from error
    if not os.path.isfile(path):
        raise InvalidRequestError(
            f"no {role} file at {quote(path, 200)}: check the path (relative paths start in {os.getcwd()!r})."
        )
    return _decoded(
        path,
        path,
        InvalidRequestError,
        f"could not read the {role} {path} as an image ({{error}}): the file is damaged, truncated or not an "
        "image. Re-save it as PNG or JPEG.",
    )


def _decoded(source: Any, where: str, error: type[InvalidRequestError], unreadable: str) -> Image.Image:
    """``source`` (a path or a file object) opened and fully read; a decompression bomb or a damaged file is
    ``error`` naming the fix (``unreadable`` with ``{error}`` for the cause)."""
    try:
        with Image.open(source) as opened:
            opened.load()
            return opened.copy()
    except Image.DecompressionBombError as cause:
        raise error(
            f"{where} is too large for PIL's decompression-bomb guard ({cause}). If you trust it, set "
            "PIL.Image.MAX_IMAGE_PIXELS = None before loading, or downscale the file first."
        ) from cause
    except (OSError, ValueError, SyntaxError) as cause:
        raise error(unreadable.format(error=cause)) from cause


def exif_orientation(source: Any) -> int | None:
    """The EXIF orientation tag of an image input (a PIL image, or a file path: only its header is read).

    None for anything without one: arrays, URLs, missing or unreadable files, a damaged EXIF block.
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if path.startswith(("http://", "https://")) or not os.path.isfile(path):
            return None
        try:
            with Image.open(path) as opened:  # lazy: reads the header, not the pixels
                return exif_orientation(opened)
        except (*_READ_ERRORS, TypeError):
            return None
    if not isinstance(source, Image.Image):
        return None
    try:
        return source.getexif().get(_ORIENTATION)
    except (OSError, ValueError, SyntaxError, TypeError):  # a damaged EXIF block: nothing to rotate by
        return None


def _flatten(image: Image.Image) -> Image.Image:
    """Any PIL mode to RGB, with a notice for the conversions that change what the image looks like."""
    if image.mode == "RGB":
        return image
    if image.mode == "La":  # premultiplied alpha: PIL converts it to LA only
        image = image.convert("LA")
    if image.mode in _HIGH_DEPTH:
        notice(f"a {image.mode} image (more than 8 bits per pixel) was scaled to 8-bit RGB.")
        return Image.fromarray(_to_uint8(np.asarray(image)), "L").convert("RGB")
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        if np.asarray(rgba.getchannel("A")).min() < 255:
            notice(
                "the image has transparent pixels: flattened onto white. To repaint them instead, pass "
                "mask=nbinpaint.inputs.alpha_mask(image)."
            )
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB")
        return rgba.convert("RGB")
    if image.mode == "CMYK":
        notice("a CMYK image was converted to RGB (PIL's plain conversion; colours may shift slightly).")
    try:
        return image.convert("RGB")
    except ValueError as error:
        raise InvalidRequestError(
            f"images of mode {image.mode} cannot be converted to RGB ({error}): convert it first, e.g. with "
            "PIL.ImageCms, and pass the RGB image."
        ) from error


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Pixel values of any depth as 0..255: 16-bit by its full range, floats in [0, 1] by 255, else min..max."""
    with np.errstate(invalid="ignore", over="ignore"):  # NaN payloads in float images are read as 0
        values = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if array.dtype.kind == "f" and low >= 0 and high <= 1:
        values = values * 255
    elif low >= 0 and high <= 255:
        pass
    elif low >= 0 and high <= 65535:
        values = values / 257
    else:
        values = (values - low) / ((high - low) or 1) * 255
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _array_image(array: np.ndarray) -> Image.Image:
    """A numpy image as PIL: layout (H, W[, C]) or (C, H, W); values of any usual range."""
    if array.ndim == 3 and array.shape[-1] > 4 and array.shape[0] in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)  # channel-first, as torch and diffusers' processors keep images
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)) or 0 in array.shape:
        raise InvalidRequestError(
            f"an image array must be (height, width) or (height, width, 3 or 4 channels); got shape {array.shape}."
        )
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif array.dtype.kind not in "uif":
        raise InvalidRequestError(f"an image array must hold numbers, not {array.dtype}: convert it to uint8.")
    elif array.dtype != np.uint8:
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise InvalidRequestError("the image array contains NaN or infinite values: fix them, e.g. np.nan_to_num.")
        if array.dtype.kind == "f" and array.min() >= -1 and array.min() < 0 and array.max() <= 1:
            notice("an image array with values in [-1, 1] was read as diffusers' normalised range.")
            array = (array + 1) / 2
        array = _to_uint8(array)
    mode = "L" if array.ndim == 2 else {3: "RGB", 4: "RGBA"}[array.shape[-1]]
    return Image.fromarray(np.ascontiguousarray(array), mode)


# --- masks --------------------------------------------------------------------------------------------------


def to_mask(mask: Any, size: tuple[int, int] | None = None, *, grey: bool = False) -> Image.Image:
    """Any mask input as a new PIL "L" image of 0 and 255 (white = repaint): `mask_array` as an image; with
    ``grey=True`` its grey levels are kept (soft inpainting reads them as per-pixel strengths)."""
    return Image.fromarray(mask_array(mask, size, grey=grey), "L")


def has_grey(mask: Image.Image | np.ndarray) -> bool:
    """Whether a mask read with ``grey=True`` has levels between black and white (a feather, a gradient)."""
    array = np.asarray(mask)
    return bool(((array > 0) & (array < 255)).any())


def mask_array(value: Any, size: tuple[int, int] | None = None, *, grey: bool = False) -> np.ndarray:
    """Any mask input as a new ``(height, width)`` uint8 array of 0 and 255 (white = repaint).

    The one mask reader: requests, recipes, the server and the canvas's editor all come through here, so a
    mask reads the same wherever it is given. Accepts a path or URL, PNG/JPEG/NPY bytes, a PIL image of any
    mode (EXIF rotation applied, 16-bit scaled by its full range, transparent pixels count as keep), or an
    array-like (numpy, torch) that is boolean, 0..1 (all values within [0, 1]) or 0..255, with optional
    singleton or colour axes. Values are thresholded at half, unless ``grey`` (then 0..255 levels are kept,
    for soft inpainting). Strokes of one colour on a transparent layer (a paint program's layer, an RGBA
    array) are read by their alpha: painted = repaint, whatever the colour, so black strokes are not read as
    "keep everything" (see `strokes_on_transparency`). ``size`` is the image's ``(width, height)``: a mask of
    another size is refused with the fix, never silently stretched.
    """
    if isinstance(value, (str, os.PathLike)) and os.fspath(value).startswith(("http://", "https://")):
        value = _open(os.fspath(value), "mask")
    if isinstance(value, (str, os.PathLike)):
        mask = _read_mask_file(os.fspath(value), grey)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        mask = _decode_mask_bytes(bytes(value), "the uploaded data", grey)
    elif isinstance(value, Image.Image):
        mask = _pil_to_mask(value, grey)
    elif hasattr(value, "__array__") or isinstance(value, (list, tuple)):
        mask = _array_to_mask(_as_numpy(value), grey)
    else:
        raise MaskError(
            f"Cannot use a {type(value).__name__} as a mask: pass a file path, PNG bytes, a PIL image "
            "or a numpy array (white or True = repaint)."
        )
    if size is not None and (mask.shape[1], mask.shape[0]) != tuple(size):
        w, h = size
        raise MaskError(
            f"The mask is {mask.shape[1]}x{mask.shape[0]} but the image is {w}x{h}: resize the mask to "
            f"{w}x{h} (e.g. mask.resize(({w}, {h}), Image.NEAREST)) or draw it on this image."
        )
    return mask


def _read_mask_file(path: str, grey: bool = False) -> np.ndarray:
    if not os.path.exists(path):
        raise MaskError(f"No mask file at {path!r}: check the path (relative paths start in {os.getcwd()!r}).")
    with open(path, "rb") as fobj:
        return _decode_mask_bytes(fobj.read(), repr(path), grey)


def _decode_mask_bytes(data: bytes, where: str, grey: bool = False) -> np.ndarray:
    if data[:6] == b"\x93NUMPY":
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as exc:
            raise MaskError(f"Could not read {where} as a .npy array ({exc}): save it with np.save.") from exc
        return _array_to_mask(array, grey)
    unreadable = (
        f"Could not read {where} as an image (damaged, truncated or not an image): save the mask as a PNG "
        "(white = repaint, black = keep) and load it again."
    )
    decoded = _decoded(io.BytesIO(data), where, MaskError, unreadable.replace("{", "{{").replace("}", "}}"))
    return _pil_to_mask(decoded, grey)


def _pil_to_mask(img: Image.Image, grey: bool = False) -> np.ndarray:
    with contextlib.suppress(OSError, ValueError, SyntaxError, TypeError):  # damaged EXIF: pixels as stored
        img = ImageOps.exif_transpose(img)
    if img.mode in _HIGH_DEPTH:
        img = Image.fromarray(_to_uint8(np.asarray(img)), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    elif img.mode == "La":  # premultiplied alpha: PIL converts it to LA only
        img = img.convert("LA")
    if "A" in img.getbands():  # transparent = keep: composite over black first
        rgba = np.asarray(img.convert("RGBA"))
        strokes = strokes_on_transparency(rgba[..., :3], rgba[..., 3])
        if strokes is not None:
            return strokes
        black = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(black, img.convert("RGBA"))
    gray = np.asarray(img.convert("L"))
    return gray.copy() if grey else np.where(gray >= 128, _REPAINT, _KEEP).astype(np.uint8)


STROKE_COLOUR_TOLERANCE = 8
"""Largest spread (0..255, per channel) of the painted pixels' colour for them to count as strokes of one colour."""


def strokes_on_transparency(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray | None:
    """The mask of strokes painted in one colour on a transparent layer (painted = repaint), else None.

    Such a layer carries its drawing in alpha alone: its colour says nothing, and read by brightness black
    strokes would mean "keep everything". Returns None (read by brightness, transparent = keep) when alpha
    is all on one side of half, or the painted pixels have more than one colour (a drawn black-and-white
    mask). White strokes give the same mask either way.
    """
    painted = alpha >= 128
    if painted.all() or not painted.any():
        return None
    colours = rgb[painted].astype(np.int16)
    if (colours.max(axis=0) - colours.min(axis=0)).max() > STROKE_COLOUR_TOLERANCE:
        return None
    return np.where(painted, _REPAINT, _KEEP).astype(np.uint8)


def _as_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, possibly on an accelerator
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _array_to_mask(array: np.ndarray, grey: bool = False) -> np.ndarray:
    while array.ndim > 3 and array.shape[0] == 1:  # (1, 1, H, W): a batch of one, as pipelines use
        array = array[0]
    if array.ndim == 3 and array.shape[-1] == 1:  # (H, W, 1)
        array = array[..., 0]
    elif array.ndim == 3 and array.shape[-1] in (3, 4):  # colour: gray level, like diffusers' mask processor
        if array.shape[-1] == 4 and array.dtype == np.uint8:  # RGBA: strokes on a transparent layer?
            strokes = strokes_on_transparency(array[..., :3], array[..., 3])
            if strokes is not None:
                return strokes
        array = array[..., :3].mean(axis=-1)
    elif array.ndim == 3 and array.shape[0] == 1:  # (1, H, W)
        array = array[0]
    if array.ndim != 2 or 0 in array.shape:
        raise MaskError(
            f"A mask array must be 2-D (height, width), optionally with a channel axis; got shape {array.shape}."
        )
    if array.dtype == bool:
        return np.where(array, _REPAINT, _KEEP).astype(np.uint8)
    if not np.issubdtype(array.dtype, np.number):
        raise MaskError(f"A mask array must be boolean or numeric, not {array.dtype}.")
    array = array.astype(np.float64, copy=False)
    if not np.isfinite(array).all():
        raise MaskError("The mask array contains NaN or infinite values: fix them before loading.")
    half = 0.5 if array.min() >= 0 and array.max() <= 1 else 127.5
    if grey:  # levels kept, as 0..255
        return np.clip(np.rint(array * (255 / (2 * half))), 0, 255).astype(np.uint8)
    return np.where(array >= half, _REPAINT, _KEEP).astype(np.uint8)


def _alpha_of(source: Any) -> np.ndarray | None:
    """The alpha channel of a mask input that has one (a PIL image with transparency, an RGBA uint8 array)."""
    if isinstance(source, np.ndarray):
        return source[..., 3] if source.ndim == 3 and source.shape[-1] == 4 else None
    if isinstance(source, Image.Image) and source.has_transparency_data:
        with contextlib.suppress(ValueError, OSError):
            return np.asarray(source.convert("RGBA").getchannel("A"))
    return None


def _is_npy(path: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(6) == b"\x93NUMPY"


def check_mask(mask: Image.Image, source: Any = None) -> float:
    """Refuse a mask with nothing to repaint; say so when it repaints everything or looks inverted.

    ``source`` is what the user passed (before `to_mask`): a transparent layer gets a hint about its alpha.
    Returns the fraction of the image that will be repainted.
    """
    white = float((np.asarray(mask) > 127).mean())
    if white == 0:
        alpha = _alpha_of(source)
        hint = ""
        if alpha is not None and (alpha >= 128).any() and (alpha < 128).any():
            hint = (
                " The mask has transparent and painted pixels, read as dark strokes (transparent = keep): if you "
                "drew the area to repaint on a transparent layer, pass its alpha, mask=mask.getchannel('A')."
            )
        raise InvalidRequestError(
            "the mask is all black, so nothing would be repainted: paint the area to change in white "
            "(white = repaint, black = keep), or use task='img2img' to change the whole image." + hint
        )
    if white == 1:
        notice(
            "the mask is all white: the whole image is repainted, and only strength keeps its layout. "
            "Paint just the area to change to keep the rest."
        )
    elif white > INVERTED_HINT_FRACTION:
        notice(
            f"the mask is {white:.0%} white, and white means repaint: almost everything will change. If you "
            "painted what to keep, invert the mask (the canvas's Invert button, or nbinpaint.masks.invert)."
        )
    return white


# --- sizes --------------------------------------------------------------------------------------------------


def pixel_budget(setting: int | None = None) -> int | None:
    """The largest automatic run size in pixels: ``setting``, else ``$NBINPAINT_MAX_PIXELS``, else the default.

    0 (or ``off`` in the variable) means no budget: images run at their own size, whatever it is.
    """
    if setting is None:
        text = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
        if not text:
            return DEFAULT_MAX_PIXELS
        if text.lower() in _OFF:
            return None
        try:
            setting = int(float(text))
        except (ValueError, OverflowError):  # "abc", "nan", "inf"
            setting = -1
        if setting < 0:
            raise ConfigurationError(
                f"the environment variable {MAX_PIXELS_ENV}={quote(text)} is not a number of pixels: use e.g. "
                f"{MAX_PIXELS_ENV}=4194304 (a whole number), or off for no budget, or unset it."
            )
    if isinstance(setting, bool) or not isinstance(setting, (int, np.integer)) or setting < 0:
        raise InvalidRequestError(
            f"max_pixels={quote(setting)} is invalid: use a whole number of pixels, e.g. 4194304, or 0 for no budget."
        )
    return int(setting) or None


def run_size(size: tuple[int, int], budget: int | None) -> tuple[int, int]:
    """The size to generate at: ``size`` rounded down to multiples of 8, scaled down to fit ``budget`` pixels.

    Aspect ratio is kept. Worked example: 4032x3024 with a budget of 2**21 scales by
    sqrt(2097152 / 12192768) = 0.4147 to 1672.2x1254.1, rounded down to multiples of 8: 1672x1248.
    """
    width, height = size
    if budget is not None and width * height > budget:
        scale = math.sqrt(budget / (width * height))
        width, height = width * scale, height * scale
    return max(MIN_SIDE, int(width) // 8 * 8), max(MIN_SIDE, int(height) // 8 * 8)


def announce_run_size(size: tuple[int, int], run: tuple[int, int], budget: int | None) -> None:
    """Say once why the run size differs from the image's size (not a multiple of 8, or over budget)."""
    if tuple(run) == tuple(size):
        return
    (w, h), (rw, rh) = size, run
    if budget is not None and w * h > budget:
        notice(
            f"the image is {w}x{h} ({w * h / 1e6:.1f} MP), above the pixel budget of {budget / 1e6:.1f} MP: "
            f"generating at {rw}x{rh} and resizing the result back to {w}x{h}. Raise the budget with "
            f"PipelineManager(max_pixels=...) or {MAX_PIXELS_ENV}, or pass width= and height=."
        )
    else:
        notice(
            f"the image is {w}x{h}, not a multiple of 8: generating at {rw}x{rh} and resizing the result back "
            f"to {w}x{h}."
        )


# --- prompts ------------------------------------------------------------------------------------------------

_TOKENIZERS = ("tokenizer", "tokenizer_2", "prior_tokenizer")  # diffusers' names: SD, SDXL's second, Kandinsky


def prompt_truncation(pipeline: Any, prompt: str, what: str = "prompt") -> list[str]:
    """What each of the pipeline's tokenizers will cut from ``prompt``: one sentence per tokenizer that cuts.

    Counted as diffusers' ``encode_prompt`` does: ``model_max_length`` tokens including the start and end
    tokens, so the cut text is ``ids[limit - 1:-1]``.
    """
    messages = []
    for name in _TOKENIZERS:
        tokenizer = getattr(pipeline, name, None)
        limit = getattr(tokenizer, "model_max_length", None)
        if not callable(tokenizer) or not isinstance(limit, int) or limit > 100_000:  # 1e30: no limit set
            continue
        ids = tokenizer(prompt, truncation=False, verbose=False).input_ids
        if len(ids) <= limit:
            continue
        cut = tokenizer.decode(ids[limit - 1 : -1], skip_special_tokens=True).strip()
        messages.append(
            f"the {what} is {len(ids) - 2} tokens but the text encoder reads {limit - 2} (plus start and end "
            f"tokens): “{shorten(cut)}” is cut. Shorten the {what}, or put what matters most first."
        )
    return list(dict.fromkeys(messages))
