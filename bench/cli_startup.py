"""How long `steprun --help` (and a few other answers that need no cluster) take to start.

    python -m bench.cli_startup            # 20 runs of each; writes bench/results/cli-startup.md
    python -m bench.cli_startup --runs 50 --out -

Each command runs as a fresh process, as a shell runs it; the report gives the median and the
95th percentile of the wall time, and what `python -X importtime` says the slowest imports
of `steprun --help` are. The aim is that `--help` answers well under 0.3 s: it must not load
the Kubernetes client (which alone costs most of a second).
"""

from __future__ import annotations

import argparse
import os
import platform
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


def wall_times(argv: list[str] | None, runs: int) -> list[float]:
    command = (
        [sys.executable, "-m", "steprun", *argv]
        if argv is not None
        else [sys.executable, "-c", "pass"]
    )
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=REPO
        )
        times.append(time.perf_counter() - started)
    return times


def slowest_imports(count: int = 8) -> list[tuple[str, float]]:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "steprun", "--help"],
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


def report(runs: int) -> str:
    lines = [
        "# CLI startup",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, {runs} runs each.",
        "",
        "| command | median s | p95 s |",
        "|---|---:|---:|",
    ]
    for label, argv in COMMANDS.items():
        times = sorted(wall_times(argv, runs))
        p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
        lines.append(f"| `{label}` | {statistics.median(times):.3f} | {p95:.3f} |")
    lines += ["", "Slowest imports of `steprun --help` (cumulative, one run):", ""]
    lines += [f"- `{name}` {seconds:.3f} s" for name, seconds in slowest_imports()]
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
