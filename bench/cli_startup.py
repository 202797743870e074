"""How long the steprun command takes to answer: without a cluster, and against one beside
`kubectl get`.

    python -m bench.cli_startup            # 20 runs of each; writes bench/results/cli-startup.md
    python -m bench.cli_startup --runs 50 --out -

Each command runs as a fresh process, as a shell runs it; the report gives the median and the
95th percentile of the wall time, and what `python -X importtime` says the slowest imports
of `steprun --help` and of `steprun list` are. The aims: `--help` answers well under 0.3 s,
and the commands that reach the cluster (list, get, the completion of a name) within twice
`kubectl get sr` (the cluster is the one KUBECONFIG names; kubectl is taken from PATH). The
"no cluster configuration" answer must not wait for any client library.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {
    "steprun --help": ["--help"],
    "steprun list --help": ["list", "--help"],
    "steprun completion bash": ["completion", "bash"],
    "python -c pass (interpreter alone)": None,
}
# Against the cluster of KUBECONFIG; kubectl's own answer is the yardstick.
CLUSTER_COMMANDS = {
    "kubectl get sr": ["kubectl", "get", "sr"],
    "steprun list": ["list"],
    "steprun get (lists)": ["get"],
    "steprun get <TAB> (completes names)": ["get", ""],
}
NO_CONFIG = "steprun list, no kubeconfig (the error)"


def _command(argv: list[str] | None) -> list[str]:
    if argv is None:
        return [sys.executable, "-c", "pass"]
    if argv[0] == "kubectl":
        return argv
    return [sys.executable, "-m", "steprun", *argv]


def _completion_env(argv: list[str]) -> dict[str, str]:
    """A shell's completion request for ``argv`` (its last word the one being completed)."""
    line = " ".join(["steprun", *argv])
    return {
        "_ARGCOMPLETE": "1",
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "_ARGCOMPLETE_STDOUT_FILENAME": os.devnull,
    }


def wall_times(
    argv: list[str] | None,
    runs: int,
    *,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> list[float]:
    command = _command(argv)
    if argv is not None and argv[-1:] == [""]:
        env = {**(env or os.environ), **_completion_env(argv)}
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=check,
            cwd=REPO,
            env=env,
        )
        times.append(time.perf_counter() - started)
    return times


def _row(label: str, times: list[float]) -> tuple[str, float]:
    times = sorted(times)
    p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
    median = statistics.median(times)
    return f"| `{label}` | {median:.3f} | {p95:.3f} |", median


def cluster_section(runs: int) -> list[str]:
    """The commands that reach the cluster, against `kubectl get sr` (skipped without one)."""
    kubeconfig = os.environ.get("KUBECONFIG", "")
    if not kubeconfig or not shutil.which("kubectl"):
        return ["", "Cluster commands: not measured (set KUBECONFIG and put kubectl on PATH)."]
    reachable = subprocess.run(
        ["kubectl", "get", "sr", "--request-timeout=5s"], capture_output=True, check=False
    )
    if reachable.returncode != 0:
        return ["", "Cluster commands: not measured (`kubectl get sr` fails on this cluster)."]
    lines = [
        "",
        f"Against a cluster (`kubectl get sr` answers; {runs} runs each):",
        "",
        "| command | median s | p95 s |",
        "|---|---:|---:|",
    ]
    medians = {}
    for label, argv in CLUSTER_COMMANDS.items():
        row, medians[label] = _row(label, wall_times(argv, runs))
        lines.append(row)
    empty_home = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    empty_home["HOME"] = os.devnull
    row, medians[NO_CONFIG] = _row(
        NO_CONFIG, wall_times(["list"], runs, env=empty_home, check=False)
    )
    lines.append(row)
    reference = medians["kubectl get sr"]
    lines += ["", "Median against `kubectl get sr`:", ""]
    lines += [
        f"- `{label}`: {median / reference:.2f}x"
        for label, median in medians.items()
        if label != "kubectl get sr"
    ]
    return lines


def slowest_imports(argv: list[str] | None = None, count: int = 8) -> list[tuple[str, float]]:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "steprun", *(argv or ["--help"])],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    rows = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (part.strip() for part in line.split("|"))
        if cumulative.isdigit():
            rows.append((name.strip(), int(cumulative) / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:count]


def _revision() -> str:
    found = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "operator"], capture_output=True, text=True, cwd=REPO
    )
    return (found.stdout.strip() or "unknown") + (" (with local changes)" if dirty.stdout else "")


def report(runs: int) -> str:
    lines = [
        "# CLI startup",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, revision {_revision()}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}, {runs} runs each; "
        "`make bench-cli` (`python -m bench.cli_startup`).",
        "",
        "| command | median s | p95 s |",
        "|---|---:|---:|",
    ]
    for label, argv in COMMANDS.items():
        lines.append(_row(label, wall_times(argv, runs))[0])
    lines += cluster_section(runs)
    lines += ["", "Slowest imports of `steprun --help` (cumulative, one run):", ""]
    lines += [f"- `{name}` {seconds:.3f} s" for name, seconds in slowest_imports()]
    if os.environ.get("KUBECONFIG"):
        lines += ["", "Slowest imports of `steprun list` (cumulative, one run):", ""]
        lines += [f"- `{name}` {seconds:.3f} s" for name, seconds in slowest_imports(["list"])]
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, steprun.cli.main; "
            "print(sorted(set(sys.modules) & {'kubernetes', 'pydantic', 'yaml', 'kopf'}))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout.strip()
    lines += ["", f"Heavy packages loaded by building the parser: {loaded}", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "cli-startup.md"))
    args = parser.parse_args()
    text = report(args.runs)
    if args.out == "-":
        print(text)
    else:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
