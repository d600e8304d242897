"""The docs name the tests that check their promises: every test they name exists, and every row names one.

docs/bad-input.md lists each mistake and fault with the test that checks it; the README's threat models list
what a participant and a shared PNG cannot do, each with its test. A renamed or deleted test would leave a
promise unchecked while the docs still claim it is: these tests fail then.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# `tests/test_x.py::test_name`, or `::test_name` / `test_name` (the file of the id before it in that cell, or
# the table's own file), or a whole file `tests/test_x.py`
NODE = re.compile(r"`((?:tests/[\w/]+\.py)?(?:::)?(test_\w+))`|`(tests/[\w/]+\.py)`")


@cache
def defined(path: str) -> frozenset[str]:
    """The test functions a test file defines (any depth: module level or in a class)."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    return frozenset(node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)))


def cited(cell: str, default_file: str | None = None) -> list[tuple[str, str | None]]:
    """(file, test name or None for a whole file) for every test a table cell names."""
    found: list[tuple[str, str | None]] = []
    current = default_file
    for match in NODE.finditer(cell):
        node, name, whole_file = match.groups()
        if whole_file:
            current = whole_file
            found.append((whole_file, None))
            continue
        path = (node.split("::")[0] if "::" in node else "") or current
        assert path, f"{match.group(0)} names no file and no earlier id in its cell does"
        current = path
        found.append((path, name))
    return found


def table_rows(text: str) -> list[list[str]]:
    """The cells of every table row (header and separator rows left out)."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("| ") or line.startswith("| ---"):
            continue
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if cells and cells[0] in ("Case", "A participant cannot…", "A shared PNG cannot…", "Guide section"):
            continue
        rows.append(cells)
    return rows


def section(text: str, start: str, end: str) -> str:
    return text[text.index(start) : text.index(end, text.index(start))]


BAD_INPUT = (ROOT / "docs/bad-input.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")
THREATS = {
    "workshop": (section(README, "### What a participant can and cannot do", "### Instructor"), None),
    "shared PNG": (section(README, "| A shared PNG cannot…", "It **can** name"), None),
}


def check_cited(where: str, found: list[tuple[str, str | None]]) -> None:
    for path, name in found:
        assert (ROOT / path).is_file(), f"{where} names {path}, which does not exist"
        if name is not None:
            assert name in defined(path), f"{where} names {path}::{name}, which {path} does not define"


def test_every_bad_input_row_names_tests_that_exist():
    rows = table_rows(BAD_INPUT)
    assert len(rows) >= 80, f"only {len(rows)} rows in docs/bad-input.md"
    unchecked = []
    for cells in rows:
        assert len(cells) == 3, f"a row of docs/bad-input.md has {len(cells)} cells, not 3: {cells[0]!r}"
        found = cited(cells[2])
        if not found:
            unchecked.append(cells[0])
        check_cited(f"docs/bad-input.md row {cells[0]!r}", found)
    assert not unchecked, f"rows that name no test: {unchecked}"


@pytest.mark.parametrize("model", list(THREATS))
def test_every_threat_model_line_names_tests_that_exist(model):
    text, default_file = THREATS[model]
    rows = table_rows(text)
    assert len(rows) >= 4, f"the {model} threat model has only {len(rows)} lines"
    for cells in rows:
        # Ids without a file in the workshop table are in tests/test_serve_security.py (the table says so).
        found = cited(cells[-1], "tests/test_serve_security.py" if model == "workshop" else default_file)
        assert found, f"the {model} threat model's line {cells[0]!r} names no test"
        check_cited(f"the {model} threat model's line {cells[0]!r}", found)
