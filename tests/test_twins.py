"""Tiny twins: every guide checkpoint loads by repo id, offline, through the guide's own calls, and runs."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nbinpaint import twins
from nbinpaint.errors import NbinpaintError

# The guide spells `torch_dtype=`; diffusers 0.42 prefers `dtype=` and says so on every load.
pytestmark = pytest.mark.filterwarnings("ignore:`torch_dtype` is deprecated:FutureWarning")


def _snapshot(root: Path, repo_id: str) -> Path:
    repo_dir = root / ("models--" + repo_id.replace("/", "--"))
    return repo_dir / "snapshots" / (repo_dir / "refs" / "main").read_text()


def _digests(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _image(size: int) -> Image.Image:
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _mask(size: int) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    return mask


# --------------------------------------------------------------------------------------------------------
# Every repo, through the Auto pipeline the guide uses.
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadCase:
    repo: str
    auto: str  # the diffusers class the guide loads it with
    pipeline: str  # the class that must come back
    unet_in_channels: int | None  # None: no UNet (the prior)
    sample_size: int | None  # the real UNet's, in latents (x8 = default pixels)
    size: int  # pixels for the 2-step run

    def __str__(self) -> str:
        return f"{self.auto}:{self.repo}"


LOAD_CASES = [
    LoadCase(
        "runwayml/stable-diffusion-inpainting",
        "AutoPipelineForInpainting",
        "StableDiffusionInpaintPipeline",
        9,
        64,
        64,
    ),
    LoadCase(
        "stable-diffusion-v1-5/stable-diffusion-inpainting",
        "AutoPipelineForInpainting",
        "StableDiffusionInpaintPipeline",
        9,
        64,
        64,
    ),
    LoadCase(
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "AutoPipelineForInpainting",
        "StableDiffusionInpaintPipeline",
        4,
        64,
        64,
    ),
    LoadCase(
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "AutoPipelineForText2Image",
        "StableDiffusionPipeline",
        4,
        64,
        64,
    ),
    LoadCase(
        "nitrosocke/elden-ring-diffusion",
        "AutoPipelineForImage2Image",
        "StableDiffusionImg2ImgPipeline",
        4,
        64,
        64,
    ),
    LoadCase(
        "diffusers/stable-diffusion-xl-1.0-inpainting-0.1",
        "AutoPipelineForInpainting",
        "StableDiffusionXLInpaintPipeline",
        9,
        128,
        128,
    ),
    LoadCase(
        "stabilityai/stable-diffusion-xl-refiner-1.0",
        "AutoPipelineForImage2Image",
        "StableDiffusionXLImg2ImgPipeline",
        4,
        128,
        128,
    ),
    # The guide's inpaint -> refiner chain loads the refiner for inpainting.
    LoadCase(
        "stabilityai/stable-diffusion-xl-refiner-1.0",
        "AutoPipelineForInpainting",
        "StableDiffusionXLInpaintPipeline",
        4,
        128,
        128,
    ),
    LoadCase(
        "kandinsky-community/kandinsky-2-2-decoder-inpaint",
        "AutoPipelineForInpainting",
        "KandinskyV22InpaintCombinedPipeline",
        9,
        64,
        64,
    ),
    LoadCase(
        "kandinsky-community/kandinsky-2-2-prior", "DiffusionPipeline", "KandinskyV22PriorPipeline", None, None, 64
    ),
]

FP16 = {"torch_dtype": torch.float16, "variant": "fp16", "use_safetensors": True}


def _scale_factor(pipe: object) -> int:
    inner = getattr(pipe, "decoder_pipe", pipe)  # Kandinsky's combined pipeline wraps the decoder
    return getattr(inner, "vae_scale_factor", None) or inner.movq_scale_factor


def _run(case: LoadCase, pipe: object) -> tuple[int, ...]:
    """Two denoising steps at a small size, in float32 (float16 convolutions crawl on a CPU)."""
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(0)
    args = {"prompt": "a castle", "generator": generator}
    if case.pipeline == "KandinskyV22PriorPipeline":
        return tuple(pipe(**args, num_inference_steps=2).image_embeds.shape)
    args.update(num_inference_steps=2, output_type="np")
    if case.auto == "AutoPipelineForImage2Image":
        args.update(image=_image(case.size), strength=0.5, num_inference_steps=4)  # 2 of 4 steps run
    elif case.auto == "AutoPipelineForInpainting":
        args.update(image=_image(case.size), mask_image=_mask(case.size), height=case.size, width=case.size)
    else:
        args.update(height=case.size, width=case.size)
    if case.pipeline == "KandinskyV22InpaintCombinedPipeline":
        args.update(prior_num_inference_steps=2)
    return tuple(pipe(**args).images.shape)


@pytest.mark.parametrize("fp16", [True, False], ids=["fp16-variant", "plain"])
@pytest.mark.parametrize("case", LOAD_CASES, ids=str)
def test_twin_loads_by_repo_id_and_runs(twins_dir: Path, case: LoadCase, fp16: bool) -> None:
    import diffusers

    auto = getattr(diffusers, case.auto)
    pipe = auto.from_pretrained(case.repo, **(FP16 if fp16 else {}))

    assert type(pipe).__name__ == case.pipeline
    assert twins.is_twin(pipe)
    dtypes = {part.dtype for part in pipe.components.values() if isinstance(part, torch.nn.Module)}
    assert dtypes == {torch.float16 if fp16 else torch.float32}
    if case.unet_in_channels is not None:
        unet = pipe.components["unet"]
        assert unet.config.in_channels == case.unet_in_channels
        assert unet.config.sample_size == case.sample_size
        assert _scale_factor(pipe) == 8

    shape = _run(case, pipe.to(torch.float32))
    expected = (1, 32) if case.unet_in_channels is None else (1, case.size, case.size, 3)
    assert shape == expected


# Today's models: a transformer instead of a UNet, 16 latent channels, T5 beside CLIP.
NEWER_CASES = [
    ("stabilityai/stable-diffusion-3.5-medium", "AutoPipelineForInpainting", "StableDiffusion3InpaintPipeline", 16),
    ("black-forest-labs/FLUX.1-Fill-dev", "FluxFillPipeline", "FluxFillPipeline", 384),
]


@pytest.mark.parametrize("fp16", [True, False], ids=["fp16-variant", "plain"])
@pytest.mark.parametrize(("repo", "loader", "pipeline", "in_channels"), NEWER_CASES, ids=lambda v: str(v))
def test_newer_twins_load_by_repo_id_with_t5_and_run(
    twins_dir: Path, repo: str, loader: str, pipeline: str, in_channels: int, fp16: bool
) -> None:
    import diffusers

    pipe = getattr(diffusers, loader).from_pretrained(repo, **(FP16 if fp16 else {}))
    assert type(pipe).__name__ == pipeline and twins.is_twin(pipe)
    dtypes = {part.dtype for part in pipe.components.values() if isinstance(part, torch.nn.Module)}
    assert dtypes == {torch.float16 if fp16 else torch.float32}
    assert pipe.transformer.config.in_channels == in_channels and pipe.default_sample_size == 128  # 1024 px
    assert pipe.vae.config.latent_channels == 16 and pipe.vae_scale_factor == 8
    assert any(type(part).__name__ == "T5EncoderModel" for part in pipe.components.values())
    pipe = pipe.to(torch.float32)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(
        prompt="a castle",
        image=_image(64),
        mask_image=_mask(64),
        height=64,
        width=64,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images
    assert images.shape == (1, 64, 64, 3)


def test_family_dimensions_match_each_other(twins_dir: Path) -> None:
    """The widths that must agree across components (a mismatch only shows as a shape error mid-run)."""
    from diffusers import AutoPipelineForInpainting, StableDiffusionXLImg2ImgPipeline

    kandinsky = AutoPipelineForInpainting.from_pretrained("kandinsky-community/kandinsky-2-2-decoder-inpaint")
    assert (
        kandinsky.unet.config.encoder_hid_dim
        == kandinsky.prior_prior.config.embedding_dim
        == kandinsky.prior_text_encoder.config.projection_dim
        == kandinsky.prior_image_encoder.config.projection_dim
    )
    assert kandinsky.unet.config.out_channels == 8  # learned variance

    refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained("stabilityai/stable-diffusion-xl-refiner-1.0")
    assert refiner.text_encoder is None
    assert refiner.config.requires_aesthetics_score
    assert refiner.unet.config.cross_attention_dim == refiner.text_encoder_2.config.hidden_size

    base = AutoPipelineForInpainting.from_pretrained("diffusers/stable-diffusion-xl-1.0-inpainting-0.1")
    assert base.unet.config.cross_attention_dim == (
        base.text_encoder.config.hidden_size + base.text_encoder_2.config.hidden_size
    )
    assert base.text_encoder.config.num_hidden_layers >= 2  # SDXL reads hidden_states[-2]


def test_controlnet_twin_fits_the_sd_twins_and_uses_its_control_image(twins_dir: Path) -> None:
    from diffusers import ControlNetModel, StableDiffusionControlNetInpaintPipeline

    controlnet = ControlNetModel.from_pretrained(
        "lllyasviel/control_v11p_sd15_inpaint", torch_dtype=torch.float16, variant="fp16"
    )
    assert controlnet.dtype == torch.float16
    assert twins.is_twin(controlnet)
    assert ControlNetModel.from_pretrained("lllyasviel/control_v11p_sd15_inpaint").dtype == torch.float32

    pipe = StableDiffusionControlNetInpaintPipeline.from_pretrained(
        "runwayml/stable-diffusion-inpainting", controlnet=controlnet, torch_dtype=torch.float16, variant="fp16"
    ).to(torch.float32)
    for key in ("block_out_channels", "down_block_types", "cross_attention_dim", "attention_head_dim"):
        assert controlnet.config[key] == pipe.unet.config[key], key
    with torch.no_grad():
        grid = pipe.controlnet.controlnet_cond_embedding(torch.zeros(1, 3, 512, 512)).shape[-2:]
    assert tuple(grid) == (64, 64)

    pipe.set_progress_bar_config(disable=True)

    def inpaint(control: torch.Tensor) -> np.ndarray:
        return pipe(
            "a castle",
            image=_image(64),
            mask_image=_mask(64),
            control_image=control,
            num_inference_steps=2,
            generator=torch.Generator().manual_seed(0),
            output_type="np",
        ).images

    plain, masked = torch.zeros(1, 3, 64, 64), torch.full((1, 3, 64, 64), -1.0)
    assert not np.allclose(inpaint(plain), inpaint(masked))


# --------------------------------------------------------------------------------------------------------
# The cache layout and model_index.json, as the real repos have them.
# --------------------------------------------------------------------------------------------------------


def test_repo_ids_are_the_guides_nine_sam_the_newer_two_then_the_loras() -> None:
    loras = ("latent-consistency/lcm-lora-sdv1-5", "latent-consistency/lcm-lora-sdxl")  # tests/test_lora_pag.py
    assert len(twins.REPO_IDS) == len(set(twins.REPO_IDS)) == 14
    assert "kandinsky-community/kandinsky-2-2-prior" in twins.REPO_IDS
    assert twins.REPO_IDS[-4:] == (
        "stabilityai/stable-diffusion-3.5-medium",
        "black-forest-labs/FLUX.1-Fill-dev",
        *loras,
    )
    assert "facebook/sam-vit-base" in twins.REPO_IDS


def test_sam_twin_keeps_the_real_image_handling_and_loads_by_repo_id(twins_dir: Path) -> None:
    """1024 px inputs in 16 px patches (a 64x64 embedding grid), 256 px low-resolution masks, three multimask
    outputs, the real repo's preprocessor config and files (no fp16 variant); tiny widths, random weights."""
    from transformers import SamModel, SamProcessor

    folder = _snapshot(twins_dir, "facebook/sam-vit-base")
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
        twins.MARKER,
        "preprocessor_config.json",
    ]
    preprocessor = json.loads((folder / "preprocessor_config.json").read_text())
    assert preprocessor["processor_class"] == "SamProcessor"
    assert preprocessor["image_processor_type"] == "SamImageProcessor"
    assert preprocessor["size"] == {"longest_edge": 1024} and preprocessor["pad_size"] == {
        "height": 1024,
        "width": 1024,
    }
    model = SamModel.from_pretrained("facebook/sam-vit-base")
    processor = SamProcessor.from_pretrained("facebook/sam-vit-base")
    assert twins.is_twin(model)
    vision = model.config.vision_config
    assert (vision.image_size, vision.patch_size, vision.hidden_size) == (1024, 16, 32)
    assert model.config.mask_decoder_config.num_multimask_outputs == 3
    assert sum(p.numel() for p in model.parameters()) < 500_000  # the real ViT-B has about 94 million
    inputs = processor(images=_image(96), input_points=[[[[40, 50]]]], return_tensors="pt")
    assert inputs["pixel_values"].shape == (1, 3, 1024, 1024)
    with torch.no_grad():
        embeddings = model.get_image_embeddings(inputs["pixel_values"])
        outputs = model(image_embeddings=embeddings, input_points=inputs["input_points"], multimask_output=True)
    assert embeddings.shape == (1, 32, 64, 64)
    assert outputs.pred_masks.shape == (1, 1, 3, 256, 256) and outputs.iou_scores.shape == (1, 1, 3)


