# %% [markdown]
# # 14 · ControlNet inpainting, then a new style with image-to-image
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)][colab]
#
# Guide section: [ControlNet][guide] · [all notebooks](00-index.ipynb)
#
# A ControlNet is a trainable copy of the UNet's encoder that reads an extra *condition image* and
# nudges the UNet at every step. The inpainting ControlNet was trained on the base image with the
# pixels to repaint set to -1, so it knows what to keep and where to paint, and holds the result
# closely to the original's structure. The guide follows it with an image-to-image pass in the
# style of a fine-tuned checkpoint.
#
# > **Twin mode.** Where huggingface.co cannot be reached (Binder, CI, a laptop on a train), or when
# > `NBINPAINT_TWINS=1` is set, the first code cell turns on nbinpaint's *twin mode*: every checkpoint below
# > loads, by its usual repo id, as a tiny twin with random weights built on this machine. The pipeline
# > classes, latent shapes, default sizes, schedulers and step counts are those of the real checkpoints, so
# > every line of code and every check runs for real, but **the pictures are noise**. With hub access (Colab
# > with a GPU) the same cells download and use the real checkpoints.
#
# [colab]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/14-controlnet.ipynb
# [guide]: https://huggingface.co/docs/diffusers/using-diffusers/inpaint#controlnet

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
# ## 1. Load the ControlNet and the pipeline
#
# Two lines of the guide change with the device: `enable_model_cpu_offload()` needs an accelerator (on a CPU
# the weights are in CPU memory already, and diffusers refuses the call), so it runs only on a GPU; and the
# `enable_xformers_memory_efficient_attention()` line is left out, because PyTorch 2 already computes
# attention with its fused scaled-dot-product kernels (notebook 15 measures this).

# %%
import numpy as np
import torch
from diffusers import ControlNetModel, StableDiffusionControlNetInpaintPipeline
from diffusers.utils import make_image_grid

# load ControlNet
controlnet = ControlNetModel.from_pretrained("lllyasviel/control_v11p_sd15_inpaint", dtype=dtype, variant="fp16")

# pass ControlNet to the pipeline
pipeline = StableDiffusionControlNetInpaintPipeline.from_pretrained(
    "runwayml/stable-diffusion-inpainting", controlnet=controlnet, dtype=dtype, variant="fp16"
)
if device == "cuda":
    pipeline.enable_model_cpu_offload()

# %%
from nbinpaint.samples import load_image_or_standin

init_image = load_image_or_standin(
    "https://huggingface.co/datasets/huggingface/documentation-images/resolve/main/diffusers/inpaint.png"
)
mask_image = load_image_or_standin(
    "https://huggingface.co/datasets/huggingface/documentation-images/resolve/main/diffusers/inpaint_mask.png"
)


# %% [markdown]
# ## 2. The condition image (the guide's function)


# %%


# prepare control image
def make_inpaint_condition(init_image, mask_image):
    init_image = np.array(init_image.convert("RGB")).astype(np.float32) / 255.0
    mask_image = np.array(mask_image.convert("L")).astype(np.float32) / 255.0

    assert init_image.shape[0:1] == mask_image.shape[0:1], "image and image_mask must have the same image size"
    init_image[mask_image > 0.5] = -1.0  # set as masked pixel
    init_image = np.expand_dims(init_image, 0).transpose(0, 3, 1, 2)
    init_image = torch.from_numpy(init_image)
    return init_image


control_image = make_inpaint_condition(init_image, mask_image)

# %% [markdown]
# A `(1, 3, height, width)` float tensor: the image's pixels in [0, 1], and exactly -1 in all three
# channels where the mask is white. `nbinpaint.control.make_inpaint_condition` builds the same tensor
# (and checks both sizes, where the guide's `assert` compares only the heights).

# %%
from nbinpaint import control

to_repaint = (control_image[0] == -1).all(dim=0)
white = np.array(mask_image.convert("L")) > 127
print("control_image:", tuple(control_image.shape), control_image.dtype)
print(
    f"pixels set to -1: {to_repaint.float().mean().item():.1%} of the image, exactly the white of the mask:",
    np.array_equal(to_repaint.numpy(), white),
)
print(
    "same as nbinpaint.control.make_inpaint_condition:",
    torch.equal(control_image, control.make_inpaint_condition(init_image, mask_image)),
)
assert np.array_equal(to_repaint.numpy(), white)
assert torch.equal(control_image, control.make_inpaint_condition(init_image, mask_image))

