"""Benchmarks of what nbinpaint adds on top of diffusers, and of the latencies a user feels.

``python -m nbinpaint.bench [--repeat N] [--json PATH] [--only NAME ...] [--no-browser] [--quick]``

Each row is a plain function registered with `@row`: it takes the repeat count and returns either a list of
durations in seconds (one per run, setup excluded) or a `Measured` with the same list, an optional baseline
list measured in the same run (diffusers' bare call, say), and named figures (bytes, counts). The runner prints
medians, the ratio to the baseline where there is one, and writes every sample as JSON so later runs compare.
Rows live by topic: `masks` (canvas paths), `pipelines` (manager, requests, previews, scaling), `studio`.

Timings are informative: no test asserts on them; targets are printed beside the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ROWS", "Measured", "Row", "Skip", "main", "row", "run_rows"]


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


# --- runner -------------------------------------------------------------------------------------------------


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


def _load_rows() -> None:
    # Importing a topic module registers its rows; the remote rows need the serve extra.
    from nbinpaint.bench import masks, pipelines, studio  # noqa: F401

    with contextlib.suppress(ImportError):
        from nbinpaint.bench import remote  # noqa: F401


def _quiet() -> None:
    # Loading bars and "could not reach the Hub" lines from every twin load would bury the table.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    import logging

    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    _quiet()
    _load_rows()
    parser = argparse.ArgumentParser(prog="python -m nbinpaint.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=21, help="runs per fast row (default 21; slow rows cap it)")
    parser.add_argument("--json", type=Path, help="write the results (all samples) to this JSON file")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run just these rows (or groups)")
    parser.add_argument("--no-browser", action="store_true", help="leave out the rows that start Chromium")
    args = parser.parse_args(argv)
    rows = [r for r in ROWS if args.only is None or r.name in args.only or r.group in args.only]
    if args.no_browser:
        rows = [r for r in rows if not r.name.startswith("browser_")]
    unknown = set(args.only or ()) - {r.name for r in ROWS} - {r.group for r in ROWS}
    if unknown:
        parser.error(f"unknown rows {sorted(unknown)}; rows: {', '.join(r.name for r in ROWS)}")
    import torch

    started = time.perf_counter()
    print(f"nbinpaint bench: torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}")
    print(f"{'row':<34} {'median ms':>10} {'base ms':>10} {'ratio':>6} {'n':>4}  target")
    results = run_rows(rows, args.repeat)
    total = time.perf_counter() - started
    print(f"{len(results)} rows in {total:.1f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "repeat": args.repeat,
            "total_s": total,
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        args.json.write_text(json.dumps({"meta": meta, "rows": results}, indent=1))
        print(f"wrote {args.json}")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
