"""Live previews of the predicted final image (x0) while a run denoises, cheap enough for every few steps.

Two parts, both decided from the pipeline's own components:

1. **What to show.** The noisy latents of a middle step are mostly noise; the scheduler's estimate of the
   clean latents (x0) already shows the composition. For the duration of a run `tap` wraps the pipeline's
   ``scheduler.step`` and keeps that estimate: ``pred_original_sample`` where the scheduler reports it (DDIM,
   DDPM, Euler, Heun, LMS), else `predicted_x0` computes it from the noise prediction, the timestep's noise
   level and ``config.prediction_type`` (PNDM, DPMSolver, UniPC report only the next sample).
2. **How to colour it.** A VAE decode per preview would cost about as much as a denoising step. Instead each
   autoencoder gets a `LatentPalette`: a linear map (latent channels -> RGB, plus a bias) fitted once by
   least squares, pairing the latents of a few `nbinpaint.samples` images with the autoencoder's own
   decodes of those latents, area-averaged to latent resolution (for a trained VAE the decode is the image;
   for a random twin it is what a decode would show). Applying it is one small matrix product. Fits are
   cached per autoencoder object (weakly, so an evicted checkpoint frees its palette).

   Known autoencoders: `AutoencoderKL` (SD, SDXL; pipeline latents are ``scaling_factor`` times the VAE's,
   with ``shift_factor`` or ``latents_mean``/``latents_std`` where the config has them) and `VQModel`
   (Kandinsky 2.2's MoVQ, whose latents the pipeline uses unscaled). Any other autoencoder falls back to the
   slow path: a real decode of the x0 latents per preview, with ``scaling_factor`` undone if it has one.

Previews are shown after an evenly spread handful of steps (`preview_steps`), never after the last (the
final image follows). A preview that fails prints one notice and previewing stops for that run; the run
itself goes on. The wrapper hands the scheduler's output back untouched, so the final pixels do not change.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from nbinpaint import samples
from nbinpaint.errors import GenerationCancelled, InvalidRequestError
from nbinpaint.notices import notice

__all__ = [
    "MAX_PREVIEW_SIDE",
    "PREVIEWS_PER_RUN",
    "BatchPreviewTap",
    "LatentPalette",
    "PreviewTap",
    "autoencoder_of",
    "batch_tap",
    "fit_palette",
    "palette_for",
    "predicted_x0",
    "preview_steps",
    "tap",
]

PREVIEWS_PER_RUN = 7
"""Previews in a run when ``every`` is not given (fewer when the run has fewer steps)."""
MAX_PREVIEW_SIDE = 256
"""Longest side of a preview image (the panel shows it at 256 px); smaller runs are previewed at their own size.
Rendering at the shown size keeps a preview near a millisecond: no 512 px upscale to thumbnail back down."""
FIT_SAMPLES = ("astronaut", "coffee")
"""`nbinpaint.samples` scenes the palettes are fitted on: skin, white cloth, flags, dark wood, cream and shadow."""
FIT_SIZE = 128
"""Pixel size of each fitting image: 16x16 latents each, ample for 5x3 numbers, and a fast encode."""


# --------------------------------------------------------------------------------------------------------
# When: the steps after which a preview is shown.
# --------------------------------------------------------------------------------------------------------


def preview_steps(total: int, every: int | None = None) -> list[int]:
    """The step numbers (1-based, as the step callback counts) after which a preview is shown.

    ``every`` None spreads `PREVIEWS_PER_RUN` previews evenly over the run (one per step when it has fewer
    steps); otherwise every ``every``-th step. The last step never gets one: the final image follows.
    Example: ``total=20`` gives steps 3, 5, 8, 10, 13, 15, 18; ``total=2`` gives step 1; ``total=1`` none.
    """
    if every is not None:
        if int(every) != every or every < 1:
            raise InvalidRequestError(
                f"preview_every={every!r} is invalid: it must be a whole number of steps >= 1, or None to let "
                "nbinpaint spread about seven previews over the run."
            )
        return list(range(int(every), total, int(every)))
    count = min(PREVIEWS_PER_RUN, total - 1)
    # k * total / (count + 1) rounded half up (integer arithmetic, so two steps never round to one).
    return [(2 * k * total + count + 1) // (2 * (count + 1)) for k in range(1, count + 1)]


# --------------------------------------------------------------------------------------------------------
# What: x0 from a scheduler step.
# --------------------------------------------------------------------------------------------------------


def _alpha_prod(scheduler: Any, timestep: Any) -> float:
    """Signal fraction alpha_bar of the sample the scheduler is about to step from.

    Schedulers that keep a sigma per step (Euler, DPMSolver) know it exactly at ``sigmas[step_index]``
    (alpha_bar = 1 / (1 + sigma^2)); before their first step, and for the others, ``alphas_cumprod[t]``.
    """
    sigmas, index = getattr(scheduler, "sigmas", None), getattr(scheduler, "step_index", None)
    if sigmas is not None and index is not None and 0 <= index < len(sigmas):
        return 1.0 / (1.0 + float(sigmas[index]) ** 2)
    alphas = getattr(scheduler, "alphas_cumprod", None)
    if alphas is None:
        raise NotImplementedError(
            f"{type(scheduler).__name__} reports no x0 and has no alphas_cumprod to compute it from"
        )
    t = min(max(round(float(timestep)), 0), len(alphas) - 1)
    return float(alphas[t])


def _x0(
    model_output: torch.Tensor, sample: torch.Tensor, alpha_prod: float, prediction_type: str, sigma_space: bool
) -> torch.Tensor:
    """x0 in the variance-preserving parameterisation, x_t = sqrt(a) x0 + sqrt(1 - a) eps.

    Sigma-space schedulers (Euler and kin, ``init_noise_sigma`` > 1) keep x_t / sqrt(a) instead; multiplying
    by sqrt(a) brings it back. Kandinsky's learned-variance UNet output carries extra channels: cut off.
    """
    model_output = model_output[:, : sample.shape[1]]
    a = alpha_prod
    if sigma_space:
        sample = sample * a**0.5
    if prediction_type == "epsilon":
        return (sample - (1 - a) ** 0.5 * model_output) / a**0.5
    if prediction_type == "v_prediction":
        return a**0.5 * sample - (1 - a) ** 0.5 * model_output
    if prediction_type == "sample":
        return model_output
    raise NotImplementedError(f"prediction_type {prediction_type!r} has no x0 formula here")


def _sigma_space(scheduler: Any) -> bool:
    return float(getattr(scheduler, "init_noise_sigma", 1.0)) > 1.0


def predicted_x0(scheduler: Any, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor) -> torch.Tensor:
    """The clean latents implied by one noise prediction, for schedulers whose ``step`` does not report them.

    Call it with ``step``'s arguments *before* the step (it reads the scheduler's current step index). Honours
    ``config.prediction_type`` (epsilon, v_prediction, sample).
    """
    prediction_type = getattr(scheduler.config, "prediction_type", "epsilon")
    return _x0(model_output, sample, _alpha_prod(scheduler, timestep), prediction_type, _sigma_space(scheduler))


# --------------------------------------------------------------------------------------------------------
# How: latents to colours.
# --------------------------------------------------------------------------------------------------------


def autoencoder_of(pipeline: Any) -> torch.nn.Module | None:
    """The pipeline's image autoencoder (``vae``, Kandinsky's ``movq``): the component that encodes and decodes."""
    for component in (getattr(pipeline, "components", None) or {}).values():
        codec = callable(getattr(component, "encode", None)) and callable(getattr(component, "decode", None))
        if isinstance(component, torch.nn.Module) and codec:
            return component
    return None


def _is_vq(vae: Any) -> bool:
    from diffusers import VQModel

    return isinstance(vae, VQModel)


def _is_kl(vae: Any) -> bool:
    from diffusers import AutoencoderKL

    return isinstance(vae, AutoencoderKL)


def _latent_stats(vae: Any, like: torch.Tensor) -> tuple[torch.Tensor | float, torch.Tensor | float, float]:
    """(mean, std, scaling_factor) relating a KL autoencoder's latents z to a pipeline's: (z - mean) * sf / std."""
    config = vae.config
    scaling = float(getattr(config, "scaling_factor", None) or 1.0)
    mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
    if mean is not None and std is not None:  # SDXL-style per-channel statistics
        view = (1, -1, 1, 1)
        return (
            torch.tensor(mean, device=like.device, dtype=like.dtype).view(view),
            torch.tensor(std, device=like.device, dtype=like.dtype).view(view),
            scaling,
        )
    return float(getattr(config, "shift_factor", None) or 0.0), 1.0, scaling


def _encode(vae: Any, pixels: torch.Tensor) -> torch.Tensor:
    """Pixels in [-1, 1] to latents as the pipeline holds them (what the scheduler steps)."""
    if _is_vq(vae):
        return vae.encode(pixels).latents  # Kandinsky 2.2 uses MoVQ latents unscaled
    z = vae.encode(pixels).latent_dist.mode()  # the mode, not a sample: no random numbers drawn
    mean, std, scaling = _latent_stats(vae, z)
    return (z - mean) * scaling / std


def _decode(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """Latents as the pipeline holds them to pixels in [-1, 1], as the pipeline's own final decode does."""
    if _is_vq(vae):
        return vae.decode(latents, force_not_quantize=True).sample
    if _is_kl(vae):
        mean, std, scaling = _latent_stats(vae, latents)
        return vae.decode(latents * std / scaling + mean).sample
    # Unknown autoencoder (the slow path): undo the usual scaling and hope the decode takes the rest.
    scaling = float(getattr(getattr(vae, "config", None), "scaling_factor", None) or 1.0)
    decoded = vae.decode(latents / scaling)
    return decoded.sample if hasattr(decoded, "sample") else decoded[0]


