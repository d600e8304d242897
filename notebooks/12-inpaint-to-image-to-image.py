# %% [markdown]
# # 12 · Chaining: inpaint, refine, then image-to-image
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)][colab]
#
# Guide section: [Inpaint-to-image-to-image][guide] · [all notebooks](00-index.ipynb)
#
# An inpainting result can be improved by further pipelines. The guide inpaints with Stable
# Diffusion, passes the result through SDXL's refiner (loaded as an inpainting pipeline) and finishes
# with an image-to-image pass. Two techniques make such chains cheaper: keeping the output in
# **latent space** when the next pipeline uses the same autoencoder (no decode and re-encode), and
# **`from_pipe`**, which builds the next pipeline from the components already in memory.
#
# > **Twin mode.** Where huggingface.co cannot be reached (Binder, CI, a laptop on a train), or when
# > `NBINPAINT_TWINS=1` is set, the first code cell turns on nbinpaint's *twin mode*: every checkpoint below
# > loads, by its usual repo id, as a tiny twin with random weights built on this machine. The pipeline
# > classes, latent shapes, default sizes, schedulers and step counts are those of the real checkpoints, so
# > every line of code and every check runs for real, but **the pictures are noise**. With hub access (Colab
# > with a GPU) the same cells download and use the real checkpoints.
#
# [colab]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/12-inpaint-to-image-to-image.ipynb
# [guide]: https://huggingface.co/docs/diffusers/using-diffusers/inpaint#inpaint-to-image-to-image

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
# ## 1. Inpaint with Stable Diffusion
#
# Two lines of the guide change with the device: `enable_model_cpu_offload()` needs an accelerator (on a CPU
# the weights are in CPU memory already, and diffusers refuses the call), so it runs only on a GPU; and the
# `enable_xformers_memory_efficient_attention()` line is left out, because PyTorch 2 already computes
# attention with its fused scaled-dot-product kernels (notebook 15 measures this).

# %%
import torch
from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting
from diffusers.utils import make_image_grid

