"""Parameter sweeps (A1111's X/Y plot; the guide's strength and guidance comparisons) on one fixed seed.

`sweep` runs a request once per cell of an X (and optionally Y) grid of values, all with the same seed so
the only difference between cells is the swept parameter. Every cell's request is validated before the
first runs, so a bad value fails at once with the cell named. Cancelling keeps the cells that finished.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from nbinpaint.errors import GenerationCancelled, InvalidRequestError
from nbinpaint.parameters import canonical, did_you_mean
from nbinpaint.requests import CALL_PARAMETERS, InpaintRequest, InpaintResult, new_seed

if TYPE_CHECKING:
    from nbinpaint.contract import Manager

__all__ = ["SWEEPABLE", "SweepResult", "sweep"]

# Pixels and embeddings are inputs, not settings one compares side by side. ``seed`` may be an axis (to
# compare seeds, as A1111's X/Y plot does); the axis then overrides the sweep's fixed seed.
_NOT_SWEEPABLE = {"image", "mask", "control_image", "prompt_embeds", "negative_prompt_embeds", "extra"}
SWEEPABLE: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(InpaintRequest) if f.name not in _NOT_SWEEPABLE)
"""`InpaintRequest` fields a sweep axis may name."""

Axis = tuple[str, Sequence[Any]]
Key = tuple[Any, Any]


_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.=-]")


@dataclass
class SweepResult:
    """The finished cells of a sweep, keyed by ``(x value, y value)`` (y is None in a one-axis sweep).

    A cell that was cancelled or never ran is simply absent; ``cancelled`` says whether the sweep was
    stopped. Displays as an `ImageGrid` with the axis values as row and column labels.
    """

    request: InpaintRequest
    x: str
    x_values: list[Any]
    y: str | None
    y_values: list[Any]
    seed: int
    results: dict[Key, InpaintResult] = field(default_factory=dict)
    cancelled: bool = False

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, key: Key | Any) -> InpaintResult:
        return self.results[key if isinstance(key, tuple) else (key, None)]

    def cell_keys(self) -> list[Key]:
        """Every cell's key in grid order (row by row: y outer, x inner), finished or not."""
        return [(xv, yv) for yv in (self.y_values or [None]) for xv in self.x_values]

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns): one row per y value, one column per x value."""
        return max(1, len(self.y_values)), len(self.x_values)

    def images(self) -> list[Image.Image | None]:
        """The first image of each cell in grid order; None where a cell did not finish."""
        return [self.results[k].image if k in self.results else None for k in self.cell_keys()]

    def save_cells(self, folder: str | os.PathLike[str]) -> list[Path]:
        """Each finished cell as a PNG with its recipe in ``folder``, named by its place and axis values
        (``01-strength=0.6.png``); returns the paths in grid order."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for index, key in enumerate(self.cell_keys(), 1):
            if key in self.results:
                label = f"{self.x}={key[0]}" + (f"-{self.y}={key[1]}" if self.y else "")
                name = f"{index:02d}-{_SAFE_NAME.sub('_', label)[:100]}.png"  # values may hold '/' (model ids)
                paths.append(self.results[key].save(folder / name))
        return paths

    def column_labels(self) -> list[str]:
        return [f"{self.x}={v}" for v in self.x_values]

    def row_labels(self) -> list[str]:
        return [f"{self.y}={v}" for v in self.y_values] if self.y else []

    def grid(self, **kwargs: Any) -> Any:
        """An `ImageGrid` of the cells with axis labels; keyword arguments go to `ImageGrid`."""
        from nbinpaint.widgets.grid import ImageGrid

        rows, cols = self.shape
        captions = [(f"seed {self.seed}" if k in self.results else "not run") for k in self.cell_keys()]
        recipes = [self.results[k].recipe if k in self.results else None for k in self.cell_keys()]
        kwargs.setdefault("title", self.title())
        kwargs.setdefault("filename", f"sweep-{self.x}" + (f"-{self.y}" if self.y else ""))
        return ImageGrid(
            self.images(),
            captions=captions,
            recipes=recipes,
            rows=rows,
            cols=cols,
            col_labels=self.column_labels(),
            row_labels=self.row_labels(),
            **kwargs,
        )

    def title(self) -> str:
        axes = self.x if self.y is None else f"{self.x} × {self.y}"
        state = f", cancelled after {len(self)} of {len(self.cell_keys())} cells" if self.cancelled else ""
        return f"Sweep of {axes}, seed {self.seed}{state}"

    def compose(self) -> Image.Image:
        """The whole sweep as one labelled image (``make_image_grid`` plus axis labels)."""
        from nbinpaint.widgets.grid import compose_grid

        rows, cols = self.shape
        return compose_grid(self.images(), rows, cols, col_labels=self.column_labels(), row_labels=self.row_labels())

    def save(self, path: Any) -> None:
        """Save the labelled grid as a PNG; `save_cells` writes each cell with its recipe (a grid has many)."""
        self.compose().save(path, format="PNG")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.grid()._repr_mimebundle_(**kwargs)


