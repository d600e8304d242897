# %% [markdown]
# # 16 · Outpainting: extend the picture past its edges
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)][colab]
#
# Beyond the guide: [Outpainting][outpaint] in the diffusers docs · [all notebooks](00-index.ipynb)
#
# Outpainting is inpainting of a border: make the canvas larger, mask the new area, and let an inpaint
# pipeline paint it to match the picture. `nbinpaint.outpaint(image, left=, right=, top=, bottom=)` does the
# four steps that make it work well:
#
# 1. **the canvas** grows by the margins (or to `size=` or `aspect=`), rounded *up* to a multiple of 8 by
#    growing the margins, so the original is never cropped;
# 2. **a start fill** for the new area (edge pixels stretched, blurred, OpenCV's Telea fill, or noise);
# 3. **the mask** covers the new area plus an overlap band (32 px by default) into the original, so the
#    pipeline paints *across* the seam instead of up to it;
# 4. **the composite** pastes the original back outside the band, byte for byte, and blends across the band
#    with a feathered ramp, so the seam fades.
#
# It runs on any inpaint checkpoint (SD 1.5, SDXL, Kandinsky 2.2), on a classical fill, and with the SD 1.5
# inpaint ControlNet that the diffusers outpainting page uses.
#
# > **Twin mode.** Where huggingface.co cannot be reached (Binder, CI, a laptop on a train), or when
# > `NBINPAINT_TWINS=1` is set, the first code cell turns on nbinpaint's *twin mode*: every checkpoint below
# > loads, by its usual repo id, as a tiny twin with random weights built on this machine. The pipeline
# > classes, latent shapes, default sizes, schedulers and step counts are those of the real checkpoints, so
# > every line of code and every check runs for real, but **the pictures are noise**. With hub access (Colab
# > with a GPU) the same cells download and use the real checkpoints.
#
# [colab]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/16-outpainting.ipynb
# [outpaint]: https://huggingface.co/docs/diffusers/advanced_inference/outpaint

# %%
try:
    import nbinpaint
except ImportError:  # Colab, or any kernel without nbinpaint: install it from GitHub first
    # %pip install -q "nbinpaint @ git+https://github.com/nbinpaint/nbinpaint"
    import nbinpaint

setup = nbinpaint.notebook_setup()  # twin mode if the Hub is out of reach; device and dtype; quiet logs
device, dtype = setup.device, setup.dtype
# Fewer denoising steps on a CPU.
STEPS = setup.steps

# %% [markdown]
# ## 1. The plan: canvas, mask and seam
#
# The astronaut photo from scikit-image is 512x512. Extended by 128 px on the left and on the right it becomes
# 768x512, with the original at x = 128. `nbinpaint.outpainting.plan` decides the geometry without running
# anything.

# %%
import dataclasses

import numpy as np
from diffusers.utils import make_image_grid

from nbinpaint import outpainting, samples

image = samples.load("astronaut").image
plan = outpainting.plan(image.size, left=128, right=128)
print(f"image {image.size[0]}x{image.size[1]} -> canvas {plan.size[0]}x{plan.size[1]}, original at {plan.box}")
print(f"overlap band {plan.overlap} px, feathered over {plan.feather} px, start fill {plan.fill!r}")
assert plan.size == (768, 512)

canvas, mask = plan.canvas(image), plan.mask()
repaint = np.asarray(mask) > 127
print(f"the mask repaints {repaint.mean():.0%} of the canvas: the new area and the band into the original")
assert repaint[:, :160].all() and not repaint[:, 160:608].any() and repaint[:, 608:].all()
make_image_grid([canvas, mask.convert("RGB")], rows=1, cols=2).resize((768, 256))

# %% [markdown]
# Across the band the composite takes a ramp of the pipeline's picture: all of it at the original's edge, none
# 32 px in. Here are the weights along one row, from the canvas's left edge into the original:

# %%
weights = plan.weights()
print("x = 120..168, step 4:", np.round(weights[0, 120:169:4], 2).tolist())
assert weights[0, 128] == 1 and weights[0, 160] == 0 and 0 < weights[0, 144] < 1

# %% [markdown]
# Sizes that are not multiples of 8 grow: the extra pixels go to the sides being extended, or to the
# right/bottom side of an axis that was not (the original is never cut). `size=` and `aspect=` centre the
# original.

# %%
for asked in [{"right": 100}, {"left": 5, "right": 6}, {"size": (700, 600)}, {"aspect": "16:9"}]:
    p = outpainting.plan((500, 333), **asked)
    margins = ", ".join(f"{side} {getattr(p, side)}" for side in outpainting.SIDES)
    print(f"{asked!s:22} -> {p.size[0]}x{p.size[1]} (margins: {margins})")
    assert p.size[0] % 8 == 0 and p.size[1] % 8 == 0

# %% [markdown]
# ## 2. Start fills
#
# What the new area holds when the pipeline starts. An inpaint checkpoint at strength 1 repaints the masked
# area from noise whatever it holds; the start matters for strength below 1 and for regular checkpoints
# (notebook 05), and a classical fill or the ControlNet sees it. Every fill leaves the original's pixels as
# they are.

