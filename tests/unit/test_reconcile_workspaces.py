"""The run's claim is created once and shared, against an in-memory API with real conflict rules."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from steprun.api.models import StepRun
from steprun.kube.client import AlreadyExists, Conflict, NotFound, Transient
from steprun.reconcile.workspaces import WorkspaceUnavailable, ensure_workspaces

RUN = {"workflow": {"name": "build", "runId": "42"}}
TEMPLATE = {"spec": {"resources": {"requests": {"storage": "1Gi"}}}}
CLAIM = "build-42-src"


class MemoryApi:
    """Create, get and resourceVersion-guarded merge patches of PersistentVolumeClaims."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.version = 0
        self.writes: list[str] = []
        # Runs once before the next patch is applied: another writer slipping in.
        self.before_patch: Callable[[], None] | None = None

    def put(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        body = copy.deepcopy(body)
        body["metadata"]["resourceVersion"] = str(self.version)
        self.objects[(body["metadata"]["namespace"], body["metadata"]["name"])] = body
        return copy.deepcopy(body)

    async def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        self.writes.append("create")
        if key in self.objects:
            raise AlreadyExists(409, "AlreadyExists", "exists", None)
        return self.put(dict(body))

    async def get_or_none(self, kind: str, namespace: str | None, name: str) -> Any:
        assert kind == "PersistentVolumeClaim"
        found = self.objects.get((str(namespace), name))
        return copy.deepcopy(found) if found is not None else None

    async def patch(
        self,
        kind: str,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        *,
        resource_version: str | None,
    ) -> dict[str, Any]:
        self.writes.append("patch")
        if self.before_patch is not None:
            hook, self.before_patch = self.before_patch, None
            hook()
        current = self.objects.get((str(namespace), name))
        if current is None:
            raise NotFound(404, "NotFound", "gone", None)
        if resource_version != current["metadata"]["resourceVersion"]:
            raise Conflict(409, "Conflict", "the object has been modified", None)
        updated = copy.deepcopy(current)
        updated["metadata"].update(patch["metadata"])
        return self.put(updated)


def steprun(name: str, uid: str, **spec: Any) -> StepRun:
    spec.setdefault("image", "busybox")
    spec.setdefault("context", RUN)
    spec.setdefault("workspaces", [{"name": "src", "volumeClaimTemplate": TEMPLATE}])
    return StepRun.from_body(
        {
            "apiVersion": "steprun.dev/v1alpha1",
            "kind": "StepRun",
            "metadata": {"name": name, "namespace": "ci", "uid": uid},
            "spec": spec,
        }
    )


def owners(api: MemoryApi) -> list[str]:
    claim = api.objects[("ci", CLAIM)]
    return [ref["uid"] for ref in claim["metadata"]["ownerReferences"]]


async def test_first_step_creates_later_ones_join_and_repeats_change_nothing() -> None:
    api = MemoryApi()
    first, second = steprun("checkout", "u1"), steprun("test", "u2")
    await ensure_workspaces(api, first)  # type: ignore[arg-type]
    await ensure_workspaces(api, second)  # type: ignore[arg-type]
    assert owners(api) == ["u1", "u2"]
    writes = len(api.writes)
    # A restarted operator (or a retry) runs the same steps again: nothing more is written
    # beyond the create that finds the claim there.
    await ensure_workspaces(api, first)  # type: ignore[arg-type]
    await ensure_workspaces(api, second)  # type: ignore[arg-type]
    assert owners(api) == ["u1", "u2"]
    assert api.writes[writes:] == ["create", "create"]


async def test_a_concurrent_owner_is_never_lost() -> None:
    api = MemoryApi()
    await ensure_workspaces(api, steprun("checkout", "u1"))  # type: ignore[arg-type]

    def sibling_joins() -> None:
        claim = copy.deepcopy(api.objects[("ci", CLAIM)])
        claim["metadata"]["ownerReferences"].append({"uid": "u3", "name": "lint"})
        api.put(claim)

    api.before_patch = sibling_joins
    await ensure_workspaces(api, steprun("test", "u2"))  # type: ignore[arg-type]
    assert owners(api) == ["u1", "u3", "u2"]


async def test_a_claim_not_made_for_the_run_is_refused() -> None:
    api = MemoryApi()
    api.put({"metadata": {"name": CLAIM, "namespace": "ci", "labels": {"team": "x"}}})
    with pytest.raises(WorkspaceUnavailable, match=f'"{CLAIM}" exists but steprun did not make'):
        await ensure_workspaces(api, steprun("checkout", "u1"))  # type: ignore[arg-type]
    assert "ownerReferences" not in api.objects[("ci", CLAIM)]["metadata"]


async def test_a_terminating_claim_is_waited_for() -> None:
    api = MemoryApi()
    await ensure_workspaces(api, steprun("checkout", "u1"))  # type: ignore[arg-type]
    api.objects[("ci", CLAIM)]["metadata"]["deletionTimestamp"] = "2024-05-01T10:00:00Z"
    with pytest.raises(Transient, match="being deleted") as raised:
        await ensure_workspaces(api, steprun("test", "u2"))  # type: ignore[arg-type]
    assert not isinstance(raised.value, WorkspaceUnavailable)
    assert owners(api) == ["u1"]


async def test_existing_claims_must_exist() -> None:
    api = MemoryApi()
    sr = steprun(
        "use", "u1", workspaces=[{"name": "c", "persistentVolumeClaim": {"claimName": "x"}}]
    )
    with pytest.raises(WorkspaceUnavailable, match='PersistentVolumeClaim "x" not found'):
        await ensure_workspaces(api, sr)  # type: ignore[arg-type]
    api.put({"metadata": {"name": "x", "namespace": "ci"}})
    await ensure_workspaces(api, sr)  # type: ignore[arg-type]
    assert api.writes == []


async def test_scratch_workspaces_touch_nothing() -> None:
    api = MemoryApi()
    await ensure_workspaces(api, steprun("s", "u1", workspaces=[{"name": "t", "emptyDir": {}}]))  # type: ignore[arg-type]
    assert api.writes == [] and api.objects == {}