def sweep(
    request: InpaintRequest,
    x: Axis,
    y: Axis | None = None,
    *,
    manager: Any = None,
    should_stop: Callable[[], bool] | None = None,
    on_result: Callable[[Key, InpaintResult], Any] | None = None,
) -> SweepResult:
    """Run ``request`` once per cell of the ``x`` (columns) by ``y`` (rows) grid, all on one seed.

    Parameters
    ----------
    request:
        The base request; each cell replaces the swept fields.
    x, y:
        ``(field name, values)``, e.g. ``("strength", [0.6, 0.8, 1.0])``; any `SWEEPABLE` field.
    manager:
        Runs the cells; the kernel's shared manager when None.
    should_stop:
        Checked before each cell and, through ``manager.run``, after every denoising step: once true,
        the running cell is dropped and the sweep returns what finished, with ``cancelled=True``.
    on_result:
        ``on_result((x value, y value), result)`` after each finished cell, e.g. to fill a grid or a
        history as the sweep goes: ``on_result=lambda key, result: history.add(result)``.

    The seed is ``request.seed``, or one random seed chosen once for the whole grid; it is recorded in
    `SweepResult.seed` and, as for any run, in each cell's recipe (which also names the cell under
    ``"sweep"``). A ``"seed"`` axis overrides it per cell.
    """
    x_name, x_values = _axis(x, "x")
    y_name, y_values = _axis(y, "y") if y is not None else (None, [])
    if x_name == y_name:
        raise InvalidRequestError(f"x and y both sweep {x_name!r}: choose two different parameters.")
    seed = new_seed() if request.seed is None else request.seed
    outcome = SweepResult(request, x_name, x_values, y_name, y_values, seed)
    if manager is None:
        from nbinpaint.session import shared_manager

        manager = shared_manager()

    cells = {key: _cell(request, outcome, key) for key in outcome.cell_keys()}
    _check_against_pipeline(manager, cells, outcome)

    for key, cell in cells.items():
        if should_stop is not None and should_stop():
            outcome.cancelled = True
            break
        try:
            result = manager.run(cell, should_stop=should_stop)
        except GenerationCancelled:
            outcome.cancelled = True
            break
        result.recipe["sweep"] = {"x": [x_name, key[0]], "y": None if y_name is None else [y_name, key[1]]}
        outcome.results[key] = result
        if on_result is not None:
            on_result(key, result)
    return outcome


def _axis(axis: Any, which: str) -> tuple[str, list[Any]]:
    try:
        name, values = axis
        values = list(values)
    except (TypeError, ValueError):
        raise InvalidRequestError(
            f"{which} must be (parameter name, values), e.g. ('strength', [0.6, 0.8, 1.0]); got {axis!r}."
        ) from None
    name = canonical(name) or name if isinstance(name, str) else name  # num_inference_steps is steps
    if name not in SWEEPABLE:
        raise InvalidRequestError(
            f"{which} sweeps {name!r}, which is not sweepable; choose one of {', '.join(SWEEPABLE)}."
            + did_you_mean(name, SWEEPABLE)
        )
    if not values:
        raise InvalidRequestError(f"{which}={name!r} has no values: give at least one.")
    if not all(isinstance(v, Hashable) for v in values):
        raise InvalidRequestError(f"{which}={name!r} values must be plain values (numbers, strings); got {values!r}.")
    if len(set(values)) != len(values):
        raise InvalidRequestError(f"{which}={name!r} lists a value twice: {values!r}. Each value names one cell.")
    return name, values


def _label(outcome: SweepResult, key: Key) -> str:
    label = f"{outcome.x}={key[0]!r}"
    return label if outcome.y is None else f"{label}, {outcome.y}={key[1]!r}"


def _cell(request: InpaintRequest, outcome: SweepResult, key: Key) -> InpaintRequest:
    """One cell's validated request, or the validation error prefixed with the cell it is about."""
    changes = {"seed": outcome.seed, outcome.x: key[0]}
    if outcome.y is not None:
        changes[outcome.y] = key[1]
    try:
        return request.replace(**changes).validated()
    except InvalidRequestError as error:
        raise type(error)(f"sweep cell {_label(outcome, key)}: {error}") from error


def _check_against_pipeline(manager: Manager, cells: dict[Key, InpaintRequest], outcome: SweepResult) -> None:
    """Check each cell's parameters against its pipeline's before the first cell runs.

    Asked of the manager (`Manager.accepted_parameters`, `Manager.pipeline_class`), so a workshop server
    answers as a local manager does, with the same message. Done only when every cell uses one pipeline (the
    usual numeric sweep): a sweep over models would otherwise load every model up front, which with a
    memory budget means loading them all twice.
    """
    loading = {(c.model, c.task, c.dtype, c.variant, c.controlnet) for c in cells.values()}
    if len(loading) != 1:
        return
    model, task, dtype, variant, controlnet = loading.pop()
    where = {"torch_dtype": dtype, "variant": variant, "controlnet": controlnet}
    accepted = manager.accepted_parameters(model, task, **where)
    pipeline_class = manager.pipeline_class(model, task, **where)
    for key, cell in cells.items():
        try:
            _refuse_unaccepted(cell, accepted, pipeline_class)
        except InvalidRequestError as error:
            raise type(error)(f"sweep cell {_label(outcome, key)}: {error}") from error


def _refuse_unaccepted(request: InpaintRequest, accepted: frozenset[str], pipeline_class: str) -> None:
    """Refuse what ``request`` would pass that the pipeline does not take, in `InpaintRequest.call_kwargs`'s
    words (which needs the pipeline object, so a workshop server's cannot be checked with it)."""
    passed = {
        parameter
        for name, parameter in CALL_PARAMETERS.items()
        if getattr(request, name) is not None and not (name == "prompt" and request.prompt_embeds is not None)
    }
    passed |= set(request.extra)
    if request.output_type == "pil" and "output_type" not in request.extra:
        passed.discard("output_type")  # every pipeline's default: never a reason to refuse one
    if not {"width", "height"} & (accepted | set(request.extra)):
        passed -= {"width", "height"}  # the pipeline runs at the image's own size instead
    request.refuse_unaccepted(passed, accepted, pipeline_class)
