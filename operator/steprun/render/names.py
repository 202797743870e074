"""Names, labels and owner references of the objects a StepRun owns.

Every child name is derived from the StepRun name alone (plus the attempt for Pods), so a
restarted operator finds the objects it created before instead of creating duplicates.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from steprun.api.models import API_VERSION, StepRun, StepRunSpec

LABEL_PREFIX = "steprun.dev/"
LABEL_NAME = "steprun.dev/name"
LABEL_UID = "steprun.dev/uid"
LABEL_ATTEMPT = "steprun.dev/attempt"
LABEL_WORKFLOW = "steprun.dev/workflow"
LABEL_RUN = "steprun.dev/run-id"
LABEL_STEP = "steprun.dev/step-id"
LABEL_JOB = "steprun.dev/job-id"
LABEL_WORKSPACE = "steprun.dev/workspace"
LABEL_SANDBOX = "steprun.dev/sandbox"
LABEL_POLICY = "steprun.dev/policy"
LABEL_COMPONENT = "steprun.dev/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
ANNOTATION_TRACEPARENT = "steprun.dev/traceparent"
ANNOTATION_TRACESTATE = "steprun.dev/tracestate"
# When the operator created the Pod, by its own clock: the attempt's startup timeout counts
# from it until a status write records the attempt (a Pod that starts promptly is recorded
# only once it runs).
ANNOTATION_CREATED_AT = "steprun.dev/created-at"
# On a run's claim: the uid of the StepRun whose step made it. Only the operator writes it (the
# claim-origin admission policy), so an existing claim without it is not joined.
ANNOTATION_CLAIM_CREATOR = "steprun.dev/created-for"
MANAGED_BY = "steprun"

# Held on every step Pod until its attempt's outcome is in the StepRun's status, so a Pod that
# finishes and is deleted while the operator is away (PodGC, a janitor) is still read, and the
# step never runs twice for want of its outcome (the Job controller's job-tracking finalizer).
TRACKING_FINALIZER = "steprun.dev/step-tracking"

COMPONENT_POD = "pod"
COMPONENT_CONTEXT = "context"
COMPONENT_NETWORK = "network"
COMPONENT_WORKSPACE = "workspace"

# Pod names end up as the Pod's hostname, so they are kept to a DNS label (RFC 1123), and the
# other children follow the same scheme so one rule explains every name.
MAX_NAME_LENGTH = 63
# A label value has the same length limit; StepRun names (DNS subdomains) may be longer.
MAX_LABEL_VALUE_LENGTH = 63
_HASH_LENGTH = 8
_CLAIM_HASH_LENGTH = 16
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NOT_DNS_LABEL_CHAR = re.compile(r"[^a-z0-9-]")


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_LENGTH]


def _bounded_name(base: str, suffix: str) -> str:
    """``base + suffix`` when that is a valid DNS label, else a shortened, hashed form.

    The hash covers the whole base, so two StepRuns whose names share a long prefix (or differ
    only in characters a DNS label cannot hold, such as dots) still get distinct children.
    """
    plain = f"{base}{suffix}"
    if len(plain) <= MAX_NAME_LENGTH and _DNS_LABEL.match(plain):
        return plain
    digest = _short_hash(base)
    room = MAX_NAME_LENGTH - len(suffix) - len(digest) - 1
    prefix = _NOT_DNS_LABEL_CHAR.sub("-", base.lower())[:room].strip("-")
    return f"{prefix}-{digest}{suffix}" if prefix else f"{digest}{suffix}"


def pod_name(steprun_name: str, attempt: int) -> str:
    """The Pod of one attempt, e.g. ``build-42-lint-1`` for the first attempt."""
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    return _bounded_name(steprun_name, f"-{attempt}")


def context_name(steprun_name: str) -> str:
    """The per-step ConfigMap and Secret: both carry this name, shared by all attempts."""
    return _bounded_name(steprun_name, "-context")


def workload_name(steprun_name: str) -> str:
    """The Kueue Workload of a queued step, shared by all its attempts."""
    return _bounded_name(steprun_name, "-workload")


def artifact_urls_name(steprun_name: str, attempt: int) -> str:
    """The Secret holding one attempt's presigned artifact URLs, read by its helper containers."""
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    return _bounded_name(steprun_name, f"-artifacts-{attempt}")


