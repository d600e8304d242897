# %% [markdown]
# # 04 · Popular models: Stable Diffusion, SDXL and Kandinsky 2.2
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)][colab]
#
# Guide section: [Popular models][guide] · [all notebooks](00-index.ipynb)
#
# Three inpainting checkpoints, one prompt, one seed. Stable Diffusion Inpainting (SD 1.5 fine-tuned
# for inpainting at 512 px) is the quick, dependable start. SDXL Inpainting is larger and works at
# 1024 px. Kandinsky 2.2 paints from an image embedding made by its prior. At the end, nbinpaint's
# classical fills (no neural network at all) join them, as the baseline a diffusion model should beat.
#
# > **Twin mode.** Where huggingface.co cannot be reached (Binder, CI, a laptop on a train), or when
# > `NBINPAINT_TWINS=1` is set, the first code cell turns on nbinpaint's *twin mode*: every checkpoint below
# > loads, by its usual repo id, as a tiny twin with random weights built on this machine. The pipeline
# > classes, latent shapes, default sizes, schedulers and step counts are those of the real checkpoints, so
# > every line of code and every check runs for real, but **the pictures are noise**. With hub access (Colab
# > with a GPU) the same cells download and use the real checkpoints.
#
# [colab]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/04-popular-models.ipynb
# [guide]: https://huggingface.co/docs/diffusers/using-diffusers/inpaint#popular-models

# %%
try:
    import nbinpaint
except ImportError:  # Colab, or any kernel without nbinpaint: install it from GitHub first
    # %pip install -q "nbinpaint @ git+https://github.com/nbinpaint/nbinpaint"
    import nbinpaint

setup = nbinpaint.notebook_setup()  # twin mode if the Hub is out of reach; device and dtype; quiet logs
device, dtype = setup.device, setup.dtype

# %% [markdown]
# The three examples share the base image and the mask, so they are loaded once.
#
# `nbinpaint.samples.load_image_or_standin(url)` is `diffusers.utils.load_image(url)` when the URL can be fetched.
# Offline it returns a stand-in of the same pixel size and the same role, made from the photos that ship with
# scikit-image, and prints one line saying which.

# %%
from nbinpaint.samples import load_image_or_standin

init_image = load_image_or_standin(
    "https://huggingface.co/datasets/huggingface/documentation-images/resolve/main/diffusers/inpaint.png"
)
mask_image = load_image_or_standin(
    "https://huggingface.co/datasets/huggingface/documentation-images/resolve/main/diffusers/inpaint_mask.png"
)

# %%
import torch
from diffusers import AutoPipelineForInpainting
from diffusers.utils import make_image_grid

results = {}  # name -> image, for the comparison at the end

# %% [markdown]
# ## 1. Stable Diffusion Inpainting
#
# Two lines of the guide change with the device: `enable_model_cpu_offload()` needs an accelerator (on a CPU the
# weights are in CPU memory already, and diffusers refuses the call), so it runs only on a GPU; and the
# `enable_xformers_memory_efficient_attention()` line is left out, because PyTorch 2 already computes attention with
# its fused scaled-dot-product kernels (notebook 15 measures this). The guide seeds a generator on `"cuda"`; here it
# is seeded on the chosen device.

# %%
pipeline = AutoPipelineForInpainting.from_pretrained(
    "runwayml/stable-diffusion-inpainting", dtype=dtype, variant="fp16"
)
if device == "cuda":
    pipeline.enable_model_cpu_offload()

# %% tags=["nbval-ignore-output"]
generator = torch.Generator(device).manual_seed(92)
prompt = "concept art digital painting of an elven castle, inspired by lord of the rings, highly detailed, 8k"
image = pipeline(prompt=prompt, image=init_image, mask_image=mask_image, generator=generator).images[0]
make_image_grid([init_image, mask_image, image], rows=1, cols=3)

# %%
results["SD inpainting"] = image
print(type(pipeline).__name__, "->", image.size)

# %% [markdown]
# ## 2. Stable Diffusion XL Inpainting
#
# SDXL's default working size is 1024 px: the 512 px inputs are resized up, and the result comes back
# at 1024 px (so the grid gets `resize=512`, to show the three side by side). SDXL can also run with
# its refiner as a second stage: notebook 12.

