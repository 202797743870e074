"""The operator process: logging, metrics, the reconciler, and kopf's watch loop."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import kopf

from steprun.config import OperatorConfig
from steprun.handlers.kopf_handlers import register
from steprun.kube.client import Kube
from steprun.log import configure, get_logger
from steprun.metrics import serve_metrics
from steprun.reconcile.reconciler import Reconciler


async def _announce_ready(
    ready: asyncio.Event, config: OperatorConfig, reconciler: Reconciler
) -> None:
    await ready.wait()
    # Loudly, before anything runs, if steps that name Secrets will not run (or run unchecked).
    await reconciler.tenancy.announce()
    get_logger("steprun").info(
        "operator ready", namespaces=config.namespaces or "all", peering=config.peering or None
    )


async def operate(config: OperatorConfig) -> None:
    kube = await Kube.connect()
    reconciler = Reconciler(kube, config)
    registry = kopf.OperatorRegistry()
    register(registry, reconciler, config)
    ready = asyncio.Event()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    announcer = asyncio.create_task(_announce_ready(ready, config, reconciler))
    try:
        await kopf.operator(
            registry=registry,
            clusterwide=not config.namespaces,
            namespaces=config.namespaces,
            standalone=not config.peering,
            priority=config.priority,
            peering_name=config.peering or None,
            liveness_endpoint=f"http://0.0.0.0:{config.health_port}/healthz"
            if config.health_port
            else None,
            ready_flag=ready,
            stop_flag=stop,
        )
    finally:
        announcer.cancel()


def run_operator(config: OperatorConfig) -> None:
    configure(config.log_level)
    serve_metrics(config.metrics_port)
    asyncio.run(operate(config))


if __name__ == "__main__":
    # Configuration from STEPRUN_* environment variables only; `steprun operator` adds flags.
    run_operator(OperatorConfig())
