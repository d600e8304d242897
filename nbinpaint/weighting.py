"""Prompt weighting: Compel syntax (``a cat++``, ``(a cat)1.3``, ``("a cat", "a dog").and()``) turned into embeddings.

The inpainting pipelines take ``prompt_embeds`` in place of ``prompt``; Compel builds them with each word's
weight applied. A weighted request carries the embeddings (and the negative prompt's, padded to the same
length) instead of text, so `PipelineManager.run` needs nothing special for it. Which embeddings a pipeline
needs is read from the pipeline: its ``__call__`` signature (``prompt_embeds``, ``pooled_prompt_embeds``)
and its tokenizer/text-encoder pairs.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from nbinpaint.errors import UnsupportedParameterError
from nbinpaint.requests import InpaintRequest, InpaintResult, accepted_parameters, new_seed

if TYPE_CHECKING:
    from nbinpaint.pipeline_manager import PipelineManager

__all__ = [
    "PromptEmbeddings",
    "compare",
    "encode",
    "has_weighting_syntax",
    "weighted_request",
]

# diffusers' naming of a pipeline's text encoders, in the order SDXL concatenates their hidden states.
TEXT_ENCODER_PAIRS = (("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2"))


def has_weighting_syntax(prompt: str | None) -> bool:
    """Whether Compel reads ``prompt`` differently from plain text: a weight, ``.and()``, ``.blend()``, ``.swap()``.

    Decided by Compel's own parser, so the answer matches what `weighted_request` will do. Plain grouping
    parentheses (weight 1) do not count; malformed syntax that Compel reads as text does not either.
    """
    if not prompt or not prompt.strip():
        return False
    if not any(sign in prompt for sign in "+-("):
        # Every Compel construct needs one of these (weights, groups, .and/.blend/.swap calls): a plain prompt
        # is answered without importing Compel, which pulls in transformers (seconds, on a new panel).
        return False
    return _parses_as_weighting(prompt)


@functools.lru_cache(maxsize=256)
def _parses_as_weighting(prompt: str) -> bool:
    """`has_weighting_syntax` for a non-blank prompt, remembered: Compel's parser takes ~7 ms a prompt, and the
    panel asks on every keystroke and again when each run starts and ends."""
    from compel import Compel
    from compel.prompt_parser import Blend, CrossAttentionControlSubstitute, FlattenedPrompt

    try:
        conjunction = Compel.parse_prompt_string(prompt)
    except Exception:  # Compel's parser raises on some malformed input; that text is not weighting syntax
        return False
    if len(conjunction.prompts) > 1 or any(weight != 1.0 for weight in conjunction.weights):
        return True
    for part in conjunction.prompts:
        if isinstance(part, Blend) or not isinstance(part, FlattenedPrompt):
            return True
        for fragment in part.children:
            if isinstance(fragment, CrossAttentionControlSubstitute) or getattr(fragment, "weight", 1.0) != 1.0:
                return True
    return False


@dataclass(frozen=True)
class PromptEmbeddings:
    """Compel's embeddings for a prompt and its negative, padded to one length; pooled ones for SDXL."""

    prompt_embeds: torch.Tensor
    negative_prompt_embeds: torch.Tensor
    pooled_prompt_embeds: torch.Tensor | None = None
    negative_pooled_prompt_embeds: torch.Tensor | None = None


def encode(pipeline: Any, prompt: str, negative_prompt: str | None = None) -> PromptEmbeddings:
    """Weighted embeddings of ``prompt`` and ``negative_prompt`` for ``pipeline``, built with Compel.

    Stable Diffusion 1.x/2.x: one encoder, its last (normalised) hidden states, as the pipeline's own
    ``encode_prompt`` takes. SDXL (the pipeline takes ``pooled_prompt_embeds``): every encoder's penultimate
    non-normalised hidden states, side by side, and the pooled embedding of the last encoder
    (``ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED`` with ``requires_pooled`` only on
    the second, as Compel's docs say). One Compel per encoder rather than Compel's list form: the list
    form is deprecated in Compel 2.5, and the SDXL refiner has only the second encoder.

    Without a negative prompt, an SDXL pipeline configured with ``force_zeros_for_empty_prompt`` gets zero
    negative embeddings, exactly what it would use itself; every other pipeline gets the empty prompt's.
    """
    from compel import Compel, ReturnedEmbeddingsType

    accepted = _check_pipeline(pipeline)
    pooled = "pooled_prompt_embeds" in accepted
    pairs = [
        (getattr(pipeline, tokenizer, None), getattr(pipeline, encoder, None))
        for tokenizer, encoder in TEXT_ENCODER_PAIRS
    ]
    pairs = [(tokenizer, encoder) for tokenizer, encoder in pairs if tokenizer is not None and encoder is not None]
    zero_negative = pooled and negative_prompt is None and bool(pipeline.config.get("force_zeros_for_empty_prompt"))
    texts = [prompt] if zero_negative else [prompt, negative_prompt or ""]

    hidden: list[torch.Tensor] = []
    pooled_embeds: torch.Tensor | None = None
    for index, (tokenizer, encoder) in enumerate(pairs):
        last = index == len(pairs) - 1
        compel = Compel(
            tokenizer=tokenizer,
            text_encoder=encoder,
            returned_embeddings_type=(
                ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED
                if pooled
                else ReturnedEmbeddingsType.LAST_HIDDEN_STATES_NORMALIZED
            ),
            requires_pooled=pooled and last,
            truncate_long_prompts=True,  # as the pipelines' own encode_prompt: 77 tokens per prompt part
            # Where the pipeline runs its encoders (with CPU offload, not where the weights rest).
            device=str(getattr(pipeline, "_execution_device", encoder.device)),
        )
        # A list call encodes each text and pads them to one length with
        # Compel.pad_conditioning_tensors_to_same_length (`.and()` makes a prompt 77 tokens per part).
        output = compel(texts)
        if pooled and last:
            output, pooled_embeds = output
        hidden.append(output)
    embeds = torch.cat(hidden, dim=-1)
    positive = embeds[:1]
    if zero_negative:
        negative = torch.zeros_like(positive)
        negative_pooled = torch.zeros_like(pooled_embeds[:1]) if pooled_embeds is not None else None
    else:
        negative = embeds[1:2]
        negative_pooled = pooled_embeds[1:2] if pooled_embeds is not None else None
    return PromptEmbeddings(
        prompt_embeds=positive,
        negative_prompt_embeds=negative,
        pooled_prompt_embeds=pooled_embeds[:1] if pooled_embeds is not None else None,
        negative_pooled_prompt_embeds=negative_pooled,
    )