# %%
pipeline = AutoPipelineForInpainting.from_pretrained(
    "diffusers/stable-diffusion-xl-1.0-inpainting-0.1", dtype=dtype, variant="fp16"
)
if device == "cuda":
    pipeline.enable_model_cpu_offload()

# %% tags=["nbval-ignore-output"]
generator = torch.Generator(device).manual_seed(92)
prompt = "concept art digital painting of an elven castle, inspired by lord of the rings, highly detailed, 8k"
image = pipeline(prompt=prompt, image=init_image, mask_image=mask_image, generator=generator).images[0]
make_image_grid([init_image, mask_image, image], rows=1, cols=3, resize=512)

# %%
results["SDXL inpainting"] = image
print(type(pipeline).__name__, "->", image.size)
assert image.size == (1024, 1024)

# %% [markdown]
# ## 3. Kandinsky 2.2 Inpainting
#
# The combined pipeline runs the prior (prompt to image embedding), then the decoder.

# %%
pipeline = AutoPipelineForInpainting.from_pretrained("kandinsky-community/kandinsky-2-2-decoder-inpaint", dtype=dtype)
if device == "cuda":
    pipeline.enable_model_cpu_offload()

# %% tags=["nbval-ignore-output"]
generator = torch.Generator(device).manual_seed(92)
prompt = "concept art digital painting of an elven castle, inspired by lord of the rings, highly detailed, 8k"
image = pipeline(prompt=prompt, image=init_image, mask_image=mask_image, generator=generator).images[0]
make_image_grid([init_image, mask_image, image], rows=1, cols=3)

# %%
results["Kandinsky 2.2 inpainting"] = image
print(type(pipeline).__name__, "->", image.size)

# %% [markdown]
# ## 4. Side by side, with classical fills
#
# nbinpaint also offers three classical inpainting methods under model ids like `classical/telea`:
# OpenCV's fast-marching fill (Telea), OpenCV's Navier-Stokes fill, and scikit-image's biharmonic
# fill. They ignore the prompt and continue the surrounding pixels inward, which is fine for
# removing a small blemish and hopeless for painting a castle. They take a fraction of a second,
# need no weights, and by construction leave every pixel outside the mask untouched.

# %%
import gc

del pipeline  # free the last guide pipeline before the manager runs
gc.collect()
classical = ["classical/telea", "classical/ns", "classical/biharmonic"]
for method in classical:
    results[method] = nbinpaint.inpaint(init_image, mask_image, model=method).image

# %%
import numpy as np

keep = np.array(mask_image.convert("L")) < 128
for label, picture in results.items():
    print(f"{label:26} {picture.size[0]}x{picture.size[1]}")
for method in classical:
    assert np.array_equal(np.array(results[method])[keep], np.array(init_image)[keep]), method
print("the classical fills leave every unmasked pixel as it was")

# %% tags=["nbval-ignore-output"]
nbinpaint.ImageGrid([init_image, *results.values()], captions=["base image", *results], cols=4)

# %% [markdown]
# ## In the studio
#
# Switch the **model** picker between SD, SDXL, Kandinsky 2.2 and the classical fillers: each checkpoint loads once
# into the shared manager, and the panel adapts to its signature.
#
# `nbinpaint.studio(image, mask, **values)` puts the mask canvas, the parameter panel and the results side by
# side, bound to the kernel's shared pipeline manager; the panel starts from the values given here. Press
# **Generate**: the run goes on in the background, so the notebook and the canvas stay usable, with a progress
# bar and a preview of the predicted final image every few steps; **Cancel** stops it at the end of the current
# step. Controls the selected pipeline does not take are greyed out, with the reason as their tooltip.
# **Show code** prints the plain diffusers script that reproduces the result pixel for pixel.

# %% tags=["nbval-ignore-output"]
studio = nbinpaint.studio(
    init_image,
    mask_image,
    model="diffusers/stable-diffusion-xl-1.0-inpainting-0.1",
    prompt="concept art digital painting of an elven castle, inspired by lord of the rings, highly detailed, 8k",
    steps=10,
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
assert result.recipe["pipeline"] == "StableDiffusionXLInpaintPipeline"
