# %% [markdown]
# # 18 · Newer models: SD3.5 and Flux Fill beside the guide's checkpoints
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)][colab]
#
# After the guide: [all notebooks](00-index.ipynb)
#
# The guide's checkpoints (SD 1.5, SDXL, Kandinsky 2.2) are where learning starts. Today's inpainting models
# run through the same manager, widgets, recipes and Show code: **Stable Diffusion 3.5 medium** (a multimodal
# diffusion transformer with two CLIP encoders and T5, which `AutoPipelineForInpainting` maps to
# `StableDiffusion3InpaintPipeline`) and **FLUX.1 Fill** (a 12B Flux transformer trained to fill a mask, loaded
# by its own `FluxFillPipeline`, which no Auto class maps: nbinpaint's manager keeps a small table for it).
# This notebook runs one photo and one mask through SD 1.5 inpainting, SDXL inpainting, SD3.5 medium, Flux
# Fill and SD 1.5 with **LCM-LoRA** (4 steps, `LCMScheduler`), and prints the steps, time and memory of each,
# as the manager measured them.
#
# > **Twin mode.** Offline (Binder, CI) or with `NBINPAINT_TWINS=1`, every repo id below loads as a tiny
# > random-weight twin built on this machine, with the real pipeline classes, latent channels (16 for SD3 and
# > Flux), VAE scale factor, schedulers and text encoders (T5 included). **The pictures are noise, and the
# > times and bytes printed are the twins' on this machine's CPU**, not the real models': the real SD3.5 medium
# > holds about 16 GB of weights in half precision and Flux Fill about 34 GB (the picker says so).
#
# [colab]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/18-newer-models.ipynb

# %%
try:
    import nbinpaint
except ImportError:  # Colab, or any kernel without nbinpaint: install it from GitHub first
    # %pip install -q "nbinpaint @ git+https://github.com/nbinpaint/nbinpaint"
    import nbinpaint

setup = nbinpaint.notebook_setup()  # twin mode if the Hub is out of reach; device and dtype; quiet logs
device, dtype = setup.device, setup.dtype

# %% [markdown]
# ## 1. The photo, the mask and the models
#
# One entry per model: a name for the table, the repo id, and any request settings of its own. Each model
# otherwise runs with its pipeline's own defaults (guidance 7.5 for SD, 7 for SD3.5, Flux Fill's distilled 30),
# at the photo's own size. Adding a model is adding a line, as the few-step LCM-LoRA entry at the end is.

# %%
from nbinpaint.samples import load_image_or_standin

init_image = load_image_or_standin(
    "https://huggingface.co/datasets/huggingface/documentation-images/resolve/main/diffusers/inpaint.png"
)
mask_image = load_image_or_standin(
    "https://huggingface.co/datasets/huggingface/documentation-images/resolve/main/diffusers/inpaint_mask.png"
)
prompt = "concept art digital painting of an elven castle, inspired by lord of the rings, highly detailed, 8k"
steps = setup.steps if device == "cuda" else 4  # a few steps on a CPU: the twins' pictures are noise anyway

MODEL_SD15 = "runwayml/stable-diffusion-inpainting"
MODELS = [
    {"name": "SD 1.5 inpainting", "model": MODEL_SD15},
    {"name": "SDXL inpainting", "model": "diffusers/stable-diffusion-xl-1.0-inpainting-0.1"},
    {"name": "SD3.5 medium", "model": "stabilityai/stable-diffusion-3.5-medium"},
    {"name": "Flux Fill", "model": "black-forest-labs/FLUX.1-Fill-dev", "dtype": "bfloat16"},
    # SD 1.5 inpainting with LCM-LoRA fused in: LCMScheduler, 4 steps and guidance 1 (nbinpaint.lora's table)
    {"name": "SD 1.5 + LCM-LoRA", "model": MODEL_SD15, "lora": "latent-consistency/lcm-lora-sdv1-5", "steps": 4},
]
print(init_image.size, mask_image.size, f"{steps} steps")

# %% [markdown]
# ## 2. Each model, through the manager
#
# `nbinpaint.inpaint` is the one road every run takes; the result carries its timings (`run_s`: the pipeline
# call, text encoders and VAE included; the table divides it by the steps), and `nbinpaint.manager.status()` says
# how many bytes of weights each checkpoint keeps resident. The peak is the largest rise of this process's memory
# during the run, loading included (on a GPU: the largest CUDA allocation). Each model is released before the
# next, as on a GPU that holds one at a time. `python -m nbinpaint.bench --only family_sd35_512` measures the
# denoising steps alone.

# %% tags=["nbval-ignore-output"]
import torch

from nbinpaint.bench.pipelines import peak_rss_during

