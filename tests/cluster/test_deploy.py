"""The operator deployed like an operator: its image, the Helm chart, two peering replicas.

The image is built and imported (hack/images/build-operator-image.sh, slow only the first
time), helm comes from hack/install-helm.sh, and the chart is installed under a release name and
in namespaces of this module only, with its monitoring objects (ServiceMonitor, PodMonitor,
PrometheusRule, dashboard) against the prometheus-operator CRDs of their Go module, and a real
Prometheus (the Debian package) scraping both replicas and evaluating the chart's alert rules.
The operator watches only this module's namespaces, through a glob (other test sessions share
the cluster), and the admission policy it brings applies only to the steps namespace. The tests
run in file order: the failover test, which takes a replica away, comes last.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.cluster.conftest import read_store_env
from tests.support.steps import Steps, eventually

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "steprun"
PEERING_GROUP, PEERING_VERSION, PEERING_PLURAL = "kopf.dev", "v1", "clusterkopfpeerings"
# The series docs/deploy.md documents, with their Prometheus types.
METRICS = {
    "steprun_transitions_total": "counter",
    "steprun_step_duration_seconds": "histogram",
    "steprun_reconcile_duration_seconds": "histogram",
    "steprun_reconcile_errors_total": "counter",
    "steprun_pod_start_duration_seconds": "histogram",
    "steprun_workqueue_depth": "gauge",
    "steprun_workqueue_adds_total": "counter",
    "steprun_workqueue_queue_duration_seconds": "histogram",
    "steprun_api_request_duration_seconds": "histogram",
    "steprun_api_errors_total": "counter",
    "steprun_active_replica": "gauge",
    "steprun_build_info": "gauge",
}
MONITORING_KINDS = ("servicemonitors", "podmonitors", "prometheusrules")
# peering.lifetime of the release: short, so the failover test does not wait the default 60 s.
PEERING_LIFETIME = 10
# A replica killed without a goodbye keeps its peering record until its lifetime runs out; the
# survivor resumes then. Generous on top for a busy shared machine.
FAILOVER_TIMEOUT = PEERING_LIFETIME + 60


@dataclass(frozen=True)
class Deployment:
    release: str
    namespace: str  # the operator's
    steps_namespace: str  # watched through watch_pattern, which the operator's does not match
    image: str

    @property
    def watch_pattern(self) -> str:
        return f"{self.namespace}-*"

    @property
    def late_namespace(self) -> str:
        """Matches watch_pattern; created only after the install."""
        return f"{self.namespace}-late"

    @property
    def statefulset(self) -> str:
        return f"{self.release}-operator"

    @property
    def peering(self) -> str:
        return self.release

    def pod(self, ordinal: int) -> str:
        return f"{self.statefulset}-{ordinal}"

    @property
    def operator_user(self) -> str:
        # The chart names the operator's ServiceAccount after the release, like its StatefulSet.
        return f"system:serviceaccount:{self.namespace}:{self.statefulset}"

    @property
    def engine_user(self) -> str:
        return f"system:serviceaccount:{self.steps_namespace}:steprun-engine"


def run(command: list[str], *, stdin: str | None = None, timeout: float = 900) -> str:
    result = subprocess.run(
        command, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, (
        f"{' '.join(command[:3])} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    )
    return result.stdout


@pytest.fixture(scope="session")
def helm(kubeconfig: str) -> list[str]:
    binary = run([str(REPO / "hack" / "install-helm.sh")]).strip()
    return [binary, "--kubeconfig", kubeconfig]


@pytest.fixture(scope="session")
def operator_image(kubeconfig: str) -> str:
    """Built and imported into the node's containerd; a rebuild of an unchanged tree is quick."""
    if shutil.which("ctr") is None:
        pytest.fail("the operator image is imported with ctr (containerd), which is not here")
    return run([str(REPO / "hack" / "images" / "build-operator-image.sh")]).strip()


def uninstall(
    helm: list[str], core: client.CoreV1Api, release: str, namespace: str, *others: str
) -> None:
    """Uninstall the release, then delete its namespace and ``others`` (if they exist)."""
    subprocess.run(
        [*helm, "uninstall", release, "--namespace", namespace, "--wait"],
        capture_output=True,
        timeout=180,
        check=False,
    )
    for name in (*others, namespace):
        try:
            core.delete_namespace(name, propagation_policy="Background")
        except client.ApiException as error:
            if error.status != 404:
                raise


