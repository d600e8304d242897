"""Prompt weighting with Compel on the twins: the embeddings reach the pipeline, and mean what the pipeline means."""

from __future__ import annotations

import functools
import sys
from typing import Any

import pytest
import torch

from nbinpaint import weighting
from nbinpaint.errors import InvalidRequestError
from nbinpaint.requests import InpaintRequest
from tests.conftest import make_scene

SD_INPAINT = "runwayml/stable-diffusion-inpainting"
SDXL_INPAINT = "diffusers/stable-diffusion-xl-1.0-inpainting-0.1"
KANDINSKY = "kandinsky-community/kandinsky-2-2-decoder-inpaint"


def spy_calls(monkeypatch: pytest.MonkeyPatch, pipeline: Any) -> list[dict[str, Any]]:
    """Record the keyword arguments of every call of ``pipeline``'s class (signature kept by functools.wraps)."""
    calls: list[dict[str, Any]] = []
    original = type(pipeline).__call__

    @functools.wraps(original)
    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(pipeline), "__call__", spy)
    return calls


def small_request(model: str, **changes: Any) -> InpaintRequest:
    image, mask = make_scene(64)
    base = InpaintRequest(prompt="a castle++ by a lake", image=image, mask=mask, model=model, steps=2, seed=4)
    return base.replace(**changes)


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a cat++", True),
        ("a cat-", True),
        ("(a cat)1.3", True),
        ('("a cat", "a dog").and()', True),
        ('("a cat", "a dog").blend(0.7, 0.3)', True),
        ('a "cat".swap("dog")', True),
        ("a cat", False),
        ("a cat (black)", False),  # grouping with weight 1 changes nothing
        ("a cat, 3.5 inches tall", False),
        ("", False),
        (None, False),
    ],
)
def test_has_weighting_syntax(prompt, expected):
    assert weighting.has_weighting_syntax(prompt) is expected


def test_a_plain_prompt_is_answered_without_compel(monkeypatch):
    monkeypatch.setitem(sys.modules, "compel", None)  # importing it now raises ImportError
    assert weighting.has_weighting_syntax("a lighthouse at dusk, 35 mm photo") is False
    with pytest.raises(ImportError):
        weighting.has_weighting_syntax("a lighthouse at dusk++ (never seen before)")


def test_sd_embeds_reach_the_pipeline_and_differ_from_plain(manager, twins_dir, monkeypatch):
    pipeline = manager.get(SD_INPAINT)
    request = weighting.weighted_request(small_request(SD_INPAINT, negative_prompt="blurry"), pipeline)
    assert request.prompt == "" and request.negative_prompt is None

    calls = spy_calls(monkeypatch, pipeline)
    manager.run(request)
    kwargs = calls[0]
    hidden = pipeline.text_encoder.config.hidden_size
    assert "prompt" not in kwargs and "negative_prompt" not in kwargs
    assert kwargs["prompt_embeds"].shape == kwargs["negative_prompt_embeds"].shape == (1, 77, hidden)

    # A plain prompt through Compel is exactly the pipeline's own encoding; the weight changes it.
    plain = weighting.encode(pipeline, "a castle by a lake", "blurry")
    own, own_negative = pipeline.encode_prompt("a castle by a lake", "cpu", 1, True, "blurry")
    torch.testing.assert_close(plain.prompt_embeds, own, rtol=0, atol=1e-6)
    torch.testing.assert_close(plain.negative_prompt_embeds, own_negative, rtol=0, atol=1e-6)
    assert not torch.allclose(kwargs["prompt_embeds"], plain.prompt_embeds)


def test_sdxl_pooled_embeds_reach_the_pipeline(manager, twins_dir, monkeypatch):
    pipeline = manager.get(SDXL_INPAINT)
    request = weighting.weighted_request(small_request(SDXL_INPAINT), pipeline)

    calls = spy_calls(monkeypatch, pipeline)
    manager.run(request)
    kwargs = calls[0]
    width = pipeline.text_encoder.config.hidden_size + pipeline.text_encoder_2.config.hidden_size
    projection = pipeline.text_encoder_2.config.projection_dim
    assert kwargs["prompt_embeds"].shape == (1, 77, width)
    assert kwargs["pooled_prompt_embeds"].shape == kwargs["negative_pooled_prompt_embeds"].shape == (1, projection)
    # No negative prompt and force_zeros_for_empty_prompt: zeros, as the pipeline itself would use.
    assert not kwargs["negative_prompt_embeds"].any() and not kwargs["negative_pooled_prompt_embeds"].any()

    plain = weighting.encode(pipeline, "a castle by a lake", "blurry")
    own = pipeline.encode_prompt("a castle by a lake", device="cpu", negative_prompt="blurry")
    for mine, theirs in zip(
        (
            plain.prompt_embeds,
            plain.negative_prompt_embeds,
            plain.pooled_prompt_embeds,
            plain.negative_pooled_prompt_embeds,
        ),
        own,
        strict=True,
    ):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-6)
    assert not torch.allclose(kwargs["prompt_embeds"], plain.prompt_embeds)


def test_and_prompt_and_negative_are_padded_to_one_length(manager, twins_dir):
    pipeline = manager.get(SD_INPAINT)
    embeds = weighting.encode(pipeline, '("a castle", "a lake").and()', "blurry")
    assert embeds.prompt_embeds.shape[1] == embeds.negative_prompt_embeds.shape[1] == 2 * 77


def test_compare_runs_plain_and_weighted_with_one_seed(manager, twins_dir):
    plain, weighted = weighting.compare(small_request(SD_INPAINT, seed=None), manager)
    assert plain.seed == weighted.seed
    assert plain.request.prompt == "a castle++ by a lake" and plain.request.prompt_embeds is None
    assert weighted.request.prompt_embeds is not None
    assert weighted.recipe["prompt_weighting"]["prompt"] == "a castle++ by a lake"
    assert plain.image.tobytes() != weighted.image.tobytes()


def test_kandinsky_refuses_weighting_with_the_fix(manager, twins_dir):
    pipeline = manager.get(KANDINSKY)
    with pytest.raises(InvalidRequestError, match=r"Kandinsky 2\.2.*Turn prompt weighting off"):
        weighting.weighted_request(small_request(KANDINSKY), pipeline)
    with pytest.raises(InvalidRequestError, match="prompt_embeds"):
        weighting.compare(small_request(KANDINSKY), manager)
    assert manager.status().rows[0]["runs"] == 0  # refused before the plain run too
