"""Operator memory against retained terminal StepRuns: python -m bench.memory.

Fills one namespace with finished StepRuns as the operator leaves them (terminal status with
an attempt, outputs and conditions; each with its finished Pod on a kwok node, owned by it),
then at each size starts a fresh operator, lets it list everything and settle, and reads its
resident memory (VmRSS) and peak (VmHWM) from /proc. A fresh start is the worst case: the
operator relists everything after a restart. Writes a Markdown report with the curve.

    python -m bench.memory          # BENCH_MEMORY_SIZES=0,1000,...; needs hack/kwok-up.sh N

``BENCH_MEMORY_PYTHON`` runs another build of the operator; ``BENCH_MEMORY_BASELINE_PYTHON``
also measures that build (e.g. main's virtualenv) at each size, beside this one.
``BENCH_MEMORY_NAMESPACE`` fills (and keeps) that namespace instead of a fresh one, counting
the StepRuns already in it, so a later run adds only the difference to larger sizes (creating
the objects is the slow part) and a smaller size deletes the surplus (with its Pods). Needs the
CRDs applied and kwok nodes (the Pods must end Succeeded somewhere). The report names the
commit it measured and refuses a tree with local changes unless ``BENCH_ALLOW_LOCAL_CHANGES=1``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import machine
from bench.kube import Api, ApiError
from bench.operator import OperatorProcess
from bench.procstat import cpu_seconds, memory_bytes
from bench.scenario import _operator_metrics
from bench.workload import KWOK_NODE_SELECTOR, KWOK_TOLERATION, RUN_DURATION_ANNOTATION
from steprun.api.resources import STEPRUN, resource

GROUP_VERSION = STEPRUN.api_version
CONCURRENCY = 32
# The operator has settled once it uses less CPU than this per second, twice in a row.
SETTLED_CPU_PER_SECOND = 0.02
# Issue 12's bound, 250 MB, and issue 16's per retained StepRun, 15 KB (decimal units).
LIMIT_BYTES = 250 * 10**6
PER_STEPRUN_LIMIT_BYTES = 15 * 10**3
DEFAULT_SIZES = "0,1000,2500,5000,7500,10000"
LISTED_WITHIN_SECONDS = 600


def _log(text: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {text}", file=sys.stderr, flush=True)


def _steprun(name: str) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "StepRun",
        "metadata": {"name": name, "labels": {"steprun.dev/workflow": "bench-memory"}},
        "spec": {
            "image": "steprun.local/step:1",
            "script": "echo building; make -j4 all",
            "context": {
                "workflow": {"name": "bench-memory", "runId": "1", "stepId": name},
                "env": {"CI": "true", "BRANCH": "main"},
                "inputs": {"repository": "https://example.invalid/repo.git", "files": 120},
            },
        },
    }


def _status(name: str, now: str) -> dict[str, Any]:
    message = "the step completed"
    return {
        "phase": "Succeeded",
        "reason": "Completed",
        "message": message,
        "exitCode": 0,
        "outputs": {"digest": "sha256:" + "0" * 64, "artifacts": 2},
        "podName": f"{name}-1",
        "attempt": 1,
        "attempts": [
            {
                "attempt": 1,
                "podName": f"{name}-1",
                "exitCode": 0,
                "reason": "Completed",
                "message": message,
                "creationTime": now,
                "startTime": now,
                "completionTime": now,
            }
        ],
        "startTime": now,
        "completionTime": now,
        "duration": "0s",
        "observedGeneration": 1,
        "conditions": [
            {
                "type": "Succeeded",
                "status": "True",
                "reason": "Completed",
                "message": message,
                "lastTransitionTime": now,
                "observedGeneration": 1,
            }
        ],
    }


def _pod(name: str, owner_uid: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{name}-1",
            "labels": {
                "app.kubernetes.io/managed-by": "steprun",
                "steprun.dev/name": name,
                "steprun.dev/uid": owner_uid,
                "steprun.dev/attempt": "1",
                "steprun.dev/component": "pod",
            },
            "annotations": {RUN_DURATION_ANNOTATION: "0s"},
            "ownerReferences": [
                {
                    "apiVersion": GROUP_VERSION,
                    "kind": "StepRun",
                    "name": name,
                    "uid": owner_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": dict(KWOK_NODE_SELECTOR),
            "tolerations": [KWOK_TOLERATION],
            "containers": [{"name": "step", "image": "steprun.local/step:1"}],
        },
    }


async def _retain_one(api: Api, namespace: str, name: str) -> None:
    base = STEPRUN.path(namespace)
    created = await api.create(_steprun(name), base)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    await api.request(
        "PATCH",
        STEPRUN.path(namespace, name, "status"),
        {"status": _status(name, now)},
        content_type="application/merge-patch+json",
    )
    await api.create(_pod(name, created["metadata"]["uid"]), resource("Pod").path(namespace))


async def _retain(api: Api, namespace: str, start: int, stop: int) -> None:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(index: int) -> None:
        async with gate:
            await _retain_one(api, namespace, f"done-{index:05d}")

    await asyncio.gather(*(one(i) for i in range(start, stop)))


async def _shrink(api: Api, namespace: str, start: int, stop: int) -> None:
    """Deletes StepRuns ``start`` to ``stop`` - 1 and their Pods (at once, no grace), and waits
    until both are gone."""
    gate = asyncio.Semaphore(CONCURRENCY)
    query = {"gracePeriodSeconds": "0"}

    async def one(index: int) -> None:
        name = f"done-{index:05d}"
        async with gate:
            for path in (
                resource("Pod").path(namespace, f"{name}-1"),
                STEPRUN.path(namespace, name),
            ):
                try:
                    await api.request("DELETE", path, query=query)
                except ApiError as error:
                    if error.status != 404:
                        raise

    await asyncio.gather(*(one(i) for i in range(start, stop)))
    for _ in range(300):
        left = [await _retained(api, namespace, plural) for plural in ("stepruns", "pods")]
        if max(left) <= start:
            return
        await asyncio.sleep(2)
    raise SystemExit(f"{namespace} still holds {left} StepRuns and Pods, not {start}")


async def _retained(api: Api, namespace: str, plural: str = "stepruns") -> int:
    """How many StepRuns (or Pods) ``namespace`` holds (0 when it does not exist)."""
    kind = STEPRUN if plural == "stepruns" else resource("Pod")
    try:
        listed = await api.request(
            "GET",
            kind.path(namespace),
            query={"limit": "1"},
        )
    except ApiError as error:
        if error.status == 404:
            return 0
        raise
    items = len(listed.get("items") or [])
    return items + int(listed.get("metadata", {}).get("remainingItemCount") or 0)


@dataclass
class Point:
    stepruns: int
    rss: int
    peak: int
    settle_seconds: float


def listed_so_far(metrics: str) -> tuple[int, int]:
    """From the operator's metrics: the StepRuns it has seen (its phase gauge) and how many
    events it has queued (one per StepRun and one per Pod event at least)."""
    from prometheus_client.parser import text_string_to_metric_families

    stepruns = adds = 0
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == "steprun_stepruns":
                stepruns += int(sample.value)
            elif sample.name == "steprun_workqueue_adds_total":
                adds += int(sample.value)
    return stepruns, adds


async def _until_listed(port: int, size: int) -> None:
    """A quiet CPU alone is no proof of having listed: a slow list response keeps the operator
    idle while it waits. Every StepRun must be in its phase gauge and every StepRun and Pod
    event queued."""
    deadline = time.monotonic() + LISTED_WITHIN_SECONDS
    while True:
        text = await _operator_metrics(port)
        if text is not None:
            stepruns, adds = listed_so_far(text)
            if stepruns >= size and adds >= 2 * size:
                return
        if time.monotonic() > deadline:
            raise SystemExit(f"the operator did not list {size} StepRuns and Pods in time")
        await asyncio.sleep(1)


async def _measure(kubeconfig: Path, namespace: str, work: Path, size: int, python: str) -> Point:
    operator = OperatorProcess(
        kubeconfig=kubeconfig,
        namespace=namespace,
        log_path=work / f"operator-{size}.log",
        extra_env={"STEPRUN_EVENTS": "false"},
        python=python,
    )
    started = time.monotonic()
    await operator.start()
    try:
        await _until_listed(operator.metrics_port, size)
        previous = cpu_seconds(operator.pid)
        quiet = 0
        while quiet < 2:
            await asyncio.sleep(2)
            current = cpu_seconds(operator.pid)
            quiet = quiet + 1 if (current - previous) / 2 < SETTLED_CPU_PER_SECOND else 0
            previous = current
        memory = memory_bytes(operator.pid)
        return Point(size, memory["VmRSS"], memory["VmHWM"], time.monotonic() - started)
    finally:
        await operator.stop()


def bytes_per_steprun(points: list[Point]) -> float | None:
    """The slope of RSS against retained StepRuns (least squares over every point): what each
    retained StepRun with its Pod costs, the empty operator's own memory left out."""
    if len({p.stepruns for p in points}) < 2:
        return None
    n = len(points)
    mean_x = sum(p.stepruns for p in points) / n
    mean_y = sum(p.rss for p in points) / n
    covariance = sum((p.stepruns - mean_x) * (p.rss - mean_y) for p in points)
    variance = sum((p.stepruns - mean_x) ** 2 for p in points)
    return covariance / variance


