"""The Kueue Workloads of queued StepRuns: the latest one seen per StepRun, and the requests the
operator makes as Kueue's integration for StepRuns (create, hand quota back, delete), plus the
reads that name what Kueue decided (LocalQueue -> ClusterQueue, admitted ResourceFlavors, the
WorkloadPriorityClass a StepRun names)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from steprun.api.models import StepRun
from steprun.kube.client import AlreadyExists, Kube, NotFound
from steprun.observe.workload import ADMITTED, QUOTA_RESERVED, WorkloadState
from steprun.reconcile.queue import Key
from steprun.render.names import workload_name
from steprun.render.owners import is_controlled_by
from steprun.render.workload import PRIORITY_LABEL, queue_name, render_workload
from steprun.timeutil import format_time

KIND = "Workload"
REQUEUED = "Requeued"


class WorkloadProblem(Exception):
    """The step's Workload cannot be made as asked (Kueue missing, an unknown priority class,
    a Workload of that name that is not the step's); the message says what to fix."""


def _rv(body: Mapping[str, Any]) -> int:
    try:
        return int((body.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


class Workloads:
    def __init__(self, kube: Kube):
        self.kube = kube
        self._seen: dict[Key, dict[str, Any]] = {}

    def observe(self, key: Key, body: Mapping[str, Any], *, deleted: bool = False) -> None:
        if deleted:
            self._seen.pop(key, None)
            return
        known = self._seen.get(key)
        if known is None or _rv(body) >= _rv(known):
            self._seen[key] = dict(body)

    def forget(self, key: Key) -> None:
        self._seen.pop(key, None)

    async def current(self, sr: StepRun) -> dict[str, Any] | None:
        """The step's Workload as last seen, read from the API when the watch has not shown it
        (just created, or the operator just started)."""
        key = (sr.namespace, sr.name)
        body = self._seen.get(key)
        if body is None or not is_controlled_by(body, sr.uid):
            body = await self.kube.get_or_none(KIND, sr.namespace, workload_name(sr.name))
            if body is None or not is_controlled_by(body, sr.uid):
                return None
            self.observe(key, body)
        return body

    async def ensure(self, sr: StepRun, pod: Mapping[str, Any]) -> dict[str, Any]:
        """Create the step's Workload for ``pod`` (its first Pod as rendered), or adopt the one
        a previous run of the operator made."""
        priority = await self._priority(sr)
        body = render_workload(sr, pod, priority)
        try:
            made = await self.kube.create(body)
        except AlreadyExists:
            existing = await self.kube.get_or_none(KIND, sr.namespace, body["metadata"]["name"])
            if existing is None or not is_controlled_by(existing, sr.uid):
                raise WorkloadProblem(
                    f"Workload {body['metadata']['name']} already exists and is not this "
                    "StepRun's; delete it or rename the StepRun"
                ) from None
            made = existing
        except NotFound:
            raise WorkloadProblem(
                f"the StepRun asks Kueue for LocalQueue {queue_name(sr)} "
                "(label kueue.x-k8s.io/queue-name), but Kueue's Workload API is not installed "
                "in this cluster"
            ) from None
        self.observe((sr.namespace, sr.name), made)
        return made

    async def _priority(self, sr: StepRun) -> tuple[str, int] | None:
        name = sr.metadata.labels.get(PRIORITY_LABEL)
        if not name:
            return None
        found = await self.kube.get_or_none("WorkloadPriorityClass", None, name)
        if found is None:
            raise WorkloadProblem(
                f"WorkloadPriorityClass {name} (label {PRIORITY_LABEL}) not found"
            )
        return name, int(found.get("value") or 0)

    async def cluster_queue(self, sr: StepRun) -> str | None:
        """The ClusterQueue behind the step's LocalQueue; None while that queue is missing."""
        queue = queue_name(sr)
        if queue is None:
            return None
        local = await self.kube.get_or_none("LocalQueue", sr.namespace, queue)
        spec = (local or {}).get("spec") or {}
        return str(spec["clusterQueue"]) if spec.get("clusterQueue") else None

    async def flavors(self, names: Iterable[str]) -> list[dict[str, Any]]:
        """The admitted ResourceFlavors (one missing since is skipped: it places nothing)."""
        found = []
        for name in sorted(set(names)):
            flavor = await self.kube.get_or_none("ResourceFlavor", None, name)
            if flavor is not None:
                found.append(flavor)
        return found

    async def hand_back(
        self, sr: StepRun, workload: Mapping[str, Any], state: WorkloadState, now: datetime
    ) -> None:
        """What Kueue's own integrations do once an evicted job has stopped: clear the
        Workload's admission (its quota is free again) and mark it requeued, so Kueue queues
        it again. Guarded by the resourceVersion read: a Workload that moved on is read again."""
        meta = workload.get("metadata") or {}
        generation = meta.get("generation")
        since = format_time(now)
        reason = state.evicted_reason or "Pending"
        message = state.evicted_message or "the step's admission was withdrawn"
        kept = [
            c
            for c in (workload.get("status") or {}).get("conditions") or []
            if c.get("type") not in (QUOTA_RESERVED, ADMITTED, REQUEUED)
        ]

        def condition(kind: str, status: str, why: str, text: str) -> dict[str, Any]:
            return {
                "type": kind,
                "status": status,
                "reason": why,
                "message": text[:32768],
                "lastTransitionTime": since,
                "observedGeneration": generation,
            }

        conditions = [
            *kept,
            condition(QUOTA_RESERVED, "False", "Pending", message),
            condition(ADMITTED, "False", "NoReservation", "The workload has no reservation"),
            condition(REQUEUED, "True", reason, message),
        ]
        written = await self.kube.patch_status(
            KIND,
            sr.namespace,
            str(meta.get("name")),
            {"admission": None, "conditions": conditions},
            resource_version=meta.get("resourceVersion"),
        )
        self.observe((sr.namespace, sr.name), written)

    async def delete(self, sr: StepRun) -> None:
        """Release the step's quota and its place in the queue (when the step ends; the owner
        reference removes it with the StepRun too)."""
        self._seen.pop((sr.namespace, sr.name), None)
        if queue_name(sr) is None and (sr.status.queue is None):
            return
        existing = await self.kube.get_or_none(KIND, sr.namespace, workload_name(sr.name))
        if existing is not None and is_controlled_by(existing, sr.uid):
            uid = (existing.get("metadata") or {}).get("uid")
            await self.kube.delete(KIND, sr.namespace, workload_name(sr.name), uid=uid)
