"""The operator as a separate OS process, so tests can kill it (SIGKILL) and restart it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

READY_MARKER = '"event": "operator ready"'


class OperatorProcess:
    def __init__(self, *, kubeconfig: str, log_dir: Path, extra_env: dict[str, str] | None = None):
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / "operator.log"

    def start(self, timeout: float = 60) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": self.kubeconfig,
            "STEPRUN_METRICS_PORT": "0",
            "STEPRUN_HEALTH_PORT": "0",
            **self.extra_env,
        }
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "steprun.handlers.main"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"operator exited with {self.process.returncode}:\n{self.log()}")
            if READY_MARKER in self.log()[offset:]:
                return
            time.sleep(0.1)
        raise RuntimeError(f"operator not ready after {timeout}s:\n{self.log()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no finalizers, exactly like a crashed or evicted operator."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
