# %% [markdown]
# # 02 · Create a mask image
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)][colab]
#
# Guide section: [Create a mask image][guide] · [all notebooks](00-index.ipynb)
#
# The guide supplies a mask for every example and points to a Hugging Face Space for drawing your
# own. Here you draw it in the notebook, next to the code that uses it: `nbinpaint.MaskCanvas` keeps
# the mask in Python at the image's full resolution (white = repaint, black = keep), so the pipeline
# gets exactly what you drew. This notebook also covers the fallback when drawing is not possible
# (uploading or loading a mask), masks from a click with Segment Anything, and saving the mask as a PNG.
#
# > **Twin mode.** Where huggingface.co cannot be reached (Binder, CI, a laptop on a train), or when
# > `NBINPAINT_TWINS=1` is set, the first code cell turns on nbinpaint's *twin mode*: every checkpoint below
# > loads, by its usual repo id, as a tiny twin with random weights built on this machine. The pipeline
# > classes, latent shapes, default sizes, schedulers and step counts are those of the real checkpoints, so
# > every line of code and every check runs for real, but **the pictures are noise**. With hub access (Colab
# > with a GPU) the same cells download and use the real checkpoints.
#
# [colab]: https://colab.research.google.com/github/nbinpaint/nbinpaint/blob/main/notebooks/02-create-a-mask.ipynb
# [guide]: https://huggingface.co/docs/diffusers/using-diffusers/inpaint#create-a-mask-image

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

# %% [markdown]
# ## 1. Draw
#
# Tools: **brush** and **eraser** (size slider, or `[` and `]`; `x` swaps them), **rectangle**,
# **ellipse**, **lasso** (a closed outline, filled when you let go) and **wand** (click a region of
# similar colour; the tolerance slider sets how similar). **Subtract** makes the shape tools remove
# instead of add. **Grow** and **Shrink** move the mask's edge by the given pixels; **Invert**
# swaps repaint and keep; Ctrl+Z / Ctrl+Shift+Z undo and redo. The overlay is display only: the
# mask itself is a full-resolution array in the kernel.

# %% tags=["nbval-ignore-output"]
canvas = nbinpaint.MaskCanvas(init_image)
canvas

# %% [markdown]
# ### Zoom and pan
#
# For detail on a large image, zoom in: the **mouse wheel** zooms about the pointer (the image pixel
# under it stays put), **drag with space held** or with the **middle button** to pan, **Fit** shows the
# whole image again, and the readout says the zoom over fit and the percentage of image pixels. The
# brush size is in image pixels, so its outline grows as you zoom in and a stroke covers the same image
# pixels at every zoom. Only the visible part of the image and of the overlay is redrawn.
#
# The view is two traits, `zoom` (1 = fit) and `pan` (the image point at the canvas's top-left corner),
# which code can set too; `image_point` maps a pointer position to the image pixel under it.

# %%
zoomed = nbinpaint.MaskCanvas(init_image, max_display_size=256)
zoomed.zoom = 4  # about the canvas's centre, as the + button does
x0, y0, x1, y1 = zoomed.viewport.visible
print(f"image {zoomed.image.size} on a {zoomed.display_size} canvas at zoom {zoomed.zoom:g}")
print(f"visible: x {x0:g} to {x1:g}, y {y0:g} to {y1:g}; pan {zoomed.pan}")
centre = zoomed.image_point({"x": 128, "y": 128})
print("the canvas's centre shows image point", centre)
assert centre == (init_image.width / 2, init_image.height / 2)
zoomed.pan = (0, 0)  # the image's top-left corner
print("after panning, canvas (10, 20) shows image point", zoomed.image_point({"x": 10, "y": 20}))
zoomed.fit()
assert zoomed.zoom == 1 and zoomed.image_point({"x": 128, "y": 128}) == centre

# %% [markdown]
# Whatever you drew is in `canvas.mask` (a PIL image in mode `"L"`, 255 = repaint) and, without a
# copy, in `canvas.mask_array`. Run this cell again after drawing: the count changes.

# %%
import numpy as np

print(canvas.mask.mode, canvas.mask.size)
print(f"{np.count_nonzero(canvas.mask_array)} pixels marked to repaint")
assert canvas.mask.size == init_image.size

# %% [markdown]
# ## 2. No mouse? Load a mask instead
#
# On Colab, third-party widgets sometimes receive no mouse input. The canvas's **Load mask** button
# takes an image file (white = repaint) of the image's size. In code, `canvas.load_mask(...)` takes a
# path, PNG bytes, a PIL image or a numpy array; on Colab you can upload a file with:
#
# ```python
# from google.colab import files
# uploaded = files.upload()                      # {file name: bytes}
# canvas.load_mask(next(iter(uploaded.values())))
# ```
#
# Below, a second canvas loads the guide's mask and shows what the editing buttons do to it, pixel
# for pixel. Every change is one undo step.

