"""Shared by the benchmarks: medians, the machine's description, and ``RESULTS.md`` rows."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
ROOT = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    """The CPU's model name (from ``/proc/cpuinfo`` where there is one)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def machine() -> str:
    """CPU model and core count, plus the GPU when torch sees one (imported only if loaded)."""
    text = f"{cpu_name()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name(0)}"
    return text


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def append_result(bench: str, numbers: str, results: Path = RESULTS) -> None:
    """Add one row (date, benchmark, machine, numbers) at the end of the table of ``results``
    (``bench/RESULTS.md``; notes may follow the table), writing the table's header first when
    the file does not exist yet."""
    if not results.exists():
        results.write_text(
            "# Benchmark results\n\nRows are appended by the scripts in `bench/`.\n\n"
            f"{_HEADER}\n|---|---|---|---|\n"
        )
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    row = f"| {date} | {bench} | {machine()} | {numbers} |"
    lines = results.read_text().splitlines()
    at = len(lines)
    if _HEADER in lines:
        at = lines.index(_HEADER)
        while at < len(lines) and lines[at].startswith("|"):
            at += 1
    results.write_text("\n".join([*lines[:at], row, *lines[at:]]) + "\n")


_HEADER = "| date | benchmark | machine | numbers |"
