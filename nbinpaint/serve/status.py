"""The admin view of a workshop server: queue, running requests, per-participant counts, replicas and memory."""

from __future__ import annotations

import html
from typing import Any

__all__ = ["ServerStatus"]


class ServerStatus:
    """What ``GET /v1/status`` returned, printable as text (`nbinpaint serve --status`) and as HTML."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    @property
    def waiting(self) -> int:
        return len(self.data.get("waiting", []))

    @property
    def running(self) -> list[dict[str, Any]]:
        return list(self.data.get("running", []))

    @property
    def replicas(self) -> list[dict[str, Any]]:
        return list(self.data.get("replicas", []))

    def model_load(self) -> dict[str, dict[str, int]]:
        """Per model: requests waiting, running, and run so far (summed over replicas)."""
        load: dict[str, dict[str, int]] = {}

        def entry(model: str) -> dict[str, int]:
            return load.setdefault(model, {"waiting": 0, "running": 0, "runs": 0})

        for job in self.data.get("waiting", []):
            entry(str(job.get("model")))["waiting"] += 1
        for job in self.running:
            entry(str(job.get("model")))["running"] += 1
        for replica in self.replicas:
            for row in replica.get("models", []):
                entry(row["model"])["runs"] += int(row.get("runs", 0))
        return load

    def lines(self) -> list[str]:
        data = self.data
        lines = [f"queue: {self.waiting} waiting, {len(self.running)} running (capacity {data.get('capacity')})"]
        for name, counts in data.get("clients", {}).items():
            lines.append(f"  {name}: {counts['queued']} waiting, {counts['running']} running")
        lines.append("models: waiting / running / runs so far")
        for model, counts in sorted(self.model_load().items()):
            lines.append(f"  {model}: {counts['waiting']} / {counts['running']} / {counts['runs']}")
        for state, info in data.get("deployments", {}).items():
            lines.append(f"deployment {state}: {info.get('status')} {info.get('replicas')}")
        for replica in self.replicas:
            memory = replica.get("memory", {})
            used = memory.get("allocated", 0) / 2**20
            total = f" of {memory['total'] / 2**20:.0f}" if memory.get("total") else ""
            lines.append(
                f"replica {replica['replica']} (pid {replica.get('pid')}, {replica.get('device')}): "
                f"{used:.0f}{total} MB in use, weights {replica.get('resident_bytes', 0) / 2**20:.1f} MB, "
                f"{replica.get('jobs', 0)} jobs, reported {replica.get('reported')}"
            )
            for row in replica.get("models", []):
                lines.append(f"    {row['model']} [{', '.join(row['tasks'])}] {row['dtype']}, {row['runs']} runs")
        return lines

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def _repr_html_(self) -> str:
        return "<pre>" + html.escape(str(self)) + "</pre>"
