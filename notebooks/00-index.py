# %% [markdown]
# # nbinpaint: the diffusers inpainting guide, one notebook per workflow
#
# [![Binder](https://mybinder.org/badge_logo.svg)][binder] [![Open In Colab][colab-badge]][colab-00]
#
# These notebooks follow the [diffusers inpainting guide][guide] section by section, in its order. Each one runs the
# guide's code (its repo ids, dtype and variant lines), explains what the step does and why, proves its claims with
# checks you can read (real `assert`s with printed results), and ends with nbinpaint's widgets so you can try the step
# on your own image and mask.
#
# [binder]: https://mybinder.org/v2/gh/nbinpaint/nbinpaint/main?urlpath=lab/tree/notebooks/00-index.ipynb
# [colab-badge]: https://colab.research.google.com/assets/colab-badge.svg
# [colab-00]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/00-index.ipynb
# [guide]: https://huggingface.co/docs/diffusers/using-diffusers/inpaint

# %% [markdown]
# | Guide section | Notebook | What it shows and checks |
# |---|---|---|
# | [Inpainting (the quick start)][guide-inpainting] | [01-quickstart](01-quickstart.ipynb) [![Open In Colab][colab-badge]][colab-01] | Kandinsky 2.2 through `AutoPipelineForInpainting`; the class it resolves to; draw your own mask |
# | [Create a mask image][guide-create-a-mask-image] | [02-create-a-mask](02-create-a-mask.ipynb) [![Open In Colab][colab-badge]][colab-02] | `MaskCanvas` instead of the mask-maker Space; grow, shrink, invert, undo; save and reload a PNG; upload |
# | [Mask blur][guide-mask-blur] | [03-mask-blur](03-mask-blur.ipynb) [![Open In Colab][colab-badge]][colab-03] | `mask_processor.blur`: grey levels appear only near the edge; the canvas's feather preview is identical |
# | [Popular models][guide-popular-models] | [04-popular-models](04-popular-models.ipynb) [![Open In Colab][colab-badge]][colab-04] | SD, SDXL and Kandinsky 2.2 inpainting side by side, with classical fills (Telea, Navier-Stokes, biharmonic) |
# | [Non-inpaint specific checkpoints][guide-non-inpaint-specific-checkpoints] | [05-regular-vs-inpaint-checkpoints](05-regular-vs-inpaint-checkpoints.ipynb) [![Open In Colab][colab-badge]][colab-05] | both comparisons (castle, road); 4- vs 9-channel UNets; where each checkpoint keeps the unmasked latents; the masked-content start (original, fill, latent noise, Telea) |
# | [Preserving the unmasked area (`apply_overlay`)][guide-non-inpaint-specific-checkpoints] | [06-preserve-unmasked-area](06-preserve-unmasked-area.ipynb) [![Open In Colab][colab-badge]][colab-06] | `apply_overlay` leaves every unmasked pixel identical; `preserve_unmasked=True` |
# | [Strength][guide-strength] | [07-strength](07-strength.ipynb) [![Open In Colab][colab-badge]][colab-07] | strength s runs int(steps * s) denoising steps, counted |
# | [Guidance scale][guide-guidance-scale] | [08-guidance-scale](08-guidance-scale.ipynb) [![Open In Colab][colab-badge]][colab-08] | classifier-free guidance doubles the UNet batch; a strength x guidance sweep on one seed |
# | [Negative prompt][guide-negative-prompt] | [09-negative-prompt](09-negative-prompt.ipynb) [![Open In Colab][colab-badge]][colab-09] | the negative prompt replaces the empty prompt's embeddings; same seed, different result |
# | [Padding mask crop][guide-padding-mask-crop] | [10-padding-mask-crop](10-padding-mask-crop.ipynb) [![Open In Colab][colab-badge]][colab-10] | the crop region; the result keeps the original size and every unmasked pixel |
# | [Text-to-image-to-inpaint][guide-text-to-image-to-inpaint] | [11-text-to-image-to-inpaint](11-text-to-image-to-inpaint.ipynb) [![Open In Colab][colab-badge]][colab-11] | SD 1.5 text-to-image then Kandinsky inpaint; why this hand-off must go through pixels |
# | [Inpaint-to-image-to-image][guide-inpaint-to-image-to-image] | [12-inpaint-to-image-to-image](12-inpaint-to-image-to-image.ipynb) [![Open In Colab][colab-badge]][colab-12] | SDXL refiner with `output_type="latent"`; `from_pipe` shares components; one decode and one encode saved |
# | [Prompt weighting][guide-prompt-weighting] | [13-prompt-weighting](13-prompt-weighting.ipynb) [![Open In Colab][colab-badge]][colab-13] | Compel to `prompt_embeds`; only the weighted word's tokens change |
# | [ControlNet][guide-controlnet] | [14-controlnet](14-controlnet.ipynb) [![Open In Colab][colab-badge]][colab-14] | the inpaint condition image (-1 where to repaint); ControlNet inpaint, then an image-to-image style pass |
# | [Optimize][guide-optimize] | [15-optimize](15-optimize.ipynb) [![Open In Colab][colab-badge]][colab-15] | SDPA vs classic attention (measured), offload and `torch.compile` (what each buys), float16 on a CPU, 4-step LCM-LoRA against 25 steps, PAG |
#
# Beyond the guide, what people who inpaint every day reach for:
#
# | Topic | Notebook | What it shows and checks |
# |---|---|---|
# | [Outpainting][outpaint] | [16-outpainting](16-outpainting.ipynb) [![Open In Colab][colab-badge]][colab-16] | extend by margins, to a size or an aspect (multiples of 8); start fills; the overlap band and its feathered seam; SD, SDXL, Kandinsky, ControlNet and Telea; the original kept byte for byte; recipe and Show code; the studio's Expand buttons |
# | [Soft inpainting][diffdiff] | [17-soft-inpainting](17-soft-inpainting.ipynb) [![Open In Colab][colab-badge]][colab-17] | a grey mask as per-pixel strength (`soft=True`): keep, half and repaint bands; a painted gradient; the canvas's feather; a binary mask gives plain inpainting's pixels |
# | Newer models (SD3.5, Flux Fill) | [18-newer-models](18-newer-models.ipynb) [![Open In Colab][colab-badge]][colab-18] | SD 1.5, SDXL, SD3.5 medium and Flux Fill on one photo and mask: steps, time and memory per model from the manager (the twins' figures on a CPU); what Flux Fill does not take; `quantize="4bit"` |
#
# [guide-inpainting]: https://huggingface.co/docs/diffusers/using-diffusers/inpaint#inpainting
# [guide-create-a-mask-image]: https://huggingface.co/docs/diffusers/using-diffusers/inpaint#create-a-mask-image
# [guide-mask-blur]: https://huggingface.co/docs/diffusers/using-diffusers/inpaint#mask-blur
# [guide-popular-models]: https://huggingface.co/docs/diffusers/using-diffusers/inpaint#popular-models
# [guide-non-inpaint-specific-checkpoints]: https://huggingface.co/docs/diffusers/using-diffusers/inpaint#non-inpaint-specific-checkpoints
# [guide-strength]: https://huggingface.co/docs/diffusers/using-diffusers/inpaint#strength
# [guide-guidance-scale]: https://huggingface.co/docs/diffusers/using-diffusers/inpaint#guidance-scale
# [guide-negative-prompt]: https://huggingface.co/docs/diffusers/using-diffusers/inpaint#negative-prompt
# [guide-padding-mask-crop]: https://huggingface.co/docs/diffusers/using-diffusers/inpaint#padding-mask-crop
# [guide-text-to-image-to-inpaint]: https://huggingface.co/docs/diffusers/using-diffusers/inpaint#text-to-image-to-inpaint
# [guide-inpaint-to-image-to-image]: https://huggingface.co/docs/diffusers/using-diffusers/inpaint#inpaint-to-image-to-image
# [guide-prompt-weighting]: https://huggingface.co/docs/diffusers/using-diffusers/inpaint#prompt-weighting
# [guide-controlnet]: https://huggingface.co/docs/diffusers/using-diffusers/inpaint#controlnet
# [guide-optimize]: https://huggingface.co/docs/diffusers/using-diffusers/inpaint#optimize
# [outpaint]: https://huggingface.co/docs/diffusers/advanced_inference/outpaint
# [colab-01]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/01-quickstart.ipynb
# [colab-02]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/02-create-a-mask.ipynb
# [colab-03]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/03-mask-blur.ipynb
# [colab-04]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/04-popular-models.ipynb
# [colab-05]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/05-regular-vs-inpaint-checkpoints.ipynb
# [colab-06]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/06-preserve-unmasked-area.ipynb
# [colab-07]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/07-strength.ipynb
# [colab-08]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/08-guidance-scale.ipynb
# [colab-09]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/09-negative-prompt.ipynb
# [colab-10]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/10-padding-mask-crop.ipynb
# [colab-11]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/11-text-to-image-to-inpaint.ipynb
# [colab-12]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/12-inpaint-to-image-to-image.ipynb
# [colab-13]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/13-prompt-weighting.ipynb
# [colab-14]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/14-controlnet.ipynb
# [colab-15]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/15-optimize.ipynb
# [colab-16]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/16-outpainting.ipynb
# [colab-17]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/17-soft-inpainting.ipynb
# [diffdiff]: https://differential-diffusion.github.io/
# [colab-18]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/18-newer-models.ipynb
# [colab-badge]: https://colab.research.google.com/assets/colab-badge.svg

