"""What the benchmark ran on: the machine, the versions and how the cluster was configured."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.kube import Api
from bench.procstat import pid_from_file

REPO = Path(__file__).resolve().parent.parent


def _first_line_with(path: str, prefix: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return "unknown"


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _flag(cmdline: list[str], name: str) -> str | None:
    for index, arg in enumerate(cmdline):
        if arg.startswith(f"{name}="):
            return arg.partition("=")[2]
        if arg == name and index + 1 < len(cmdline):
            return cmdline[index + 1]
    return None


def _cmdline(pid_dir: Path | None, name: str) -> list[str] | None:
    pid = pid_from_file(pid_dir / f"{name}.pid") if pid_dir else None
    if pid is None:
        return None
    return Path(f"/proc/{pid}/cmdline").read_text().split("\0")


def client_rate_limits(pid_dir: Path | None) -> dict[str, str]:
    """The API rate limits of the controller-manager (the Job controller's) and the scheduler;
    unset flags mean the components' defaults (20 QPS, burst 30; scheduler 50, burst 100)."""
    limits = {}
    for name, defaults in (
        ("kube-controller-manager", ("20", "30")),
        ("kube-scheduler", ("50", "100")),
    ):
        cmdline = _cmdline(pid_dir, name)
        if cmdline is None:
            continue
        qps = _flag(cmdline, "--kube-api-qps") or f"{defaults[0]} (default)"
        burst = _flag(cmdline, "--kube-api-burst") or f"{defaults[1]} (default)"
        limits[name] = f"QPS {qps}, burst {burst}"
    return limits


# Every controller whose command line shapes the result (the Job controller's limits above all).
FLAGGED_PROCESSES = ("kube-controller-manager", "kube-scheduler", "kube-apiserver", "kwok")


def controller_flags(pid_dir: Path | None) -> dict[str, list[str]]:
    """Each running cluster component's flags, as it was started (paths and all)."""
    found = {}
    for name in FLAGGED_PROCESSES:
        cmdline = _cmdline(pid_dir, name)
        if cmdline is not None:
            found[name] = [arg for arg in cmdline[1:] if arg]
    return found


def revision() -> tuple[str, bool]:
    """The commit the benchmark runs from, and whether tracked files differ from it."""
    return _git("rev-parse", "HEAD"), bool(_git("status", "--porcelain", "--untracked-files=no"))


def kwok_version() -> str:
    cache = Path(os.environ.get("STEPRUN_CACHE", Path.home() / ".cache" / "steprun"))
    for binary in sorted(cache.glob("kwok/*/kwok")):
        try:
            return subprocess.run(
                [str(binary), "--version"], capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            continue
    return "not installed"


async def describe(api: Api, pid_dir: Path | None) -> dict[str, Any]:
    server = await api.request("GET", "/version")
    commit, dirty = revision()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _first_line_with("/proc/cpuinfo", "model name"),
        "memory": _first_line_with("/proc/meminfo", "MemTotal"),
        "kernel": platform.release(),
        "kubernetes": server.get("gitVersion", "unknown"),
        "kwok": kwok_version(),
        "python": sys.version.split()[0],
        "kopf": _version("kopf"),
        "steprun": f"{_version('steprun')} (git {commit}{', WITH LOCAL CHANGES' if dirty else ''})",
        "revision": commit,
        "local_changes": dirty,
        "rate_limits": client_rate_limits(pid_dir),
    }