@contextlib.contextmanager
def _float32(vae: Any) -> Iterator[None]:
    """Run a half-precision VAE that asks for it (``force_upcast``, SDXL's) in float32, as pipelines decode."""
    dtype = getattr(vae, "dtype", torch.float32)
    upcast = dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False))
    if upcast:
        vae.to(torch.float32)
    try:
        yield
    finally:
        if upcast:
            vae.to(dtype)  # float16 -> float32 -> float16 is exact: the weights come back bit for bit


@dataclass(frozen=True)
class LatentPalette:
    """A linear map from one autoencoder's latents to RGB: ``rgb = weight.T @ latent + bias``, in [0, 1].

    ``scale`` is the autoencoder's pixels per latent (8 for SD, SDXL and MoVQ), ``error`` the fit's RMS error
    on its own samples (0..1 per channel), ``fit_s`` how long the fit took.
    """

    weight: torch.Tensor  # (latent channels, 3), float32
    bias: torch.Tensor  # (3,), float32
    scale: int
    error: float
    fit_s: float

    def rgb(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) latents to (B, 3, h, w) colours in [0, 1], on the latents' device."""
        weight = self.weight.to(latents.device)
        bias = self.bias.to(latents.device)
        colours = torch.einsum("bchw,cr->brhw", latents.float(), weight) + bias.view(1, 3, 1, 1)
        return colours.clamp(0.0, 1.0)


