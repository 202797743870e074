"""The operator under test: a process of its own per scenario, so its CPU time and peak memory
are the scenario's alone."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
from pathlib import Path

READY_MARKER = '"event": "operator ready"'
PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends it SIGTERM if the benchmark dies, so no
    operator outlives the run that started it (even after a SIGKILL)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _log_contains(path: Path, marker: str) -> bool:
    return path.exists() and marker in path.read_text(errors="replace")


class OperatorProcess:
    def __init__(
        self,
        *,
        kubeconfig: Path,
        namespace: str,
        log_path: Path,
        extra_env: dict[str, str] | None = None,
        python: str = sys.executable,
    ):
        self.python = python
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.log_path = log_path
        self.metrics_port = free_port()
        self.extra_env = extra_env or {}
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def env(self) -> dict[str, str]:
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "STEPRUN_NAMESPACES": f'["{self.namespace}"]',
            "STEPRUN_METRICS_PORT": str(self.metrics_port),
            "STEPRUN_HEALTH_PORT": "0",
            # Benchmark steps pick kwok's fake nodes through podTemplate scheduling, which the
            # operator refuses unless an admin allows those keys.
            "STEPRUN_NODE_SELECTOR_KEYS": '["*"]',
            "STEPRUN_TOLERATION_KEYS": '["kwok.x-k8s.io/*"]',
            **self.extra_env,
        }

    async def start(self, ready_within: float = 90) -> None:
        log = await asyncio.to_thread(self.log_path.open, "ab")
        try:
            self.process = await asyncio.create_subprocess_exec(
                self.python,
                "-m",
                "steprun.handlers.main",
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, **self.env()},
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        deadline = time.monotonic() + ready_within
        while time.monotonic() < deadline:
            if self.process.returncode is not None:
                raise RuntimeError(
                    f"the operator exited with {self.process.returncode}; see {self.log_path}"
                )
            if await asyncio.to_thread(_log_contains, self.log_path, READY_MARKER):
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"the operator was not ready after {ready_within}s; see {self.log_path}")

    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def stop(self, grace: float = 30) -> int | None:
        if self.process is None:
            return None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        return self.process.returncode