@pytest.mark.parametrize("repo_id", twins.REPO_IDS)
def test_hub_cache_resolves_offline_to_a_marked_snapshot(twins_dir: Path, repo_id: str) -> None:
    from huggingface_hub import snapshot_download

    folder = Path(snapshot_download(repo_id, local_files_only=True))
    assert folder == _snapshot(twins_dir, repo_id)
    assert re.fullmatch("[0-9a-f]{40}", folder.name)  # shaped like a commit hash, as hub tools expect
    marker = json.loads((folder / twins.MARKER).read_text())
    assert marker["twin_of"] == repo_id
    assert twins.is_twin_path(folder)
    assert twins.is_twin_path(folder / "config.json") or twins.is_twin_path(folder / "model_index.json")


def test_model_index_names_real_classes_and_no_safety_checker(twins_dir: Path) -> None:
    sd = json.loads((_snapshot(twins_dir, "runwayml/stable-diffusion-inpainting") / "model_index.json").read_text())
    assert sd["safety_checker"] == [None, None]
    assert sd["feature_extractor"] == [None, None]
    assert sd["requires_safety_checker"] is False
    assert sd["scheduler"] == ["diffusers", "DDIMScheduler"]

    prior_folder = _snapshot(twins_dir, "kandinsky-community/kandinsky-2-2-prior")
    prior = json.loads((prior_folder / "model_index.json").read_text())
    assert prior["image_processor"] == ["transformers", "CLIPImageProcessor"]

    card = (_snapshot(twins_dir, "kandinsky-community/kandinsky-2-2-decoder-inpaint") / "README.md").read_text()
    assert "prior:\n- kandinsky-community/kandinsky-2-2-prior\n" in card