def _pixels(image: Image.Image, like: Any) -> torch.Tensor:
    from diffusers.image_processor import VaeImageProcessor

    processor = VaeImageProcessor(do_resize=False)
    return processor.preprocess(image).to(device=like.device, dtype=like.dtype)


def fit_palette(vae: Any) -> LatentPalette:
    """Fit a `LatentPalette` for ``vae`` now (uncached; `palette_for` caches). One encode and decode per sample.

    Each latent pixel is paired with the mean colour of the block of decoded pixels it covers; the least-squares
    solution with a bias column is the map. Works for any number of latent channels.
    """
    started = time.perf_counter()
    latents, targets = [], []
    with torch.no_grad(), _float32(vae):
        reference = next(vae.parameters())
        for name in FIT_SAMPLES:
            pixels = _pixels(samples.load(name, FIT_SIZE).image, reference)
            z = _encode(vae, pixels)
            decoded = (_decode(vae, z).float() / 2 + 0.5).clamp(0, 1)
            scale = decoded.shape[-1] // z.shape[-1]
            targets.append(torch.nn.functional.avg_pool2d(decoded, scale).flatten(2).transpose(1, 2).reshape(-1, 3))
            latents.append(z.float().flatten(2).transpose(1, 2).reshape(-1, z.shape[1]))
    x = torch.cat(latents).double().cpu()
    y = torch.cat(targets).double().cpu()
    design = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    solution = torch.linalg.lstsq(design, y).solution  # (C + 1, 3)
    error = float((design @ solution - y).pow(2).mean().sqrt())
    return LatentPalette(
        weight=solution[:-1].float(),
        bias=solution[-1].float(),
        scale=int(scale),
        error=error,
        fit_s=time.perf_counter() - started,
    )


_PALETTES: weakref.WeakKeyDictionary[Any, LatentPalette] = weakref.WeakKeyDictionary()
_FIT_LOCK = threading.Lock()


def palette_for(vae: Any) -> LatentPalette | None:
    """The cached palette of ``vae``, fitted on first use; None for an autoencoder of unknown kind (slow path)."""
    if not (_is_kl(vae) or _is_vq(vae)):
        return None
    with _FIT_LOCK:  # two checkpoints sharing one VAE object fit it once
        palette = _PALETTES.get(vae)
        if palette is None:
            palette = _PALETTES[vae] = fit_palette(vae)
    return palette


