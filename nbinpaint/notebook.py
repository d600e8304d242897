"""The setup cell of every guided notebook as one call: twin mode where the Hub is out of reach, the device
and dtype the guide's code runs with, and quiet library logs, announced in one printed line.

    setup = nbinpaint.notebook_setup()
    device, dtype = setup.device, setup.dtype
    # device: cpu, dtype: torch.float32, twin mode: on (tiny random-weight twins built locally: ...)
"""

from __future__ import annotations

import contextlib
import io
import sys
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass

import diffusers
import huggingface_hub
import torch
import transformers

from nbinpaint import twins

__all__ = ["NotebookSetup", "hub_reachable", "notebook_setup"]

HUB_URL = "https://huggingface.co"


@dataclass(frozen=True)
class NotebookSetup:
    """What a guided notebook takes from its setup cell.

    Parameters:
        device: ``"cuda"`` when a GPU is present, else ``"cpu"``.
        dtype: float16 on a GPU; float32 on a CPU, where float16 is slower, not faster (notebook 15 measures it).
        twins: whether checkpoints load as tiny random-weight twins (pictures are noise, the code path is real).
        steps: denoising steps for a notebook's own extra comparisons: 50 on a GPU, 10 on a CPU. The guide's
            cells keep the guide's values.
    """

    device: str
    dtype: torch.dtype
    twins: bool
    steps: int

    def summary(self) -> str:
        """The one line `notebook_setup` prints."""
        if self.twins:
            mode = "on (tiny random-weight twins built locally: the pictures are noise, the code path is real)"
        else:
            mode = "off (real checkpoints from the Hub)"
        return f"device: {self.device}, dtype: {self.dtype}, twin mode: {mode}"


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether huggingface.co answers at all (a HEAD request; proxies from the environment are used)."""
    try:
        urllib.request.urlopen(urllib.request.Request(HUB_URL, method="HEAD"), timeout=timeout)
    except urllib.error.HTTPError:
        return True  # it answered, even if with an error status
    except OSError:
        return False
    return True


def notebook_setup(*, hub_timeout: float = 3.0, quiet: bool = True) -> NotebookSetup:
    """Prepare this kernel for a guided notebook, print one line saying how, and return what it chose.

    1. On Colab, let it display third-party widgets (canvas, grids).
    2. Twin mode if ``NBINPAINT_TWINS=1`` or huggingface.co does not answer within ``hub_timeout`` seconds:
       missing twins are built first (one line each), then every repo id loads its twin, offline.
    3. The device (``cuda`` if available, else ``cpu``) and its dtype (float16 on a GPU, float32 on a CPU).
    4. With ``quiet``, library logs at error level and no "Loading pipeline components" bars, so what a
       cell prints is its result; denoising progress bars stay.
    """
    if "google.colab" in sys.modules:
        from google.colab import output  # only importable on Colab

        output.enable_custom_widget_manager()
    use_twins = twins.twin_mode() or not hub_reachable(hub_timeout)
    if use_twins:
        twins.install()  # builds what is missing, one line per twin; nothing once they exist
        with contextlib.redirect_stdout(io.StringIO()):  # its announcement is part of the summary line below
            twins.use_twins()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    setup = NotebookSetup(
        device=device,
        dtype=torch.float16 if device == "cuda" else torch.float32,
        twins=use_twins,
        steps=50 if device == "cuda" else 10,
    )
    if quiet:
        for library in (diffusers, transformers, huggingface_hub):
            library.utils.logging.set_verbosity_error()
        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
        # huggingface_hub 2.x warns about an argument diffusers 0.42 still passes when loading from the cache.
        warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks")
    print(setup.summary())
    return setup
