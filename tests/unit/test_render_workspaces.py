"""Workspaces in the step's Pod, the run's claim, and the trace context (pure rendering)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pydantic import ValidationError

from steprun.api.models import DNS_LABEL_PATTERN, Permission, StepRun, StepRunSpec
from steprun.config import OperatorConfig
from steprun.policy.decision import SandboxDecision
from steprun.render.context import context_document, merged_env, render_configmap, reserved_env
from steprun.render.names import child_labels, claim_name
from steprun.render.pod import RenderError, render_pod
from steprun.render.sandbox import harden_pod
from steprun.render.workspaces import (
    claim_belongs_to_run,
    owners_with,
    render_claim,
    run_claims,
)

CONFIG = OperatorConfig()
RUN = {"workflow": {"name": "build", "runId": "42", "stepId": "compile", "jobId": "main"}}
TEMPLATE = {"spec": {"resources": {"requests": {"storage": "1Gi"}}}}
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def steprun(name: str = "build-42-compile", uid: str = "uid-1", **spec: Any) -> StepRun:
    spec.setdefault("image", "busybox:1.36")
    return StepRun.from_body(
        {
            "apiVersion": "steprun.dev/v1alpha1",
            "kind": "StepRun",
            "metadata": {"name": name, "namespace": "ci", "uid": uid},
            "spec": spec,
        }
    )


def sandbox_decision(*grants: Permission) -> SandboxDecision:
    return SandboxDecision(
        policy="default",
        plugin="tool",
        image="registry.example/tool:1",
        command=["tool"],
        granted=frozenset(grants),
        timeout_seconds=600,
        resources=None,
    )


def step_container(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod["spec"]["containers"]
    return dict(container)


def workspace_mounts(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in step_container(pod)["volumeMounts"] if m["name"].startswith("ws-")]


def volumes_by_name(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in pod["spec"]["volumes"]}


# ---------------------------------------------------------------- the Pod


def test_each_source_becomes_a_volume_mounted_at_its_path() -> None:
    sr = steprun(
        context=RUN,
        workspaces=[
            {"name": "src", "volumeClaimTemplate": TEMPLATE},
            {
                "name": "cache",
                "persistentVolumeClaim": {"claimName": "ci-cache"},
                "mountPath": "/cache",
                "subPath": "build-42",
                "readOnly": True,
            },
            {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi", "medium": "Memory"}},
        ],
    )
    pod = render_pod(sr, 1, CONFIG)
    assert workspace_mounts(pod) == [
        {"name": "ws-0", "mountPath": "/workspace/src"},
        {"name": "ws-1", "mountPath": "/cache", "subPath": "build-42", "readOnly": True},
        {"name": "ws-2", "mountPath": "/workspace/scratch"},
    ]
    volumes = volumes_by_name(pod)
    assert volumes["ws-0"] == {
        "name": "ws-0",
        "persistentVolumeClaim": {"claimName": claim_name("build", "42", "src")},
    }
    assert volumes["ws-1"] == {"name": "ws-1", "persistentVolumeClaim": {"claimName": "ci-cache"}}
    assert volumes["ws-2"] == {"name": "ws-2", "emptyDir": {"sizeLimit": "1Gi", "medium": "Memory"}}
    # The context volume is still there, untouched.
    assert "context" in volumes


def test_a_claim_named_twice_is_one_volume_mounted_twice() -> None:
    claim = {"persistentVolumeClaim": {"claimName": "cache"}}
    sr = steprun(
        workspaces=[
            {"name": "rw", **claim, "subPath": "builds"},
            {"name": "scratch", "emptyDir": {}},
            {"name": "view", **claim, "mountPath": "/cache", "readOnly": True},
        ]
    )
    pod = render_pod(sr, 1, CONFIG)
    assert [m["name"] for m in workspace_mounts(pod)] == ["ws-0", "ws-1", "ws-0"]
    assert workspace_mounts(pod)[2] == {"name": "ws-0", "mountPath": "/cache", "readOnly": True}
    assert sorted(n for n in volumes_by_name(pod) if n.startswith("ws-")) == ["ws-0", "ws-1"]


@pytest.mark.parametrize(
    ("working_dir", "expected"),
    [(None, "/workspace/src"), ("/elsewhere", "/elsewhere")],
    ids=["defaults-to-first-workspace", "explicit-wins"],
)
def test_working_dir(working_dir: str | None, expected: str) -> None:
    spec: dict[str, Any] = {
        "workspaces": [{"name": "src", "emptyDir": {}}, {"name": "out", "emptyDir": {}}]
    }
    if working_dir:
        spec["workingDir"] = working_dir
    pod = render_pod(steprun(**spec), 1, CONFIG)
    assert step_container(pod)["workingDir"] == expected


def test_no_workspaces_no_working_dir_and_no_workspace_env() -> None:
    sr = steprun(script="true")
    pod = render_pod(sr, 1, CONFIG)
    assert "workingDir" not in step_container(pod)
    assert workspace_mounts(pod) == []
    assert "STEPRUN_WORKSPACE" not in reserved_env(sr, 1, CONFIG)
    assert "workspaces" not in context_document(sr)


def test_workspaces_reach_env_and_context_json() -> None:
    sr = steprun(
        workspaces=[
            {"name": "src", "emptyDir": {}, "mountPath": "/src/"},
            {"name": "out", "emptyDir": {}},
        ]
    )
    assert reserved_env(sr, 1, CONFIG)["STEPRUN_WORKSPACE"] == "/src"
    assert context_document(sr)["workspaces"] == {"src": "/src", "out": "/workspace/out"}


@pytest.mark.parametrize(
    "path", ["/var/run/steprun", "/var/run/steprun/context", "/var/run/steprun/secrets/x"]
)
def test_a_workspace_cannot_cover_the_operators_mounts(path: str) -> None:
    sr = steprun(workspaces=[{"name": "w", "emptyDir": {}, "mountPath": path}])
    with pytest.raises(RenderError, match="overlaps"):
        render_pod(sr, 1, CONFIG)


def test_sandbox_workspaces_are_read_only_without_filesystem_writable() -> None:
    sr = steprun(
        image=None,
        mode="sandbox",
        sandbox={"plugin": "tool", "permissions": ["workspaces.mount"]},
        workspaces=[{"name": "src", "persistentVolumeClaim": {"claimName": "shared"}}],
    )
    read_only = render_pod(sr, 1, CONFIG, sandbox_decision(Permission.WORKSPACES_MOUNT))
    assert workspace_mounts(read_only) == [
        {"name": "ws-0", "mountPath": "/workspace/src", "readOnly": True}
    ]
    writable = render_pod(
        sr,
        1,
        CONFIG,
        sandbox_decision(Permission.WORKSPACES_MOUNT, Permission.FILESYSTEM_WRITABLE),
    )
    assert workspace_mounts(writable) == [{"name": "ws-0", "mountPath": "/workspace/src"}]


def test_sandbox_without_the_grant_gets_no_workspace() -> None:
    sr = steprun(
        image=None,
        mode="sandbox",
        sandbox={"plugin": "tool"},
        workspaces=[{"name": "src", "emptyDir": {}}],
    )
    with pytest.raises(RenderError, match=r"workspaces\.mount"):
        render_pod(sr, 1, CONFIG, sandbox_decision())


def test_hardening_keeps_the_workspace_as_working_dir() -> None:
    decision = sandbox_decision(Permission.WORKSPACES_MOUNT)
    sr = steprun(
        image=None,
        mode="sandbox",
        sandbox={"plugin": "tool", "permissions": ["workspaces.mount"]},
        workspaces=[{"name": "src", "emptyDir": {}}],
    )
    hardened = harden_pod(render_pod(sr, 1, CONFIG, decision), decision)
    mounts = step_container(hardened)["volumeMounts"]
    # No scratch emptyDir shadows the workspace at the working directory.
    assert [m["name"] for m in mounts if m["mountPath"] == "/workspace/src"] == ["ws-0"]


# ---------------------------------------------------------------- the run's claim


def test_claim_is_one_per_run_and_workspace() -> None:
    first = steprun(
        "build-42-checkout",
        "uid-1",
        context=RUN,
        workspaces=[{"name": "src", "volumeClaimTemplate": TEMPLATE}],
    )
    (workspace,) = run_claims(first)
    claim = render_claim(first, workspace)
    assert claim["metadata"]["name"] == claim_name("build", "42", "src")
    assert claim["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "steprun",
        "steprun.dev/component": "workspace",
        "steprun.dev/workflow": "build",
        "steprun.dev/run-id": "42",
        "steprun.dev/workspace": "src",
    }
    assert claim["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "steprun.dev/v1alpha1",
            "kind": "StepRun",
            "name": "build-42-checkout",
            "uid": "uid-1",
            "controller": False,
            "blockOwnerDeletion": False,
        }
    ]
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "1Gi"}},
    }
    second = steprun(
        "build-42-test",
        "uid-2",
        context=RUN,
        workspaces=[{"name": "src", "volumeClaimTemplate": TEMPLATE}],
    )
    assert claim_belongs_to_run(claim, second, run_claims(second)[0])
    owners = owners_with(claim, second)
    assert owners is not None
    assert [o["uid"] for o in owners] == ["uid-1", "uid-2"]
    assert (
        owners_with({**claim, "metadata": {**claim["metadata"], "ownerReferences": owners}}, second)
        is None
    )


def test_a_claim_of_another_run_is_not_adopted() -> None:
    sr = steprun(context=RUN, workspaces=[{"name": "src", "volumeClaimTemplate": TEMPLATE}])
    (workspace,) = run_claims(sr)
    claim = render_claim(sr, workspace)
    for key, other in [
        ("steprun.dev/run-id", "43"),
        ("steprun.dev/workflow", "deploy"),
        ("steprun.dev/workspace", "out"),
        ("app.kubernetes.io/managed-by", "someone"),
    ]:
        foreign = json.loads(json.dumps(claim))
        foreign["metadata"]["labels"][key] = other
        assert not claim_belongs_to_run(foreign, sr, workspace), key
    unlabelled = {"metadata": {"name": claim["metadata"]["name"]}}
    assert not claim_belongs_to_run(unlabelled, sr, workspace)


@pytest.mark.parametrize(
    ("workflow", "run_id", "workspace"),
    [
        ("build", "42", "src"),
        ("Release.v1", "Run_7", "src"),
        ("w" * 63, "r" * 63, "s" * 63),
        ("", "", "src"),
    ],
    ids=["plain", "label-chars", "longest", "empty"],
)
def test_claim_names_are_dns_labels(workflow: str, run_id: str, workspace: str) -> None:
    name = claim_name(workflow, run_id, workspace)
    assert re.match(DNS_LABEL_PATTERN, name) and len(name) <= 63, name
    assert claim_name(workflow, run_id, workspace) == name


def test_claim_names_of_distinct_runs_differ_when_hashed() -> None:
    long = "x" * 40
    assert claim_name(long, "a-b", "src") != claim_name(f"{long}-a", "b", "src")
    assert claim_name(long, "1", "src") != claim_name(long, "2", "src")


def test_no_claim_name_is_another_runs_name_spelled_out() -> None:
    # Whoever knows a run's claim name must not be able to take it with a run of their own:
    # choosing run id "r-src-<hash>" gave the plain name of the first, hashed run.
    hashed = claim_name("v-w", "r", "src")
    workflow, run_id, rest = hashed.split("-", 2)
    assert (workflow, run_id) == ("v", "w")
    assert claim_name("v", "w", rest) != hashed
    assert claim_name("build", "42", "src") != "build-42-src"


def test_a_claim_name_ends_in_a_hash_of_all_three_values() -> None:
    name = claim_name("build", "42", "src")
    prefix, digest = name.rsplit("-", 1)
    assert prefix == "build-42-src"  # still readable in kubectl get pvc
    assert re.fullmatch("[0-9a-f]{16}", digest), digest  # 64 bits: no second run finds it


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"workspaces": [{"name": "w"}]}, "exactly one source"),
        (
            {
                "workspaces": [
                    {"name": "w", "emptyDir": {}, "persistentVolumeClaim": {"claimName": "c"}}
                ]
            },
            "exactly one source",
        ),
        ({"workspaces": [{"name": "w", "volumeClaimTemplate": TEMPLATE}]}, "context.workflow"),
        (
            {
                "context": {"workflow": {"name": "build"}},
                "workspaces": [{"name": "w", "volumeClaimTemplate": TEMPLATE}],
            },
            "runId",
        ),
        ({"workspaces": [{"name": "w", "emptyDir": {}, "subPath": "../up"}]}, "subPath"),
        ({"workspaces": [{"name": "w", "emptyDir": {}, "subPath": "/abs"}]}, "pattern"),
        ({"workspaces": [{"name": "w", "emptyDir": {}, "mountPath": "rel"}]}, "pattern"),
        ({"workspaces": [{"name": "Bad", "emptyDir": {}}]}, "pattern"),
        (
            {
                "workspaces": [
                    {"name": "a", "emptyDir": {}, "mountPath": "/workspace/b"},
                    {"name": "b", "emptyDir": {}},
                ]
            },
            "distinct mount paths",
        ),
    ],
    ids=[
        "no-source",
        "two-sources",
        "template-without-workflow",
        "template-without-run",
        "subpath-climbs",
        "subpath-absolute",
        "mountpath-relative",
        "name-not-dns",
        "same-path",
    ],
)
def test_invalid_workspaces_are_refused(spec: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        StepRunSpec.model_validate({"image": "busybox", **spec})


# ---------------------------------------------------------------- jobId and trace


def test_job_id_is_a_label_and_in_context_json() -> None:
    sr = steprun(context=RUN)
    assert child_labels(sr)["steprun.dev/job-id"] == "main"
    assert context_document(sr)["workflow"]["jobId"] == "main"


def test_trace_reaches_env_annotations_and_context_json() -> None:
    trace = {"traceparent": TRACEPARENT, "tracestate": "vendor=abc,other=1"}
    sr = steprun(context={"trace": trace, "env": {"TRACEPARENT": "from-context-env"}})
    env = merged_env(sr, CONFIG)
    assert env["TRACEPARENT"] == TRACEPARENT
    assert env["TRACESTATE"] == "vendor=abc,other=1"
    assert render_configmap(sr, CONFIG)["data"]["TRACEPARENT"] == TRACEPARENT
    pod = render_pod(sr, 1, CONFIG)
    assert pod["metadata"]["annotations"] == {
        "steprun.dev/traceparent": TRACEPARENT,
        "steprun.dev/tracestate": "vendor=abc,other=1",
    }
    names = [e["name"] for e in step_container(pod)["env"]]
    assert "TRACEPARENT" in names and "TRACESTATE" in names
    assert context_document(sr)["trace"] == trace


def test_step_env_overrides_the_trace_and_annotations_cannot_be_forged() -> None:
    sr = steprun(
        env={"TRACEPARENT": "mine"},
        context={"trace": {"traceparent": TRACEPARENT}},
        podTemplate={"annotations": {"steprun.dev/traceparent": "forged"}},
    )
    assert merged_env(sr, CONFIG)["TRACEPARENT"] == "mine"
    assert "TRACESTATE" not in merged_env(sr, CONFIG)
    assert render_pod(sr, 1, CONFIG)["metadata"]["annotations"] == {
        "steprun.dev/traceparent": TRACEPARENT
    }


@pytest.mark.parametrize(
    ("trace", "words"),
    [
        ({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"}, "pattern"),
        ({"traceparent": TRACEPARENT.upper()}, "pattern"),
        ({"traceparent": "ff" + TRACEPARENT[2:]}, "version ff"),
        ({"traceparent": TRACEPARENT + "-extra"}, "55 characters"),
        ({"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"}, "trace-id"),
        ({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01"}, "parent-id"),
        ({"traceparent": TRACEPARENT, "tracestate": "no-equals-sign"}, "pattern"),
        ({"traceparent": TRACEPARENT, "tracestate": "Upper=1"}, "pattern"),
        (
            {"traceparent": TRACEPARENT, "tracestate": ",".join(f"k{i}=v" for i in range(33))},
            "more than 32",
        ),
        ({"tracestate": "a=b"}, "traceparent"),
    ],
    ids=[
        "too-few-fields",
        "uppercase",
        "version-ff",
        "v00-extra-field",
        "zero-trace-id",
        "zero-parent-id",
        "state-not-key-value",
        "state-uppercase-key",
        "state-too-many-members",
        "state-without-parent",
    ],
)
def test_invalid_trace_context_is_refused(trace: dict[str, str], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        StepRunSpec.model_validate({"image": "busybox", "context": {"trace": trace}})


@pytest.mark.parametrize(
    "trace",
    [
        {"traceparent": TRACEPARENT},
        {"traceparent": "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-future"},
        {"traceparent": TRACEPARENT, "tracestate": "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE"},
        {"traceparent": TRACEPARENT, "tracestate": "tenant@vendor=x"},
    ],
    ids=["parent-only", "future-version", "two-members", "multi-tenant-key"],
)
def test_valid_trace_context_is_accepted(trace: dict[str, str]) -> None:
    spec = StepRunSpec.model_validate({"image": "busybox", "context": {"trace": trace}})
    assert spec.context.trace is not None and spec.context.trace.to_api() == trace