@pytest.fixture(scope="module")
def monitoring_crds(kubectl: list[str]) -> None:
    """ServiceMonitor, PodMonitor and PrometheusRule, from prometheus-operator's Go module."""
    directory = Path(run([str(REPO / "hack" / "prometheus-operator-crds.sh")]).strip())
    files = [directory / f"monitoring.coreos.com_{kind}.yaml" for kind in MONITORING_KINDS]
    run([*kubectl, "apply", "--server-side", "--force-conflicts", *(f"-f={f}" for f in files)])
    run(
        [
            *kubectl,
            "wait",
            "--for=condition=Established",
            *(f"crd/{kind}.monitoring.coreos.com" for kind in MONITORING_KINDS),
        ]
    )


@pytest.fixture(scope="module")
def deployment(
    api_client: client.ApiClient,
    helm: list[str],
    operator_image: str,
    crds: None,
    monitoring_crds: None,
) -> Iterator[Deployment]:
    suffix = uuid.uuid4().hex[:6]
    # Not the session prefix: the session's own operator watches namespaces with that one.
    deployed = Deployment(
        release=f"steprun-{suffix}",
        namespace=f"srdeploy-{suffix}",
        steps_namespace=f"srdeploy-{suffix}-steps",
        image=operator_image,
    )
    core = client.CoreV1Api(api_client)
    for name in (deployed.namespace, deployed.steps_namespace):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    repository, tag = operator_image.rsplit(":", 1)
    values = {
        # Never: the image must be the one just imported, not anything a registry has.
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "replicas": 2,
        "peering": {"lifetime": PEERING_LIFETIME},
        "watchNamespaces": [deployed.watch_pattern],
        "engine": {"namespaces": [deployed.steps_namespace]},
        "admission": {
            "namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": deployed.steps_namespace}
            }
        },
        # Applied for real: the API server checks them against prometheus-operator's CRDs.
        "monitoring": {
            "serviceMonitor": {"enabled": True},
            "podMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
            "dashboard": {"enabled": True},
        },
    }
    install = [
        *helm,
        "upgrade",
        "--install",
        deployed.release,
        str(CHART),
        "--namespace",
        deployed.namespace,
        "--values",
        "-",
        "--wait",
        "--timeout",
        "180s",
    ]
    started = time.monotonic()
    try:
        run(install, stdin=json.dumps(values))
        print(f"\nhelm upgrade --install --wait took {time.monotonic() - started:.1f}s")
        yield deployed
    finally:
        # The late namespace exists only once its test has run.
        uninstall(
            helm,
            core,
            deployed.release,
            deployed.namespace,
            deployed.late_namespace,
            deployed.steps_namespace,
        )


@pytest.fixture(scope="module")
def steps(api_client: client.ApiClient, deployment: Deployment) -> Steps:
    return Steps(api_client, deployment.steps_namespace)


def pod_log(api_client: client.ApiClient, deployment: Deployment, ordinal: int) -> str:
    return str(
        client.CoreV1Api(api_client).read_namespaced_pod_log(
            deployment.pod(ordinal), deployment.namespace
        )
    )


def wrote_status_of(log: str, steprun: str) -> bool:
    """Whether an operator's log shows it writing the status of this StepRun."""
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "status written" and entry.get("name") == steprun:
            return True
    return False


def peering_records(api_client: client.ApiClient, deployment: Deployment) -> dict[str, Any]:
    body = client.CustomObjectsApi(api_client).get_cluster_custom_object(
        PEERING_GROUP, PEERING_VERSION, PEERING_PLURAL, deployment.peering
    )
    return dict(body.get("status") or {})


def scrape(api_client: client.ApiClient, deployment: Deployment, ordinal: int) -> str:
    """The replica's /metrics, through the API server's Pod proxy (works on any cluster)."""
    return str(
        client.CoreV1Api(api_client).connect_get_namespaced_pod_proxy_with_path(
            f"{deployment.pod(ordinal)}:8080", deployment.namespace, "metrics"
        )
    )


def can_i(kubectl: list[str], user: str, verb: str, resource: str, namespace: str | None) -> bool:
    """``resource``: TYPE, TYPE/SUBRESOURCE, or TYPE:NAME for one object."""
    kind, _, name = resource.partition(":")
    kind, _, subresource = kind.partition("/")
    command = [*kubectl, "auth", "can-i", verb, f"{kind}/{name}" if name else kind, f"--as={user}"]
    command += [f"--subresource={subresource}"] if subresource else []
    command += ["--namespace", namespace] if namespace else []
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), f"{command}: {result.stdout} {result.stderr}"
    return answer == "yes"


Matrix = list[tuple[str, str, str | None]]


def can_i_mismatches(
    kubectl: list[str], user: str, allowed: Matrix, denied: Matrix
) -> list[tuple[str, str, str | None, bool]]:
    """(verb, resource, namespace, expected) of every answer that differs from the matrix."""
    return [
        (verb, resource, namespace, expected)
        for expected, matrix in ((True, allowed), (False, denied))
        for verb, resource, namespace in matrix
        if can_i(kubectl, user, verb, resource, namespace) != expected
    ]


