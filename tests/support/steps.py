"""Helpers for cluster tests: create StepRuns, wait for phases, look at what the operator made."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client

GROUP, VERSION, PLURAL = "steprun.dev", "v1alpha1", "stepruns"
TERMINAL = {"Succeeded", "Failed", "TimedOut", "Cancelled", "Rejected"}
T = TypeVar("T")


def eventually(probe: Callable[[], T | None], timeout: float, what: str, every: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Steps:
    """StepRuns of one namespace."""

    def __init__(self, api: client.ApiClient, namespace: str):
        self.api = api
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)

    def create(self, name: str, spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "StepRun",
            "metadata": {"name": name, **metadata},
            "spec": spec,
        }
        return dict(
            self.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, body
            )
        )

    def get(self, name: str) -> dict[str, Any]:
        return dict(
            self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        )

    def exists(self, name: str) -> bool:
        try:
            self.get(name)
            return True
        except client.ApiException as error:
            if error.status == 404:
                return False
            raise

    def patch_spec(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return dict(
            self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, {"spec": spec}
            )
        )

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.get(name).get("status") or {})

    def wait_phase(self, name: str, phases: set[str] | str, timeout: float = 90) -> dict[str, Any]:
        wanted = {phases} if isinstance(phases, str) else phases

        def probe() -> dict[str, Any] | None:
            status = self.status(name)
            return status if status.get("phase") in wanted else None

        return eventually(probe, timeout, f"StepRun {name} to reach {sorted(wanted)}")

    def wait_terminal(self, name: str, timeout: float = 90) -> dict[str, Any]:
        status = self.wait_phase(name, TERMINAL, timeout)
        assert_failure_matches(status)
        return status

    def pods(self, name: str) -> list[client.V1Pod]:
        pods = self.core.list_namespaced_pod(
            self.namespace, label_selector=f"steprun.dev/name={name}"
        ).items
        return sorted(pods, key=lambda p: p.metadata.name)

    def configmap_exists(self, name: str) -> bool:
        return any(
            cm.metadata.name == name
            for cm in self.core.list_namespaced_config_map(self.namespace).items
        )

    def context_outliving(self, name: str) -> list[str]:
        """What of StepRun ``name``'s context outlives its end: docs/api.md has the operator delete
        both its Secret and its ConfigMap when the step reaches a terminal phase."""
        left = []
        if self.secret_exists(f"{name}-context"):
            left.append(f"Secret/{name}-context")
        if self.configmap_exists(f"{name}-context"):
            left.append(f"ConfigMap/{name}-context")
        return left

    def secret_exists(self, name: str) -> bool:
        return any(
            s.metadata.name == name for s in self.core.list_namespaced_secret(self.namespace).items
        )

    def events(self, name: str) -> list[client.CoreV1Event]:
        return list(
            self.core.list_namespaced_event(
                self.namespace,
                field_selector=f"involvedObject.name={name},involvedObject.kind=StepRun",
            ).items
        )

    def apply_file(self, path: Path) -> list[str]:
        """Create every object of a YAML file; return the names of the StepRuns in it."""
        import yaml

        names = []
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            if doc["kind"] == "StepRun":
                self.create(doc["metadata"]["name"], doc["spec"])
                names.append(doc["metadata"]["name"])
            elif doc["kind"] == "Secret":
                self.core.create_namespaced_secret(self.namespace, doc)
            elif doc["kind"] == "PersistentVolumeClaim":
                self.core.create_namespaced_persistent_volume_claim(self.namespace, doc)
            else:
                raise AssertionError(f"unexpected kind {doc['kind']} in {path}")
        return names


def audit_pod_creations(audit_log: Path, namespace: str) -> list[str]:
    """Names of the Pods successfully created in ``namespace``, per the API server's audit log."""
    created = []
    if not audit_log.exists():
        return created
    for line in audit_log.read_text().splitlines():
        entry = json.loads(line)
        ref = entry.get("objectRef") or {}
        if (
            entry.get("verb") == "create"
            and ref.get("resource") == "pods"
            and not ref.get("subresource")
            and ref.get("namespace") == namespace
            and entry.get("stage") == "ResponseComplete"
            and (entry.get("responseStatus") or {}).get("code") in (200, 201)
        ):
            created.append(ref.get("name"))
    return created


def audit_pod_requests(audit_log: Path, namespace: str) -> list[tuple[str, str, int]]:
    """(verb, Pod name, HTTP code) of every Pod create and delete in ``namespace``."""
    requests = []
    for line in audit_log.read_text().splitlines():
        entry = json.loads(line)
        ref = entry.get("objectRef") or {}
        if (
            entry.get("verb") in ("create", "delete")
            and entry.get("stage") == "ResponseComplete"
            and ref.get("resource") == "pods"
            and not ref.get("subresource")
            and ref.get("namespace") == namespace
        ):
            code = (entry.get("responseStatus") or {}).get("code") or 0
            requests.append((str(entry["verb"]), str(ref.get("name")), int(code)))
    return requests


def assert_each_pod_created_once(audit_log: Path, namespace: str, expected: set[str]) -> None:
    """Proof from the API server's audit log that no Pod was ever created twice.

    A listing cannot show a Pod created and deleted again; the audit log can. A create whose
    client was killed mid-request is logged as 504 even when the Pod was stored (the restarted
    operator then meets 409 and adopts it), so the proof is: nobody deleted a Pod, no name was
    stored twice, and no Pod outside the expected names was attempted."""
    requests = audit_pod_requests(audit_log, namespace)
    deleted = [name for verb, name, _ in requests if verb == "delete"]
    assert deleted == [], deleted
    stored = [name for verb, name, code in requests if verb == "create" and code in (200, 201)]
    assert len(stored) == len(set(stored)), sorted(stored)
    attempted = {name for verb, name, _ in requests if verb == "create"}
    assert attempted == expected, sorted(attempted ^ expected)
    assert stored, "no Pod creation in the audit log"


# Terminal phases that are no failure: the step did what it was asked, or was asked to stop.
_NOT_FAILED = frozenset({"Succeeded", "Cancelled"})


def assert_failure_matches(status: dict[str, Any]) -> None:
    """Every terminal status any suite waits for says why it failed, consistently with its
    reason: status.failure on a failed step, on each failed attempt, and on nothing else."""
    failure = status.get("failure")
    if status.get("phase") in _NOT_FAILED:
        assert failure is None, status
    else:
        assert failure is not None and failure.get("reason") == status.get("reason"), status
        assert failure.get("category") in {"Step", "Platform", "Config"}, status
    for attempt in status.get("attempts") or []:
        ended = attempt.get("completionTime") and attempt.get("reason") not in (
            "Completed",
            "Cancelled",
        )
        attempt_failure = attempt.get("failure")
        if ended:
            assert attempt_failure is not None, attempt
            assert attempt_failure.get("reason") == attempt.get("reason"), attempt
        else:
            assert attempt_failure is None, attempt