pipeline = AutoPipelineForInpainting.from_pretrained(
    "runwayml/stable-diffusion-inpainting", dtype=dtype, variant="fp16"
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

# %% tags=["nbval-ignore-output"]
prompt = "concept art digital painting of an elven castle, inspired by lord of the rings, highly detailed, 8k"
image_inpainting = pipeline(prompt=prompt, image=init_image, mask_image=mask_image).images[0]

# resize image to 1024x1024 for SDXL
image_inpainting = image_inpainting.resize((1024, 1024))

# %%
sd_vae = pipeline.vae  # kept to compare autoencoders below
print("inpainted, resized for SDXL:", image_inpainting.size)

# %% [markdown]
# ## 2. Refine with SDXL's refiner, and stay in latent space
#
# `output_type="latent"` returns the latents instead of decoding them to a picture.

# %%
pipeline = AutoPipelineForInpainting.from_pretrained(
    "stabilityai/stable-diffusion-xl-refiner-1.0", dtype=dtype, variant="fp16"
)
if device == "cuda":
    pipeline.enable_model_cpu_offload()

# %% tags=["nbval-ignore-output"]
image = pipeline(prompt=prompt, image=image_inpainting, mask_image=mask_image, output_type="latent").images[0]

# %%
print(type(pipeline).__name__, "returned", type(image).__name__, tuple(image.shape))
assert isinstance(image, torch.Tensor) and image.shape[0] == pipeline.vae.config.latent_channels

# %% [markdown]
# ## 3. Image-to-image with `from_pipe`
#
# `AutoPipelineForImage2Image.from_pipe(pipeline)` makes the refiner's image-to-image pipeline out of
# the very modules already loaded. Given latents as `image`, it starts from them directly. (The grid
# gets `resize=512` because its four pictures come in two sizes.)

# %% tags=["nbval-ignore-output"]
refiner = pipeline  # kept to compare components below
pipeline = AutoPipelineForImage2Image.from_pipe(pipeline)

image = pipeline(prompt=prompt, image=image).images[0]
make_image_grid([init_image, mask_image, image_inpainting, image], rows=2, cols=2, resize=512)

# %%
shared = sorted(
    name for name, part in pipeline.components.items() if part is not None and part is refiner.components[name]
)
print(type(refiner).__name__, "->", type(pipeline).__name__)
print("components shared, not copied:", ", ".join(shared))
assert pipeline.unet is refiner.unet and pipeline.vae is refiner.vae

# %% [markdown]
# ## 4. What the latent hand-off saves
#
# Counting the autoencoder's `encode` and `decode` calls, once with the refiner's output handed on as
# latents and once as a picture (smaller and with fewer steps, since only the counts matter): the
# picture route costs one extra decode in the refiner and one extra encode in image-to-image, and
# each round trip through the VAE also loses a little detail.

# %%
from contextlib import contextmanager


@contextmanager
def counting(module, *methods):
    """Count calls to some methods of one object, e.g. counting(vae, "encode", "decode")."""
    counts = dict.fromkeys(methods, 0)
    for method in methods:
        original = getattr(module, method)

        def counted(*args, _original=original, _method=method, **kwargs):
            counts[_method] += 1
            return _original(*args, **kwargs)

        setattr(module, method, counted)  # an instance attribute shadows the class's method
    try:
        yield counts
    finally:
        for method in methods:
            delattr(module, method)


# %% tags=["nbval-ignore-output"]
small = image_inpainting.resize((512, 512))
handoff = {}
for route in ("latent", "pil"):
    with counting(pipeline.vae, "encode", "decode") as counts:
        refined = refiner(
            prompt=prompt,
            image=small,
            mask_image=mask_image,
            output_type=route,
            num_inference_steps=STEPS,
            height=512,
            width=512,
        ).images[0]
        pipeline(prompt=prompt, image=refined, num_inference_steps=STEPS)
    handoff[route] = dict(counts)

# %%
for route, counts in handoff.items():
    print(f"refiner -> image-to-image as {route:6}: {counts['encode']} encode, {counts['decode']} decode")
assert handoff["pil"]["decode"] - handoff["latent"]["decode"] == 1
assert handoff["pil"]["encode"] - handoff["latent"]["encode"] == 1

# %% [markdown]
# ## 5. Which hand-offs can stay latent
#
# Only pipelines with the same autoencoder can share latents. Stable Diffusion 1.5 and SDXL both use
# an `AutoencoderKL`, but scale their latents differently, so the first hand-off in the guide's chain
# goes through pixels (hence the resize); the refiner and its `from_pipe` sibling share one VAE
# object. `nbinpaint.chains` decides this from the components:

# %%
from nbinpaint import chains

print("SD inpaint -> refiner:        ", chains.latent_space_difference(sd_vae, refiner.vae) or "same latent space")
print(
    "refiner -> its image-to-image:", chains.latent_space_difference(refiner.vae, pipeline.vae) or "same latent space"
)
assert chains.latent_space_difference(refiner.vae, pipeline.vae) is None

# %% [markdown]
# ## 6. The whole chain in one call
#
# `nbinpaint.chains.run_chain` takes one request per stage, plans each hand-off as above (stages
# after the first receive the previous output), and runs every stage through the shared pipeline
# manager, which builds the image-to-image stage with `from_pipe`.

# %% tags=["nbval-ignore-output"]
import gc

del pipeline, refiner, sd_vae
gc.collect()
refiner_id = "stabilityai/stable-diffusion-xl-refiner-1.0"
chain = chains.run_chain(
    [
        nbinpaint.InpaintRequest(prompt=prompt, image=init_image, mask=mask_image, steps=STEPS, seed=92),
        nbinpaint.InpaintRequest(prompt=prompt, mask=mask_image, model=refiner_id, steps=STEPS, seed=92),
        nbinpaint.InpaintRequest(prompt=prompt, task="img2img", model=refiner_id, steps=STEPS, seed=92),
    ],
    name="inpaint -> refiner -> image-to-image",
)
nbinpaint.ImageGrid(
    [init_image, chain.stages[0].image, chain.image], captions=["base", "inpaint", "refined + image-to-image"], cols=3
)

# %%
for number, handoff in enumerate(chain.handoffs, 1):
    print(f"stage {number} -> {number + 1}: {handoff.mode} ({handoff.reason})")
assert [h.mode for h in chain.handoffs] == ["pixels", "latent"]

# %% [markdown]
# ## In the studio
#
# After a result, **Send to image-to-image** and **Refine with SDXL refiner** continue the chain from it, through
# the same manager (`from_pipe`, nothing loaded twice).
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
    model="diffusers/stable-diffusion-xl-1.0-inpainting-0.1",
    prompt="concept art digital painting of an elven castle",
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
assert result.recipe["pipeline"] == "StableDiffusionXLInpaintPipeline"