# ---------------------------------------------------------------- install


def test_replicas_are_ready_and_peer_with_distinct_priorities(
    api_client: client.ApiClient, deployment: Deployment
) -> None:
    pods = (
        client.CoreV1Api(api_client)
        .list_namespaced_pod(
            deployment.namespace, label_selector=f"app.kubernetes.io/instance={deployment.release}"
        )
        .items
    )
    assert sorted(p.metadata.name for p in pods) == [deployment.pod(0), deployment.pod(1)]
    for pod in pods:
        ready = {c.type: c.status for c in pod.status.conditions}["Ready"]
        assert ready == "True", pod.metadata.name
        (container,) = pod.spec.containers
        assert container.image == deployment.image
        assert pod.spec.security_context.run_as_user == 65532
    records = eventually(
        lambda: (r := peering_records(api_client, deployment)) and len(r) == 2 and r,
        30,
        "both replicas in the peering object",
    )
    assert {name: r["priority"] for name, r in records.items()} == {
        deployment.pod(0): 100,
        deployment.pod(1): 99,
    }
    lifetimes = {r["lifetime"] for r in peering_records(api_client, deployment).values()}
    assert lifetimes == {PEERING_LIFETIME}


# ---------------------------------------------------------------- steps through the operator


def test_step_succeeds_through_the_in_cluster_operator(
    api_client: client.ApiClient, deployment: Deployment, steps: Steps, step_image: str
) -> None:
    steps.create("deployed-hello", {"image": step_image, "script": "echo from the cluster"})
    status = steps.wait_terminal("deployed-hello", timeout=90)
    assert status["phase"] == "Succeeded", status
    assert status["exitCode"] == 0
    # Replica 0 has the highest priority: it works, replica 1 stands by.
    assert wrote_status_of(pod_log(api_client, deployment, 0), "deployed-hello")
    assert not wrote_status_of(pod_log(api_client, deployment, 1), "deployed-hello")


def test_a_namespace_matching_the_glob_later_is_served(
    api_client: client.ApiClient, deployment: Deployment, steps: Steps, step_image: str
) -> None:
    """Cluster-wide peering: a new watched namespace needs no peering object of its own, and
    neither it nor the namespaces watched before pause the operator."""
    core = client.CoreV1Api(api_client)
    late = deployment.late_namespace
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=late)))
    # Pods need the namespace's "default" ServiceAccount, which a controller adds shortly after.
    eventually(
        lambda: (
            core.list_namespaced_service_account(late, field_selector="metadata.name=default").items
        ),
        30,
        f"the default ServiceAccount of {late}",
    )
    late_steps = Steps(api_client, late)
    late_steps.create("late-hello", {"image": step_image, "script": "echo late"})
    steps.create("still-served", {"image": step_image, "script": "true"})
    assert late_steps.wait_terminal("late-hello", timeout=90)["phase"] == "Succeeded"
    assert steps.wait_terminal("still-served", timeout=90)["phase"] == "Succeeded"
    assert wrote_status_of(pod_log(api_client, deployment, 0), "late-hello")
    assert not wrote_status_of(pod_log(api_client, deployment, 1), "late-hello")


def test_metrics_endpoint_serves_the_documented_series(
    api_client: client.ApiClient, deployment: Deployment, steps: Steps, step_image: str
) -> None:
    steps.create("metered", {"image": step_image, "script": "true"})
    assert steps.wait_terminal("metered", timeout=90)["phase"] == "Succeeded"
    for ordinal in (0, 1):
        text = scrape(api_client, deployment, ordinal)
        for name, kind in METRICS.items():
            assert f"# TYPE {name} {kind}" in text, (ordinal, name)
    active = scrape(api_client, deployment, 0)
    completed = re.search(
        r'^steprun_transitions_total\{phase="Succeeded",reason="Completed"\} (\S+)$',
        active,
        re.MULTILINE,
    )
    assert completed and float(completed.group(1)) >= 1, active
    assert re.search(r'^steprun_stepruns\{phase="Succeeded"\} [1-9]', active, re.MULTILINE)
    assert re.search(r"^steprun_active_replica 1\.0$", active, re.MULTILINE)
    assert re.search(
        r'^steprun_step_duration_seconds_count\{phase="Succeeded",reason="Completed"\} [1-9]',
        active,
        re.MULTILINE,
    )
    assert re.search(
        r'^steprun_api_request_duration_seconds_count\{verb="post"\} [1-9]', active, re.MULTILINE
    )
    assert re.search(r"^steprun_pod_start_duration_seconds_count [1-9]", active, re.MULTILINE)
    # Replicas started together may each see no peer at their first poll of the peering object
    # (every 5 s; kopf itself resumes the same way): the standby says so by its next poll.
    eventually(
        lambda: re.search(
            r"^steprun_active_replica 0\.0$", scrape(api_client, deployment, 1), re.MULTILINE
        ),
        30,
        "the second replica to stand by",
    )
    standby = scrape(api_client, deployment, 1)
    assert "steprun_transitions_total{" not in standby
    # Only the active replica exports the phase gauge: sums over replicas do not double-count.
    assert "steprun_stepruns{" not in standby
    assert re.search(r"^steprun_active_replica 0\.0$", standby, re.MULTILINE)


