# %% [markdown]
# # 17 · Soft inpainting: a grey mask is a per-pixel strength
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)][colab]
#
# Beyond the guide · [all notebooks](00-index.ipynb)
#
# A diffusers inpaint pipeline reads its mask as black or white: it thresholds at half. Users of A1111 (soft
# inpainting), ComfyUI and Fooocus paint grey to say *change this a little*, and the feather of a mask's edge
# means the same. nbinpaint's `soft=True` reads the grey levels as a strength per pixel, as [differential
# diffusion][diffdiff] does: a pixel of grey `g` is held to the image (its latents, noised to the step's
# timestep) for the first `1 - g/255` of the denoising steps and is free after. Black is held to the end, white
# is free from the start, 128 from halfway. The result is blended back with the same grey mask, so black pixels
# keep the input's pixels exactly. It is on by itself when the mask you pass has grey levels.
#
# > **Twin mode.** Where huggingface.co cannot be reached (Binder, CI, a laptop on a train), or when
# > `NBINPAINT_TWINS=1` is set, the first code cell turns on nbinpaint's *twin mode*: every checkpoint below
# > loads, by its usual repo id, as a tiny twin with random weights built on this machine. The pipeline
# > classes, latent shapes, default sizes, schedulers and step counts are those of the real checkpoints, so
# > every line of code and every check runs for real, but **the pictures are noise**. With hub access (Colab
# > with a GPU) the same cells download and use the real checkpoints.
#
# [colab]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/17-soft-inpainting.ipynb
# [diffdiff]: https://differential-diffusion.github.io/

# %%
try:
    import nbinpaint
except ImportError:  # Colab, or any kernel without nbinpaint: install it from GitHub first
    # %pip install -q "nbinpaint @ git+https://github.com/nbinpaint/nbinpaint"
    import nbinpaint

setup = nbinpaint.notebook_setup()  # twin mode if the Hub is out of reach; device and dtype; quiet logs
device, dtype = setup.device, setup.dtype
STEPS = setup.steps

# %% [markdown]
# ## 1. Three bands: keep, half, repaint
#
# A photo and a mask that is black on the left third, grey (128) in the middle and white on the right.

# %%
import numpy as np
from diffusers.utils import make_image_grid
from PIL import Image

from nbinpaint import samples

image = samples.load("chelsea").image.resize((384, 256))
levels = np.zeros((256, 384), np.uint8)
levels[:, 128:256], levels[:, 256:] = 128, 255
bands = Image.fromarray(levels, "L")


def change_by_third(result: Image.Image) -> list[float]:
    """Mean absolute change from the input, per third (left, middle, right), in 0..255 levels."""
    change = np.abs(np.asarray(result, float) - np.asarray(image, float)).mean(axis=(0, 2))
    return [float(change[:128].mean()), float(change[128:256].mean()), float(change[256:].mean())]


# %% tags=["nbval-ignore-output"]
prompt = "a bowl of fruit, detailed oil painting"
soft = nbinpaint.inpaint(image, bands, prompt, model="runwayml/stable-diffusion-inpainting", steps=STEPS, seed=0)
hard = nbinpaint.inpaint(
    image, bands, prompt, model="runwayml/stable-diffusion-inpainting", steps=STEPS, seed=0, soft=False
)
print("mean change per third, soft:      ", [round(x, 1) for x in change_by_third(soft.image)])
print("mean change per third, soft=False:", [round(x, 1) for x in change_by_third(hard.image)])
make_image_grid([image, bands.convert("RGB"), soft.image, hard.image], rows=1, cols=4)

# %% [markdown]
# Soft inpainting switched itself on (the mask has grey levels), the left third is the input's, the middle
# changed less than the right. With `soft=False` the pipeline thresholds the mask: 128 counts as white, the
# middle is repainted like the right, and nothing holds the left to the input pixel for pixel.

# %%
left, middle, right = change_by_third(soft.image)
print("soft:", soft.request.soft, "| left unchanged:", left == 0, "| left < middle < right:", left < middle < right)
assert soft.request.soft and left == 0 and 0 < middle < right
assert hard.request.soft is False and change_by_third(hard.image)[1] > middle

# %% [markdown]
# ## 2. What a grey level means: steps held to the image
#
# At each of the run's `n` steps, a pixel of grey `g` is held while `1 - g/255 > (step + 1) / n`: the rule of
# differential diffusion (`masks = map > i / n` in diffusers' community pipelines, with `map = 1 - g/255`). The
# blend runs in `callback_on_step_end`, chained with nbinpaint's progress, preview and Cancel callbacks. After the
# last step nothing is blended: black pixels then come back exactly through the final composite.

# %%
n = 10
for g in (0, 64, 128, 192, 255):
    held = sum((1 - g / 255) > (step + 1) / n for step in range(n - 1))
    print(f"grey {g:3}: held to the image after {held} of the {n} steps, free for the last {n - held}")

# %% [markdown]
# ## 3. A painted gradient
#
# A mask that goes from black on the left to white on the right: the change grows with the grey.

