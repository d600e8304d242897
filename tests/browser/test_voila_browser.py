"""The studio as a Voilà app against a twin workshop server, in headless Chromium: draw, generate, screenshot.

A Ray Serve twin server runs in this process on 127.0.0.1 (2 CPUs) and Voilà serves the app notebook
(``nbinpaint/app/studio.ipynb``) with ``NBINPAINT_SERVER``/``NBINPAINT_TOKEN`` set, as ``nbinpaint app``
does. The page's kernel only holds widgets; the run happens on the server, which the test asks afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbinpaint.app import IMAGE_ENV, MODEL_ENV, STEPS_ENV, voila_command
from nbinpaint.remote import RemoteManager
from nbinpaint.serve import ServerConfig, local_server
from tests.browser.harness import REPO_ROOT, HarnessError, artifacts_dir, free_port

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    # Ray Serve 2.60 declares its config with pydantic-1-style Field arguments: warnings from its import.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*"),
    pytest.mark.filterwarnings("ignore:Using extra keyword arguments on `Field`"),
]

SD = "runwayml/stable-diffusion-inpainting"
TOKEN = "voila-test-token"
APP_TOKEN = "voila-page-token"


class VoilaServer:
    """Voilà serving the app notebook on 127.0.0.1 with its own Jupyter dirs; stopped by PID."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/?token={APP_TOKEN}"
        self._home = Path(tempfile.mkdtemp(prefix="nbinpaint-voila-"))
        self._env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(self._home / "config"),
            "JUPYTER_RUNTIME_DIR": str(self._home / "runtime"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
            "NBINPAINT_OUTPUT": str(self._home / "output"),
            **env,
        }
        self.log_path = self._home / "voila.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> VoilaServer:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                voila_command(port=self.port, token=APP_TOKEN), env=self._env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HarnessError(f"Voilà exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:  # any HTTP answer will do: the page itself would start a kernel
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/voila/static/", timeout=5)
                return self
            except urllib.error.HTTPError:
                return self
            except OSError:
                time.sleep(0.3)
        log = self.log_tail()
        self.stop()
        raise HarnessError(f"Voilà did not answer within {timeout:.0f} s:\n{log}")

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no Voilà log)"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None
        shutil.rmtree(self._home, ignore_errors=True)


@pytest.fixture(scope="module")
def workshop(twins_dir) -> Iterator[str]:
    """A twin workshop server's URL."""
    config = ServerConfig(models=(SD,), token=TOKEN, twins=True, twins_dir=str(twins_dir), port=free_port())
    with local_server(config, num_cpus=2) as url:
        yield url


@pytest.fixture
def voila(workshop: str) -> Iterator[VoilaServer]:
    env = {"NBINPAINT_SERVER": workshop, "NBINPAINT_TOKEN": TOKEN, MODEL_ENV: SD, STEPS_ENV: "3", IMAGE_ENV: "chelsea"}
    server = VoilaServer(env).start()
    try:
        yield server
    finally:
        server.stop()


_PIXEL = """
([x, y]) => {
  const canvas = document.querySelector('canvas');
  const context = canvas.getContext('2d');
  return Array.from(context.getImageData(Math.round(x), Math.round(y), 1, 1).data);
}
"""


def wait_until(condition: Any, timeout: float, what: str, log: Any) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"{what} within {timeout:.0f} s. Voilà log:\n{log()}")


def test_voila_app_draws_generates_on_the_server_and_shows_the_result(browser, workshop, voila):
    context = browser.new_context(viewport={"width": 1400, "height": 1300})
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    try:
        page.goto(voila.url, timeout=120_000)
        canvas = page.locator("canvas").first
        canvas.wait_for(state="visible", timeout=180_000)
        wait_until(lambda: canvas.bounding_box(), 30, "the canvas never got a size", voila.log_tail)
        box = canvas.bounding_box()
        # A stroke along the top of the picture; the overlay is drawn from the kernel's mask, so a changed
        # pixel on the stroke shows that the kernel received it.
        a = (0.15 * box["width"], 0.12 * box["height"])
        b = (0.55 * box["width"], 0.12 * box["height"])
        middle = ((a[0] + b[0]) / 2, a[1])
        before = page.evaluate(_PIXEL, list(middle))
        page.mouse.move(box["x"] + a[0], box["y"] + a[1])
        page.mouse.down()
        page.mouse.move(box["x"] + b[0], box["y"] + b[1], steps=20)
        page.mouse.up()
        wait_until(
            lambda: max(abs(p - q) for p, q in zip(page.evaluate(_PIXEL, list(middle)), before, strict=True)) > 8,
            30,
            "the stroke never showed on the canvas (the kernel's mask did not change)",
            voila.log_tail,
        )

        page.get_by_role("button", name="Generate").click()
        result = page.locator("img.nbinpaint-grid-zoom").first
        try:
            result.wait_for(state="visible", timeout=120_000)
        except Exception as error:
            shot = artifacts_dir() / "voila-studio-failed.png"
            page.screenshot(path=str(shot), full_page=True)
            raise AssertionError(
                f"no result image appeared (screenshot {shot}):\n" + "\n".join(console[-30:]) + voila.log_tail()
            ) from error
        assert result.evaluate("img => img.naturalWidth") > 0
        # Every error the panel and canvas show starts with ⚠; so does the twin-mode banner, which is no error.
        errors = page.locator("text=⚠").filter(has_not_text="Twin mode:")
        assert errors.count() == 0, f"the panel shows an error: {errors.first.inner_text()}"
        shot = artifacts_dir() / "voila-studio.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")
    finally:
        context.close()

    status = RemoteManager(workshop, TOKEN, client_id="instructor").server_status()
    assert sum(replica["jobs"] for replica in status.replicas) >= 1, "the generate ran on the workshop server"