def _verdicts(points: list[Point]) -> list[str]:
    largest = max(points, key=lambda p: p.stepruns)
    verdict = "within" if largest.rss <= LIMIT_BYTES else "ABOVE"
    lines = [
        f"RSS at {largest.stepruns} retained StepRuns: {largest.rss / 10**6:.0f} MB "
        f"({largest.rss / 2**20:.0f} MiB), {verdict} the 250 MB bound."
    ]
    slope = bytes_per_steprun(points)
    if slope is not None:
        per = "within" if slope <= PER_STEPRUN_LIMIT_BYTES else "ABOVE"
        lines.append(
            f"Per retained StepRun with its Pod (slope of the fit): {slope / 10**3:.1f} KB "
            f"({slope / 2**10:.1f} KiB), {per} the 15 KB target."
        )
    return lines


def _report(
    points: list[Point],
    out: Path,
    python: str,
    revision: str,
    baseline: list[Point] | None = None,
    baseline_python: str = "",
) -> None:
    """``baseline``: the same sizes measured with another build (``baseline_python``)."""
    before = {p.stepruns: p for p in baseline or []}
    lines = [
        f"# Operator memory against retained terminal StepRuns ({datetime.now(UTC):%Y-%m-%d})",
        "",
        "Each row: a fresh operator started against one namespace holding that many finished",
        "StepRuns, each with its finished Pod on a kwok node; measured once it had listed them",
        f"all and settled (CPU below {SETTLED_CPU_PER_SECOND} s/s). `python -m bench.memory` from",
        f"revision `{revision}`; operator: `{python}`"
        + (f", baseline: `{baseline_python}`." if baseline else "."),
        "",
        "| retained StepRuns (+ Pods) | RSS (MiB) | RSS (MB) | peak RSS (MiB) | settled (s) |"
        + (" baseline RSS (MiB) | baseline peak (MiB) |" if baseline else ""),
        "|---:|---:|---:|---:|---:|" + ("---:|---:|" if baseline else ""),
    ]
    for p in points:
        mib, mb, peak = p.rss / 2**20, p.rss / 10**6, p.peak / 2**20
        row = f"| {p.stepruns} | {mib:.0f} | {mb:.0f} | {peak:.0f} | {p.settle_seconds:.0f} |"
        if baseline:
            b = before.get(p.stepruns)
            row += f" {b.rss / 2**20:.0f} | {b.peak / 2**20:.0f} |" if b else " | |"
        lines.append(row)
    lines += ["", *_verdicts(points)]
    if baseline:
        lines += ["", "Baseline:", *_verdicts(baseline)]
    lines.append("")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(6, 3.5))
        sizes = [p.stepruns for p in points]
        axis.plot(sizes, [p.rss / 2**20 for p in points], "o-", label="RSS")
        axis.plot(sizes, [p.peak / 2**20 for p in points], "s--", label="peak")
        if baseline:
            axis.plot(
                [p.stepruns for p in baseline],
                [p.rss / 2**20 for p in baseline],
                "^:",
                label="RSS, baseline",
            )
        axis.axhline(LIMIT_BYTES / 2**20, color="grey", linestyle=":", label="250 MB")
        axis.set_xlabel("retained terminal StepRuns")
        axis.set_ylabel("MiB")
        axis.legend()
        figure.tight_layout()
        figure.savefig(out.with_suffix(".png"))
        lines.append(f"![memory curve]({out.with_suffix('.png').name})")
    except ImportError:
        pass
    out.write_text("\n".join(lines) + "\n")


