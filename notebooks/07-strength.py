# %% [markdown]
# # 07 · Strength: how far the masked area may move from the original
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)][colab]
#
# Guide section: [Strength][guide] · [all notebooks](00-index.ipynb)
#
# `strength` (0 to 1) says how much noise is added to the base image before denoising starts. At 1
# the original is drowned in noise and the model paints the masked area from scratch; at 0.6 enough
# of it survives that the result keeps its colours and layout. It also decides the work done: the pipeline skips
# the first part of its schedule and runs only `int(num_inference_steps * strength)` denoising steps.
#
# > **Twin mode.** Where huggingface.co cannot be reached (Binder, CI, a laptop on a train), or when
# > `NBINPAINT_TWINS=1` is set, the first code cell turns on nbinpaint's *twin mode*: every checkpoint below
# > loads, by its usual repo id, as a tiny twin with random weights built on this machine. The pipeline
# > classes, latent shapes, default sizes, schedulers and step counts are those of the real checkpoints, so
# > every line of code and every check runs for real, but **the pictures are noise**. With hub access (Colab
# > with a GPU) the same cells download and use the real checkpoints.
#
# [colab]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/07-strength.ipynb
# [guide]: https://huggingface.co/docs/diffusers/using-diffusers/inpaint#strength

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
image = pipeline(prompt=prompt, image=init_image, mask_image=mask_image, strength=0.6).images[0]
make_image_grid([init_image, mask_image, image], rows=1, cols=3)


# %% [markdown]
# ## 2. Count the steps
#
# `callback_on_step_end` is called once after every denoising step, with the step's timestep. It
# counts the steps each strength runs, and shows where on the noise schedule each run starts (the
# timesteps go from about 1000, pure noise, down to 0). `output_type="latent"` skips the final decode,
# which these counts do not need.


# %% tags=["nbval-ignore-output"]
def timesteps_run(strength: float) -> list[int]:
    seen = []

    def on_step_end(pipe, step, timestep, callback_kwargs):
        seen.append(int(timestep))
        return callback_kwargs

    pipeline(
        prompt=prompt,
        image=init_image,
        mask_image=mask_image,
        strength=strength,
        num_inference_steps=STEPS,
        callback_on_step_end=on_step_end,
        output_type="latent",
    )
    return seen


runs = {strength: timesteps_run(strength) for strength in (0.6, 0.8, 1.0)}

# %%
for strength, seen in runs.items():
    print(f"strength {strength}: {len(seen):2} of {STEPS} steps, from timestep {seen[0]} down to {seen[-1]}")
    assert len(seen) == int(STEPS * strength)

# %% [markdown]
# ## 3. Sweep it
#
# `nbinpaint.sweep` runs one request per value, all with the same seed, so the only difference
# between the pictures is the swept parameter. The grid's thumbnails enlarge on click; each image
# downloads with its recipe.

# %% tags=["nbval-ignore-output"]
request = nbinpaint.InpaintRequest(prompt=prompt, image=init_image, mask=mask_image, steps=STEPS, seed=92)
strengths = nbinpaint.sweep(request, x=("strength", [0.6, 0.8, 1.0]))
strengths.grid()

# %%
print(strengths.title())
assert len(strengths) == 3 and {r.seed for r in strengths.results.values()} == {92}

# %% [markdown]
# ## In the studio
#
# The **strength** slider: lower keeps more of the original; the progress bar counts the `int(steps * strength)`
# steps that actually run.
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
    strength=0.6,
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
assert result.request.strength == 0.6
