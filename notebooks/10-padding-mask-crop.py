# %% [markdown]
# # 10 · Padding mask crop: inpaint a small area at full resolution
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)][colab]
#
# Guide section: [Padding mask crop][guide] · [all notebooks](00-index.ipynb)
#
# A pipeline works at one size (512 px for Stable Diffusion 1.5) and squeezes the whole image into it,
# so a small masked area in a large photo gets few of the model's pixels. With
# `padding_mask_crop=N` the pipeline instead cuts out the mask's bounding box plus N pixels of context
# (widened to the working aspect ratio), inpaints that crop at the working size, scales it back, and
# pastes it over the original. The result keeps the original size, and the masked area gets more
# detail.
#
# > **Twin mode.** Where huggingface.co cannot be reached (Binder, CI, a laptop on a train), or when
# > `NBINPAINT_TWINS=1` is set, the first code cell turns on nbinpaint's *twin mode*: every checkpoint below
# > loads, by its usual repo id, as a tiny twin with random weights built on this machine. The pipeline
# > classes, latent shapes, default sizes, schedulers and step counts are those of the real checkpoints, so
# > every line of code and every check runs for real, but **the pictures are noise**. With hub access (Colab
# > with a GPU) the same cells download and use the real checkpoints.
#
# [colab]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/10-padding-mask-crop.ipynb
# [guide]: https://huggingface.co/docs/diffusers/using-diffusers/inpaint#padding-mask-crop

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

# %% [markdown]
# ## 1. The guide's code
#
# The guide's `torch.Generator(device='cuda')` and `.to('cuda')` use the chosen device here.

# %%
import torch
from diffusers import AutoPipelineForInpainting

generator = torch.Generator(device=device).manual_seed(0)
pipeline = AutoPipelineForInpainting.from_pretrained(
    "stable-diffusion-v1-5/stable-diffusion-v1-5",
    dtype=dtype,
).to(device)

# %%
from nbinpaint.samples import load_image_or_standin

base = load_image_or_standin("https://huggingface.co/datasets/YiYiXu/testing-images/resolve/main/seashore.png")
mask = load_image_or_standin("https://huggingface.co/datasets/YiYiXu/testing-images/resolve/main/seashore_mask.png")

# %% tags=["nbval-ignore-output"]
image = pipeline(
    "boat",
    image=base,
    mask_image=mask,
    strength=0.75,
    generator=generator,
    padding_mask_crop=32,
).images[0]
image

# %% [markdown]
# ## 2. What the pipeline did
#
# `mask_processor.get_crop_region` is the function the pipeline calls to find the crop. Outside the
# mask, the result is the original photo, pixel for pixel: the crop is pasted back with
# `apply_overlay` (notebook 06).

# %%
import numpy as np

width = height = pipeline.unet.config.sample_size * pipeline.vae_scale_factor  # the working size
left, top, right, bottom = pipeline.mask_processor.get_crop_region(mask, width, height, pad=32)
print(f"image {base.size[0]}x{base.size[1]}, working size {width}x{height}")
print(f"crop box ({left}, {top}, {right}, {bottom}): {right - left}x{bottom - top} px, inpainted at {width}x{height}")
print(
    f"model pixels per image pixel: {width / (right - left):.2f} in the crop,",
    f"{width / base.size[0]:.2f} for the whole image",
)

keep = np.array(mask.convert("L")) == 0
print(
    "result size:",
    image.size,
    "| unmasked pixels unchanged:",
    np.array_equal(np.array(image)[keep], np.array(base)[keep]),
)
assert image.size == base.size
assert np.array_equal(np.array(image)[keep], np.array(base)[keep])

# %% [markdown]
# ## 3. Without the crop
#
# The same call without `padding_mask_crop` works on the whole image squeezed to the working size,
# and returns it at that size.

# %% tags=["nbval-ignore-output"]
generator = torch.Generator(device=device).manual_seed(0)
baseline = pipeline(
    "boat", image=base, mask_image=mask, strength=0.75, generator=generator, num_inference_steps=STEPS
).images[0]

# %%
print("without padding_mask_crop:", baseline.size, "| with it:", image.size)
assert baseline.size == (width, height)

# %% tags=["nbval-ignore-output"]
nbinpaint.CompareView(
    baseline.resize(base.size), image, before_label="whole image at 512 px", after_label="padding_mask_crop=32"
)

# %% [markdown]
# ## In the studio
#
# **Crop around mask** turns `padding_mask_crop` on; its slider sets the margin.
#
# `nbinpaint.studio(image, mask, **values)` puts the mask canvas, the parameter panel and the results side by
# side, bound to the kernel's shared pipeline manager; the panel starts from the values given here. Press
# **Generate**: the run goes on in the background, so the notebook and the canvas stay usable, with a progress
# bar and a preview of the predicted final image every few steps; **Cancel** stops it at the end of the current
# step. Controls the selected pipeline does not take are greyed out, with the reason as their tooltip.
# **Show code** prints the plain diffusers script that reproduces the result pixel for pixel.

# %% tags=["nbval-ignore-output"]
studio = nbinpaint.studio(
    base,
    mask,
    model="runwayml/stable-diffusion-inpainting",
    prompt="a yellow cat",
    crop=True,
    padding_mask_crop=32,
    steps=STEPS,
    seed=92,
    lock_seed=True,
)
studio

# %%
studio.panel.wait_ready(300)  # the panel reads the pipeline's signature in the background
print("greyed out:", ", ".join(sorted(studio.panel.disabled_reasons)) or "nothing")
run = studio.generate()  # exactly what the Generate button does
assert run.wait(900) and run.status == "done", run.message
result = studio.result  # the run's first image, with its request and recipe
print("seed", result.seed, "| size", result.image.size, "| pipeline", result.recipe["pipeline"])
assert result.request.padding_mask_crop == 32 and result.image.size == base.size