async def main() -> None:
    kubeconfig = Path(os.environ.get("KUBECONFIG", ".cluster/kubeconfig"))
    sizes = [int(s) for s in os.environ.get("BENCH_MEMORY_SIZES", DEFAULT_SIZES).split(",")]
    python = os.environ.get("BENCH_MEMORY_PYTHON", sys.executable)
    baseline_python = os.environ.get("BENCH_MEMORY_BASELINE_PYTHON", "")
    revision, dirty = machine.revision()
    if dirty:
        if os.environ.get("BENCH_ALLOW_LOCAL_CHANGES") != "1":
            raise SystemExit(
                "the tree differs from its commit: commit first (the report names the revision "
                "it measured), or set BENCH_ALLOW_LOCAL_CHANGES=1"
            )
        revision += " WITH LOCAL CHANGES"
    out = Path(
        os.environ.get(
            "BENCH_MEMORY_REPORT",
            f"bench/results/memory-{datetime.now(UTC):%Y-%m-%d}-{max(sizes)}.md",
        )
    )
    kept = os.environ.get("BENCH_MEMORY_NAMESPACE")
    namespace = kept or f"bench-memory-{uuid.uuid4().hex[:6]}"
    api = await Api.connect(str(kubeconfig))
    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    points: list[Point] = []
    baseline: list[Point] = []
    try:
        retained = await _retained(api, namespace) if kept else 0
        try:
            await api.create({"metadata": {"name": namespace}}, resource("Namespace").path())
        except ApiError as error:
            if not (kept and error.status == 409):
                raise
        # A kept namespace that is already full is measured from its size down.
        for size in sorted(sizes, reverse=bool(kept) and retained >= max(sizes)):
            if size < retained:
                _log(f"deleting {retained - size} StepRuns and their Pods (to {size})")
                await _shrink(api, namespace, size, retained)
            else:
                _log(f"retaining {size - retained} more StepRuns (to {size})")
                await _retain(api, namespace, retained, size)
            retained = size
            point = await _measure(kubeconfig, namespace, work, size, python)
            _log(f"{size}: RSS {point.rss / 2**20:.0f} MiB, peak {point.peak / 2**20:.0f} MiB")
            points.append(point)
            if baseline_python:
                other = await _measure(kubeconfig, namespace, work, size, baseline_python)
                _log(f"{size}, baseline: RSS {other.rss / 2**20:.0f} MiB")
                baseline.append(other)
            _report(
                sorted(points, key=lambda p: p.stepruns),
                out,
                python,
                revision,
                sorted(baseline, key=lambda p: p.stepruns),
                baseline_python,
            )
    finally:
        try:
            if not kept:
                await api.delete(resource("Namespace").path(name=namespace))
        except ApiError as error:
            _log(f"namespace {namespace} not deleted: {error}")
        await api.close()
    _log(f"report: {out} (operator logs in {work})")


if __name__ == "__main__":
    asyncio.run(main())
