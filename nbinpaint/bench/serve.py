"""Workshop-mode figures: remote against local time, throughput with many clients, waits beside a sweep, and
the same with batching off and on.

``python -m nbinpaint.bench.serve [--repeat N] [--max-batch-size N] [--json PATH]`` (or its old name
``python -m nbinpaint.serve.bench``) starts one twin Ray Serve instance on loopback holding two applications
that differ only in ``max_batch_size`` (`workshop_servers`: ``/off`` with 1, ``/on`` with N), and prints, for
each: requests per minute for 20 participants on each of `WORKLOADS`, and the longest wait of a single request
beside a 12-image sweep; then the on/off ratios. Each function also works against any running server (``url``,
``token``). The ``remote_*`` rows of ``python -m nbinpaint.bench`` use it too. Timings are informative: no test
asserts on them. On a CPU the server's replica uses this process's torch thread count, so that remote and local
runs do the same work (and give the same pixels).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from nbinpaint.requests import DEFAULT_MODEL, InpaintRequest

__all__ = [
    "WORKLOADS",
    "Workload",
    "batching",
    "bench_server",
    "main",
    "remote_vs_local",
    "sweep_wait",
    "throughput",
    "workshop_servers",
]

TOKEN = "nbinpaint-bench"
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
LCM_LORA = "latent-consistency/lcm-lora-sdv1-5"


@dataclass(frozen=True)
class Workload:
    """What 20 participants send in a throughput row: a model, steps, and further request parameters."""

    name: str
    label: str
    model: str = DEFAULT_MODEL
    steps: int = 2
    params: dict[str, Any] = field(default_factory=dict)


WORKLOADS: tuple[Workload, ...] = (
    Workload("inpaint_2_steps", "SD inpaint twin, 2 steps (the first workshop figure)"),
    Workload("sd15_25_steps", "SD 1.5 twin, 25 steps", SD15, 25),
    # The few-step row: LCM-LoRA fused into the same SD 1.5 twin, LCMScheduler, 4 steps (nbinpaint.lora).
    Workload("lcm_4_steps", "SD 1.5 twin + LCM-LoRA, 4 steps", SD15, 4, {"lora": LCM_LORA}),
)
"""The workshop rows, one entry each: every one runs with batching off and on, on the same server."""


def _scene(size: int, seed: int = 0) -> tuple[Image.Image, Image.Image]:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB")
    mask = np.zeros((size, size), np.uint8)
    mask[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 255
    return image, Image.fromarray(mask, "L")


def _request(
    size: int, seed: int, steps: int | None, model: str = DEFAULT_MODEL, params: dict[str, Any] | None = None
) -> InpaintRequest:
    image, mask = _scene(size, seed)
    return InpaintRequest(
        prompt="a small cat", image=image, mask=mask, seed=seed, steps=steps, model=model, **(params or {})
    )


def _client(url: str, token: str, name: str) -> Any:
    from nbinpaint.remote import RemoteManager

    manager = RemoteManager(url, token, client_id=name, timeout=600)
    manager.check()
    return manager


def _config(port: int, max_outstanding: int, **changes: Any) -> Any:
    import torch

    from nbinpaint.serve import Limits, ServerConfig

    return ServerConfig(
        token=TOKEN,
        twins=True,
        port=port,
        threads=torch.get_num_threads(),
        limits=Limits(max_outstanding=max_outstanding),
        **changes,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def bench_server(*, num_cpus: int = 2, max_outstanding: int = 16) -> Iterator[str]:
    """A twin workshop server on 127.0.0.1 (SD inpaint twin loaded) for the ``with`` block; yields its URL."""
    from nbinpaint.serve import local_server
    from nbinpaint.twins import use_twins

    use_twins()
    with local_server(_config(_free_port(), max_outstanding, models=(DEFAULT_MODEL,)), num_cpus=num_cpus) as url:
        yield url


@contextlib.contextmanager
def workshop_servers(
    *, max_batch_size: int = 8, batch_wait_ms: float = 20.0, num_cpus: int = 2, max_outstanding: int = 16
) -> Iterator[dict[str, str]]:
    """One twin Ray Serve instance on 127.0.0.1 with two applications that differ only in batching: ``off``
    (``max_batch_size=1``) and ``on`` (``max_batch_size``); yields their URLs. Each loads the models of
    `WORKLOADS` at start, so no row pays a load."""
    from nbinpaint.serve.app import start, stop
    from nbinpaint.twins import use_twins

    use_twins()
    models = tuple(dict.fromkeys(workload.model for workload in WORKLOADS))
    loras = tuple(dict.fromkeys(w.params["lora"] for w in WORKLOADS if w.params.get("lora")))
    port = _free_port()
    try:
        urls = {}
        for name, size in (("off", 1), ("on", max_batch_size)):
            config = _config(
                port,
                max_outstanding,
                models=models,
                allow=loras,
                app_name=f"nbinpaint-{name}",
                route_prefix=f"/{name}",
                max_batch_size=size,
                batch_wait_ms=batch_wait_ms,
            )
            urls[name] = start(config, num_cpus=num_cpus, quiet=True)
        yield urls
    finally:
        stop()


def remote_vs_local(
    url: str, token: str = TOKEN, *, size: int = 512, steps: int | None = None, repeat: int = 3
) -> dict[str, Any]:
    """One ``size`` x ``size`` twin inpaint, run alternately on the server and in this process.

    Returns the samples, medians, ``ratio`` (remote / local; the target is at most 1.10) and whether the
    pixels were identical.
    """
    from nbinpaint.pipeline_manager import PipelineManager

    local, remote = PipelineManager(), _client(url, token, "bench-ratio")
    request = _request(size, 7, steps)
    here, there = local.run(request), remote.run(request)  # warm both: loads, imports, first allocations
    same = np.array_equal(np.asarray(here.image), np.asarray(there.image))
    samples: dict[str, list[float]] = {"local": [], "remote": []}
    for index in range(repeat):
        order = (("local", local), ("remote", remote)) if index % 2 == 0 else (("remote", remote), ("local", local))
        for name, manager in order:
            started = time.perf_counter()
            manager.run(request)
            samples[name].append(time.perf_counter() - started)
    local_s, remote_s = statistics.median(samples["local"]), statistics.median(samples["remote"])
    return {
        "size": size,
        "steps": steps if steps is not None else "pipeline default",
        "local_s": samples["local"],
        "remote_s": samples["remote"],
        "local_median_s": local_s,
        "remote_median_s": remote_s,
        "ratio": remote_s / local_s,
        "target_ratio": 1.10,
        "same_pixels": same,
    }


def throughput(
    url: str,
    token: str = TOKEN,
    *,
    clients: int = 20,
    requests_per_client: int = 2,
    size: int = 64,
    steps: int = 2,
    model: str = DEFAULT_MODEL,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``clients`` kernels (threads) sending ``requests_per_client`` requests each, all at once.

    ``batched`` counts the requests that shared a pipeline call (their ``started`` event names a batch)."""
    managers = [_client(url, token, f"bench-{index:02d}") for index in range(clients)]
    latencies: list[float] = []
    batched: list[int] = []
    lock = threading.Lock()
    for manager in managers:
        manager.on_event(
            lambda event: batched.append(event["batch"]) if event["event"] == "started" and "batch" in event else None
        )

    def session(index: int) -> None:
        for number in range(requests_per_client):
            started = time.perf_counter()
            managers[index].run(_request(size, index * requests_per_client + number, steps, model, params))
            with lock:
                latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(session, index) for index in range(clients)]:
            future.result(timeout=3600)
    wall = time.perf_counter() - started
    total = clients * requests_per_client
    return {
        "clients": clients,
        "requests": total,
        "size": size,
        "steps": steps,
        "model": model,
        "wall_s": wall,
        "requests_per_s": total / wall,
        "requests_per_min": 60 * total / wall,
        "median_latency_s": statistics.median(latencies),
        "max_latency_s": max(latencies),
        "batched_requests": len(batched),
        "mean_batch": statistics.mean(batched) if batched else 1.0,
    }