def weighted_request(request: InpaintRequest, pipeline: Any) -> InpaintRequest:
    """A copy of ``request`` with its prompt and negative prompt moved into Compel embeddings for ``pipeline``.

    ``pipeline`` is the one the request will run on (``manager.get(request.model, request.task, ...)``).
    A request that already carries ``prompt_embeds`` is returned as it is. SDXL's pooled embeddings go into
    `InpaintRequest` fields of that name where the request has them, else into ``extra``.
    """
    if request.prompt_embeds is not None:
        return request
    embeddings = encode(pipeline, request.prompt, request.negative_prompt)
    changes: dict[str, Any] = {
        "prompt": "",
        "negative_prompt": None,
        "prompt_embeds": embeddings.prompt_embeds,
        "negative_prompt_embeds": embeddings.negative_prompt_embeds,
    }
    if embeddings.pooled_prompt_embeds is not None:
        pooled = {
            "pooled_prompt_embeds": embeddings.pooled_prompt_embeds,
            "negative_pooled_prompt_embeds": embeddings.negative_pooled_prompt_embeds,
        }
        fields = {f.name for f in dataclasses.fields(InpaintRequest)}
        if set(pooled) <= fields:
            changes.update(pooled)
        else:
            changes["extra"] = {**request.extra, **pooled}
    return request.replace(**changes)


def compare(request: InpaintRequest, manager: PipelineManager | None = None) -> tuple[InpaintResult, InpaintResult]:
    """The same request run twice with one seed, prompt as plain text and as Compel weights: (plain, weighted).

    What the studio's weighting toggle shows side by side. The weighted result's recipe records the prompt
    text under ``prompt_weighting`` (its request holds only the embeddings).
    """
    from nbinpaint.session import shared_manager

    manager = manager or shared_manager()
    checked = request.validated()
    if checked.seed is None:
        checked = checked.replace(seed=new_seed())
    pipeline = manager.get(
        checked.model, checked.task, torch_dtype=checked.dtype, variant=checked.variant, controlnet=checked.controlnet
    )
    weighted_version = weighted_request(checked, pipeline)  # before any run: a Kandinsky request fails fast
    plain = manager.run(checked)
    weighted = manager.run(weighted_version)
    weighted.recipe["prompt_weighting"] = {
        "syntax": "compel",
        "prompt": checked.prompt,
        "negative_prompt": checked.negative_prompt,
    }
    return plain, weighted


def _check_pipeline(pipeline: Any) -> frozenset[str]:
    """The pipeline's ``__call__`` parameters, if it can take Compel's embeddings at all."""
    accepted = accepted_parameters(pipeline)
    has_encoder = any(getattr(pipeline, encoder, None) is not None for _, encoder in TEXT_ENCODER_PAIRS)
    if "prompt_embeds" not in accepted or not has_encoder:
        raise UnsupportedParameterError(
            f"prompt weighting needs a pipeline that takes text-encoder prompt_embeds, and {type(pipeline).__name__} "
            "does not: Kandinsky 2.2 turns the prompt into a CLIP image embedding with its prior, so Compel's "
            "weights have nowhere to go. Turn prompt weighting off (and remove the weighting syntax from the "
            "prompt), or choose a Stable Diffusion or SDXL model, e.g. 'runwayml/stable-diffusion-inpainting'."
        )
    return accepted
