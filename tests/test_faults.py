"""Faults around a run: load failures, out of memory, interrupts, concurrent runs, autosave and damaged files.

Each failure is checked for two things: the message names the fix, and nothing the user made is lost (the
canvas mask and its undo history, the History's entries and their pixels, earlier results). The manager
must stay usable: the next run works and gives the pixels a fresh run gives.
"""

from __future__ import annotations

import errno
import functools
import threading
import time

import httpx2
import numpy as np
import pytest
import torch
from huggingface_hub import errors as hub
from PIL import Image

from nbinpaint import notices, recipes, session, twins
from nbinpaint.errors import GenerationCancelled, InvalidRequestError, ModelLoadError, NotEnoughMemoryError
from nbinpaint.history import History
from nbinpaint.pipeline_manager import PipelineManager, _Checkpoint
from nbinpaint.requests import InpaintRequest
from nbinpaint.widgets.canvas import MaskCanvas
from tests.conftest import make_scene

SD_INPAINT = "runwayml/stable-diffusion-inpainting"
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
JOIN_S = 60  # bound on every thread join: a deadlock fails the test instead of hanging the suite


@pytest.fixture(autouse=True)
def fresh_notices():
    notices.reset()


def small_request(**changes) -> InpaintRequest:
    image, mask = make_scene(64)
    base = InpaintRequest(prompt="a castle", image=image, mask=mask, steps=2, seed=7, model=SD_INPAINT)
    return base.replace(**changes)


class Workspace:
    """What a user has made in a session: a drawn mask (with undo steps) and a History of two results."""

    def __init__(self, manager: PipelineManager) -> None:
        image, mask = make_scene(64, seed=5)
        self.canvas = MaskCanvas(image)
        self.canvas.load_mask(mask)
        self.canvas.invert()
        self.canvas.invert()  # two undo steps on top of the load
        self.history = History(output=False)
        self.history.add(manager.run(self.request(seed=1, num_images=2)))  # two entries

    def request(self, **changes) -> InpaintRequest:
        # The canvas's own read-only view: a run that wrote into the mask would raise, not corrupt it.
        base = InpaintRequest(
            prompt="a castle", image=self.canvas.image, mask=self.canvas.mask_array, steps=2, seed=7, model=SD_INPAINT
        )
        return base.replace(**changes)

    def snapshot(self) -> tuple:
        entries = tuple(
            (e.id, e.image.tobytes(), repr(e.recipe), np.asarray(e.request.mask).tobytes()) for e in self.history
        )
        editor = self.canvas.editor
        return (self.canvas.mask_array.tobytes(), editor.version, len(editor.history), entries)


@pytest.fixture(scope="module")
def shared(twins_dir) -> PipelineManager:
    """One manager for the tests that leave it as they found it (the others get a fresh `manager`)."""
    return PipelineManager(device="cpu")


@pytest.fixture
def workspace(shared) -> Workspace:
    return Workspace(shared)


def free_elsewhere(lock) -> bool:
    """Whether another thread can take ``lock`` now (an RLock is always free to the thread that holds it)."""
    taken = []

    def take():
        got = lock.acquire(timeout=5)
        taken.append(got)
        if got:
            lock.release()

    thread = threading.Thread(target=take)
    thread.start()
    thread.join(JOIN_S)
    return taken == [True]


def hooks_of(pipeline) -> int:
    """Forward hooks on every module of the pipeline: a tap or offload left behind shows up here."""
    count = 0
    for component in pipeline.components.values():
        if isinstance(component, torch.nn.Module):
            for module in component.modules():
                count += len(module._forward_hooks) + len(module._forward_pre_hooks)
    return count


def failing(pipeline, error: BaseException | type[BaseException], times: int | None = 1) -> dict:
    """Make ``pipeline`` raise ``error`` on its first ``times`` calls (None: always); returns a call counter."""
    calls = {"n": 0}
    original = type(pipeline).__call__

    @functools.wraps(original)  # keeps the signature the request layer reads
    def call(self, *args, **kwargs):
        calls["n"] += 1
        if times is None or calls["n"] <= times:
            raise error
        return original(self, *args, **kwargs)

    pipeline.__class__ = type("Failing", (type(pipeline),), {"__call__": call})
    calls["restore"] = lambda: setattr(pipeline, "__class__", type(pipeline).__mro__[1])
    return calls


