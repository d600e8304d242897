# %% [markdown]
# # 06 · Preserving the unmasked area with apply_overlay
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)][colab]
#
# Guide section: [Non-inpaint specific checkpoints][guide] · [all notebooks](00-index.ipynb)
#
# An inpainting pipeline returns a whole new image: even outside the mask, every pixel went through
# the VAE's encoder and decoder, and an inpainting checkpoint may repaint a little beyond the mask to
# blend its work in. When the unmasked area must stay exactly as it was (a product photo, a
# document), paste the original back over everything the mask keeps: that is
# `VaeImageProcessor.apply_overlay`. The price is a possibly visible seam at the mask's edge.
#
# > **Twin mode.** Where huggingface.co cannot be reached (Binder, CI, a laptop on a train), or when
# > `NBINPAINT_TWINS=1` is set, the first code cell turns on nbinpaint's *twin mode*: every checkpoint below
# > loads, by its usual repo id, as a tiny twin with random weights built on this machine. The pipeline
# > classes, latent shapes, default sizes, schedulers and step counts are those of the real checkpoints, so
# > every line of code and every check runs for real, but **the pictures are noise**. With hub access (Colab
# > with a GPU) the same cells download and use the real checkpoints.
#
# [colab]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/06-preserve-unmasked-area.ipynb
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

# %% [markdown]
# ## 1. The guide's code
#
# The guide writes `device = "cuda"`; here `device` comes from the setup cell. Files it saves go to
# a temporary folder instead of the working directory.

# %%
import tempfile
from pathlib import Path

import numpy as np
from diffusers import AutoPipelineForInpainting
from diffusers.utils import make_image_grid
from PIL import Image

from nbinpaint.samples import load_image_or_standin

out_dir = Path(tempfile.mkdtemp(prefix="nbinpaint-"))
pipeline = AutoPipelineForInpainting.from_pretrained(
    "runwayml/stable-diffusion-inpainting",
    dtype=dtype,
)
pipeline = pipeline.to(device)

# %%
img_url = "https://raw.githubusercontent.com/CompVis/latent-diffusion/main/data/inpainting_examples/overture-creations-5sI6fQgYIuo.png"
mask_url = "https://raw.githubusercontent.com/CompVis/latent-diffusion/main/data/inpainting_examples/overture-creations-5sI6fQgYIuo_mask.png"

init_image = load_image_or_standin(img_url).resize((512, 512))
mask_image = load_image_or_standin(mask_url).resize((512, 512))

# %% tags=["nbval-ignore-output"]
prompt = "Face of a yellow cat, high resolution, sitting on a park bench"
repainted_image = pipeline(prompt=prompt, image=init_image, mask_image=mask_image).images[0]
repainted_image.save(out_dir / "repainted_image.png")

unmasked_unchanged_image = pipeline.image_processor.apply_overlay(mask_image, init_image, repainted_image)
unmasked_unchanged_image.save(out_dir / "force_unmasked_unchanged.png")
make_image_grid([init_image, mask_image, repainted_image, unmasked_unchanged_image], rows=2, cols=2)

# %% [markdown]
# ## 2. The check
#
# "Unmasked" means the mask is pure black there. Where the mask is grey (a soft or resized edge),
# `apply_overlay` blends the two images in proportion.

# %%
keep = np.array(mask_image.convert("L")) == 0
base = np.array(init_image)


def changed_outside(picture) -> float:
    """Fraction of the unmasked pixels that differ from the base image."""
    return float(np.any(np.array(picture)[keep] != base[keep], axis=-1).mean())


print(f"unmasked pixels: {keep.mean():.0%} of the image")
print(f"changed by the pipeline:        {changed_outside(repainted_image):.0%}")
print(f"changed after apply_overlay:    {changed_outside(unmasked_unchanged_image):.0%}")
assert changed_outside(unmasked_unchanged_image) == 0

# %% [markdown]
# Wipe between the pipeline's output (left) and the overlaid one (right): only the area outside the
# mask differs.

# %% tags=["nbval-ignore-output"]
nbinpaint.CompareView(
    repainted_image, unmasked_unchanged_image, before_label="pipeline output", after_label="apply_overlay"
)

# %% [markdown]
# ## 3. The same in nbinpaint
#
# `preserve_unmasked=True` (a checkbox in the studio) applies `apply_overlay` to every result.

# %% tags=["nbval-ignore-output"]
result = nbinpaint.inpaint(init_image, mask_image, prompt, preserve_unmasked=True, steps=STEPS, seed=0)

