"""Benchmark rows for the studio: a Generate click end to end against diffusers' bare call.

The studio path is what a click does: snapshot the mask, build the request, run it on the worker thread with
progress, previews and cancel checks on, put the result in the history and the viewer. The row waits for the
run to finish (the panel's `GenerationRun.wait`), so thread hand-off and widget updates are inside the timing.
"""

from __future__ import annotations

from typing import Any

from nbinpaint.bench.common import Measured, paired, row
from nbinpaint.bench.pipelines import PROMPT, SD, SEED, _bare_call, _manager, _same_pixels, _scene, own_overhead


def _studio(side: int, steps: int) -> tuple[Any, Any, Any]:
    from nbinpaint.history import History
    from nbinpaint.widgets.studio import InpaintStudio

    manager = _manager()
    image, mask = _scene(side)
    studio = InpaintStudio(image, mask, manager=manager, history=History(output=False), model=SD, prompt=PROMPT)
    panel = studio.panel
    panel.steps, panel.seed, panel.lock_seed = steps, SEED, True
    if not panel.wait_ready(120):
        raise RuntimeError("the panel did not finish looking up the model's parameters")
    return studio, manager, (image, mask)


def _click(studio: Any) -> Any:
    run = studio.generate()
    if not run.wait(600):
        raise RuntimeError("the studio run did not finish within 10 minutes")
    if run.status != "done":
        raise RuntimeError(f"the studio run did not succeed: {run.message}")
    return studio.result.image


@row(
    "studio_generate_vs_diffusers_512",
    "studio Generate (thread, progress, previews, history) vs bare call, SD twin 512, 20 steps",
    "ratio <= 1.02",
)
def studio_generate(repeat: int) -> Measured:
    studio, manager, (image, mask) = _studio(512, 20)
    bare = _bare_call(manager.get(SD), image, mask, 20)
    measured = paired(lambda: _click(studio), bare, min(repeat, 8))
    measured.figures["identical_pixels"] = _same_pixels(_click(studio), bare())
    measured.figures.update(own_overhead(manager.get(SD), lambda: _click(studio)))
    return measured
