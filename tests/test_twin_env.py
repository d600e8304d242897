"""Twin mode from the environment alone, as a JupyterHub admin sets it for every kernel, and hostile env values.

The other tests run with ``HF_HUB_CACHE`` pointed at the twins by conftest (`use_twins`), which hides whether
``NBINPAINT_TWINS=1`` by itself is enough: these run in fresh interpreters whose environment has no hub
setting at all.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nbinpaint import twins
from nbinpaint.errors import ConfigurationError, InvalidRequestError
from nbinpaint.pipeline_manager import PipelineManager
from nbinpaint.requests import InpaintRequest

_RUN = """
import sys
if sys.argv[1] == "hub-first":  # huggingface_hub reads HF_HUB_CACHE into its constants at import
    import diffusers, huggingface_hub  # noqa: F401
import numpy as np
from PIL import Image
import nbinpaint
from nbinpaint.requests import InpaintRequest

assert nbinpaint.twin_mode()
image = Image.new("RGB", (64, 64), (90, 120, 150))
mask = np.zeros((64, 64), np.uint8)
mask[16:48, 16:48] = 255
manager = nbinpaint.PipelineManager(device="cpu")
result = manager.run(InpaintRequest(prompt="a castle", image=image, mask=mask, steps=1, seed=3,
                                    model="runwayml/stable-diffusion-inpainting"))
assert result.image.size == (64, 64) and manager.status().rows[0]["twin"]
print("RAN", sys.argv[1])
"""


def bare_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """The current environment without any hub or nbinpaint setting, plus ``settings``."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "NBINPAINT_"))
    }
    env["HF_HOME"] = str(tmp_path / "empty-hf-home")  # nothing to fall back on but the twins
    env["NBINPAINT_OUTPUT"] = "off"
    env.update(settings)
    return env


@pytest.mark.parametrize("order", ["nbinpaint-first", "hub-first"])
def test_nbinpaint_twins_alone_loads_and_runs_a_twin_by_repo_id(twins_dir, tmp_path, order):
    env = bare_env(tmp_path, NBINPAINT_TWINS="1", NBINPAINT_TWINS_DIR=str(twins_dir))
    result = subprocess.run(
        [sys.executable, "-c", _RUN, order], env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert f"RAN {order}" in result.stdout
    assert "turn on twin mode" not in result.stdout + result.stderr


@pytest.mark.parametrize("value", ["garbage", "2", "enable", "y e s"])
def test_an_unknown_nbinpaint_twins_value_names_the_variable_and_the_values(monkeypatch, value):
    monkeypatch.setenv("NBINPAINT_TWINS", value)
    with pytest.raises(ConfigurationError, match=r"NBINPAINT_TWINS=.* set it to 1 .* or to 0"):
        twins.twin_mode()


@pytest.mark.parametrize(
    ("value", "on"), [("yes", True), ("ON", True), (" true ", True), ("0", False), ("false", False), ("off", False)]
)
def test_the_usual_spellings_of_on_and_off_are_understood(monkeypatch, value, on):
    monkeypatch.setenv("NBINPAINT_TWINS", value)
    assert twins.twin_mode() is on


def test_a_missing_twins_folder_names_the_variable_and_how_to_build_it(monkeypatch, tmp_path, scene):
    missing = tmp_path / "no-such-folder"
    monkeypatch.setattr(twins, "_active", None)  # as in a kernel where use_twins was never called
    monkeypatch.setenv("NBINPAINT_TWINS_DIR", str(missing))
    with pytest.raises(ConfigurationError, match=r"NBINPAINT_TWINS_DIR=.*names no folder.*python -m nbinpaint twins"):
        PipelineManager(device="cpu").get("runwayml/stable-diffusion-inpainting")
    assert not missing.exists()


@pytest.mark.parametrize("value", ["abc", "-5", "inf", "nan", "1e999"])
def test_a_bad_max_pixels_variable_is_named_with_the_fix(monkeypatch, value, scene):
    monkeypatch.setenv("NBINPAINT_MAX_PIXELS", value)
    image, mask = scene
    with pytest.raises(InvalidRequestError, match=r"environment variable NBINPAINT_MAX_PIXELS=.*use e.g.*or unset it"):
        InpaintRequest(image=image, mask=mask, model="runwayml/stable-diffusion-inpainting").validated()
