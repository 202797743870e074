"""The operator process: logging, metrics, the reconciler, and kopf's watch loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys

import kopf

from steprun import metrics
from steprun.activity import Activity
from steprun.config import OperatorConfig
from steprun.handlers.health import Watchers
from steprun.handlers.heap import ListingRelease, release_after_listings
from steprun.handlers.kopf_handlers import register
from steprun.kube.client import Kube
from steprun.log import configure, get_logger
from steprun.reconcile.reconciler import Reconciler

# The API server accepts JSON nested up to 10,000 levels (Go's encoding/json limit, also
# apimachinery's); CPython's json, which kopf's watch and list parsing and the API client use,
# stops at the interpreter's recursion limit (1,000 by default), and the client library's own
# serialisation recurses twice per level. A lower limit lets one StepRun stop every watcher.
API_SERVER_MAX_JSON_DEPTH = 10_000
RECURSION_LIMIT = 5 * API_SERVER_MAX_JSON_DEPTH


def allow_api_server_depth() -> None:
    """Lets the operator read anything the API server stores (measured to fit the main thread's
    default 8 MiB stack with room to spare: json recurses in C, Python frames use no C stack)."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), RECURSION_LIMIT))


def peering_identity() -> str:
    """This replica's name in the peering records: the Pod's name in a cluster (POD_ID), so a
    replacement Pod takes over its predecessor's record; else host and process."""
    return os.environ.get("POD_ID") or f"{socket.gethostname()}-{os.getpid()}"


async def _announce_ready(
    ready: asyncio.Event, config: OperatorConfig, activity: Activity, reconciler: Reconciler
) -> None:
    await ready.wait()
    activity.started = True
    # Loudly, before anything runs, if steps that name Secrets will not run (or run unchecked).
    await reconciler.tenancy.announce()
    get_logger("steprun").info(
        "operator ready", namespaces=config.namespaces or "all", peering=config.peering or None
    )


async def operate(config: OperatorConfig) -> None:
    kube = await Kube.connect(
        qps=config.api_qps, burst=config.api_burst, proxy=config.api_proxy or None
    )
    reconciler = Reconciler(kube, config)
    watchers = Watchers()
    watchers.install(asyncio.get_running_loop())
    registry = kopf.OperatorRegistry()
    listings = ListingRelease()
    register(registry, reconciler, config, watchers, listings)
    ready = asyncio.Event()
    stop = asyncio.Event()
    activity = Activity(
        peering=config.peering, identity=peering_identity(), priority=config.priority
    )
    activity.on_change.append(metrics.set_active)

    def shut_down() -> None:
        activity.stopping = True  # unready at once: no new work is routed to a leaving replica
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, shut_down)
    stop_serving = (
        await metrics.serve(config.metrics_port, activity.ready) if config.metrics_port else None
    )
    announcer = asyncio.create_task(_announce_ready(ready, config, activity, reconciler))
    tracker = asyncio.create_task(activity.run(kube))
    releaser = asyncio.create_task(release_after_listings(listings, clock=loop.time))
    try:
        await kopf.operator(
            registry=registry,
            clusterwide=not config.namespaces,
            namespaces=config.namespaces,
            standalone=not config.peering,
            priority=config.priority,
            peering_name=config.peering or None,
            identity=activity.identity,  # type: ignore[arg-type]
            liveness_endpoint=f"http://0.0.0.0:{config.health_port}/healthz"
            if config.health_port
            else None,
            ready_flag=ready,
            stop_flag=stop,
        )
    finally:
        activity.stopping = True
        announcer.cancel()
        releaser.cancel()
        tracker.cancel()
        if stop_serving is not None:
            await stop_serving()


def run_operator(config: OperatorConfig) -> None:
    configure(config.log_level)
    allow_api_server_depth()
    asyncio.run(operate(config))


if __name__ == "__main__":
    # Configuration from STEPRUN_* environment variables only; `steprun operator` adds flags.
    run_operator(OperatorConfig())