# %% [markdown]
# ## Running them
#
# * **Colab, real checkpoints.** Open a notebook with its badge and pick a GPU runtime. The first
#   cell installs nbinpaint and turns on Colab's third-party widget support. The cells choose
#   float16 on the GPU and the guide's offload line runs there.
# * **Binder, this repository, or CI: twin mode.** Without access to huggingface.co (or with
#   `NBINPAINT_TWINS=1`), the first cell switches on twin mode: the guide's repo ids load tiny
#   random-weight twins built locally (`python -m nbinpaint twins`). Everything runs on a CPU in
#   seconds; the pictures are noise but the code path, shapes, step counts and checks are real.
# * Locally: `bash scripts/lab` opens JupyterLab here in twin mode; `bash scripts/lab --real` uses the
#   real checkpoints.
#
# Images the guide loads from URLs come through `nbinpaint.samples.load_image_or_standin(url)`: the
# real image when the URL can be fetched, otherwise a stand-in of the same size and role, with a
# one-line notice. Each notebook runs top to bottom in a fresh kernel and depends on no other; files
# it writes go to a temporary folder.
#
# The notebooks are tests too: `bash scripts/test` runs every one under
# [nbval](https://nbval.readthedocs.io), offline in twin mode, and compares the printed checks with
# the outputs stored here.

# %%
from pathlib import Path

listed = [
    "01-quickstart",
    "02-create-a-mask",
    "03-mask-blur",
    "04-popular-models",
    "05-regular-vs-inpaint-checkpoints",
    "06-preserve-unmasked-area",
    "07-strength",
    "08-guidance-scale",
    "09-negative-prompt",
    "10-padding-mask-crop",
    "11-text-to-image-to-inpaint",
    "12-inpaint-to-image-to-image",
    "13-prompt-weighting",
    "14-controlnet",
    "15-optimize",
    "16-outpainting",
    "17-soft-inpainting",
    "18-newer-models",
]
missing = [name for name in listed if not Path(f"{name}.ipynb").is_file()]
assert not missing, f"notebooks missing: {missing}"
print(f"{len(listed)} notebooks, one per workflow of the guide and beyond it, all present.")
