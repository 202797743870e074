"""Workspaces of a step: its Pod's volumes and mounts, and the claim of a workflow run (pure).

A ``volumeClaimTemplate`` workspace is one PersistentVolumeClaim per workflow run and workspace
name. Every StepRun of the run that names the workspace is an owner of that claim (none is its
controller), so the garbage collector removes the claim once the last of them is deleted, and
the claim outlives each step on its own: later steps of the run see what earlier ones wrote.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

from steprun.api.models import API_VERSION, Permission, StepRun, Workspace
from steprun.config import OperatorConfig
from steprun.policy.decision import SandboxDecision
from steprun.render.names import (
    ANNOTATION_CLAIM_CREATOR,
    COMPONENT_WORKSPACE,
    LABEL_COMPONENT,
    LABEL_MANAGED_BY,
    LABEL_RUN,
    LABEL_WORKFLOW,
    LABEL_WORKSPACE,
    MANAGED_BY,
    claim_name,
)
from steprun.render.owners import is_owned_by

VOLUME_PREFIX = "ws-"


class WorkspaceError(ValueError):
    """A workspace the step cannot have; the message says what to fix."""


def volume_name(index: int) -> str:
    """The Pod volume of the ``index``-th workspace (workspace names may be 63 characters,
    volume names may not be longer, and the context volumes must never be shadowed)."""
    return f"{VOLUME_PREFIX}{index}"


def run_claim_name(sr: StepRun, workspace: Workspace) -> str:
    """The claim a ``volumeClaimTemplate`` workspace uses; the spec guarantees the run keys."""
    workflow = sr.spec.context.workflow
    if workflow is None or not workflow.name or not workflow.run_id:
        raise WorkspaceError(
            f"workspace {workspace.name} has a volumeClaimTemplate, which needs "
            "spec.context.workflow.name and runId"
        )
    return claim_name(workflow.name, workflow.run_id, workspace.name)


def claim_of(sr: StepRun, workspace: Workspace) -> str | None:
    """The PersistentVolumeClaim behind a workspace (None for emptyDir)."""
    if workspace.persistent_volume_claim is not None:
        return workspace.persistent_volume_claim.claim_name
    if workspace.volume_claim_template is not None:
        return run_claim_name(sr, workspace)
    return None


def workspace_volumes(
    sr: StepRun, config: OperatorConfig, decision: SandboxDecision | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The Pod volumes and the step container's mounts of the step's workspaces.

    A sandbox step's workspaces are mounted read-only unless filesystem.writable was granted;
    admission has already refused workspaces its policy does not allow.
    """
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    workspaces = sr.spec.workspace_list
    if decision is not None and workspaces and not decision.grants(Permission.WORKSPACES_MOUNT):
        raise WorkspaceError("a sandbox step gets workspaces only with permission workspaces.mount")
    reserved = (config.context_mount_path, config.secrets_mount_path)
    # One volume per claim: the kubelet tracks a Pod's volumes by the volume they resolve to,
    # and two Pod volumes of the same claim can leave the Pod waiting for the second mount.
    claim_volumes: dict[str, str] = {}
    for index, workspace in enumerate(workspaces):
        path = posixpath.normpath(workspace.path)
        clash = next((r for r in reserved if _overlaps(path, posixpath.normpath(r))), None)
        if clash is not None:
            raise WorkspaceError(
                f"workspace {workspace.name} is mounted at {path}, which overlaps the "
                f"operator's {clash}: choose another mountPath"
            )
        claim = claim_of(sr, workspace)
        if claim is not None and claim in claim_volumes:
            name = claim_volumes[claim]
        else:
            name = volume_name(index)
            volume: dict[str, Any] = {"name": name}
            if claim is not None:
                volume["persistentVolumeClaim"] = {"claimName": claim}
                claim_volumes[claim] = name
            else:
                assert workspace.empty_dir is not None
                volume["emptyDir"] = workspace.empty_dir.to_api()
            volumes.append(volume)
        read_only = workspace.read_only or (
            decision is not None and not decision.grants(Permission.FILESYSTEM_WRITABLE)
        )
        mount: dict[str, Any] = {"name": name, "mountPath": path}
        if workspace.sub_path:
            mount["subPath"] = workspace.sub_path
        if read_only:
            mount["readOnly"] = True
        mounts.append(mount)
    return volumes, mounts


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def default_working_dir(sr: StepRun) -> str | None:
    """workingDir when the spec sets none: the first workspace's mount path."""
    workspaces = sr.spec.workspace_list
    return posixpath.normpath(workspaces[0].path) if workspaces else None


# ---------------------------------------------------------------- the run's claims


def claim_labels(sr: StepRun, workspace: Workspace) -> dict[str, str]:
    """Labels that say which run and workspace a claim serves: adoption compares them."""
    workflow = sr.spec.context.workflow
    assert workflow is not None and workflow.name and workflow.run_id
    return {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_COMPONENT: COMPONENT_WORKSPACE,
        LABEL_WORKFLOW: workflow.name,
        LABEL_RUN: workflow.run_id,
        LABEL_WORKSPACE: workspace.name,
    }


def claim_owner(sr: StepRun) -> dict[str, Any]:
    """One of the claim's owners. Not its controller (it has several) and not blocking: a
    StepRun's deletion never waits for a claim its siblings still use."""
    return {
        "apiVersion": API_VERSION,
        "kind": "StepRun",
        "name": sr.name,
        "uid": sr.uid,
        "controller": False,
        "blockOwnerDeletion": False,
    }


def run_claims(sr: StepRun) -> list[Workspace]:
    """The workspaces of the step whose claim the operator makes (volumeClaimTemplate)."""
    return [w for w in sr.spec.workspace_list if w.volume_claim_template is not None]


def render_claim(sr: StepRun, workspace: Workspace) -> dict[str, Any]:
    """The run's PersistentVolumeClaim of ``workspace``, owned by ``sr``."""
    template = workspace.volume_claim_template
    if template is None:
        raise WorkspaceError(f"workspace {workspace.name} has no volumeClaimTemplate")
    spec = template.spec.to_api()
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": run_claim_name(sr, workspace),
            "namespace": sr.namespace,
            "labels": claim_labels(sr, workspace),
            "annotations": {ANNOTATION_CLAIM_CREATOR: sr.uid},
            "ownerReferences": [claim_owner(sr)],
        },
        "spec": spec,
    }


def claim_belongs_to_run(claim: Mapping[str, Any], sr: StepRun, workspace: Workspace) -> bool:
    """Whether an existing claim of that name is the one steprun made for this run."""
    labels = (claim.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in claim_labels(sr, workspace).items())


def owners_with(claim: Mapping[str, Any], sr: StepRun) -> list[dict[str, Any]] | None:
    """The claim's ownerReferences with ``sr`` added; None when ``sr`` already is an owner."""
    if is_owned_by(claim, sr.uid):
        return None
    owners = list((claim.get("metadata") or {}).get("ownerReferences") or [])
    return [*owners, claim_owner(sr)]
