"""The manager contract: what every widget, chain, sweep and notebook may ask of a pipeline manager.

Two managers implement it: `nbinpaint.pipeline_manager.PipelineManager`, which loads and runs pipelines in
this kernel, and `nbinpaint.remote.RemoteManager`, which sends the same calls to a workshop server. Callers
use only these methods, so code written against one works with the other: no probing for optional
methods, no reading a pipeline object's signature when the manager can answer.

A test checks that both managers satisfy the protocol, method by method and keyword by keyword.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from nbinpaint.requests import InpaintRequest
    from nbinpaint.results import ChainResult, InpaintResult, PreviewCallback, StepCallback

__all__ = ["Manager"]


@runtime_checkable
class Manager(Protocol):
    """A pipeline manager, local or remote."""

    def get(
        self,
        repo_id: str,
        task: str = "inpaint",
        *,
        torch_dtype: Any = None,
        variant: str | None = None,
        controlnet: str | None = None,
    ) -> Any:
        """The pipeline for ``repo_id`` and ``task`` (remote: a description of the server's pipeline)."""

    def accepted_parameters(
        self,
        model: str,
        task: str = "inpaint",
        *,
        torch_dtype: Any = None,
        variant: str | None = None,
        controlnet: str | None = None,
    ) -> frozenset[str]:
        """The ``__call__`` parameters that model's pipeline for ``task`` takes (loading it if needed)."""

    def pipeline_class(
        self,
        model: str,
        task: str = "inpaint",
        *,
        torch_dtype: Any = None,
        variant: str | None = None,
        controlnet: str | None = None,
    ) -> str:
        """The class name of that pipeline, for messages (``"StableDiffusionInpaintPipeline"``)."""

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
        """Validate and run one request (from ``latents`` when a chain hands them on): one progress call per
        step, previews, stop within one step once ``should_stop()`` is true."""

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
        """Run ``requests`` in order, each from the previous stage's output (`nbinpaint.chains.run_chain`)."""

    def status(self) -> Any:
        """What is loaded (a table that renders in a notebook)."""

    def release(self, repo_id: str) -> dict[str, int]:
        """Free one checkpoint's memory; ``{"before": bytes, "after": bytes}``."""

    def release_all(self) -> dict[str, int]:
        """Free every checkpoint's memory."""