# -------------------------------------------------------- monitoring: a real Prometheus


@dataclass(frozen=True)
class RunningPrometheus:
    url: str
    promtool: str
    rules: Path
    dashboard: dict[str, Any]
    namespace: str


def _credential_files(kubeconfig: str, directory: Path) -> tuple[str, dict[str, Any]]:
    """The API server's address and the scrape's TLS/auth settings from the kubeconfig."""
    config = yaml.safe_load(Path(kubeconfig).read_text())
    current = config.get("current-context")
    context = next(c["context"] for c in config["contexts"] if c["name"] == current)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    tls: dict[str, Any] = {}

    def file_of(data_key: str, path_key: str, name: str, source: dict[str, Any]) -> str | None:
        if source.get(data_key):
            target = directory / name
            target.write_bytes(base64.b64decode(source[data_key]))
            return str(target)
        return source.get(path_key)

    if ca := file_of("certificate-authority-data", "certificate-authority", "ca.crt", cluster):
        tls["ca_file"] = ca
    if cert := file_of("client-certificate-data", "client-certificate", "client.crt", user):
        tls["cert_file"] = cert
    if key := file_of("client-key-data", "client-key", "client.key", user):
        tls["key_file"] = key
    settings: dict[str, Any] = {"tls_config": tls}
    if user.get("token"):
        settings["authorization"] = {"credentials": user["token"]}
    return urllib.parse.urlparse(cluster["server"]).netloc, settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prometheus_query(url: str, expr: str) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=10) as response:
        answer = json.loads(response.read())
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


