"""What Kueue says of a step's Workload: admitted, waiting (and why), or evicted."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ADMITTED = "Admitted"
QUOTA_RESERVED = "QuotaReserved"
EVICTED = "Evicted"
FINISHED = "Finished"


@dataclass(frozen=True)
class WorkloadState:
    # Admitted=True: quota reserved and every admission check passed; the Pod may run.
    admitted: bool = False
    # status.admission is set: Kueue holds quota for it (admitted or not yet checked).
    reserved: bool = False
    # Evicted=True: Kueue wants the step stopped (preempted, its queue stopped, deactivated).
    evicted_reason: str | None = None
    evicted_message: str = ""
    # Why it is not admitted yet, in Kueue's words (QuotaReserved=False).
    pending_message: str = ""
    cluster_queue: str | None = None
    # Resource name -> ResourceFlavor name, for the one pod set.
    flavors: dict[str, str] = field(default_factory=dict)
    active: bool = True

    @property
    def evicted(self) -> bool:
        return self.evicted_reason is not None


def _conditions(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    found: dict[str, Mapping[str, Any]] = {}
    for condition in status.get("conditions") or []:
        if isinstance(condition, Mapping) and isinstance(condition.get("type"), str):
            found[condition["type"]] = condition
    return found


def observe_workload(workload: Mapping[str, Any]) -> WorkloadState:
    status = workload.get("status") or {}
    conditions = _conditions(status)

    def true(kind: str) -> bool:
        return (conditions.get(kind) or {}).get("status") == "True"

    admission = status.get("admission") or {}
    flavors: dict[str, str] = {}
    for assignment in admission.get("podSetAssignments") or []:
        flavors.update({str(k): str(v) for k, v in (assignment.get("flavors") or {}).items()})
    evicted = conditions.get(EVICTED) if true(EVICTED) else None
    pending = conditions.get(QUOTA_RESERVED) or {}
    return WorkloadState(
        admitted=true(ADMITTED) and not true(FINISHED),
        reserved=bool(admission),
        evicted_reason=str(evicted.get("reason") or EVICTED) if evicted else None,
        evicted_message=str(evicted.get("message") or "") if evicted else "",
        pending_message=str(pending.get("message") or "")
        if pending.get("status") != "True"
        else "",
        cluster_queue=admission.get("clusterQueue") or None,
        flavors=flavors,
        active=(workload.get("spec") or {}).get("active", True) is not False,
    )
