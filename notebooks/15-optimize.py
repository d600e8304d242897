# %% [markdown]
# # 15 · Optimize: attention, offloading, torch.compile
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)][colab]
#
# Guide section: [Optimize][guide] · [all notebooks](00-index.ipynb)
#
# Three levers from the guide, and what each one buys. **Memory-efficient attention** (PyTorch 2's
# scaled-dot-product attention, SDPA) is faster and lighter and is on by default. **CPU offloading**
# trades speed for GPU memory. **`torch.compile`** trades a slow first call for faster later ones.
# What a CPU can show is measured here; what needs a GPU is explained, and measured when this
# notebook runs on one. Beyond the guide, section 6 cuts the steps themselves: LCM-LoRA inpaints in 4
# steps, and PAG trades one more UNet pass a step for crisper structure.
#
# > **Twin mode.** Where huggingface.co cannot be reached (Binder, CI, a laptop on a train), or when
# > `NBINPAINT_TWINS=1` is set, the first code cell turns on nbinpaint's *twin mode*: every checkpoint below
# > loads, by its usual repo id, as a tiny twin with random weights built on this machine. The pipeline
# > classes, latent shapes, default sizes, schedulers and step counts are those of the real checkpoints, so
# > every line of code and every check runs for real, but **the pictures are noise**. With hub access (Colab
# > with a GPU) the same cells download and use the real checkpoints.
#
# [colab]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/15-optimize.ipynb
# [guide]: https://huggingface.co/docs/diffusers/using-diffusers/inpaint#optimize

# %%
try:
    import nbinpaint
except ImportError:  # Colab, or any kernel without nbinpaint: install it from GitHub first
    # %pip install -q "nbinpaint @ git+https://github.com/nbinpaint/nbinpaint"
    import nbinpaint

setup = nbinpaint.notebook_setup()  # twin mode if the Hub is out of reach; device and dtype; quiet logs
device, dtype = setup.device, setup.dtype

# %%
import torch
from diffusers import AutoPipelineForInpainting

pipeline = AutoPipelineForInpainting.from_pretrained(
    "runwayml/stable-diffusion-inpainting", dtype=dtype, variant="fp16"
).to(device)

# %%
from nbinpaint.samples import load_image_or_standin

init_image = load_image_or_standin(
    "https://huggingface.co/datasets/huggingface/documentation-images/resolve/main/diffusers/inpaint.png"
)
mask_image = load_image_or_standin(
    "https://huggingface.co/datasets/huggingface/documentation-images/resolve/main/diffusers/inpaint_mask.png"
)

# %% [markdown]
# ## 1. Attention: SDPA is already on
#
# On PyTorch 2, diffusers gives every attention layer `AttnProcessor2_0`, which calls
# `torch.nn.functional.scaled_dot_product_attention`. That is why the guide's
# `enable_xformers_memory_efficient_attention()` line is unnecessary on PyTorch 2: SDPA dispatches to
# fused kernels (flash or memory-efficient attention on GPUs, a fused kernel on CPUs) that never
# store the full table of attention scores.

# %%
print({type(processor).__name__ for processor in pipeline.unet.attn_processors.values()})

# %% [markdown]
# The size of the table SDPA avoids, for the real Stable Diffusion 1.5 at 512 px: its first
# self-attention layers see 64 × 64 = 4096 latent positions, each attending to all 4096, in 8 heads,
# for a batch of 2 (classifier-free guidance), in float16.

# %%
tokens, heads, batch, bytes_per_value = 64 * 64, 8, 2, 2
table = tokens * tokens * heads * batch * bytes_per_value
print(f"attention scores of one such layer: {table / 2**20:.0f} MiB (16x that at 1024 px, per layer)")

# %% [markdown]
# Measured here on the loaded UNet: one denoising step with SDPA and with the classic processor
# (`AttnProcessor`, which builds the score table explicitly). Both compute the same thing; the
# timings depend on the machine (and on a twin's tiny layers), so they are printed, not asserted.

# %% tags=["nbval-ignore-output"]
import time

from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

config = pipeline.unet.config
torch.manual_seed(0)
sample = torch.randn(2, config.in_channels, config.sample_size, config.sample_size, device=device, dtype=dtype)
text = torch.randn(2, 77, config.cross_attention_dim, device=device, dtype=dtype)
timestep = torch.tensor([500], device=device)


def step_time(repeat: int = 3) -> tuple[float, torch.Tensor]:
    times = []
    with torch.no_grad():
        for _ in range(repeat):
            start = time.perf_counter()
            out = pipeline.unet(sample, timestep, text).sample
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], out


sdpa_s, sdpa_out = step_time()
pipeline.unet.set_attn_processor(AttnProcessor())
classic_s, classic_out = step_time()
pipeline.unet.set_attn_processor(AttnProcessor2_0())  # back to the default
print(f"one UNet call, batch 2: SDPA {sdpa_s * 1000:.0f} ms, classic attention {classic_s * 1000:.0f} ms")