def same_pixels(a, b) -> bool:
    return np.array_equal(np.asarray(a.image), np.asarray(b.image))


# --- loading ------------------------------------------------------------------------------------------------


def _hub_raises(monkeypatch, error: BaseException) -> None:
    """Twin mode off and the hub answering ``error``, as diffusers' config download would receive it."""
    import diffusers.configuration_utils

    monkeypatch.setattr(twins, "twin_mode", lambda: False)

    def download(*args, **kwargs):
        raise error

    monkeypatch.setattr(diffusers.configuration_utils, "hf_hub_download", download)


def _http(status: int) -> httpx2.Response:
    return httpx2.Response(status, request=httpx2.Request("GET", "https://huggingface.co/someone/model"))


@pytest.mark.parametrize(
    ("error", "fix"),
    [
        (
            hub.RepositoryNotFoundError("404 Client Error. Repository Not Found", response=_http(404)),
            r"no such repository on the Hugging Face Hub, or it is private. Check the repo id",
        ),
        (
            hub.GatedRepoError("401 Client Error. Cannot access gated repo", response=_http(401)),
            r"gated. Accept its license on https://huggingface.co/someone/model, then log in with `hf auth login`",
        ),
        (
            hub.LocalEntryNotFoundError("cannot find the requested files in the local cache"),
            r"Hub cannot be reached.*nbinpaint.use_twins\(\) \(or NBINPAINT_TWINS=1\)",
        ),
        (
            hub.HFValidationError("Repo id must use alphanumeric chars or '-', '_', '.'"),
            r"that is not a repo id. Use owner/name as in the model page's address",
        ),
    ],
    ids=["unknown-repo", "gated", "hub-unreachable", "malformed-id"],
)
def test_hub_failures_name_the_fix_and_keep_what_is_loaded(shared, monkeypatch, error, fix):
    loaded = shared.get(SD_INPAINT)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the error's type decides, not the environment
    _hub_raises(monkeypatch, error)
    with pytest.raises(ModelLoadError, match=fix):
        shared.get("someone/model")
    assert shared.get(SD_INPAINT) is loaded and "someone/model" not in [r["model"] for r in shared.status().rows]


def test_unknown_repo_in_twin_mode_lists_the_twins(shared, workspace):
    before = workspace.snapshot()
    with pytest.raises(ModelLoadError, match=r"no twin of it. Twins exist for: .*runwayml/stable-diffusion-inpainting"):
        shared.run(workspace.request(model="someone/not-a-twin"))
    assert workspace.snapshot() == before


def test_pickle_only_checkpoint_is_refused_unless_allowed(shared, tmp_path):
    shared.get(SD_INPAINT).save_pretrained(tmp_path, safe_serialization=False)
    assert list((tmp_path / "unet").glob("*.bin")) and not list((tmp_path / "unet").glob("*.safetensors"))
    with pytest.raises(ModelLoadError, match="no safetensors weights.*PipelineManager\\(allow_pickle=True\\)"):
        shared.get(str(tmp_path))
    assert str(tmp_path) not in [r["model"] for r in shared.status().rows]
    assert PipelineManager(device="cpu", allow_pickle=True).get(str(tmp_path)) is not None


def test_checkpoint_without_an_inpaint_pipeline_names_its_class(shared, tmp_path):
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 8),
        norm_num_groups=4,
        down_block_types=("DownBlock2D",) * 2,
        up_block_types=("UpBlock2D",) * 2,
        layers_per_block=1,
    )
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).save_pretrained(tmp_path)
    with pytest.raises(
        ModelLoadError,
        match=r"no inpaint pipeline for this checkpoint \(it is a DDPMPipeline\)\. "
        r"Choose a Stable Diffusion 1.x/2.x, SDXL or Kandinsky 2.2 checkpoint",
    ):
        shared.get(str(tmp_path))


# --- out of memory ------------------------------------------------------------------------------------------