def _display_size(width: int, height: int) -> tuple[int, int]:
    """The run's pixel size, shrunk to `MAX_PREVIEW_SIDE` on its longest side."""
    longest = max(width, height)
    if longest <= MAX_PREVIEW_SIDE:
        return width, height
    return max(1, round(width * MAX_PREVIEW_SIDE / longest)), max(1, round(height * MAX_PREVIEW_SIDE / longest))


def _to_image(rgb: torch.Tensor) -> Image.Image:
    """(1, 3, h, w) in [0, 1] to a PIL RGB image (diffusers' converters)."""
    from diffusers.image_processor import VaeImageProcessor

    return VaeImageProcessor.numpy_to_pil(VaeImageProcessor.pt_to_numpy(rgb.float().cpu()))[0]


def render(vae: Any, x0: torch.Tensor) -> Image.Image:
    """The first image of a batch of x0 latents as a preview: palette colours upscaled, or a real decode."""
    latents = x0[:1].detach()
    if latents.ndim != 4:
        raise NotImplementedError(f"latents of shape {tuple(latents.shape)} (packed latents) cannot be previewed")
    palette = palette_for(vae)
    if palette is None:  # slow path: a full decode
        with torch.no_grad(), _float32(vae):
            decoded = _decode(vae, latents.to(next(vae.parameters()).dtype))
            image = _to_image((decoded.float() / 2 + 0.5).clamp(0, 1))
        return image.resize(_display_size(*image.size), Image.Resampling.BILINEAR)
    image = _to_image(palette.rgb(latents))
    size = _display_size(image.width * palette.scale, image.height * palette.scale)
    return image.resize(size, Image.Resampling.BILINEAR)


# --------------------------------------------------------------------------------------------------------
# The tap: wraps scheduler.step for one run.
# --------------------------------------------------------------------------------------------------------


class PreviewTap:
    """One run's previews: the step wrapper keeps the latest x0 source, `after_step` renders and delivers it.

    ``on_preview(step, total, image)`` is called after each step of ``steps``. Made by `tap`; not reused.
    """

    def __init__(self, pipeline: Any, on_preview: Callable[[int, int, Image.Image], Any], steps: list[int]) -> None:
        self.pipeline = pipeline
        self.on_preview = on_preview
        self.steps = frozenset(steps)
        self.shown = 0
        self.enabled = True
        self._next = 1  # the step the callback will report next
        self._x0: torch.Tensor | None = None  # reported by the scheduler
        self._inputs: tuple[Any, ...] | None = None  # or what computes it: model_output, sample, alpha, ...
        self._failure: Exception | None = None  # or why neither could be had

    @property
    def wanted(self) -> bool:
        """Whether the step now running will be previewed (other steps record nothing)."""
        return self.enabled and self._next in self.steps

    def record_inputs(self, scheduler: Any, arguments: Mapping[str, Any]) -> None:
        """Before the step: what `predicted_x0` needs, read while the scheduler's step index is current.

        Never raises: a scheduler this cannot handle is reported when the preview is rendered.
        """
        self._x0 = self._inputs = self._failure = None
        try:
            model_output, sample = arguments["model_output"], arguments["sample"]
            prediction_type = getattr(scheduler.config, "prediction_type", "epsilon")
            alpha = _alpha_prod(scheduler, arguments.get("timestep"))
            self._inputs = (model_output, sample, alpha, prediction_type, _sigma_space(scheduler))
        except Exception as error:  # kept for after_step, which turns it into the one notice
            self._failure = error

    def record(self, output: Any) -> None:
        """After the step: the scheduler's own x0 where its output reports one (then the inputs are not needed)."""
        reported = getattr(output, "pred_original_sample", None)
        if isinstance(reported, torch.Tensor):
            self._x0, self._inputs, self._failure = reported, None, None

    def x0(self) -> torch.Tensor:
        """The latest step's predicted clean latents."""
        if self._x0 is not None:
            return self._x0
        if self._inputs is not None:
            return _x0(*self._inputs)
        raise self._failure or RuntimeError("the scheduler's step was not seen during this step")

    def after_step(self, done: int, total: int) -> None:
        """Called by the step callback after step ``done`` of ``total``: render and deliver if it is due."""
        self._next = done + 1
        if not self.enabled or done >= total or done not in self.steps:
            return
        try:
            vae = autoencoder_of(self.pipeline)
            if vae is None:
                raise NotImplementedError(f"{type(self.pipeline).__name__} has no autoencoder to colour latents")
            self._deliver(vae, self.x0(), done, total)
            self.shown += 1
        except GenerationCancelled:
            raise  # a deliberate stop from the callback, not a preview failure
        except Exception as error:  # a preview must never cost the run
            self.enabled = False
            notice(f"previews stopped for this run ({type(error).__name__}: {error}); the run goes on.", once=False)
        finally:
            self._x0 = self._inputs = self._failure = None  # keep no latents alive between previews

    def _deliver(self, vae: Any, x0: torch.Tensor, done: int, total: int) -> None:
        self.on_preview(done, total, render(vae, x0))


