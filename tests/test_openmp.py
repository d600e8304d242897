"""`nbinpaint.openmp`: releasing the calling thread's OpenMP team leaves torch working, on this thread and others.

That the release makes a background run as fast as a main-thread one is a speed claim: the benchmark's
``studio_generate_vs_diffusers_512`` row measures it (a test cannot time it honestly on a shared machine).
"""

from __future__ import annotations

import sys
import threading

import pytest
import torch

from nbinpaint import openmp


def work() -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    a = torch.randn(256, 256, generator=generator)
    return torch.nn.functional.conv2d(a[None, None], torch.ones(1, 1, 3, 3)).sum() + (a @ a).sum()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="libgomp is what Linux wheels of torch use")
def test_finds_the_libgomp_torch_loaded():
    if "OpenMP" not in torch.__config__.parallel_info():
        pytest.skip("this torch was built without OpenMP")
    library = openmp.libgomp()
    assert library is not None and "libgomp" in library._name


def test_release_then_work_on_this_thread_and_another_gives_the_same_numbers():
    expected = work()  # this thread now has an OpenMP team (on a libgomp torch)
    released = openmp.release_idle_threads()
    assert released is (openmp.libgomp() is not None)
    assert torch.equal(work(), expected)  # a new team is made on demand
    seen = {}
    thread = threading.Thread(target=lambda: seen.setdefault("value", work()))
    thread.start()
    thread.join()
    assert torch.equal(seen["value"], expected)
    assert openmp.release_idle_threads() is released  # twice in a row is harmless


def test_without_libgomp_nothing_is_touched(monkeypatch):
    monkeypatch.setattr(openmp, "libgomp", lambda: None)
    assert openmp.release_idle_threads() is False
