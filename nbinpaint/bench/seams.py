"""Seam repair, measured: the colour step across the mask's edge (CIE ΔE 2000) before and after each repair.

``python -m nbinpaint.bench.seams [--json PATH]`` prints, for two cases, `nbinpaint.seams.boundary_delta_e`
before any repair and after each of ``match``, ``poisson`` and ``overlay``, with the time each repair took:

* **known shift**: the chelsea photo with its masked area (the cat's face) shifted in colour by
  `SHIFT` (RGB), the seam an inpainting pipeline's colour drift leaves behind, with every other pixel the
  photo's own. Histogram matching must at least halve its ΔE: the command prints the ratio and exits 1
  when it does not.
* **twin result**: the SD inpainting twin's output on the same scene (random weights: noise inside the mask,
  and the VAE's round trip outside it), repaired with `nbinpaint.seams.repair_seams` on the result.

The ``seam_repair_known_shift`` row of ``python -m nbinpaint.bench`` times ``match`` on the known shift and
carries the same ΔE figures. ΔE figures are deterministic; timings are informative and never asserted.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from nbinpaint.bench.common import Measured, row, timed

__all__ = ["SHIFT", "known_shift", "main", "measure", "twin_result"]

SHIFT = (30, -10, -25)
"""The known colour shift of the masked area, in RGB levels: warmer, as a drifting VAE often makes it."""
SCENE = "chelsea"
SD = "runwayml/stable-diffusion-inpainting"


def known_shift(name: str = SCENE, shift: tuple[int, int, int] = SHIFT) -> tuple[Image.Image, Image.Image, Any]:
    """(shifted picture, original, mask): a sample photo whose masked area is shifted by ``shift``."""
    from nbinpaint import samples

    scene = samples.load(name)
    rgb, inside = np.asarray(scene.image).astype(np.int16), np.asarray(scene.mask) > 127
    rgb[inside] += np.asarray(shift, np.int16)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB"), scene.image, scene.mask


def twin_result(steps: int = 3, seed: int = 92) -> Any:
    """The SD inpainting twin's result on the chelsea scene (twin mode switched on, twins built if missing)."""
    from nbinpaint import samples, twins
    from nbinpaint.pipeline_manager import PipelineManager
    from nbinpaint.requests import InpaintRequest

    if not twins.twin_mode():
        twins.use_twins()
    scene = samples.load(SCENE)
    request = InpaintRequest(
        prompt="a cat's face", image=scene.image, mask=scene.mask, model=SD, steps=steps, seed=seed
    )
    return PipelineManager(device="cpu").run(request)


def measure(image: Any, original: Any, mask: Any, *, result: Any = None) -> dict[str, dict[str, float]]:
    """``{"none": {"delta_e": ...}, "match": {"delta_e": ..., "ms": ...}, ...}`` for ``image``; with an
    `InpaintResult` as ``result`` the repairs go through `repair_seams` on it (the recipe-keeping path)."""
    from nbinpaint.seams import METHODS, boundary_delta_e, repair, repair_seams

    figures = {"none": {"delta_e": boundary_delta_e(image, original, mask)}}
    for method in METHODS:
        started = time.perf_counter()
        if result is not None:
            repaired = repair_seams(result, method=method).image
        else:
            repaired = repair(image, original, mask, method)
        elapsed = time.perf_counter() - started
        figures[method] = {"delta_e": boundary_delta_e(repaired, original, mask), "ms": elapsed * 1000}
    return figures


def _print_case(title: str, figures: dict[str, dict[str, float]]) -> None:
    before = figures["none"]["delta_e"]
    print(title)
    print(f"  {'repair':<8} {'ΔE':>8} {'ratio':>7} {'ms':>8}")
    for method, values in figures.items():
        ratio = values["delta_e"] / before if before else float("nan")
        ms = f"{values['ms']:>8.1f}" if "ms" in values else f"{'':>8}"
        print(f"  {method:<8} {values['delta_e']:>8.3f} {ratio:>7.3f} {ms}")


@row(
    "seam_repair_known_shift",
    f"seam repair 'match' on {SCENE} with its mask shifted by RGB {SHIFT}; boundary ΔE before and after each repair",
    "ΔE ratio <= 0.5",
)
def seam_repair_known_shift(repeat: int) -> Measured:
    from nbinpaint.seams import repair

    image, original, mask = known_shift()
    samples = timed(lambda: repair(image, original, mask, "match"), min(repeat, 11))
    figures = measure(image, original, mask)
    shown: dict[str, Any] = {f"delta_e_{method}": values["delta_e"] for method, values in figures.items()}
    shown["match_ratio"] = figures["match"]["delta_e"] / figures["none"]["delta_e"]
    return Measured(samples, figures=shown)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nbinpaint.bench.seams", description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    parser.add_argument("--no-twin", action="store_true", help="leave out the twin result (no pipeline run)")
    args = parser.parse_args(argv)
    shifted, original, mask = known_shift()
    cases = {"known_shift": measure(shifted, original, mask)}
    _print_case(f"known shift: {SCENE}, masked area shifted by RGB {SHIFT} (boundary ΔE 2000)", cases["known_shift"])
    known = cases["known_shift"]
    ratio = known["match"]["delta_e"] / known["none"]["delta_e"]
    halved = ratio <= 0.5
    print(f"  match ratio {ratio:.3f}: {'at least halved' if halved else 'NOT halved'} (target <= 0.5)")
    if not args.no_twin:
        result = twin_result()
        cases["twin_result"] = measure(result.image, original, mask, result=result)
        _print_case(f"twin result: SD inpainting twin on {SCENE}, {result.request.steps} steps", cases["twin_result"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"shift": SHIFT, "match_ratio": ratio, "cases": cases}, indent=1))
        print(f"wrote {args.json}")
    return 0 if halved else 1


if __name__ == "__main__":
    raise SystemExit(main())
