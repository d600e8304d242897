"""Tiny twins: random-weight copies of the guide's checkpoints, built locally into a Hugging Face hub cache.

A twin has the real repo's pipeline and component classes, task mapping, latent channels, VAE scale factor,
default resolution and scheduler, but only a few channels and layers and random weights. With
``HF_HUB_CACHE`` pointed at the twins and ``HF_HUB_OFFLINE=1``, the guide's loading lines run unchanged
(``torch_dtype=torch.float16, variant="fp16"``, ``use_safetensors=True`` included): the code path is the
real one, the pictures are noise. That lets tests, notebooks and Binder run without a download or a GPU.

Cache layout (no blobs or symlinks needed)::

    <dir>/models--org--name/refs/main                       the revision, written last
    <dir>/models--org--name/snapshots/<revision>/...         model_index.json, component folders
    <dir>/models--org--name/snapshots/<revision>/nbinpaint-twin.json   the marker `is_twin` looks for
"""

from __future__ import annotations

import argparse
import copy
import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from nbinpaint._version import __version__
from nbinpaint.errors import ConfigurationError, NbinpaintError, quote

__all__ = [
    "MARKER",
    "REPO_IDS",
    "default_dir",
    "install",
    "is_twin",
    "is_twin_path",
    "main",
    "twin_cache",
    "twin_mode",
    "use_twins",
]

MARKER = "nbinpaint-twin.json"
"""File in every twin snapshot; its presence is what makes a path a twin (see `is_twin_path`)."""

# Every component is built right after torch.manual_seed(_SEED), as diffusers' get_dummy_components does:
# equal shapes give equal weights, so the SD 1.5 twins share one VAE, as the real checkpoints do.
_SEED = 0

_ANNOUNCEMENT = (
    "nbinpaint twin mode: checkpoints are tiny random-weight twins built locally; "
    "outputs are noise, the code path is the real one."
)
_announced = False
_active: Path | None = None  # the folder `use_twins` pointed this process at

TWINS_ENV = "NBINPAINT_TWINS"
"""Environment variable turning twin mode on (1, true, yes, on) or off (0, false, no, off, empty)."""
TWINS_DIR_ENV = "NBINPAINT_TWINS_DIR"
"""Environment variable naming the twins' hub-cache folder (default: see `default_dir`)."""
_ON = {"1", "true", "yes", "on"}
_OFF = {"", "0", "false", "no", "off"}


# --------------------------------------------------------------------------------------------------------
# The table: one entry per twinned repo.
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TwinSpec:
    """What one twin is: its family's builder, the real pipeline class, and how it differs in its family.

    ``pipeline_class`` None means a bare model repo (the ControlNet): its files sit at the snapshot root.
    ``index_flags`` are the real ``model_index.json``'s non-component entries; ``card`` is front matter
    for the snapshot's README.md (diffusers reads ``prior:`` there to load Kandinsky's connected prior).
    """

    family: str
    pipeline_class: str | None
    scheduler: str | None = None
    unet_in_channels: int = 4
    refiner: bool = False
    index_flags: Mapping[str, Any] = field(default_factory=dict)
    card: Mapping[str, Any] = field(default_factory=dict)


# SD 1.x: the real repos ship a safety checker. A random one would flag random images and blacken
# them, so the twins leave it out, as `requires_safety_checker: false` pipelines do.
_NO_SAFETY_CHECKER = {"requires_safety_checker": False}

# LoRA repos -> the twin whose UNet their weights fit (a bare repo: one safetensors file at the root).
_LORA_BASES: Mapping[str, str] = {
    "latent-consistency/lcm-lora-sdv1-5": "runwayml/stable-diffusion-inpainting",
    "latent-consistency/lcm-lora-sdxl": "diffusers/stable-diffusion-xl-1.0-inpainting-0.1",
}

_TWINS: Mapping[str, _TwinSpec] = {
    "runwayml/stable-diffusion-inpainting": _TwinSpec(
        "sd", "StableDiffusionInpaintPipeline", "DDIMScheduler", 9, index_flags=_NO_SAFETY_CHECKER
    ),
    "stable-diffusion-v1-5/stable-diffusion-inpainting": _TwinSpec(
        "sd", "StableDiffusionInpaintPipeline", "DDIMScheduler", 9, index_flags=_NO_SAFETY_CHECKER
    ),
    "stable-diffusion-v1-5/stable-diffusion-v1-5": _TwinSpec(
        "sd", "StableDiffusionPipeline", "PNDMScheduler", index_flags=_NO_SAFETY_CHECKER
    ),
    "nitrosocke/elden-ring-diffusion": _TwinSpec(
        "sd", "StableDiffusionPipeline", "PNDMScheduler", index_flags=_NO_SAFETY_CHECKER
    ),
    "diffusers/stable-diffusion-xl-1.0-inpainting-0.1": _TwinSpec(
        "sdxl",
        "StableDiffusionXLInpaintPipeline",
        "EulerDiscreteScheduler",
        9,
        index_flags={"force_zeros_for_empty_prompt": True, "requires_aesthetics_score": False},
    ),
    "stabilityai/stable-diffusion-xl-refiner-1.0": _TwinSpec(
        "sdxl",
        "StableDiffusionXLImg2ImgPipeline",
        "EulerDiscreteScheduler",
        refiner=True,
        index_flags={"force_zeros_for_empty_prompt": False, "requires_aesthetics_score": True},
    ),
    "kandinsky-community/kandinsky-2-2-decoder-inpaint": _TwinSpec(
        "kandinsky-decoder",
        "KandinskyV22InpaintPipeline",
        "DDPMScheduler",
        9,
        card={"prior": ["kandinsky-community/kandinsky-2-2-prior"]},
    ),
    "kandinsky-community/kandinsky-2-2-prior": _TwinSpec(
        "kandinsky-prior", "KandinskyV22PriorPipeline", "UnCLIPScheduler"
    ),
    "lllyasviel/control_v11p_sd15_inpaint": _TwinSpec("controlnet", None),
    "facebook/sam-vit-base": _TwinSpec("sam", None),
    # Today's inpainting models (issue 18): a multimodal diffusion transformer with three text encoders,
    # and Flux's Fill model, whose transformer takes the mask and masked image packed beside the latents.
    "stabilityai/stable-diffusion-3.5-medium": _TwinSpec(
        "sd3", "StableDiffusion3Pipeline", "FlowMatchEulerDiscreteScheduler:sd3"
    ),
    "black-forest-labs/FLUX.1-Fill-dev": _TwinSpec(
        "flux-fill", "FluxFillPipeline", "FlowMatchEulerDiscreteScheduler:flux"
    ),
    **{repo_id: _TwinSpec("lora", None, card={"base_model": base}) for repo_id, base in _LORA_BASES.items()},
}