# %% tags=["nbval-ignore-output"]
gradient = Image.fromarray(np.tile(np.linspace(0, 255, 384).astype(np.uint8), (256, 1)), "L")
graded = nbinpaint.inpaint(image, gradient, prompt, model="runwayml/stable-diffusion-inpainting", steps=STEPS, seed=0)
quarters = np.abs(np.asarray(graded.image, float) - np.asarray(image, float)).mean(axis=(0, 2)).reshape(4, 96)
print("mean change per quarter, left to right:", [round(float(q.mean()), 1) for q in quarters])
make_image_grid([image, gradient.convert("RGB"), graded.image], rows=1, cols=3)

# %%
per_quarter = [float(q.mean()) for q in quarters]
print("grows from the first quarter to the last:", per_quarter[0] < per_quarter[-1])
assert per_quarter[0] < per_quarter[1] < per_quarter[-1]

# %% [markdown]
# ## 4. The canvas's feather
#
# The studio's mask is black and white; its **Mask blur** feathers the edge (`mask_processor.blur`, notebook 03).
# With soft inpainting on, the feather is a ramp of strengths: the repaint fades out across the edge instead of
# stopping at a line, and every pixel the feather does not reach is the input's.

# %% tags=["nbval-ignore-output"]
scene = samples.load("chelsea")
feathered = nbinpaint.inpaint(
    scene.image,
    scene.mask,
    prompt,
    blur_factor=16,
    soft=True,
    steps=STEPS,
    seed=0,
    model="runwayml/stable-diffusion-inpainting",
)
make_image_grid([scene.image, scene.mask.convert("RGB"), feathered.image], rows=1, cols=3)

# %%
from diffusers.image_processor import VaeImageProcessor

ramp = np.asarray(VaeImageProcessor.blur(scene.mask, blur_factor=16))
untouched = ramp == 0
same = np.asarray(feathered.image)[untouched] == np.asarray(scene.image)[untouched]
print(f"grey levels in the feather: {len(np.unique(ramp))}; pixels it does not reach kept: {bool(same.all())}")
assert same.all()

# %% [markdown]
# ## 5. A binary mask gives plain inpainting's pixels
#
# A regular checkpoint's pipeline already pastes the image's noised latents back outside a binary mask after
# every step, with the same noise: soft inpainting's blend repeats exactly that, so a black-and-white mask gives
# the pixels of plain inpainting with `preserve_unmasked=True`. (An inpaint checkpoint does no such blend of its
# own; there a binary soft run also holds the unmasked latents, which changes the repainted area a little.)

# %% tags=["nbval-ignore-output"]
binary = Image.fromarray(np.where(levels == 255, 255, 0).astype(np.uint8), "L")
regular = "stable-diffusion-v1-5/stable-diffusion-v1-5"
plain = nbinpaint.inpaint(image, binary, prompt, model=regular, steps=STEPS, seed=0, preserve_unmasked=True)
soft_binary = nbinpaint.inpaint(image, binary, prompt, model=regular, steps=STEPS, seed=0, soft=True)

# %%
print("identical pixels:", np.array_equal(np.asarray(plain.image), np.asarray(soft_binary.image)))
assert np.array_equal(np.asarray(plain.image), np.asarray(soft_binary.image))

# %% [markdown]
# ## 6. Show code
#
# The recipe records `soft`; **Show code** writes the plain diffusers script with the few lines soft inpainting
# adds: the grey mask, the binary mask the pipeline gets, the blend class (copied from `nbinpaint.soft`) and its
# step callback, and the final `apply_overlay` with the grey mask.

# %%
from nbinpaint.codegen import code_for

script = code_for(soft)
print(soft.recipe["parameters"]["soft"])
shown = [
    line for line in script.splitlines() if not line.startswith((" ", "#")) and ("soft_mask" in line or "blend" in line)
]
print("\n".join(shown))

# %% [markdown]
# ## In the studio
#
# **Soft inpainting** (under Advanced) turns the feather into strengths; unticked, it switches on by itself for
# a mask with grey levels. It is greyed out, with the reason, for Kandinsky 2.2 and the classical fills: they
# take no `strength`, and Kandinsky's pipeline blends its own latents with noise it does not hand out.
#
# `nbinpaint.studio(image, mask, **values)` puts the mask canvas, the parameter panel and the results side by
# side, bound to the kernel's shared pipeline manager; the panel starts from the values given here. Press
# **Generate**: the run goes on in the background, so the notebook and the canvas stay usable, with a progress
# bar and a preview of the predicted final image every few steps; **Cancel** stops it at the end of the current
# step. Controls the selected pipeline does not take are greyed out, with the reason as their tooltip.
# **Show code** prints the plain diffusers script that reproduces the result pixel for pixel.

# %% tags=["nbval-ignore-output"]
studio = nbinpaint.studio(
    scene.image,
    scene.mask,
    model="runwayml/stable-diffusion-inpainting",
    prompt="a bowl of fruit",
    soft=True,
    blur_factor=16,
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
result = studio.result
print("soft:", result.request.soft, "| blur:", result.request.blur_factor, "| pipeline", result.recipe["pipeline"])