def test_is_twin_is_false_for_other_paths_and_objects(tmp_path: Path) -> None:
    assert not twins.is_twin_path(tmp_path)
    assert not twins.is_twin_path(None)
    assert not twins.is_twin(object())


# --------------------------------------------------------------------------------------------------------
# Building: deterministic, idempotent, never mistaken for complete when interrupted.
# --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fresh_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return twins.install(tmp_path_factory.mktemp("fresh"), quiet=True)


def test_building_twice_is_byte_identical(fresh_build: Path, tmp_path: Path) -> None:
    again = twins.install(tmp_path / "again", quiet=True)
    first, second = _digests(fresh_build), _digests(again)
    assert any(name.endswith(".fp16.safetensors") for name in first)
    assert first == second


def test_install_skips_complete_twins_and_rebuilds_interrupted_ones(
    fresh_build: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "cache"
    shutil.copytree(fresh_build, root)
    before = _digests(root)

    assert twins.install(root) == root
    assert capsys.readouterr().out == ""
    assert _digests(root) == before

    repo = "lllyasviel/control_v11p_sd15_inpaint"
    (root / "models--lllyasviel--control_v11p_sd15_inpaint" / "refs" / "main").unlink()  # as if interrupted
    twins.install(root)
    assert capsys.readouterr().out.startswith(f"built twin {repo} ")
    assert _digests(root) == before

    twins.install(root, [repo], force=True)
    assert capsys.readouterr().out.count("built twin") == 1


def test_install_refuses_a_real_download_and_unknown_repos(tmp_path: Path) -> None:
    repo_dir = tmp_path / "models--runwayml--stable-diffusion-inpainting"
    (repo_dir / "snapshots" / "abc").mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text("abc")
    with pytest.raises(NbinpaintError, match="real download"):
        twins.install(tmp_path, ["runwayml/stable-diffusion-inpainting"])
    with pytest.raises(NbinpaintError, match="Twins exist for: runwayml/stable-diffusion-inpainting"):
        twins.install(tmp_path, ["someone/else"])


def test_main_builds_and_prints_the_folder(fresh_build: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert twins.main([str(fresh_build), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(fresh_build)


# --------------------------------------------------------------------------------------------------------
# Twin mode.
# --------------------------------------------------------------------------------------------------------


def test_default_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NBINPAINT_TWINS_DIR", str(tmp_path / "here"))
    assert twins.default_dir() == tmp_path / "here"
    monkeypatch.delenv("NBINPAINT_TWINS_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert twins.default_dir() == tmp_path / "nbinpaint" / "twins"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert twins.default_dir() == Path.home() / ".cache" / "nbinpaint" / "twins"


@pytest.mark.parametrize(("value", "on"), [("1", True), ("yes", True), ("True", True), ("0", False), ("", False)])
def test_twin_mode_reads_the_environment(monkeypatch: pytest.MonkeyPatch, value: str, on: bool) -> None:
    monkeypatch.setenv("NBINPAINT_TWINS", value)
    assert twins.twin_mode() is on


def test_use_twins_refuses_missing_twins_and_changes_nothing(tmp_path: Path) -> None:
    before = {key: os.environ.get(key) for key in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "NBINPAINT_TWINS")}
    with pytest.raises(NbinpaintError, match="python -m nbinpaint twins"):
        twins.use_twins(tmp_path, install_missing=False)
    assert {key: os.environ.get(key) for key in before} == before


_SUBPROCESS = """
import sys
order, root = sys.argv[1], sys.argv[2]
from nbinpaint import twins
if order == "before":
    twins.use_twins(root, install_missing=False)
import diffusers.utils.hub_utils
import huggingface_hub.constants
from diffusers import AutoPipelineForInpainting, ControlNetModel
assert huggingface_hub.constants.HF_HUB_OFFLINE == (order == "before")
twins.use_twins(root, install_missing=False)
twins.use_twins(root, install_missing=False)
assert huggingface_hub.constants.is_offline_mode() and diffusers.utils.hub_utils.HF_HUB_OFFLINE
assert huggingface_hub.constants.HF_HUB_CACHE == root
controlnet = ControlNetModel.from_pretrained("lllyasviel/control_v11p_sd15_inpaint")
pipe = AutoPipelineForInpainting.from_pretrained("runwayml/stable-diffusion-inpainting")
assert twins.is_twin(controlnet) and twins.is_twin(pipe)
print("LOADED")
"""


@pytest.mark.parametrize("order", ["before", "after"])
def test_use_twins_works_before_and_after_diffusers_is_imported(twins_dir: Path, tmp_path: Path, order: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env.pop("NBINPAINT_TWINS", None)
    env["HF_HOME"] = str(tmp_path / "empty-hf-home")  # nothing to fall back on but the twins
    result = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS, order, str(twins_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "LOADED" in result.stdout
    assert result.stdout.count("nbinpaint twin mode:") == 1
