"""The manager contract: what every widget, chain, sweep and notebook may ask of a pipeline manager.

Two managers implement it: `nbinpaint.pipeline_manager.PipelineManager`, which loads and runs pipelines in
this kernel, and `nbinpaint.remote.RemoteManager`, which sends the same calls to a workshop server. Callers
use only the public methods below, so code written against one works with the other: no probing for
optional methods, no reading a pipeline object's signature when the manager can answer.

The public methods are written here once, over four primitives each manager provides (``_pipeline``,
``_describe``, ``_execute``, ``_execute_chain``) plus ``status`` and ``release``: both managers subclass
`Manager`, so the keywords of ``run`` are the same everywhere by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from nbinpaint.results import RunOptions
from nbinpaint.segmenter import DEFAULT_SEGMENTER

if TYPE_CHECKING:
    from nbinpaint.requests import InpaintRequest
    from nbinpaint.results import ChainResult, InpaintResult, PreviewCallback, StepCallback

__all__ = ["Manager", "PipelineKey"]


@dataclass(frozen=True)
class PipelineKey:
    """Which pipeline: a checkpoint, a task, and how it is loaded."""

    model: str
    task: str = "inpaint"
    torch_dtype: Any = None
    variant: str | None = None
    controlnet: str | None = None
    #: A LoRA fused into the weights (`nbinpaint.lora`), and its scale (None: 1.0).
    lora: str | None = None
    lora_scale: float | None = None
    #: The checkpoint's PAG pipeline (``from_pipe(..., enable_pag=True)``).
    enable_pag: bool = False
    #: "4bit" or "8bit" weights (bitsandbytes) on an accelerator; None: the dtype's full weights.
    quantize: str | None = None

    @classmethod
    def of(cls, request: InpaintRequest) -> PipelineKey:
        """The pipeline a request runs on."""
        return cls(
            request.model,
            request.task,
            request.dtype,
            request.variant,
            request.controlnet,
            request.lora,
            request.lora_scale,
            bool(request.enable_pag),
            quantize=request.quantize,
        )


@runtime_checkable
class Manager(Protocol):
    """A pipeline manager, local or remote."""

    # -- what each manager provides ------------------------------------------------------------------------

    def _pipeline(self, key: PipelineKey) -> Any:
        """The pipeline (remote: a description of the server's pipeline), loaded if needed."""

    def _describe(self, key: PipelineKey) -> tuple[str, frozenset[str]]:
        """(pipeline class name, the parameters its ``__call__`` takes)."""

    def _execute(self, request: InpaintRequest, latents: Any, options: RunOptions) -> InpaintResult:
        """Validate and run one request, reporting and stopping as ``options`` say."""

    def _execute_chain(self, requests: Sequence[InpaintRequest], name: str, options: RunOptions) -> ChainResult:
        """Run a chain, each stage from the previous one's output."""

    def _segmenter(self, repo_id: str, torch_dtype: Any) -> Any:
        """A loaded `nbinpaint.segmenter.Segmenter` (remote: an error, it runs in the kernel only for now)."""

    def status(self) -> Any:
        """What is loaded (a table that renders in a notebook)."""

    def release(self, repo_id: str) -> dict[str, int]:
        """Free one checkpoint's memory; ``{"before": bytes, "after": bytes}``."""

    def release_all(self) -> dict[str, int]:
        """Free every checkpoint's memory."""

    # -- the public methods, written once --------------------------------------------------------------------

    def get(
        self,
        repo_id: str,
        task: str = "inpaint",
        *,
        torch_dtype: Any = None,
        variant: str | None = None,
        controlnet: str | None = None,
        lora: str | None = None,
        lora_scale: float | None = None,
        enable_pag: bool = False,
        quantize: str | None = None,
    ) -> Any:
        """The pipeline for ``repo_id`` and ``task``, loaded once and then served from the cache (remote: a
        description of the server's pipeline, which runs only there). ``lora`` fuses a LoRA into its own copy
        of the checkpoint; ``enable_pag`` gives the checkpoint's PAG pipeline (see `nbinpaint.lora`);
        ``quantize="4bit"|"8bit"`` loads the denoiser and T5 through bitsandbytes on an accelerator (on a CPU:
        full weights, with a notice)."""
        return self._pipeline(
            PipelineKey(
                repo_id, task, torch_dtype, variant, controlnet, lora, lora_scale, enable_pag, quantize=quantize
            )
        )

    def segmenter(self, repo_id: str = DEFAULT_SEGMENTER, *, torch_dtype: Any = None) -> Any:
        """The Segment Anything model and processor of ``repo_id`` (a `nbinpaint.segmenter.Segmenter`), loaded once
        and cached, budgeted and placed like a pipeline; `nbinpaint.segment` asks it for masks."""
        return self._segmenter(repo_id, torch_dtype)

    def accepted_parameters(self, model: str, task: str = "inpaint", **how: Any) -> frozenset[str]:
        """The ``__call__`` parameters ``model``'s pipeline for ``task`` takes (loading it if needed); ``how``
        is `get`'s ``torch_dtype``, ``variant``, ``controlnet``, ``lora``, ``lora_scale``, ``enable_pag`` and
        ``quantize``."""
        return self._describe(PipelineKey(model, task, **how))[1]

    def pipeline_class(self, model: str, task: str = "inpaint", **how: Any) -> str:
        """The class name of that pipeline, for messages (``"StableDiffusionInpaintPipeline"``)."""
        return self._describe(PipelineKey(model, task, **how))[0]

    def run(
        self,
        request: InpaintRequest,
        *,
        latents: Any = None,
        on_step: StepCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_preview: PreviewCallback | None = None,
        preview_every: int | None = None,
        recipe_extra: Mapping[str, Any] | None = None,
    ) -> InpaintResult:
        """Validate, load (or reuse) the pipeline, and run ``request``: the one road every generation takes.

        ``latents`` start the run from a previous stage's latents (a chain's hand-off) instead of
        ``request.image``. ``on_step(step, total, tensors)`` is called once per denoising step (remote: no
        tensors), ``on_preview(step, total, image)`` every ``preview_every`` steps, and once ``should_stop()``
        is true the run ends with `GenerationCancelled` at the end of that step. ``recipe_extra`` adds
        entries to the result's recipe (a chain's stage, a studio's mask checksum).
        """
        options = RunOptions(on_step, should_stop, on_preview, preview_every, recipe_extra)
        return self._execute(request, latents, options)

    def run_chain(
        self,
        requests: Sequence[InpaintRequest],
        *,
        name: str = "chain",
        on_step: StepCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_preview: PreviewCallback | None = None,
        preview_every: int | None = None,
    ) -> ChainResult:
        """Run ``requests`` in order, each from the previous stage's output (see `nbinpaint.handoff`); the
        callbacks are `run`'s, called for every stage's steps."""
        return self._execute_chain(list(requests), name, RunOptions(on_step, should_stop, on_preview, preview_every))