def test_out_of_memory_once_evicts_the_others_and_retries(manager, twins_dir, capsys):
    manager.get(SD15)  # another checkpoint, resident: the first thing to go
    expected = manager.run(small_request())
    calls = failing(manager.get(SD_INPAINT), torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    result = manager.run(small_request())
    assert calls["n"] == 2 and same_pixels(result, expected) and result.seed == 7
    assert [row["model"] for row in manager.status().rows] == [SD_INPAINT]
    out = capsys.readouterr().out
    assert f"out of cpu memory running {SD_INPAINT} at 64x64: evicted {SD15}, freed cached memory; retrying once" in out


def test_out_of_memory_twice_says_what_to_change_and_loses_nothing(manager, workspace):
    before = workspace.snapshot()
    pipeline = manager.get(SD_INPAINT)
    calls = failing(pipeline, torch.OutOfMemoryError("CUDA out of memory"), times=None)
    with pytest.raises(
        NotEnoughMemoryError,
        match=r"even after evicting.*a smaller image or width/height "
        r"\(it ran at 64x64\).*fewer images \(num_images=1, not 2\)",
    ):
        manager.run(workspace.request(num_images=2))
    assert calls["n"] == 2  # one retry, not more
    assert workspace.snapshot() == before
    assert free_elsewhere(manager.lock_for(pipeline))
    calls["restore"]()
    assert manager.run(workspace.request()).image.size == (64, 64)


class FakeGpuPipeline:
    """A pipeline as a GPU machine has it: offload methods recorded, out of memory until offloaded enough."""

    def __init__(self, fits_with: str | None):
        self.fits_with, self.events, self.offload = fits_with, [], "none"

    def __call__(
        self,
        prompt=None,
        image=None,
        mask_image=None,
        height=None,
        width=None,
        strength=1.0,
        num_inference_steps=50,
        num_images_per_prompt=1,
        generator=None,
        output_type="pil",
    ):
        self.events.append(f"call with {self.offload}")
        if self.offload != self.fits_with:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.50 GiB")
        return type("Output", (), {"images": [Image.new("RGB", (width, height))] * num_images_per_prompt})()

    def enable_model_cpu_offload(self, device):
        self.offload = "model"

    def enable_sequential_cpu_offload(self, device):
        self.offload = "sequential"

    def remove_all_hooks(self):
        self.offload = "none"


def _gpu_manager(pipeline, dtype=torch.float32) -> PipelineManager:
    manager = PipelineManager(device="cpu")
    manager.device = "cuda"  # as on a GPU machine; the fake never touches a device
    manager._checkpoints[("fake/gpu", dtype)] = _Checkpoint("fake/gpu", dtype, {"inpaint": pipeline})
    return manager


def test_out_of_memory_on_a_gpu_turns_on_offload_for_the_retry(capsys):
    pipeline = FakeGpuPipeline(fits_with="model")
    manager = _gpu_manager(pipeline)
    result = manager.run(small_request(model="fake/gpu", dtype="float32"))
    assert pipeline.events == ["call with none", "call with model"] and result.image.size == (64, 64)
    assert manager.offload == "model"  # kept: the next run would run out of memory again without it
    assert "turned on model CPU offload (manager.set_offload('model')); retrying once" in capsys.readouterr().out


def test_out_of_memory_on_a_gpu_after_offload_names_every_fix():
    pipeline = FakeGpuPipeline(fits_with=None)
    manager = _gpu_manager(pipeline)
    with pytest.raises(NotEnoughMemoryError) as caught:
        manager.run(small_request(model="fake/gpu", dtype="float32", num_images=3))
    message = str(caught.value)
    for fix in (
        "a smaller image or width/height",
        'manager.set_offload("sequential")',
        "dtype='float16'",
        "fewer images (num_images=1, not 3)",
        "mask, results and history are unchanged",
    ):
        assert fix in message
    assert pipeline.events == ["call with none", "call with model"]
    assert caught.value.__context__ is None  # no traceback kept alive: it would hold the tensors to free


# --- interrupts and callbacks -------------------------------------------------------------------------------


def test_cancel_mid_run_keeps_the_pipeline_usable(shared, workspace):
    before, expected = workspace.snapshot(), shared.run(workspace.request(steps=3))
    pipeline = shared.get(SD_INPAINT)
    hooks = hooks_of(pipeline)
    done = []
    with pytest.raises(GenerationCancelled, match="ready for the next run"):
        shared.run(workspace.request(steps=3), on_step=lambda *a: done.append(a[0]), should_stop=lambda: bool(done))
    assert done == [1] and workspace.snapshot() == before and hooks_of(pipeline) == hooks
    assert free_elsewhere(shared.lock_for(pipeline))
    assert same_pixels(shared.run(workspace.request(steps=3)), expected)


def test_keyboard_interrupt_inside_the_unet_releases_the_lock_and_hooks(shared, workspace):
    before, expected = workspace.snapshot(), shared.run(workspace.request(steps=3))
    pipeline = shared.get(SD_INPAINT)
    hooks, forwards = hooks_of(pipeline), []

    def interrupt(module, args):
        forwards.append(1)
        if len(forwards) == 2:  # the kernel's interrupt arrives mid-run, inside the model
            raise KeyboardInterrupt

    handle = pipeline.unet.register_forward_pre_hook(interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):  # propagated: the cell must stop
            shared.run(workspace.request(steps=3))
    finally:
        handle.remove()
    assert len(forwards) == 2 and hooks_of(pipeline) == hooks and workspace.snapshot() == before
    assert free_elsewhere(shared.lock_for(pipeline))
    assert same_pixels(shared.run(workspace.request(steps=3)), expected)


def test_exception_inside_a_step_callback_reaches_the_caller_unchanged(shared, workspace):
    before, expected = workspace.snapshot(), shared.run(workspace.request(steps=3))
    pipeline = shared.get(SD_INPAINT)

    def broken(step, total, tensors):
        raise ZeroDivisionError("the user's progress callback is broken")

    with pytest.raises(ZeroDivisionError, match="progress callback is broken"):
        shared.run(workspace.request(steps=3), on_step=broken)
    assert workspace.snapshot() == before and free_elsewhere(shared.lock_for(pipeline))
    assert same_pixels(shared.run(workspace.request(steps=3)), expected)


def test_invalid_request_from_the_canvas_loses_nothing(shared, workspace):
    before = workspace.snapshot()
    with pytest.raises(InvalidRequestError, match="Set strength between 0 and 1"):
        shared.run(workspace.request(strength=2))
    assert workspace.snapshot() == before


# --- two generations at once --------------------------------------------------------------------------------


def test_two_threads_on_one_pipeline_are_serialised_without_cross_talk(manager, twins_dir):
    pipeline = manager.get(SD_INPAINT)
    other_mask = np.zeros((64, 64), np.uint8)
    other_mask[:20, :30] = 255
    own = [small_request(seed=11, prompt="a red castle"), small_request(seed=12, prompt="a boat", mask=other_mask)]
    expected = [manager.run(r) for r in own]  # one after the other: the reference pixels
    active, most = [0], [0]
    original = type(pipeline).__call__

    @functools.wraps(original)
    def spy(self, *args, **kwargs):
        active[0] += 1
        most[0] = max(most[0], active[0])
        try:
            time.sleep(0.05)  # widen the window in which an overlap would show
            return original(self, *args, **kwargs)
        finally:
            active[0] -= 1

    pipeline.__class__ = type("Spied", (type(pipeline),), {"__call__": spy})
    start, results, errors = threading.Barrier(2), {}, []

    def work(index):
        try:
            start.wait(JOIN_S)
            results[index] = manager.run(own[index])
        except Exception as error:  # reported below: a thread's exception would otherwise vanish
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_S)
    assert not errors and not any(t.is_alive() for t in threads)
    assert most[0] == 1
    for index, request in enumerate(own):
        result = results[index]
        assert result.seed == request.seed and result.recipe["seed"] == request.seed
        assert result.recipe["parameters"]["prompt"] == request.prompt
        assert np.array_equal(np.asarray(result.request.mask), np.asarray(expected[index].request.mask))
        assert same_pixels(result, expected[index])