class BatchPreviewTap(PreviewTap):
    """The previews of a batched run (`nbinpaint.runner.run_batch`): each sample's callback gets its own
    sample's preview (row ``index`` of the batch's x0), at its own steps. A callback may be None (that
    sample's owner asked for no previews)."""

    def __init__(self, pipeline: Any, samples: list[tuple[Callable[[int, int, Image.Image], Any] | None, list[int]]]):
        wanted = [frozenset(steps) if callback is not None else frozenset() for callback, steps in samples]
        super().__init__(pipeline, lambda *args: None, sorted(frozenset().union(*wanted)))
        self.samples = [(callback, steps) for (callback, _), steps in zip(samples, wanted, strict=True)]

    def _deliver(self, vae: Any, x0: torch.Tensor, done: int, total: int) -> None:
        for index, (callback, steps) in enumerate(self.samples):
            if callback is not None and done in steps:
                callback(done, total, render(vae, x0[index : index + 1]))


def _wrap_step(scheduler: Any, preview: PreviewTap) -> Callable[[], None]:
    """Shadow ``scheduler.step`` with a recording wrapper on the instance; returns the function that undoes it."""
    had_own = "step" in vars(scheduler)
    original = scheduler.step
    signature = inspect.signature(original)
    takes_return_dict = "return_dict" in signature.parameters

    def step(*args: Any, **kwargs: Any) -> Any:
        if not preview.wanted:
            return original(*args, **kwargs)
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:  # a call shape this wrapper does not understand: let the scheduler answer it
            return original(*args, **kwargs)
        preview.record_inputs(scheduler, bound.arguments)
        if not takes_return_dict:
            output = original(*args, **kwargs)
            preview.record(output)
            return output
        wants_dict = bound.arguments.get("return_dict", True)
        bound.arguments["return_dict"] = True  # to read pred_original_sample by name, whatever the caller asked
        output = original(*bound.args, **bound.kwargs)
        preview.record(output)
        return output if wants_dict or not hasattr(output, "to_tuple") else output.to_tuple()

    scheduler.step = step

    def restore() -> None:
        if had_own:
            scheduler.step = original
        else:
            del scheduler.step  # the class's method shows through again

    return restore


@contextlib.contextmanager
def tap(
    pipeline: Any, on_preview: Callable[[int, int, Image.Image], Any] | None, *, total: int, every: int | None = None
) -> Iterator[PreviewTap | None]:
    """Previews for one run of ``pipeline``: yields None without ``on_preview``, else a `PreviewTap`.

    While open, ``pipeline.scheduler.step`` is wrapped (the caller holds the checkpoint's lock, so no other
    run sees it); it is restored on leaving, whether the run ended, was cancelled or raised. The step callback
    must call ``tap.after_step(done, total)`` after every step. ``total`` is the number of denoising steps the
    run will take (``int(steps * strength)``), ``every`` a fixed period or None (see `preview_steps`).
    """
    if on_preview is None:
        yield None
        return
    with _tapped(pipeline, PreviewTap(pipeline, on_preview, preview_steps(total, every))) as preview:
        yield preview


@contextlib.contextmanager
def batch_tap(
    pipeline: Any,
    samples: list[tuple[Callable[[int, int, Image.Image], Any] | None, int | None]],
    *,
    total: int,
) -> Iterator[BatchPreviewTap | None]:
    """`tap` for a batched run: ``samples`` holds, per sample in batch order, its owner's ``(on_preview,
    every)``; each owner gets the preview of their own sample. Yields None when no owner wants previews."""
    if all(callback is None for callback, _ in samples):
        yield None
        return
    steps = [(callback, preview_steps(total, every)) for callback, every in samples]
    with _tapped(pipeline, BatchPreviewTap(pipeline, steps)) as preview:
        yield preview


@contextlib.contextmanager
def _tapped(pipeline: Any, preview: PreviewTap) -> Iterator[PreviewTap]:
    """``preview`` with ``pipeline.scheduler.step`` wrapped for the block (see `tap`)."""
    scheduler = getattr(pipeline, "scheduler", None)
    if scheduler is None or not callable(getattr(scheduler, "step", None)) or not preview.steps:
        yield preview  # nothing to wrap (a classical backend) or nothing to show: after_step stays a no-op
        return
    restore = _wrap_step(scheduler, preview)
    try:
        yield preview
    finally:
        restore()
