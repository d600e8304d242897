# %% [markdown]
# # 08 · Guidance scale: how literally the prompt is followed
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)][colab]
#
# Guide section: [Guidance scale][guide] · [all notebooks](00-index.ipynb)
#
# At every step the UNet predicts the noise twice: once for the prompt and once for an empty prompt.
# Classifier-free guidance moves the prediction away from the second and toward the first by
# `guidance_scale` times their difference. A high value holds the picture closely to the prompt; a low
# value leaves the model more freedom. Together with `strength`, it sets how free the model is.
#
# > **Twin mode.** Where huggingface.co cannot be reached (Binder, CI, a laptop on a train), or when
# > `NBINPAINT_TWINS=1` is set, the first code cell turns on nbinpaint's *twin mode*: every checkpoint below
# > loads, by its usual repo id, as a tiny twin with random weights built on this machine. The pipeline
# > classes, latent shapes, default sizes, schedulers and step counts are those of the real checkpoints, so
# > every line of code and every check runs for real, but **the pictures are noise**. With hub access (Colab
# > with a GPU) the same cells download and use the real checkpoints.
#
# [colab]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/08-guidance-scale.ipynb
# [guide]: https://huggingface.co/docs/diffusers/using-diffusers/inpaint#guidance-scale

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
from diffusers import AutoPipelineForInpainting
from diffusers.utils import make_image_grid

pipeline = AutoPipelineForInpainting.from_pretrained(
    "runwayml/stable-diffusion-inpainting", dtype=dtype, variant="fp16"
)
if device == "cuda":
    pipeline.enable_model_cpu_offload()

# %% tags=["nbval-ignore-output"]
prompt = "concept art digital painting of an elven castle, inspired by lord of the rings, highly detailed, 8k"
image = pipeline(prompt=prompt, image=init_image, mask_image=mask_image, guidance_scale=2.5).images[0]
make_image_grid([init_image, mask_image, image], rows=1, cols=3)

# %% [markdown]
# ## 2. What guidance costs
#
# The two predictions are made in one UNet call on a batch of two. At `guidance_scale` 1 or below,
# guidance would change nothing, so the pipeline skips the empty-prompt half: half the UNet work per
# step. A forward hook on the UNet records the batch size of each call.

# %% tags=["nbval-ignore-output"]
batches = []
hook = pipeline.unet.register_forward_pre_hook(
    lambda module, args, kwargs: batches.append((args[0] if args else kwargs["sample"]).shape[0]),
    with_kwargs=True,
)
unet_batch = {}
try:
    for scale in (2.5, 1.0):
        batches.clear()
        pipeline(
            prompt=prompt,
            image=init_image,
            mask_image=mask_image,
            guidance_scale=scale,
            num_inference_steps=2,
            output_type="latent",
        )
        unet_batch[scale] = sorted(set(batches))
finally:
    hook.remove()

# %%
for scale, sizes in unet_batch.items():
    print(f"guidance_scale={scale}: UNet batch {sizes} per step")
assert unet_batch == {2.5: [2], 1.0: [1]}

# %% [markdown]
# ## 3. Guidance and strength together
#
# A grid on one seed: guidance along the columns, strength down the rows. The bottom-right corner
# (high strength, high guidance) gives the model the most freedom to follow the prompt.

# %% tags=["nbval-ignore-output"]
request = nbinpaint.InpaintRequest(prompt=prompt, image=init_image, mask=mask_image, steps=STEPS, seed=92)
grid = nbinpaint.sweep(request, x=("guidance_scale", [2.5, 7.5, 12.5]), y=("strength", [0.6, 1.0]))
grid.grid()

# %%
print(grid.title(), "| rows x columns:", grid.shape)
assert grid.shape == (2, 3) and len(grid) == 6

# %% [markdown]
# ## In the studio
#
# The **guidance** slider: higher follows the prompt more closely, lower leaves the model freer.
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
    guidance_scale=2.5,
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
assert result.request.guidance_scale == 2.5
