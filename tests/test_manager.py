"""The shared pipeline manager on the tiny twins, offline: loading, sharing, caching, memory, locks, errors."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from nbinpaint import notices
from nbinpaint.errors import InvalidRequestError, ModelLoadError, UnsupportedParameterError
from nbinpaint.pipeline_manager import PipelineManager, resolve_dtype, storages_of
from nbinpaint.requests import InpaintRequest
from tests.conftest import make_scene

SD_INPAINT = "runwayml/stable-diffusion-inpainting"
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
KANDINSKY = "kandinsky-community/kandinsky-2-2-decoder-inpaint"


def small_request(**changes) -> InpaintRequest:
    image, mask = make_scene(64)
    base = InpaintRequest(prompt="a castle", image=image, mask=mask, steps=2, seed=7, model=SD_INPAINT)
    return base.replace(**changes)


def test_cache_hit_returns_the_same_object(manager, twins_dir):
    first = manager.get(SD_INPAINT)
    started = time.perf_counter()
    again = manager.get(SD_INPAINT)
    assert again is first
    assert time.perf_counter() - started < 0.05


def test_from_pipe_shares_every_storage(manager, twins_dir):
    inpaint = manager.get(SD15, "inpaint")
    before = manager.resident_bytes()
    img2img = manager.get(SD15, "img2img")
    text2img = manager.get(SD15, "text2img")
    assert type(img2img).__name__ == "StableDiffusionImg2ImgPipeline"
    assert type(text2img).__name__ == "StableDiffusionPipeline"
    assert set(storages_of(img2img)) == set(storages_of(inpaint)) == set(storages_of(text2img))
    assert img2img.unet is inpaint.unet
    assert manager.resident_bytes() == before  # zero extra parameter bytes
    assert manager.status().rows[0]["tasks"] == ["inpaint", "img2img", "text2img"]


def test_lru_eviction_keeps_resident_bytes_under_budget(twins_dir):
    probe = PipelineManager(device="cpu")
    probe.get(SD_INPAINT)
    one = probe.resident_bytes()
    manager = PipelineManager(device="cpu", memory_budget=int(one * 1.5))
    for repo in (SD_INPAINT, SD15, "nitrosocke/elden-ring-diffusion", SD_INPAINT):
        manager.get(repo)
        assert manager.resident_bytes() <= manager.memory_budget
    assert [row["model"] for row in manager.status().rows] == [SD_INPAINT]


def test_fp16_on_cpu_runs_as_float32_with_one_notice(manager, twins_dir, capsys):
    notices.reset()
    assert resolve_dtype("float16", "cpu") == torch.float32
    pipeline = manager.get(SD_INPAINT, torch_dtype=torch.float16, variant="fp16")
    assert pipeline.unet.dtype == torch.float32
    assert "float16 asked on CPU runs as float32" in capsys.readouterr().out
    assert resolve_dtype("float16", "cuda") == torch.float16
    assert resolve_dtype(None, "cuda") == torch.float16 and resolve_dtype(None, "cpu") == torch.float32


def test_offload_on_cpu_is_a_noop_with_notice(capsys):
    notices.reset()
    manager = PipelineManager(device="cpu", offload="model")
    assert manager.offload == "none"
    assert "does nothing on a CPU" in capsys.readouterr().out


def test_same_seed_same_pixels_and_twin_recipe(manager, twins_dir):
    first = manager.run(small_request())
    second = manager.run(small_request())
    assert np.array_equal(np.array(first.image), np.array(second.image))
    other = manager.run(small_request(seed=8))
    assert not np.array_equal(np.array(first.image), np.array(other.image))
    assert first.recipe["twin"] is True and "twin" in first.recipe["note"]
    assert first.recipe["model"] == SD_INPAINT and first.recipe["seed"] == 7
    assert first.image.size == (64, 64)


def test_unsupported_parameter_is_refused_before_running(manager, twins_dir):
    request = small_request(model=KANDINSKY, strength=0.5, extra={"prior_num_inference_steps": 2})
    with pytest.raises(UnsupportedParameterError, match="strength is not accepted by KandinskyV22InpaintCombined"):
        manager.run(request)


def test_kandinsky_runs_with_its_own_parameters(manager, twins_dir):
    request = small_request(model=KANDINSKY, extra={"prior_num_inference_steps": 2})
    result = manager.run(request)
    assert result.image.size == (64, 64)
    assert result.recipe["pipeline"] == "KandinskyV22InpaintCombinedPipeline"


def test_hub_unreachable_without_twin_mode_names_repo_and_fix(tmp_path):
    """A fresh process, twin mode off, an empty cache and no hub: a clear error, never a silent twin."""
    code = (
        "import nbinpaint\n"
        "try:\n"
        "    nbinpaint.PipelineManager(device='cpu').get('runwayml/stable-diffusion-inpainting')\n"
        "except nbinpaint.ModelLoadError as error:\n"
        "    print('MESSAGE', error)\n"
    )
    env = {**os.environ, "NBINPAINT_TWINS": "0", "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    message = next(line for line in out.stdout.splitlines() if line.startswith("MESSAGE"))
    assert "runwayml/stable-diffusion-inpainting" in message
    assert "nbinpaint.use_twins()" in message and "NBINPAINT_TWINS=1" in message


def test_pickle_only_checkpoint_is_refused_unless_allowed(manager, twins_dir, tmp_path):
    manager.get(SD_INPAINT).save_pretrained(tmp_path, safe_serialization=False)
    # (transformers 5 writes the text encoder as safetensors regardless; the UNet and VAE are pickles)
    assert not list((tmp_path / "unet").glob("*.safetensors")) and list((tmp_path / "unet").glob("*.bin"))
    with pytest.raises(ModelLoadError, match="no safetensors weights.*allow_pickle=True"):
        manager.get(str(tmp_path))
    trusting = PipelineManager(device="cpu", allow_pickle=True)
    assert type(trusting.get(str(tmp_path))).__name__ == "StableDiffusionInpaintPipeline"


def test_compile_denoiser_wraps_the_unet_once(twins_dir):
    manager = PipelineManager(device="cpu", compile_denoiser=True)
    inpaint = manager.get(SD_INPAINT)
    img2img = manager.get(SD_INPAINT, "img2img")
    assert hasattr(inpaint.unet, "_orig_mod")  # torch.compile's wrapper; compiles lazily at the first call
    assert img2img.unet is inpaint.unet and not hasattr(inpaint.unet._orig_mod, "_orig_mod")


def test_unknown_repo_in_twin_mode_lists_the_twins(manager, twins_dir):
    with pytest.raises(ModelLoadError, match="no twin of it.*runwayml/stable-diffusion-inpainting"):
        manager.get("someone/not-a-twin")


def test_failed_load_leaves_previous_state_usable(manager, twins_dir):
    pipeline = manager.get(SD_INPAINT)
    with pytest.raises(ModelLoadError):
        manager.get("someone/not-a-twin")
    assert manager.get(SD_INPAINT) is pipeline
    assert manager.run(small_request()).image.size == (64, 64)


def test_unknown_task_lists_the_tasks(manager):
    with pytest.raises(InvalidRequestError, match="inpaint, img2img, text2img"):
        manager.get(SD_INPAINT, "upscale")


def test_runs_of_one_checkpoint_never_overlap(manager, twins_dir):
    pipeline = manager.get(SD_INPAINT)
    active, overlaps = [0], []
    original = type(pipeline).__call__

    @functools.wraps(original)  # keeps the signature the request layer reads
    def spy(self, *args, **kwargs):
        active[0] += 1
        overlaps.append(active[0])
        try:
            time.sleep(0.05)
            return original(self, *args, **kwargs)
        finally:
            active[0] -= 1

    pipeline.__class__ = type("Spied", (type(pipeline),), {"__call__": spy})
    results = []
    threads = [
        threading.Thread(target=lambda s=s: results.append(manager.run(small_request(seed=s)))) for s in range(3)
    ]
    # (a thread's exception would leave `results` short, failing the assert below)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert max(overlaps) == 1
    assert sorted(r.seed for r in results) == [0, 1, 2]


def test_release_drops_references(manager, twins_dir, capsys):
    import gc
    import weakref

    unet_ref = weakref.ref(manager.get(SD_INPAINT).unet)
    manager.release(SD_INPAINT)
    gc.collect()
    assert unet_ref() is None
    assert manager.status().rows == []
    assert "released runwayml/stable-diffusion-inpainting" in capsys.readouterr().out


def test_offload_hooks_live_on_exactly_one_pipeline():
    """Switching between from_pipe siblings removes hooks from the old one before installing on the new."""
    calls = []

    class Fake:
        def __init__(self, name):
            self.name = name

        def enable_model_cpu_offload(self, device):
            calls.append(("enable", self.name))

        def remove_all_hooks(self):
            calls.append(("remove", self.name))

    from nbinpaint.pipeline_manager import _Checkpoint

    manager = PipelineManager(device="cpu")
    manager.device, manager.offload = "cuda", "model"  # as on a GPU machine
    a, b = Fake("inpaint"), Fake("img2img")
    checkpoint = _Checkpoint("repo", torch.float16, {"inpaint": a, "img2img": b})
    for pipeline in (a, a, b, a):
        manager._activate(checkpoint, pipeline)
    assert calls == [
        ("enable", "inpaint"),
        ("remove", "inpaint"),
        ("enable", "img2img"),
        ("remove", "img2img"),
        ("enable", "inpaint"),
    ]


def test_status_table_lists_what_is_loaded(manager, twins_dir):
    manager.get(SD_INPAINT)
    status = manager.status()
    row = status.rows[0]
    assert row["model"] == SD_INPAINT and row["dtype"] == "float32" and row["bytes"] > 0 and row["twin"]
    assert SD_INPAINT in str(status) and "<table>" in status._repr_html_()


@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.float64, "int8", 16])
def test_a_dtype_a_pipeline_cannot_run_in_is_refused_before_loading(manager, dtype):
    with pytest.raises(InvalidRequestError, match=r"(dtype=.*cannot run a diffusion pipeline|unknown dtype)"):
        manager.get(SD_INPAINT, torch_dtype=dtype)
    with pytest.raises(InvalidRequestError, match="float16|float32"):
        manager.run(small_request(dtype=dtype))
    assert manager.status().rows == []


def test_a_local_folder_that_is_not_a_model_says_so_in_twin_mode(manager, twins_dir, tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelLoadError, match=r"not a diffusers pipeline \(it has no model_index.json") as raised:
        manager.get(str(tmp_path))
    assert "cannot be reached" not in str(raised.value) and "twin" not in str(raised.value)
    with pytest.raises(ModelLoadError, match=r"there is no folder at that path") as raised:
        manager.get(str(tmp_path / "missing" / "model"))
    assert "cannot be reached" not in str(raised.value)


def test_a_hub_cache_folder_points_to_the_snapshot_inside(manager, twins_dir):
    repo = twins_dir / "models--runwayml--stable-diffusion-inpainting"
    with pytest.raises(ModelLoadError, match=r"One is inside it: pass '.*snapshots"):
        manager.get(str(repo))


@pytest.mark.parametrize(
    ("budget", "expected"), [("1GB", 10**9), ("512MiB", 512 * 2**20), ("1.5 GB", 1_500_000_000), (0, 0), (None, None)]
)
def test_memory_budget_takes_bytes_or_text_with_a_unit(budget, expected):
    assert PipelineManager(device="cpu", memory_budget=budget).memory_budget == expected


@pytest.mark.parametrize("budget", [-1, "-1GB", "1 gigabyte", "lots", True, float("nan"), [1]])
def test_a_bad_memory_budget_is_refused_at_creation_naming_the_fix(budget):
    with pytest.raises(InvalidRequestError, match=r"memory_budget=.*use a number of bytes >= 0 or text such as"):
        PipelineManager(device="cpu", memory_budget=budget)
