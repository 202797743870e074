"""What to run, from the command line or BENCH_* environment variables (pure parsing)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from bench.workload import NodeMode

REPO = Path(__file__).resolve().parent.parent


def parse_sizes(text: str) -> tuple[int, ...]:
    sizes = tuple(int(part) for part in text.split(",") if part.strip())
    if not sizes or any(size < 1 for size in sizes):
        raise ValueError(f"sizes must be positive integers: {text!r}")
    return sizes


def parse_labels(text: str) -> tuple[tuple[str, str], ...]:
    """ "pool=bench,zone=a" -> (("pool", "bench"), ("zone", "a"))."""
    labels = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ValueError(f"node labels are key=value pairs: {text!r}")
        labels.append((key, value))
    return tuple(labels)


def parse_rates(text: str) -> tuple[float | None, ...]:
    """ "10,50,burst" -> (10.0, 50.0, None): steps per second per side, or a burst."""
    rates: list[float | None] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part == "burst":
            rates.append(None)
            continue
        rate = float(part.removesuffix("/s"))
        if rate <= 0:
            raise ValueError(f"rates must be positive or 'burst': {text!r}")
        rates.append(rate)
    if not rates:
        raise ValueError("no rate given")
    return tuple(rates)


CONTROLLER_MANAGER_MODES = ("unthrottled", "default", "as found")


def parse_modes(text: str) -> tuple[str, ...]:
    """ "unthrottled,default" -> ("unthrottled", "default"); see hack/controller-manager.sh."""
    modes = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [mode for mode in modes if mode not in CONTROLLER_MANAGER_MODES]
    if not modes or unknown:
        raise ValueError(
            f"controller-manager modes are {', '.join(CONTROLLER_MANAGER_MODES)}: {text!r}"
        )
    return modes


@dataclass(frozen=True)
class Settings:
    sizes: tuple[int, ...]
    rates: tuple[float | None, ...]
    nodes: NodeMode
    out_dir: Path
    kubeconfig: Path
    audit_log: Path | None
    pid_dir: Path | None
    real_size: int = 20  # a small set on the real kubelet next to each kwok size; 0: none
    real_rate: float = 10.0
    context_bytes: int = 2048
    run_duration: str = "1s"
    concurrency: int = 32
    timeout: float | None = None
    profile: bool = False
    operator_env: dict[str, str] = field(default_factory=dict)
    node_labels: tuple[tuple[str, str], ...] = ()
    repeats: int = 3  # runs per configuration, for the spread
    # Each mode restarts the controller-manager with hack/controller-manager.sh; "as found"
    # leaves it as it runs.
    controller_managers: tuple[str, ...] = ("unthrottled", "default")
    allow_local_changes: bool = False
    cluster_dir: Path = REPO / ".cluster"

    def describe(self) -> dict[str, Any]:
        rates = ", ".join("burst" if r is None else f"{r:g}/s per side" for r in self.rates)
        return {
            "sizes": ", ".join(map(str, self.sizes)),
            "rates": rates,
            "nodes": self.nodes + "".join(f", {key}={value}" for key, value in self.node_labels),
            "real-kubelet set": f"{self.real_size} per side at {self.real_rate:g}/s"
            if self.nodes == "kwok" and self.real_size
            else "none",
            "context": f"{self.context_bytes} bytes of inputs, 3 env vars, 1 Secret key",
            "fake run time per Pod": self.run_duration if self.nodes == "kwok" else "n/a",
            "creates in flight": self.concurrency,
            "operator env": self.operator_env or "defaults",
            "profiled": self.profile,
            "runs per configuration": self.repeats,
            "controller-manager modes": ", ".join(self.controller_managers),
        }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="StepRun versus Job on the current cluster."
    )
    parser.add_argument("--sizes", help="steps per side, e.g. 100,1000 (BENCH_SIZES)")
    parser.add_argument("--rates", help="per-side rates, e.g. 10,50,burst (BENCH_RATES)")
    parser.add_argument("--nodes", choices=["kwok", "real"], help="where Pods run (BENCH_NODES)")
    parser.add_argument("--out", help="results directory (BENCH_OUT)")
    parser.add_argument("--real-size", type=int, help="real-kubelet set size (BENCH_REAL_SIZE)")
    parser.add_argument("--context-bytes", type=int, help="inputs size (BENCH_CONTEXT_BYTES)")
    parser.add_argument("--run-duration", help="fake Pod run time (BENCH_RUN_DURATION)")
    parser.add_argument("--concurrency", type=int, help="creates in flight (BENCH_CONCURRENCY)")
    parser.add_argument("--timeout", type=float, help="seconds per scenario (BENCH_TIMEOUT)")
    parser.add_argument("--profile", action="store_true", help="py-spy the operator")
    parser.add_argument("--repeats", type=int, help="runs per configuration (BENCH_REPEATS)")
    parser.add_argument(
        "--controller-manager",
        help="Job controller modes: unthrottled,default or 'as found' (BENCH_CONTROLLER_MANAGER)",
    )
    parser.add_argument(
        "--allow-local-changes",
        action="store_true",
        help="run from a tree that differs from its commit (the report says so)",
    )
    parser.add_argument(
        "--node-labels", help="more kwok node labels to select, k=v,... (BENCH_NODE_LABELS)"
    )
    return parser


def settings_from(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    args = _parser().parse_args(argv)

    def pick(flag: Any, name: str, default: str) -> str:
        return str(flag) if flag is not None else environ.get(name, default)

    nodes = pick(args.nodes, "BENCH_NODES", "kwok")
    if nodes not in ("kwok", "real"):
        raise ValueError(f"BENCH_NODES must be kwok or real, not {nodes!r}")
    cluster_dir = Path(environ.get("CLUSTER_DIR") or REPO / ".cluster")
    kubeconfig = Path(environ.get("KUBECONFIG") or cluster_dir / "kubeconfig")
    audit = environ.get("BENCH_AUDIT_LOG", str(cluster_dir / "logs" / "audit.log"))
    pids = environ.get("BENCH_PID_DIR", str(cluster_dir / "pids"))
    timeout = pick(args.timeout, "BENCH_TIMEOUT", "")
    operator_env = {k: v for k, v in environ.items() if k.startswith("STEPRUN_")}
    return Settings(
        sizes=parse_sizes(pick(args.sizes, "BENCH_SIZES", "100,1000")),
        rates=parse_rates(pick(args.rates, "BENCH_RATES", "10,50,burst")),
        nodes=cast(NodeMode, nodes),
        out_dir=Path(pick(args.out, "BENCH_OUT", str(REPO / "bench" / "results"))),
        kubeconfig=kubeconfig,
        audit_log=Path(audit) if audit else None,
        pid_dir=Path(pids) if pids else None,
        real_size=int(pick(args.real_size, "BENCH_REAL_SIZE", "20")),
        context_bytes=int(pick(args.context_bytes, "BENCH_CONTEXT_BYTES", "2048")),
        run_duration=pick(args.run_duration, "BENCH_RUN_DURATION", "1s"),
        concurrency=int(pick(args.concurrency, "BENCH_CONCURRENCY", "32")),
        timeout=float(timeout) if timeout else None,
        profile=args.profile or environ.get("BENCH_PROFILE", "") in ("1", "true", "yes"),
        operator_env=operator_env,
        node_labels=parse_labels(pick(args.node_labels, "BENCH_NODE_LABELS", "")),
        repeats=int(pick(args.repeats, "BENCH_REPEATS", "3")),
        controller_managers=parse_modes(
            pick(args.controller_manager, "BENCH_CONTROLLER_MANAGER", "unthrottled,default")
        ),
        allow_local_changes=args.allow_local_changes
        or environ.get("BENCH_ALLOW_LOCAL_CHANGES", "") in ("1", "true", "yes"),
        cluster_dir=cluster_dir,
    )
