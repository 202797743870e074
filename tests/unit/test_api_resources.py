"""One table of where each kind lives in the API, and the paths built from it."""

from __future__ import annotations

import pytest

from steprun.api import crdgen
from steprun.api.resources import RESOURCES, SANDBOX_POLICY, STEPRUN, resource


@pytest.mark.parametrize(
    ("kind", "namespace", "name", "sub", "path"),
    [
        pytest.param("Pod", "ci", None, "", "/api/v1/namespaces/ci/pods", id="core-collection"),
        pytest.param("Pod", None, None, "", "/api/v1/pods", id="all-namespaces"),
        pytest.param(
            "Secret", "ci", "gh", "", "/api/v1/namespaces/ci/secrets/gh", id="core-object"
        ),
        pytest.param(
            "StepRun",
            "ci",
            "lint",
            "status",
            "/apis/steprun.dev/v1alpha1/namespaces/ci/stepruns/lint/status",
            id="subresource",
        ),
        pytest.param(
            "SandboxPolicy",
            "ci",
            "default",
            "",
            "/apis/steprun.dev/v1alpha1/sandboxpolicies/default",
            id="cluster-scoped-ignores-namespace",
        ),
        pytest.param(
            "NetworkPolicy",
            "ci",
            None,
            "",
            "/apis/networking.k8s.io/v1/namespaces/ci/networkpolicies",
            id="named-group",
        ),
        pytest.param(
            "ServiceAccount",
            "ci",
            "bench",
            "token",
            "/api/v1/namespaces/ci/serviceaccounts/bench/token",
            id="core-subresource",
        ),
    ],
)
def test_paths(kind: str, namespace: str | None, name: str | None, sub: str, path: str) -> None:
    assert resource(kind).path(namespace, name, sub) == path


def test_the_generated_crds_are_where_the_descriptors_say() -> None:
    for crd, described in (
        (crdgen.steprun_crd(), STEPRUN),
        (crdgen.sandboxpolicy_crd(), SANDBOX_POLICY),
    ):
        spec = crd["spec"]
        assert (
            spec["names"]["kind"],
            spec["group"],
            spec["versions"][0]["name"],
            spec["names"]["plural"],
            spec["scope"],
        ) == (
            described.kind,
            described.group,
            described.version,
            described.plural,
            "Namespaced" if described.namespaced else "Cluster",
        )
        assert RESOURCES[described.kind] is described


def test_api_versions() -> None:
    assert STEPRUN.api_version == "steprun.dev/v1alpha1"
    assert resource("Pod").api_version == "v1"