# %%
guide_mask = load_image_or_standin(
    "https://huggingface.co/datasets/huggingface/documentation-images/resolve/main/diffusers/inpaint_mask.png"
)
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

# %% [markdown]
# ## 3. Click an object: Segment Anything
#
# Tracing an object's outline by hand is slow. The canvas's **Segment** tool asks
# [Segment Anything](https://huggingface.co/docs/transformers/model_doc/sam) instead: click a point on the
# object and its proposed mask shows in blue over the canvas; Shift- or Alt-click (or choose **Outside** in
# the tool's bar) a point that is *not* part of it to trim the proposal; every click asks again with all
# the points. **Accept** adds the proposal to the mask as one undo step (with **Subtract** on, removes it);
# **Clear points** starts over. The model, `facebook/sam-vit-base` through transformers' `SamModel`, is
# loaded by the same shared manager as the pipelines: one cache, one memory budget, the same device and
# dtype. In twin mode it is a tiny random-weight twin, so the proposals are noise of the right size.

# %% tags=["nbval-ignore-output"]
picker = nbinpaint.MaskCanvas(init_image)
picker.tool = "segment"
picker

# %% [markdown]
# Behind the tool is one function, `nbinpaint.segment(image, points, labels)`: points in image pixels,
# label 1 on the object and 0 off it, and back comes a mask the size of the image (of SAM's three proposals,
# the one with the highest predicted IoU). Here a point near the middle of the picture, and one in its corner.

# %%
points, labels = [(256, 320), (30, 30)], [1, 0]
sam_mask = nbinpaint.segment(init_image, points, labels)
print(sam_mask.mode, sam_mask.size, f"{np.count_nonzero(np.asarray(sam_mask))} pixels proposed")
assert sam_mask.size == init_image.size
assert set(np.unique(np.asarray(sam_mask))) <= {0, 255}

# %% [markdown]
# The same mask with transformers alone, as its SAM guide writes it: the processor resizes the image's
# long side to 1024 and pads it square, the model proposes three masks with their predicted IoU, and
# `post_process_masks` brings them back to the image's size.

# %%
import torch
from transformers import SamModel, SamProcessor

sam = SamModel.from_pretrained("facebook/sam-vit-base", dtype=dtype).to(device)
processor = SamProcessor.from_pretrained("facebook/sam-vit-base")
inputs = processor(init_image, input_points=[[points]], input_labels=[[labels]], return_tensors="pt")
with torch.no_grad():
    outputs = sam(
        pixel_values=inputs["pixel_values"].to(device, dtype),
        input_points=inputs["input_points"].to(device, dtype),
        input_labels=inputs["input_labels"].to(device),
    )
masks = processor.image_processor.post_process_masks(
    outputs.pred_masks.float().cpu(), inputs["original_sizes"], inputs["reshaped_input_sizes"]
)
best = int(outputs.iou_scores[0, 0].argmax())
plain = masks[0][0, best].numpy()
agree = (plain == (np.asarray(sam_mask) > 0)).mean()
print(f"best of {outputs.iou_scores.shape[-1]} proposals: #{best}; pixels that agree: {agree:.2%}")
assert agree > 0.999

# %% [markdown]
# In the canvas, a click and **Accept** do this (a click on the widget above works the same way):

# %%
picker.segment_tool.click(256, 320)
before = picker.mask_version
picker.segment_tool.accept()
print(f"mask_version {before} -> {picker.mask_version}: {np.count_nonzero(picker.mask_array)} pixels to repaint")
assert picker.mask_version == before + 1 and picker.mask_array.any()
picker.undo()
assert not picker.mask_array.any(), "Accept is one undo step"

# %% [markdown]
# ## 4. Save the mask
#
# `save_mask` writes a PNG, which is lossless: reading it back gives the same pixels (a JPEG would
# blur the edge into grey). Here it goes to a temporary folder; in the widget, the **Save PNG** button
# writes to the path beside it.

# %%
import tempfile
from pathlib import Path

from diffusers.utils import load_image

out_dir = Path(tempfile.mkdtemp(prefix="nbinpaint-"))
path = demo.save_mask(out_dir / "mask.png")
reloaded = np.array(load_image(str(path)).convert("L"))
print(path.name, "reloads pixel-identical:", np.array_equal(reloaded, demo.mask_array))
assert np.array_equal(reloaded, demo.mask_array)

# %% [markdown]
# ## 5. Use it
#
# Your drawing if there is one, otherwise the guide's mask, inpainted with the guide's default
# Stable Diffusion inpainting checkpoint through `nbinpaint.inpaint`.

# %% tags=["nbval-ignore-output"]
from diffusers.utils import make_image_grid

mask = canvas.mask if canvas.mask_array.any() else demo.mask
result = nbinpaint.inpaint(init_image, mask, "a bouquet of sunflowers", steps=STEPS, seed=0)
make_image_grid([init_image, mask.convert("RGB"), result.image], rows=1, cols=3)

# %%
print(result.recipe["model"], result.image.size)
assert result.image.size == init_image.size