REPO_IDS: tuple[str, ...] = tuple(_TWINS)
"""The repo ids that have twins: the guide's nine, Segment Anything, SD3.5 medium and Flux Fill, then the LCM
LoRAs."""

# The real repos' scheduler configs (defaults omitted; diffusers fills them in on save).
_SCHEDULER_CONFIGS: Mapping[str, Mapping[str, Any]] = {
    "PNDMScheduler": {
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "num_train_timesteps": 1000,
        "set_alpha_to_one": False,
        "skip_prk_steps": True,
        "steps_offset": 1,
    },
    "DDIMScheduler": {
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "clip_sample": False,
        "num_train_timesteps": 1000,
        "set_alpha_to_one": False,
        "steps_offset": 1,
    },
    "EulerDiscreteScheduler": {
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "interpolation_type": "linear",
        "num_train_timesteps": 1000,
        "prediction_type": "epsilon",
        "steps_offset": 1,
        "timestep_spacing": "leading",
        "use_karras_sigmas": False,
    },
    "DDPMScheduler": {
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "linear",
        "clip_sample": False,
        "num_train_timesteps": 1000,
        "prediction_type": "epsilon",
        "steps_offset": 1,
        "thresholding": False,
    },
    "UnCLIPScheduler": {
        "clip_sample": True,
        "clip_sample_range": 10.0,
        "num_train_timesteps": 1000,
        "prediction_type": "sample",
        "variance_type": "fixed_small_log",
    },
    # Flow matching: the name after ":" tells the two repos' configs apart (the class is before it).
    "FlowMatchEulerDiscreteScheduler:sd3": {"num_train_timesteps": 1000, "shift": 3.0},
    "FlowMatchEulerDiscreteScheduler:flux": {
        "base_image_seq_len": 256,
        "base_shift": 0.5,
        "max_image_seq_len": 4096,
        "max_shift": 1.15,
        "num_train_timesteps": 1000,
        "shift": 3.0,
        "use_dynamic_shifting": True,
    },
}

# Tiny widths. Depths that set behaviour are the real ones: four VAE/MoVQ levels (scale factor 8),
# two or more text-encoder layers (SDXL reads hidden_states[-2]), 77 token positions.
_TEXT_WIDTH = 32
_UNET_CHANNELS = (16, 32)
_UNET_GROUPS = 8  # GroupNorm groups; the real 32 would not divide 16 channels
_VAE_CHANNELS = (8, 8, 16, 16)
_MOVQ_CHANNELS = (32, 32, 32, 32)  # SpatialNorm hard-codes 32 groups
_SDXL_TIME_EMBED_DIM = 8
_CLIP_IMAGE_SIZE = 32
_T5_WIDTH = 2 * _TEXT_WIDTH  # SD3 pads both CLIP widths side by side to T5's


# --------------------------------------------------------------------------------------------------------
# Components that are files rather than models.
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _FilesComponent:
    """A component written as plain files (tokenizer, image processor), named in model_index.json as is."""

    library: str
    class_name: str
    files: Mapping[str, Any]

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in self.files.items():
            text = content if isinstance(content, str) else json.dumps(content, indent=2, sort_keys=True) + "\n"
            (folder / name).write_text(text, encoding="utf-8")


_BOS, _EOS = "<|startoftext|>", "<|endoftext|>"
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
# Letter pairs, inside a word and at its end ("</w>"): prompts tokenise about two characters a token, so
# the guide's prompts fit CLIP's 77 positions as they do with the real vocabulary; one character a token
# would truncate them, with a warning the real checkpoints never give.
_MERGES = tuple(f"{a} {b}{end}" for end in ("", "</w>") for a in _LETTERS for b in _LETTERS)


def _clip_vocab() -> dict[str, int]:
    """CLIP's layout in small: the 256 byte-level characters, the same with the ``</w>`` word end, the
    merged pairs, then BOS and EOS. Any text encodes (nothing is unknown) without the real 49408-entry
    vocabulary, which would need a download.
    """
    from tokenizers.pre_tokenizers import ByteLevel

    chars = sorted(ByteLevel.alphabet())
    tokens = [*chars, *(char + "</w>" for char in chars), *(merge.replace(" ", "") for merge in _MERGES)]
    tokens += [_BOS, _EOS]
    return {token: i for i, token in enumerate(tokens)}


def _clip_tokenizer(pad_token: str) -> _FilesComponent:
    """A CLIPTokenizer folder as the real repos ship it (no tokenizer.json), loadable by transformers 4 and 5.

    ``pad_token`` is the real one: ``<|endoftext|>`` for SD 1.x's tokenizer, ``!`` for OpenCLIP's.
    """
    special = {"bos_token": _BOS, "eos_token": _EOS, "pad_token": pad_token, "unk_token": _EOS}
    return _FilesComponent(
        "transformers",
        "CLIPTokenizer",
        {
            "vocab.json": _clip_vocab(),
            "merges.txt": "#version: 0.2\n" + "".join(merge + "\n" for merge in _MERGES),
            "special_tokens_map.json": special,
            "tokenizer_config.json": {
                **special,
                "add_prefix_space": False,
                "do_lower_case": True,
                "errors": "replace",
                "model_max_length": 77,
                "tokenizer_class": "CLIPTokenizer",
            },
        },
    )


def _clip_image_processor() -> _FilesComponent:
    """The prior's CLIPImageProcessor, sized for the tiny image encoder.

    Written as a file, not saved from an object: without torchvision transformers 5 saves the class as
    ``CLIPImageProcessorPil``, while the real repo names ``CLIPImageProcessor``.
    """
    return _FilesComponent(
        "transformers",
        "CLIPImageProcessor",
        {
            "preprocessor_config.json": {
                "crop_size": {"height": _CLIP_IMAGE_SIZE, "width": _CLIP_IMAGE_SIZE},
                "do_center_crop": True,
                "do_convert_rgb": True,
                "do_normalize": True,
                "do_rescale": True,
                "do_resize": True,
                "image_mean": [0.48145466, 0.4578275, 0.40821073],
                "image_processor_type": "CLIPImageProcessor",
                "image_std": [0.26862954, 0.26130258, 0.27577711],
                "resample": 3,
                "rescale_factor": 1 / 255,
                "size": {"shortest_edge": _CLIP_IMAGE_SIZE},
            }
        },
    )