# %%
tolerance = 1e-3 if dtype == torch.float32 else 2e-2
print("same result (within float rounding):", torch.allclose(sdpa_out, classic_out, atol=tolerance))
assert torch.allclose(sdpa_out, classic_out, atol=tolerance)

# %% [markdown]
# ## 2. CPU offloading: GPU memory for time
#
# `pipeline.enable_model_cpu_offload()` keeps every model in CPU memory and moves each to the GPU
# only while it runs (text encoder, then UNet for all steps, then VAE), so the GPU holds about one
# model at a time instead of all of them; moving a model costs a fraction of a second per call.
# `enable_sequential_cpu_offload()` goes further, streaming the weights layer by layer: the least
# GPU memory, and many times slower. On a CPU there is nothing to offload to (diffusers refuses the
# call); nbinpaint's pipeline manager says so and carries on.
#
# What model offloading would hold on the GPU for this pipeline (for the real SD 1.5 in float16:
# UNet about 1.7 GB, text encoder 0.25 GB, VAE 0.17 GB):

# %%
sizes = {
    name: sum(p.numel() * p.element_size() for p in module.parameters())
    for name, module in pipeline.components.items()
    if isinstance(module, torch.nn.Module)
}
largest = max(sizes, key=sizes.get)
print(f"all models together: {sum(sizes.values()) / 2**20:.1f} MB")
print(
    f"largest at one time with model offload ({largest}): {sizes[largest] / 2**20:.1f} MB, "
    f"{sizes[largest] / sum(sizes.values()):.0%} of the weights"
)

# %% tags=["nbval-ignore-output"]
if device == "cuda":

    def peak_during_call(pipe) -> float:
        torch.cuda.reset_peak_memory_stats()
        pipe(prompt="a castle", image=init_image, mask_image=mask_image, num_inference_steps=2)
        return torch.cuda.max_memory_allocated() / 2**30

    print(f"peak GPU memory, all on the GPU:  {peak_during_call(pipeline):.2f} GB")
    offloaded = AutoPipelineForInpainting.from_pretrained(
        "runwayml/stable-diffusion-inpainting", dtype=dtype, variant="fp16"
    )
    offloaded.enable_model_cpu_offload()
    print(f"peak GPU memory, model offload:   {peak_during_call(offloaded):.2f} GB")
    del offloaded
else:
    print("GPU memory measurement skipped: no GPU here.")

# %%
manager = nbinpaint.PipelineManager(offload="model")
print("offload mode in use:", manager.offload)

# %% [markdown]
# ## 3. `torch.compile`: a slow first call for faster later ones
#
# The guide compiles the UNet, where nearly all the time goes:
#
# ```python
# pipeline.unet = torch.compile(pipeline.unet, mode="reduce-overhead", fullgraph=True)
# ```
#
# The first call traces the UNet and generates fused kernels; `mode="reduce-overhead"` also records
# CUDA graphs, which removes the per-layer launch overhead on a GPU. On a GPU that typically gains
# some tens of percent per step after a first call of a minute or more, worth it for many images of
# one size. On the 2-core CPU machine these notebooks were written on (shared with other jobs at the
# time), the first call of the tiny twin's UNet took about 110 s and the compiled twin was not faster
# (its layers are too small for fusion to matter), so the measurement runs only on a GPU unless you
# set `MEASURE_COMPILE = True`. A change of image size or batch recompiles.

# %% tags=["nbval-ignore-output"]
MEASURE_COMPILE = device == "cuda"

if MEASURE_COMPILE:
    eager_s, _ = step_time()
    pipeline.unet = torch.compile(pipeline.unet, mode="reduce-overhead", fullgraph=True)
    start = time.perf_counter()
    step_time(repeat=1)
    first_s = time.perf_counter() - start
    compiled_s, _ = step_time()
    print(f"eager {eager_s * 1000:.0f} ms; first compiled call {first_s:.0f} s; then {compiled_s * 1000:.0f} ms")
else:
    print("torch.compile measurement skipped on a CPU (set MEASURE_COMPILE = True to run it).")

# %% [markdown]
# ## 4. Why float16 only on a GPU
#
# Every notebook picks `torch.float16` on a GPU and `torch.float32` on a CPU. A GPU has fast
# half-precision units, and float16 halves the bytes to store and move: about twice the speed and
# half the memory. A CPU gains nothing: few CPUs compute in float16 natively, so PyTorch converts or
# falls back to generic kernels. How much slower that is depends on the CPU and the PyTorch build
# (more than tenfold has been seen; on the 2-core AVX-512 machine these notebooks were written on,
# with PyTorch 2.13, 1.5 to 2 times). Measured here, on one convolution of the size Stable
# Diffusion's first UNet block runs (320 channels, 64 × 64 latents, batch 2):

