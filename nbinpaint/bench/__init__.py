"""Benchmarks of what nbinpaint adds on top of diffusers, and of the latencies a user feels.

``python -m nbinpaint.bench [--repeat N] [--json PATH] [--only NAME ...] [--no-browser] [--quick]``

Each row is a plain function registered with `@row`: it takes the repeat count and returns either a list of
durations in seconds (one per run, setup excluded) or a `Measured` with the same list, an optional baseline
list measured in the same run (diffusers' bare call, say), and named figures (bytes, counts). The runner prints
medians, the ratio to the baseline where there is one, and writes every sample as JSON so later runs compare.
Rows live by topic: `masks` (canvas paths), `pipelines` (manager, requests, previews, scaling), `seams`
(seam repair's ΔE), `studio`.

Timings are informative: no test asserts on them; targets are printed beside the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path

from nbinpaint.bench.common import ROWS, Measured, Row, Skip, on_finish, paired, row, run_rows, timed

__all__ = ["ROWS", "Measured", "Row", "Skip", "main", "on_finish", "paired", "row", "run_rows", "timed"]


def _load_rows() -> None:
    # Importing a topic module registers its rows; the remote rows need the serve extra.
    from nbinpaint.bench import masks, pipelines, seams, studio  # noqa: F401

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
