"""Real-browser harness: JupyterLab on loopback, Debian's Chromium driven by Playwright, notebook helpers.

Plain functions and one class, so fixtures (``tests/browser/conftest.py``) and scripts (``nbinpaint.bench``)
share them. The steps follow the project's measured notes on testing widgets (JUPYTER-TESTING.md): run
cells through ``app.commands`` (menu clicks get lost), open notebooks with ``?reset``, scope selectors to
the visible notebook panel, wait for state instead of sleeping, delete sessions and stop the server by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("NBINPAINT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SETUP_HINT = "run `bash scripts/setup --browser` (it installs Debian's chromium and the test extras)"
#: The notebook panel the user sees; hidden restored tabs would match bare selectors too.
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
CANVAS = f"{PANEL} .jp-OutputArea-output canvas"


class HarnessError(RuntimeError):
    """Something in the browser harness failed; the message carries what the page or server showed."""


def artifacts_dir() -> Path:
    """Where tests leave screenshots and figures: ``$NBINPAINT_ARTIFACTS`` or ``artifacts/`` (created)."""
    path = Path(os.environ.get("NBINPAINT_ARTIFACTS") or REPO_ROOT / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def missing_front_end(app: str) -> str | None:
    """Why the ``app`` front end (a key of `FRONT_ENDS`) cannot be started here, or None."""
    import importlib.util

    module = FRONT_ENDS[app][0]
    if importlib.util.find_spec(module) is None:
        return f"The Python package {module} is missing: {SETUP_HINT}."
    return None


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not CHROMIUM.exists():
        return f"Chromium is not installed at {CHROMIUM}: {SETUP_HINT}."
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return f"The Python package playwright is missing: {SETUP_HINT}."
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the JupyterLab server ----------------------------------------------------------------------------------


#: The front ends a test can drive: the module that starts the server, its app class, the notebook URL.
FRONT_ENDS = {
    "lab": ("jupyterlab", "LabApp", "lab/tree/{path}?reset"),
    "notebook": ("notebook", "JupyterNotebookApp", "notebooks/{path}"),
}


class LabServer:
    """A JupyterLab (or Notebook 7) server on 127.0.0.1 with a token and its own config, settings,
    workspace and runtime directories.

    ``root`` is the directory it serves (notebooks are copied there by the tests); ``app`` is a key of
    `FRONT_ENDS`. Stop it with `stop`, which deletes every session (their kernels outlive pages) and then
    stops the server by its PID.
    """

    def __init__(self, root: Path, *, app: str = "lab", env: dict[str, str] | None = None) -> None:
        if app not in FRONT_ENDS:
            raise ValueError(f"unknown front end {app!r}: one of {', '.join(FRONT_ENDS)}")
        self.app = app
        self.root = Path(root)
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.base_url = f"http://127.0.0.1:{self.port}/"
        self._home = Path(tempfile.mkdtemp(prefix="nbinpaint-lab-"))
        self._env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self._home / "server.log"

    def start(self, timeout: float = 60.0) -> LabServer:
        settings = self._home / "settings"
        notification = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        notification.parent.mkdir(parents=True)
        notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(self._home / "config"),
            "JUPYTERLAB_SETTINGS_DIR": str(settings),
            "JUPYTERLAB_WORKSPACES_DIR": str(self._home / "workspaces"),
            "JUPYTER_RUNTIME_DIR": str(self._home / "runtime"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
            **self._env,
        }
        module, app_class, _ = FRONT_ENDS[self.app]
        cmd = [
            sys.executable,
            "-m",
            module,
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={self.root}",
            f"--IdentityProvider.token={self.token}",
            f"--{app_class}.expose_app_in_browser=True",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HarnessError(f"JupyterLab exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.api("GET", "api/status")
                return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
        self.stop()
        raise HarnessError(f"JupyterLab did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def notebook_url(self, path: str) -> str:
        """Where this front end opens the notebook at ``path`` (fresh, without restored tabs)."""
        return self.url(FRONT_ENDS[self.app][2].format(path=path))

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}{path}{sep}token={self.token}"

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call the Jupyter REST API; returns the decoded JSON (None for an empty reply)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.base_url}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            raw = reply.read()
        return json.loads(raw) if raw else None

    def delete_sessions(self) -> int:
        """Delete every session (shutting its kernel down); returns how many there were."""
        sessions = self.api("GET", "api/sessions")
        for session in sessions:
            self.api("DELETE", f"api/sessions/{session['id']}")
        return len(sessions)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no server log)"

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                with contextlib.suppress(OSError, urllib.error.URLError):
                    self.delete_sessions()
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=5)
        finally:
            self.proc = None
            shutil.rmtree(self._home, ignore_errors=True)


# --- the browser ----------------------------------------------------------------------------------------------


def launch_chromium(playwright: Any) -> Any:
    """Debian's Chromium, headless, with the flags that keep it quiet and offline."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)


