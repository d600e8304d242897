# %% [markdown]
# # 05 · Regular versus inpaint-specific checkpoints
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)][colab]
#
# Guide section: [Non-inpaint specific checkpoints][guide] · [all notebooks](00-index.ipynb)
#
# `AutoPipelineForInpainting` also accepts an ordinary text-to-image checkpoint such as Stable
# Diffusion 1.5. The guide compares it with a checkpoint trained for inpainting twice: on a creative
# task (a castle), where the regular checkpoint leaves a visible outline, and on a simple removal
# (rocks on a road), where both do well. This notebook runs both comparisons and shows the
# mechanical difference between the two kinds of checkpoint.
#
# > **Twin mode.** Where huggingface.co cannot be reached (Binder, CI, a laptop on a train), or when
# > `NBINPAINT_TWINS=1` is set, the first code cell turns on nbinpaint's *twin mode*: every checkpoint below
# > loads, by its usual repo id, as a tiny twin with random weights built on this machine. The pipeline
# > classes, latent shapes, default sizes, schedulers and step counts are those of the real checkpoints, so
# > every line of code and every check runs for real, but **the pictures are noise**. With hub access (Colab
# > with a GPU) the same cells download and use the real checkpoints.
#
# [colab]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/05-regular-vs-inpaint-checkpoints.ipynb
# [guide]: https://huggingface.co/docs/diffusers/using-diffusers/inpaint#non-inpaint-specific-checkpoints

# %%
try:
    import nbinpaint
except ImportError:  # Colab, or any kernel without nbinpaint: install it from GitHub first
    # %pip install -q "nbinpaint @ git+https://github.com/nbinpaint/nbinpaint"
    import nbinpaint

setup = nbinpaint.notebook_setup()  # twin mode if the Hub is out of reach; device and dtype; quiet logs
device, dtype = setup.device, setup.dtype
# Extra comparisons in this notebook use fewer steps on a CPU; the guide's own cells keep its values.
STEPS = setup.steps

# %%
from nbinpaint.samples import load_image_or_standin

init_image = load_image_or_standin(
    "https://huggingface.co/datasets/huggingface/documentation-images/resolve/main/diffusers/inpaint.png"
)
mask_image = load_image_or_standin(
    "https://huggingface.co/datasets/huggingface/documentation-images/resolve/main/diffusers/inpaint_mask.png"
)

# %% [markdown]
# ## 1. Load both checkpoints
#
# The guide loads them in turn under the name `pipeline`; here they get a name each, so both can be compared. Two
# lines of the guide change with the device: `enable_model_cpu_offload()` needs an accelerator (on a CPU the weights
# are in CPU memory already, and diffusers refuses the call), so it runs only on a GPU; and the
# `enable_xformers_memory_efficient_attention()` line is left out, because PyTorch 2 already computes attention with
# its fused scaled-dot-product kernels (notebook 15 measures this).

# %%
import torch
from diffusers import AutoPipelineForInpainting
from diffusers.utils import make_image_grid

regular = AutoPipelineForInpainting.from_pretrained(
    "stable-diffusion-v1-5/stable-diffusion-v1-5", dtype=dtype, variant="fp16"
)
if device == "cuda":
    regular.enable_model_cpu_offload()

inpaint_specific = AutoPipelineForInpainting.from_pretrained(
    "runwayml/stable-diffusion-inpainting", dtype=dtype, variant="fp16"
)
if device == "cuda":
    inpaint_specific.enable_model_cpu_offload()

# %% [markdown]
# Both load as the same pipeline class, but their UNets differ in what they read. The regular UNet
# sees only the 4 channels of the noisy latents. The inpainting UNet sees 9: the 4 noisy latents,
# 1 channel of mask, and the 4 latent channels of the image with the masked part blanked out. It was
# trained to look at the surroundings while it paints.

# %%
for label, pipe in [("regular", regular), ("inpaint-specific", inpaint_specific)]:
    print(f"{label:17} {type(pipe).__name__}, UNet input channels: {pipe.unet.config.in_channels}")
assert regular.unet.config.in_channels == 4 and inpaint_specific.unet.config.in_channels == 9

# %% [markdown]
# ## 2. The castle: a creative edit

# %% tags=["nbval-ignore-output"]
prompt = "concept art digital painting of an elven castle, inspired by lord of the rings, highly detailed, 8k"
generator = torch.Generator(device).manual_seed(92)
image = regular(prompt=prompt, image=init_image, mask_image=mask_image, generator=generator).images[0]
generator = torch.Generator(device).manual_seed(92)
image_specific = inpaint_specific(prompt=prompt, image=init_image, mask_image=mask_image, generator=generator).images[0]
make_image_grid([init_image, image, image_specific], rows=1, cols=3)

# %% [markdown]
# Drag the wipe to compare: regular checkpoint on the left, inpaint-specific on the right. With
# real weights, the left one still shows the mask's outline.

