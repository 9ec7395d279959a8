"""One log line per device run: which jobs ran, when the work started and ended, how long the
oldest of them waited for the device.

Operators read it to see where a job's time went (waiting behind others counts against its
execution timeout, as on RunPod); ``bench/throughput.py`` reads it from the worker log to
measure how busy the device was and the idle gap between runs. This module owns the format.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

#: the message: job ids (comma-separated), wall-clock start and end (epoch seconds), wait
FORMAT = "device run: jobs %s start %.6f end %.6f waited %.1f ms"
_PATTERN = re.compile(
    r"device run: jobs (?P<jobs>\S+) start (?P<start>[\d.]+) end (?P<end>[\d.]+)"
    r" waited (?P<waited>[\d.]+) ms"
)


@dataclass(frozen=True)
class DeviceRun:
    """One batch (or one job alone) on the device."""

    jobs: tuple[str, ...]
    start: float
    end: float
    waited_ms: float = 0.0

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def args(self) -> tuple[str, float, float, float]:
        """The arguments of :data:`FORMAT` (``log.info(FORMAT, *run.args())``)."""
        return ",".join(self.jobs), self.start, self.end, self.waited_ms


def parse(text: str) -> list[DeviceRun]:
    """Every device run logged in ``text`` (a worker log), in the order written."""
    return [
        DeviceRun(
            tuple(m["jobs"].split(",")), float(m["start"]), float(m["end"]), float(m["waited"])
        )
        for m in _PATTERN.finditer(text)
    ]


def idle_gaps(runs: list[DeviceRun]) -> list[float]:
    """Seconds the device sat idle between consecutive runs (never negative)."""
    ordered = sorted(runs, key=lambda r: r.start)
    return [max(0.0, b.start - a.end) for a, b in itertools.pairwise(ordered)]
