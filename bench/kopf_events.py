"""kopf's own CPU per watch event, with kopf's default settings and with the operator's.

    python -m bench.kopf_events             # 3 runs of 3000 Pod and 3000 StepRun events each
    python -m bench.kopf_events --events 10000 --runs 5

Drives kopf's event processing (the code every watch event goes through) with the operator's
real handlers and an in-memory API, so the number is kopf's work plus the handlers' (feeding the
caches), without the network. Bodies are shaped like what the API server sends, managedFields
included. Prints CPU milliseconds per event, the median of the runs and their spread.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any, cast

import kopf
from kopf._cogs.structs import bodies, ephemera, references
from kopf._core.actions import lifecycles
from kopf._core.engines import indexing
from kopf._core.reactor import inventory, processing

from steprun.api.models import GROUP, STEPRUN_PLURAL, VERSION
from steprun.config import OperatorConfig
from steprun.handlers.kopf_handlers import configure_settings, register
from steprun.kube.client import Kube
from steprun.reconcile.reconciler import Reconciler
from steprun.render.names import LABEL_NAME

PODS = references.Resource(
    group="",
    version="v1",
    plural="pods",
    kind="Pod",
    namespaced=True,
    verbs=frozenset({"list", "watch"}),
)
STEPRUNS = references.Resource(
    group=GROUP,
    version=VERSION,
    plural=STEPRUN_PLURAL,
    kind="StepRun",
    namespaced=True,
    verbs=frozenset({"list", "watch"}),
)


def _managed_fields(n: int) -> list[dict[str, Any]]:
    return [
        {
            "manager": "kubelet",
            "operation": "Update",
            "fieldsType": "FieldsV1",
            "fieldsV1": {f"f:field{i}": {"f:sub": {}} for i in range(n)},
        }
    ]


def steprun_body(i: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "StepRun",
        "metadata": {
            "name": f"s{i}",
            "namespace": "bench",
            "uid": f"u{i}",
            "resourceVersion": str(i + 1),
            "generation": 1,
            "managedFields": _managed_fields(20),
        },
        "spec": {
            "image": "steprun.local/step:1",
            "script": "exit 0",
            "context": {"inputs": {"branch": "main", "n": i}, "env": {"CI": "true"}},
        },
        "status": {
            "phase": "Running",
            "attempt": 1,
            "podName": f"s{i}-1",
            "attempts": [{"attempt": 1, "podName": f"s{i}-1"}],
        },
    }


def pod_body(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"s{i}-1",
            "namespace": "bench",
            "uid": f"p{i}",
            "resourceVersion": str(i + 1),
            "labels": {LABEL_NAME: f"s{i}"},
            "ownerReferences": [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "StepRun",
                    "name": f"s{i}",
                    "uid": f"u{i}",
                    "controller": True,
                }
            ],
            "managedFields": _managed_fields(40),
        },
        "spec": {
            "containers": [
                {
                    "name": "step",
                    "image": "steprun.local/step:1",
                    "env": [{"name": f"E{k}", "value": "v"} for k in range(8)],
                    "volumeMounts": [{"name": "context", "mountPath": "/c"}],
                }
            ],
            "volumes": [{"name": "context", "configMap": {"name": f"s{i}-context"}}],
        },
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": t, "status": "True"}
                for t in (
                    "PodReadyToStartContainers",
                    "Initialized",
                    "Ready",
                    "ContainersReady",
                    "PodScheduled",
                )
            ],
            "containerStatuses": [
                {
                    "name": "step",
                    "ready": True,
                    "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
                }
            ],
        },
    }


async def _run(defaults: bool, events: int) -> float:
    config = OperatorConfig()
    # No request is made: the handlers only feed the caches.
    reconciler = Reconciler(cast(Kube, None), config)
    # Only the caches are measured: the work queue would start reconciles.
    reconciler.queue.add = lambda key: None  # type: ignore[method-assign]
    registry = kopf.OperatorRegistry()
    register(registry, reconciler, config)
    settings = kopf.OperatorSettings()
    if defaults:
        settings.posting.enabled = False
    else:
        configure_settings(settings, config)
    memories = inventory.ResourceMemories()
    # Built before the clock starts: parsing the watch stream is not what is measured.
    stream = [
        (r, b) for i in range(events) for r, b in ((STEPRUNS, steprun_body(i)), (PODS, pod_body(i)))
    ]
    started = time.process_time()
    for resource, body in stream:
        await processing.process_resource_event(
            lifecycle=lifecycles.all_at_once,
            indexers=indexing.OperatorIndexers(),
            registry=registry,
            settings=settings,
            memories=memories,
            memobase=cast(ephemera.AnyMemo, ephemera.Memo()),
            resource=resource,
            raw_event=cast(bodies.RawEvent, {"type": "MODIFIED", "object": body}),
            event_queue=asyncio.Queue(),
            no_throttling=True,
        )
    return (time.process_time() - started) / (2 * events) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for label, defaults in (("kopf defaults", True), ("operator settings", False)):
        runs = [asyncio.run(_run(defaults, args.events)) for _ in range(args.runs)]
        print(
            f"{label:18} {statistics.median(runs):.3f} ms CPU per event "
            f"(runs: {', '.join(f'{r:.3f}' for r in runs)})"
        )


if __name__ == "__main__":
    main()
