"""Write the guided notebooks from the Python source below, and optionally execute them to store outputs.

    python notebooks/build.py                 # write every notebook, without outputs
    python notebooks/build.py --execute       # write, then execute each in a fresh kernel (twin mode) and store outputs
    python notebooks/build.py --execute 07 12 # only the notebooks whose names start with these prefixes

One function per notebook, in the order of the diffusers inpainting guide; each returns its cells. Cells whose
text output is deterministic keep their stored output, which nbval compares (`bash scripts/test`); cells
whose output is volatile (progress bars, timings, widgets) are tagged ``nbval-ignore-output``. Executed
outputs are stored without images and widget views: nbval does not compare those, twin pictures are noise,
and a notebook full of noise PNGs would weigh megabytes in git.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
REPO = "nbinpaint/nbinpaint"
GUIDE = "https://huggingface.co/docs/diffusers/using-diffusers/inpaint"
DOCS = "https://huggingface.co/datasets/huggingface/documentation-images/resolve/main/diffusers/"
IGNORE = "nbval-ignore-output"
# Outputs of these MIME types are dropped from stored notebooks (see the module docstring).
DROPPED_MIME = ("image/png", "image/jpeg", "application/vnd.jupyter.widget-view+json")


def md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(textwrap.dedent(text).strip())


def code(*parts: str, ignore: bool = False) -> nbformat.NotebookNode:
    """A code cell from one or more source fragments, each dedented on its own."""
    cell = new_code_cell("\n\n".join(textwrap.dedent(part).strip("\n") for part in parts).strip())
    if ignore:
        cell.metadata["tags"] = [IGNORE]
    return cell


def colab_badge(name: str) -> str:
    url = f"https://colab.research.google.com/github/{REPO}/blob/main/notebooks/{name}.ipynb"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


TWIN_NOTE = """
> **Twin mode.** Where huggingface.co cannot be reached (Binder, CI, a laptop on a train), or when
> `NBINPAINT_TWINS=1` is set, the first code cell turns on nbinpaint's *twin mode*: every checkpoint below
> loads, by its usual repo id, as a tiny twin with random weights built on this machine. The pipeline
> classes, latent shapes, default sizes, schedulers and step counts are those of the real checkpoints, so
> every line of code and every check runs for real, but **the pictures are noise**. With hub access (Colab
> with a GPU) the same cells download and use the real checkpoints.
"""


def header(name: str, title: str, anchor: str | None, lede: str) -> list[nbformat.NotebookNode]:
    section = f"[{anchor[1]}]({GUIDE}#{anchor[0]})" if anchor else f"[the whole guide]({GUIDE})"
    return [
        md(
            f"# {title}\n\n{colab_badge(name)}\n\n"
            f"Guide section: {section} · [all notebooks](00-index.ipynb)\n\n"
            f"{textwrap.dedent(lede).strip()}\n\n{textwrap.dedent(TWIN_NOTE).strip()}"
        ),
    ]


SETUP = '''
import sys

if "google.colab" in sys.modules:
    # On Colab: install nbinpaint, and let Colab display third-party widgets (canvas, grids).
    %pip install -q "nbinpaint @ git+https://github.com/nbinpaint/nbinpaint"
    from google.colab import output

    output.enable_custom_widget_manager()

import urllib.error
import urllib.request

import nbinpaint


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether huggingface.co answers at all (a HEAD request; proxies from the environment are used)."""
    try:
        urllib.request.urlopen(urllib.request.Request("https://huggingface.co", method="HEAD"), timeout=timeout)
    except urllib.error.HTTPError:
        return True  # it answered, even if with an error status
    except OSError:
        return False
    return True


if nbinpaint.twin_mode() or not hub_reachable():
    nbinpaint.use_twins()
'''

DEVICE = '''
import warnings

import diffusers
import huggingface_hub
import torch
import transformers

# float16 on a GPU; float32 on a CPU, where float16 is slower, not faster (notebook 15 measures it).
device = "cuda" if torch.cuda.is_available() else "cpu"
dtype = torch.float16 if device == "cuda" else torch.float32
{steps}
# Keep library chatter out of the cells, so what they print is the result. Denoising progress bars stay.
for library in (diffusers, transformers, huggingface_hub):
    library.utils.logging.set_verbosity_error()
