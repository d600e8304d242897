# %% [markdown]
# # 11 · Chaining: text-to-image, then inpaint
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)][colab]
#
# Guide section: [Text-to-image-to-inpaint][guide] · [all notebooks](00-index.ipynb)
#
# No photo to start from? Generate one from text, then inpaint the part you want changed. The guide
# makes a castle with Stable Diffusion 1.5 and repaints a region of it as a waterfall with
# Kandinsky 2.2. Two different model families means two different autoencoders, so the picture passes
# between them as pixels; notebook 12 shows the case where it can stay in latent space.
#
# > **Twin mode.** Where huggingface.co cannot be reached (Binder, CI, a laptop on a train), or when
# > `NBINPAINT_TWINS=1` is set, the first code cell turns on nbinpaint's *twin mode*: every checkpoint below
# > loads, by its usual repo id, as a tiny twin with random weights built on this machine. The pipeline
# > classes, latent shapes, default sizes, schedulers and step counts are those of the real checkpoints, so
# > every line of code and every check runs for real, but **the pictures are noise**. With hub access (Colab
# > with a GPU) the same cells download and use the real checkpoints.
#
# [colab]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/11-text-to-image-to-inpaint.ipynb
# [guide]: https://huggingface.co/docs/diffusers/using-diffusers/inpaint#text-to-image-to-inpaint

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
# ## 1. Text to image
#
# Two lines of the guide change with the device: `enable_model_cpu_offload()` needs an accelerator (on a CPU
# the weights are in CPU memory already, and diffusers refuses the call), so it runs only on a GPU; and the
# `enable_xformers_memory_efficient_attention()` line is left out, because PyTorch 2 already computes
# attention with its fused scaled-dot-product kernels (notebook 15 measures this).

# %%
from diffusers import AutoPipelineForInpainting, AutoPipelineForText2Image
from diffusers.utils import make_image_grid

pipeline = AutoPipelineForText2Image.from_pretrained(
    "stable-diffusion-v1-5/stable-diffusion-v1-5", dtype=dtype, variant="fp16", use_safetensors=True
)
if device == "cuda":
    pipeline.enable_model_cpu_offload()

# %% tags=["nbval-ignore-output"]
text2image = pipeline(
    "concept art digital painting of an elven castle, inspired by lord of the rings, highly detailed, 8k"
).images[0]
text2image

# %%
text_vae = pipeline.vae  # kept to compare autoencoders below
print(type(pipeline).__name__, "->", text2image.size)

# %% [markdown]
# ## 2. The mask for that picture

# %%
from nbinpaint.samples import load_image_or_standin

mask_image = load_image_or_standin(
    "https://huggingface.co/datasets/huggingface/documentation-images/resolve/main/diffusers/inpaint_text-chain-mask.png"
)

# %% [markdown]
# ## 3. Inpaint with Kandinsky 2.2

# %%
pipeline = AutoPipelineForInpainting.from_pretrained("kandinsky-community/kandinsky-2-2-decoder-inpaint", dtype=dtype)
if device == "cuda":
    pipeline.enable_model_cpu_offload()

# %% tags=["nbval-ignore-output"]
prompt = "digital painting of a fantasy waterfall, cloudy"
image = pipeline(prompt=prompt, image=text2image, mask_image=mask_image).images[0]
make_image_grid([text2image, mask_image, image], rows=1, cols=3)

# %% [markdown]
# ## 4. Why pixels, not latents
#
# Latents mean something only to the autoencoder that made them. Stable Diffusion's `AutoencoderKL`
# and Kandinsky's MoVQ (`VQModel`) are different models, so the castle must be decoded to pixels
# and re-encoded by Kandinsky. `nbinpaint.chains.latent_space_difference` makes that decision from
# the two autoencoders themselves, not from model names.

# %%
from nbinpaint import chains

kandinsky_vae = chains.autoencoder(pipeline)
print(type(text_vae).__name__, "->", type(kandinsky_vae).__name__)
reason = chains.latent_space_difference(text_vae, kandinsky_vae)
print("hand-off in latent space possible:", reason is None, "|", reason)
assert reason is not None

# %% [markdown]
# ## 5. The same chain in one call
#
# `nbinpaint.chains.text_to_inpaint` runs both stages through the shared pipeline manager, plans the
# hand-off as above, and records each stage's recipe.

# %% tags=["nbval-ignore-output"]
import gc

del pipeline
gc.collect()
chain = chains.text_to_inpaint(
    "concept art digital painting of an elven castle, inspired by lord of the rings, highly detailed, 8k",
    mask_image,
    prompt,
    steps=STEPS,
    seed=92,
    inpaint_params={"extra": {"prior_num_inference_steps": STEPS}},
)
nbinpaint.ImageGrid([stage.image for stage in chain.stages], captions=["text-to-image", "inpaint"], cols=2)

# %%
for handoff in chain.handoffs:
    print(f"stage 1 -> 2: {handoff.mode} ({handoff.reason})")
print("stages:", [stage.recipe["pipeline"] for stage in chain.stages])
assert [h.mode for h in chain.handoffs] == ["pixels"]
