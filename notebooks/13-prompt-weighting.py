# %% [markdown]
# # 13 · Prompt weighting with Compel
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)][colab]
#
# Guide section: [Prompt weighting][guide] · [all notebooks](00-index.ipynb)
#
# A prompt reaches the UNet as one embedding vector per token. Prompt weighting scales the vectors of
# chosen words up or down, so the model attends to them more or less. The
# [Compel](https://github.com/damian0815/compel) library reads a compact syntax (`castle++` or
# `(castle)1.2` to strengthen, `blurry--` or `(blurry)0.8` to weaken) and produces the embeddings;
# the pipeline then takes `prompt_embeds` and `negative_prompt_embeds` in place of text.
#
# > **Twin mode.** Where huggingface.co cannot be reached (Binder, CI, a laptop on a train), or when
# > `NBINPAINT_TWINS=1` is set, the first code cell turns on nbinpaint's *twin mode*: every checkpoint below
# > loads, by its usual repo id, as a tiny twin with random weights built on this machine. The pipeline
# > classes, latent shapes, default sizes, schedulers and step counts are those of the real checkpoints, so
# > every line of code and every check runs for real, but **the pictures are noise**. With hub access (Colab
# > with a GPU) the same cells download and use the real checkpoints.
#
# [colab]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/13-prompt-weighting.ipynb
# [guide]: https://huggingface.co/docs/diffusers/using-diffusers/inpaint#prompt-weighting

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
# ## 1. The pipeline, base image and mask
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
    "runwayml/stable-diffusion-inpainting",
    dtype=dtype,
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
# ## 2. Make the embeddings with Compel
#
# Compel uses the pipeline's own tokenizer and text encoder. The positive and negative embeddings
# must have the same length; both prompts here fit CLIP's 77 tokens, so they do.

# %%
from compel import Compel

compel = Compel(tokenizer=pipeline.tokenizer, text_encoder=pipeline.text_encoder)
prompt = "concept art digital painting of an elven castle++, inspired by lord of the rings, highly detailed, 8k"
negative_prompt = "bad architecture, (blurry)1.3, poor details"
with torch.no_grad():
    prompt_embeds = compel(prompt)
    negative_prompt_embeds = compel(negative_prompt)
print(
    "prompt_embeds:",
    tuple(prompt_embeds.shape[:2]),
    "| negative_prompt_embeds:",
    tuple(negative_prompt_embeds.shape[:2]),
)
assert prompt_embeds.shape == negative_prompt_embeds.shape

# %% [markdown]
# ## 3. What the weights change
#
# Without weights, Compel's embedding is exactly the pipeline's own. With `castle++` (weight
# 1.1² = 1.21), the vectors that change are those of the tokens of "castle", and no others.

# %%
plain = "concept art digital painting of an elven castle, inspired by lord of the rings, highly detailed, 8k"
with torch.no_grad():
    own, _ = pipeline.encode_prompt(plain, device, 1, False)
    compel_plain = compel(plain)
print("Compel without weights == the pipeline's embedding:", torch.allclose(compel_plain, own, atol=1e-5))
assert torch.allclose(compel_plain, own, atol=1e-5)

changed = torch.nonzero((prompt_embeds - compel_plain).abs().amax(dim=-1)[0] > 1e-6).flatten().tolist()
ids = pipeline.tokenizer(plain).input_ids
castle = pipeline.tokenizer("castle", add_special_tokens=False).input_ids
start = next(i for i in range(len(ids)) if ids[i : i + len(castle)] == castle)
print(
    "positions changed by castle++ are exactly the tokens of 'castle':",
    changed == list(range(start, start + len(castle))),
)
assert changed == list(range(start, start + len(castle)))

# %% [markdown]
# ## 4. Inpaint with the embeddings (the guide's code)

# %% tags=["nbval-ignore-output"]
image = pipeline(
    prompt_embeds=prompt_embeds,  # generated from Compel
    negative_prompt_embeds=negative_prompt_embeds,  # generated from Compel
    image=init_image,
    mask_image=mask_image,
).images[0]
make_image_grid([init_image, mask_image, image], rows=1, cols=3)

# %% [markdown]
# ## 5. Weighted against plain, on one seed
#
# `nbinpaint.weighting.compare` runs a request twice with the same seed, once with the prompt as
# plain text (Compel's syntax characters and all) and once as Compel embeddings.

# %% tags=["nbval-ignore-output"]
from nbinpaint import weighting

request = nbinpaint.InpaintRequest(
    prompt=prompt, negative_prompt=negative_prompt, image=init_image, mask=mask_image, steps=STEPS, seed=92
)
plain_result, weighted_result = weighting.compare(request)
nbinpaint.CompareView(
    plain_result.image, weighted_result.image, before_label="plain text", after_label="Compel weights"
)

# %%
import numpy as np

print("weighted run used prompt_embeds:", weighted_result.request.prompt_embeds is not None)
print("same seed:", plain_result.seed == weighted_result.seed)
print("pictures differ:", not np.array_equal(np.array(plain_result.image), np.array(weighted_result.image)))
assert weighted_result.request.prompt_embeds is not None and plain_result.seed == weighted_result.seed

# %% [markdown]
# ## In the studio
#
# The prompt box takes Compel's syntax (`castle++`, `(blurry)1.3`): the panel turns it into `prompt_embeds`;
# **Compare plain vs weighted** shows both side by side.
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
    prompt="a (castle)1.5 on a hill",
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
assert result.recipe["prompt_weighting"]["syntax"] == "compel", result.recipe
