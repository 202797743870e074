"""The operator's requests and CPU per successful step, on the real API server with kwok nodes.

    python -m bench.step_cost --steps 200                      # this checkout's operator
    python -m bench.step_cost --steps 200 --python OTHER/.venv/bin/python   # another checkout's
    python -m bench.step_cost --steps 200 --secret             # each step also given a Secret key

Starts the operator as its own process (bench.operator), creates ``--steps`` StepRuns with
context (env, inputs, a script) on kwok's fake nodes at ``--rate`` per second, waits until all
have Succeeded and released their Pods, and reports per step: the operator's API requests as
its access layer counted them (``steprun_api_request_duration_seconds``; writes are every verb
but GET), and its CPU time (user + system, from /proc) from the first create to the last
release, idle operator baseline not subtracted. kopf's own watch requests are not counted.
Also create → Pod, from just before each StepRun's create to its Pod's first watch event (on a
machine shared with other work, indicative only).
Needs a cluster with kwok nodes (hack/kwok-up.sh N) and the CRDs applied.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.kube import Api
from bench.operator import OperatorProcess
from bench.procstat import cpu_seconds
from bench.promtext import operator_requests
from bench.stats import Distribution
from bench.workload import (
    KWOK_NODE_SELECTOR,
    KWOK_TOLERATION,
    SOURCE_SECRET,
    SOURCE_SECRET_KEY,
    source_secret,
)
from steprun.api.resources import resource

API_VERSION = "steprun.dev/v1alpha1"


def _requests(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        return dict(operator_requests(answer.read().decode()))


def _spec(i: int, secret: bool) -> dict[str, object]:
    context: dict[str, object] = {"env": {"CI": "true"}, "inputs": {"step": i, "branch": "main"}}
    if secret:
        ref = {"name": SOURCE_SECRET, "key": SOURCE_SECRET_KEY}
        context["secrets"] = [{"name": "TOKEN", "secretKeyRef": ref}]
    return {
        "image": "steprun.local/step:1",
        "script": "true",
        "context": context,
        "podTemplate": {"nodeSelector": KWOK_NODE_SELECTOR, "tolerations": [KWOK_TOLERATION]},
    }


async def _first_seen(api: Api, path: str, version: str, seen: dict[str, float]) -> None:
    async for _, pod in api.watch(path, version):
        seen.setdefault(pod["metadata"]["name"], time.monotonic())


async def _done(api: Api, namespace: str, n: int) -> bool:
    listed = await api.request("GET", resource("StepRun").path(namespace))
    items = listed["items"]
    succeeded = sum(1 for s in items if (s.get("status") or {}).get("phase") == "Succeeded")
    failed = [
        s
        for s in items
        if (s.get("status") or {}).get("phase") not in (None, "Pending", "Running", "Succeeded")
    ]
    if failed:
        raise SystemExit(f"{len(failed)} steps did not succeed, e.g. {failed[0].get('status')}")
    pods = await api.request("GET", resource("Pod").path(namespace))
    held = [p for p in pods["items"] if p["metadata"].get("finalizers")]
    return succeeded == n and not held


async def measure(steps: int, rate: float, python: str, kubeconfig: Path, secret: bool) -> None:
    api = await Api.connect(str(kubeconfig))
    try:
        await _measure(api, steps, rate, python, kubeconfig, secret)
    finally:
        await api.close()


async def _measure(
    api: Api, steps: int, rate: float, python: str, kubeconfig: Path, secret: bool
) -> None:
    namespace = f"bench-cost-{int(time.time())}"
    await api.create({"metadata": {"name": namespace}}, resource("Namespace").path(None))
    if secret:
        await api.create(source_secret(namespace), resource("Secret").path(namespace))
    pods = resource("Pod").path(namespace)
    seen: dict[str, float] = {}
    sent: dict[str, float] = {}
    watching = asyncio.create_task(_first_seen(api, pods, await api.list_version(pods), seen))
    log = Path(tempfile.mkdtemp(prefix="step-cost-")) / "operator.log"
    operator = OperatorProcess(
        kubeconfig=kubeconfig,
        namespace=namespace,
        log_path=log,
        python=python,
        extra_env={"STEPRUN_POD_ANNOTATION_KEYS": '["kwok.steprun.dev/*"]'},
    )
    try:
        await operator.start()
        await asyncio.sleep(2)
        before, cpu_before = _requests(operator.metrics_port), cpu_seconds(operator.pid)
        started = time.monotonic()
        for i in range(steps):
            body = {
                "apiVersion": API_VERSION,
                "kind": "StepRun",
                "metadata": {"name": f"s{i}"},
                "spec": _spec(i, secret),
            }
            sent[f"s{i}-1"] = time.monotonic()
            await api.create(body, resource("StepRun").path(namespace))
            await asyncio.sleep(max(0.0, started + (i + 1) / rate - time.monotonic()))
        while not await _done(api, namespace, steps):  # noqa: ASYNC110
            await asyncio.sleep(1)
        after, cpu_after = _requests(operator.metrics_port), cpu_seconds(operator.pid)
    finally:
        watching.cancel()
        await operator.stop()
        await api.delete(resource("Namespace").path(None, namespace))
    grown = {verb: after.get(verb, 0) - before.get(verb, 0) for verb in after}
    writes = sum(n for verb, n in grown.items() if verb != "get")
    print(f"operator: {python}")
    print(f"{steps} steps at {rate}/s; requests by verb: {dict(sorted(grown.items()))}")
    print(
        f"per step: {writes / steps:.2f} writes, {grown.get('get', 0) / steps:.2f} reads, "
        f"{(cpu_after - cpu_before) / steps * 1000:.1f} ms CPU"
    )
    to_pod = Distribution.of(seen[name] - at for name, at in sent.items() if name in seen)
    print(
        f"create -> Pod ({to_pod.count} seen): p50 {to_pod.p50 * 1000:.0f} ms, "
        f"p90 {to_pod.p90 * 1000:.0f} ms, max {to_pod.max * 1000:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--secret", action="store_true", help="give each step a Secret key")
    args = parser.parse_args()
    kubeconfig = Path(os.environ.get("KUBECONFIG", "~/.kube/config")).expanduser()
    asyncio.run(measure(args.steps, args.rate, args.python, kubeconfig, args.secret))


if __name__ == "__main__":
    main()
