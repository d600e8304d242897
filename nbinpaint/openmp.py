"""Hand the calling thread's idle OpenMP workers back before torch work moves to another thread.

Why: PyTorch's CPU wheels for Linux run their parallel loops on GNU OpenMP (libgomp), which keeps one team of
worker threads per thread that has ever run a parallel loop, and counts all of them. Once that count exceeds
the CPUs (the kernel's main thread has a team from loading a pipeline; the studio's background thread makes a
second), libgomp stops letting idle workers spin between loops and puts them to sleep instead, so each of the
thousands of small loops of a denoising step pays a futex wake-up. Measured on a 2-core machine: the same
diffusers call took 2.0 s on the main thread and 2.6 s on a fresh thread; with the main thread's team released
first, 2.0 s on both. `release_idle_threads` frees the calling thread's team (OpenMP 5's
``omp_pause_resource_all``); libgomp starts a new one the next time that thread runs a parallel loop.

Only libgomp is touched: LLVM's and Intel's OpenMP pause the whole runtime, not one thread's team.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import sys

__all__ = ["libgomp", "release_idle_threads"]

log = logging.getLogger(__name__)

OMP_PAUSE_SOFT = 1
"""``omp_pause_soft`` of OpenMP 5.0's ``omp_pause_resource_t``."""


@functools.cache
def libgomp() -> ctypes.CDLL | None:
    """The libgomp that torch loaded into this process, or None (no torch yet, another OpenMP, not Linux).

    Looked up in ``/proc/self/maps`` so the very library torch uses is found (pip wheels ship their own copy
    under ``torch/lib``), never a second one loaded beside it.
    """
    if not sys.platform.startswith("linux") or "torch" not in sys.modules:
        return None
    torch_dir = os.path.dirname(sys.modules["torch"].__file__ or "")
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            paths = {line.split()[-1] for line in maps if "libgomp" in line and ".so" in line}
    except OSError:
        return None
    paths = {path for path in paths if os.path.isabs(path)}
    if not paths:
        return None
    preferred = sorted(paths, key=lambda path: (not path.startswith(torch_dir), path))[0]
    try:
        library = ctypes.CDLL(preferred)  # already loaded: this returns the same handle
        pause = library.omp_pause_resource_all
    except (OSError, AttributeError):  # a libgomp older than GCC 9 has no pause
        return None
    pause.argtypes, pause.restype = [ctypes.c_int], ctypes.c_int
    return library


def release_idle_threads() -> bool:
    """Free the calling thread's OpenMP worker team, if it has one; True when libgomp did.

    Call it on the thread that is about to hand torch work to another thread (the kernel's main thread when
    Generate starts a run), never from inside a parallel region (Python code never is).
    """
    library = libgomp()
    if library is None:
        return False
    released = library.omp_pause_resource_all(OMP_PAUSE_SOFT) == 0
    if not released:
        log.debug("omp_pause_resource_all refused to release this thread's OpenMP team")
    return released
