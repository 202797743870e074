"""The chart fits what it claims: kubeVersion matches the features used, a PDB for HA, a
readiness check distinct from liveness, Pod Security labels, chart metadata, the optional
monitoring objects, and hack/ taking its Debian mirror from apt's configuration only."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from steprun.api.crdgen import steprun_crd
from tests.unit.test_manifests import CHART, MANIFESTS, REPO, helm, one, render

__all__ = ["helm"]  # the fixture, shared

MONITORING = [
    "--set",
    "monitoring.serviceMonitor.enabled=true,monitoring.podMonitor.enabled=true,"
    "monitoring.prometheusRule.enabled=true,monitoring.dashboard.enabled=true",
]


def _minor(constraint: str) -> tuple[int, int]:
    match = re.search(r">=\s*(\d+)\.(\d+)", constraint)
    assert match, constraint
    return int(match.group(1)), int(match.group(2))


def test_kube_version_covers_crd_field_selectors() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    (version,) = steprun_crd()["spec"]["versions"]
    # selectableFields (list --workflow, client.list(workflow=...)) are served from 1.31.
    assert version["selectableFields"]
    assert _minor(chart["kubeVersion"]) >= (1, 31)


def test_chart_metadata_for_artifact_hubs() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["icon"].startswith("https://")
    assert chart["sources"] and chart["maintainers"][0]["name"]


def test_pdb_only_with_several_replicas(helm: str) -> None:
    pdb = one(render(helm), "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    statefulset = one(render(helm), "StatefulSet")
    assert pdb["spec"]["selector"]["matchLabels"] == statefulset["spec"]["selector"]["matchLabels"]
    single = render(helm, "--set", "replicas=1")
    assert not [d for d in single if d["kind"] == "PodDisruptionBudget"]


def test_readiness_asks_ready_to_reconcile_not_liveness(helm: str) -> None:
    (container,) = one(render(helm), "StatefulSet")["spec"]["template"]["spec"]["containers"]
    ready, alive = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    assert ready == {"path": "/readyz", "port": "metrics"}
    assert alive == {"path": "/healthz", "port": "health"}


def test_operator_namespace_is_labelled_restricted() -> None:
    namespace = yaml.safe_load(
        "\n".join(
            line
            for line in (MANIFESTS / "namespace.yaml").read_text().splitlines()
            if not line.startswith("#")
        )
    )
    labels = namespace["metadata"]["labels"]
    for mode in ("enforce", "warn", "audit"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


def test_monitoring_objects_are_off_by_default(helm: str) -> None:
    kinds = {d["kind"] for d in render(helm)}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap"}


def test_monitoring_objects_select_the_operator(helm: str) -> None:
    docs = render(helm, *MONITORING, "--set", "monitoring.serviceMonitor.labels.release=kps")
    selector = one(docs, "StatefulSet")["spec"]["selector"]["matchLabels"]
    service_monitor = one(docs, "ServiceMonitor")
    assert service_monitor["metadata"]["labels"]["release"] == "kps"
    assert service_monitor["spec"]["selector"]["matchLabels"] == selector
    assert service_monitor["spec"]["endpoints"][0]["port"] == "metrics"
    pod_monitor = one(docs, "PodMonitor")
    assert pod_monitor["spec"]["selector"]["matchLabels"] == selector
    rules = one(docs, "PrometheusRule")["spec"]["groups"][0]["rules"]
    assert {r["alert"] for r in rules} == {
        "SteprunOperatorDown",
        "SteprunNoActiveReplica",
        "SteprunReconcileErrors",
        "SteprunStepsStuckPending",
        "SteprunWorkQueueBackingUp",
    }
    assert all('namespace="steprun-system"' in r["expr"] for r in rules)
    dashboard = json.loads(one(docs, "ConfigMap")["data"]["steprun.json"])
    assert dashboard == json.loads((CHART / "dashboards" / "steprun.json").read_text())


def test_dashboard_queries_use_only_exported_series() -> None:
    from prometheus_client import REGISTRY

    from steprun import metrics  # noqa: F401  (registers every series)

    exported = {m.name for m in REGISTRY.collect()} | {"steprun_stepruns"}
    dashboard = json.loads((CHART / "dashboards" / "steprun.json").read_text())
    names = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(
            r"\b(steprun_[a-z_]+?)(?:_bucket|_count|_sum|_total|_info)?\{", target["expr"]
        )
    }
    assert names and names <= exported | {n.removesuffix("_total") for n in exported}


# ---------------------------------------------------------------------- hack/ and apt


def _debian_mirror(apt_etc: Path) -> subprocess.CompletedProcess[str]:
    script = REPO / "hack" / "images" / "build-operator-image.sh"
    program = (
        f'. {REPO}/hack/lib.sh; eval "$(sed -n "/^debian_mirror()/,/^}}/p" {script})"; '
        "debian_mirror"
    )
    return subprocess.run(
        ["bash", "-c", program],
        env={"APT_ETC": str(apt_etc), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"sources.list.d/debian.sources": "Types: deb\nURIs: http://mirror.test/debian\n"},
            "http://mirror.test/debian",
        ),
        (
            {"sources.list": "deb [arch=amd64] http://mirror.test/debian bookworm main\n"},
            "http://mirror.test/debian",
        ),
    ],
)
def test_the_debian_mirror_comes_from_apt(
    tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    result = _debian_mirror(tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, expected), result.stderr


def test_no_configured_mirror_fails_clearly(tmp_path: Path) -> None:
    result = _debian_mirror(tmp_path)
    assert result.returncode == 1
    assert "no Debian mirror in this machine's apt sources" in result.stderr


def test_hack_names_no_package_mirror() -> None:
    for script in (REPO / "hack").rglob("*.sh"):
        assert "deb.debian.org" not in script.read_text(), script


def test_operator_network_policy_opens_only_scrapes_probes_api_and_dns(helm: str) -> None:
    policy = one(render(helm), "NetworkPolicy")
    statefulset = one(render(helm), "StatefulSet")
    assert (
        policy["spec"]["podSelector"]["matchLabels"]
        == (statefulset["spec"]["selector"]["matchLabels"])
    )
    ingress_ports = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
    assert ingress_ports == ["metrics", "health"]
    egress = {(p["port"], p["protocol"]) for p in policy["spec"]["egress"][0]["ports"]}
    assert egress == {(443, "TCP"), (6443, "TCP"), (53, "UDP"), (53, "TCP")}
    assert not [
        d
        for d in render(helm, "--set", "networkPolicy.enabled=false")
        if d["kind"] == "NetworkPolicy"
    ]


def test_operator_network_policy_lets_it_reach_every_artifact_store(helm: str) -> None:
    """The operator archives logs to the stores itself: where NetworkPolicies are enforced, the
    release's own policy would refuse those connections without a rule for each store's port."""
    stores = [
        "--set",
        "artifactRepository.endpoint=http://192.0.2.10:7070,artifactRepository.bucket=b,"
        "artifactRepository.credentialsSecret=s",
        "--set",
        "artifactRepository.namespaces[0].namespaces[0]=team-a-*,"
        "artifactRepository.namespaces[0].endpoint=https://s3.example.com,"
        "artifactRepository.namespaces[1].namespaces[0]=team-b,"
        "artifactRepository.namespaces[1].endpoint=http://[2001:db8::1]:9000",
    ]
    policy = one(render(helm, *stores), "NetworkPolicy")
    api, store = policy["spec"]["egress"]
    assert {p["port"] for p in api["ports"]} == {443, 6443, 53}
    assert {(p["port"], p["protocol"]) for p in store["ports"]} == {
        (7070, "TCP"),
        (443, "TCP"),
        (9000, "TCP"),
    }
    assert "to" not in store
    # Without a store, nothing beyond the API server and DNS.
    assert len(one(render(helm), "NetworkPolicy")["spec"]["egress"]) == 1


def test_resources_bound_cpu_memory_and_ephemeral_storage(helm: str) -> None:
    (container,) = one(render(helm), "StatefulSet")["spec"]["template"]["spec"]["containers"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory", "ephemeral-storage"} <= set(container["resources"][kind])


def test_image_can_be_pinned_by_digest(helm: str) -> None:
    digest = "sha256:" + "a" * 64
    docs = render(helm, "--set", f"image.digest={digest}")
    (container,) = one(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"steprun.local/operator@{digest}"
