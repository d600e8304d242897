"""`InpaintStudio`: the mask canvas, the parameter panel and the result viewer in one layout.

The studio only arranges and connects: `MaskCanvas` (the mask), `ParameterPanel` (settings, Generate,
progress, errors, the latest result at about the canvas's size, code), `ExpandControls` (outpainting: an
Expand button per side), `ImageGrid` (every image of the last
run, with the follow-up steps), `CompareView` (base against result) and `HistoryGallery` (every result;
Restore puts a result's settings and mask back).

Layout, made for a 1366-1440 px laptop with JupyterLab's file browser open: in twin mode a banner first;
then the canvas and the 400 px panel side by side (they wrap into one column where that does not fit, the
panel's Generate and result right under the canvas); then tabs for the last run, compare and history.

Follow-up steps on a result call the library's own functions in the background: `nbinpaint.chains.to_img2img` and
`nbinpaint.chains.refine`, and the history's ``use_as_base``.
"""

from __future__ import annotations

import dataclasses
import html
from typing import Any

import ipywidgets as widgets
from PIL import Image

from nbinpaint import chains
from nbinpaint.errors import NbinpaintError
from nbinpaint.requests import InpaintRequest, InpaintResult, as_rgb
from nbinpaint.widgets.canvas import MaskCanvas
from nbinpaint.widgets.compare import CompareView
from nbinpaint.widgets.expand import ExpandControls
from nbinpaint.widgets.gallery import HistoryGallery
from nbinpaint.widgets.grid import ImageGrid
from nbinpaint.widgets.panel import PANEL_WIDTH, RUN_CLASS, ParameterPanel, result_caption
from nbinpaint.widgets.picker import guide_models

__all__ = ["DEFAULT_SAMPLE", "REFINE_STRENGTH", "TWIN_BANNER", "InpaintStudio", "studio"]

REFINE_STRENGTH = 0.3
"""Strength of the refiner pass: low, to keep the result's composition (the refiner's own default, 0.9999,
repaints nearly everything)."""
DEFAULT_SAMPLE = "chelsea"
"""The offline sample (`nbinpaint.samples`) a studio opens on when given no image."""
CANVAS_COLUMN_MIN = 440
"""Narrowest the canvas column gets (CSS pixels): its tool rows stay readable beside a small image."""
GAP = 20
"""Space between the canvas and the panel, in CSS pixels."""
TWIN_BANNER = "Twin mode: pictures are noise from random weights; classical fills are real."
"""What the studio says at its top while twin mode is on."""
_BANNER_STYLE = (
    "background:#fff4ce;border:1px solid #e3c35a;border-radius:4px;padding:5px 10px;color:#4d3800;"
    "font-size:13px;line-height:1.4"
)

_ACTIONS = {  # name: (label, icon, tooltip)
    "use_as_base": ("Use as base image", "image", "Continue inpainting on this result: it replaces the base image"),
    "to_img2img": ("Send to image-to-image", "share", "Image-to-image over the whole result (img2img model below)"),
    "refine": ("Refine with SDXL refiner", "magic", "An inpainting pass of the SDXL refiner over the same mask"),
}


