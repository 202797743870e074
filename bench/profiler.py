"""Sampling profile of the operator during a scenario (py-spy), summarized as hotspots.

py-spy samples the running process from outside (no code change, no restart) and writes
collapsed stacks: one line per distinct stack, ``frame;frame;... count``, root first.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


def py_spy() -> str | None:
    beside_python = Path(sys.executable).with_name("py-spy")
    return str(beside_python) if beside_python.exists() else shutil.which("py-spy")


class Profiler:
    def __init__(self, pid: int, out: Path, rate: int = 100):
        binary = py_spy()
        if binary is None:
            raise RuntimeError("profiling needs py-spy: .venv/bin/pip install py-spy")
        self.out = out
        self._process = subprocess.Popen(
            [
                binary,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--output",
                str(out),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> Path:
        """Ends sampling; py-spy writes its file on SIGINT."""
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(60)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
        return self.out


@dataclass(frozen=True)
class Hotspots:
    samples: int
    self_time: list[tuple[str, int]]  # innermost frame: where the CPU was spent
    inclusive: list[tuple[str, int]]  # any frame on the stack: what the time was spent for


def hotspots(collapsed: str, top: int = 15) -> Hotspots:
    """The frames with the most samples (pure)."""
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            anywhere[frame] += count
    return Hotspots(total, own.most_common(top), anywhere.most_common(top))