@pytest.fixture(scope="module")
def prometheus(
    kubeconfig: str,
    helm: list[str],
    deployment: Deployment,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningPrometheus]:
    """Prometheus scraping both replicas the way the chart's PodMonitor says (Pods of the
    release, port "metrics", job "steprun"), through the API server's Pod proxy (so it works
    from outside any cluster network), with the chart's PrometheusRule as its rule file."""
    binaries = Path(run([str(REPO / "hack" / "install-prometheus.sh")]).strip())
    work = tmp_path_factory.mktemp("prometheus")
    rendered = run(
        [
            *helm,
            "template",
            deployment.release,
            str(CHART),
            "--namespace",
            deployment.namespace,
            "--set",
            "monitoring.prometheusRule.enabled=true,monitoring.dashboard.enabled=true",
        ]
    )
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    rules = work / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule["spec"]))
    (board,) = [d for d in docs if d["kind"] == "ConfigMap" and "steprun.json" in d["data"]]
    server, auth = _credential_files(kubeconfig, work)
    scrape = {
        "job_name": "steprun",
        "scheme": "https",
        "scrape_interval": "2s",
        **auth,
        # Debian builds Prometheus without Kubernetes discovery: the targets are the release's
        # Pods by name, port "metrics", as the PodMonitor selects them.
        "static_configs": [
            {
                "targets": [f"{deployment.pod(i)}:8080" for i in (0, 1)],
                "labels": {"namespace": deployment.namespace},
            }
        ],
        "relabel_configs": [
            {
                "source_labels": ["__address__"],
                "regex": "([^:]+):.*",
                "target_label": "pod",
            },
            {
                "source_labels": ["namespace", "__address__"],
                "regex": "(.+);(.+)",
                "target_label": "__metrics_path__",
                "replacement": "/api/v1/namespaces/$1/pods/$2/proxy/metrics",
            },
            {"target_label": "__address__", "replacement": server},
        ],
    }
    config = work / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
                "rule_files": [str(rules)],
                "scrape_configs": [scrape],
            }
        )
    )
    port = _free_port()
    log = (work / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            str(binaries / "prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def both_up() -> bool:
            if process.poll() is not None:
                pytest.fail(f"prometheus exited: {(work / 'prometheus.log').read_text()[-2000:]}")
            try:
                up = prometheus_query(
                    url, f'up{{job="steprun",namespace="{deployment.namespace}"}}'
                )
            except OSError:
                return False
            return len(up) == 2 and all(r["value"][1] == "1" for r in up)

        eventually(both_up, 90, "Prometheus scraping both replicas")
        yield RunningPrometheus(
            url=url,
            promtool=str(binaries / "promtool"),
            rules=rules,
            dashboard=json.loads(board["data"]["steprun.json"]),
            namespace=deployment.namespace,
        )
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_prometheus_scrapes_one_active_replica_and_counts_steps_once(
    prometheus: RunningPrometheus, steps: Steps, step_image: str
) -> None:
    steps.create("scraped", {"image": step_image, "script": "true"})
    assert steps.wait_terminal("scraped", timeout=90)["phase"] == "Succeeded"
    ns = prometheus.namespace
    active = prometheus_query(prometheus.url, f'sum(steprun_active_replica{{namespace="{ns}"}})')
    assert active[0]["value"][1] == "1"
    eventually(
        lambda: prometheus_query(
            prometheus.url,
            f'sum(steprun_stepruns{{namespace="{ns}",phase=~"New|Pending|Running"}}) == 0 '
            f'and on() sum(steprun_stepruns{{namespace="{ns}",phase="Succeeded"}}) > 1',
        ),
        60,
        "the phase gauge scraped with every step ended",
    )
    # One series per phase: only the active replica exports it.
    series = prometheus_query(
        prometheus.url, f'steprun_stepruns{{namespace="{ns}",phase="Succeeded"}}'
    )
    assert len(series) == 1
    durations = prometheus_query(
        prometheus.url,
        f'steprun_step_duration_seconds_count{{namespace="{ns}",phase="Succeeded",reason="Completed"}}',
    )
    assert durations and float(durations[0]["value"][1]) >= 1


def test_every_alert_rule_checks_and_evaluates(prometheus: RunningPrometheus) -> None:
    run([prometheus.promtool, "check", "rules", str(prometheus.rules)])
    rules = yaml.safe_load(prometheus.rules.read_text())["groups"][0]["rules"]
    for rule in rules:
        run([prometheus.promtool, "query", "instant", prometheus.url, rule["expr"]])

    def all_evaluated() -> list[dict[str, Any]] | None:
        with urllib.request.urlopen(f"{prometheus.url}/api/v1/rules", timeout=10) as response:
            groups = json.loads(response.read())["data"]["groups"]
        loaded = [r for g in groups for r in g["rules"]]
        evaluated = len(loaded) == len(rules) and all(
            r.get("lastEvaluation", "").startswith("2")
            and not r["lastEvaluation"].startswith("0001")
            for r in loaded
        )
        return loaded if evaluated else None

    loaded = eventually(all_evaluated, 60, "every rule evaluated once")
    assert {r["name"]: r["health"] for r in loaded} == {r["alert"]: "ok" for r in rules}

    # A healthy operator with every step ended: none of the alerts is pending or firing.
    def states() -> dict[str, str] | None:
        current = {r["name"]: r["state"] for r in all_evaluated() or []}
        return current if set(current.values()) == {"inactive"} else None

    assert eventually(states, 30, "every alert inactive")


def test_every_dashboard_query_evaluates(prometheus: RunningPrometheus) -> None:
    exprs = [
        target["expr"].replace("$namespace", prometheus.namespace).replace("$__rate_interval", "1m")
        for panel in prometheus.dashboard["panels"]
        for target in panel["targets"]
    ]
    assert exprs
    answered = []
    for expr in exprs:
        out = run([prometheus.promtool, "query", "instant", "-o", "json", prometheus.url, expr])
        answered.append(bool(json.loads(out)))
    # Series that exist once a step ran have data (quantiles of empty rates may be NaN-free empty).
    assert sum(answered) >= len(exprs) // 2, list(zip(exprs, answered, strict=True))


# ---------------------------------------------------------------- RBAC


def test_operator_role_grants_exactly_what_the_operator_does(
    kubectl: list[str], deployment: Deployment
) -> None:
    ns, user = deployment.steps_namespace, deployment.operator_user
    peering = f"clusterkopfpeerings.kopf.dev:{deployment.peering}"
    policy = f"{deployment.release}-stepruns"
    allowed = [
        ("get", "stepruns.steprun.dev", ns),
        ("list", "stepruns.steprun.dev", ns),
        ("watch", "stepruns.steprun.dev", ns),
        ("delete", "stepruns.steprun.dev", ns),
        ("patch", "stepruns.steprun.dev/status", ns),
        ("get", "sandboxpolicies.steprun.dev", None),
        ("create", "pods", ns),
        ("get", "pods", ns),
        ("list", "pods", ns),
        ("watch", "pods", ns),
        ("delete", "pods", ns),
        ("patch", "pods", ns),
        # Archived logs: the operator streams each finished attempt's log to the store.
        ("get", "pods/log", ns),
        ("create", "configmaps", ns),
        ("get", "configmaps", ns),
        ("delete", "configmaps", ns),
        ("create", "secrets", ns),
        ("get", "secrets", ns),
        ("delete", "secrets", ns),
        ("create", "networkpolicies.networking.k8s.io", ns),
        ("get", "networkpolicies.networking.k8s.io", ns),
        ("create", "events", ns),
        ("list", "events", ns),
        ("create", "persistentvolumeclaims", ns),
        ("get", "persistentvolumeclaims", ns),
        ("patch", "persistentvolumeclaims", ns),
        ("get", "namespaces", None),
        ("list", "namespaces", None),
        ("watch", "namespaces", None),
        ("list", "customresourcedefinitions.apiextensions.k8s.io", None),
        ("watch", "customresourcedefinitions.apiextensions.k8s.io", None),
        ("list", "clusterkopfpeerings.kopf.dev", None),
        ("watch", "clusterkopfpeerings.kopf.dev", None),
        ("patch", peering, None),
        # The StepRun-create and claim-origin admission policies (its own, by name) and the
        # bindings that enforce them; other NetworkPolicies, which could reopen a sandbox's.
        ("get", f"validatingadmissionpolicies.admissionregistration.k8s.io:{policy}", None),
        (
            "get",
            f"validatingadmissionpolicies.admissionregistration.k8s.io:{deployment.release}"
            "-claim-origin",
            None,
        ),
        ("list", "validatingadmissionpolicybindings.admissionregistration.k8s.io", None),
        ("list", "networkpolicies.networking.k8s.io", ns),
        # Kueue: a queued step's Workload, its LocalQueue, the flavours and priority classes.
        ("create", "workloads.kueue.x-k8s.io", ns),
        ("get", "workloads.kueue.x-k8s.io", ns),
        ("list", "workloads.kueue.x-k8s.io", ns),
        ("watch", "workloads.kueue.x-k8s.io", ns),
        ("delete", "workloads.kueue.x-k8s.io", ns),
        ("patch", "workloads.kueue.x-k8s.io/status", ns),
        ("get", "localqueues.kueue.x-k8s.io", ns),
        ("get", "resourceflavors.kueue.x-k8s.io", None),
        ("get", "workloadpriorityclasses.kueue.x-k8s.io", None),
    ]
    denied = [
        ("get", "validatingadmissionpolicies.admissionregistration.k8s.io:someone-else", None),
        ("update", f"validatingadmissionpolicies.admissionregistration.k8s.io:{policy}", None),
        ("delete", "validatingadmissionpolicybindings.admissionregistration.k8s.io", None),
        ("use", "serviceaccounts", ns),
        ("impersonate", "serviceaccounts", ns),
        ("create", "stepruns.steprun.dev", ns),
        ("update", "stepruns.steprun.dev", ns),
        ("patch", "stepruns.steprun.dev", ns),
        ("update", "stepruns.steprun.dev/status", ns),
        ("list", "sandboxpolicies.steprun.dev", None),
        ("create", "sandboxpolicies.steprun.dev", None),
        ("update", "pods", ns),
        ("create", "pods/exec", ns),
        ("list", "secrets", ns),
        ("watch", "secrets", ns),
        ("update", "secrets", ns),
        ("list", "configmaps", ns),
        ("delete", "networkpolicies.networking.k8s.io", ns),
        ("delete", "persistentvolumeclaims", ns),
        ("list", "persistentvolumeclaims", ns),
        ("create", "namespaces", None),
        ("delete", "namespaces", None),
        ("create", "customresourcedefinitions.apiextensions.k8s.io", None),
        ("get", "customresourcedefinitions.apiextensions.k8s.io", None),
        ("patch", "clusterkopfpeerings.kopf.dev:someone-else", None),
        ("create", "clusterkopfpeerings.kopf.dev", None),
        ("delete", peering, None),
        ("list", "kopfpeerings.kopf.dev", ns),
        ("patch", f"kopfpeerings.kopf.dev:{deployment.peering}", ns),
        ("create", "deployments.apps", ns),
        ("list", "nodes", None),
        ("create", "serviceaccounts/token", ns),
        ("update", "workloads.kueue.x-k8s.io", ns),
        ("patch", "workloads.kueue.x-k8s.io", ns),
        ("create", "localqueues.kueue.x-k8s.io", ns),
        ("list", "clusterqueues.kueue.x-k8s.io", None),
        ("update", "resourceflavors.kueue.x-k8s.io", None),
    ]
    assert can_i_mismatches(kubectl, user, allowed, denied) == [], (
        "can-i answered differently for (verb, resource, namespace, expected)"
    )


def test_engine_role_lets_an_engine_run_steps_only_where_it_is_bound(
    kubectl: list[str], deployment: Deployment
) -> None:
    ns, user = deployment.steps_namespace, deployment.engine_user
    allowed = [
        *((verb, "stepruns.steprun.dev", ns) for verb in ("create", "get", "list", "watch")),
        ("patch", "stepruns.steprun.dev", ns),
        ("delete", "stepruns.steprun.dev", ns),
        ("get", "pods", ns),
        ("list", "pods", ns),
        ("watch", "pods", ns),
        ("get", "pods/log", ns),
        # Sandbox steps under any SandboxPolicy selecting the namespace (engine.sandboxPolicies
        # narrows it), checked in the step's namespace by the StepRun-create admission policy.
        ("use", "sandboxpolicies.steprun.dev:trusted", ns),
    ]
    denied = [
        ("update", "stepruns.steprun.dev", ns),
        ("use", "sandboxpolicies.steprun.dev:trusted", deployment.namespace),
        ("patch", "stepruns.steprun.dev/status", ns),
        ("deletecollection", "stepruns.steprun.dev", ns),
        ("create", "pods", ns),
        ("delete", "pods", ns),
        ("create", "pods/exec", ns),
        ("get", "secrets", ns),
        ("get", "configmaps", ns),
        ("get", "sandboxpolicies.steprun.dev", None),
        # Running a step as a ServiceAccount needs the verb use on it, granted separately.
        ("use", "serviceaccounts", ns),
        ("use", "serviceaccounts:builder", ns),
        # Only the operator reports outcomes.
        ("update", "stepruns.steprun.dev/status", ns),
        ("create", "validatingadmissionpolicies.admissionregistration.k8s.io", None),
        # Bound in its namespace only.
        ("create", "stepruns.steprun.dev", deployment.namespace),
        ("list", "stepruns.steprun.dev", "default"),
    ]
    assert can_i_mismatches(kubectl, user, allowed, denied) == [], (
        "can-i answered differently for (verb, resource, namespace, expected)"
    )


# ---------------------------------------------------------------- namespaced install


@dataclass(frozen=True)
class NamespacedDeployment:
    release: str
    namespace: str  # the operator's
    watched: str
    unwatched: str

    @property
    def operator_user(self) -> str:
        # The chart names the operator's ServiceAccount after the release.
        return f"system:serviceaccount:{self.namespace}:{self.release}-operator"


STORE_SECRET = "artifact-store"


@pytest.fixture(scope="module")
def namespaced(
    api_client: client.ApiClient,
    helm: list[str],
    operator_image: str,
    crds: None,
    kubeconfig: str,
) -> Iterator[NamespacedDeployment]:
    """A one-replica release watching one namespace by name: its namespaced rights are a Role
    there, not cluster-wide; with the cluster's artifact store, whose credentials it reads in
    its own namespace."""
    suffix = uuid.uuid4().hex[:6]
    deployed = NamespacedDeployment(
        release=f"steprun-ns-{suffix}",
        namespace=f"srns-{suffix}",
        watched=f"srns-{suffix}-watched",
        unwatched=f"srns-{suffix}-other",
    )
    core = client.CoreV1Api(api_client)
    for name in (deployed.namespace, deployed.watched, deployed.unwatched):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    store = read_store_env(kubeconfig)
    core.create_namespaced_secret(
        deployed.namespace,
        {
            "metadata": {"name": STORE_SECRET},
            "stringData": {
                "accessKey": store["STORE_ACCESS_KEY"],
                "secretKey": store["STORE_SECRET_KEY"],
            },
        },
    )
    repository, tag = operator_image.rsplit(":", 1)
    values = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "replicas": 1,
        "watchNamespaces": [deployed.watched],
        "artifactRepository": {
            "endpoint": store["STORE_ENDPOINT"],
            "bucket": store["STORE_BUCKET"],
            "keyPrefix": f"{deployed.release}/",
            "credentialsSecret": STORE_SECRET,
        },
        "admission": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": deployed.watched}}
        },
    }
    install = [*helm, "upgrade", "--install", deployed.release, str(CHART)]
    install += ["--namespace", deployed.namespace, "--values", "-", "--wait", "--timeout", "180s"]
    try:
        run(install, stdin=json.dumps(values))
        yield deployed
    finally:
        uninstall(
            helm, core, deployed.release, deployed.namespace, deployed.watched, deployed.unwatched
        )


