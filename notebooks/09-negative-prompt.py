# %% [markdown]
# # 09 · Negative prompt: what to steer away from
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)][colab]
#
# Guide section: [Negative prompt][guide] · [all notebooks](00-index.ipynb)
#
# Guidance (notebook 08) pushes each prediction away from an "unconditional" one made with an empty
# prompt. A negative prompt takes the empty prompt's place, so the push goes away from what it
# describes: "blurry", "poor details" and the like are quick ways to lift quality, and naming an
# unwanted object keeps it out.
#
# > **Twin mode.** Where huggingface.co cannot be reached (Binder, CI, a laptop on a train), or when
# > `NBINPAINT_TWINS=1` is set, the first code cell turns on nbinpaint's *twin mode*: every checkpoint below
# > loads, by its usual repo id, as a tiny twin with random weights built on this machine. The pipeline
# > classes, latent shapes, default sizes, schedulers and step counts are those of the real checkpoints, so
# > every line of code and every check runs for real, but **the pictures are noise**. With hub access (Colab
# > with a GPU) the same cells download and use the real checkpoints.
#
# [colab]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/09-negative-prompt.ipynb
# [guide]: https://huggingface.co/docs/diffusers/using-diffusers/inpaint#negative-prompt

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
# ## 1. The guide's code
#
# Two lines of the guide change with the device: `enable_model_cpu_offload()` needs an accelerator (on a CPU
# the weights are in CPU memory already, and diffusers refuses the call), so it runs only on a GPU; and the
# `enable_xformers_memory_efficient_attention()` line is left out, because PyTorch 2 already computes
# attention with its fused scaled-dot-product kernels (notebook 15 measures this).

# %%
import torch
from diffusers import AutoPipelineForInpainting
from diffusers.utils import make_image_grid

pipeline = AutoPipelineForInpainting.from_pretrained(
    "runwayml/stable-diffusion-inpainting", dtype=dtype, variant="fp16"
)
if device == "cuda":
    pipeline.enable_model_cpu_offload()

# %% tags=["nbval-ignore-output"]
prompt = "concept art digital painting of an elven castle, inspired by lord of the rings, highly detailed, 8k"
negative_prompt = "bad architecture, unstable, poor details, blurry"
image = pipeline(prompt=prompt, negative_prompt=negative_prompt, image=init_image, mask_image=mask_image).images[0]
make_image_grid([init_image, mask_image, image], rows=1, cols=3)

# %% [markdown]
# ## 2. Where the negative prompt goes
#
# `encode_prompt` returns the two text embeddings guidance uses: the prompt's, and the negative
# prompt's (or, without one, the empty prompt's). Same shape, different content.

# %%
with torch.no_grad():
    positive, negative = pipeline.encode_prompt(prompt, device, 1, True, negative_prompt)
    _, empty = pipeline.encode_prompt(prompt, device, 1, True, None)
print("prompt embeddings:", tuple(positive.shape[:2]), "| negative:", tuple(negative.shape[:2]))
print("negative prompt's embeddings differ from the empty prompt's:", not torch.equal(negative, empty))
assert negative.shape == empty.shape and not torch.equal(negative, empty)

# %% [markdown]
# ## 3. With and without, on one seed
#
# The same seed and settings, once without and once with the negative prompt: any difference
# between the two pictures comes from the negative prompt alone.

# %% tags=["nbval-ignore-output"]
without = nbinpaint.inpaint(init_image, mask_image, prompt, steps=STEPS, seed=92)
with_negative = nbinpaint.inpaint(init_image, mask_image, prompt, negative_prompt=negative_prompt, steps=STEPS, seed=92)
nbinpaint.CompareView(
    without.image, with_negative.image, before_label="no negative prompt", after_label="negative prompt"
)

# %%
import numpy as np

same = np.array_equal(np.array(without.image), np.array(with_negative.image))
print("seed", without.seed, "both times; pictures differ:", not same)
assert without.seed == with_negative.seed and not same

# %% [markdown]
# ## In the studio
#
# The **negative prompt** box: what to steer away from, with the seed locked so only it changes.
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
    model="runwayml/stable-diffusion-inpainting",
    prompt=prompt,
    negative_prompt=negative_prompt,
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
assert result.request.negative_prompt == negative_prompt
