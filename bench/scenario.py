"""One scenario: N StepRuns, N equivalent Jobs and N equivalent bare Pods submitted side by side,
measured, cleaned up.

Each arm ("side") gets its own namespace, so the audit log attributes every request to a side by
namespace and to a client by user. The operator runs as a process of its own, with its own
identity, watching only the StepRun namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import audit, identity, machine, promtext
from bench.kube import Api, ApiError, Body
from bench.operator import OperatorProcess
from bench.pacing import Pacer, interleaved
from bench.procstat import Usage, UsageSampler, memory_bytes, pid_from_file
from bench.profiler import Profiler, hotspots
from bench.recorder import Recorder, streams
from bench.stats import SideSummary, latencies, summarize
from bench.workload import (
    BENCH_LABEL,
    NodeMode,
    Side,
    Workload,
    bare_pod,
    job,
    job_context_configmap,
    source_secret,
    steprun,
)
from steprun.api.resources import resource

Log = Callable[[str], Any]
# Cluster processes whose CPU and memory are reported next to the operator's.
CLUSTER_PROCESSES = ("kube-controller-manager", "kube-apiserver", "etcd", "kube-scheduler", "kwok")


@dataclass(frozen=True)
class ScenarioSpec:
    size: int
    rate: float | None  # steps per second per side; None: a burst
    nodes: NodeMode
    context_bytes: int = 2048
    run_duration: str = "1s"
    concurrency: int = 32  # creates in flight at once
    timeout: float | None = None  # for everything to finish; None: derived from the size
    profile: bool = False
    operator_env: dict[str, str] = field(default_factory=dict)
    node_labels: tuple[tuple[str, str], ...] = ()
    # How the controller-manager (the Job controller) ran: "default", "unthrottled" or "as found".
    controller_manager: str = "as found"
    repeat: int = 1  # which of the configuration's runs this is, from 1

    @property
    def rate_label(self) -> str:
        return "burst" if self.rate is None else f"{self.rate:g}/s"

    def deadline_seconds(self) -> float:
        if self.timeout is not None:
            return self.timeout
        submitting = self.size / self.rate if self.rate else 0.0
        return submitting + 300 + 0.6 * self.size


@dataclass(frozen=True)
class Environment:
    kubeconfig: Path
    audit_log: Path | None
    pid_dir: Path | None
    work_dir: Path  # operator logs, kubeconfigs, profiles
    client_user: str


@dataclass
class ScenarioResult:
    spec: ScenarioSpec
    run_id: str
    started_at: str
    namespaces: dict[str, str]
    operator_user: str
    submission_seconds: float = math.nan
    summaries: dict[str, SideSummary] = field(default_factory=dict)
    latencies: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    usage: dict[str, Usage] = field(default_factory=dict)
    audit_rows: list[dict[str, Any]] = field(default_factory=list)
    audit_complete: bool = False
    apiserver_writes: dict[str, int] = field(default_factory=dict)
    operator_requests: dict[str, int] = field(default_factory=dict)
    # promtext.operator_timings: where a step's time goes inside the operator.
    operator_timings: list[dict[str, Any]] = field(default_factory=list)
    hotspots: dict[str, Any] | None = None
    controller_flags: dict[str, list[str]] = field(default_factory=dict)
    # (seconds since submission began, terminal StepRuns so far, operator RSS bytes)
    rss_curve: list[tuple[float, int, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    watch_events: int = 0
    cleanup_seconds: float = math.nan


def run_id_for(spec: ScenarioSpec, now: datetime) -> str:
    rate = "burst" if spec.rate is None else f"{spec.rate:g}".replace(".", "p")
    return f"{now:%m%d%H%M%S}-{spec.size}-{rate}-{spec.nodes[0]}{spec.repeat}"


def _paths(namespace: str) -> dict[str, str]:
    return {
        "stepruns": resource("StepRun").path(namespace),
        "jobs": resource("Job").path(namespace),
        "pods": resource("Pod").path(namespace),
        "configmaps": resource("ConfigMap").path(namespace),
        "secrets": resource("Secret").path(namespace),
    }


async def _create_namespace(api: Api, name: str, run_id: str) -> None:
    await api.create(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {BENCH_LABEL: run_id}},
        },
        resource("Namespace").path(),
    )
    # Pods need the namespace's default ServiceAccount, which a controller adds shortly after.
    for _ in range(300):
        try:
            await api.request("GET", resource("ServiceAccount").path(name, "default"))
            return
        except ApiError as error:
            if error.status != 404:
                raise
            await asyncio.sleep(0.1)
    raise RuntimeError(f"namespace {name} got no default ServiceAccount")


async def _bounded(
    count: int, concurrency: int, work: Callable[[int], Any], pacer: Pacer | None = None
) -> None:
    limit = asyncio.Semaphore(concurrency)
    tasks: set[asyncio.Task[None]] = set()

    async def one(index: int) -> None:
        try:
            await work(index)
        finally:
            limit.release()

    for index in range(count):
        if pacer is not None:
            await pacer.wait()
        await limit.acquire()
        task = asyncio.get_running_loop().create_task(one(index))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.gather(*list(tasks))


async def _metrics_text(api: Api) -> str | None:
    try:
        return await api.text("/metrics")
    except Exception:
        return None  # not allowed to read metrics on this cluster: the table is left out


async def _operator_metrics(port: int) -> str | None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        await writer.drain()
        raw = await reader.read()
        writer.close()
        return raw.partition(b"\r\n\r\n")[2].decode()
    except OSError:
        return None


async def _sample_rss_curve(
    result: ScenarioResult, recorder: Recorder, pid: int, begin: float, interval: float = 1.0
) -> None:
    """The operator's RSS against the StepRuns it retains (terminal ones stay until deleted)."""
    while True:
        with contextlib.suppress(OSError):
            rss = memory_bytes(pid).get("VmRSS", 0)
            finished = recorder.timelines["steprun"].finished()
            result.rss_curve.append((time.monotonic() - begin, finished, rss))
        await asyncio.sleep(interval)