def test_a_namespaced_install_confines_the_operator_to_its_namespaces(
    api_client: client.ApiClient, kubectl: list[str], namespaced: NamespacedDeployment
) -> None:
    user, ns = namespaced.operator_user, namespaced.watched
    allowed = [
        ("get", "secrets", ns),
        ("create", "pods", ns),
        ("watch", "stepruns.steprun.dev", ns),
        ("patch", "stepruns.steprun.dev/status", ns),
        # The artifact store's credentials, and no other Secret of its own namespace.
        ("get", f"secrets:{STORE_SECRET}", namespaced.namespace),
    ]
    denied = [
        *(
            (verb, "secrets", other)
            for verb in ("get", "create")
            for other in ("default", namespaced.unwatched, namespaced.namespace)
        ),
        ("create", "pods", namespaced.unwatched),
        ("list", "pods", "default"),
        ("list", "stepruns.steprun.dev", namespaced.unwatched),
        ("get", "configmaps", "kube-system"),
    ]
    assert can_i_mismatches(kubectl, user, allowed, denied) == [], (
        "can-i answered differently for (verb, resource, namespace, expected)"
    )
    steps = Steps(api_client, ns)
    steps.core.create_namespaced_secret(
        ns, {"metadata": {"name": "gh"}, "stringData": {"token": "from-gh"}}
    )
    secret = [{"name": "TOKEN", "secretKeyRef": {"name": "gh", "key": "token"}}]
    spec = {"image": "steprun.local/step:1", "script": 'test "$TOKEN" = from-gh'}
    steps.create("confined", {**spec, "context": {"secrets": secret}})
    status = steps.wait_terminal("confined", timeout=120)
    assert status["phase"] == "Succeeded", status
    # The operator archived the log itself, through its own NetworkPolicy's store rule.
    assert "not archived" not in status.get("message", ""), status
    outputs = {"outputs": [{"name": "report", "path": "/workspace/report.txt"}]}
    script = "echo ok > /workspace/report.txt"
    steps.create("uploads", {**spec, "script": script, "artifacts": outputs})
    status = steps.wait_terminal("uploads", timeout=120)
    assert status["phase"] == "Succeeded", status
    assert [a["name"] for a in status["artifacts"]] == ["report"], status


