"""kopf wiring: watch StepRuns, step Pods and Kueue Workloads; feed the caches, queue the StepRun.

Handlers are coroutines: they only touch in-memory state and must run on the event loop
(kopf runs plain functions in a thread pool). Only low-level event handlers are used: kopf
then writes nothing of its own to the objects (no finalizers, no progress annotations, no
last-handled-configuration), so the API writes per step are exactly the reconciler's.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
from kopf._cogs.structs import bodies, references
from kopf._core.reactor import observation

from steprun.api.models import GROUP, STEPRUN_PLURAL, VERSION
from steprun.config import OperatorConfig
from steprun.handlers.health import Watchers
from steprun.handlers.heap import ListingRelease
from steprun.kube.config import connection_fields, load_configuration
from steprun.metrics import STEPRUN_PHASES
from steprun.reconcile.queue import is_terminal_body
from steprun.reconcile.reconciler import Reconciler
from steprun.render.names import LABEL_NAME
from steprun.render.owners import owner_name
from steprun.render.workload import KUEUE_GROUP


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf's diff base for change handlers, which steprun does not use.

    kopf builds the "essence" of every watched object on every event (a deep copy of the whole
    body) to compute a diff that only on.create/on.update/on.field handlers read: measured at
    about two thirds of kopf's CPU per Pod event (bench/kopf_events.py). Low-level event
    handlers need none of it, so nothing is built, fetched or stored.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


# How many objects one listing request returns. kopf hands a listed page to its per-object
# workers without waiting for them, so without pages every retained object is parsed and alive
# at once, and the allocator keeps that peak as resident memory (bench/results/memory-*.md).
LIST_CHUNK_SIZE = 500
# How long kopf's per-object worker waits for that object's next event before it exits. While it
# waits it still holds the last event it handled (the whole body): with kopf's 5 s, every object
# listed in the last 5 s stays alive, i.e. the whole listing. The workers of objects with
# frequent events are restarted more often, at the cost of creating a task.
WORKER_IDLE_SECONDS = 0.2


KOPF_NAMESPACE_EVENT = observation.process_discovered_namespace_event


async def _namespace_event_or_listing(
    *,
    raw_event: bodies.RawEvent,
    namespaces: Any,
    insights: references.Insights,
    **_: Any,
) -> None:
    async with insights.revised:
        observation.revise_namespaces(
            raw_events=[raw_event], insights=insights, namespaces=namespaces
        )
        insights.revised.notify_all()


def see_listed_namespaces() -> None:
    """Serve a namespace matching a watched pattern that kopf (1.45) would miss.

    kopf's namespace observer lists the namespaces, then starts a watcher that lists them again
    and ignores that second listing (events of type None): a namespace created between the two
    is served only from its next change, so its StepRuns wait minutes, or for ever (seen in CI
    with a namespace made right after start). This handles the watcher's listing like its
    events; the resolution is idempotent. Patched by hand: kopf has no setting for it.
    """
    observation.process_discovered_namespace_event = _namespace_event_or_listing


def configure_settings(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    # Events are posted deliberately by the reconciler (STEPRUN_EVENTS), never by kopf.
    settings.posting.enabled = False
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.watching.chunk_size = LIST_CHUNK_SIZE
    settings.queueing.idle_timeout = WORKER_IDLE_SECONDS
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    if config.worker_limit:
        settings.queueing.worker_limit = config.worker_limit
    settings.peering.priority = config.priority
    if config.peering:
        settings.peering.name = config.peering
        settings.peering.mandatory = True
        # One ClusterKopfPeering even when only some namespaces are watched: per-namespace
        # peering pauses the whole operator as soon as one watched namespace (e.g. a new
        # one matching a glob) lacks its peering object.
        settings.peering.clusterwide = True
        settings.peering.stealth = True
        settings.peering.lifetime = config.peering_lifetime


def register(
    registry: kopf.OperatorRegistry,
    reconciler: Reconciler,
    config: OperatorConfig,
    watchers: Watchers | None = None,
    listings: ListingRelease | None = None,
) -> None:
    def note(event: kopf.RawEvent) -> None:
        if listings is not None:
            listings.noted(event.get("type"), asyncio.get_running_loop().time())

    see_listed_namespaces()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_settings(settings, config)

    @kopf.on.login(registry=registry)
    async def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
        # The credentials the access layer loads (kubeconfig, else in-cluster), so kopf's
        # watches and the operator's requests are the same identity.
        configuration = (await load_configuration())[0]
        return kopf.ConnectionInfo(
            **await connection_fields(configuration), trust_env=settings.networking.trust_env
        )

    @kopf.on.event(GROUP, VERSION, STEPRUN_PLURAL, registry=registry)
    async def steprun_event(event: kopf.RawEvent, **_: Any) -> None:
        note(event)
        body = dict(event["object"])
        deleted = event.get("type") == "DELETED"
        key = reconciler.stepruns.observe(body, deleted=deleted)
        STEPRUN_PHASES.observe(body, deleted=deleted)
        reconciler.queue.add(key)

    @kopf.on.event("", "v1", "pods", labels={LABEL_NAME: kopf.PRESENT}, registry=registry)
    async def pod_event(event: kopf.RawEvent, **_: Any) -> None:
        note(event)
        pod: dict[str, Any] = dict(event["object"])
        owner = owner_name(pod)
        if owner is None:
            return
        key = (str(pod["metadata"].get("namespace")), owner)
        # A terminal StepRun's Pods are kept only while they hold the tracking finalizer.
        slim = is_terminal_body(reconciler.stepruns.get(key))
        reconciler.pods.observe(key, pod, deleted=event.get("type") == "DELETED", slim=slim)
        reconciler.queue.add(key)

    @kopf.on.event(
        KUEUE_GROUP, "v1beta2", "workloads", labels={LABEL_NAME: kopf.PRESENT}, registry=registry
    )
    async def workload_event(event: kopf.RawEvent, **_: Any) -> None:
        # A queued step waits for Kueue's admission (or eviction) of its Workload. Without
        # Kueue's CRDs kopf serves nothing here and the operator runs as before.
        note(event)
        workload: dict[str, Any] = dict(event["object"])
        owner = owner_name(workload)
        if owner is None:
            return
        key = (str(workload["metadata"].get("namespace")), owner)
        reconciler.workloads.observe(key, workload, deleted=event.get("type") == "DELETED")
        reconciler.queue.add(key)

    if watchers is not None:

        @kopf.on.probe(id="watchers", registry=registry)
        def watching(**_: Any) -> str:
            return watchers.check()

    @kopf.on.cleanup(registry=registry)
    async def drain(**_: Any) -> None:
        await reconciler.queue.drain()
        await reconciler.off_lane.drain()
        await reconciler.kube.close()
