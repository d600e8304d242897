"""What the benchmark rows share: registering a row, timing it, and running the registered rows.

A module of its own so the topic modules (`masks`, `pipelines`, `remote`, `studio`) import it rather than the
package, whose `main` imports them: the package never sits in an import circle with its rows.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ROWS", "Measured", "Row", "Skip", "on_finish", "paired", "row", "run_rows", "timed"]


class Skip(Exception):
    """A row cannot run on this machine; the message says what it needs."""


@dataclass
class Measured:
    """Samples of one row (seconds), the baseline measured beside them, and other named figures."""

    samples: list[float]
    baseline: list[float] | None = None
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Row:
    name: str
    what: str
    target: str
    measure: Callable[[int], list[float] | Measured]
    group: str


ROWS: list[Row] = []
_CLEANUPS: list[Callable[[], None]] = []


def row(name: str, what: str, target: str = "") -> Callable[..., Any]:
    """Register ``measure(repeat) -> [seconds, ...] | Measured`` as a benchmark row."""

    def register(measure: Callable[[int], list[float] | Measured]) -> Callable[[int], list[float] | Measured]:
        group = measure.__module__.rsplit(".", 1)[-1]
        ROWS.append(Row(name, what, target, measure, group))
        return measure

    return register


def on_finish(cleanup: Callable[[], None]) -> None:
    """Run ``cleanup`` once the rows are done (a browser or server shared by several rows)."""
    _CLEANUPS.append(cleanup)


def timed(run: Callable[[], Any], repeat: int, setup: Callable[[], Any] | None = None) -> list[float]:
    """``repeat`` wall-clock durations of ``run()``, each after an untimed ``setup()``."""
    samples = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return samples


def paired(run: Callable[[], Any], baseline: Callable[[], Any], repeat: int, *, warm: bool = True) -> Measured:
    """Time ``run`` against ``baseline`` alternately (B, A, A, B, ...) so drift and warm-up hit both alike."""
    if warm:
        run(), baseline()  # first calls pay one-off imports and allocations
    ours: list[float] = []
    theirs: list[float] = []
    for i in range(repeat):
        order = ((baseline, theirs), (run, ours)) if i % 2 == 0 else ((run, ours), (baseline, theirs))
        for call, samples in order:
            start = time.perf_counter()
            call()
            samples.append(time.perf_counter() - start)
    return Measured(ours, baseline=theirs)


def run_rows(rows: list[Row], repeat: int) -> list[dict[str, Any]]:
    results = []
    try:
        for r in rows:
            results.append(_run_row(r, repeat))
            _print_row(results[-1])
    finally:
        while _CLEANUPS:
            with contextlib.suppress(Exception):
                _CLEANUPS.pop()()
    return results


def _run_row(r: Row, repeat: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": r.name, "group": r.group, "what": r.what, "target": r.target}
    started = time.perf_counter()
    try:
        measured = r.measure(repeat)
    except Skip as exc:
        entry["skipped"] = str(exc)
        return entry
    except Exception as exc:  # a broken row is reported, and the others still run
        entry["error"] = f"{type(exc).__name__}: {exc}"
        return entry
    if not isinstance(measured, Measured):
        measured = Measured(list(measured))
    ms = [s * 1000 for s in measured.samples]
    entry.update(median_ms=statistics.median(ms), min_ms=min(ms), max_ms=max(ms), n=len(ms), samples_ms=ms)
    if measured.baseline:
        base = [s * 1000 for s in measured.baseline]
        entry.update(baseline_median_ms=statistics.median(base), baseline_samples_ms=base)
        entry["ratio"] = entry["median_ms"] / entry["baseline_median_ms"]
    if measured.figures:
        entry["figures"] = measured.figures
    entry["row_s"] = time.perf_counter() - started
    return entry


def _print_row(e: dict[str, Any]) -> None:
    if "skipped" in e or "error" in e:
        word = "skipped" if "skipped" in e else "ERROR"
        print(f"{e['name']:<34} {word:>10}   {e.get('skipped') or e.get('error')}")
        return
    base = f"{e['baseline_median_ms']:>10.2f} {e['ratio']:>6.3f}" if "ratio" in e else f"{'':>10} {'':>6}"
    print(f"{e['name']:<34} {e['median_ms']:>10.2f} {base} {e['n']:>4}  {e['target']:<11} {e['what']}")
    for key, value in e.get("figures", {}).items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            shown = str(value)
        else:
            shown = f"{value:,.4g}" if isinstance(value, float) else f"{value:,}"
        print(f"{'':<36}{key}: {shown}")