_T5_PAD, _T5_EOS, _T5_UNK = "<pad>", "</s>", "<unk>"


@functools.cache
def _t5_tokenizer() -> _FilesComponent:
    """The T5 tokenizer of SD3 and Flux (``T5TokenizerFast`` in their model_index.json), built locally.

    The real one is a 32k-piece SentencePiece Unigram model (a download); this one is a Unigram model over
    the printable characters, the letters after a word start ("▁a") and the letter pairs, in T5's layout
    (pad 0, eos 1, unk 2), written as transformers saves it (tokenizer.json), so any prompt encodes, about
    two characters a token, with nothing unknown.
    """
    import string

    from transformers import T5TokenizerFast

    pieces = [(_T5_PAD, 0.0), (_T5_EOS, 0.0), (_T5_UNK, 0.0), ("\u2581", -2.0)]
    pieces += [(char, -3.0) for char in string.printable if not char.isspace()]
    pieces += [("\u2581" + char, -2.5) for char in _LETTERS]
    pieces += [(a + b, -2.8) for a in _LETTERS for b in _LETTERS]
    tokenizer = T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=512)
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        files = {path.name: path.read_text(encoding="utf-8") for path in sorted(Path(folder).iterdir())}
    return _FilesComponent("transformers", "T5TokenizerFast", files)


# --------------------------------------------------------------------------------------------------------
# Model factories shared by the families.
# --------------------------------------------------------------------------------------------------------


def _seeded(factory: Callable[[], Any]) -> Any:
    """Build one component from a fixed seed, so a rebuild is byte-identical."""
    import torch

    torch.manual_seed(_SEED)
    return factory()


def _clip_text_config(*, pad_token: str, hidden_act: str) -> Any:
    from transformers import CLIPTextConfig

    vocab = _clip_vocab()
    return CLIPTextConfig(
        vocab_size=len(vocab),
        bos_token_id=vocab[_BOS],
        eos_token_id=vocab[_EOS],
        pad_token_id=vocab[pad_token],
        hidden_size=_TEXT_WIDTH,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=_TEXT_WIDTH,
        hidden_act=hidden_act,
    )


def _text_encoder(*, projection: bool, pad_token: str, hidden_act: str) -> Any:
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    config = _clip_text_config(pad_token=pad_token, hidden_act=hidden_act)
    return _seeded(lambda: cls(config).eval())


