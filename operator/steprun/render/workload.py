"""The Kueue Workload of a queued StepRun, and what its admission adds to the step's Pod.

A StepRun labelled ``kueue.x-k8s.io/queue-name`` is admitted by Kueue before anything of it
exists: the operator acts as Kueue's integration for StepRuns (as the Job controller's
integration does for Jobs) and creates one Workload per StepRun, owned by it, with one pod set
of count 1 whose template is the step's own Pod as rendered (its containers' requests, init
containers included, and its scheduling constraints), so Kueue accounts exactly what will run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from steprun.api.models import StepRun
from steprun.render.names import child_labels, owner_reference, workload_name

KUEUE_GROUP = "kueue.x-k8s.io"
KUEUE_API_VERSION = f"{KUEUE_GROUP}/v1beta2"
QUEUE_LABEL = f"{KUEUE_GROUP}/queue-name"
PRIORITY_LABEL = f"{KUEUE_GROUP}/priority-class"
POD_SET = "main"
# The pod-template fields Kueue reads for quota and flavour assignment; the rest of the Pod
# (env, volumes, the script) is of no use to it and stays out of the Workload.
_CONTAINER_FIELDS = ("name", "image", "resources")
_SPEC_FIELDS = ("nodeSelector", "tolerations", "affinity", "priorityClassName", "runtimeClassName")


def queue_name(sr: StepRun) -> str | None:
    """The LocalQueue a StepRun asks for; None when it is not queued by Kueue."""
    return sr.metadata.labels.get(QUEUE_LABEL) or None


def _container(container: Mapping[str, Any]) -> dict[str, Any]:
    return {k: container[k] for k in _CONTAINER_FIELDS if k in container}


def render_workload(
    sr: StepRun, pod: Mapping[str, Any], priority: tuple[str, int] | None = None
) -> dict[str, Any]:
    """The Workload that asks Kueue to admit ``pod`` (the step's first Pod as rendered).
    ``priority``: the WorkloadPriorityClass named by the StepRun's priority-class label and its
    value (Kueue's integrations resolve it when they create the Workload)."""
    queue = queue_name(sr)
    if queue is None:
        raise ValueError(f"StepRun {sr.name} has no {QUEUE_LABEL} label")
    spec = pod.get("spec") or {}
    template_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [_container(c) for c in spec.get("containers") or []],
    }
    if spec.get("initContainers"):
        template_spec["initContainers"] = [_container(c) for c in spec["initContainers"]]
    template_spec.update({k: spec[k] for k in _SPEC_FIELDS if spec.get(k)})
    labels = child_labels(sr)
    workload_spec: dict[str, Any] = {
        "queueName": queue,
        "podSets": [{"name": POD_SET, "count": 1, "template": {"spec": template_spec}}],
    }
    if priority is not None:
        labels[PRIORITY_LABEL] = priority[0]
        workload_spec["priorityClassRef"] = {
            "group": KUEUE_GROUP,
            "kind": "WorkloadPriorityClass",
            "name": priority[0],
        }
        workload_spec["priority"] = priority[1]
    return {
        "apiVersion": KUEUE_API_VERSION,
        "kind": "Workload",
        "metadata": {
            "name": workload_name(sr.name),
            "namespace": sr.namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(sr)],
        },
        "spec": workload_spec,
    }


def with_admission(pod: dict[str, Any], flavors: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """``pod`` placed where Kueue admitted it: the node labels and tolerations of each admitted
    ResourceFlavor added to its own (as Kueue's integrations do when they start a job). A
    node-selector key the Pod already sets keeps the Pod's value: the flavour was chosen to fit
    it."""
    spec = pod.setdefault("spec", {})
    selector = dict(spec.get("nodeSelector") or {})
    tolerations = list(spec.get("tolerations") or [])
    for flavor in flavors:
        flavor_spec = flavor.get("spec") or {}
        for key, value in (flavor_spec.get("nodeLabels") or {}).items():
            selector.setdefault(key, value)
        for toleration in flavor_spec.get("tolerations") or []:
            if toleration not in tolerations:
                tolerations.append(dict(toleration))
    if selector:
        spec["nodeSelector"] = selector
    if tolerations:
        spec["tolerations"] = tolerations
    return pod