diffusers.utils.logging.disable_progress_bar()  # the "Loading pipeline components" bars
transformers.utils.logging.disable_progress_bar()
# diffusers 0.42 renamed from_pretrained's torch_dtype to dtype; the guide's spelling still works everywhere.
warnings.filterwarnings("ignore", message=".*`torch_dtype` is deprecated")
warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks")
print(f"device: {{device}}, dtype: {{dtype}}")
'''

STEPS_LINE = (
    "# Extra comparisons in this notebook use fewer steps on a CPU; the guide's own cells keep its values.\n"
    "STEPS = 50 if device == \"cuda\" else 10\n"
)


def setup(*, steps: bool = True) -> list[nbformat.NotebookNode]:
    return [
        code(SETUP),
        code(DEVICE.format(steps=STEPS_LINE if steps else ""), ignore=True),
    ]


def guide_images(*names: str, variables: tuple[str, ...] = ("init_image", "mask_image")) -> str:
    lines = ["from nbinpaint.samples import load_image_or_standin", ""]
    for variable, name in zip(variables, names, strict=True):
        url = name if name.startswith("http") else DOCS + name
        lines.append(f'{variable} = load_image_or_standin("{url}")')
    return "\n".join(lines)


STANDIN_NOTE = """
`nbinpaint.samples.load_image_or_standin(url)` is `diffusers.utils.load_image(url)` when the URL can be
fetched. Offline it returns a stand-in of the same pixel size and the same role, made from the photos that
ship with scikit-image, and prints one line saying which.
"""

OFFLOAD_NOTE = """
Two lines of the guide change with the device: `enable_model_cpu_offload()` needs an accelerator (on a CPU
the weights are in CPU memory already, and diffusers refuses the call), so it runs only on a GPU; and the
`enable_xformers_memory_efficient_attention()` line is left out, because PyTorch 2 already computes
attention with its fused scaled-dot-product kernels (notebook 15 measures this).
"""


# --------------------------------------------------------------------------------------------------------
# 00 index
# --------------------------------------------------------------------------------------------------------

TABLE = [
    # (guide section, anchor, notebook, what it shows and checks)
    ("Inpainting (the quick start)", "inpainting", "01-quickstart",
     "Kandinsky 2.2 through `AutoPipelineForInpainting`; the class it resolves to; draw your own mask"),
    ("Create a mask image", "create-a-mask-image", "02-create-a-mask",
     "`MaskCanvas` instead of the mask-maker Space; grow, shrink, invert, undo; save and reload a PNG; upload"),
    ("Mask blur", "mask-blur", "03-mask-blur",
     "`mask_processor.blur`: grey levels appear only near the edge; the canvas's feather preview is identical"),
    ("Popular models", "popular-models", "04-popular-models",
     "SD, SDXL and Kandinsky 2.2 inpainting side by side, with classical fills (Telea, Navier-Stokes, biharmonic)"),
    ("Non-inpaint specific checkpoints", "non-inpaint-specific-checkpoints", "05-regular-vs-inpaint-checkpoints",
     "both comparisons (castle, road); 4- vs 9-channel UNets; where each checkpoint keeps the unmasked latents"),
    ("Preserving the unmasked area (`apply_overlay`)", "non-inpaint-specific-checkpoints",
     "06-preserve-unmasked-area", "`apply_overlay` leaves every unmasked pixel identical; `preserve_unmasked=True`"),
    ("Strength", "strength", "07-strength", "strength s runs int(steps * s) denoising steps, counted"),
    ("Guidance scale", "guidance-scale", "08-guidance-scale",
     "classifier-free guidance doubles the UNet batch; a strength x guidance sweep on one seed"),
    ("Negative prompt", "negative-prompt", "09-negative-prompt",
     "the negative prompt replaces the empty prompt's embeddings; same seed, different result"),
    ("Padding mask crop", "padding-mask-crop", "10-padding-mask-crop",
     "the crop region; the result keeps the original size and every unmasked pixel"),
    ("Text-to-image-to-inpaint", "text-to-image-to-inpaint", "11-text-to-image-to-inpaint",
     "SD 1.5 text-to-image then Kandinsky inpaint; why this hand-off must go through pixels"),
    ("Inpaint-to-image-to-image", "inpaint-to-image-to-image", "12-inpaint-to-image-to-image",
     "SDXL refiner with `output_type=\"latent\"`; `from_pipe` shares components; one decode and one encode saved"),
    ("Prompt weighting", "prompt-weighting", "13-prompt-weighting",
     "Compel to `prompt_embeds`; only the weighted word's tokens change"),
    ("ControlNet", "controlnet", "14-controlnet",
     "the inpaint condition image (-1 where to repaint); ControlNet inpaint, then an image-to-image style pass"),
    ("Optimize", "optimize", "15-optimize",
     "SDPA vs classic attention (measured), offload and `torch.compile` (what each buys), float16 on a CPU"),
]


def readme_table() -> str:
    rows = ["| Guide section | Notebook | What it shows and checks |", "|---|---|---|"]
    for section, anchor, name, what in TABLE:
        rows.append(f"| [{section}]({GUIDE}#{anchor}) | [{name}](notebooks/{name}.ipynb) | {what} |")
    return "\n".join(rows)


def nb00() -> list[nbformat.NotebookNode]:
    rows = ["| Guide section | Notebook | What it shows and checks |", "|---|---|---|"]
    for section, anchor, name, what in TABLE:
        rows.append(f"| [{section}]({GUIDE}#{anchor}) | [{name}]({name}.ipynb) {colab_badge(name)} | {what} |")
    binder = f"https://mybinder.org/v2/gh/{REPO}/main?urlpath=lab/tree/notebooks/00-index.ipynb"
    return [
        md(
            f"""
            # nbinpaint: the diffusers inpainting guide, one notebook per workflow

            [![Binder](https://mybinder.org/badge_logo.svg)]({binder}) {colab_badge("00-index")}

            These notebooks follow the [diffusers inpainting guide]({GUIDE}) section by section, in its order.
            Each one runs the guide's code (its repo ids, dtype and variant lines), explains what the step does
            and why, proves its claims with checks you can read (real `assert`s with printed results), and ends
            with nbinpaint's widgets so you can try the step on your own image and mask.
            """
        ),
        md("\n".join(rows)),
        md(
            """
            ## Running them

            * **Colab, real checkpoints.** Open a notebook with its badge and pick a GPU runtime. The first
              cell installs nbinpaint and turns on Colab's third-party widget support. The cells choose
              float16 on the GPU and the guide's offload line runs there.
            * **Binder, this repository, or CI: twin mode.** Without access to huggingface.co (or with
              `NBINPAINT_TWINS=1`), the first cell switches on twin mode: the guide's repo ids load tiny
              random-weight twins built locally (`python -m nbinpaint twins`). Everything runs on a CPU in
              seconds; the pictures are noise but the code path, shapes, step counts and checks are real.
            * Locally: `bash scripts/lab` opens JupyterLab here in twin mode; `bash scripts/lab --real` uses the
              real checkpoints.

            Images the guide loads from URLs come through `nbinpaint.samples.load_image_or_standin(url)`: the
            real image when the URL can be fetched, otherwise a stand-in of the same size and role, with a
            one-line notice. Each notebook runs top to bottom in a fresh kernel and depends on no other; files
            it writes go to a temporary folder.

            The notebooks are tests too: `bash scripts/test` runs every one under
            [nbval](https://nbval.readthedocs.io), offline in twin mode, and compares the printed checks with
            the outputs stored here.
            """
        ),
        code(
            f"""
            from pathlib import Path

            listed = {[name for _, _, name, _ in TABLE]!r}
            missing = [name for name in listed if not Path(f"{{name}}.ipynb").is_file()]
            assert not missing, f"notebooks missing: {{missing}}"
            print(f"{{len(listed)}} notebooks, one per workflow of the guide, all present.")
            """
        ),
    ]


# --------------------------------------------------------------------------------------------------------
# 01 quickstart
# --------------------------------------------------------------------------------------------------------


def nb01() -> list[nbformat.NotebookNode]:
    name = "01-quickstart"
    return [
        *header(
            name,
            "01 · Quick start: inpainting with Kandinsky 2.2",
            ("inpainting", "Inpainting"),
            """
            Inpainting repaints part of a picture and leaves the rest. A pipeline needs three inputs: the
            picture, a **mask** of the same size in which **white marks the pixels to repaint** and black the
            pixels to keep, and a prompt that describes what should appear in the white part. This notebook
            runs the guide's first example with Kandinsky 2.2, then lets you draw your own mask.
            """,
        ),
        *setup(),
        md(
            f"""
            ## 1. Load the pipeline

            `AutoPipelineForInpainting` reads the checkpoint's `model_index.json` and picks the matching
            pipeline class, so the same line works for Stable Diffusion, SDXL and Kandinsky checkpoints.
            Kandinsky 2.2 is two models: a *prior* that turns the prompt into a CLIP image embedding, and a
            *decoder* that paints from that embedding. The auto class loads both as one combined pipeline.

            {textwrap.dedent(OFFLOAD_NOTE).strip()}
            """
        ),
        code(
            """
            from diffusers import AutoPipelineForInpainting
            from diffusers.utils import make_image_grid

            pipeline = AutoPipelineForInpainting.from_pretrained(
                "kandinsky-community/kandinsky-2-2-decoder-inpaint", torch_dtype=dtype
            )
            if device == "cuda":
                pipeline.enable_model_cpu_offload()
            """
        ),
        code(
            """
            print("pipeline:", type(pipeline).__name__)
            print("  prior: ", type(pipeline.prior_pipe).__name__)
            print("  decoder:", type(pipeline.decoder_pipe).__name__)
            assert type(pipeline).__name__ == "KandinskyV22InpaintCombinedPipeline"
            """
        ),
        md(
            f"""
            ## 2. Load the base image and the mask

            {textwrap.dedent(STANDIN_NOTE).strip()}
            """
        ),
        code(guide_images("inpaint.png", "inpaint_mask.png")),
        code(
            """
            import numpy as np

            mask = np.array(mask_image.convert("L"))
            print("image:", init_image.size, init_image.mode, " mask:", mask_image.size)
            print(f"white (repaint): {np.mean(mask > 127):.1%} of the pixels; black (keep): the rest")
            assert init_image.size == mask_image.size
            """
        ),
        md(
            """
            ## 3. Inpaint

            The prompt describes the new content; the negative prompt lists what to steer away from
            (notebook 09 looks at how). The result has the base image's size.
            """
        ),
        code(
            """
            prompt = "a black cat with glowing eyes, cute, adorable, disney, pixar, highly detailed, 8k"
            negative_prompt = "bad anatomy, deformed, ugly, disfigured"
            image = pipeline(prompt=prompt, negative_prompt=negative_prompt, image=init_image, mask_image=mask_image).images[0]
            make_image_grid([init_image, mask_image, image], rows=1, cols=3)
            """,
            ignore=True,
        ),
        code(
            """
            print("result:", image.size, image.mode)
            assert image.size == init_image.size
            """
        ),
        md(
            """
            ## 4. Your turn: draw a mask

            `nbinpaint.MaskCanvas` shows the image with the mask as a red overlay. Paint with the brush, or
            use the rectangle, ellipse, lasso and magic-wand tools; `[` and `]` change the brush size, `x`
            swaps brush and eraser, Ctrl+Z undoes. It starts from the guide's mask: clear it or paint over it.
            (On Colab, if the mouse does nothing, use the **Load mask** button: see notebook 02.)
            """
        ),
        code(
            """
            canvas = nbinpaint.MaskCanvas(init_image, mask=mask_image)
            canvas
            """,
            ignore=True,
        ),
        md(
            """
            Then run the next cell. `nbinpaint.inpaint` is the call the studio's Generate button makes: it runs
            on the kernel's shared pipeline manager, which loads each checkpoint once and returns the result
            with its recipe (model, seed, every parameter, and whether a twin made it). On a small GPU, free
            the guide's pipeline first (the cell does), since the manager loads its own copy.
            """
        ),
        code(
            """
            import gc

            del pipeline
            gc.collect()
            result = nbinpaint.inpaint(
                init_image,
                canvas.mask,
                prompt,
                negative_prompt=negative_prompt,
                model="kandinsky-community/kandinsky-2-2-decoder-inpaint",
                steps=STEPS,
                seed=92,
            )
            make_image_grid([init_image, canvas.mask.convert("RGB"), result.image], rows=1, cols=3)
            """,
            ignore=True,
        ),
        code(
            """
            print("model:", result.recipe["model"], "| pipeline:", result.recipe["pipeline"])
            print("seed:", result.seed, "| size:", result.image.size, "| made by a twin:", result.recipe["twin"])
            assert result.image.size == init_image.size
            """
        ),
    ]


# --------------------------------------------------------------------------------------------------------
# 02 create a mask
# --------------------------------------------------------------------------------------------------------


def nb02() -> list[nbformat.NotebookNode]:
    name = "02-create-a-mask"
    return [
        *header(
            name,
            "02 · Create a mask image",
            ("create-a-mask-image", "Create a mask image"),
            """
            The guide supplies a mask for every example and points to a Hugging Face Space for drawing your
            own. Here you draw it in the notebook, next to the code that uses it: `nbinpaint.MaskCanvas` keeps
            the mask in Python at the image's full resolution (white = repaint, black = keep), so the pipeline
            gets exactly what you drew. This notebook also covers the fallback when drawing is not possible
            (uploading or loading a mask), and saving the mask as a PNG.
            """,
        ),
        *setup(),
        code(guide_images("inpaint.png", variables=("init_image",))),
        md(
            """
            ## 1. Draw

            Tools: **brush** and **eraser** (size slider, or `[` and `]`; `x` swaps them), **rectangle**,
            **ellipse**, **lasso** (a closed outline, filled when you let go) and **wand** (click a region of
            similar colour; the tolerance slider sets how similar). **Subtract** makes the shape tools remove
            instead of add. **Grow** and **Shrink** move the mask's edge by the given pixels; **Invert**
            swaps repaint and keep; Ctrl+Z / Ctrl+Shift+Z undo and redo. The overlay is display only: the
            mask itself is a full-resolution array in the kernel.
            """
        ),
        code(
            """
            canvas = nbinpaint.MaskCanvas(init_image)
            canvas
            """,
            ignore=True,
        ),
        md(
            """
            Whatever you drew is in `canvas.mask` (a PIL image in mode `"L"`, 255 = repaint) and, without a
            copy, in `canvas.mask_array`. Run this cell again after drawing: the count changes.
            """
        ),
        code(
            """
            import numpy as np

            print(canvas.mask.mode, canvas.mask.size)
            print(f"{np.count_nonzero(canvas.mask_array)} pixels marked to repaint")
            assert canvas.mask.size == init_image.size
            """
        ),
        md(
            """
            ## 2. No mouse? Load a mask instead

            On Colab, third-party widgets sometimes receive no mouse input. The canvas's **Load mask** button
            takes an image file (white = repaint) of the image's size. In code, `canvas.load_mask(...)` takes a
            path, PNG bytes, a PIL image or a numpy array; on Colab you can upload a file with:

            ```python
            from google.colab import files
            uploaded = files.upload()                      # {file name: bytes}
            canvas.load_mask(next(iter(uploaded.values())))
            ```

            Below, a second canvas loads the guide's mask and shows what the editing buttons do to it, pixel
            for pixel. Every change is one undo step.
            """
        ),
        code(
            """
            guide_mask = load_image_or_standin("https://huggingface.co/datasets/huggingface/documentation-images/resolve/main/diffusers/inpaint_mask.png")
            demo = nbinpaint.MaskCanvas(init_image)
            demo.load_mask(guide_mask)
            loaded = np.count_nonzero(demo.mask_array)
            print(f"loaded:           {loaded} pixels to repaint")

            demo.grow(16)
            print(f"grown by 16 px:   {np.count_nonzero(demo.mask_array)}")
            demo.undo()
            print(f"undo:             {np.count_nonzero(demo.mask_array)}")
            assert np.count_nonzero(demo.mask_array) == loaded

            demo.invert()
            width, height = init_image.size
            print(f"inverted:         {np.count_nonzero(demo.mask_array)} (= {width * height} - {loaded})")
            assert np.count_nonzero(demo.mask_array) == width * height - loaded
            demo.undo()
            assert set(np.unique(demo.mask_array)) <= {0, 255}, "masks stay pure black and white"
            """
        ),
        md(
            """
            ## 3. Save the mask

            `save_mask` writes a PNG, which is lossless: reading it back gives the same pixels (a JPEG would
            blur the edge into grey). Here it goes to a temporary folder; in the widget, the **Save PNG** button
            writes to the path beside it.
            """
        ),
        code(
            """
            import tempfile
            from pathlib import Path

            from diffusers.utils import load_image

            out_dir = Path(tempfile.mkdtemp(prefix="nbinpaint-"))
            path = demo.save_mask(out_dir / "mask.png")
            reloaded = np.array(load_image(str(path)).convert("L"))
            print(path.name, "reloads pixel-identical:", np.array_equal(reloaded, demo.mask_array))
            assert np.array_equal(reloaded, demo.mask_array)
            """
        ),
        md(
            """
            ## 4. Use it

            Your drawing if there is one, otherwise the guide's mask, inpainted with the guide's default
            Stable Diffusion inpainting checkpoint through `nbinpaint.inpaint`.
            """
        ),
        code(
            """
            from diffusers.utils import make_image_grid

            mask = canvas.mask if canvas.mask_array.any() else demo.mask
            result = nbinpaint.inpaint(init_image, mask, "a bouquet of sunflowers", steps=STEPS, seed=0)
            make_image_grid([init_image, mask.convert("RGB"), result.image], rows=1, cols=3)
            """,
            ignore=True,
        ),
        code(
            """
            print(result.recipe["model"], result.image.size)
            assert result.image.size == init_image.size
            """
        ),
    ]


# --------------------------------------------------------------------------------------------------------
# 03 mask blur
# --------------------------------------------------------------------------------------------------------


def nb03() -> list[nbformat.NotebookNode]:
    name = "03-mask-blur"
    return [
        *header(
            name,
            "03 · Mask blur: a soft edge between old and new",
            ("mask-blur", "Mask blur"),
            """
            A hard-edged mask tells the pipeline "repaint exactly here", and the seam can show. Blurring the
            mask turns its edge into a band of greys; the pipeline then blends the old and the new pixels
            across that band. `blur_factor` is the Gaussian blur's radius: 0 keeps the edge sharp, larger
            values widen the transition. The blur is done by the pipeline's own mask processor.
            """,
        ),
        *setup(steps=False),
        md(
            """
            ## 1. The guide's code

            The guide loads a regular Stable Diffusion 1.5 checkpoint for this (any inpainting pipeline has a
            `mask_processor`) and moves it to the device with `.to(...)` instead of offloading.
            """
        ),
        code(
            """
            from diffusers import AutoPipelineForInpainting

            pipeline = AutoPipelineForInpainting.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5", torch_dtype=dtype).to(device)
            """
        ),
        code(
            guide_images(
                "https://huggingface.co/datasets/YiYiXu/testing-images/resolve/main/seashore_mask.png",
                variables=("mask",),
            )
        ),
        code(
            """
            blurred_mask = pipeline.mask_processor.blur(mask, blur_factor=33)
            blurred_mask
            """
        ),
        md(
            """
            ## 2. What changed

            A sharp mask has only black and white. After the blur there are many grey levels, and only near
            the edge: deep inside the mask stays white, far outside stays black.
            """
        ),
        code(
            """
            import numpy as np
            from scipy import ndimage

            sharp = np.array(mask.convert("L"))
            soft = np.array(blurred_mask.convert("L"))


            def between(a: np.ndarray) -> int:
                \"\"\"Pixels neither black nor white.\"\"\"
                return int(np.count_nonzero((a > 0) & (a < 255)))


            print(f"sharp mask:   {len(np.unique(sharp)):3} grey levels, {between(sharp):6} pixels between black and white")
            print(f"blurred mask: {len(np.unique(soft)):3} grey levels, {between(soft):6} pixels between black and white")
            assert between(soft) > between(sharp)

            # Distance of every pixel to the mask's edge: changed pixels all lie in a band around it.
            inside = sharp > 127
            to_edge = np.maximum(ndimage.distance_transform_edt(inside), ndimage.distance_transform_edt(~inside))
            changed = sharp != soft
            print(f"every changed pixel lies within {to_edge[changed].max():.0f} px of the edge")
            assert to_edge[changed].max() < 4 * 33
            """
        ),
        md(
            """
            ## 3. The canvas previews the same blur

            `MaskCanvas` has a **Blur** slider: the overlay then shows the mask the way
            `mask_processor.blur(mask, blur_factor)` will hand it to the pipeline, and `canvas.feathered_mask`
            returns that mask. Drag the slider to see the band widen; the check below confirms the preview is
            not an approximation.
            """
        ),
        code(
            guide_images(
                "https://huggingface.co/datasets/YiYiXu/testing-images/resolve/main/seashore.png",
                variables=("base",),
            )
        ),
        code(
            """
            canvas = nbinpaint.MaskCanvas(base, mask=mask)
            canvas.blur_factor = 33
            canvas
            """,
            ignore=True,
        ),
        code(
            """
            preview = np.array(canvas.feathered_mask)
            print("canvas preview == mask_processor.blur:", np.array_equal(preview, soft))
            assert np.array_equal(preview, soft)
            """
        ),
        md(
            """
            To inpaint with a soft edge, pass `blurred_mask` as `mask_image`, or give `blur_factor=33` to
            `nbinpaint.inpaint`, which applies the same blur.
            """
        ),
    ]


# --------------------------------------------------------------------------------------------------------
# 04 popular models
# --------------------------------------------------------------------------------------------------------

CASTLE = "concept art digital painting of an elven castle, inspired by lord of the rings, highly detailed, 8k"


def guide_generate(grid: str = "make_image_grid([init_image, mask_image, image], rows=1, cols=3)") -> str:
    return f"""
    generator = torch.Generator(device).manual_seed(92)
    prompt = "{CASTLE}"
    image = pipeline(prompt=prompt, image=init_image, mask_image=mask_image, generator=generator).images[0]
    {grid}
    """


def load(repo: str, *, variant: bool = True, name: str = "pipeline", cls: str = "AutoPipelineForInpainting") -> str:
    variant_arg = ', variant="fp16"' if variant else ""
    return f"""
    {name} = {cls}.from_pretrained(
        "{repo}", torch_dtype=dtype{variant_arg}
    )
    if device == "cuda":
        {name}.enable_model_cpu_offload()
    """


def nb04() -> list[nbformat.NotebookNode]:
    name = "04-popular-models"
    return [
        *header(
            name,
            "04 · Popular models: Stable Diffusion, SDXL and Kandinsky 2.2",
            ("popular-models", "Popular models"),
            """
            Three inpainting checkpoints, one prompt, one seed. Stable Diffusion Inpainting (SD 1.5 fine-tuned
            for inpainting at 512 px) is the quick, dependable start. SDXL Inpainting is larger and works at
            1024 px. Kandinsky 2.2 paints from an image embedding made by its prior. At the end, nbinpaint's
            classical fills (no neural network at all) join them, as the baseline a diffusion model should beat.
            """,
        ),
        *setup(steps=False),
        md(
            f"""
            The three examples share the base image and the mask, so they are loaded once.
            {textwrap.dedent(STANDIN_NOTE).strip()}
            """
        ),
        code(guide_images("inpaint.png", "inpaint_mask.png")),
        code(
            """
            from diffusers import AutoPipelineForInpainting
            from diffusers.utils import make_image_grid

            results = {}  # name -> image, for the comparison at the end
            """
        ),
        md(
            f"""
            ## 1. Stable Diffusion Inpainting

            {textwrap.dedent(OFFLOAD_NOTE).strip()} The guide seeds a generator on `"cuda"`; here it is seeded
            on the chosen device.
            """
        ),
        code(load("runwayml/stable-diffusion-inpainting")),
        code(guide_generate(), ignore=True),
        code(
            """
            results["SD inpainting"] = image
            print(type(pipeline).__name__, "->", image.size)
            """
        ),
        md(
            """
            ## 2. Stable Diffusion XL Inpainting

            SDXL's default working size is 1024 px: the 512 px inputs are resized up, and the result comes back
            at 1024 px (so the grid gets `resize=512`, to show the three side by side). SDXL can also run with
            its refiner as a second stage: notebook 12.
            """
        ),
        code(load("diffusers/stable-diffusion-xl-1.0-inpainting-0.1")),
        code(guide_generate("make_image_grid([init_image, mask_image, image], rows=1, cols=3, resize=512)"), ignore=True),
        code(
            """
            results["SDXL inpainting"] = image
            print(type(pipeline).__name__, "->", image.size)
            assert image.size == (1024, 1024)
            """
        ),
        md(
            """
            ## 3. Kandinsky 2.2 Inpainting

            The combined pipeline runs the prior (prompt to image embedding), then the decoder.
            """
        ),
        code(load("kandinsky-community/kandinsky-2-2-decoder-inpaint", variant=False)),
        code(guide_generate(), ignore=True),
        code(
            """
            results["Kandinsky 2.2 inpainting"] = image
            print(type(pipeline).__name__, "->", image.size)
            """
        ),
        md(
            """
            ## 4. Side by side, with classical fills

            nbinpaint also offers three classical inpainting methods under model ids like `classical/telea`:
            OpenCV's fast-marching fill (Telea), OpenCV's Navier-Stokes fill, and scikit-image's biharmonic
            fill. They ignore the prompt and continue the surrounding pixels inward, which is fine for
            removing a small blemish and hopeless for painting a castle. They take a fraction of a second,
            need no weights, and by construction leave every pixel outside the mask untouched.
            """
        ),
        code(
            """
            import gc

            del pipeline  # free the last guide pipeline before the manager runs
            gc.collect()
            classical = ["classical/telea", "classical/ns", "classical/biharmonic"]
            for method in classical:
                results[method] = nbinpaint.inpaint(init_image, mask_image, model=method).image
            """
        ),
        code(
            """
            import numpy as np

            keep = np.array(mask_image.convert("L")) < 128
            for label, picture in results.items():
                print(f"{label:26} {picture.size[0]}x{picture.size[1]}")
            for method in classical:
                assert np.array_equal(np.array(results[method])[keep], np.array(init_image)[keep]), method
            print("the classical fills leave every unmasked pixel as it was")
            """
        ),
        code(
            """
            nbinpaint.ImageGrid([init_image, *results.values()], captions=["base image", *results], cols=4)
            """,
            ignore=True,
        ),
    ]


# --------------------------------------------------------------------------------------------------------
# 05 regular vs inpaint-specific
# --------------------------------------------------------------------------------------------------------


def nb05() -> list[nbformat.NotebookNode]:
    name = "05-regular-vs-inpaint-checkpoints"
    road = DOCS + "road-mask.png"
    return [
        *header(
            name,
            "05 · Regular versus inpaint-specific checkpoints",
            ("non-inpaint-specific-checkpoints", "Non-inpaint specific checkpoints"),
            """
            `AutoPipelineForInpainting` also accepts an ordinary text-to-image checkpoint such as Stable
            Diffusion 1.5. The guide compares it with a checkpoint trained for inpainting twice: on a creative
            task (a castle), where the regular checkpoint leaves a visible outline, and on a simple removal
            (rocks on a road), where both do well. This notebook runs both comparisons and shows the
            mechanical difference between the two kinds of checkpoint.
            """,
        ),
        *setup(),
        code(guide_images("inpaint.png", "inpaint_mask.png")),
        md(
            f"""
            ## 1. Load both checkpoints

            The guide loads them in turn under the name `pipeline`; here they get a name each, so both can be
            compared. {textwrap.dedent(OFFLOAD_NOTE).strip()}
            """
        ),
        code(
            """
            from diffusers import AutoPipelineForInpainting
            from diffusers.utils import make_image_grid
            """,
            load("stable-diffusion-v1-5/stable-diffusion-v1-5", name="regular"),
            load("runwayml/stable-diffusion-inpainting", name="inpaint_specific"),
        ),
        md(
            """
            Both load as the same pipeline class, but their UNets differ in what they read. The regular UNet
            sees only the 4 channels of the noisy latents. The inpainting UNet sees 9: the 4 noisy latents,
            1 channel of mask, and the 4 latent channels of the image with the masked part blanked out. It was
            trained to look at the surroundings while it paints.
            """
        ),
        code(
            """
            for label, pipe in [("regular", regular), ("inpaint-specific", inpaint_specific)]:
                print(f"{label:17} {type(pipe).__name__}, UNet input channels: {pipe.unet.config.in_channels}")
            assert regular.unet.config.in_channels == 4 and inpaint_specific.unet.config.in_channels == 9
            """
        ),
        md("## 2. The castle: a creative edit"),
        code(
            f"""
            prompt = "{CASTLE}"
            generator = torch.Generator(device).manual_seed(92)
            image = regular(prompt=prompt, image=init_image, mask_image=mask_image, generator=generator).images[0]
            generator = torch.Generator(device).manual_seed(92)
            image_specific = inpaint_specific(prompt=prompt, image=init_image, mask_image=mask_image, generator=generator).images[0]
            make_image_grid([init_image, image, image_specific], rows=1, cols=3)
            """,
            ignore=True,
        ),
        md(
            """
            Drag the wipe to compare: regular checkpoint on the left, inpaint-specific on the right. With
            real weights, the left one still shows the mask's outline.
            """
        ),
        code(
            """
            nbinpaint.CompareView(image, image_specific, before_label="stable-diffusion-v1-5", after_label="stable-diffusion-inpainting")
            """,
            ignore=True,
        ),
        md(
            """
            ## 3. Why the outline: what each checkpoint does outside the mask

            With a 4-channel UNet, the pipeline keeps the unmasked area by force: after every denoising step it
            pastes the (re-noised) latents of the original image back outside the mask, and at the last step
            the clean ones. The UNet never learns where the mask is, so the painted part can end at a visible
            seam. The inpainting checkpoint gets the mask as input and denoises the whole latent image, so it
            blends better, and it may also alter what lies outside the mask (notebook 06 deals with that).

            The check: run each checkpoint twice with the same seed and two different prompts, and compare the
            final latents outside the mask (away from its edge). The regular checkpoint's are identical, since
            both are the original image's; the inpainting checkpoint's differ.
            """
        ),
        code(
            """
            def final_latents(pipe, prompt):
                generator = torch.Generator(device).manual_seed(0)
                return pipe(prompt=prompt, image=init_image, mask_image=mask_image, generator=generator,
                            num_inference_steps=STEPS, output_type="latent").images


            latents = {
                label: [final_latents(pipe, p) for p in ("a castle", "a lighthouse")]
                for label, pipe in [("regular", regular), ("inpaint-specific", inpaint_specific)]
            }
            """,
            ignore=True,
        ),
        code(
            """
            import numpy as np
            from PIL import Image
            from scipy import ndimage

            # The mask at latent resolution (1/8), widened by two cells to stay clear of the edge.
            side = latents["regular"][0].shape[-1]
            small = np.array(mask_image.convert("L").resize((side, side), Image.Resampling.NEAREST)) > 127
            outside = torch.from_numpy(~ndimage.binary_dilation(small, iterations=2))
            identical = {label: torch.equal(a[..., outside], b[..., outside]) for label, (a, b) in latents.items()}
            for label, same in identical.items():
                print(f"{label:17} latents outside the mask, prompt A vs prompt B: {'identical' if same else 'different'}")
            assert identical == {"regular": True, "inpaint-specific": False}
            """
        ),
        md(
            """
            ## 4. The road: a simple removal

            For erasing something (the guide's rocks on a road), the regular checkpoint does about as well: the
            masked strip only needs to continue its surroundings. The prompt is just `"road"`.
            """
        ),
        code(guide_images(road, variables=("mask_image",))),
        code(
            """
            image = regular(prompt="road", image=init_image, mask_image=mask_image).images[0]
            image_specific = inpaint_specific(prompt="road", image=init_image, mask_image=mask_image).images[0]
            make_image_grid([init_image, image, image_specific], rows=1, cols=3)
            """,
            ignore=True,
        ),
        code(
            """
            nbinpaint.CompareView(image, image_specific, before_label="stable-diffusion-v1-5", after_label="stable-diffusion-inpainting")
            """,
            ignore=True,
        ),
        code(
            """
            print("road results:", image.size, image_specific.size)
            assert image.size == image_specific.size == init_image.size
            """
        ),
    ]


# --------------------------------------------------------------------------------------------------------
# 06 preserve the unmasked area
# --------------------------------------------------------------------------------------------------------


def nb06() -> list[nbformat.NotebookNode]:
    name = "06-preserve-unmasked-area"
    ldm = "https://raw.githubusercontent.com/CompVis/latent-diffusion/main/data/inpainting_examples/"
    return [
        *header(
            name,
            "06 · Preserving the unmasked area with apply_overlay",
            ("non-inpaint-specific-checkpoints", "Non-inpaint specific checkpoints"),
            """
            An inpainting pipeline returns a whole new image: even outside the mask, every pixel went through
            the VAE's encoder and decoder, and an inpainting checkpoint may repaint a little beyond the mask to
            blend its work in. When the unmasked area must stay exactly as it was (a product photo, a
            document), paste the original back over everything the mask keeps: that is
            `VaeImageProcessor.apply_overlay`. The price is a possibly visible seam at the mask's edge.
            """,
        ),
        *setup(),
        md(
            """
            ## 1. The guide's code

            The guide writes `device = "cuda"`; here `device` comes from the setup cell. Files it saves go to
            a temporary folder instead of the working directory.
            """
        ),
        code(
            """
            import tempfile
            from pathlib import Path

            import numpy as np
            from diffusers import AutoPipelineForInpainting
            from diffusers.utils import make_image_grid

            from nbinpaint.samples import load_image_or_standin

            out_dir = Path(tempfile.mkdtemp(prefix="nbinpaint-"))
            pipeline = AutoPipelineForInpainting.from_pretrained(
                "runwayml/stable-diffusion-inpainting",
                torch_dtype=dtype,
            )
            pipeline = pipeline.to(device)
            """
        ),
        code(
            f"""
            img_url = "{ldm}overture-creations-5sI6fQgYIuo.png"
            mask_url = "{ldm}overture-creations-5sI6fQgYIuo_mask.png"

            init_image = load_image_or_standin(img_url).resize((512, 512))
            mask_image = load_image_or_standin(mask_url).resize((512, 512))
            """
        ),
        code(
            """
            prompt = "Face of a yellow cat, high resolution, sitting on a park bench"
            repainted_image = pipeline(prompt=prompt, image=init_image, mask_image=mask_image).images[0]
            repainted_image.save(out_dir / "repainted_image.png")

            unmasked_unchanged_image = pipeline.image_processor.apply_overlay(mask_image, init_image, repainted_image)
            unmasked_unchanged_image.save(out_dir / "force_unmasked_unchanged.png")
            make_image_grid([init_image, mask_image, repainted_image, unmasked_unchanged_image], rows=2, cols=2)
            """,
            ignore=True,
        ),
        md(
            """
            ## 2. The check

            "Unmasked" means the mask is pure black there. Where the mask is grey (a soft or resized edge),
            `apply_overlay` blends the two images in proportion.
            """
        ),
        code(
            """
            keep = np.array(mask_image.convert("L")) == 0
            base = np.array(init_image)


            def changed_outside(picture) -> float:
                \"\"\"Fraction of the unmasked pixels that differ from the base image.\"\"\"
                return float(np.any(np.array(picture)[keep] != base[keep], axis=-1).mean())


            print(f"unmasked pixels: {keep.mean():.0%} of the image")
            print(f"changed by the pipeline:        {changed_outside(repainted_image):.0%}")
            print(f"changed after apply_overlay:    {changed_outside(unmasked_unchanged_image):.0%}")
            assert changed_outside(unmasked_unchanged_image) == 0
            """
        ),
        md(
            """
            Wipe between the pipeline's output (left) and the overlaid one (right): only the area outside the
            mask differs.
            """
        ),
        code(
            """
            nbinpaint.CompareView(repainted_image, unmasked_unchanged_image, before_label="pipeline output", after_label="apply_overlay")
            """,
            ignore=True,
        ),
        md(
            """
            ## 3. The same in nbinpaint

            `preserve_unmasked=True` (a checkbox in the studio) applies `apply_overlay` to every result.
            """
        ),
        code(
            """
            result = nbinpaint.inpaint(init_image, mask_image, prompt, preserve_unmasked=True, steps=STEPS, seed=0)
            """,
            ignore=True,
        ),
        code(
            """
            print(f"changed with preserve_unmasked=True: {changed_outside(result.image):.0%}")
            assert changed_outside(result.image) == 0
            """
        ),
    ]


# --------------------------------------------------------------------------------------------------------
# 07 strength
# --------------------------------------------------------------------------------------------------------


def nb07() -> list[nbformat.NotebookNode]:
    name = "07-strength"
    return [
        *header(
            name,
            "07 · Strength: how far the masked area may move from the original",
            ("strength", "Strength"),
            """
            `strength` (0 to 1) says how much noise is added to the base image before denoising starts. At 1
            the original is drowned in noise and the model paints the masked area from scratch; at 0.6 enough
            of it survives that the result keeps its colours and layout. It also decides the work done: the pipeline skips
            the first part of its schedule and runs only `int(num_inference_steps * strength)` denoising steps.
            """,
        ),
        *setup(),
        code(guide_images("inpaint.png", "inpaint_mask.png")),
        md(f"## 1. The guide's code\n\n{textwrap.dedent(OFFLOAD_NOTE).strip()}"),
        code(
            """
            from diffusers import AutoPipelineForInpainting
            from diffusers.utils import make_image_grid
            """,
            load("runwayml/stable-diffusion-inpainting")
        ),
        code(
            f"""
            prompt = "{CASTLE}"
            image = pipeline(prompt=prompt, image=init_image, mask_image=mask_image, strength=0.6).images[0]
            make_image_grid([init_image, mask_image, image], rows=1, cols=3)
            """,
            ignore=True,
        ),
        md(
            """
            ## 2. Count the steps

            `callback_on_step_end` is called once after every denoising step, with the step's timestep. It
            counts the steps each strength runs, and shows where on the noise schedule each run starts (the
            timesteps go from about 1000, pure noise, down to 0). `output_type="latent"` skips the final decode,
            which these counts do not need.
            """
        ),
        code(
            """
            def timesteps_run(strength: float) -> list[int]:
                seen = []

                def on_step_end(pipe, step, timestep, callback_kwargs):
                    seen.append(int(timestep))
                    return callback_kwargs

                pipeline(prompt=prompt, image=init_image, mask_image=mask_image, strength=strength,
                         num_inference_steps=STEPS, callback_on_step_end=on_step_end, output_type="latent")
                return seen


            runs = {strength: timesteps_run(strength) for strength in (0.6, 0.8, 1.0)}
            """,
            ignore=True,
        ),
        code(
            """
            for strength, seen in runs.items():
                print(f"strength {strength}: {len(seen):2} of {STEPS} steps, from timestep {seen[0]} down to {seen[-1]}")
                assert len(seen) == int(STEPS * strength)
            """
        ),
        md(
            """
            ## 3. Sweep it

            `nbinpaint.sweep` runs one request per value, all with the same seed, so the only difference
            between the pictures is the swept parameter. The grid's thumbnails enlarge on click; each image
            downloads with its recipe.
            """
        ),
        code(
            """
            request = nbinpaint.InpaintRequest(prompt=prompt, image=init_image, mask=mask_image, steps=STEPS, seed=92)
            strengths = nbinpaint.sweep(request, x=("strength", [0.6, 0.8, 1.0]))
            strengths.grid()
            """,
            ignore=True,
        ),
        code(
            """
            print(strengths.title())
            assert len(strengths) == 3 and {r.seed for r in strengths.results.values()} == {92}
            """
        ),
    ]


# --------------------------------------------------------------------------------------------------------
# 08 guidance scale
# --------------------------------------------------------------------------------------------------------


def nb08() -> list[nbformat.NotebookNode]:
    name = "08-guidance-scale"
    return [
        *header(
            name,
            "08 · Guidance scale: how literally the prompt is followed",
            ("guidance-scale", "Guidance scale"),
            """
            At every step the UNet predicts the noise twice: once for the prompt and once for an empty prompt.
            Classifier-free guidance moves the prediction away from the second and toward the first by
            `guidance_scale` times their difference. A high value holds the picture closely to the prompt; a low
            value leaves the model more freedom. Together with `strength`, it sets how free the model is.
            """,
        ),
        *setup(),
        code(guide_images("inpaint.png", "inpaint_mask.png")),
        md(f"## 1. The guide's code\n\n{textwrap.dedent(OFFLOAD_NOTE).strip()}"),
        code(
            """
            from diffusers import AutoPipelineForInpainting
            from diffusers.utils import make_image_grid
            """,
            load("runwayml/stable-diffusion-inpainting")
        ),
        code(
            f"""
            prompt = "{CASTLE}"
            image = pipeline(prompt=prompt, image=init_image, mask_image=mask_image, guidance_scale=2.5).images[0]
            make_image_grid([init_image, mask_image, image], rows=1, cols=3)
            """,
            ignore=True,
        ),
        md(
            """
            ## 2. What guidance costs

            The two predictions are made in one UNet call on a batch of two. At `guidance_scale` 1 or below,
            guidance would change nothing, so the pipeline skips the empty-prompt half: half the UNet work per
            step. A forward hook on the UNet records the batch size of each call.
            """
        ),
        code(
            """
            batches = []
            hook = pipeline.unet.register_forward_pre_hook(
                lambda module, args, kwargs: batches.append((args[0] if args else kwargs["sample"]).shape[0]),
                with_kwargs=True,
            )
            unet_batch = {}
            try:
                for scale in (2.5, 1.0):
                    batches.clear()
                    pipeline(prompt=prompt, image=init_image, mask_image=mask_image, guidance_scale=scale,
                             num_inference_steps=2, output_type="latent")
                    unet_batch[scale] = sorted(set(batches))
            finally:
                hook.remove()
            """,
            ignore=True,
        ),
        code(
            """
            for scale, sizes in unet_batch.items():
                print(f"guidance_scale={scale}: UNet batch {sizes} per step")
            assert unet_batch == {2.5: [2], 1.0: [1]}
            """
        ),
        md(
            """
            ## 3. Guidance and strength together

            A grid on one seed: guidance along the columns, strength down the rows. The bottom-right corner
            (high strength, high guidance) gives the model the most freedom to follow the prompt.
            """
        ),
        code(
            """
            request = nbinpaint.InpaintRequest(prompt=prompt, image=init_image, mask=mask_image, steps=STEPS, seed=92)
            grid = nbinpaint.sweep(request, x=("guidance_scale", [2.5, 7.5, 12.5]), y=("strength", [0.6, 1.0]))
            grid.grid()
            """,
            ignore=True,
        ),
        code(
            """
            print(grid.title(), "| rows x columns:", grid.shape)
            assert grid.shape == (2, 3) and len(grid) == 6
            """
        ),
    ]


# --------------------------------------------------------------------------------------------------------
# 09 negative prompt
# --------------------------------------------------------------------------------------------------------


def nb09() -> list[nbformat.NotebookNode]:
    name = "09-negative-prompt"
    return [
        *header(
            name,
            "09 · Negative prompt: what to steer away from",
            ("negative-prompt", "Negative prompt"),
            """
            Guidance (notebook 08) pushes each prediction away from an "unconditional" one made with an empty
            prompt. A negative prompt takes the empty prompt's place, so the push goes away from what it
            describes: "blurry", "poor details" and the like are quick ways to lift quality, and naming an
            unwanted object keeps it out.
            """,
        ),
        *setup(),
        code(guide_images("inpaint.png", "inpaint_mask.png")),
        md(f"## 1. The guide's code\n\n{textwrap.dedent(OFFLOAD_NOTE).strip()}"),
        code(
            """
            from diffusers import AutoPipelineForInpainting
            from diffusers.utils import make_image_grid
            """,
            load("runwayml/stable-diffusion-inpainting")
        ),
        code(
            f"""
            prompt = "{CASTLE}"
            negative_prompt = "bad architecture, unstable, poor details, blurry"
            image = pipeline(prompt=prompt, negative_prompt=negative_prompt, image=init_image, mask_image=mask_image).images[0]
            make_image_grid([init_image, mask_image, image], rows=1, cols=3)
            """,
            ignore=True,
        ),
        md(
            """
            ## 2. Where the negative prompt goes

            `encode_prompt` returns the two text embeddings guidance uses: the prompt's, and the negative
            prompt's (or, without one, the empty prompt's). Same shape, different content.
            """
        ),
        code(
            """
            with torch.no_grad():
                positive, negative = pipeline.encode_prompt(prompt, device, 1, True, negative_prompt)
                _, empty = pipeline.encode_prompt(prompt, device, 1, True, None)
            print("prompt embeddings:", tuple(positive.shape[:2]), "| negative:", tuple(negative.shape[:2]))
            print("negative prompt's embeddings differ from the empty prompt's:", not torch.equal(negative, empty))
            assert negative.shape == empty.shape and not torch.equal(negative, empty)
            """
        ),
        md(
            """
            ## 3. With and without, on one seed

            The same seed and settings, once without and once with the negative prompt: any difference
            between the two pictures comes from the negative prompt alone.
            """
        ),
        code(
            """
            without = nbinpaint.inpaint(init_image, mask_image, prompt, steps=STEPS, seed=92)
            with_negative = nbinpaint.inpaint(init_image, mask_image, prompt, negative_prompt=negative_prompt, steps=STEPS, seed=92)
            nbinpaint.CompareView(without.image, with_negative.image, before_label="no negative prompt", after_label="negative prompt")
            """,
            ignore=True,
        ),
        code(
            """
            import numpy as np

            same = np.array_equal(np.array(without.image), np.array(with_negative.image))
            print("seed", without.seed, "both times; pictures differ:", not same)
            assert without.seed == with_negative.seed and not same
            """
        ),
    ]


# --------------------------------------------------------------------------------------------------------
# 10 padding mask crop
# --------------------------------------------------------------------------------------------------------


def nb10() -> list[nbformat.NotebookNode]:
    name = "10-padding-mask-crop"
    testing = "https://huggingface.co/datasets/YiYiXu/testing-images/resolve/main/"
    return [
        *header(
            name,
            "10 · Padding mask crop: inpaint a small area at full resolution",
            ("padding-mask-crop", "Padding mask crop"),
            """
            A pipeline works at one size (512 px for Stable Diffusion 1.5) and squeezes the whole image into it,
            so a small masked area in a large photo gets few of the model's pixels. With
            `padding_mask_crop=N` the pipeline instead cuts out the mask's bounding box plus N pixels of context
            (widened to the working aspect ratio), inpaints that crop at the working size, scales it back, and
            pastes it over the original. The result keeps the original size, and the masked area gets more
            detail.
            """,
        ),
        *setup(),
        md(
            """
            ## 1. The guide's code

            The guide's `torch.Generator(device='cuda')` and `.to('cuda')` use the chosen device here.
            """
        ),
        code(
            """
            from diffusers import AutoPipelineForInpainting

            generator = torch.Generator(device=device).manual_seed(0)
            pipeline = AutoPipelineForInpainting.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5", torch_dtype=dtype).to(device)
            """
        ),
        code(
            guide_images(
                testing + "seashore.png", testing + "seashore_mask.png", variables=("base", "mask")
            )
        ),
        code(
            """
            image = pipeline("boat", image=base, mask_image=mask, strength=0.75, generator=generator, padding_mask_crop=32).images[0]
            image
            """,
            ignore=True,
        ),
        md(
            """
            ## 2. What the pipeline did

            `mask_processor.get_crop_region` is the function the pipeline calls to find the crop. Outside the
            mask, the result is the original photo, pixel for pixel: the crop is pasted back with
            `apply_overlay` (notebook 06).
            """
        ),
        code(
            """
            import numpy as np

            width = height = pipeline.unet.config.sample_size * pipeline.vae_scale_factor  # the working size
            left, top, right, bottom = pipeline.mask_processor.get_crop_region(mask, width, height, pad=32)
            print(f"image {base.size[0]}x{base.size[1]}, working size {width}x{height}")
            print(f"crop box ({left}, {top}, {right}, {bottom}): {right - left}x{bottom - top} px, inpainted at {width}x{height}")
            print(f"model pixels per image pixel: {width / (right - left):.2f} in the crop, {width / base.size[0]:.2f} for the whole image")

            keep = np.array(mask.convert("L")) == 0
            print("result size:", image.size, "| unmasked pixels unchanged:", np.array_equal(np.array(image)[keep], np.array(base)[keep]))
            assert image.size == base.size
            assert np.array_equal(np.array(image)[keep], np.array(base)[keep])
            """
        ),
        md(
            """
            ## 3. Without the crop

            The same call without `padding_mask_crop` works on the whole image squeezed to the working size,
            and returns it at that size.
            """
        ),
        code(
            """
            generator = torch.Generator(device=device).manual_seed(0)
            baseline = pipeline("boat", image=base, mask_image=mask, strength=0.75, generator=generator, num_inference_steps=STEPS).images[0]
            """,
            ignore=True,
        ),
        code(
            """
            print("without padding_mask_crop:", baseline.size, "| with it:", image.size)
            assert baseline.size == (width, height)
            """
        ),
        code(
            """
            nbinpaint.CompareView(baseline.resize(base.size), image, before_label="whole image at 512 px", after_label="padding_mask_crop=32")
            """,
            ignore=True,
        ),
    ]


# --------------------------------------------------------------------------------------------------------
# 11 text-to-image-to-inpaint
# --------------------------------------------------------------------------------------------------------


def nb11() -> list[nbformat.NotebookNode]:
    name = "11-text-to-image-to-inpaint"
    return [
        *header(
            name,
            "11 · Chaining: text-to-image, then inpaint",
            ("text-to-image-to-inpaint", "Text-to-image-to-inpaint"),
            """
            No photo to start from? Generate one from text, then inpaint the part you want changed. The guide
            makes a castle with Stable Diffusion 1.5 and repaints a region of it as a waterfall with
            Kandinsky 2.2. Two different model families means two different autoencoders, so the picture passes
            between them as pixels; notebook 12 shows the case where it can stay in latent space.
            """,
        ),
        *setup(),
        md(f"## 1. Text to image\n\n{textwrap.dedent(OFFLOAD_NOTE).strip()}"),
        code(
            """
            from diffusers import AutoPipelineForInpainting, AutoPipelineForText2Image
            from diffusers.utils import make_image_grid

            pipeline = AutoPipelineForText2Image.from_pretrained(
                "stable-diffusion-v1-5/stable-diffusion-v1-5", torch_dtype=dtype, variant="fp16", use_safetensors=True
            )
            if device == "cuda":
                pipeline.enable_model_cpu_offload()
            """
        ),
        code(
            """
            text2image = pipeline("concept art digital painting of an elven castle, inspired by lord of the rings, highly detailed, 8k").images[0]
            text2image
            """,
            ignore=True,
        ),
        code(
            """
            text_vae = pipeline.vae  # kept to compare autoencoders below
            print(type(pipeline).__name__, "->", text2image.size)
            """
        ),
        md("## 2. The mask for that picture"),
        code(guide_images("inpaint_text-chain-mask.png", variables=("mask_image",))),
        md("## 3. Inpaint with Kandinsky 2.2"),
        code(load("kandinsky-community/kandinsky-2-2-decoder-inpaint", variant=False)),
        code(
            """
            prompt = "digital painting of a fantasy waterfall, cloudy"
            image = pipeline(prompt=prompt, image=text2image, mask_image=mask_image).images[0]
            make_image_grid([text2image, mask_image, image], rows=1, cols=3)
            """,
            ignore=True,
        ),
        md(
            """
            ## 4. Why pixels, not latents

            Latents mean something only to the autoencoder that made them. Stable Diffusion's `AutoencoderKL`
            and Kandinsky's MoVQ (`VQModel`) are different models, so the castle must be decoded to pixels
            and re-encoded by Kandinsky. `nbinpaint.chains.latent_space_difference` makes that decision from
            the two autoencoders themselves, not from model names.
            """
        ),
        code(
            """
            from nbinpaint import chains

            kandinsky_vae = chains.autoencoder(pipeline)
            print(type(text_vae).__name__, "->", type(kandinsky_vae).__name__)
            reason = chains.latent_space_difference(text_vae, kandinsky_vae)
            print("hand-off in latent space possible:", reason is None, "|", reason)
            assert reason is not None
            """
        ),
        md(
            """
            ## 5. The same chain in one call

            `nbinpaint.chains.text_to_inpaint` runs both stages through the shared pipeline manager, plans the
            hand-off as above, and records each stage's recipe.
            """
        ),
        code(
            """
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
            """,
            ignore=True,
        ),
        code(
            """
            for handoff in chain.handoffs:
                print(f"stage 1 -> 2: {handoff.mode} ({handoff.reason})")
            print("stages:", [stage.recipe["pipeline"] for stage in chain.stages])
            assert [h.mode for h in chain.handoffs] == ["pixels"]
            """
        ),
    ]


# --------------------------------------------------------------------------------------------------------
# 12 inpaint-to-image-to-image
# --------------------------------------------------------------------------------------------------------

COUNT_CALLS = '''
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
'''


def nb12() -> list[nbformat.NotebookNode]:
    name = "12-inpaint-to-image-to-image"
    return [
        *header(
            name,
            "12 · Chaining: inpaint, refine, then image-to-image",
            ("inpaint-to-image-to-image", "Inpaint-to-image-to-image"),
            """
            An inpainting result can be improved by further pipelines. The guide inpaints with Stable
            Diffusion, passes the result through SDXL's refiner (loaded as an inpainting pipeline) and finishes
            with an image-to-image pass. Two techniques make such chains cheaper: keeping the output in
            **latent space** when the next pipeline uses the same autoencoder (no decode and re-encode), and
            **`from_pipe`**, which builds the next pipeline from the components already in memory.
            """,
        ),
        *setup(),
        md(f"## 1. Inpaint with Stable Diffusion\n\n{textwrap.dedent(OFFLOAD_NOTE).strip()}"),
        code(
            """
            from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting
            from diffusers.utils import make_image_grid
            """,
            load("runwayml/stable-diffusion-inpainting")
        ),
        code(guide_images("inpaint.png", "inpaint_mask.png")),
        code(
            f"""
            prompt = "{CASTLE}"
            image_inpainting = pipeline(prompt=prompt, image=init_image, mask_image=mask_image).images[0]

            # resize image to 1024x1024 for SDXL
            image_inpainting = image_inpainting.resize((1024, 1024))
            """,
            ignore=True,
        ),
        code(
            """
            sd_vae = pipeline.vae  # kept to compare autoencoders below
            print("inpainted, resized for SDXL:", image_inpainting.size)
            """
        ),
        md(
            """
            ## 2. Refine with SDXL's refiner, and stay in latent space

            `output_type="latent"` returns the latents instead of decoding them to a picture.
            """
        ),
        code(load("stabilityai/stable-diffusion-xl-refiner-1.0")),
        code(
            """
            image = pipeline(prompt=prompt, image=image_inpainting, mask_image=mask_image, output_type="latent").images[0]
            """,
            ignore=True,
        ),
        code(
            """
            print(type(pipeline).__name__, "returned", type(image).__name__, tuple(image.shape))
            assert isinstance(image, torch.Tensor) and image.shape[0] == pipeline.vae.config.latent_channels
            """
        ),
        md(
            """
            ## 3. Image-to-image with `from_pipe`

            `AutoPipelineForImage2Image.from_pipe(pipeline)` makes the refiner's image-to-image pipeline out of
            the very modules already loaded. Given latents as `image`, it starts from them directly. (The grid
            gets `resize=512` because its four pictures come in two sizes.)
            """
        ),
        code(
            """
            refiner = pipeline  # kept to compare components below
            pipeline = AutoPipelineForImage2Image.from_pipe(pipeline)

            image = pipeline(prompt=prompt, image=image).images[0]
            make_image_grid([init_image, mask_image, image_inpainting, image], rows=2, cols=2, resize=512)
            """,
            ignore=True,
        ),
        code(
            """
            shared = sorted(
                name for name, part in pipeline.components.items() if part is not None and part is refiner.components[name]
            )
            print(type(refiner).__name__, "->", type(pipeline).__name__)
            print("components shared, not copied:", ", ".join(shared))
            assert pipeline.unet is refiner.unet and pipeline.vae is refiner.vae
            """
        ),
        md(
            """
            ## 4. What the latent hand-off saves

            Counting the autoencoder's `encode` and `decode` calls, once with the refiner's output handed on as
            latents and once as a picture (smaller and with fewer steps, since only the counts matter): the
            picture route costs one extra decode in the refiner and one extra encode in image-to-image, and
            each round trip through the VAE also loses a little detail.
            """
        ),
        code(COUNT_CALLS),
        code(
            """
            small = image_inpainting.resize((512, 512))
            handoff = {}
            for route in ("latent", "pil"):
                with counting(pipeline.vae, "encode", "decode") as counts:
                    refined = refiner(prompt=prompt, image=small, mask_image=mask_image, output_type=route,
                                      num_inference_steps=STEPS, height=512, width=512).images[0]
                    pipeline(prompt=prompt, image=refined, num_inference_steps=STEPS)
                handoff[route] = dict(counts)
            """,
            ignore=True,
        ),
        code(
            """
            for route, counts in handoff.items():
                print(f"refiner -> image-to-image as {route:6}: {counts['encode']} encode, {counts['decode']} decode")
            assert handoff["pil"]["decode"] - handoff["latent"]["decode"] == 1
            assert handoff["pil"]["encode"] - handoff["latent"]["encode"] == 1
            """
        ),
        md(
            """
            ## 5. Which hand-offs can stay latent

            Only pipelines with the same autoencoder can share latents. Stable Diffusion 1.5 and SDXL both use
            an `AutoencoderKL`, but scale their latents differently, so the first hand-off in the guide's chain
            goes through pixels (hence the resize); the refiner and its `from_pipe` sibling share one VAE
            object. `nbinpaint.chains` decides this from the components:
            """
        ),
        code(
            """
            from nbinpaint import chains

            print("SD inpaint -> refiner:        ", chains.latent_space_difference(sd_vae, refiner.vae) or "same latent space")
            print("refiner -> its image-to-image:", chains.latent_space_difference(refiner.vae, pipeline.vae) or "same latent space")
            assert chains.latent_space_difference(refiner.vae, pipeline.vae) is None
            """
        ),
        md(
            """
            ## 6. The whole chain in one call

            `nbinpaint.chains.run_chain` takes one request per stage, plans each hand-off as above (stages
            after the first receive the previous output), and runs every stage through the shared pipeline
            manager, which builds the image-to-image stage with `from_pipe`.
            """
        ),
        code(
            """
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
            nbinpaint.ImageGrid([init_image, chain.stages[0].image, chain.image], captions=["base", "inpaint", "refined + image-to-image"], cols=3)
            """,
            ignore=True,
        ),
        code(
            """
            for number, handoff in enumerate(chain.handoffs, 1):
                print(f"stage {number} -> {number + 1}: {handoff.mode} ({handoff.reason})")
            assert [h.mode for h in chain.handoffs] == ["pixels", "latent"]
            """
        ),
    ]


# --------------------------------------------------------------------------------------------------------
# 13 prompt weighting
# --------------------------------------------------------------------------------------------------------


def nb13() -> list[nbformat.NotebookNode]:
    name = "13-prompt-weighting"
    return [
        *header(
            name,
            "13 · Prompt weighting with Compel",
            ("prompt-weighting", "Prompt weighting"),
            """
            A prompt reaches the UNet as one embedding vector per token. Prompt weighting scales the vectors of
            chosen words up or down, so the model attends to them more or less. The
            [Compel](https://github.com/damian0815/compel) library reads a compact syntax (`castle++` or
            `(castle)1.2` to strengthen, `blurry--` or `(blurry)0.8` to weaken) and produces the embeddings;
            the pipeline then takes `prompt_embeds` and `negative_prompt_embeds` in place of text.
            """,
        ),
        *setup(),
        md(f"## 1. The pipeline, base image and mask\n\n{textwrap.dedent(OFFLOAD_NOTE).strip()}"),
        code(
            """
            from diffusers import AutoPipelineForInpainting
            from diffusers.utils import make_image_grid

            pipeline = AutoPipelineForInpainting.from_pretrained(
                "runwayml/stable-diffusion-inpainting", torch_dtype=dtype,
            )
            if device == "cuda":
                pipeline.enable_model_cpu_offload()
            """
        ),
        code(guide_images("inpaint.png", "inpaint_mask.png")),
        md(
            """
            ## 2. Make the embeddings with Compel

            Compel uses the pipeline's own tokenizer and text encoder. The positive and negative embeddings
            must have the same length; both prompts here fit CLIP's 77 tokens, so they do.
            """
        ),
        code(
            """
            from compel import Compel

            compel = Compel(tokenizer=pipeline.tokenizer, text_encoder=pipeline.text_encoder)
            prompt = "concept art digital painting of an elven castle++, inspired by lord of the rings, highly detailed, 8k"
            negative_prompt = "bad architecture, (blurry)1.3, poor details"
            with torch.no_grad():
                prompt_embeds = compel(prompt)
                negative_prompt_embeds = compel(negative_prompt)
            print("prompt_embeds:", tuple(prompt_embeds.shape[:2]), "| negative_prompt_embeds:", tuple(negative_prompt_embeds.shape[:2]))
            assert prompt_embeds.shape == negative_prompt_embeds.shape
            """
        ),
        md(
            """
            ## 3. What the weights change

            Without weights, Compel's embedding is exactly the pipeline's own. With `castle++` (weight
            1.1² = 1.21), the vectors that change are those of the tokens of "castle", and no others.
            """
        ),
        code(
            """
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
            print("positions changed by castle++ are exactly the tokens of 'castle':", changed == list(range(start, start + len(castle))))
            assert changed == list(range(start, start + len(castle)))
            """
        ),
        md("## 4. Inpaint with the embeddings (the guide's code)"),
        code(
            """
            image = pipeline(prompt_embeds=prompt_embeds, # generated from Compel
                negative_prompt_embeds=negative_prompt_embeds, # generated from Compel
                image=init_image,
                mask_image=mask_image
            ).images[0]
            make_image_grid([init_image, mask_image, image], rows=1, cols=3)
            """,
            ignore=True,
        ),
        md(
            """
            ## 5. Weighted against plain, on one seed

            `nbinpaint.weighting.compare` runs a request twice with the same seed, once with the prompt as
            plain text (Compel's syntax characters and all) and once as Compel embeddings.
            """
        ),
        code(
            """
            from nbinpaint import weighting

            request = nbinpaint.InpaintRequest(prompt=prompt, negative_prompt=negative_prompt, image=init_image, mask=mask_image, steps=STEPS, seed=92)
            plain_result, weighted_result = weighting.compare(request)
            nbinpaint.CompareView(plain_result.image, weighted_result.image, before_label="plain text", after_label="Compel weights")
            """,
            ignore=True,
        ),
        code(
            """
            import numpy as np

            print("weighted run used prompt_embeds:", weighted_result.request.prompt_embeds is not None)
            print("same seed:", plain_result.seed == weighted_result.seed)
            print("pictures differ:", not np.array_equal(np.array(plain_result.image), np.array(weighted_result.image)))
            assert weighted_result.request.prompt_embeds is not None and plain_result.seed == weighted_result.seed
            """
        ),
    ]


# --------------------------------------------------------------------------------------------------------
# 14 ControlNet
# --------------------------------------------------------------------------------------------------------


def nb14() -> list[nbformat.NotebookNode]:
    name = "14-controlnet"
    return [
        *header(
            name,
            "14 · ControlNet inpainting, then a new style with image-to-image",
            ("controlnet", "ControlNet"),
            """
            A ControlNet is a trainable copy of the UNet's encoder that reads an extra *condition image* and
            nudges the UNet at every step. The inpainting ControlNet was trained on the base image with the
            pixels to repaint set to -1, so it knows what to keep and where to paint, and holds the result
            closely to the original's structure. The guide follows it with an image-to-image pass in the
            style of a fine-tuned checkpoint.
            """,
        ),
        *setup(),
        md(f"## 1. Load the ControlNet and the pipeline\n\n{textwrap.dedent(OFFLOAD_NOTE).strip()}"),
        code(
            """
            import numpy as np
            from diffusers import ControlNetModel, StableDiffusionControlNetInpaintPipeline
            from diffusers.utils import make_image_grid

            # load ControlNet
            controlnet = ControlNetModel.from_pretrained("lllyasviel/control_v11p_sd15_inpaint", torch_dtype=dtype, variant="fp16")

            # pass ControlNet to the pipeline
            pipeline = StableDiffusionControlNetInpaintPipeline.from_pretrained(
                "runwayml/stable-diffusion-inpainting", controlnet=controlnet, torch_dtype=dtype, variant="fp16"
            )
            if device == "cuda":
                pipeline.enable_model_cpu_offload()
            """
        ),
        code(guide_images("inpaint.png", "inpaint_mask.png")),
        md("## 2. The condition image (the guide's function)"),
        code(
            """
            # prepare control image
            def make_inpaint_condition(init_image, mask_image):
                init_image = np.array(init_image.convert("RGB")).astype(np.float32) / 255.0
                mask_image = np.array(mask_image.convert("L")).astype(np.float32) / 255.0

                assert init_image.shape[0:1] == mask_image.shape[0:1], "image and image_mask must have the same image size"
                init_image[mask_image > 0.5] = -1.0  # set as masked pixel
                init_image = np.expand_dims(init_image, 0).transpose(0, 3, 1, 2)
                init_image = torch.from_numpy(init_image)
                return init_image

            control_image = make_inpaint_condition(init_image, mask_image)
            """
        ),
        md(
            """
            A `(1, 3, height, width)` float tensor: the image's pixels in [0, 1], and exactly -1 in all three
            channels where the mask is white. `nbinpaint.control.make_inpaint_condition` builds the same tensor
            (and checks both sizes, where the guide's `assert` compares only the heights).
            """
        ),
        code(
            """
            from nbinpaint import control

            to_repaint = (control_image[0] == -1).all(dim=0)
            white = np.array(mask_image.convert("L")) > 127
            print("control_image:", tuple(control_image.shape), control_image.dtype)
            print(f"pixels set to -1: {to_repaint.float().mean().item():.1%} of the image, exactly the white of the mask:",
                  np.array_equal(to_repaint.numpy(), white))
            print("same as nbinpaint.control.make_inpaint_condition:", torch.equal(control_image, control.make_inpaint_condition(init_image, mask_image)))
            assert np.array_equal(to_repaint.numpy(), white)
            assert torch.equal(control_image, control.make_inpaint_condition(init_image, mask_image))
            """
        ),
        md(
            """
            ## 3. Inpaint under control

            The guide shows the condition with `PIL.Image.fromarray(np.uint8(control_image[0][0]))`, which keeps
            only the red channel and casts values in [0, 1] straight to bytes (so the picture is nearly black, and -1 wraps round to 255).
            `control.condition_preview` shows what the ControlNet sees: the image, with the masked pixels black.
            """
        ),
        code(
            f"""
            prompt = "{CASTLE}"
            image = pipeline(prompt=prompt, image=init_image, mask_image=mask_image, control_image=control_image).images[0]
            make_image_grid([init_image, mask_image, control.condition_preview(control_image), image], rows=2, cols=2)
            """,
            ignore=True,
        ),
        code(
            """
            inpaint_vae = pipeline.vae  # kept to compare autoencoders below
            print(type(pipeline).__name__, "->", image.size)
            """
        ),
        md(
            """
            ## 4. A new style with image-to-image

            [`nitrosocke/elden-ring-diffusion`](https://huggingface.co/nitrosocke/elden-ring-diffusion) is a
            Stable Diffusion 1.5 fine-tune that answers to the words "elden ring style".
            """
        ),
        code(
            """
            from diffusers import AutoPipelineForImage2Image
            """,
            load("nitrosocke/elden-ring-diffusion", variant=False, cls="AutoPipelineForImage2Image")
        ),
        code(
            """
            prompt = "elden ring style castle" # include the token "elden ring style" in the prompt
            negative_prompt = "bad architecture, deformed, disfigured, poor details"

            image_elden_ring = pipeline(prompt, negative_prompt=negative_prompt, image=image).images[0]
            make_image_grid([init_image, mask_image, image, image_elden_ring], rows=2, cols=2)
            """,
            ignore=True,
        ),
        md(
            """
            The fine-tune kept Stable Diffusion 1.5's autoencoder, so (unlike notebook 11) this hand-off could
            stay in latent space:
            """
        ),
        code(
            """
            from nbinpaint import chains

            print("inpaint -> elden ring:", chains.latent_space_difference(inpaint_vae, pipeline.vae) or "same latent space")
            assert chains.latent_space_difference(inpaint_vae, pipeline.vae) is None
            """
        ),
        md(
            """
            ## 5. The chain in one call

            `nbinpaint.chains.inpaint_to_img2img` with `controlnet=` builds the condition from the image and
            mask, runs the ControlNet inpaint, and hands the latents to the image-to-image stage.
            """
        ),
        code(
            """
            import gc

            del pipeline, controlnet, inpaint_vae
            gc.collect()
            chain = chains.inpaint_to_img2img(
                init_image,
                mask_image,
                "concept art digital painting of an elven castle, inspired by lord of the rings, highly detailed, 8k",
                prompt,
                controlnet="lllyasviel/control_v11p_sd15_inpaint",
                img2img_model="nitrosocke/elden-ring-diffusion",
                img2img_params={"negative_prompt": negative_prompt},
                steps=STEPS,
                seed=92,
            )
            nbinpaint.CompareView(init_image, chain.image, before_label="base image", after_label="ControlNet inpaint + elden ring style")
            """,
            ignore=True,
        ),
        code(
            """
            print("stage 1 -> 2:", chain.handoffs[0].mode, f"({chain.handoffs[0].reason})")
            print("stages:", [stage.recipe["pipeline"] for stage in chain.stages])
            assert chain.handoffs[0].mode == "latent"
            """
        ),
    ]


# --------------------------------------------------------------------------------------------------------
# 15 optimize
# --------------------------------------------------------------------------------------------------------


def nb15() -> list[nbformat.NotebookNode]:
    name = "15-optimize"
    return [
        *header(
            name,
            "15 · Optimize: attention, offloading, torch.compile",
            ("optimize", "Optimize"),
            """
            Three levers from the guide, and what each one buys. **Memory-efficient attention** (PyTorch 2's
            scaled-dot-product attention, SDPA) is faster and lighter and is on by default. **CPU offloading**
            trades speed for GPU memory. **`torch.compile`** trades a slow first call for faster later ones.
            What a CPU can show is measured here; what needs a GPU is explained, and measured when this
            notebook runs on one.
            """,
        ),
        *setup(steps=False),
        code(
            """
            from diffusers import AutoPipelineForInpainting

            pipeline = AutoPipelineForInpainting.from_pretrained(
                "runwayml/stable-diffusion-inpainting", torch_dtype=dtype, variant="fp16"
            ).to(device)
            """
        ),
        code(guide_images("inpaint.png", "inpaint_mask.png")),
        md(
            """
            ## 1. Attention: SDPA is already on

            On PyTorch 2, diffusers gives every attention layer `AttnProcessor2_0`, which calls
            `torch.nn.functional.scaled_dot_product_attention`. That is why the guide's
            `enable_xformers_memory_efficient_attention()` line is unnecessary on PyTorch 2: SDPA dispatches to
            fused kernels (flash or memory-efficient attention on GPUs, a fused kernel on CPUs) that never
            store the full table of attention scores.
            """
        ),
        code(
            """
            print({type(processor).__name__ for processor in pipeline.unet.attn_processors.values()})
            """
        ),
        md(
            """
            The size of the table SDPA avoids, for the real Stable Diffusion 1.5 at 512 px: its first
            self-attention layers see 64 × 64 = 4096 latent positions, each attending to all 4096, in 8 heads,
            for a batch of 2 (classifier-free guidance), in float16.
            """
        ),
        code(
            """
            tokens, heads, batch, bytes_per_value = 64 * 64, 8, 2, 2
            table = tokens * tokens * heads * batch * bytes_per_value
            print(f"attention scores of one such layer: {table / 2**20:.0f} MiB (16x that at 1024 px, per layer)")
            """
        ),
        md(
            """
            Measured here on the loaded UNet: one denoising step with SDPA and with the classic processor
            (`AttnProcessor`, which builds the score table explicitly). Both compute the same thing; the
            timings depend on the machine (and on a twin's tiny layers), so they are printed, not asserted.
            """
        ),
        code(
            """
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
            """,
            ignore=True,
        ),
        code(
            """
            tolerance = 1e-3 if dtype == torch.float32 else 2e-2
            print("same result (within float rounding):", torch.allclose(sdpa_out, classic_out, atol=tolerance))
            assert torch.allclose(sdpa_out, classic_out, atol=tolerance)
            """
        ),
        md(
            """
            ## 2. CPU offloading: GPU memory for time

            `pipeline.enable_model_cpu_offload()` keeps every model in CPU memory and moves each to the GPU
            only while it runs (text encoder, then UNet for all steps, then VAE), so the GPU holds about one
            model at a time instead of all of them; moving a model costs a fraction of a second per call.
            `enable_sequential_cpu_offload()` goes further, streaming the weights layer by layer: the least
            GPU memory, and many times slower. On a CPU there is nothing to offload to (diffusers refuses the
            call); nbinpaint's pipeline manager says so and carries on.

            What model offloading would hold on the GPU for this pipeline (for the real SD 1.5 in float16:
            UNet about 1.7 GB, text encoder 0.25 GB, VAE 0.17 GB):
            """
        ),
        code(
            """
            sizes = {
                name: sum(p.numel() * p.element_size() for p in module.parameters())
                for name, module in pipeline.components.items()
                if isinstance(module, torch.nn.Module)
            }
            largest = max(sizes, key=sizes.get)
            print(f"all models together: {sum(sizes.values()) / 2**20:.1f} MB")
            print(f"largest at one time with model offload ({largest}): {sizes[largest] / 2**20:.1f} MB, "
                  f"{sizes[largest] / sum(sizes.values()):.0%} of the weights")
            """
        ),
        code(
            """
            if device == "cuda":

                def peak_during_call(pipe) -> float:
                    torch.cuda.reset_peak_memory_stats()
                    pipe(prompt="a castle", image=init_image, mask_image=mask_image, num_inference_steps=2)
                    return torch.cuda.max_memory_allocated() / 2**30

                print(f"peak GPU memory, all on the GPU:  {peak_during_call(pipeline):.2f} GB")
                offloaded = AutoPipelineForInpainting.from_pretrained("runwayml/stable-diffusion-inpainting", torch_dtype=dtype, variant="fp16")
                offloaded.enable_model_cpu_offload()
                print(f"peak GPU memory, model offload:   {peak_during_call(offloaded):.2f} GB")
                del offloaded
            else:
                print("GPU memory measurement skipped: no GPU here.")
            """,
            ignore=True,
        ),
        code(
            """
            manager = nbinpaint.PipelineManager(offload="model")
            print("offload mode in use:", manager.offload)
            """
        ),
        md(
            """
            ## 3. `torch.compile`: a slow first call for faster later ones

            The guide compiles the UNet, where nearly all the time goes:

            ```python
            pipeline.unet = torch.compile(pipeline.unet, mode="reduce-overhead", fullgraph=True)
            ```

            The first call traces the UNet and generates fused kernels; `mode="reduce-overhead"` also records
            CUDA graphs, which removes the per-layer launch overhead on a GPU. On a GPU that typically gains
            some tens of percent per step after a first call of a minute or more, worth it for many images of
            one size. On the 2-core CPU machine these notebooks were written on (shared with other jobs at the
            time), the first call of the tiny twin's UNet took about 110 s and the compiled twin was not faster
            (its layers are too small for fusion to matter), so the measurement runs only on a GPU unless you
            set `MEASURE_COMPILE = True`. A change of image size or batch recompiles.
            """
        ),
        code(
            """
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
            """,
            ignore=True,
        ),
        md(
            """
            ## 4. Why float16 only on a GPU

            Every notebook picks `torch.float16` on a GPU and `torch.float32` on a CPU. A GPU has fast
            half-precision units, and float16 halves the bytes to store and move: about twice the speed and
            half the memory. A CPU gains nothing: few CPUs compute in float16 natively, so PyTorch converts or
            falls back to generic kernels. How much slower that is depends on the CPU and the PyTorch build
            (more than tenfold has been seen; on the 2-core AVX-512 machine these notebooks were written on,
            with PyTorch 2.13, 1.5 to 2 times). Measured here, on one convolution of the size Stable
            Diffusion's first UNet block runs (320 channels, 64 × 64 latents, batch 2):
            """
        ),
        code(
            """
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
            print(f"CPU convolution: float32 {timings['float32'] * 1000:.0f} ms, float16 {timings['float16'] * 1000:.0f} ms "
                  f"({timings['float16'] / timings['float32']:.1f}x the float32 time)")
            """,
            ignore=True,
        ),
        md(
            """
            ## 5. What the manager holds

            The studio and `nbinpaint.inpaint` go through the kernel's shared `nbinpaint.manager`, which loads
            each checkpoint once, in the device's dtype, with the offload mode you choose
            (`nbinpaint.manager.set_offload("model")`), and can compile the denoiser for you
            (`PipelineManager(compile_denoiser=True)`). `status()` shows what it holds.
            """
        ),
        code(
            """
            result = nbinpaint.inpaint(init_image, mask_image, "a castle", steps=2, seed=0)
            """,
            ignore=True,
        ),
        code(
            """
            nbinpaint.manager.status()
            """,
            ignore=True,
        ),
        code(
            """
            for row in nbinpaint.manager.status().rows:
                print(f"{row['model']}: tasks {row['tasks']}, {row['device']}, {row['dtype']}, twin: {row['twin']}, runs: {row['runs']}")
            """
        ),
    ]


# --------------------------------------------------------------------------------------------------------
# The studio section: the same step with canvas, panel and results in one widget
# --------------------------------------------------------------------------------------------------------

STUDIO_TEXT = """
## In the studio

{why}

`nbinpaint.studio(image, mask, **values)` puts the mask canvas, the parameter panel and the results side by
side, bound to the kernel's shared pipeline manager; the panel starts from the values given here. Press
**Generate**: the run goes on in the background, so the notebook and the canvas stay usable, with a progress
bar and a preview of the predicted final image every few steps; **Cancel** stops it at the end of the current
step. Controls the selected pipeline does not take are greyed out, with the reason as their tooltip.
**Show code** prints the plain diffusers script that reproduces the result pixel for pixel.
"""

STUDIO_CHECK = """
studio.panel.wait_ready(300)  # the panel reads the pipeline's signature in the background
print("greyed out:", ", ".join(sorted(studio.panel.disabled_reasons)) or "nothing")
run = studio.generate()  # exactly what the Generate button does
assert run.wait(900) and run.status == "done", run.message
result = studio.result  # the run's first image, with its request and recipe
print("seed", result.seed, "| size", result.image.size, "| pipeline", result.recipe["pipeline"])
"""


def studio_cells(why: str, arguments: str, check: str = "") -> list[nbformat.NotebookNode]:
    """A closing section: the notebook's step in `InpaintStudio`, then a run pressed from code and checked."""
    return [
        md(STUDIO_TEXT.format(why=textwrap.dedent(why).strip())),
        code(f"studio = nbinpaint.studio({arguments})\nstudio", ignore=True),
        code(textwrap.dedent(STUDIO_CHECK).strip() + "\n" + textwrap.dedent(check).strip()),
    ]


SD_INPAINT = "runwayml/stable-diffusion-inpainting"
SDXL_INPAINT = "diffusers/stable-diffusion-xl-1.0-inpainting-0.1"
KANDINSKY = "kandinsky-community/kandinsky-2-2-decoder-inpaint"
STUDIO: dict[str, Callable[[], list[nbformat.NotebookNode]]] = {
    "01-quickstart": lambda: studio_cells(
        "Kandinsky 2.2 has no `strength`, `padding_mask_crop` or `negative_prompt_embeds` in its `__call__`: "
        "the panel greys those out.",
        f'init_image, canvas.mask, model="{KANDINSKY}", prompt=prompt, negative_prompt=negative_prompt, '
        "steps=STEPS, seed=92, lock_seed=True",
        'assert result.seed == 92 and result.request.prompt == prompt',
    ),
    "03-mask-blur": lambda: studio_cells(
        "The panel's **blur** slider is `blur_factor`: the canvas shows the feathered mask exactly as "
        "`mask_processor.blur` will hand it to the pipeline.",
        f'base, mask, model="{SD_INPAINT}", prompt="a small black cat", blur_factor=33, steps=10, seed=92, '
        "lock_seed=True",
        "assert result.request.blur_factor == 33",
    ),
    "04-popular-models": lambda: studio_cells(
        "Switch the **model** picker between SD, SDXL, Kandinsky 2.2 and the classical fillers: each "
        "checkpoint loads once into the shared manager, and the panel adapts to its signature.",
        f'init_image, mask_image, model="{SDXL_INPAINT}", prompt="concept art digital painting of an elven '
        'castle, inspired by lord of the rings, highly detailed, 8k", steps=10, seed=92, lock_seed=True',
        'assert result.recipe["pipeline"] == "StableDiffusionXLInpaintPipeline"',
    ),
    "06-preserve-unmasked-area": lambda: studio_cells(
        "**Preserve unmasked** applies `apply_overlay`: every pixel outside the mask is the original's.",
        f'init_image, mask_image, model="{SD_INPAINT}", prompt="road", preserve_unmasked=True, steps=STEPS, '
        "seed=92, lock_seed=True",
        """
        import numpy as np

        outside = np.asarray(mask_image.convert("L").resize(result.image.size)) == 0
        unchanged = np.asarray(result.image)[outside] == np.asarray(init_image.resize(result.image.size))[outside]
        print("unmasked pixels kept:", bool(unchanged.all()))
        """,
    ),
    "07-strength": lambda: studio_cells(
        "The **strength** slider: lower keeps more of the original; the progress bar counts the "
        "`int(steps * strength)` steps that actually run.",
        f'init_image, mask_image, model="{SD_INPAINT}", prompt=prompt, strength=0.6, steps=STEPS, seed=92, '
        "lock_seed=True",
        "assert result.request.strength == 0.6",
    ),
    "08-guidance-scale": lambda: studio_cells(
        "The **guidance** slider: higher follows the prompt more closely, lower leaves the model freer.",
        f'init_image, mask_image, model="{SD_INPAINT}", prompt=prompt, guidance_scale=2.5, steps=STEPS, '
        "seed=92, lock_seed=True",
        "assert result.request.guidance_scale == 2.5",
    ),
    "09-negative-prompt": lambda: studio_cells(
        "The **negative prompt** box: what to steer away from, with the seed locked so only it changes.",
        f'init_image, mask_image, model="{SD_INPAINT}", prompt=prompt, negative_prompt=negative_prompt, '
        "steps=STEPS, seed=92, lock_seed=True",
        "assert result.request.negative_prompt == negative_prompt",
    ),
    "10-padding-mask-crop": lambda: studio_cells(
        "**Crop around mask** turns `padding_mask_crop` on; its slider sets the margin.",
        f'base, mask, model="{SD_INPAINT}", prompt="a yellow cat", crop=True, padding_mask_crop=32, '
        "steps=STEPS, seed=92, lock_seed=True",
        "assert result.request.padding_mask_crop == 32 and result.image.size == base.size",
    ),
    "12-inpaint-to-image-to-image": lambda: studio_cells(
        "After a result, **Send to image-to-image** and **Refine with SDXL refiner** continue the chain from "
        "it, through the same manager (`from_pipe`, nothing loaded twice).",
        f'init_image, mask_image, model="{SDXL_INPAINT}", prompt="concept art digital painting of an elven '
        'castle", steps=STEPS, seed=92, lock_seed=True',
        'assert result.recipe["pipeline"] == "StableDiffusionXLInpaintPipeline"',
    ),
    "13-prompt-weighting": lambda: studio_cells(
        "The prompt box takes Compel's syntax (`castle++`, `(blurry)1.3`): the panel turns it into "
        "`prompt_embeds`; **Compare plain vs weighted** shows both side by side.",
        f'init_image, mask_image, model="{SD_INPAINT}", prompt="a (castle)1.5 on a hill", steps=STEPS, '
        "seed=92, lock_seed=True",
        'assert result.recipe["prompt_weighting"]["syntax"] == "compel", result.recipe',
    ),
    "14-controlnet": lambda: studio_cells(
        "**ControlNet inpaint** adds `lllyasviel/control_v11p_sd15_inpaint`; the panel builds the inpaint "
        "condition (masked pixels at -1) from the image and mask and shows it.",
        'init_image, mask_image, model="stable-diffusion-v1-5/stable-diffusion-v1-5", prompt=prompt, '
        "controlnet=True, steps=STEPS, seed=92, lock_seed=True",
        'assert "controlnet" in result.recipe["pipeline"].lower(), result.recipe["pipeline"]',
    ),
}


NOTEBOOKS: dict[str, Callable[[], list[nbformat.NotebookNode]]] = {
    "00-index": nb00,
    "01-quickstart": nb01,
    "02-create-a-mask": nb02,
    "03-mask-blur": nb03,
    "04-popular-models": nb04,
    "05-regular-vs-inpaint-checkpoints": nb05,
    "06-preserve-unmasked-area": nb06,
    "07-strength": nb07,
    "08-guidance-scale": nb08,
    "09-negative-prompt": nb09,
    "10-padding-mask-crop": nb10,
    "11-text-to-image-to-inpaint": nb11,
    "12-inpaint-to-image-to-image": nb12,
    "13-prompt-weighting": nb13,
    "14-controlnet": nb14,
    "15-optimize": nb15,
}


def notebook(cells: list[nbformat.NotebookNode]) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "accelerator": "GPU",  # Colab: open with a GPU runtime
    }
    return nb


def strip(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop images and widget views from stored outputs, and per-run metadata (see the module docstring)."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        for output in cell.get("outputs", []):
            data = output.get("data")
            if data is not None:
                for mime in DROPPED_MIME:
                    data.pop(mime, None)
                output.get("metadata", {}).clear()
    return nb


def execute(path: Path) -> float:
    """Run a notebook top to bottom in a fresh kernel in twin mode, store its outputs; returns seconds."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    took = time.perf_counter() - started
    nbformat.write(strip(nb), path)
    return took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execute", action="store_true", help="execute and store outputs (twin mode)")
    parser.add_argument("--readme-table", action="store_true", help="print the README's notebook table and exit")
    parser.add_argument("only", nargs="*", help="notebook name prefixes, e.g. 07 12 (default: all)")
    args = parser.parse_args(argv)
    if args.readme_table:
        print(readme_table())
        return 0
    chosen = [n for n in NOTEBOOKS if not args.only or any(n.startswith(p) for p in args.only)]
    for name in chosen:
        cells = NOTEBOOKS[name]() + (STUDIO[name]() if name in STUDIO else [])
        nbformat.write(notebook(cells), HERE / f"{name}.ipynb")
        print(f"wrote {name}.ipynb")
    if args.execute:
        from nbinpaint import twins

        os.environ.update(NBINPAINT_TWINS="1", HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(twins.install(quiet=True)))
        for name in chosen:
            took = execute(HERE / f"{name}.ipynb")
            print(f"executed {name}.ipynb in {took:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