def _t5_encoder() -> Any:
    """T5 v1.1's encoder (gated GELU, relative position buckets), as SD3 and Flux read it; tiny.

    Its width is the transformers' ``joint_attention_dim`` and, for SD3, at least both CLIP widths together
    (SD3 pads the CLIP embeddings to T5's width), as 4096 is at least 768 + 1280 in the real models.
    """
    from transformers import T5Config, T5EncoderModel

    files = _t5_tokenizer().files
    vocab = json.loads(files["tokenizer.json"])["model"]["vocab"]
    config = T5Config(
        vocab_size=len(vocab),
        d_model=_T5_WIDTH,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return _seeded(lambda: T5EncoderModel(config).eval())


def _vae(
    *,
    sample_size: int,
    scaling_factor: float,
    force_upcast: bool,
    latent_channels: int = 4,
    shift_factor: float | None = None,
) -> Any:
    """An AutoencoderKL with four levels (scale factor 8). ``shift_factor`` set means the SD3/Flux VAE: 16
    latent channels, latents shifted before scaling, and no quant convolutions."""
    from diffusers import AutoencoderKL

    flow: dict[str, Any] = {}
    if shift_factor is not None:
        flow = {"shift_factor": shift_factor, "use_quant_conv": False, "use_post_quant_conv": False}
    return _seeded(
        lambda: AutoencoderKL(
            block_out_channels=_VAE_CHANNELS,
            down_block_types=("DownEncoderBlock2D",) * len(_VAE_CHANNELS),
            up_block_types=("UpDecoderBlock2D",) * len(_VAE_CHANNELS),
            latent_channels=latent_channels,
            layers_per_block=1,
            norm_num_groups=8,
            sample_size=sample_size,
            scaling_factor=scaling_factor,
            force_upcast=force_upcast,
            **flow,
        )
    )


def _scheduler(name: str) -> Any:
    import diffusers

    return getattr(diffusers, name.split(":")[0]).from_config(dict(_SCHEDULER_CONFIGS[name]))


def _sd_unet_layout() -> dict[str, Any]:
    """SD 1.x's UNet layout, shrunk: cross-attention at full latent resolution, none at the bottom.

    Shared with the ControlNet twin, which must mirror it block for block.
    """
    return {
        "block_out_channels": _UNET_CHANNELS,
        "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
        "layers_per_block": 1,
        "norm_num_groups": _UNET_GROUPS,
        "cross_attention_dim": _TEXT_WIDTH,
        # Heads per level (SD 1.x's legacy name): one head over 4096 tokens at full latent resolution is
        # most of a step's time on a CPU; the mid block keeps two, so head splitting is still exercised.
        "attention_head_dim": (1, 2),
        "use_linear_projection": False,
    }


# --------------------------------------------------------------------------------------------------------
# One builder per family: returns {folder name: component}; None entries are listed as [null, null].
# --------------------------------------------------------------------------------------------------------


def _sd_components(spec: _TwinSpec) -> dict[str, Any]:
    """Stable Diffusion 1.x: 64x64 latents (512 px), one CLIP text encoder, no safety checker."""
    from diffusers import UNet2DConditionModel

    layout = _sd_unet_layout()
    return {
        "feature_extractor": None,
        "safety_checker": None,
        "scheduler": _scheduler(spec.scheduler),
        "text_encoder": _text_encoder(projection=False, pad_token=_EOS, hidden_act="quick_gelu"),
        "tokenizer": _clip_tokenizer(pad_token=_EOS),
        "unet": _seeded(
            lambda: UNet2DConditionModel(
                **layout,
                sample_size=64,
                in_channels=spec.unet_in_channels,
                out_channels=4,
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            )
        ),
        "vae": _vae(sample_size=512, scaling_factor=0.18215, force_upcast=True),
    }


def _sdxl_components(spec: _TwinSpec) -> dict[str, Any]:
    """SDXL base or refiner: 128x128 latents (1024 px), no attention at full latent resolution.

    The base conditions on both text encoders' hidden states side by side and on six size/crop ids; the
    refiner has only the second encoder and five ids (an aesthetic score replaces the target size).
    """
    from diffusers import UNet2DConditionModel

    text_encoder = None if spec.refiner else _text_encoder(projection=False, pad_token=_EOS, hidden_act="quick_gelu")
    text_encoder_2 = _text_encoder(projection=True, pad_token="!", hidden_act="gelu")
    cross_attention_dim = _TEXT_WIDTH if spec.refiner else 2 * _TEXT_WIDTH
    time_ids = 5 if spec.refiner else 6
    unet = _seeded(
        lambda: UNet2DConditionModel(
            sample_size=128,
            in_channels=spec.unet_in_channels,
            out_channels=4,
            block_out_channels=_UNET_CHANNELS,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            layers_per_block=1,
            norm_num_groups=_UNET_GROUPS,
            attention_head_dim=(1, 2),
            cross_attention_dim=cross_attention_dim,
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=_SDXL_TIME_EMBED_DIM,
            projection_class_embeddings_input_dim=time_ids * _SDXL_TIME_EMBED_DIM + _TEXT_WIDTH,
        )
    )
    return {
        "scheduler": _scheduler(spec.scheduler),
        "text_encoder": text_encoder,
        "text_encoder_2": text_encoder_2,
        "tokenizer": None if spec.refiner else _clip_tokenizer(pad_token=_EOS),
        "tokenizer_2": _clip_tokenizer(pad_token="!"),
        "unet": unet,
        "vae": _vae(sample_size=1024, scaling_factor=0.13025, force_upcast=True),
    }


def _kandinsky_decoder_components(spec: _TwinSpec) -> dict[str, Any]:
    """Kandinsky 2.2 decoder: a UNet conditioned on the prior's image embedding, learned variance, MoVQ."""
    from diffusers import UNet2DConditionModel, VQModel

    unet = _seeded(
        lambda: UNet2DConditionModel(
            sample_size=64,
            in_channels=spec.unet_in_channels,
            out_channels=8,  # epsilon and learned variance
            block_out_channels=_UNET_CHANNELS,
            down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
            up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
            mid_block_type="UNetMidBlock2DSimpleCrossAttn",
            layers_per_block=1,
            norm_num_groups=_UNET_GROUPS,
            attention_head_dim=8,
            cross_attention_dim=_TEXT_WIDTH,
            encoder_hid_dim=_TEXT_WIDTH,  # == the prior's embedding_dim == CLIP's projection_dim
            encoder_hid_dim_type="image_proj",
            addition_embed_type="image",
            resnet_time_scale_shift="scale_shift",
            class_embed_type=None,
        )
    )
    movq = _seeded(
        lambda: VQModel(
            block_out_channels=_MOVQ_CHANNELS,
            down_block_types=("DownEncoderBlock2D",) * 3 + ("AttnDownEncoderBlock2D",),
            up_block_types=("AttnUpDecoderBlock2D",) + ("UpDecoderBlock2D",) * 3,
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            layers_per_block=1,
            norm_num_groups=32,
            norm_type="spatial",
            num_vq_embeddings=256,
            vq_embed_dim=4,
        )
    )
    return {"movq": movq, "scheduler": _scheduler(spec.scheduler), "unet": unet}


def _kandinsky_prior_components(spec: _TwinSpec) -> dict[str, Any]:
    """Kandinsky 2.2 prior: CLIP text and image encoders with projections, and a PriorTransformer."""
    import torch
    from diffusers import PriorTransformer
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    def make_prior() -> PriorTransformer:
        prior = PriorTransformer(
            num_attention_heads=2,
            attention_head_dim=16,
            num_layers=1,
            embedding_dim=_TEXT_WIDTH,
            num_embeddings=77,
            additional_embeddings=4,
        )
        # clip_std starts at zero, which would map every latent to clip_mean: a constant image embedding.
        prior.clip_std = torch.nn.Parameter(torch.ones_like(prior.clip_std))
        return prior

    vision_config = CLIPVisionConfig(
        hidden_size=_TEXT_WIDTH,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=_CLIP_IMAGE_SIZE,
        patch_size=8,
        projection_dim=_TEXT_WIDTH,
    )
    return {
        "image_encoder": _seeded(lambda: CLIPVisionModelWithProjection(vision_config).eval()),
        "image_processor": _clip_image_processor(),
        "prior": _seeded(make_prior),
        "scheduler": _scheduler(spec.scheduler),
        "text_encoder": _text_encoder(projection=True, pad_token="!", hidden_act="gelu"),
        "tokenizer": _clip_tokenizer(pad_token="!"),
    }


def _controlnet_components(spec: _TwinSpec) -> dict[str, Any]:
    """A ControlNet that fits the SD 1.x twins: their UNet layout, 4 latent channels, 8x conditioning embedding."""
    import torch
    from diffusers import ControlNetModel

    def make_controlnet() -> ControlNetModel:
        controlnet = ControlNetModel(
            **_sd_unet_layout(),
            in_channels=4,
            # Four stages, three of them strided: a 512 px control image lands on the 64x64 latent grid.
            conditioning_embedding_out_channels=(8, 8, 16, 16),
        )
        # A fresh ControlNet's output convolutions are zero (training starts from the plain UNet), so it
        # would ignore its control image; a twin that did could hide a control image never passed on.
        zero_convs = [
            *controlnet.controlnet_down_blocks,
            controlnet.controlnet_mid_block,
            controlnet.controlnet_cond_embedding.conv_out,
        ]
        for conv in zero_convs:
            torch.nn.init.normal_(conv.weight, std=0.02)
        return controlnet

    return {"": _seeded(make_controlnet)}


def _sd3_components(spec: _TwinSpec) -> dict[str, Any]:
    """Stable Diffusion 3.5 medium: an MMDiT-X transformer over 16-channel latents in 2x2 patches (1024 px),
    two CLIP encoders with projections (their pooled outputs side by side) and T5.

    Real features kept: QK RMS norm, a dual-attention layer (3.5 medium's MMDiT-X), the VAE's shift and
    scale. ``pos_embed_max_size`` is diffusers' default 96 (sides up to 1536 px) instead of the real 384,
    whose table alone would be most of the twin's bytes.
    """
    from diffusers import SD3Transformer2DModel

    transformer = _seeded(
        lambda: SD3Transformer2DModel(
            sample_size=128,
            patch_size=2,
            in_channels=16,
            out_channels=16,
            num_layers=2,
            attention_head_dim=8,
            num_attention_heads=4,
            joint_attention_dim=_T5_WIDTH,
            caption_projection_dim=32,  # the transformer's width: heads x head size
            pooled_projection_dim=2 * _TEXT_WIDTH,
            pos_embed_max_size=96,
            dual_attention_layers=(0,),
            qk_norm="rms_norm",
        )
    )
    return {
        "scheduler": _scheduler(spec.scheduler),
        "text_encoder": _text_encoder(projection=True, pad_token=_EOS, hidden_act="quick_gelu"),
        "text_encoder_2": _text_encoder(projection=True, pad_token="!", hidden_act="gelu"),
        "text_encoder_3": _t5_encoder(),
        "tokenizer": _clip_tokenizer(pad_token=_EOS),
        "tokenizer_2": _clip_tokenizer(pad_token="!"),
        "tokenizer_3": _t5_tokenizer(),
        "transformer": transformer,
        "vae": _vae(
            sample_size=1024,
            scaling_factor=1.5305,
            shift_factor=0.0609,
            force_upcast=True,
            latent_channels=16,
        ),
    }


def _flux_fill_components(spec: _TwinSpec) -> dict[str, Any]:
    """FLUX.1 Fill: a Flux transformer with guidance embedding whose input is the packed latents (16 x 4),
    the packed masked-image latents (16 x 4) and the packed mask (8 x 8 pixels per latent x 4): 384 channels,
    as in the real model; CLIP-L's pooled output and T5's hidden states condition it.
    """
    from diffusers import FluxTransformer2DModel

    transformer = _seeded(
        lambda: FluxTransformer2DModel(
            patch_size=1,
            in_channels=384,
            out_channels=64,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=_T5_WIDTH,
            pooled_projection_dim=_TEXT_WIDTH,
            guidance_embeds=True,
            axes_dims_rope=(4, 6, 6),  # sums to the head size, as (16, 56, 56) does to 128
        )
    )
    return {
        "scheduler": _scheduler(spec.scheduler),
        "text_encoder": _text_encoder(projection=False, pad_token=_EOS, hidden_act="quick_gelu"),
        "text_encoder_2": _t5_encoder(),
        "tokenizer": _clip_tokenizer(pad_token=_EOS),
        "tokenizer_2": _t5_tokenizer(),
        "transformer": transformer,
        "vae": _vae(
            sample_size=1024,
            scaling_factor=0.3611,
            shift_factor=0.1159,
            force_upcast=True,
            latent_channels=16,
        ),
    }


# Segment Anything (transformers' SamModel): the real 1024 px input, 16 px patches (a 64x64 embedding grid),
# 256 px low-resolution masks and three multimask outputs; only the widths and depths are tiny.
_SAM_WIDTH = 32
_SAM_IMAGE_SIZE = 1024
_SAM_PATCH_SIZE = 16


@dataclass(frozen=True)
class _TransformersRepo:
    """A transformers model repo: the model's config.json and float32 safetensors with plain files (the
    processor's config) beside them at the snapshot root, as a ``from_pretrained(repo_id)`` repo ships them.

    Saved plain only: facebook/sam-vit-base has no fp16 variant.
    """

    model: Any
    files: _FilesComponent

    def save_pretrained(self, folder: Path) -> None:
        from transformers.utils import logging as transformers_logging

        bars_were_on = transformers_logging.is_progress_bar_enabled()
        transformers_logging.disable_progress_bar()
        try:
            self.model.save_pretrained(folder)
        finally:
            if bars_were_on:
                transformers_logging.enable_progress_bar()
        self.files.write(folder)


def _sam_preprocessor() -> _FilesComponent:
    """facebook/sam-vit-base's preprocessor_config.json as the real repo ships it (longest side resized to
    1024, padded to 1024x1024, ImageNet mean and std); written as a file, not saved from an object, since
    without torchvision transformers 5 would name another class."""
    return _FilesComponent(
        "transformers",
        "SamProcessor",
        {
            "preprocessor_config.json": {
                "do_normalize": True,
                "do_pad": True,
                "do_rescale": True,
                "do_resize": True,
                "image_mean": [0.485, 0.456, 0.406],
                "image_processor_type": "SamImageProcessor",
                "image_std": [0.229, 0.224, 0.225],
                "pad_size": {"height": _SAM_IMAGE_SIZE, "width": _SAM_IMAGE_SIZE},
                "processor_class": "SamProcessor",
                "resample": 2,
                "rescale_factor": 1 / 255,
                "size": {"longest_edge": _SAM_IMAGE_SIZE},
            }
        },
    )


def _sam_components(spec: _TwinSpec) -> dict[str, Any]:
    """Segment Anything (ViT-B's layout, shrunk): windowed attention with one global layer, a prompt encoder
    and a two-layer mask decoder, all ``_SAM_WIDTH`` wide.

    transformers' SAM configs default to ``initializer_range=1e-10``: weights that small would make every
    click give the same mask, so the twin uses 0.02, and its masks change with the points.
    """
    from transformers import SamConfig, SamMaskDecoderConfig, SamModel, SamPromptEncoderConfig, SamVisionConfig

    init = {"initializer_range": 0.02}
    vision = SamVisionConfig(
        hidden_size=_SAM_WIDTH,
        output_channels=_SAM_WIDTH,
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_dim=2 * _SAM_WIDTH,
        global_attn_indexes=[1],
        window_size=14,
        num_pos_feats=_SAM_WIDTH // 2,
        image_size=_SAM_IMAGE_SIZE,
        patch_size=_SAM_PATCH_SIZE,
        **init,
    )
    prompt = SamPromptEncoderConfig(
        hidden_size=_SAM_WIDTH,
        image_size=_SAM_IMAGE_SIZE,
        patch_size=_SAM_PATCH_SIZE,
        mask_input_channels=4,
        **init,
    )
    decoder = SamMaskDecoderConfig(
        hidden_size=_SAM_WIDTH,
        mlp_dim=2 * _SAM_WIDTH,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_multimask_outputs=3,
        iou_head_hidden_dim=_SAM_WIDTH,
        **init,
    )
    config = SamConfig(
        vision_config=vision.to_dict(),
        prompt_encoder_config=prompt.to_dict(),
        mask_decoder_config=decoder.to_dict(),
        **init,
    )
    return {"": _TransformersRepo(_seeded(lambda: SamModel(config).eval()), _sam_preprocessor())}


# --------------------------------------------------------------------------------------------------------
# LoRA twins: one ``pytorch_lora_weights.safetensors`` in the real LCM-LoRA files' layout.
# --------------------------------------------------------------------------------------------------------

#: The modules LCM-LoRA adapts (the target modules of diffusers' LCM distillation scripts), as name endings.
_LORA_TARGETS = (
    "to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
    "conv1", "conv2", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj",
)  # fmt: skip
_LORA_RANK = 4
_LORA_FILE = "pytorch_lora_weights.safetensors"


@dataclass(frozen=True)
class _SafetensorsFile(_FilesComponent):
    """A bare repo's one weights file (``files``: the file name -> its tensors)."""

    def write(self, folder: Path) -> None:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        for name, tensors in self.files.items():
            save_file(dict(tensors), folder / name)


def _lora_state_dict(unet: Any) -> dict[str, Any]:
    """A rank-4 LoRA for ``unet`` in the kohya layout the real LCM-LoRA files use, which diffusers converts
    when loading: ``lora_unet_<module path with _ for .>.lora_down.weight`` ([rank, in] or, for a
    convolution, [rank, in, kh, kw]), ``.lora_up.weight`` ([out, rank] or [out, rank, 1, 1]) and ``.alpha``
    (= rank, a scale of 1), stored in float16 as the real files are. Random, seeded, large enough to change
    the pictures (a zero ``lora_up``, as training starts, would change nothing)."""
    import torch

    generator = torch.Generator().manual_seed(_SEED)
    tensors: dict[str, Any] = {}
    for name, module in unet.named_modules():
        if not name.endswith(_LORA_TARGETS) or not isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            continue
        key = "lora_unet_" + name.replace(".", "_")
        if isinstance(module, torch.nn.Conv2d):
            down = (_LORA_RANK, module.in_channels, *module.kernel_size)
            up = (module.out_channels, _LORA_RANK, 1, 1)
        else:
            down, up = (_LORA_RANK, module.in_features), (module.out_features, _LORA_RANK)
        tensors[f"{key}.lora_down.weight"] = (torch.randn(down, generator=generator) * 0.1).half()
        tensors[f"{key}.lora_up.weight"] = (torch.randn(up, generator=generator) * 0.1).half()
        tensors[f"{key}.alpha"] = torch.tensor(float(_LORA_RANK)).half()
    return tensors


def _lora_components(spec: _TwinSpec) -> dict[str, Any]:
    """A LoRA twin: weights shaped for the UNet of the twin it is made for (``card["base_model"]``)."""
    base = _TWINS[spec.card["base_model"]]
    unet = _FAMILIES[base.family](base)["unet"]
    return {"": _SafetensorsFile("", "", {_LORA_FILE: _lora_state_dict(unet)})}


_FAMILIES: Mapping[str, Callable[[_TwinSpec], dict[str, Any]]] = {
    "sd": _sd_components,
    "sdxl": _sdxl_components,
    "kandinsky-decoder": _kandinsky_decoder_components,
    "kandinsky-prior": _kandinsky_prior_components,
    "controlnet": _controlnet_components,
    "sam": _sam_components,
    "sd3": _sd3_components,
    "flux-fill": _flux_fill_components,
    "lora": _lora_components,
}


# --------------------------------------------------------------------------------------------------------
# Writing a snapshot.
# --------------------------------------------------------------------------------------------------------


def _save_model(model: Any, folder: Path) -> None:
    """Save fp16-variant weights, then float32 ones.

    The order matters: transformers 5 writes the model's dtype into config.json and reloads in it, so the
    plain (float32) save must come last. The fp16 copy is a deep copy: casting the model itself down and
    back up would round its float32 weights.
    """
    from transformers.utils import logging as transformers_logging

    bars_were_on = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # a "Writing model shards" bar per save is noise here
    try:
        # nn.Module.half, not .to(float16): diffusers' .to() warns about fp32 modules these models lack.
        copy.deepcopy(model).half().save_pretrained(folder, variant="fp16")
        model.save_pretrained(folder)
    finally:
        if bars_were_on:
            transformers_logging.enable_progress_bar()


def _index_entry(component: Any) -> list[str | None]:
    """model_index.json's [library, class] for a component, read from the object itself."""
    if component is None:
        return [None, None]
    if isinstance(component, _FilesComponent):
        return [component.library, component.class_name]
    return [type(component).__module__.split(".")[0], type(component).__name__]


def _model_card(repo_id: str, spec: _TwinSpec) -> str:
    import yaml

    front_matter = {"tags": ["nbinpaint-twin"], **spec.card}
    return (
        f"---\n{yaml.safe_dump(front_matter, sort_keys=True)}---\n\n"
        f"# Tiny twin of {repo_id}\n\n"
        f"Random weights in the classes and layout of [{repo_id}](https://huggingface.co/{repo_id}), "
        f"built locally by nbinpaint {__version__} for tests and offline demos. Its outputs are noise.\n"
    )


def _write_snapshot(repo_id: str, spec: _TwinSpec, folder: Path) -> None:
    """Build every component of one twin and write the repo's files into ``folder``."""
    import diffusers
    import torch

    components = _FAMILIES[spec.family](spec)
    for name, component in components.items():
        target = folder / name  # name "" for a bare model repo: the snapshot root
        if component is None:
            continue
        if isinstance(component, _FilesComponent):
            component.write(target)
        elif isinstance(component, torch.nn.Module):
            _save_model(component, target)
        else:  # a scheduler, or a whole transformers repo (_TransformersRepo)
            component.save_pretrained(target)
    if spec.pipeline_class is not None:
        index = {"_class_name": spec.pipeline_class, "_diffusers_version": diffusers.__version__}
        index.update(spec.index_flags)
        index.update({name: _index_entry(component) for name, component in components.items()})
        (folder / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    (folder / "README.md").write_text(_model_card(repo_id, spec), encoding="utf-8")
    marker = {
        "twin_of": repo_id,
        "build": _build_id(),
        "nbinpaint": __version__,
        "seed": _SEED,
        "note": "tiny random-weight twin built locally; outputs are noise",
    }
    (folder / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")


@functools.cache
def _build_id() -> str:
    """What a twin's bytes depend on: this module's source and the versions of the libraries that write them.

    A snapshot with another build id is rebuilt by `install`, so an edited spec never leaves stale twins.
    """
    digest = hashlib.sha1(Path(__file__).read_bytes(), usedforsecurity=False)
    for package in ("torch", "diffusers", "transformers"):
        digest.update(f"\0{package}=={metadata.version(package)}".encode())
    return digest.hexdigest()[:12]


def _content_revision(folder: Path) -> str:
    """A 40-hex revision from the snapshot's content, so equal builds get equal revisions.

    40 hex digits is what huggingface_hub and diffusers take for a commit hash.
    """
    digest = hashlib.sha1(usedforsecurity=False)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _repo_dir(root: Path, repo_id: str) -> Path:
    """The hub cache's folder for a model repo (``models--org--name``)."""
    return root / ("models--" + repo_id.replace("/", "--"))


def _snapshot_dir(root: Path, repo_id: str) -> Path | None:
    """The snapshot ``refs/main`` points to, or None if there is none."""
    ref = _repo_dir(root, repo_id) / "refs" / "main"
    if not ref.is_file():
        return None
    return _repo_dir(root, repo_id) / "snapshots" / ref.read_text().strip()


def _is_complete(root: Path, repo_id: str) -> bool:
    """Whether the twin is installed, by this build (refs/main is written only after the snapshot)."""
    snapshot = _snapshot_dir(root, repo_id)
    if snapshot is None or not (snapshot / MARKER).is_file():
        return False
    return json.loads((snapshot / MARKER).read_text()).get("build") == _build_id()


def _build_one(root: Path, repo_id: str, *, force: bool) -> Path:
    """Build one twin into a temporary folder, then move it into place and point refs/main at it.

    An interrupted build leaves only a temporary folder (or a snapshot that refs/main does not name), so
    it is never taken for a complete twin.
    """
    repo_dir = _repo_dir(root, repo_id)
    snapshots = repo_dir / "snapshots"
    snapshots.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=repo_dir))
    try:
        _write_snapshot(repo_id, _TWINS[repo_id], staging)
        revision = _content_revision(staging)
        target = snapshots / revision
        # Snapshots only appear by rename, so an existing one with this content-derived name is this very
        # build, complete (say, from a run stopped before refs/main): keep it, unless forced to rewrite.
        if target.exists() and force:
            shutil.rmtree(target)
        if not target.exists():
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    refs = repo_dir / "refs"
    refs.mkdir(exist_ok=True)
    partial_ref = refs / f".main.{os.getpid()}"
    partial_ref.write_text(revision)
    os.replace(partial_ref, refs / "main")
    for old in snapshots.iterdir():  # earlier twin builds only; a real download is never here (see install)
        if old.name != revision and (old / MARKER).is_file():
            shutil.rmtree(old, ignore_errors=True)
    return target


# --------------------------------------------------------------------------------------------------------
# Public API.
# --------------------------------------------------------------------------------------------------------


def default_dir() -> Path:
    """Where twins live unless told otherwise: apart from the real hub cache, so no download is shadowed.

    ``$NBINPAINT_TWINS_DIR`` if set, else ``$XDG_CACHE_HOME/nbinpaint/twins``, else ``~/.cache/nbinpaint/twins``.
    """
    if os.environ.get(TWINS_DIR_ENV, "").strip():
        return Path(os.environ[TWINS_DIR_ENV].strip()).expanduser()
    return _default_root()


def install(
    path: str | os.PathLike[str] | None = None,
    repos: Iterable[str] | None = None,
    *,
    force: bool = False,
    quiet: bool = False,
) -> Path:
    """Build twins into a hub-cache folder and return it; complete twins are kept unless ``force``.

    Parameters:
        path: the hub-cache folder (default `default_dir()`).
        repos: repo ids to build (default all of `REPO_IDS`).
        force: rebuild even complete twins.
        quiet: print nothing (otherwise one line per twin built).
    """
    root = Path(path).expanduser() if path is not None else default_dir()
    wanted = list(REPO_IDS if repos is None else repos)
    unknown = [repo for repo in wanted if repo not in _TWINS]
    if unknown:
        raise NbinpaintError(f"No twin for {', '.join(unknown)}. Twins exist for: {', '.join(REPO_IDS)}.")
    for repo_id in wanted:
        snapshot = _snapshot_dir(root, repo_id)
        if snapshot is not None and snapshot.is_dir() and not (snapshot / MARKER).is_file():
            raise NbinpaintError(
                f"{root} holds a real download of {repo_id}; twins would overwrite it. "
                "Install twins into a folder of their own (the default is nbinpaint.twins.default_dir())."
            )
        if not force and _is_complete(root, repo_id):
            continue
        start = time.perf_counter()
        snapshot = _build_one(root, repo_id, force=force)
        if not quiet:
            size = sum(p.stat().st_size for p in snapshot.rglob("*") if p.is_file())
            took = time.perf_counter() - start
            print(f"built twin {repo_id} ({size / 1e6:.1f} MB, {took:.1f} s)")
    return root


def is_twin_path(path: str | os.PathLike[str] | None) -> bool:
    """Whether a local path is a twin snapshot or a component folder inside one (marker beside or above)."""
    if not path:
        return False
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    return (folder / MARKER).is_file() or (folder.parent / MARKER).is_file()


def is_twin(obj: Any) -> bool:
    """Whether a loaded pipeline or model is, or has a part that is, a twin.

    A pipeline loaded by repo id records only the id, so its components decide: every model a pipeline
    loads from a snapshot remembers that folder (diffusers in ``config._name_or_path``, transformers in
    ``name_or_path``). A model loaded on its own by repo id (a ControlNet) remembers only the id; it counts
    as a twin if the hub cache in use resolves that id to a twin snapshot.
    """
    if is_twin_path(_loaded_from(obj)):
        return True
    components = getattr(obj, "components", None)
    if not isinstance(components, Mapping):
        return False
    return any(is_twin_path(_loaded_from(part)) for part in components.values() if part is not None)


def _loaded_from(obj: Any) -> str | None:
    """The folder a model was read from; for one loaded by a twinned repo id, the snapshot it resolves to."""
    config = getattr(obj, "config", None)
    name = getattr(config, "_name_or_path", None) or getattr(obj, "name_or_path", None)
    if not isinstance(name, str) or not name:
        return None
    if os.path.isdir(name):
        return name
    if name in _TWINS:  # e.g. ControlNetModel.from_pretrained(repo_id) records only the id
        from huggingface_hub import try_to_load_from_cache

        marker = try_to_load_from_cache(name, MARKER, cache_dir=str(_active) if _active is not None else None)
        return marker if isinstance(marker, str) else None
    return None


def twin_mode() -> bool:
    """Whether twin mode is on: ``NBINPAINT_TWINS`` is 1, true, yes or on (0, false, no, off or unset: off).

    Any other value is refused with `ConfigurationError` rather than read as off: a typo by an admin
    must not send every kernel to the Hub.
    """
    value = os.environ.get(TWINS_ENV, "")
    text = value.strip().lower()
    if text in _ON:
        return True
    if text in _OFF:
        return False
    raise ConfigurationError(
        f"the environment variable {TWINS_ENV}={quote(value)} is not understood: set it to 1 to load the tiny "
        "twins instead of real checkpoints, or to 0 (or unset it) for real checkpoints."
    )


def twin_cache() -> Path | None:
    """The hub-cache folder twin mode loads from, or None when twin mode is off.

    Twin mode switched on by ``NBINPAINT_TWINS=1`` alone (a JupyterHub admin's setting, with no
    `use_twins` call) is completed here on first use: `use_twins` with ``NBINPAINT_TWINS_DIR`` (or the
    default folder), which builds missing twins there. The manager passes this folder to
    ``from_pretrained(cache_dir=...)`` besides, so loading does not depend on when huggingface_hub read
    its environment.
    """
    if not twin_mode():
        return None
    if _active is not None:
        return _active
    root = default_dir()
    if os.environ.get(TWINS_DIR_ENV, "").strip() and not root.is_dir():
        raise ConfigurationError(
            f"the environment variable {TWINS_DIR_ENV}={quote(os.environ[TWINS_DIR_ENV])} names no folder: build "
            f"the twins there with `python -m nbinpaint twins {root}`, or point it at the folder that command "
            f"printed, or unset it to use {_default_root()}."
        )
    try:
        return use_twins(root)
    except OSError as error:  # a read-only or full folder while building missing twins
        raise ConfigurationError(
            f"twin mode ({TWINS_ENV}=1) could not build the twins in {root} ({error}): build them with "
            f"`python -m nbinpaint twins DIR` into a writable folder and set {TWINS_DIR_ENV}=DIR."
        ) from error


def _default_root() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "nbinpaint" / "twins"


# Loading reads huggingface_hub.constants at call time, but some modules copy a setting at import
# (``from huggingface_hub.constants import HF_HUB_OFFLINE``): in diffusers 0.42 hub_utils (user agent),
# lora_base (a LoRA without weight_name would still ask the Hub for its file list) and attention_dispatch;
# huggingface_hub's cache manager copies HF_HUB_CACHE; transformers 4 kept _is_offline_mode and
# TRANSFORMERS_CACHE. Every such copy in these packages is updated, found by name and type.
_HUB_PACKAGES = ("huggingface_hub", "diffusers", "transformers")


def _patch_imported_settings(cache: str) -> None:
    """Make already-imported hub libraries see twin mode, as they would had the env been set first."""
    values = {
        "HF_HUB_CACHE": cache,
        "HUGGINGFACE_HUB_CACHE": cache,
        "TRANSFORMERS_CACHE": cache,
        "HF_HUB_OFFLINE": True,
        "_is_offline_mode": True,
    }
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in _HUB_PACKAGES:
            continue
        for attr, value in values.items():
            if isinstance(getattr(module, attr, None), type(value)):
                setattr(module, attr, value)


def use_twins(path: str | os.PathLike[str] | None = None, *, install_missing: bool = True) -> Path:
    """Turn twin mode on for this process and its children: repo ids load the twins, offline.

    Sets ``HF_HUB_CACHE`` to the twins' folder, ``HF_HUB_OFFLINE=1`` and ``NBINPAINT_TWINS=1``, and
    updates huggingface_hub/diffusers/transformers if they were imported before (they read these
    variables at import). Works before or after those imports. Announces itself once per process.

    Parameters:
        path: the twins' hub-cache folder (default `default_dir()`).
        install_missing: build missing twins first; if False, a missing twin is an error.
    """
    root = (Path(path).expanduser() if path is not None else default_dir()).resolve()
    missing = [repo for repo in REPO_IDS if not _is_complete(root, repo)]
    if missing and not install_missing:  # before touching anything: a refusal changes no setting
        raise NbinpaintError(
            f"Twins missing in {root}: {', '.join(missing)}. Build them with `python -m nbinpaint twins {root}`."
        )
    # Environment first, so that libraries first imported by the build below read twin mode themselves.
    os.environ["HF_HUB_CACHE"] = str(root)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["NBINPAINT_TWINS"] = "1"
    _patch_imported_settings(str(root))
    if missing:
        install(root, missing)
    global _announced, _active
    _active = root
    if not _announced:
        print(_ANNOUNCEMENT)
        _announced = True
    return root


def main(argv: list[str] | None = None) -> int:
    """``python -m nbinpaint twins [DIR] [--force] [--quiet]``: build the twins and print their folder."""
    parser = argparse.ArgumentParser(
        prog="python -m nbinpaint twins",
        description="Build tiny random-weight twins of the guide's checkpoints into a hub-cache folder.",
    )
    parser.add_argument("dir", nargs="?", type=Path, help=f"hub-cache folder (default: {default_dir()})")
    parser.add_argument("--force", action="store_true", help="rebuild twins that are already complete")
    parser.add_argument("--quiet", action="store_true", help="print only the folder")
    args = parser.parse_args(argv)
    root = install(args.dir, force=args.force, quiet=args.quiet)
    print(root)
    return 0
