"""python -m bench: run every size and rate, write one report per size (see docs/benchmark.md)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import machine, report
from bench.identity import whoami
from bench.kube import Api, ApiError
from bench.scenario import Environment, ScenarioResult, ScenarioSpec, run_scenario
from bench.settings import REPO, Settings, settings_from
from steprun.api.resources import STEPRUN, resource

STEPRUN_CRD = f"{STEPRUN.plural}.{STEPRUN.group}"


def _log(text: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {text}", file=sys.stderr, flush=True)


async def _preflight(api: Api, settings: Settings) -> None:
    try:
        await api.request("GET", resource("CustomResourceDefinition").path(name=STEPRUN_CRD))
    except ApiError as error:
        raise SystemExit(
            f"the StepRun CRD is not installed ({error}): kubectl apply -f crds"
        ) from None
    if settings.nodes == "kwok":
        wanted = ",".join(["type=kwok", *(f"{k}={v}" for k, v in settings.node_labels)])
        nodes = await api.request("GET", resource("Node").path(), query={"labelSelector": wanted})
        if not nodes.get("items"):
            raise SystemExit(f"no kwok nodes ({wanted}): run hack/kwok-up.sh N first")
        if not any(_ready(node) for node in nodes["items"]):
            # Nodes stay registered when kwok stops; every Pod would then wait unscheduled.
            raise SystemExit(
                f"no kwok node ({wanted}) is Ready: is kwok running? hack/kwok-up.sh N"
            )


def _ready(node: dict[str, Any]) -> bool:
    conditions = node.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def mode_order(modes: tuple[str, ...], found: str) -> list[str]:
    """The modes to run, the one the cluster was found in last: the run leaves it as it was."""
    return sorted(modes, key=lambda mode: mode == found)


def found_mode(flags: list[str] | None) -> str:
    """How the controller-manager runs now (by its client limit flag)."""
    if flags is None:
        return "as found"
    return "unthrottled" if any(f.startswith("--kube-api-qps") for f in flags) else "default"


def _restart_controller_manager(settings: Settings, mode: str) -> None:
    if mode == "as found":
        return
    script = REPO / "hack" / "controller-manager.sh"
    env = {**os.environ, "CLUSTER_DIR": str(settings.cluster_dir)}
    subprocess.run([str(script), mode], env=env, check=True, capture_output=True, text=True)


def _specs(settings: Settings, size: int, mode: str) -> list[ScenarioSpec]:
    base = ScenarioSpec(
        size=size,
        rate=None,
        nodes=settings.nodes,
        context_bytes=settings.context_bytes,
        run_duration=settings.run_duration,
        concurrency=settings.concurrency,
        timeout=settings.timeout,
        profile=settings.profile,
        operator_env=settings.operator_env,
        node_labels=settings.node_labels,
        controller_manager=mode,
    )
    configurations = [replace(base, rate=rate) for rate in settings.rates]
    if settings.nodes == "kwok" and settings.real_size:
        configurations.append(
            replace(base, size=settings.real_size, rate=settings.real_rate, nodes="real")
        )
    return [
        replace(spec, repeat=repeat)
        for spec in configurations
        for repeat in range(1, settings.repeats + 1)
    ]


def _work_dir(scratch: str) -> Path:
    work_dir = Path(os.environ.get("BENCH_WORK_DIR") or scratch)
    work_dir.mkdir(parents=True, exist_ok=True)
    return work_dir


async def main(settings: Settings) -> list[Path]:
    api = await Api.connect(str(settings.kubeconfig), connections=settings.concurrency + 16)
    written = []
    try:
        await _preflight(api, settings)
        client_user = await whoami(api)
        description = await machine.describe(api, settings.pid_dir)
        found = found_mode(
            machine.controller_flags(settings.pid_dir).get("kube-controller-manager")
        )
        audit_log = (
            settings.audit_log if settings.audit_log and settings.audit_log.exists() else None
        )
        with tempfile.TemporaryDirectory(prefix="steprun-bench-") as scratch:
            work_dir = _work_dir(scratch)
            env = Environment(
                settings.kubeconfig, audit_log, settings.pid_dir, work_dir, client_user
            )
            for size in settings.sizes:
                results: list[ScenarioResult] = []
                stem = f"{datetime.now(UTC):%Y-%m-%d}-{size}"
                for mode in mode_order(settings.controller_managers, found):
                    _log(f"controller-manager: {mode}")
                    await asyncio.to_thread(_restart_controller_manager, settings, mode)
                    for spec in _specs(settings, size, mode):
                        results.append(await run_scenario(api, spec, env, _log))
                        # Written after every scenario: an interrupted run keeps what it measured.
                        path = report.write(
                            settings.out_dir, stem, size, results, description, settings.describe()
                        )
                _log(f"report: {path}")
                written.append(path)
    finally:
        await api.close()
    return written


def require_committed(settings: Settings) -> str:
    """The revision a report is made from; local changes make a report nobody can reproduce."""
    commit, dirty = machine.revision()
    if dirty and not settings.allow_local_changes:
        raise SystemExit(
            "the tree differs from its commit: commit first (a report names the revision it "
            "measured), or pass --allow-local-changes (BENCH_ALLOW_LOCAL_CHANGES=1)"
        )
    return commit


async def _run(settings: Settings) -> list[Path]:
    # SIGTERM cancels like Ctrl-C does, so each scenario still stops its operator and deletes
    # its namespaces on the way out.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await main(settings)


if __name__ == "__main__":
    chosen = settings_from(sys.argv[1:], os.environ)
    require_committed(chosen)
    asyncio.run(_run(chosen))