# %% [markdown]
# ## 3. Inpaint under control
#
# The guide shows the condition with `PIL.Image.fromarray(np.uint8(control_image[0][0]))`, which keeps only the red
# channel and casts values in [0, 1] straight to bytes (so the picture is nearly black, and -1 wraps round to 255).
# `control.condition_preview` shows what the ControlNet sees: the image, with the masked pixels black.

# %% tags=["nbval-ignore-output"]
prompt = "concept art digital painting of an elven castle, inspired by lord of the rings, highly detailed, 8k"
image = pipeline(prompt=prompt, image=init_image, mask_image=mask_image, control_image=control_image).images[0]
make_image_grid([init_image, mask_image, control.condition_preview(control_image), image], rows=2, cols=2)

# %%
inpaint_vae = pipeline.vae  # kept to compare autoencoders below
print(type(pipeline).__name__, "->", image.size)

# %% [markdown]
# ## 4. A new style with image-to-image
#
# [`nitrosocke/elden-ring-diffusion`](https://huggingface.co/nitrosocke/elden-ring-diffusion) is a
# Stable Diffusion 1.5 fine-tune that answers to the words "elden ring style".

# %%
from diffusers import AutoPipelineForImage2Image

pipeline = AutoPipelineForImage2Image.from_pretrained("nitrosocke/elden-ring-diffusion", dtype=dtype)
if device == "cuda":
    pipeline.enable_model_cpu_offload()

# %% tags=["nbval-ignore-output"]
prompt = "elden ring style castle"  # include the token "elden ring style" in the prompt
negative_prompt = "bad architecture, deformed, disfigured, poor details"

image_elden_ring = pipeline(prompt, negative_prompt=negative_prompt, image=image).images[0]
make_image_grid([init_image, mask_image, image, image_elden_ring], rows=2, cols=2)

# %% [markdown]
# The fine-tune kept Stable Diffusion 1.5's autoencoder, so (unlike notebook 11) this hand-off could
# stay in latent space:

# %%
from nbinpaint import chains

print("inpaint -> elden ring:", chains.latent_space_difference(inpaint_vae, pipeline.vae) or "same latent space")
assert chains.latent_space_difference(inpaint_vae, pipeline.vae) is None

# %% [markdown]
# ## 5. The chain in one call
#
# `nbinpaint.chains.inpaint_to_img2img` with `controlnet=` builds the condition from the image and
# mask, runs the ControlNet inpaint, and hands the latents to the image-to-image stage.

# %% tags=["nbval-ignore-output"]
import gc

del pipeline, controlnet, inpaint_vae
gc.collect()
chain = chains.inpaint_to_img2img(
    init_image,
    mask_image,
    "concept art digital painting of an elven castle, inspired by lord of the rings, highly detailed, 8k",
    prompt,
    controlnet="lllyasviel/control_v11p_sd15_inpaint",
    img2img_model="nitrosocke/elden-ring-diffusion",
    img2img_params={"negative_prompt": negative_prompt},
    steps=STEPS,
    seed=92,
)
nbinpaint.CompareView(
    init_image, chain.image, before_label="base image", after_label="ControlNet inpaint + elden ring style"
)

# %%
print("stage 1 -> 2:", chain.handoffs[0].mode, f"({chain.handoffs[0].reason})")
print("stages:", [stage.recipe["pipeline"] for stage in chain.stages])
assert chain.handoffs[0].mode == "latent"

# %% [markdown]
# ## In the studio
#
# **ControlNet inpaint** adds `lllyasviel/control_v11p_sd15_inpaint`; the panel builds the inpaint condition (masked
# pixels at -1) from the image and mask and shows it.
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
    model="stable-diffusion-v1-5/stable-diffusion-v1-5",
    prompt=prompt,
    controlnet=True,
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
assert "controlnet" in result.recipe["pipeline"].lower(), result.recipe["pipeline"]