# ---------------------------------------------------------------- HA


def _kill_without_goodbye(
    api_client: client.ApiClient, kubectl: list[str], deployment: Deployment, ordinal: int
) -> None:
    """SIGKILL the replica's process when this machine runs its container (no chance to drop
    its peering record, as when a node dies), then delete its Pod with grace period 0."""
    core = client.CoreV1Api(api_client)
    pod = core.read_namespaced_pod(deployment.pod(ordinal), deployment.namespace)
    container_id = (pod.status.container_statuses[0].container_id or "").removeprefix(
        "containerd://"
    )
    if container_id and shutil.which("ctr"):
        subprocess.run(
            ["ctr", "-n", "k8s.io", "tasks", "kill", "--signal", "SIGKILL", container_id],
            capture_output=True,
            check=False,
        )
    run(
        [
            *kubectl,
            "delete",
            "pod",
            deployment.pod(ordinal),
            "--namespace",
            deployment.namespace,
            "--grace-period=0",
            "--force",
        ]
    )


def test_killing_the_active_replica_hands_over_to_the_other(
    api_client: client.ApiClient,
    kubectl: list[str],
    deployment: Deployment,
    steps: Steps,
    step_image: str,
) -> None:
    core = client.CoreV1Api(api_client)
    # Keep the StatefulSet from bringing replica 0 back under the same name (it would take over
    # its own record at once): the other replica must be the one to take over.
    core.create_namespaced_resource_quota(
        deployment.namespace,
        client.V1ResourceQuota(
            metadata=client.V1ObjectMeta(name="hold-replica-0"),
            spec=client.V1ResourceQuotaSpec(hard={"pods": "1"}),
        ),
    )
    eventually(
        lambda: (
            (
                core.read_namespaced_resource_quota_status(
                    "hold-replica-0", deployment.namespace
                ).status.used
                or {}
            ).get("pods")
            == "2"
        ),
        30,
        "the quota to count the replicas",
    )
    _kill_without_goodbye(api_client, kubectl, deployment, 0)
    killed_at = time.monotonic()
    steps.create("after-failover", {"image": step_image, "script": "echo still here"})

    status = steps.wait_terminal("after-failover", timeout=FAILOVER_TIMEOUT)
    print(f"\nstep created right after the kill finished {time.monotonic() - killed_at:.1f}s later")
    assert status["phase"] == "Succeeded", status
    assert wrote_status_of(pod_log(api_client, deployment, 1), "after-failover")
    pods = core.list_namespaced_pod(
        deployment.namespace, label_selector=f"app.kubernetes.io/instance={deployment.release}"
    ).items
    assert [p.metadata.name for p in pods] == [deployment.pod(1)]
    # The survivor keeps working, and only it is left in the peering object.
    steps.create("after-failover-2", {"image": step_image, "script": "true"})
    assert steps.wait_terminal("after-failover-2", timeout=60)["phase"] == "Succeeded"
    assert set(peering_records(api_client, deployment)) == {deployment.pod(1)}
    core.delete_namespaced_resource_quota("hold-replica-0", deployment.namespace)
