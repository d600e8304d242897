"""Workshop batching end to end: a twin server on Ray Serve with ``max_batch_size=4``, participants as threads.

One local Ray instance serves the module (Ray tests are slow: two tests share it). Participants send at the
same moment, and the replica waits up to 300 ms to fill a batch, so their compatible requests share one
pipeline call; each result must still be that participant's own (a local single run's pixels within
`BATCH_TOLERANCE`), and a cancel must stop only the participant who asked.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from nbinpaint.errors import GenerationCancelled
from nbinpaint.pipeline_manager import PipelineManager
from nbinpaint.remote import RemoteManager
from nbinpaint.runner import BATCH_TOLERANCE
from nbinpaint.serve import Limits, ServerConfig, local_server
from tests.test_serve import SD, TOKEN, WAIT, free_port, request

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*"),
    pytest.mark.filterwarnings("ignore:Using extra keyword arguments on `Field`"),
]


@pytest.fixture(scope="module")
def server(twins_dir):
    config = ServerConfig(
        models=(SD,),
        token=TOKEN,
        twins=True,
        twins_dir=str(twins_dir),
        port=free_port(),
        threads=torch.get_num_threads(),
        limits=Limits(max_steps=60),
        max_batch_size=4,
        batch_wait_ms=300,
    )
    with local_server(config, num_cpus=2) as url:
        yield url


@pytest.fixture(scope="module")
def local():
    return PipelineManager(device="cpu")


def participants(url: str, count: int) -> list[tuple[RemoteManager, list[dict]]]:
    out = []
    for index in range(count):
        manager = RemoteManager(url, TOKEN, client_id=f"batch-{index}", timeout=WAIT)
        manager.check()
        events: list[dict] = []
        manager.on_event(events.append)
        out.append((manager, events))
    return out


def together(calls: list) -> list:
    """Run ``calls`` in threads released at the same moment; their results (or exceptions)."""
    gate = threading.Barrier(len(calls))

    def call(function):
        gate.wait(timeout=WAIT)
        try:
            return function()
        except Exception as error:
            return error

    with ThreadPoolExecutor(len(calls)) as pool:
        return [future.result(timeout=WAIT) for future in [pool.submit(call, c) for c in calls]]


def batch_of(events: list[dict]) -> int | None:
    return next(event for event in events if event["event"] == "started").get("batch")


def test_participants_share_a_batch_and_each_gets_their_own_image(server, local):
    people = participants(server, 4)
    requests = [request(1), request(2, prompt="a red boat"), request(3, preserve_unmasked=True), request(4, steps=3)]
    steps: list[list[int]] = [[] for _ in people]
    results = together(
        [
            lambda i=i: people[i][0].run(requests[i], on_step=lambda step, total, tensors, i=i: steps[i].append(step))
            for i in range(4)
        ]
    )
    batches = [batch_of(events) for _, events in people]
    assert batches[:3] == [3, 3, 3], f"the three compatible requests did not share a call: {batches}"
    assert batches[3] is None, "a request with another step count ran alone"
    for index, result in enumerate(results):
        reference = local.run(requests[index])
        difference = np.abs(np.asarray(result.image, dtype=int) - np.asarray(reference.image, dtype=int)).max()
        assert difference <= BATCH_TOLERANCE, f"participant {index}: {difference} levels from a single run"
        assert result.seed == reference.seed
        assert steps[index] == list(range(1, requests[index].steps + 1))


def test_a_cancel_in_a_batch_stops_only_that_participant(server, local):
    people = participants(server, 3)
    long = [request(10 + index, size=96, steps=60) for index in range(3)]
    stop = threading.Event()
    seen: list[int] = []

    def cancel_after_two(step: int, total: int, tensors: dict) -> None:
        seen.append(step)
        if step >= 2:
            stop.set()

    results = together(
        [
            lambda: people[0][0].run(long[0]),
            lambda: people[1][0].run(long[1], on_step=cancel_after_two, should_stop=stop.is_set),
            lambda: people[2][0].run(long[2]),
        ]
    )
    assert [batch_of(events) for _, events in people] == [3, 3, 3]
    assert isinstance(results[1], GenerationCancelled), results[1]
    report = next(event for event in people[1][1] if event["event"] == "cancelled")
    assert report["stopped_after_step"] - report["cancel_seen_after_step"] <= 1, report
    assert report["stopped_after_step"] < 60 and max(seen) < 60
    for index in (0, 2):
        reference = local.run(long[index])
        difference = np.abs(np.asarray(results[index].image, dtype=int) - np.asarray(reference.image, dtype=int))
        assert difference.max() <= BATCH_TOLERANCE, f"participant {index}'s run was disturbed by the cancel"
    after = people[1][0].run(request(20))
    assert after.image.size == (64, 64), "the canceller's next request runs"
