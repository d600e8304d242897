"""Benchmark rows for workshop mode: one twin Ray Serve instance on loopback, shared by the rows below, with
two applications that differ only in batching (`nbinpaint.bench.serve.workshop_servers`): the rows run on
``off`` unless they compare the two.

Needs the ``serve`` extra (``ray[serve]``); without it the rows are skipped with that reason. The figures
come from `nbinpaint.bench.serve`, which ``python -m nbinpaint.bench.serve`` also prints on its own.
"""

from __future__ import annotations

from typing import Any

from nbinpaint.bench.common import Measured, Skip, on_finish, row

_SERVER: list[dict[str, str]] = []


def _urls() -> dict[str, str]:
    if not _SERVER:
        try:
            import ray  # noqa: F401
        except ImportError as error:
            raise Skip(f"needs the serve extra: pip install 'nbinpaint[serve]' ({error})") from error
        from nbinpaint.bench.serve import workshop_servers

        server = workshop_servers()
        _SERVER.append(server.__enter__())
        on_finish(lambda: (server.__exit__(None, None, None), _SERVER.clear()))
    return _SERVER[0]


def _url() -> str:
    return _urls()["off"]


@row(
    "remote_vs_local_512",
    "one 512x512 twin inpaint (20 steps) on the workshop server vs in this process",
    "ratio <= 1.10",
)
def remote_vs_local(repeat: int) -> Measured:
    from nbinpaint.bench import serve

    figures: dict[str, Any] = serve.remote_vs_local(_url(), steps=20, repeat=min(repeat, 6))
    return Measured(figures["remote_s"], baseline=figures["local_s"], figures={"same_pixels": figures["same_pixels"]})


@row("remote_throughput_20_clients", "20 kernels x 2 requests at once (64 px, 2 steps): wall time per request")
def remote_throughput(repeat: int) -> Measured:
    from nbinpaint.bench import serve

    f = serve.throughput(_url())
    return Measured(
        [f["wall_s"] / f["requests"]],
        figures={k: f[k] for k in ("requests_per_s", "median_latency_s", "max_latency_s")},
    )


@row(
    "remote_wait_beside_sweep",
    "longest queue wait of 5 single requests sent while a 12-image sweep is queued",
    "singles first",
)
def remote_wait_beside_sweep(repeat: int) -> Measured:
    from nbinpaint.bench import serve

    f = serve.sweep_wait(_url())
    return Measured(
        [f["longest_single_wait_s"]],
        figures={k: f[k] for k in ("longest_single_total_s", "sweep_s", "singles_finished_before_sweep")},
    )


@row(
    "remote_batching_20_clients",
    "20 kernels x 2 requests at once (SD 1.5 twin, 64 px, 25 steps): wall time per request, batching on vs off",
    "on/off requests per minute >= 1.5",
)
def remote_batching(repeat: int) -> Measured:
    from nbinpaint.bench import serve

    workload = next(w for w in serve.WORKLOADS if w.name == "sd15_25_steps")
    urls = _urls()
    rows = {
        mode: serve.throughput(urls[mode], steps=workload.steps, model=workload.model, params=workload.params)
        for mode in ("off", "on")
    }
    return Measured(
        [rows["on"]["wall_s"] / rows["on"]["requests"]],
        baseline=[rows["off"]["wall_s"] / rows["off"]["requests"]],
        figures={
            "requests_per_min_off": rows["off"]["requests_per_min"],
            "requests_per_min_on": rows["on"]["requests_per_min"],
            "mean_batch": rows["on"]["mean_batch"],
        },
    )