class InpaintStudio(widgets.VBox):
    """Draw a mask, set the parameters, generate, compare and continue, in one notebook widget.

    Parameters
    ----------
    image, mask:
        The base image (PIL, array or path) and an optional starting mask (white = repaint).
    manager, history:
        The pipeline manager and the `History` results go to; the kernel's shared ones when None.
    max_display_size:
        Longest side of the canvas on screen (larger images are shown scaled; the mask stays full size).
    img2img_model:
        Checkpoint of "Send to image-to-image" (an inpainting checkpoint cannot do image-to-image).
    **values:
        Initial panel values: ``model=``, ``prompt=``, ``steps=``, ``seed=``...
    """

    def __init__(
        self,
        image: Any,
        mask: Any = None,
        *,
        manager: Any = None,
        history: Any = None,
        max_display_size: int = 512,
        img2img_model: str = chains.SD15,
        **values: Any,
    ) -> None:
        if history is None:
            from nbinpaint.history import shared_history

            history = shared_history()
        self.history = history
        from nbinpaint.twins import twin_mode

        self.canvas = MaskCanvas(as_rgb(image), mask, max_display_size=max_display_size)
        self.canvas.segment_tool.manager = manager  # Segment Anything loads where the pipelines do
        self.panel = ParameterPanel(canvas=self.canvas, manager=manager, history=history, **values)
        shown_w, shown_h = self.canvas.display_size
        # The canvas column is as wide as the canvas (its tool rows wrap), so canvas and panel fit side by side
        # in JupyterLab beside its file browser on a 1366-1440 px screen.
        self.canvas.layout.width = f"{max(shown_w, CANVAS_COLUMN_MIN)}px"
        self.canvas.layout.max_width = "100%"
        # The latest result as large as the canvas where the panel's width allows.
        self.panel.result_view.max_width = min(PANEL_WIDTH - 16, max(shown_w, 256))
        self.panel.result_view.max_height = max(shown_h, 256)
        #: The twin-mode notice (hidden when twin mode is off).
        self.banner = widgets.HTML(
            f'<div style="{_BANNER_STYLE}">&#9888; <b>Twin mode:</b> '
            f"{html.escape(TWIN_BANNER.split(': ', 1)[1])}</div>",
            layout=widgets.Layout(width="100%", display=None if twin_mode() else "none"),
        )
        self.grid = ImageGrid(cell_size=160, filename="nbinpaint-result", grid_download=False)
        self.compare = CompareView(display_size=max_display_size)
        self.gallery = HistoryGallery(history)
        self.img2img_model = widgets.Combobox(
            value=img2img_model,
            options=guide_models(),  # the inpainting ones are refused with a message naming a plain one
            ensure_option=False,
            continuous_update=False,
            description="img2img model",
            style={"description_width": "initial"},
            layout=widgets.Layout(width="420px"),
        )
        self.buttons = {
            name: widgets.Button(
                description=label, icon=icon, tooltip=tip, disabled=True, layout=widgets.Layout(width="auto")
            )
            for name, (label, icon, tip) in _ACTIONS.items()
        }
        for name, button in self.buttons.items():
            button.on_click(lambda _b, name=name: self._act(name))
        self._empty = widgets.HTML("<i>Every image of the last run appears here, with the next steps.</i>")
        result_tab = widgets.VBox(
            [
                self._empty,
                self.grid,
                widgets.HBox(list(self.buttons.values()), layout=widgets.Layout(flex_flow="row wrap")),
                self.img2img_model,
            ]
        )
        self.tabs = widgets.Tab(
            children=[result_tab, self.compare, self.gallery], titles=("Result", "Compare", "History")
        )
        self.compare.paused = True  # drawn when its tab is opened, not for every result
        self.tabs.observe(lambda change: setattr(self.compare, "paused", change["new"] != 1), "selected_index")
        top = widgets.HBox(
            [self.canvas, self.panel],
            layout=widgets.Layout(align_items="flex-start", flex_flow="row wrap", grid_gap=f"8px {GAP}px"),
        )
        # Where the panel wraps below the canvas, Generate and the result move to the panel's top, right under
        # the canvas: a container query on the studio's own width (JupyterLab's side panels change it, not
        # the window's), at the width the two columns need.
        wraps_below = max(shown_w, CANVAS_COLUMN_MIN) + GAP + PANEL_WIDTH - 1
        studio_class = f"nbinpaint-studio-{wraps_below}"
        style = widgets.HTML(
            f"<style>.{studio_class} {{ container-type: inline-size; }} "
            f"@container (max-width: {wraps_below}px) {{ .{studio_class} .{RUN_CLASS} {{ order: -1; }} }}</style>",
            layout=widgets.Layout(display="none"),
        )
        #: Outpainting: an Expand button per side, under the canvas and panel.
        self.expand = ExpandControls(self.panel)
        super().__init__(children=[style, self.banner, top, self.expand, self.tabs])
        self.add_class(studio_class)
        self.panel.on_result(self._show_results)
        history.on_send_to_img2img(self._on_send_to_img2img)

    # -- Python API ----------------------------------------------------------------------------------------

    def generate(self) -> Any:
        """Press Generate: starts a background run with a copy of the current mask; returns the run."""
        return self.panel.generate()

    def cancel(self) -> bool:
        """Press Cancel: the run stops at the end of its current denoising step."""
        return self.panel.cancel()

    @property
    def result(self) -> InpaintResult | None:
        """The last run's (first) result."""
        return self.panel.result

    def selected_image(self) -> Image.Image:
        """The result image the follow-up buttons act on: the enlarged one in the grid, else the first."""
        if not self.grid.images:
            raise NbinpaintError("there is no result yet: Generate first.")
        index = self.grid.selected if self.grid.selected >= 0 else 0
        return self.grid.images[index]

    def use_as_base(self) -> None:
        """Make the selected result the base image (the mask stays, for the next edit nearby)."""
        self.panel.set_inputs(self.selected_image(), None)
        self.panel.say("The result is the new base image; the mask is kept. Paint the next change.")

    def to_img2img(self) -> Any:
        """Run image-to-image over the selected result with the img2img model, in the background."""
        return self._follow_up(
            "image-to-image",
            lambda result, manager: chains.to_img2img(result, model=self.img2img_model.value.strip(), manager=manager),
        )

    def refine(self, strength: float = REFINE_STRENGTH) -> Any:
        """Refine the selected result with the SDXL refiner over the same mask, in the background."""
        return self._follow_up(
            "refiner pass", lambda result, manager: chains.refine(result, strength=strength, manager=manager)
        )

    # -- internals -----------------------------------------------------------------------------------------

    def _act(self, name: str) -> None:
        try:
            getattr(self, name)()
        except NbinpaintError as error:
            self.panel.say(str(error), error=True)

    def _selected_result(self) -> InpaintResult:
        """The selected image as a one-image result with its own request (for chains that continue it)."""
        image = self.selected_image()
        owner = next(r for r in self.panel.results if any(i is image for i in r.images))
        return dataclasses.replace(owner, images=[image])

    def _follow_up(self, label: str, step: Any) -> Any:
        result = self._selected_result()
        return self.panel.run_job(lambda manager: step(result, manager), label)

    def _on_send_to_img2img(self, request: InpaintRequest, result: InpaintResult) -> None:
        chosen = dataclasses.replace(result, images=[request.image])
        try:
            self.panel.run_job(
                lambda manager: chains.to_img2img(chosen, model=self.img2img_model.value.strip(), manager=manager),
                "image-to-image",
            )
        except NbinpaintError as error:
            self.panel.say(str(error), error=True)

    def _show_results(self, results: list[InpaintResult], captions: list[str]) -> None:
        images, labels, recipes = [], [], []
        for result, caption in zip(results, captions, strict=True):
            for index, image in enumerate(result.images):
                if isinstance(image, Image.Image):
                    images.append(image)
                    suffix = f" #{index + 1}" if len(result.images) > 1 else ""
                    labels.append(f"{caption} {result_caption(result)}{suffix}".strip())
                    recipes.append(result.recipe)
        if not images:
            return
        self.grid.set_images(images, captions=labels, recipes=recipes)
        self._empty.layout.display = "none"
        for button in self.buttons.values():
            button.disabled = False
        base = results[0].request.image
        if isinstance(base, Image.Image):
            self.compare.set_pair(base, images[0], ("base", labels[0]))

    def close(self) -> None:
        """Close every part and stop following the history."""
        self.history.on_send_to_img2img(self._on_send_to_img2img, remove=True)
        self.expand.close()
        self.panel.close()
        self.gallery.close()
        super().close()


def studio(image: Any = None, mask: Any = None, **kwargs: Any) -> InpaintStudio:
    """Open an `InpaintStudio` on ``image`` (a PIL image, array, path or sample name); the ``chelsea`` sample,
    with its mask, when None. ``kwargs`` go to `InpaintStudio` (``model=``, ``prompt=``, ``manager=``...)."""
    from nbinpaint import samples

    if image is None or (isinstance(image, str) and image in samples.names()):
        sample = samples.load(image or DEFAULT_SAMPLE)
        image, mask = sample.image, sample.mask if mask is None else mask
    return InpaintStudio(image, mask, **kwargs)