# --- autosave -----------------------------------------------------------------------------------------------


def test_autosave_folder_not_writable_warns_once_and_keeps_results(shared, tmp_path, capsys):
    (tmp_path / "a-file").write_text("in the way")
    history = History(output=tmp_path / "a-file" / "out")  # a folder that cannot be created
    results = [shared.run(small_request(seed=s)) for s in (1, 2)]
    for result in results:
        history.add(result)
    assert [e.id for e in history] == ["mem-1", "mem-2"]
    assert all(same_pixels(e.result, r) for e, r in zip(history, results, strict=True))
    out = capsys.readouterr().out
    assert out.count("autosave to") == 1 and "stays in memory and in the history" in out


@pytest.mark.parametrize("full_at", ["input", "second image"])
def test_disk_full_leaves_no_partial_files_and_keeps_the_result(shared, tmp_path, monkeypatch, capsys, full_at):
    result = shared.run(small_request(num_images=2))
    real_save = Image.Image.save

    def save(self, fp, *args, **kwargs):
        name = str(fp) if isinstance(fp, (str, type(tmp_path))) else ""  # the first result goes to a handle
        if ("/inputs/" in name) if full_at == "input" else name.endswith("-1.png"):
            with open(fp, "wb") as handle:
                handle.write(b"\x89PNG half")  # what a full disk leaves
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    history = History(output=tmp_path)
    entries = history.add(result)
    assert [e.id for e in entries] == ["mem-1", "mem-2"] and len(history) == 2
    assert not sorted(tmp_path.glob("*.png")) and not sorted(tmp_path.rglob("*.partial"))
    assert "No space left on device" in capsys.readouterr().out
    monkeypatch.setattr(Image.Image, "save", real_save)
    assert history.add(result)[0].id == "00001-seed7-0"  # the number was not used up by the failure


