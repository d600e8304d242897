# %% [markdown]
# # 01 · Quick start: inpainting with Kandinsky 2.2
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)][colab]
#
# Guide section: [Inpainting][guide] · [all notebooks](00-index.ipynb)
#
# Inpainting repaints part of a picture and leaves the rest. A pipeline needs three inputs: the
# picture, a **mask** of the same size in which **white marks the pixels to repaint** and black the
# pixels to keep, and a prompt that describes what should appear in the white part. This notebook
# runs the guide's first example with Kandinsky 2.2, then lets you draw your own mask.
#
# > **Twin mode.** Where huggingface.co cannot be reached (Binder, CI, a laptop on a train), or when
# > `NBINPAINT_TWINS=1` is set, the first code cell turns on nbinpaint's *twin mode*: every checkpoint below
# > loads, by its usual repo id, as a tiny twin with random weights built on this machine. The pipeline
# > classes, latent shapes, default sizes, schedulers and step counts are those of the real checkpoints, so
# > every line of code and every check runs for real, but **the pictures are noise**. With hub access (Colab
# > with a GPU) the same cells download and use the real checkpoints.
#
# [colab]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/01-quickstart.ipynb
# [guide]: https://huggingface.co/docs/diffusers/using-diffusers/inpaint#inpainting

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
# ## 1. Load the pipeline
#
# `AutoPipelineForInpainting` reads the checkpoint's `model_index.json` and picks the matching pipeline class, so
# the same line works for Stable Diffusion, SDXL and Kandinsky checkpoints. Kandinsky 2.2 is two models: a *prior*
# that turns the prompt into a CLIP image embedding, and a *decoder* that paints from that embedding. The auto class
# loads both as one combined pipeline.
#
# Two lines of the guide change with the device: `enable_model_cpu_offload()` needs an accelerator (on a CPU the
# weights are in CPU memory already, and diffusers refuses the call), so it runs only on a GPU; and the
# `enable_xformers_memory_efficient_attention()` line is left out, because PyTorch 2 already computes attention with
# its fused scaled-dot-product kernels (notebook 15 measures this).
#
# One spelling differs from the guide, here and in every notebook: the guide passes `torch_dtype=torch.float16`,
# and diffusers 0.42 renamed that argument `dtype` (the old name still works, with a deprecation warning). These
# notebooks follow the installed diffusers and write `dtype=dtype`, the dtype the setup cell chose: float16 on a
# GPU, float32 on a CPU.

# %%
from diffusers import AutoPipelineForInpainting
from diffusers.utils import make_image_grid

pipeline = AutoPipelineForInpainting.from_pretrained("kandinsky-community/kandinsky-2-2-decoder-inpaint", dtype=dtype)
if device == "cuda":
    pipeline.enable_model_cpu_offload()

# %%
print("pipeline:", type(pipeline).__name__)
print("  prior: ", type(pipeline.prior_pipe).__name__)
print("  decoder:", type(pipeline.decoder_pipe).__name__)
assert type(pipeline).__name__ == "KandinskyV22InpaintCombinedPipeline"

# %% [markdown]
# ## 2. Load the base image and the mask
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
import numpy as np

mask = np.array(mask_image.convert("L"))
print("image:", init_image.size, init_image.mode, " mask:", mask_image.size)
print(f"white (repaint): {np.mean(mask > 127):.1%} of the pixels; black (keep): the rest")
assert init_image.size == mask_image.size

# %% [markdown]
# ## 3. Inpaint
#
# The prompt describes the new content; the negative prompt lists what to steer away from
# (notebook 09 looks at how). The result has the base image's size.

# %% tags=["nbval-ignore-output"]
prompt = "a black cat with glowing eyes, cute, adorable, disney, pixar, highly detailed, 8k"
negative_prompt = "bad anatomy, deformed, ugly, disfigured"
image = pipeline(prompt=prompt, negative_prompt=negative_prompt, image=init_image, mask_image=mask_image).images[0]
make_image_grid([init_image, mask_image, image], rows=1, cols=3)

# %%
print("result:", image.size, image.mode)
assert image.size == init_image.size

# %% [markdown]
# ## 4. Your turn: draw a mask
#
# `nbinpaint.MaskCanvas` shows the image with the mask as a red overlay. Paint with the brush, or
# use the rectangle, ellipse, lasso and magic-wand tools; `[` and `]` change the brush size, `x`
# swaps brush and eraser, Ctrl+Z undoes. It starts from the guide's mask: clear it or paint over it.
# (On Colab, if the mouse does nothing, use the **Load mask** button: see notebook 02.)

# %% tags=["nbval-ignore-output"]
canvas = nbinpaint.MaskCanvas(init_image, mask=mask_image)
canvas

# %% [markdown]
# Then run the next cell. `nbinpaint.inpaint` is the call the studio's Generate button makes: it runs
# on the kernel's shared pipeline manager, which loads each checkpoint once and returns the result
# with its recipe (model, seed, every parameter, and whether a twin made it). On a small GPU, free
# the guide's pipeline first (the cell does), since the manager loads its own copy.

# %% tags=["nbval-ignore-output"]
import gc

del pipeline
gc.collect()
result = nbinpaint.inpaint(
    init_image,
    canvas.mask,
    prompt,
    negative_prompt=negative_prompt,
    model="kandinsky-community/kandinsky-2-2-decoder-inpaint",
    steps=STEPS,
    seed=92,
)
make_image_grid([init_image, canvas.mask.convert("RGB"), result.image], rows=1, cols=3)

# %%
print("model:", result.recipe["model"], "| pipeline:", result.recipe["pipeline"])
print("seed:", result.seed, "| size:", result.image.size, "| made by a twin:", result.recipe["twin"])
assert result.image.size == init_image.size

# %% [markdown]
# ## In the studio
#
# Kandinsky 2.2 has no `strength`, `padding_mask_crop` or `negative_prompt_embeds` in its `__call__`: the panel
# greys those out.
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
    canvas.mask,
    model="kandinsky-community/kandinsky-2-2-decoder-inpaint",
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
assert result.seed == 92 and result.request.prompt == prompt
