"""Makes sure a step's workspaces can be mounted before its Pod is created.

An existing claim must exist (a missing one would leave the Pod unschedulable until the startup
timeout). A ``volumeClaimTemplate`` claim is created by the first StepRun of the run that needs
it; every later one adds itself to the claim's owners with a write guarded by the
resourceVersion it read, so two steps starting at once never drop each other's reference.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from steprun.api.models import StepRun, Workspace
from steprun.kube.client import AlreadyExists, Conflict, Kube, NotFound, Transient
from steprun.render.workspaces import (
    claim_belongs_to_run,
    owners_with,
    render_claim,
    run_claim_name,
)

KIND = "PersistentVolumeClaim"
# Each round is one read and one write; losing this many races in a row means something else
# rewrites the claim continuously, and the reconcile is retried with backoff.
MAX_ROUNDS = 5


class WorkspaceUnavailable(Exception):
    """A workspace cannot be mounted; the message says which and what to fix."""


# Why an existing claim with the run's labels is not one the operator made (None: it is).
OriginCheck = Callable[[Mapping[str, Any]], Awaitable[str | None]]


async def _labels_suffice(claim: Mapping[str, Any]) -> str | None:
    return None


async def ensure_workspaces(
    kube: Kube, sr: StepRun, origin_problem: OriginCheck = _labels_suffice
) -> None:
    """Raises WorkspaceUnavailable for a claim that is missing or not the run's own; raises
    Transient (retried with backoff) while a run's claim is still being deleted."""
    for workspace in sr.spec.workspace_list:
        if workspace.persistent_volume_claim is not None:
            await _existing_claim(kube, sr, workspace, workspace.persistent_volume_claim.claim_name)
        elif workspace.volume_claim_template is not None:
            await _run_claim(kube, sr, workspace, origin_problem)


async def _existing_claim(kube: Kube, sr: StepRun, workspace: Workspace, name: str) -> None:
    claim = await kube.get_or_none(KIND, sr.namespace, name)
    if claim is None:
        raise WorkspaceUnavailable(
            f'workspace {workspace.name}: PersistentVolumeClaim "{name}" not found in namespace '
            f"{sr.namespace}: create it or fix persistentVolumeClaim.claimName"
        )
    if (claim.get("metadata") or {}).get("deletionTimestamp"):
        raise WorkspaceUnavailable(
            f'workspace {workspace.name}: PersistentVolumeClaim "{name}" is being deleted'
        )


async def _run_claim(
    kube: Kube, sr: StepRun, workspace: Workspace, origin_problem: OriginCheck
) -> None:
    name = run_claim_name(sr, workspace)
    for _ in range(MAX_ROUNDS):
        try:
            await kube.create(render_claim(sr, workspace))
            return
        except AlreadyExists:
            pass
        claim = await kube.get_or_none(KIND, sr.namespace, name)
        if claim is None:
            continue  # deleted between the two calls: create it again
        metadata = claim.get("metadata") or {}
        workflow = sr.spec.context.workflow
        assert workflow is not None
        if not claim_belongs_to_run(claim, sr, workspace):
            raise WorkspaceUnavailable(
                f'workspace {workspace.name}: PersistentVolumeClaim "{name}" exists but steprun '
                f"did not make it for workflow {workflow.name} run {workflow.run_id}: delete or "
                "rename that claim"
            )
        # Joining mounts whatever the claim holds: never one someone else made.
        if problem := await origin_problem(claim):
            raise WorkspaceUnavailable(
                f'workspace {workspace.name}: PersistentVolumeClaim "{name}" carries the labels '
                f"of workflow {workflow.name} run {workflow.run_id} but {problem}: it is not "
                "mounted; delete it, or use another run id"
            )
        if metadata.get("deletionTimestamp"):
            # The run's earlier steps were deleted and their claim goes with them; a new one is
            # made once it is gone.
            raise Transient(
                409, "ClaimTerminating", f"PersistentVolumeClaim {name} is being deleted", None
            )
        owners = owners_with(claim, sr)
        if owners is None:
            return
        try:
            await kube.patch(
                KIND,
                sr.namespace,
                name,
                {"metadata": {"ownerReferences": owners}},
                resource_version=metadata.get("resourceVersion"),
            )
            return
        except (Conflict, NotFound):
            continue
    raise Transient(409, "Conflict", f"PersistentVolumeClaim {name} kept changing", None)