# --- notebooks in the page ------------------------------------------------------------------------------------

_JS_PANEL = """
async (path) => {
  const app = window.jupyterapp;
  await app.restored;
  let panel = null;
  for (let i = 0; i < 600 && panel === null; i++) {
    panel = Array.from(app.shell.widgets('main')).find(w => w.context && w.context.path === path) || null;
    if (panel === null) await new Promise(r => setTimeout(r, 100));
  }
  if (panel === null) throw new Error('no notebook panel for ' + path);
  await panel.context.ready;
  await panel.sessionContext.ready;
  app.shell.activateById(panel.id);
  return panel.id;
}
"""

_JS_RUN_ALL = """
async (path) => {
  const app = window.jupyterapp;
  const panel = Array.from(app.shell.widgets('main')).find(w => w.context && w.context.path === path);
  app.shell.activateById(panel.id);
  await app.commands.execute('notebook:run-all-cells');
  const errors = [];
  for (const cell of panel.content.model.cells) {
    if (cell.type !== 'code') continue;
    for (const out of cell.outputs.toJSON()) {
      if (out.output_type === 'error') errors.push(out.ename + ': ' + out.evalue + '\\n' + out.traceback.join('\\n'));
    }
  }
  return errors;
}
"""

_JS_EXECUTE = """
async ([path, code]) => {
  const app = window.jupyterapp;
  const panel = Array.from(app.shell.widgets('main')).find(w => w.context && w.context.path === path);
  const kernel = panel.sessionContext.session.kernel;
  const future = kernel.requestExecute({code, silent: false, store_history: false});
  let stdout = '', stderr = '', error = null;
  future.onIOPub = (msg) => {
    const c = msg.content;
    switch (msg.header.msg_type) {
      case 'stream': if (c.name === 'stdout') stdout += c.text; else stderr += c.text; break;
      case 'execute_result': stdout += (c.data['text/plain'] || '') + '\\n'; break;
      case 'error': error = c.ename + ': ' + c.evalue + '\\n' + c.traceback.join('\\n'); break;
    }
  };
  await future.done;
  return {stdout, stderr, error};
}
"""


def open_notebook(page: Any, lab: LabServer, path: str, *, timeout: float = 60.0) -> None:
    """Open ``path`` (relative to the server root) fresh (``?reset``) and wait until its kernel is ready."""
    page.set_default_timeout(timeout * 1000)
    page.goto(lab.notebook_url(path))
    page.wait_for_function("() => window.jupyterapp !== undefined", timeout=timeout * 1000)
    page.evaluate(_JS_PANEL, path)


def run_all_cells(page: Any, path: str) -> None:
    """Run every cell with ``notebook:run-all-cells`` and wait for the last; fail on any error output."""
    errors = page.evaluate(_JS_RUN_ALL, path)
    if errors:
        raise HarnessError(f"{path} raised while running all cells:\n" + "\n\n".join(errors))


def output_text(page: Any) -> str:
    """Text of the visible notebook's outputs (what shows when a widget did not render)."""
    return "\n---\n".join(page.locator(f"{PANEL} .jp-OutputArea-output").all_inner_texts())


def wait_for_widget(page: Any, selector: str = CANVAS, *, timeout: float = 60.0) -> Any:
    """Wait until ``selector`` is visible in the visible notebook; on timeout, show the outputs' text."""
    locator = page.locator(selector).first
    try:
        locator.wait_for(state="visible", timeout=timeout * 1000)
    except Exception as exc:
        raise HarnessError(
            f"{selector!r} did not appear within {timeout:.0f} s (no widget manager, or the cell failed?). "
            f"Outputs:\n{output_text(page)}"
        ) from exc
    locator.scroll_into_view_if_needed()
    wait_until_still(locator)
    return locator


