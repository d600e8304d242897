"""Shared fixtures: twin mode for the whole session, and small deterministic inputs.

Twin mode is switched on here, before any test imports diffusers or huggingface_hub, so that the
tests never reach for the network even when run without `bash scripts/test` (which sets it too).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from nbinpaint import twins
from nbinpaint.pipeline_manager import PipelineManager

TWINS_DIR = twins.use_twins()
# Tests that make a History without a folder must not autosave into the working tree.
os.environ.setdefault("NBINPAINT_OUTPUT", "off")


@pytest.fixture(scope="session")
def twins_dir():
    """The hub-cache directory holding every twin (built once per machine, reused)."""
    return TWINS_DIR


@pytest.fixture
def manager() -> PipelineManager:
    """A fresh manager per test, so cache and eviction tests see only their own loads."""
    return PipelineManager(device="cpu")


def make_scene(size: int = 64, seed: int = 0) -> tuple[Image.Image, Image.Image]:
    """A small seeded RGB image and a mask with a white square in the middle (white = repaint)."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB")
    mask = np.zeros((size, size), np.uint8)
    mask[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 255
    return image, Image.fromarray(mask, "L")


@pytest.fixture
def scene() -> tuple[Image.Image, Image.Image]:
    return make_scene()
