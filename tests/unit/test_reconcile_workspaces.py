"""The run's claim is created once and shared, against an in-memory API with real conflict rules."""

from __future__ import annotations

from typing import Any

import pytest

from steprun.api.models import StepRun
from steprun.config import OperatorConfig
from steprun.kube.client import Transient
from steprun.reconcile.tenancy import Tenancy
from steprun.reconcile.workspaces import WorkspaceUnavailable, ensure_workspaces
from steprun.render.names import claim_name
from steprun.render.workspaces import render_claim
from tests.support.fake_kube import FakeKube

RUN = {"workflow": {"name": "build", "runId": "42"}}
TEMPLATE = {"spec": {"resources": {"requests": {"storage": "1Gi"}}}}
CLAIM = claim_name("build", "42", "src")


PVC = "PersistentVolumeClaim"


def claim(name: str, **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": PVC,
        "metadata": {"name": name, "namespace": "ci", **metadata},
    }


def writes(kube: FakeKube) -> list[str]:
    return [verb for verb, _, _ in kube.calls if verb in ("create", "patch", "delete")]


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


def owners(kube: FakeKube) -> list[str]:
    found = kube.find(PVC, "ci", CLAIM)
    assert found is not None
    return [ref["uid"] for ref in found["metadata"]["ownerReferences"]]


async def test_first_step_creates_later_ones_join_and_repeats_change_nothing() -> None:
    api = FakeKube()
    first, second = steprun("checkout", "u1"), steprun("test", "u2")
    await ensure_workspaces(api, first)  # type: ignore[arg-type]
    await ensure_workspaces(api, second)  # type: ignore[arg-type]
    assert owners(api) == ["u1", "u2"]
    written = len(writes(api))
    # A restarted operator (or a retry) runs the same steps again: nothing more is written
    # beyond the create that finds the claim there.
    await ensure_workspaces(api, first)  # type: ignore[arg-type]
    await ensure_workspaces(api, second)  # type: ignore[arg-type]
    assert owners(api) == ["u1", "u2"]
    assert writes(api)[written:] == ["create", "create"]


async def test_a_concurrent_owner_is_never_lost() -> None:
    api = FakeKube()
    await ensure_workspaces(api, steprun("checkout", "u1"))  # type: ignore[arg-type]

    def sibling_joins() -> None:
        sibling = {"uid": "u3", "name": "lint"}
        api.cluster.update(
            PVC, "ci", CLAIM, lambda c: c["metadata"]["ownerReferences"].append(sibling)
        )

    api.cluster.interleave("patch", PVC, sibling_joins)
    await ensure_workspaces(api, steprun("test", "u2"))  # type: ignore[arg-type]
    assert owners(api) == ["u1", "u3", "u2"]


async def test_a_claim_not_made_for_the_run_is_refused() -> None:
    api = FakeKube()
    api.put(claim(CLAIM, labels={"team": "x"}))
    with pytest.raises(WorkspaceUnavailable, match=f'"{CLAIM}" exists but steprun did not make'):
        await ensure_workspaces(api, steprun("checkout", "u1"))  # type: ignore[arg-type]
    assert "ownerReferences" not in (api.find(PVC, "ci", CLAIM) or {})["metadata"]


async def test_a_terminating_claim_is_waited_for() -> None:
    api = FakeKube()
    await ensure_workspaces(api, steprun("checkout", "u1"))  # type: ignore[arg-type]
    # Deleted while a Pod still mounts it: the protection finalizer holds it.
    protection = "kubernetes.io/pvc-protection"
    api.cluster.update(PVC, "ci", CLAIM, lambda c: c["metadata"].update(finalizers=[protection]))
    api.cluster.delete(PVC, "ci", CLAIM)
    with pytest.raises(Transient, match="being deleted") as raised:
        await ensure_workspaces(api, steprun("test", "u2"))  # type: ignore[arg-type]
    assert not isinstance(raised.value, WorkspaceUnavailable)
    assert owners(api) == ["u1"]


async def test_existing_claims_must_exist() -> None:
    api = FakeKube()
    sr = steprun(
        "use", "u1", workspaces=[{"name": "c", "persistentVolumeClaim": {"claimName": "x"}}]
    )
    with pytest.raises(WorkspaceUnavailable, match='PersistentVolumeClaim "x" not found'):
        await ensure_workspaces(api, sr)  # type: ignore[arg-type]
    api.put(claim("x"))
    await ensure_workspaces(api, sr)  # type: ignore[arg-type]
    assert writes(api) == []


async def test_scratch_workspaces_touch_nothing() -> None:
    api = FakeKube()
    await ensure_workspaces(api, steprun("s", "u1", workspaces=[{"name": "t", "emptyDir": {}}]))  # type: ignore[arg-type]
    assert writes(api) == [] and api.of_kind(PVC) == []


def guard_claims(api: FakeKube, since: str = "2020-01-01T00:00:00Z") -> Tenancy:
    """The claim-origin policy, installed ``since``, as the operator reads it."""
    name = OperatorConfig().claim_origin_policy
    metadata = {"name": name, "creationTimestamp": since}
    api.put({"kind": "ValidatingAdmissionPolicy", "metadata": metadata, "spec": {}})
    binding = {"policyName": name, "validationActions": ["Deny"]}
    api.put({"kind": "ValidatingAdmissionPolicyBinding", "metadata": metadata, "spec": binding})
    return Tenancy(api, OperatorConfig())  # type: ignore[arg-type]


async def test_a_claim_planted_with_the_runs_labels_is_not_joined() -> None:
    api = FakeKube()
    tenancy = guard_claims(api)
    # The operator's own claim is shared by the run's steps.
    await ensure_workspaces(api, steprun("checkout", "u1"), tenancy.claim_problem)  # type: ignore[arg-type]
    await ensure_workspaces(api, steprun("test", "u2"), tenancy.claim_problem)  # type: ignore[arg-type]
    assert owners(api) == ["u1", "u2"]
    # A co-tenant plants the next run's claim with every label steprun writes.
    next_run = steprun("checkout-43", "u3", context={"workflow": {"name": "build", "runId": "43"}})
    (workspace,) = next_run.spec.workspace_list
    planted = render_claim(next_run, workspace)
    del planted["metadata"]["annotations"], planted["metadata"]["ownerReferences"]
    api.put(planted)
    with pytest.raises(WorkspaceUnavailable, match="steprun did not make it: it is not mounted"):
        await ensure_workspaces(api, next_run, tenancy.claim_problem)  # type: ignore[arg-type]
    found = api.find(PVC, "ci", planted["metadata"]["name"])
    assert found is not None and "ownerReferences" not in found["metadata"]


async def test_a_claim_older_than_the_claim_origin_policy_is_not_joined() -> None:
    api = FakeKube()
    sr = steprun("checkout", "u1")
    (workspace,) = sr.spec.workspace_list
    # Made (or planted, annotation and all) before the policy guarded the namespace.
    api.put({**render_claim(sr, workspace), "kind": PVC})
    tenancy = guard_claims(api, since="2999-01-01T00:00:00Z")
    with pytest.raises(WorkspaceUnavailable, match="before the claim-origin admission policy"):
        await ensure_workspaces(api, steprun("test", "u2"), tenancy.claim_problem)  # type: ignore[arg-type]
    assert owners(api) == ["u1"]
