"""Where the tests find the diffusers inpainting guide's markdown, on any machine.

1. ``NBINPAINT_GUIDE``: a path set by whoever runs the tests (CI sets it to the copy it keeps beside the
   repository). Set but missing is an error: the runner asked for this file.
2. Otherwise a copy cached under the user's cache folder, fetched once from the diffusers repository at the
   tag of the installed diffusers (the guide that matches the code the tests run).
3. Otherwise, when that fetch fails (offline, a firewall), the guide tests skip with a one-line reason.

The fetched page is the guide the tests run as code: it comes only from diffusers' own repository, at the
installed version's tag, over HTTPS.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from functools import cache
from pathlib import Path

ENV = "NBINPAINT_GUIDE"
SOURCE = "https://raw.githubusercontent.com/huggingface/diffusers/v{version}/docs/source/en/using-diffusers/inpaint.md"
FETCH_TIMEOUT_S = 5.0
MAX_BYTES = 2 * 2**20  # the guide is about 40 KB; anything far larger is not it


class GuideMissing(RuntimeError):
    """``NBINPAINT_GUIDE`` names a file that does not exist."""


def cache_path(version: str) -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "nbinpaint" / "guide" / f"diffusers-{version}-inpaint.md"


@cache
def locate() -> tuple[Path | None, str]:
    """(the guide's path, or None; where it came from, or why there is none)."""
    chosen = os.environ.get(ENV, "").strip()
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_file():
            raise GuideMissing(f"{ENV}={chosen!r} is not a file: point it at the inpainting guide's markdown")
        return path, f"{ENV}={path}"
    import diffusers

    version = diffusers.__version__
    cached = cache_path(version)
    if cached.is_file():
        return cached, f"cached copy {cached}"
    url = SOURCE.format(version=version)
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as response:
            text = response.read(MAX_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return None, f"the inpainting guide is not available: {ENV} is unset and {url} could not be read ({reason})"
    if len(text) > MAX_BYTES or b"```py" not in text:
        return None, f"the inpainting guide is not available: {url} did not return the guide's markdown"
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".part")
    partial.write_bytes(text)
    partial.replace(cached)  # atomic: a killed run never leaves half a guide in the cache
    return cached, f"fetched from {url}"


def text() -> str:
    """The guide's markdown, or "" when it is not available (tests then skip with `reason()`)."""
    path, _ = locate()
    return path.read_text(encoding="utf-8") if path else ""


def reason() -> str:
    return locate()[1]