def wait_until_still(locator: Any, *, timeout: float = 5.0) -> dict[str, float]:
    """Wait until ``locator`` stops moving (JupyterLab scrolls to the active cell after running cells):
    mouse input aimed at a moving target lands elsewhere. Returns its bounding box."""
    deadline = time.monotonic() + timeout
    box = locator.bounding_box()
    while time.monotonic() < deadline:
        time.sleep(0.15)
        now = locator.bounding_box()
        if now == box:
            return now
        box = now
    raise HarnessError(f"{locator} kept moving for {timeout:.0f} s (last box {box})")


def run_in_kernel(page: Any, path: str, code: str) -> str:
    """Execute ``code`` in the notebook's kernel and return its stdout.

    It goes through the page's own kernel connection, after the widget messages the page sent before it.
    But ipykernel 7 also dispatches widget messages that arrive *while* code runs, between its top-level
    statements: read related values in one statement (a function call), or they may mix two moments.
    """
    reply = page.evaluate(_JS_EXECUTE, [path, code])
    if reply["error"]:
        raise HarnessError(f"kernel code failed:\n{reply['error']}\nstderr:\n{reply['stderr']}")
    return reply["stdout"]


def wait_for_kernel_json(
    page: Any, path: str, code: str, until: Any, *, timeout: float = 15.0, interval: float = 0.1
) -> Any:
    """Run ``code`` (which prints one JSON value) in the kernel until ``until(value)`` holds; return the
    last value either way, for the test to assert on.

    Browser input reaches the kernel asynchronously (Chromium delivers pointer events on its own
    schedule; ``page.mouse`` returns before the page has handled them), so checks that follow user input
    wait for the state they expect instead of sleeping a fixed time.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = json.loads(run_in_kernel(page, path, code))
        if until(value) or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def copy_notebook(source: Path, root: Path, name: str | None = None, parameters: str | None = None) -> str:
    """Copy a notebook into the server root, replacing its ``parameters``-tagged cell when given.

    Returns the path to open, relative to ``root``.
    """
    import nbformat

    nb = nbformat.read(source, as_version=4)
    if parameters is not None:
        tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        if not tagged:
            raise HarnessError(f"{source} has no cell tagged 'parameters'")
        tagged[0].source = parameters
    target = root / (name or source.name)
    nbformat.write(nb, target)
    return target.name


_JS_OVERLAY_LATENCY = """
async ({ax, ay, bx, by, settle, timeout}) => {
  // One synthetic drag A -> B on the visible canvas; returns ms from the mouse-up to the first change of the
  // canvas pixel under B (null when it never changed). The move to B goes out in the same tick as the
  // mouse-up, so nothing can paint B before the release, however late a loaded kernel handles the down.
  const el = document.querySelector(arguments_selector);
  const rect = el.getBoundingClientRect();
  const fire = (type, x, y) => el.dispatchEvent(new MouseEvent(type, {
    clientX: rect.left + x * rect.width / el.width, clientY: rect.top + y * rect.height / el.height,
    bubbles: true, button: 0}));
  const ctx = el.getContext('2d');
  const pixel = () => Array.from(ctx.getImageData(Math.floor(bx), Math.floor(by), 1, 1).data);
  fire('mousedown', ax, ay);
  await new Promise(r => setTimeout(r, settle));
  const before = pixel();
  const t0 = performance.now();
  fire('mousemove', bx, by);
  fire('mouseup', bx, by);
  while (performance.now() - t0 < timeout) {
    await new Promise(r => setTimeout(r, 1));
    const now = pixel();
    if (now.some((v, i) => Math.abs(v - before[i]) > 8)) return performance.now() - t0;
  }
  return null;
}
"""


def overlay_latency_ms(
    page: Any, points: list[tuple[float, float, float, float]], *, settle_ms: int = 400, timeout_ms: int = 5000
) -> list[float | None]:
    """Mouse-up to updated overlay, in the browser: one sample per ``(ax, ay, bx, by)`` drag, in canvas
    pixels. Each drag must end on a spot no earlier drag covered (the pixel has to change)."""
    js = _JS_OVERLAY_LATENCY.replace("arguments_selector", json.dumps(CANVAS))
    return [
        page.evaluate(js, {"ax": ax, "ay": ay, "bx": bx, "by": by, "settle": settle_ms, "timeout": timeout_ms})
        for ax, ay, bx, by in points
    ]
