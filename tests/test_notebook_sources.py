"""The guided notebooks as sources: each ``.py`` (jupytext percent format) pairs with its ``.ipynb``, and
every markdown cell renders as its author meant.

Markdown is rendered with markdown-it-py's CommonMark parser plus GFM tables, as JupyterLab's renderer
reads it. Two slips are caught: a paragraph indented by four or more spaces, which CommonMark turns into a
code block (fenced code is fine), and a relative link to a notebook or file that does not exist.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import jupytext
import nbformat
import pytest
from jupytext.config import load_jupytext_config
from markdown_it import MarkdownIt
from markdown_it.token import Token

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
# How a .py reads: notebooks/jupytext.toml (``# %pip`` in the .py is ``%pip`` in the notebook).
JUPYTEXT = load_jupytext_config(str(NOTEBOOKS))
NAMES = sorted(path.stem for path in NOTEBOOKS.glob("*.ipynb"))
# A notebook's source is named like the notebook: two digits, a dash, a name (execute.py is a script).
SOURCE_NAME = re.compile(r"\d\d-[\w-]+\.py")

MARKDOWN = MarkdownIt("commonmark").enable("table")


def markdown_cells(name: str) -> list[str]:
    """The markdown cells of a notebook as the reader sees them: from the ``.ipynb``."""
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    return [cell.source for cell in notebook.cells if cell.cell_type == "markdown"]


def excerpt(text: str, width: int = 80) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def relative_targets(tokens: list[Token]) -> list[str]:
    """Every link and image target in the rendered tokens that points into this repository."""
    targets = []
    for token in tokens:
        for child in token.children or []:
            target = child.attrs.get("href") if child.type == "link_open" else child.attrs.get("src")
            if not isinstance(target, str):
                continue
            parts = urlsplit(target)
            if parts.scheme or parts.netloc or not parts.path:  # a URL, or an anchor within the page
                continue
            targets.append(unquote(parts.path))
    return targets


def broken_links(text: str, folder: Path) -> list[str]:
    return [target for target in relative_targets(MARKDOWN.parse(text)) if not (folder / target).exists()]


def test_the_notebooks_are_found():
    assert len(NAMES) >= 16, NAMES


@pytest.mark.parametrize("name", NAMES)
def test_markdown_renders_without_accidental_code_blocks(name):
    accidental = []
    for source in markdown_cells(name):
        for token in MARKDOWN.parse(source):
            if token.type == "code_block":  # indented by 4+ spaces; ``fence`` (```) is deliberate
                accidental.append(excerpt(token.content))
    assert not accidental, f"{name}: indented text renders as code: {accidental}"


@pytest.mark.parametrize("name", NAMES)
def test_markdown_relative_links_resolve(name):
    broken = [target for source in markdown_cells(name) for target in broken_links(source, NOTEBOOKS)]
    assert not broken, f"{name}: links to missing files: {broken}"


def test_readme_links_to_every_notebook():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert not broken_links(readme, REPO)
    linked = {Path(target).stem for target in relative_targets(MARKDOWN.parse(readme)) if target.endswith(".ipynb")}
    assert linked >= set(NAMES) - {"00-index"}, sorted(set(NAMES) - linked)


def test_the_index_links_to_every_notebook():
    linked = {
        Path(target).stem
        for source in markdown_cells("00-index")
        for target in relative_targets(MARKDOWN.parse(source))
        if target.endswith(".ipynb")
    }
    assert linked == set(NAMES) - {"00-index"}, sorted(linked ^ (set(NAMES) - {"00-index"}))


def test_the_checks_catch_what_they_are_for():
    """An indented paragraph becomes a code block and a link to a missing notebook is broken; fences are fine."""
    assert [t.type for t in MARKDOWN.parse("## Title\n\n            Indented text.\n")][-1] == "code_block"
    assert "code_block" not in {t.type for t in MARKDOWN.parse("Text\n\n```python\nx = 1\n```\n")}
    assert broken_links("[next](99-missing.ipynb) [ok](00-index.ipynb#top) [web](https://x.org)", NOTEBOOKS) == [
        "99-missing.ipynb"
    ]


# --------------------------------------------------------------------------------------------------------
# Pairs: the .py is the source of every cell; the .ipynb holds the same cells plus the stored outputs.
# --------------------------------------------------------------------------------------------------------


def test_every_notebook_has_a_source_and_every_source_a_notebook():
    sources = {path.stem for path in NOTEBOOKS.glob("*.py") if SOURCE_NAME.fullmatch(path.name)}
    assert sources == set(NAMES), (
        f"without a .py source: {sorted(set(NAMES) - sources)} (`jupytext --sync notebooks/NAME.ipynb` writes it); "
        f"without an .ipynb: {sorted(sources - set(NAMES))} (`python notebooks/execute.py NAME` writes it)"
    )


def cells(path: Path) -> list[tuple[str, str, list[str]]]:
    notebook = jupytext.read(path, config=JUPYTEXT)
    return [(cell.cell_type, cell.source, cell.metadata.get("tags", [])) for cell in notebook.cells]


@pytest.mark.parametrize("name", NAMES)
def test_source_and_notebook_are_in_sync(name):
    source = NOTEBOOKS / f"{name}.py"
    if not source.is_file():
        pytest.fail(f"{name}.py is missing")
    in_source, in_notebook = cells(source), cells(NOTEBOOKS / f"{name}.ipynb")
    for index, (a, b) in enumerate(zip(in_source, in_notebook, strict=False)):
        assert a == b, f"{name}: cell {index} differs between .py and .ipynb (python notebooks/execute.py {name})"
    assert len(in_source) == len(in_notebook), f"{name}: {len(in_source)} cells in .py, {len(in_notebook)} in .ipynb"


# --------------------------------------------------------------------------------------------------------
# Setup: one library call in each lesson's first code cell.
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [name for name in NAMES if name != "00-index"])
def test_each_lesson_sets_up_with_one_call(name):
    first_code = next(
        cell for cell in jupytext.read(NOTEBOOKS / f"{name}.py", config=JUPYTEXT).cells if cell.cell_type == "code"
    )
    assert "nbinpaint.notebook_setup()" in first_code.source, first_code.source
    assert len(first_code.source.splitlines()) <= 12, "setup belongs in nbinpaint.notebook_setup(), not in the cell"


def test_notebook_setup_prints_one_line_and_returns_the_choice(capsys):
    import torch

    import nbinpaint

    setup = nbinpaint.notebook_setup(quiet=False)  # twin mode is on in tests (conftest); quiet would touch logging
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1, printed
    assert printed == setup.summary() + "\n"
    assert setup.twins and "twin mode: on" in printed
    assert setup.device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert setup.dtype == (torch.float16 if setup.device == "cuda" else torch.float32)
    assert f"device: {setup.device}, dtype: {setup.dtype}," in printed
    assert setup.steps == (50 if setup.device == "cuda" else 10)
