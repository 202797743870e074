"""The objects of one benchmark step, as a StepRun and as the equivalent Job (pure).

Both sides run the same image and command and hand the container the same context: the same
env, a context.json of the same size mounted at the same path, and one key of the same Secret
as an env var. A StepRun gets all that from its spec (the operator renders a ConfigMap and a
Secret per step); a Job gets it the way a Job user would provide it: plain env in the Pod
template, a per-step ConfigMap the client creates beforehand, and a reference to the source
Secret.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

Body = dict[str, Any]
NodeMode = Literal["kwok", "real"]
# The arms of a scenario: StepRuns, Jobs, and bare Pods the benchmark client creates itself
# (the floor: what it costs to run the same Pod with no controller at all).
Side = Literal["steprun", "job", "pod"]
SIDES: tuple[Side, Side, Side] = ("steprun", "job", "pod")

IMAGE = "steprun.local/step:1"
CONTEXT_DIR = "/var/run/steprun/context"
CONTEXT_FILE = f"{CONTEXT_DIR}/context.json"
# On a real kubelet the step proves it received its context; on kwok nothing runs.
SCRIPT = f'test -s {CONTEXT_FILE} && test -n "$TOKEN"'
SOURCE_SECRET = "bench-source"
SOURCE_SECRET_KEY = "token"
CONTEXT_VOLUME = "context"

KWOK_NODE_SELECTOR = {"type": "kwok"}
KWOK_TOLERATION = {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}
# Read by hack/kwok/pod-stages.yaml: how long a fake container runs.
RUN_DURATION_ANNOTATION = "kwok.steprun.dev/run-duration"
BENCH_LABEL = "steprun.dev/bench"


@dataclass(frozen=True)
class Workload:
    """What every step of one scenario looks like."""

    run_id: str
    nodes: NodeMode
    context_bytes: int
    run_duration: str
    # More node labels to select on kwok, e.g. to use one pool of fake nodes among several.
    node_labels: tuple[tuple[str, str], ...] = ()

    def step_name(self, index: int) -> str:
        return f"s-{index:05d}"

    def step_env(self, index: int) -> dict[str, str]:
        return {"STEP_INDEX": str(index)}

    def workflow_env(self) -> dict[str, str]:
        return {"CI": "true", "BENCH_RUN": self.run_id}

    def inputs(self) -> dict[str, Any]:
        return {"payload": "x" * self.context_bytes}

    def pod_annotations(self) -> dict[str, str]:
        return {RUN_DURATION_ANNOTATION: self.run_duration} if self.nodes == "kwok" else {}

    def placement(self) -> Body:
        """nodeSelector and tolerations: fake nodes only, or wherever the scheduler likes."""
        if self.nodes == "kwok":
            selector = {**KWOK_NODE_SELECTOR, **dict(self.node_labels)}
            return {"nodeSelector": selector, "tolerations": [KWOK_TOLERATION]}
        return {}


def source_secret(namespace: str) -> Body:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SOURCE_SECRET, "namespace": namespace},
        "stringData": {SOURCE_SECRET_KEY: "bench-token-value"},
    }


def steprun(workload: Workload, namespace: str, index: int) -> Body:
    name = workload.step_name(index)
    template: Body = {**workload.placement()}
    if annotations := workload.pod_annotations():
        template["annotations"] = annotations
    return {
        "apiVersion": "steprun.dev/v1alpha1",
        "kind": "StepRun",
        "metadata": {"name": name, "namespace": namespace, "labels": {BENCH_LABEL: "true"}},
        "spec": {
            "image": IMAGE,
            "command": ["/bin/sh", "-c"],
            "args": [SCRIPT],
            "env": workload.step_env(index),
            "context": {
                "workflow": {"name": "bench", "runId": workload.run_id, "stepId": name},
                "env": workload.workflow_env(),
                "inputs": workload.inputs(),
                "secrets": [
                    {
                        "name": "TOKEN",
                        "secretKeyRef": {"name": SOURCE_SECRET, "key": SOURCE_SECRET_KEY},
                    }
                ],
            },
            "podTemplate": template,
        },
    }


def job_context_configmap(workload: Workload, namespace: str, index: int) -> Body:
    """What the operator puts in a step's ConfigMap, made by the client for a Job."""
    name = workload.step_name(index)
    document = {
        "workflow": {"name": "bench", "runId": workload.run_id, "stepId": name},
        "inputs": workload.inputs(),
        "step": {"name": name, "namespace": namespace},
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-context", "namespace": namespace},
        "immutable": True,
        "data": {"context.json": json.dumps(document, separators=(",", ":"))},
    }


def _pod_spec(workload: Workload, name: str, index: int) -> Body:
    """The Pod a Job runs for step ``name``, and the bare Pod the floor arm creates."""
    env: list[Body] = [
        {"name": key, "value": value}
        for key, value in sorted({**workload.workflow_env(), **workload.step_env(index)}.items())
    ]
    env.append(
        {
            "name": "TOKEN",
            "valueFrom": {"secretKeyRef": {"name": SOURCE_SECRET, "key": SOURCE_SECRET_KEY}},
        }
    )
    return {
        "restartPolicy": "Never",
        **workload.placement(),
        "containers": [
            {
                "name": "step",
                "image": IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "command": ["/bin/sh", "-c"],
                "args": [SCRIPT],
                "env": env,
                "volumeMounts": [
                    {"name": CONTEXT_VOLUME, "mountPath": CONTEXT_DIR, "readOnly": True}
                ],
            }
        ],
        "volumes": [{"name": CONTEXT_VOLUME, "configMap": {"name": f"{name}-context"}}],
    }


def job(workload: Workload, namespace: str, index: int) -> Body:
    name = workload.step_name(index)
    metadata: Body = {}
    if annotations := workload.pod_annotations():
        metadata["annotations"] = annotations
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": {BENCH_LABEL: "true"}},
        "spec": {
            # Like a StepRun without retries: one attempt, one Pod.
            "backoffLimit": 0,
            "completions": 1,
            "parallelism": 1,
            "template": {"metadata": metadata, "spec": _pod_spec(workload, name, index)},
        },
    }


def bare_pod(workload: Workload, namespace: str, index: int) -> Body:
    """The Job's Pod, created by the client itself: no controller between create and run."""
    name = workload.step_name(index)
    metadata: Body = {"name": name, "namespace": namespace, "labels": {BENCH_LABEL: "true"}}
    if annotations := workload.pod_annotations():
        metadata["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": _pod_spec(workload, name, index),
    }
