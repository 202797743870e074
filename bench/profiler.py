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
from dataclasses import dataclass, field
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
    # Samples by what they were spent for (CATEGORIES), in that order, empty ones left out.
    categories: list[tuple[str, int]] = field(default_factory=list)


# What a sample was spent for: found from its innermost frame outwards, the first frame that
# holds one of a category's markers (a file path or a function) decides; a frame matching
# several takes the first category listed. The frames every sample shares (the process's entry
# point, the event loop's run loop) decide nothing.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "steprun: decide, render, observe, policy (pure functions)",
        (
            "steprun/reconcile/decide.py",
            "steprun/reconcile/status.py",
            "steprun/render/",
            "steprun/observe/",
            "steprun/policy/",
        ),
    ),
    ("steprun: parsing StepRun bodies (pydantic)", ("StepRun.from_body", "pydantic/")),
    ("logging (structlog)", ("structlog/", "logging/")),
    ("metrics (prometheus_client)", ("prometheus_client/",)),
    (
        "steprun: its API requests (kubernetes_asyncio, aiohttp, TLS, JSON)",
        ("kubernetes_asyncio/", "steprun/kube/"),
    ),
    ("kopf: its API requests and watch streams (aiohttp, TLS, JSON)", ("kopf/_cogs/clients/",)),
    ("kopf: event processing and handler dispatch", ("kopf/",)),
    ("steprun: reconciler, work queue, caches", ("steprun/",)),
    ("event loop: polling sockets (select)", ("selectors.py",)),
)
SHARED_FRAMES = ("steprun/handlers/main.py", "<frozen runpy>", "asyncio/runners.py")
OTHER = "event loop, sockets and TLS not attributable to a caller"


def category(frames: list[str]) -> str:
    for frame in reversed(frames):
        if any(shared in frame for shared in SHARED_FRAMES):
            continue
        for name, markers in CATEGORIES:
            if any(marker in frame for marker in markers):
                return name
    return OTHER


def hotspots(collapsed: str, top: int = 15) -> Hotspots:
    """The frames with the most samples (pure)."""
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    spent_for: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        spent_for[category(frames)] += count
        for frame in set(frames):
            anywhere[frame] += count
    order = [name for name, _ in CATEGORIES] + [OTHER]
    categories = [(name, spent_for[name]) for name in order if spent_for[name]]
    return Hotspots(total, own.most_common(top), anywhere.most_common(top), categories)
