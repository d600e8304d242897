"""The studio as a web app for participants who do not code: ``nbinpaint app`` serves `NOTEBOOK` with Voilà.

The notebook calls `open_studio`, which connects the kernel to the workshop server (``NBINPAINT_SERVER``,
``NBINPAINT_TOKEN``) and shows the studio; Voilà shows only the widgets, never the code. The app's kernel
holds no pipeline: generating runs on the server, like every participant's notebook.
"""

from __future__ import annotations

import argparse
import html
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["IMAGE_ENV", "MODEL_ENV", "NOTEBOOK", "STEPS_ENV", "main", "open_studio", "voila_command"]

NOTEBOOK = Path(__file__).with_name("studio.ipynb")
"""The app notebook (inside the package, so notebook test runs over ``notebooks/`` do not pick it up)."""
IMAGE_ENV = "NBINPAINT_APP_IMAGE"
"""The picture the app opens on: a file path or a sample name (default: the chelsea sample)."""
MODEL_ENV = "NBINPAINT_APP_MODEL"
"""The model selected at start (default: the server's first preloaded model)."""
STEPS_ENV = "NBINPAINT_APP_STEPS"
"""The steps selected at start (default: the panel's)."""


def open_studio(
    server: str | None = None,
    token: str | None = None,
    *,
    image: Any = None,
    model: str | None = None,
    steps: int | None = None,
) -> Any:
    """The app's page: a studio whose runs go to the workshop server, or a message saying what to fix.

    Arguments default to the ``NBINPAINT_*`` environment variables `main` sets. The panel's status line shows
    the request's place in the server's queue while it waits.
    """
    import ipywidgets as widgets

    from nbinpaint import session
    from nbinpaint.errors import NbinpaintError

    try:
        manager = session.connect(server, token)
    except NbinpaintError as error:
        return widgets.HTML(
            "<h3>The studio cannot reach the workshop server</h3>"
            f"<p>{html.escape(str(error))}</p><p>Ask your instructor, then reload this page.</p>"
        )
    from nbinpaint.widgets.studio import studio

    values: dict[str, Any] = {}
    model = model or os.environ.get(MODEL_ENV) or next(iter(manager.info.get("models", [])), None)
    if model:
        values["model"] = model
    steps = steps or (int(os.environ[STEPS_ENV]) if os.environ.get(STEPS_ENV) else None)
    if steps:
        values["steps"] = steps
    app = studio(image or os.environ.get(IMAGE_ENV) or None, **values)

    def show_place(position: int) -> None:
        ahead = "you are next" if position == 0 else f"{position} request{'s' if position > 1 else ''} before yours"
        app.panel.say(f"Waiting on the workshop server: {ahead}…")

    manager.on_queue(show_place)
    return app


def voila_command(*, host: str = "127.0.0.1", port: int = 8866, token: str | None = None) -> list[str]:
    """The command that serves the app notebook with Voilà (no browser opened)."""
    command = [sys.executable, "-m", "voila", str(NOTEBOOK), "--no-browser", f"--port={port}", f"--Voila.ip={host}"]
    if token:
        command.append(f"--Voila.token={token}")
    return command


def main(argv: list[str] | None = None) -> int:
    """``nbinpaint app``: serve the studio app with Voilà, connected to a workshop server."""
    parser = argparse.ArgumentParser(
        prog="nbinpaint app",
        description="The nbinpaint studio as a Voilà web app, running its requests on a workshop server.",
    )
    parser.add_argument("--server", help="the workshop server's URL (default: $NBINPAINT_SERVER)")
    parser.add_argument("--token", help="the workshop server's token (default: $NBINPAINT_TOKEN)")
    parser.add_argument("--host", default="127.0.0.1", help="address the app listens on (default: this machine)")
    parser.add_argument("--port", type=int, default=8866)
    parser.add_argument("--app-token", help="a token the app's own page asks for (Voilà's --token)")
    parser.add_argument("--image", help="picture to open: a path or a sample name (default: chelsea)")
    parser.add_argument("--model", help="model selected at start (default: the server's first)")
    parser.add_argument("--steps", type=int, help="steps selected at start")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    settings = {
        "NBINPAINT_SERVER": args.server,
        "NBINPAINT_TOKEN": args.token,
        IMAGE_ENV: str(Path(args.image).resolve()) if args.image and Path(args.image).exists() else args.image,
        MODEL_ENV: args.model,
        STEPS_ENV: None if args.steps is None else str(args.steps),
    }
    env.update({name: value for name, value in settings.items() if value})
    if not env.get("NBINPAINT_SERVER"):
        parser.error("no workshop server: pass --server URL or set NBINPAINT_SERVER")
    # Results are autosaved where the command runs, not beside the notebook inside the installed package.
    env.setdefault("NBINPAINT_OUTPUT", str(Path("nbinpaint-output").resolve()))
    print(f"nbinpaint app: http://{args.host}:{args.port}/ (studio on {env['NBINPAINT_SERVER']}); Ctrl-C stops it")
    try:
        return subprocess.call(voila_command(host=args.host, port=args.port, token=args.app_token), env=env)
    except KeyboardInterrupt:
        return 0
