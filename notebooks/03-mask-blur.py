# %% [markdown]
# # 03 · Mask blur: a soft edge between old and new
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)][colab]
#
# Guide section: [Mask blur][guide] · [all notebooks](00-index.ipynb)
#
# A hard-edged mask tells the pipeline "repaint exactly here", and the seam can show. Blurring the
# mask turns its edge into a band of greys; the pipeline then blends the old and the new pixels
# across that band. `blur_factor` is the Gaussian blur's radius: 0 keeps the edge sharp, larger
# values widen the transition. The blur is done by the pipeline's own mask processor.
#
# > **Twin mode.** Where huggingface.co cannot be reached (Binder, CI, a laptop on a train), or when
# > `NBINPAINT_TWINS=1` is set, the first code cell turns on nbinpaint's *twin mode*: every checkpoint below
# > loads, by its usual repo id, as a tiny twin with random weights built on this machine. The pipeline
# > classes, latent shapes, default sizes, schedulers and step counts are those of the real checkpoints, so
# > every line of code and every check runs for real, but **the pictures are noise**. With hub access (Colab
# > with a GPU) the same cells download and use the real checkpoints.
#
# [colab]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/03-mask-blur.ipynb
# [guide]: https://huggingface.co/docs/diffusers/using-diffusers/inpaint#mask-blur

# %%
try:
    import nbinpaint
except ImportError:  # Colab, or any kernel without nbinpaint: install it from GitHub first
    # %pip install -q "nbinpaint @ git+https://github.com/nbinpaint/nbinpaint"
    import nbinpaint

setup = nbinpaint.notebook_setup()  # twin mode if the Hub is out of reach; device and dtype; quiet logs
device, dtype = setup.device, setup.dtype

# %% [markdown]
# ## 1. The guide's code
#
# The guide loads a regular Stable Diffusion 1.5 checkpoint for this (any inpainting pipeline has a
# `mask_processor`) and moves it to the device with `.to(...)` instead of offloading.

# %%
from diffusers import AutoPipelineForInpainting

pipeline = AutoPipelineForInpainting.from_pretrained(
    "stable-diffusion-v1-5/stable-diffusion-v1-5",
    dtype=dtype,
).to(device)

# %%
from nbinpaint.samples import load_image_or_standin

mask = load_image_or_standin("https://huggingface.co/datasets/YiYiXu/testing-images/resolve/main/seashore_mask.png")

# %%
blurred_mask = pipeline.mask_processor.blur(mask, blur_factor=33)
blurred_mask

# %% [markdown]
# ## 2. What changed
#
# A sharp mask has only black and white. After the blur there are many grey levels, and only near
# the edge: deep inside the mask stays white, far outside stays black.

# %%
import numpy as np
from scipy import ndimage

sharp = np.array(mask.convert("L"))
soft = np.array(blurred_mask.convert("L"))


def between(a: np.ndarray) -> int:
    """Pixels neither black nor white."""
    return int(np.count_nonzero((a > 0) & (a < 255)))


print(f"sharp mask:   {len(np.unique(sharp)):3} grey levels, {between(sharp):6} pixels between black and white")
print(f"blurred mask: {len(np.unique(soft)):3} grey levels, {between(soft):6} pixels between black and white")
assert between(soft) > between(sharp)

# Distance of every pixel to the mask's edge: changed pixels all lie in a band around it.
inside = sharp > 127
to_edge = np.maximum(ndimage.distance_transform_edt(inside), ndimage.distance_transform_edt(~inside))
changed = sharp != soft
print(f"every changed pixel lies within {to_edge[changed].max():.0f} px of the edge")
assert to_edge[changed].max() < 4 * 33

# %% [markdown]
# ## 3. The canvas previews the same blur
#
# `MaskCanvas` has a **Blur** slider: the overlay then shows the mask the way
# `mask_processor.blur(mask, blur_factor)` will hand it to the pipeline, and `canvas.feathered_mask`
# returns that mask. Drag the slider to see the band widen; the check below confirms the preview is
# not an approximation.

# %%
from nbinpaint.samples import load_image_or_standin

base = load_image_or_standin("https://huggingface.co/datasets/YiYiXu/testing-images/resolve/main/seashore.png")

# %% tags=["nbval-ignore-output"]
canvas = nbinpaint.MaskCanvas(base, mask=mask)
canvas.blur_factor = 33
canvas

# %%
preview = np.array(canvas.feathered_mask)
print("canvas preview == mask_processor.blur:", np.array_equal(preview, soft))
assert np.array_equal(preview, soft)

# %% [markdown]
# To inpaint with a soft edge, pass `blurred_mask` as `mask_image`, or give `blur_factor=33` to
# `nbinpaint.inpaint`, which applies the same blur.

# %% [markdown]
# ## In the studio
#
# The panel's **blur** slider is `blur_factor`: the canvas shows the feathered mask exactly as `mask_processor.blur`
# will hand it to the pipeline.
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
    prompt="a small black cat",
    blur_factor=33,
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
assert result.request.blur_factor == 33
