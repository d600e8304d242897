"""Refresh the guided notebooks' stored outputs: each NAME.py's cells, run in twin mode, stored in NAME.ipynb.

    python notebooks/execute.py                # every notebook
    python notebooks/execute.py 07 12          # only the notebooks whose names start with these prefixes
    python notebooks/execute.py --sync-only 07 # copy the .py's cells into the .ipynb, keep its outputs, run nothing

Each notebook is a pair (see jupytext.toml here): NAME.py in jupytext's percent format is the source you edit
and review, NAME.ipynb holds the same cells with the outputs that nbval compares (`bash scripts/test`).
JupyterLab with jupytext keeps the pair in step as you edit either. This script runs the .py's cells top to
bottom in a fresh kernel, offline in twin mode, and stores the outputs in the .ipynb the way nbval reads
them: without images and widget views (nbval does not compare those, twin pictures are noise, and a notebook
full of noise PNGs would weigh megabytes in git). A cell whose output is volatile (progress bars, timings,
widgets) carries the tag ``nbval-ignore-output`` in the .py: ``# %% tags=["nbval-ignore-output"]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from jupytext.cli import jupytext as jupytext_cli
from jupytext.config import load_jupytext_config

HERE = Path(__file__).resolve().parent
CONFIG = load_jupytext_config(str(HERE))  # jupytext.toml: how a .py reads (magics are comments)
# Outputs of these MIME types are dropped from stored notebooks (see the module docstring).
DROPPED_MIME = ("image/png", "image/jpeg", "application/vnd.jupyter.widget-view+json")
# Metadata a new notebook gets; an existing .ipynb keeps its own (the .py carries none).
NEW_METADATA = {
    "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
    "accelerator": "GPU",  # Colab: open with a GPU runtime
}


def names(prefixes: list[str]) -> list[str]:
    """The notebooks (by their .py sources) whose names start with one of ``prefixes``; all when empty."""
    sources = sorted(path.stem for path in HERE.glob("[0-9][0-9]-*.py"))
    return [name for name in sources if not prefixes or any(name.startswith(prefix) for prefix in prefixes)]


def cell_sources(notebook: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in notebook.cells]


def from_source(name: str) -> nbformat.NotebookNode:
    """NAME.py's cells with NAME.ipynb's notebook metadata; refuses to drop edits made to the .ipynb alone."""
    source, stored = HERE / f"{name}.py", HERE / f"{name}.ipynb"
    notebook = jupytext.read(source, config=CONFIG)
    if not stored.is_file():
        notebook.metadata = nbformat.from_dict(NEW_METADATA)
        return notebook
    previous = nbformat.read(stored, as_version=4)
    if stored.stat().st_mtime > source.stat().st_mtime and cell_sources(previous) != cell_sources(notebook):
        sys.exit(
            f"{name}.ipynb was edited after {name}.py and their cells differ. Take the .ipynb's cells into the "
            f".py with `jupytext --sync notebooks/{name}.ipynb`, or discard them with `touch notebooks/{name}.py`, "
            "then run this again."
        )
    notebook.metadata = previous.metadata
    notebook.metadata.pop("widgets", None)
    return notebook


def strip(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop images and widget views from stored outputs, and per-run metadata (see the module docstring)."""
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
        for output in cell.get("outputs", []):
            data = output.get("data")
            if data is not None:
                for mime in DROPPED_MIME:
                    data.pop(mime, None)
                output.get("metadata", {}).clear()
    return notebook


def execute(name: str) -> float:
    """Run NAME.py's cells in a fresh kernel (twin mode), store them with their outputs; returns seconds."""
    from nbclient import NotebookClient

    notebook = from_source(name)
    started = time.perf_counter()
    NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    took = time.perf_counter() - started
    nbformat.write(strip(notebook), HERE / f"{name}.ipynb")
    # Rewrite the .py from the new .ipynb (same cells): the pair's timestamps agree, so jupytext in
    # JupyterLab does not take the .py for outdated.
    jupytext_cli(["--sync", "--quiet", str(HERE / f"{name}.ipynb")])
    return took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sync-only", action="store_true", help="update each .ipynb's cells from its .py; run nothing")
    parser.add_argument("only", nargs="*", help="notebook name prefixes, e.g. 07 12 (default: all)")
    args = parser.parse_args(argv)
    chosen = names(args.only)
    if not chosen:
        parser.error(f"no notebook source in {HERE} starts with {' or '.join(args.only)}")
    if args.sync_only:
        for name in chosen:
            from_source(name)  # stops if the .ipynb holds edits the .py lacks
            jupytext_cli(["--sync", "--quiet", str(HERE / f"{name}.py")])  # outputs of unchanged cells are kept
            print(f"synced {name}")
        return 0
    from nbinpaint import twins

    os.environ.update(NBINPAINT_TWINS="1", HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(twins.install(quiet=True)))
    for name in chosen:
        took = execute(name)
        print(f"executed {name} in {took:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
