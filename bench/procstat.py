"""CPU time and memory of a process, from /proc (Linux)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _TICKS


def memory_bytes(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak resident set since the process started), in bytes."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values


def pid_from_file(path: Path) -> int | None:
    """The pid in a pid file, if that process is alive."""
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


@dataclass
class Usage:
    """What one process used during a scenario."""

    name: str
    pid: int
    cpu_start: float
    cpu_seconds: float = 0.0
    peak_rss_bytes: int = 0  # the largest VmRSS sampled during the scenario
    hwm_bytes: int = 0  # VmHWM at the end: the peak since the process started


class UsageSampler:
    """Samples the resident set of a few processes until stopped; CPU is a start/end delta."""

    def __init__(self, processes: dict[str, int], interval: float = 0.5):
        self.usage = {name: Usage(name, pid, cpu_seconds(pid)) for name, pid in processes.items()}
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def _sample(self) -> None:
        for usage in self.usage.values():
            with contextlib.suppress(OSError):
                rss = memory_bytes(usage.pid).get("VmRSS", 0)
                usage.peak_rss_bytes = max(usage.peak_rss_bytes, rss)

    async def _loop(self) -> None:
        while True:
            self._sample()
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> dict[str, Usage]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._sample()
        for usage in self.usage.values():
            with contextlib.suppress(OSError):
                usage.cpu_seconds = cpu_seconds(usage.pid) - usage.cpu_start
                usage.hwm_bytes = memory_bytes(usage.pid).get("VmHWM", 0)
        return self.usage