# %% tags=["nbval-ignore-output"]
nbinpaint.CompareView(
    image, image_specific, before_label="stable-diffusion-v1-5", after_label="stable-diffusion-inpainting"
)


# %% [markdown]
# ## 3. Why the outline: what each checkpoint does outside the mask
#
# With a 4-channel UNet, the pipeline keeps the unmasked area by force: after every denoising step it
# pastes the (re-noised) latents of the original image back outside the mask, and at the last step
# the clean ones. The UNet never learns where the mask is, so the painted part can end at a visible
# seam. The inpainting checkpoint gets the mask as input and denoises the whole latent image, so it
# blends better, and it may also alter what lies outside the mask (notebook 06 deals with that).
#
# The check: run each checkpoint twice with the same seed and two different prompts, and compare the
# final latents outside the mask (away from its edge). The regular checkpoint's are identical, since
# both are the original image's; the inpainting checkpoint's differ.


# %% tags=["nbval-ignore-output"]
def final_latents(pipe, prompt):
    generator = torch.Generator(device).manual_seed(0)
    return pipe(
        prompt=prompt,
        image=init_image,
        mask_image=mask_image,
        generator=generator,
        num_inference_steps=STEPS,
        output_type="latent",
    ).images


latents = {
    label: [final_latents(pipe, p) for p in ("a castle", "a lighthouse")]
    for label, pipe in [("regular", regular), ("inpaint-specific", inpaint_specific)]
}

# %%
import numpy as np
from PIL import Image
from scipy import ndimage

# The mask at latent resolution (1/8), widened by two cells to stay clear of the edge.
side = latents["regular"][0].shape[-1]
small = np.array(mask_image.convert("L").resize((side, side), Image.Resampling.NEAREST)) > 127
outside = torch.from_numpy(~ndimage.binary_dilation(small, iterations=2))
identical = {label: torch.equal(a[..., outside], b[..., outside]) for label, (a, b) in latents.items()}
for label, same in identical.items():
    print(f"{label:17} latents outside the mask, prompt A vs prompt B: {'identical' if same else 'different'}")
assert identical == {"regular": True, "inpaint-specific": False}

# %% [markdown]
# ## 4. The road: a simple removal
#
# For erasing something (the guide's rocks on a road), the regular checkpoint does about as well: the
# masked strip only needs to continue its surroundings. The prompt is just `"road"`.

# %%
from nbinpaint.samples import load_image_or_standin

mask_image = load_image_or_standin(
    "https://huggingface.co/datasets/huggingface/documentation-images/resolve/main/diffusers/road-mask.png"
)

# %% tags=["nbval-ignore-output"]
image = regular(prompt="road", image=init_image, mask_image=mask_image).images[0]
image_specific = inpaint_specific(prompt="road", image=init_image, mask_image=mask_image).images[0]
make_image_grid([init_image, image, image_specific], rows=1, cols=3)

# %% tags=["nbval-ignore-output"]
nbinpaint.CompareView(
    image, image_specific, before_label="stable-diffusion-v1-5", after_label="stable-diffusion-inpainting"
)

# %%
print("road results:", image.size, image_specific.size)
assert image.size == image_specific.size == init_image.size

# %% [markdown]
# ## 5. What the masked area starts from
#
# Below strength 1 the denoising starts from the image noised part of the way, so what lies under the mask
# shows through. A regular checkpoint sees nothing else of the mask (it has no mask channel), so that start
# matters most for it. A1111 calls the choice *Masked content*, and so does nbinpaint's `masked_content`:
# `"original"` (the pixels as they are, the default), `"fill"` (the colours around the mask blurred into it),
# `"latent_noise"` (random latents under the mask, noised like the image's) and `"telea"` (OpenCV's classical
# fill). At strength 1 the start is pure noise and the choice changes nothing, so the panel's tooltip and a
# notice say so; Kandinsky 2.2 and the classical fills take no strength, and the panel greys it out for them.
# The regular checkpoint at strength 0.6 on the road, one seed, each start:

# %% tags=["nbval-ignore-output"]
starts = ["original", "fill", "latent_noise", "telea"]
road = nbinpaint.InpaintRequest(
    image=init_image,
    mask=mask_image,
    prompt="road",
    model="stable-diffusion-v1-5/stable-diffusion-v1-5",
    strength=0.6,
    steps=STEPS,
    seed=0,
)
by_start = nbinpaint.sweep(road, x=("masked_content", starts))
by_start.grid()

# %% [markdown]
# Each start changes what is painted under the mask (a few of the latents beside it too, since the autoencoder
# sees its neighbourhood), and each result's recipe records it, so **Show code** starts the same way.

# %%
under = np.asarray(mask_image.convert("L").resize(init_image.size)) > 127
first = np.asarray(by_start["original"].image, float)
for start in starts[1:]:
    change = np.abs(np.asarray(by_start[start].image, float) - first)[under].mean()
    print(f"{start:12} differs from 'original' under the mask: {bool(change > 0)}")
    assert change > 0 and by_start[start].recipe["parameters"]["masked_content"] == start