# %% tags=["nbval-ignore-output"]
conv = torch.nn.Conv2d(320, 320, 3, padding=1)
x = torch.randn(2, 320, 64, 64)
timings = {}
with torch.no_grad():
    for name, half in (("float32", False), ("float16", True)):
        layer, data = (conv.half(), x.half()) if half else (conv.float(), x.float())
        layer(data)  # warm up
        start = time.perf_counter()
        for _ in range(3):
            layer(data)
        timings[name] = (time.perf_counter() - start) / 3
print(
    f"CPU convolution: float32 {timings['float32'] * 1000:.0f} ms, float16 {timings['float16'] * 1000:.0f} ms "
    f"({timings['float16'] / timings['float32']:.1f}x the float32 time)"
)

# %% [markdown]
# ## 5. What the manager holds
#
# The studio and `nbinpaint.inpaint` go through the kernel's shared `nbinpaint.manager`, which loads
# each checkpoint once, in the device's dtype, with the offload mode you choose
# (`nbinpaint.manager.set_offload("model")`), and can compile the denoiser for you
# (`PipelineManager(compile_denoiser=True)`). `status()` shows what it holds.

# %% tags=["nbval-ignore-output"]
result = nbinpaint.inpaint(init_image, mask_image, "a castle", steps=2, seed=0)

# %% tags=["nbval-ignore-output"]
nbinpaint.manager.status()

# %%
for row in nbinpaint.manager.status().rows:
    print(
        f"{row['model']}: tasks {row['tasks']}, {row['device']}, {row['dtype']},",
        f"twin: {row['twin']}, runs: {row['runs']}",
    )

# %% [markdown]
# ## 6. Fewer steps: LCM-LoRA, and PAG
#
# A step is the unit of cost, so the biggest saving is running fewer of them. **LCM-LoRA** (latent
# consistency distillation, as a LoRA) makes Stable Diffusion sample in about 4 steps instead of 25-50.
# diffusers' [LCM guide](https://huggingface.co/docs/diffusers/using-diffusers/inference_with_lcm) loads it
# on top of the checkpoint and switches the scheduler:
#
# ```python
# pipeline.load_lora_weights("latent-consistency/lcm-lora-sdv1-5")
# pipeline.fuse_lora()
# pipeline.scheduler = LCMScheduler.from_config(pipeline.scheduler.config)
# image = pipeline(prompt, image=init_image, mask_image=mask_image, num_inference_steps=4, guidance_scale=1).images[0]
# ```
#
# In nbinpaint the LoRA is one more argument, `lora=`. The manager fuses it into a copy of the weights of its
# own (the plain pipeline other cells use stays as it was), switches to `LCMScheduler`, and, since the request
# leaves them unset, runs 4 steps at guidance 1 (which also skips classifier-free guidance's second UNet pass).
# The recipe says what ran. In twin mode the LoRA is a tiny twin too, in the real file's layout.

# %%
lcm = nbinpaint.inpaint(init_image, mask_image, "a castle", lora="latent-consistency/lcm-lora-sdv1-5", seed=0)
print(lcm.recipe["scheduler"], "steps:", lcm.request.steps, "guidance:", lcm.request.guidance_scale)
assert lcm.recipe["scheduler"] == "LCMScheduler" and lcm.request.steps == 4

# %% [markdown]
# Against the plain checkpoint at 25 steps and guidance 7.5, both at 256 × 256 to keep this cell short on a
# CPU (timings vary by machine; on the twins they follow the step count and the UNet passes per step, as on
# real weights):

# %% tags=["nbval-ignore-output"]
small_image, small_mask = init_image.resize((256, 256)), mask_image.resize((256, 256))
plain = nbinpaint.inpaint(small_image, small_mask, "a castle", steps=25, seed=0)
fast = nbinpaint.inpaint(small_image, small_mask, "a castle", lora="latent-consistency/lcm-lora-sdv1-5", seed=0)
print(
    f"25 steps: {plain.timings['run_s']:.2f} s; LCM-LoRA, 4 steps: {fast.timings['run_s']:.2f} s "
    f"({plain.timings['run_s'] / fast.timings['run_s']:.1f}x faster)"
)

# %% [markdown]
# **PAG** (perturbed-attention guidance) goes the other way: one more UNet pass per step, run with the
# self-attention perturbed, steers each step away from a structureless prediction, which often sharpens
# the result. `enable_pag=True` loads the checkpoint's PAG pipeline (diffusers' `from_pipe(...,
# enable_pag=True)`: it shares every weight) and `pag_scale` sets its strength; Kandinsky 2.2 has no PAG
# pipeline and says so. The manager now holds the fused LCM copy beside the plain checkpoint, whose PAG
# pipeline is one more task of it:

# %%
pag = nbinpaint.inpaint(init_image, mask_image, "a castle", steps=2, seed=0, enable_pag=True, pag_scale=3.0)
print(pag.recipe["pipeline"])
for row in nbinpaint.manager.status().rows:
    print(f"{row['model']}: tasks {row['tasks']}")
