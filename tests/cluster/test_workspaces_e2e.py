"""Workspaces and trace context end to end: claims bound by the cluster's real provisioner and
mounted by the real kubelet, the run's shared claim and its garbage collection, failures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from steprun.render.names import claim_name
from tests.cluster.conftest import SandboxPolicies
from tests.conftest import STEP_IMAGE
from tests.support.operator_process import OperatorProcess
from tests.support.steps import Steps, eventually

REPO = Path(__file__).resolve().parents[2]
PIPELINE = sorted((REPO / "examples" / "workspaces-pipeline").glob("*.yaml"))
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
SMALL = {"requests": {"storage": "16Mi"}}


@pytest.fixture
def steps(api_client: client.ApiClient, namespace: str, operator: OperatorProcess) -> Steps:
    return Steps(api_client, namespace)


def run(name: str, run_id: str = "1") -> dict[str, Any]:
    return {"workflow": {"name": name, "runId": run_id}}


def template_workspace(name: str = "src", **extra: Any) -> dict[str, Any]:
    return {"name": name, "volumeClaimTemplate": {"spec": {"resources": SMALL}}, **extra}


def create_claim(steps: Steps, name: str, **spec: Any) -> None:
    body = {
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": SMALL, **spec},
    }
    steps.core.create_namespaced_persistent_volume_claim(steps.namespace, body)


def claim_or_none(steps: Steps, name: str) -> client.V1PersistentVolumeClaim | None:
    try:
        return steps.core.read_namespaced_persistent_volume_claim(name, steps.namespace)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise


def succeeded(steps: Steps, name: str, timeout: float = 120) -> dict[str, Any]:
    status = steps.wait_terminal(name, timeout=timeout)
    assert (status["phase"], status["reason"]) == ("Succeeded", "Completed"), status
    return status


def test_pipeline_example_through_kubectl_shares_the_runs_claim_until_deleted(
    steps: Steps, kubectl: list[str]
) -> None:
    """The loop of the example's header, as a user types it, then the claim's life."""
    assert [p.name for p in PIPELINE] == ["01-write.yaml", "02-build.yaml", "03-read.yaml"]
    for path in PIPELINE:
        applied = subprocess.run(
            [*kubectl, "-n", steps.namespace, "apply", "-f", str(path), "-o", "name"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        subprocess.run(
            [
                *kubectl,
                "-n",
                steps.namespace,
                "wait",
                *applied,
                "--for=jsonpath={.status.phase}=Succeeded",
                "--timeout=120s",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    names = ["pipeline-1-write", "pipeline-2-build", "pipeline-3-read"]
    assert steps.status(names[-1])["outputs"] == {"result": "HELLO FROM THE WRITE STEP"}

    claim = claim_or_none(steps, claim_name("pipeline", "1", "src"))
    assert claim is not None and claim.status.phase == "Bound"
    assert sorted(o.name for o in claim.metadata.owner_references) == sorted(names)
    assert claim.metadata.labels["steprun.dev/run-id"] == "1"
    volume = claim.spec.volume_name
    (pod,) = steps.pods(names[0])
    assert pod.spec.containers[0].working_dir == "/workspace/src"

    # Deleting all but one StepRun keeps the claim; deleting the last removes it (and its
    # volume, reclaim policy Delete).
    for name in names[:-1]:
        steps.custom.delete_namespaced_custom_object(
            "steprun.dev", "v1alpha1", steps.namespace, "stepruns", name
        )
    eventually(lambda: not steps.exists(names[1]) or None, 60, "the first StepRuns to go")
    claim = claim_or_none(steps, claim_name("pipeline", "1", "src"))
    assert claim is not None and claim.metadata.deletion_timestamp is None
    steps.custom.delete_namespaced_custom_object(
        "steprun.dev", "v1alpha1", steps.namespace, "stepruns", names[-1]
    )
    eventually(
        lambda: claim_or_none(steps, claim_name("pipeline", "1", "src")) is None,
        120,
        "the claim to go",
    )

    def volume_gone() -> bool:
        try:
            steps.core.read_persistent_volume(volume)
        except client.ApiException as error:
            return error.status == 404
        return False

    eventually(volume_gone, 120, f"PersistentVolume {volume} to be deleted")


def test_pipeline_example_through_the_python_client(steps: Steps, kubeconfig: str) -> None:
    script = REPO / "examples" / "workspaces-pipeline.py"
    result = subprocess.run(
        [sys.executable, str(script), "--namespace", steps.namespace, "--run-id", "py-7"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "KUBECONFIG": kubeconfig},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "{'result': 'HELLO FROM THE WRITE STEP'}" in result.stdout
    read = steps.get("pipeline-py-7-3-read")
    assert read["metadata"]["labels"]["steprun.dev/job-id"] == "build"
    # A run id with a dash gives the claim a hashed name; its labels find it.
    (claim,) = steps.core.list_namespaced_persistent_volume_claim(
        steps.namespace, label_selector="steprun.dev/workflow=pipeline,steprun.dev/run-id=py-7"
    ).items
    assert claim.metadata.name == claim_name("pipeline", "py-7", "src") != "pipeline-py-7-src"
    assert len(claim.metadata.owner_references) == 3


def test_steps_of_a_run_starting_together_share_one_claim(steps: Steps) -> None:
    """Both create the claim at once: one creates it, the other adds itself as an owner."""
    names = [f"together-{i}" for i in range(3)]
    for i, name in enumerate(names):
        steps.create(
            name,
            {
                "image": STEP_IMAGE,
                "context": run("together"),
                "workspaces": [template_workspace()],
                "script": f"echo {i} > $STEPRUN_WORKSPACE/{name}",
            },
        )
    for name in names:
        succeeded(steps, name)
    claim = claim_or_none(steps, claim_name("together", "1", "src"))
    assert claim is not None
    assert sorted(o.uid for o in claim.metadata.owner_references) == sorted(
        steps.get(n)["metadata"]["uid"] for n in names
    )
    steps.create(
        "together-check",
        {
            "image": STEP_IMAGE,
            "context": run("together"),
            "workspaces": [template_workspace()],
            "script": 'test "$(cat together-0 together-1 together-2)" = "$(printf \'0\\n1\\n2\')"',
        },
    )
    succeeded(steps, "together-check")


def test_another_run_gets_its_own_claim(steps: Steps) -> None:
    for run_id in ("1", "2"):
        steps.create(
            f"runs-{run_id}",
            {
                "image": STEP_IMAGE,
                "context": run("runs", run_id),
                "workspaces": [template_workspace()],
                "script": f"test ! -e marker && echo {run_id} > marker",
            },
        )
        succeeded(steps, f"runs-{run_id}")
    assert claim_or_none(steps, claim_name("runs", "1", "src")) is not None
    assert claim_or_none(steps, claim_name("runs", "2", "src")) is not None


def test_existing_claim_read_only_mount_and_trace_example(steps: Steps) -> None:
    (name,) = steps.apply_file(REPO / "examples" / "workspaces-existing-claim.yaml")
    status = succeeded(steps, name)
    assert status["outputs"] == {
        "cached": "build-7",
        "readOnlyRefused": True,
        "traceparent": TRACEPARENT,
    }
    (pod,) = steps.pods(name)
    assert pod.metadata.annotations["steprun.dev/traceparent"] == TRACEPARENT
    # The claim is the namespace's: steprun neither owns nor deletes it.
    claim = claim_or_none(steps, "example-cache")
    assert claim is not None and not claim.metadata.owner_references


def test_read_only_workspace_refuses_writes(steps: Steps) -> None:
    create_claim(steps, "data")
    steps.create(
        "writer",
        {
            "image": STEP_IMAGE,
            "workspaces": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
            "script": "echo kept > kept.txt",
        },
    )
    succeeded(steps, "writer")
    steps.create(
        "reader",
        {
            "image": STEP_IMAGE,
            "workspaces": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "data"}, "readOnly": True}
            ],
            "script": "cat kept.txt; echo changed > kept.txt",
        },
    )
    status = steps.wait_terminal("reader")
    assert status["phase"] == "Failed" and status["exitCode"] != 0, status
    steps.create(
        "checker",
        {
            "image": STEP_IMAGE,
            "workspaces": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
            "script": 'test "$(cat kept.txt)" = kept',
        },
    )
    succeeded(steps, "checker")


def test_empty_dir_is_per_step(steps: Steps) -> None:
    scratch = [{"name": "scratch", "emptyDir": {"sizeLimit": "16Mi"}}]
    steps.create("first", {"image": STEP_IMAGE, "workspaces": scratch, "script": "echo x > f"})
    succeeded(steps, "first")
    steps.create(
        "second",
        {"image": STEP_IMAGE, "workspaces": scratch, "script": 'test ! -e f && test -z "$(ls)"'},
    )
    succeeded(steps, "second")


def test_missing_claim_ends_the_step_without_a_pod(steps: Steps) -> None:
    steps.create(
        "noclaim",
        {
            "image": STEP_IMAGE,
            "workspaces": [{"name": "cache", "persistentVolumeClaim": {"claimName": "absent"}}],
            "script": "true",
        },
    )
    status = steps.wait_terminal("noclaim")
    assert (status["phase"], status["reason"]) == ("Failed", "WorkspaceUnavailable"), status
    assert 'PersistentVolumeClaim "absent" not found' in status["message"]
    assert "workspace cache" in status["message"]
    assert steps.pods("noclaim") == []


def test_unbindable_claim_fails_with_the_schedulers_reason(steps: Steps) -> None:
    create_claim(steps, "nowhere", storageClassName="no-such-class")
    steps.create(
        "unbound",
        {
            "image": STEP_IMAGE,
            "startupTimeoutSeconds": 5,
            "workspaces": [{"name": "w", "persistentVolumeClaim": {"claimName": "nowhere"}}],
            "script": "true",
        },
    )
    status = steps.wait_terminal("unbound", timeout=90)
    assert (status["phase"], status["reason"]) == ("Failed", "WorkspaceUnavailable"), status
    # The scheduler's own words about the claim.
    assert "PersistentVolumeClaim" in status["message"], status["message"]
    eventually(lambda: steps.pods("unbound") == [] or None, 30, "the stuck Pod to be deleted")


def test_a_claim_steprun_did_not_make_is_not_adopted(steps: Steps) -> None:
    create_claim(steps, claim_name("foreign", "1", "src"))
    steps.create(
        "squatted",
        {
            "image": STEP_IMAGE,
            "context": run("foreign"),
            "workspaces": [template_workspace()],
            "script": "true",
        },
    )
    status = steps.wait_terminal("squatted")
    assert (status["phase"], status["reason"]) == ("Failed", "WorkspaceUnavailable"), status
    assert "did not make it" in status["message"]
    claim = claim_or_none(steps, claim_name("foreign", "1", "src"))
    assert claim is not None and not claim.metadata.owner_references


def test_traceparent_and_job_id_reach_the_step(steps: Steps) -> None:
    steps.create(
        "traced",
        {
            "image": STEP_IMAGE,
            "context": {
                "workflow": {"name": "build", "runId": "9", "jobId": "unit", "stepId": "test"},
                "trace": {"traceparent": TRACEPARENT, "tracestate": "engine=run9"},
            },
            "script": (
                'printf \'{"tp": "%s", "ts": "%s", "job": "%s"}\' "$TRACEPARENT" "$TRACESTATE" '
                '"$(sed -n \'s/.*"jobId":"\\([^"]*\\)".*/\\1/p\' "$STEPRUN_CONTEXT_FILE")" '
                '> "$STEPRUN_OUTPUT_FILE"'
            ),
        },
    )
    status = succeeded(steps, "traced")
    assert status["outputs"] == {"tp": TRACEPARENT, "ts": "engine=run9", "job": "unit"}
    (pod,) = steps.pods("traced")
    assert pod.metadata.annotations["steprun.dev/traceparent"] == TRACEPARENT
    assert pod.metadata.annotations["steprun.dev/tracestate"] == "engine=run9"
    assert pod.metadata.labels["steprun.dev/job-id"] == "unit"


# ---------------------------------------------------------------- sandbox steps


def sandbox_workspace_step(policy: str, script: str, *permissions: str) -> dict[str, Any]:
    return {
        "mode": "sandbox",
        "sandbox": {"policy": policy, "plugin": "sh", "permissions": list(permissions)},
        "args": [script],
        "workspaces": [{"name": "data", "persistentVolumeClaim": {"claimName": "shared"}}],
    }


def sandbox_policy(**spec: Any) -> dict[str, Any]:
    return {
        "plugins": [{"name": "sh", "image": STEP_IMAGE, "command": ["/bin/sh", "-c"]}],
        **spec,
    }


def test_sandbox_step_is_refused_a_workspace_its_policy_does_not_grant(
    sandbox_steps: Steps, sandbox_policies: SandboxPolicies
) -> None:
    steps = sandbox_steps
    create_claim(steps, "shared")
    no_grant = sandbox_policies.create("nogrant", sandbox_policy())
    other_claim = sandbox_policies.create(
        "otherclaim", sandbox_policy(grants=["workspaces.mount"], workspaceClaims=["other"])
    )
    steps.create("ungranted", sandbox_workspace_step(no_grant, "true", "workspaces.mount"))
    steps.create("unnamed", sandbox_workspace_step(other_claim, "true", "workspaces.mount"))
    for name, words in (
        ("ungranted", "permission workspaces.mount is not granted"),
        ("unnamed", "workspace data (claim shared) is not among the policy's workspaceClaims"),
    ):
        status = steps.wait_terminal(name)
        assert (status["phase"], status["reason"]) == ("Rejected", "PermissionDenied"), status
        assert words in status["message"], status["message"]
        assert steps.pods(name) == []


def test_sandbox_workspace_is_read_only_without_filesystem_writable(
    sandbox_steps: Steps, sandbox_policies: SandboxPolicies
) -> None:
    """The mount's flags as the step's kernel sees them. (The local cluster's host-path volumes
    are root-owned, so the non-root sandbox user works in /tmp and only looks at the mount.)"""
    steps = sandbox_steps
    create_claim(steps, "shared")
    policy = sandbox_policies.create(
        "claims",
        sandbox_policy(
            grants=["workspaces.mount", "filesystem.writable"], workspaceClaims=["shared"]
        ),
    )
    report = (
        'printf \'{"mode": "%s"}\' '
        '"$(awk \'$2 == "/workspace/data" {split($4, o, ","); print o[1]}\' /proc/mounts)" '
        '> "$STEPRUN_OUTPUT_FILE"'
    )
    for name, permissions, mode in (
        ("viewer", ["workspaces.mount"], "ro"),
        ("editor", ["workspaces.mount", "filesystem.writable"], "rw"),
    ):
        steps.create(
            name, {**sandbox_workspace_step(policy, report, *permissions), "workingDir": "/tmp"}
        )
        status = succeeded(steps, name)
        assert status["outputs"] == {"mode": mode}, (name, status)
        (pod,) = steps.pods(name)
        (mount,) = [m for m in pod.spec.containers[0].volume_mounts if m.name.startswith("ws-")]
        assert bool(mount.read_only) is (mode == "ro")


def test_a_volume_the_kubelet_cannot_mount_fails_with_the_kubelets_reason(steps: Steps) -> None:
    """A bound claim whose volume is a host path that does not exist: the scheduler places the
    Pod, the kubelet refuses the mount (an event, not Pod status)."""
    volume = f"{steps.namespace}-nowhere"
    steps.core.create_persistent_volume(
        {
            "metadata": {"name": volume},
            "spec": {
                "capacity": {"storage": "16Mi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": f"/tmp/steprun-absent/{volume}", "type": "Directory"},
                "claimRef": {"namespace": steps.namespace, "name": "unmountable"},
            },
        }
    )
    try:
        create_claim(steps, "unmountable", storageClassName="", volumeName=volume)

        # Bound before the step starts, so only the kubelet can be what stops it.
        def bound() -> bool:
            claim = claim_or_none(steps, "unmountable")
            return claim is not None and claim.status is not None and claim.status.phase == "Bound"

        eventually(bound, 60, "the claim to bind to its volume")
        steps.create(
            "nomount",
            {
                "image": STEP_IMAGE,
                "startupTimeoutSeconds": 8,
                "workspaces": [
                    {"name": "w", "persistentVolumeClaim": {"claimName": "unmountable"}}
                ],
                "script": "true",
            },
        )
        status = steps.wait_terminal("nomount", timeout=90)
        assert (status["phase"], status["reason"]) == ("Failed", "WorkspaceUnavailable"), status
        assert "FailedMount" in status["message"], status["message"]
        assert (
            "is not a directory" in status["message"] or "hostPath type check" in status["message"]
        ), status["message"]
    finally:
        steps.core.delete_persistent_volume(volume)