def sweep_wait(
    url: str, token: str = TOKEN, *, cells: int = 12, singles: int = 5, size: int = 64, steps: int = 2
) -> dict[str, Any]:
    """One client queues a ``cells``-image sweep at once; then ``singles`` clients send one request each.

    ``longest_single_wait_s`` is the longest time a single request waited in the queue (sent to started);
    ``longest_single_total_s`` includes its run. The sweep's own duration is beside them.
    """
    sweeper = _client(url, token, "bench-sweep")
    others = [_client(url, token, f"bench-single-{index}") for index in range(singles)]
    admin = _client(url, token, "bench-admin")
    waits: list[float] = []
    totals: list[float] = []
    lock = threading.Lock()

    def single(index: int) -> float:
        started = {}
        sent = time.perf_counter()
        others[index].on_event(
            lambda event: started.setdefault("t", time.perf_counter()) if event["event"] == "started" else None
        )
        others[index].run(_request(size, 100 + index, steps))
        done = time.perf_counter()
        with lock:
            waits.append(started.get("t", done) - sent)
            totals.append(done - sent)
        return done

    def cell(index: int) -> float:
        sweeper.run(_request(size, 200 + index, steps))
        return time.perf_counter()

    with ThreadPoolExecutor(cells + singles) as pool:
        sweep_started = time.perf_counter()
        sweep_futures = [pool.submit(cell, index) for index in range(cells)]
        deadline = time.monotonic() + 600
        while admin.server_status().data["clients"].get(sweeper.client_id, {}).get("queued", 0) < cells - 2:
            if time.monotonic() > deadline or all(f.done() for f in sweep_futures):
                break
            time.sleep(0.05)
        single_futures = [pool.submit(single, index) for index in range(singles)]
        singles_done = [future.result(timeout=3600) for future in single_futures]
        sweep_done = max(future.result(timeout=3600) for future in sweep_futures)
    return {
        "sweep_cells": cells,
        "singles": singles,
        "longest_single_wait_s": max(waits),
        "longest_single_total_s": max(totals),
        "median_single_wait_s": statistics.median(waits),
        "sweep_s": sweep_done - sweep_started,
        "singles_finished_before_sweep": max(singles_done) < sweep_done,
    }