def network_policy_name(steprun_name: str) -> str:
    """The NetworkPolicy that confines a sandbox step's Pods."""
    return _bounded_name(steprun_name, "-sandbox")


def claim_name(workflow: str, run_id: str, workspace: str) -> str:
    """The PersistentVolumeClaim of one workspace of one workflow run, shared by its steps.

    Derived from the three values alone, so every StepRun of the run finds the same claim; the
    claim's labels record the exact values, which is what adoption checks. Always
    ``<workflow>-<runId>-<workspace>`` (shortened, made a DNS label) and a hash of the three
    values apart: a plain form, even only where it was unambiguous, let a run choose a run id
    that spelled out another run's hashed name and take its claim. The hash has 64 bits so that
    nobody finds a second run of the same name by trying run ids.
    """
    digest = hashlib.sha256("\0".join((workflow, run_id, workspace)).encode()).hexdigest()
    digest = digest[:_CLAIM_HASH_LENGTH]
    plain = f"{workflow}-{run_id}-{workspace}"
    prefix = _NOT_DNS_LABEL_CHAR.sub("-", plain.lower())[: MAX_NAME_LENGTH - len(digest) - 1]
    prefix = prefix.strip("-")
    return f"{prefix}-{digest}" if prefix else digest


def name_label_value(steprun_name: str) -> str:
    """The ``steprun.dev/name`` label value: the name itself, hashed when longer than 63."""
    if len(steprun_name) <= MAX_LABEL_VALUE_LENGTH:
        return steprun_name
    digest = _short_hash(steprun_name)
    prefix = steprun_name[: MAX_LABEL_VALUE_LENGTH - len(digest) - 1].rstrip("-.")
    return f"{prefix}-{digest}"


def workflow_labels(spec: StepRunSpec) -> dict[str, str]:
    """The labels that say which workflow, run, step and job a step serves (only those given):
    on the StepRun (the engine client's ``list()`` filters) and on everything it owns."""
    workflow = spec.context.workflow
    if workflow is None:
        return {}
    values = {
        LABEL_WORKFLOW: workflow.name,
        LABEL_RUN: workflow.run_id,
        LABEL_STEP: workflow.step_id,
        LABEL_JOB: workflow.job_id,
    }
    return {key: value for key, value in values.items() if value}


def child_labels(sr: StepRun) -> dict[str, str]:
    """Labels on every object a StepRun owns: who owns it and which workflow run it serves."""
    labels = {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_NAME: name_label_value(sr.name),
    }
    if sr.uid:
        labels[LABEL_UID] = sr.uid
    return labels | workflow_labels(sr.spec)


def pod_labels(sr: StepRun, attempt: int) -> dict[str, str]:
    """The labels of an attempt's Pod."""
    return {
        **child_labels(sr),
        LABEL_ATTEMPT: str(attempt),
        LABEL_COMPONENT: COMPONENT_POD,
    }


def is_reserved_key(key: str) -> bool:
    """Keys only the operator writes: step authors cannot set or override them."""
    return key.startswith(LABEL_PREFIX) or key == LABEL_MANAGED_BY


def owner_reference(sr: StepRun) -> dict[str, Any]:
    """Makes the StepRun the controller of a child, so garbage collection follows it."""
    return {
        "apiVersion": API_VERSION,
        "kind": "StepRun",
        "name": sr.name,
        "uid": sr.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def label_selector_for(steprun_name: str) -> str:
    """Selects every child of the StepRun named ``steprun_name`` (for lists and watches)."""
    return f"{LABEL_NAME}={name_label_value(steprun_name)},{LABEL_MANAGED_BY}={MANAGED_BY}"