results, figures = {}, []
for entry in MODELS:
    settings = {key: value for key, value in entry.items() if key != "name"}
    if device == "cpu":
        settings.pop("dtype", None)  # float32 on a CPU (bfloat16 and float16 kernels are slower there)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    outcome = {}

    def run(settings=settings, outcome=outcome):
        options = {"steps": steps, "seed": 92, **settings}  # an entry's own steps (LCM: 4) win
        outcome["result"] = nbinpaint.inpaint(init_image, mask_image, prompt, **options)

    wall, rss_peak = peak_rss_during(run)
    result = outcome["result"]
    # the checkpoint's status row (a fused LoRA's row names the LoRA too: "repo + lora")
    row = next(r for r in nbinpaint.manager.status().rows if r["model"].startswith(entry["model"]))
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else rss_peak
    results[entry["name"]] = result
    figures.append((entry["name"], result, row, peak))
    nbinpaint.manager.release(entry["model"])

where = "real checkpoints" if not setup.twins else "twins, on this machine's CPU" if device == "cpu" else "twins"
print(f"{'model':18} {'pipeline':32} {'steps':>5} {'call s/step':>11} {'weights MB':>10} {'peak MB':>8}  ({where})")
for name, result, row, peak in figures:
    per_step = result.timings["run_s"] / result.request.steps
    print(
        f"{name:18} {result.recipe['pipeline']:32} {result.request.steps:>5} {per_step:>11.3f} "
        f"{row['bytes'] / 2**20:>10.1f} {peak / 2**20:>8.1f}"
    )

# %% [markdown]
# What the table shows, and what it does not: the pipeline classes are the real ones, each model ran the steps
# asked, and every result came back at the photo's size (SD3 and Flux work at multiples of 16 pixels; the
# manager rounds the run size down and resizes back, saying so once). The seconds and megabytes are those of
# the twins whenever twin mode is on.

# %%
for name, result, _row, _peak in figures:
    print(f"{name:18} {result.recipe['pipeline']:32} run at {result.request.width}x{result.request.height}")
    assert result.image.size == init_image.size
    assert result.recipe["twin"] == setup.twins
assert [r.recipe["pipeline"] for _n, r, _r, _p in figures] == [
    "StableDiffusionInpaintPipeline",
    "StableDiffusionXLInpaintPipeline",
    "StableDiffusion3InpaintPipeline",
    "FluxFillPipeline",
    "StableDiffusionInpaintPipeline",
]
lcm = results["SD 1.5 + LCM-LoRA"]
print(lcm.recipe["scheduler"], lcm.request.steps, "steps, guidance", lcm.request.guidance_scale, "·", lcm.request.lora)
assert lcm.recipe["scheduler"] == "LCMScheduler" and lcm.request.steps == 4

# %% tags=["nbval-ignore-output"]
nbinpaint.ImageGrid(
    [init_image, mask_image, *(r.image for r in results.values())], captions=["photo", "mask", *results], cols=3
)

# %% [markdown]
# ## 3. What each pipeline takes
#
# Flux Fill has no negative prompt and no `padding_mask_crop`: its `__call__` does not take them. The request is
# refused with the reason before anything runs, and the panel greys the controls out with the same words. Its
# guidance scale is Flux's distilled guidance, 30 by default, which the panel sets when you pick it.

# %%
from nbinpaint.errors import UnsupportedParameterError

try:
    nbinpaint.inpaint(init_image, mask_image, prompt, negative_prompt="blurry", model=MODELS[3]["model"], steps=2)
except UnsupportedParameterError as error:
    print(str(error).split(":")[0])

# %%
from nbinpaint.generation import pipeline_parameters
from nbinpaint.model_names import default_guidance, needs_text
from nbinpaint.studio_state import reasons_for

for entry in MODELS[2:4]:  # the two newer checkpoints (the LCM entry is SD 1.5 with a LoRA)
    found = pipeline_parameters(nbinpaint.manager, entry["model"])
    off = reasons_for(found, entry["model"])
    print(f"{entry['name']}: needs {needs_text(entry['model'])}; guidance {default_guidance(entry['model'])}")
    print("   greyed out:", "; ".join(off.values()) or "nothing")

# %% [markdown]
# ## 4. Quantized loading
#
# On a GPU, `quantize="4bit"` (or `"8bit"`) loads the transformer and T5 through bitsandbytes
# (diffusers' `PipelineQuantizationConfig`): Flux Fill then fits a 16 GB card. On a CPU there are no
# bitsandbytes kernels: the manager says so, loads the full float32 weights, and the recipe records what ran.

# %% tags=["nbval-ignore-output"]
result = nbinpaint.inpaint(init_image, mask_image, prompt, model=MODELS[2]["model"], steps=2, seed=92, quantize="4bit")
print("quantization that ran:", result.request.quantize, "| asked:", result.recipe.get("quantize_asked", "4bit"))
if device == "cpu":
    assert result.request.quantize is None and result.recipe["quantize_asked"] == "4bit"

# %% [markdown]
# ## In the studio
#
# The model picker lists SD3.5 medium and Flux Fill with what each needs (weights in half precision, 4-bit, and
# the usual steps); Show code writes `FluxFillPipeline.from_pretrained(...)` for Flux Fill and reproduces the
# pixels like any other result.

# %%
from nbinpaint.widgets.picker import model_options

for label, value in model_options(twin=False):
    if value in (MODELS[2]["model"], MODELS[3]["model"]):
        print(label)
print(nbinpaint.code_for(results["Flux Fill"]).split("pipeline = ")[1].split("(")[0])