# %%
starts = {fill: dataclasses.replace(plan, fill=fill).canvas(image, seed=0) for fill in outpainting.FILLS}
for fill, start in starts.items():
    assert np.array_equal(np.asarray(start.crop(plan.box)), np.asarray(image))
    print(f"{fill:6} {outpainting.FILLS[fill]}")
make_image_grid([start.resize((384, 256)) for start in starts.values()], rows=2, cols=2)

# %% [markdown]
# ## 3. Outpaint with an inpaint checkpoint
#
# One call: the plan, a start fill, one run on the shared pipeline manager, the composite. The result records
# the outpainting in its recipe.

# %% tags=["nbval-ignore-output"]
result = nbinpaint.outpaint(
    image,
    left=128,
    right=128,
    prompt="an astronaut in a wide hangar, photo",
    model="runwayml/stable-diffusion-inpainting",
    steps=STEPS,
    seed=7,
)
result.image

# %%
out, original = np.asarray(result.image), np.asarray(image)
print("result size:", result.image.size, "| pipeline:", result.recipe["pipeline"])
kept = np.array_equal(out[:, 160:608], original[:, 32:480])
print("original pixels outside the band identical:", kept)
print("recipe:", result.recipe["outpaint"])
assert result.image.size == (768, 512) and kept

# %% [markdown]
# ## 4. With a classical fill: no weights needed
#
# `classical/telea` continues the surrounding pixels (OpenCV's Telea method). It needs no download, so its
# picture is real even in twin mode, and the seam shows the feathering: inside the band, pixels lie between
# the original and the fill.

# %%
classical = nbinpaint.outpaint(image, left=128, right=128, model="classical/telea", fill="edge")
band = np.asarray(classical.image)[:, 128:160].astype(int)
inside = original[:, :32].astype(int)
print("size:", classical.image.size, "| band pixels changed:", f"{(band != inside).mean():.0%}")
assert classical.image.size == (768, 512)
assert np.array_equal(np.asarray(classical.image)[:, 160:608], original[:, 32:480])
classical.image.resize((576, 384))

# %% [markdown]
# ## 5. SDXL, Kandinsky, and the ControlNet for SD 1.5
#
# The same call runs on every inpaint checkpoint. For SD 1.5 the diffusers outpainting page guides the fill
# with the inpaint ControlNet: `controlnet=True` adds `lllyasviel/control_v11p_sd15_inpaint`, whose condition
# is the canvas with the masked pixels set to -1 (notebook 14).

# %% tags=["nbval-ignore-output"]
small = image.resize((256, 256))
runs = {
    "SDXL inpainting": nbinpaint.outpaint(
        small, top=64, model="diffusers/stable-diffusion-xl-1.0-inpainting-0.1", steps=STEPS, seed=1
    ),
    "Kandinsky 2.2": nbinpaint.outpaint(
        small, top=64, model="kandinsky-community/kandinsky-2-2-decoder-inpaint", steps=STEPS, seed=1
    ),
    "SD 1.5 + ControlNet": nbinpaint.outpaint(
        small, top=64, model="stable-diffusion-v1-5/stable-diffusion-v1-5", controlnet=True, steps=STEPS, seed=1
    ),
}
make_image_grid([run.image for run in runs.values()], rows=1, cols=3)

# %%
for name, run in runs.items():
    same = np.array_equal(np.asarray(run.image)[96:], np.asarray(small)[32:])
    print(f"{name:20} {run.image.size} {run.recipe['pipeline']}: original kept below the band: {same}")
    assert run.image.size == (256, 320) and same

# %% [markdown]
# ## 6. The recipe and Show code
#
# Saved as a PNG, the result carries its recipe; `load_recipe` gives the outpainting back, and `code_for`
# writes the plain diffusers script: load the original, extend it, make the mask, run the pipeline, composite.
# Run in a folder holding the original as `image.png`, it gives the same pixels
# (`nbinpaint.codegen.export(result, folder)` writes both).

# %%
import tempfile
from pathlib import Path

folder = Path(tempfile.mkdtemp())
saved = result.save(folder / "outpainted.png")
recipe = nbinpaint.load_recipe(saved)
print(recipe["outpaint"])
assert outpainting.Outpaint.from_recipe(recipe["outpaint"]) == plan

code = nbinpaint.code_for(recipe)
start = code.index("# Outpainting")
print(code[start : code.index("# The seed")])

# %% [markdown]
# ## In the studio
#
# Under the canvas and the panel, **Expand** has a button per side, the pixels to add and the start fill. A
# click outpaints the canvas's picture with the panel's model, prompt, steps and seed; the result is shown,
# saved and coded like a Generate result, and **Use as base image** continues from the larger picture. The
# buttons are greyed out, with the reason, where the chosen pipeline cannot paint a masked border.

# %% tags=["nbval-ignore-output"]
studio = nbinpaint.studio(image, model="runwayml/stable-diffusion-inpainting", steps=STEPS, seed=3, lock_seed=True)
studio

# %%
studio.panel.wait_ready(300)
print("Expand buttons off:", studio.expand.reason or "no")
studio.expand.grow.value = 64
run = studio.expand.expand("right")  # what the Right button does
assert run.wait(900) and run.status == "done", run.message
print("after Expand right by 64:", studio.result.image.size, "| seed", studio.result.seed)
assert studio.result.image.size == (576, 512)