def _processes(pid_dir: Path | None, operator_pid: int) -> dict[str, int]:
    # The benchmark's own process is a client like any other: its CPU is part of the cost.
    found = {"operator": operator_pid, "bench client": os.getpid()}
    if pid_dir is not None:
        for name in CLUSTER_PROCESSES:
            pid = pid_from_file(pid_dir / f"{name}.pid")
            if pid is not None:
                found[name] = pid
    return found


async def run_scenario(api: Api, spec: ScenarioSpec, env: Environment, log: Log) -> ScenarioResult:
    started = datetime.now(UTC)
    run_id = run_id_for(spec, started)
    namespaces: dict[Side, str] = {
        "steprun": f"bench-{run_id}-sr",
        "job": f"bench-{run_id}-job",
        "pod": f"bench-{run_id}-pod",
    }
    result = ScenarioResult(
        spec=spec,
        run_id=run_id,
        started_at=started.isoformat(timespec="seconds"),
        namespaces={str(side): ns for side, ns in namespaces.items()},
        operator_user=identity.username(namespaces["steprun"]),
    )
    workload = Workload(run_id, spec.nodes, spec.context_bytes, spec.run_duration, spec.node_labels)
    result.controller_flags = machine.controller_flags(env.pid_dir)
    result.controller_flags["operator (env)"] = [
        f"{key}={value}" for key, value in sorted(spec.operator_env.items())
    ]
    operator: OperatorProcess | None = None
    try:
        log(f"[{run_id}] namespaces {', '.join(namespaces.values())}")
        for namespace in namespaces.values():
            await _create_namespace(api, namespace, run_id)
            await api.create(source_secret(namespace), _paths(namespace)["secrets"])
        kubeconfig = env.work_dir / f"{run_id}-operator.kubeconfig"
        await identity.create_operator_identity(
            api, namespaces["steprun"], run_id, env.kubeconfig, kubeconfig
        )
        operator = OperatorProcess(
            kubeconfig=kubeconfig,
            namespace=namespaces["steprun"],
            log_path=env.work_dir / f"{run_id}-operator.log",
            extra_env=spec.operator_env,
        )
        await operator.start()
        log(f"[{run_id}] operator ready (pid {operator.pid}); creating the Pods' ConfigMaps")

        # The Job and bare-Pod arms get their context the way a user of them would provide it:
        # a ConfigMap made beforehand, outside the measured window.
        async def make_configmap(position: int) -> None:
            side: Side = "job" if position % 2 == 0 else "pod"
            body = job_context_configmap(workload, namespaces[side], position // 2)
            await api.create(body, _paths(namespaces[side])["configmaps"])

        await _bounded(2 * spec.size, spec.concurrency, make_configmap)
        await _measure(api, spec, env, log, result, workload, namespaces, operator)
    finally:
        # The operator outlives its namespaces: an interrupted run leaves Pods holding its
        # tracking finalizer, and only the operator removes it (then the namespace can go).
        try:
            await _cleanup(api, result, log)
        finally:
            if operator is not None:
                await operator.stop()
            await identity.delete_operator_identity(api, result.run_id)
    return result


async def _measure(
    api: Api,
    spec: ScenarioSpec,
    env: Environment,
    log: Log,
    result: ScenarioResult,
    workload: Workload,
    namespaces: dict[Side, str],
    operator: OperatorProcess,
) -> None:
    recorder = Recorder(api, streams(namespaces["steprun"], namespaces["job"], namespaces["pod"]))
    await recorder.start()
    metrics_before = await _metrics_text(api)
    sampler = UsageSampler(_processes(env.pid_dir, operator.pid))
    sampler.start()
    curve = asyncio.get_running_loop().create_task(
        _sample_rss_curve(result, recorder, operator.pid, time.monotonic())
    )
    profiler = (
        Profiler(operator.pid, env.work_dir / f"{result.run_id}-profile.txt")
        if spec.profile
        else None
    )
    pacer = Pacer(len(namespaces) * spec.rate if spec.rate else None)  # one shared schedule
    order = list(interleaved(spec.size))
    begin = time.monotonic()
    log(f"[{result.run_id}] submitting {spec.size} + {spec.size} at {spec.rate_label}")

    async def submit(position: int) -> None:
        side, index = order[position]
        ns = namespaces[side]
        body: Body
        if side == "steprun":
            body, path = steprun(workload, ns, index), _paths(ns)["stepruns"]
        elif side == "job":
            body, path = job(workload, ns, index), _paths(ns)["jobs"]
        else:
            body, path = bare_pod(workload, ns, index), _paths(ns)["pods"]
        try:
            await api.create(body, path)
        except ApiError as error:
            result.errors.append(f"create {side} {index}: {error}")
            return
        recorder.timelines[side].submitted(workload.step_name(index), time.monotonic())

    await _bounded(len(order), spec.concurrency, submit, pacer)
    result.submission_seconds = time.monotonic() - begin
    submitted = {side: len(recorder.timelines[side].steps) for side in namespaces}
    finished = await recorder.wait_until_finished(
        {side: spec.size for side in namespaces},
        begin + spec.deadline_seconds(),
        lambda text: log(f"[{result.run_id}] finished: {text}"),
    )
    if not finished:
        result.errors.append(f"not all steps finished within {spec.deadline_seconds():.0f}s")
    # Context cleanup and Events follow the terminal status closely; let them land.
    await asyncio.sleep(3)
    if profiler is not None:
        summary = hotspots(await asyncio.to_thread(profiler.stop().read_text))
        result.hotspots = {
            "samples": summary.samples,
            "self": summary.self_time,
            "inclusive": summary.inclusive,
            "categories": summary.categories,
        }
    curve.cancel()
    result.usage = await sampler.stop()
    await recorder.stop()
    result.watch_events = recorder.events
    metrics_after = await _metrics_text(api)
    if metrics_before and metrics_after:
        result.apiserver_writes = promtext.delta(
            promtext.apiserver_writes(metrics_before), promtext.apiserver_writes(metrics_after)
        )
    operator_text = await _operator_metrics(operator.metrics_port)
    if operator_text:
        result.operator_requests = dict(promtext.operator_requests(operator_text))
        result.operator_timings = promtext.operator_timings(operator_text)
    for side in namespaces:
        timeline = recorder.timelines[side]
        result.summaries[side] = summarize(timeline)
        result.latencies[side] = {
            "pod_creation": latencies(timeline, "created", "pod_seen"),
            "owner_terminal": latencies(timeline, "pod_terminal", "owner_terminal"),
            "end_to_end": latencies(timeline, "created", "owner_terminal"),
        }
        bad = [
            f"{side} {name}: {times.outcome}"
            for name, times in sorted(timeline.steps.items())
            if times.outcome not in (None, "Succeeded")
        ]
        result.errors.extend(bad[:20])
    if env.audit_log is not None:
        counts = await asyncio.to_thread(_count_audit, env, result, namespaces)
        result.audit_rows = counts.rows()
        result.audit_complete = any(
            row["resource"].startswith("stepruns") for row in result.audit_rows
        )
    if api.watch_restarts:
        log(f"[{result.run_id}] {api.watch_restarts} watch restarts: {api.last_watch_error}")
    log(
        f"[{result.run_id}] done: submitted {submitted}, "
        + ", ".join(
            f"{side} {s.succeeded} ok/{s.failed} failed/{s.unfinished} unfinished"
            for side, s in result.summaries.items()
        )
    )


def _count_audit(
    env: Environment, result: ScenarioResult, namespaces: dict[Side, str]
) -> audit.RequestCounts:
    assert env.audit_log is not None
    sides = {ns: side for side, ns in namespaces.items()}
    return audit.count_requests(
        audit.entries(audit.audit_files(env.audit_log), sides),
        sides,
        operator=result.operator_user,
        client=env.client_user,
    )


async def _cleanup(api: Api, result: ScenarioResult, log: Log, patience: float = 1200) -> None:
    begin = time.monotonic()
    for namespace in result.namespaces.values():
        await api.delete(resource("Namespace").path(name=namespace))
    pending = set(result.namespaces.values())
    while pending and time.monotonic() - begin < patience:
        for namespace in list(pending):
            try:
                await api.request("GET", resource("Namespace").path(name=namespace))
            except ApiError as error:
                if error.status == 404:
                    pending.discard(namespace)
                    continue
                raise
        if pending:
            await asyncio.sleep(2)
    result.cleanup_seconds = time.monotonic() - begin
    if pending:
        result.errors.append(
            f"namespaces still terminating after {patience:.0f}s: {sorted(pending)}"
        )
    log(f"[{result.run_id}] cleaned up in {result.cleanup_seconds:.0f}s")