# %%
print(f"changed with preserve_unmasked=True: {changed_outside(result.image):.0%}")
assert changed_outside(result.image) == 0

# %% [markdown]
# ## 4. Repairing the seam
#
# `apply_overlay`'s price is a seam. The repainted area often comes back a little off in colour (the VAE's
# round trip, the model's own palette), and once the original is pasted back around it, that shift shows as
# an edge. `nbinpaint.seams` measures it and offers three repairs:
#
# - `boundary_delta_e(image, original, mask)`: the colour step across the mask's edge that the result adds to
#   what the original already had there, in CIE ΔE 2000 (`skimage.color.deltaE_ciede2000`; about 1 is just
#   noticeable, above 5 obvious). An untouched image scores 0.
# - `"match"`: `skimage.exposure.match_histograms` maps the colours just inside the edge onto those just
#   outside it, and that mapping recolours the whole repainted area. Unmasked pixels stay as they are.
# - `"poisson"`: `cv2.seamlessClone` keeps the repainted area's detail and takes its level from the original
#   along the edge; outside the mask the original comes back.
# - `"overlay"`: `apply_overlay` as above.
#
# A known case first: the guide's image with only the masked area shifted in colour (warmer, as a drifting
# VAE often makes it), every other pixel untouched.

# %%
from nbinpaint import seams

inside = np.array(mask_image.convert("L")) > 127
shifted_pixels = base.astype(np.int16)
shifted_pixels[inside] += np.array([30, -10, -25], np.int16)
shifted = Image.fromarray(np.clip(shifted_pixels, 0, 255).astype(np.uint8))

repaired = {method: seams.repair(shifted, init_image, mask_image, method) for method in seams.METHODS}
before = seams.boundary_delta_e(shifted, init_image, mask_image)
print(f"boundary ΔE of the untouched image: {seams.boundary_delta_e(init_image, init_image, mask_image):.2f}")
print(f"boundary ΔE with the shift:         {before:.2f}")
for method, picture in repaired.items():
    after = seams.boundary_delta_e(picture, init_image, mask_image)
    print(f"after {method + ':':<29} {after:.2f} ({after / before:.0%} of it)")
assert seams.boundary_delta_e(repaired["match"], init_image, mask_image) <= before / 2

# %% tags=["nbval-ignore-output"]
make_image_grid([shifted, *repaired.values()], rows=1, cols=4)

# %% [markdown]
# `overlay` changes nothing here: outside the mask the picture already is the original. Histogram matching
# assumes the area near the edge should look like its surroundings, which holds for a colour drift; for a
# new object that differs from what is around it (a yellow cat's face on a grey bench) it pulls the object's
# colours towards its surroundings, and `poisson` (or no repair) is the better choice.
#
# In nbinpaint, `seam_repair=` applies a repair after every run (after `preserve_unmasked`), and it is in the
# recipe and in Show code's script. `nbinpaint.repair_seams(result, method=...)` repairs a result you
# already have: it returns a new result whose recipe says so, the same pixels as a run with that setting.

# %% tags=["nbval-ignore-output"]
repaired_run = nbinpaint.inpaint(
    init_image, mask_image, prompt, preserve_unmasked=True, seam_repair="poisson", steps=STEPS, seed=0
)
matched = nbinpaint.repair_seams(result, method="match")  # the result of section 3

# %%
print(
    "seam_repair in the recipes:",
    repaired_run.recipe["parameters"]["seam_repair"],
    "and",
    matched.recipe["parameters"]["seam_repair"],
)
print(
    f"changed outside the mask: {changed_outside(repaired_run.image):.0%} (poisson), "
    f"{changed_outside(matched.image):.0%} (match)"
)
assert changed_outside(repaired_run.image) == changed_outside(matched.image) == 0
assert "match_colours(" in nbinpaint.code_for(matched)  # Show code repairs as nbinpaint did

# %% [markdown]
# ## In the studio
#
# **Preserve unmasked** applies `apply_overlay`: every pixel outside the mask is the original's. **Seam
# repair** (under Advanced) applies `match`, `poisson` or `overlay` after each run.
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
    prompt="road",
    preserve_unmasked=True,
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
import numpy as np

outside = np.asarray(mask_image.convert("L").resize(result.image.size)) == 0
unchanged = np.asarray(result.image)[outside] == np.asarray(init_image.resize(result.image.size))[outside]
print("unmasked pixels kept:", bool(unchanged.all()))