def batching(
    urls: dict[str, str], token: str = TOKEN, *, workloads: tuple[Workload, ...] = WORKLOADS
) -> dict[str, Any]:
    """Each workload for 20 participants, then the wait beside a 12-image sweep, on ``urls["off"]`` and
    ``urls["on"]`` (`workshop_servers`) in turn; the figures, and ``gain``: requests per minute on / off."""
    figures: dict[str, Any] = {}
    for workload in workloads:
        for mode in ("off", "on"):
            row = throughput(urls[mode], token, steps=workload.steps, model=workload.model, params=workload.params)
            figures[f"{workload.name}_20_clients_batching_{mode}"] = {"workload": workload.label, **row}
            _show(f"{workload.name}_20_clients_batching_{mode}", row)  # as it comes: a CPU run takes minutes
        off, on = (figures[f"{workload.name}_20_clients_batching_{mode}"] for mode in ("off", "on"))
        figures[f"{workload.name}_gain"] = {
            "requests_per_min_off": off["requests_per_min"],
            "requests_per_min_on": on["requests_per_min"],
            "gain": on["requests_per_min"] / off["requests_per_min"],
            "target_gain": 1.5,
        }
    for mode in ("off", "on"):
        figures[f"wait_beside_12_image_sweep_batching_{mode}"] = sweep_wait(urls[mode], token)
        _show(f"wait_beside_12_image_sweep_batching_{mode}", figures[f"wait_beside_12_image_sweep_batching_{mode}"])
    return figures


def _show(name: str, values: dict[str, Any]) -> None:
    print(name)
    for key, value in values.items():
        shown = f"{value:.3f}" if isinstance(value, float) else value
        if isinstance(value, list):
            shown = ", ".join(f"{v:.3f}" for v in value)
        print(f"  {key}: {shown}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nbinpaint.bench.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per side for the remote/local ratio")
    parser.add_argument("--max-batch-size", type=int, default=8, help="the batching-on application's batch size")
    parser.add_argument("--batch-wait-ms", type=float, default=20.0, help="its wait to fill a batch")
    parser.add_argument(
        "--workloads", nargs="+", choices=[w.name for w in WORKLOADS], help="only these workloads (default: all)"
    )
    parser.add_argument("--no-ratio", action="store_true", help="skip the remote/local ratio (512 px, slow on a CPU)")
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    figures: dict[str, Any] = {}
    with workshop_servers(max_batch_size=args.max_batch_size, batch_wait_ms=args.batch_wait_ms) as urls:
        if not args.no_ratio:
            figures["remote_vs_local_512"] = remote_vs_local(urls["off"], repeat=args.repeat)
        chosen = tuple(w for w in WORKLOADS if not args.workloads or w.name in args.workloads)
        figures.update(batching(urls, workloads=chosen))
    print("summary")
    for name, values in figures.items():
        _show(name, values)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