# --- damaged and foreign files ------------------------------------------------------------------------------


@pytest.fixture
def saved_folder(shared, tmp_path):
    history = History(output=tmp_path)
    history.add(shared.run(small_request(num_images=4)))  # four PNGs sharing one base image and mask
    return tmp_path, [e.files["result"] for e in history]


def test_history_load_skips_damaged_and_newer_pngs_and_names_them(saved_folder, capsys):
    folder, names = saved_folder
    data = (folder / names[0]).read_bytes()
    (folder / names[0]).write_bytes(data[: len(data) // 2])  # truncated
    damaged = bytearray((folder / names[1]).read_bytes())
    damaged[60:80] = bytes(20)  # a chunk header and CRC overwritten
    (folder / names[1]).write_bytes(bytes(damaged))
    recipe = recipes.load_recipe(folder / names[2])
    newer = {**recipe, "nbinpaint_recipe": recipes.RECIPE_VERSION + 1, "versions": {"nbinpaint": "9.0"}}
    with Image.open(folder / names[2]) as image:
        recipes.save_png(image.convert("RGB"), newer, folder / names[2])
    loaded = History.load(folder)
    assert [e.id for e in loaded] == [names[3].removesuffix(".png")]
    out = capsys.readouterr().out
    assert "skipped 3 PNG(s)" in out and all(name in out for name in names[:3])
    with pytest.raises(recipes.RecipeError, match="damaged, truncated or not a PNG. Use an intact copy"):
        recipes.load_recipe(folder / names[0])
    with pytest.raises(recipes.RecipeError, match=r"written by nbinpaint 9.0.*Upgrade: pip install -U nbinpaint"):
        session.rerun(folder / names[2])


def test_a_damaged_input_file_skips_only_the_results_that_use_it(saved_folder, capsys):
    folder, names = saved_folder
    recipe = recipes.load_recipe(folder / names[0])
    image_file = folder / recipe["inputs"]["image"]
    image_file.write_bytes(image_file.read_bytes()[:200])  # every result here shares this base image
    loaded = History.load(folder)
    assert len(loaded) == 0
    assert "skipped 4 PNG(s)" in (out := capsys.readouterr().out) and "damaged, truncated" in out
    with pytest.raises(recipes.RecipeError, match=r"the recipe's image at .* cannot be used.*Re-save it"):
        session.rerun(folder / names[0])


@pytest.mark.parametrize(
    "prompt",
    ["猫と城、夕焼け", "مرحبا بالعالم", "emoji 🏰🎨 and e\u0301 combining", "nul \x00, tab \t, line\nbreak"],
    ids=["japanese", "arabic", "emoji", "control"],
)
def test_unicode_prompts_run_save_and_reload_exactly(shared, tmp_path, prompt):
    result = shared.run(small_request(prompt=prompt, negative_prompt=prompt))
    History(output=tmp_path).add(result)
    (entry,) = History.load(tmp_path)
    assert entry.recipe["parameters"]["prompt"] == prompt == entry.request.prompt
    assert entry.request.negative_prompt == prompt
    assert same_pixels(session.rerun(tmp_path / entry.files["result"], shared), result)


def test_a_prompt_with_a_lone_surrogate_is_refused_naming_the_position(shared, workspace):
    before = workspace.snapshot()
    with pytest.raises(InvalidRequestError, match=r"invalid character at position 6 .*delete it and type"):
        shared.run(workspace.request(prompt="castle\ud83c on a hill"))  # half an emoji
    assert workspace.snapshot() == before
