"""Fixtures for the real-browser tests: one JupyterLab server and one Chromium per session, a page per test.

Missing Chromium or Playwright fails these tests (with the setup command to run): they are required
tests, not optional ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.harness import LabServer, artifacts_dir, launch_chromium, missing_browser, missing_front_end

NOTEBOOKS = Path(__file__).parent / "notebooks"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium under Playwright (fails, never skips, when it is not installed)."""
    reason = missing_browser()
    if reason:
        pytest.fail(reason, pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def lab_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory the server serves; tests copy the notebooks they open into it."""
    return tmp_path_factory.mktemp("lab-root")


@pytest.fixture(scope="session")
def lab(browser: Any, lab_root: Path) -> Iterator[LabServer]:
    """A JupyterLab server on 127.0.0.1 (isolated dirs, token, app exposed as ``window.jupyterapp``)."""
    server = LabServer(lab_root).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def notebook7(browser: Any, lab_root: Path) -> Iterator[LabServer]:
    """A Jupyter Notebook 7 server, set up like `lab` (fails when the notebook package is missing)."""
    reason = missing_front_end("notebook")
    if reason:
        pytest.fail(reason, pytrace=False)
    server = LabServer(lab_root, app="notebook").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context and page; afterwards its sessions are deleted (kernels outlive pages)."""
    context = browser.new_context(viewport={"width": 1280, "height": 1100})
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))
    try:
        yield page
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            shot = artifacts_dir() / f"failed-{request.node.name}.png".replace("/", "_")
            try:
                page.screenshot(path=str(shot), full_page=True)
            except Exception as exc:  # a crashed page must not hide the test's own failure
                print(f"could not save {shot}: {exc}")
            print("browser console:\n" + "\n".join(console[-50:]))
            for name in ("lab", "notebook7"):
                if name in request.fixturenames:
                    print(f"{name} server log:\n" + request.getfixturevalue(name).log_tail())
        context.close()
        for name in ("lab", "notebook7"):  # whichever servers this test used
            if name in request.fixturenames:
                request.getfixturevalue(name).delete_sessions()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # Lets the page fixture know whether the test failed, to save a screenshot and the logs.
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
