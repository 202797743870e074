"""Artifacts and archived logs end to end: real Pods, the real helper image, the real store.

The store is the local cluster's versitygw (hack/store-up.sh), whose coordinates and
credentials hack/store-up.sh writes beside the kubeconfig. These tests run their own operator
processes, configured with that store, on namespaces of their own, so the session's operator
(no store) is not involved: one with the store's credentials, one whose store is down.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse, urlsplit, urlunsplit

import pytest
from kubernetes import client
from kubernetes import config as kube_config

from steprun.artifacts.store import ArtifactStore, Credentials, Repository
from steprun.client import ArtifactNotFound, StepRunClient
from tests.cluster.conftest import read_store_env
from tests.conftest import SESSION_PREFIX
from tests.support.operator_process import OperatorProcess
from tests.support.steps import Steps, eventually

STEP_IMAGE = "steprun.local/step:1"
# Namespaces of these tests: watched by the operators below only.
STORE_PREFIX = f"{SESSION_PREFIX}a"
DOWN_PREFIX = f"{SESSION_PREFIX}d"
KEY_PREFIX = f"e2e-{uuid.uuid4().hex[:6]}/"
# Small bounds, so a decompression bomb of a few hundred KB shows them.
MAX_UNPACKED_BYTES = 32 << 20
MAX_ENTRIES = 2000
# hack/images/build-images.sh imports the helper as steprun.local/artifacts:1; a run testing a
# helper not yet imported under that name names its own image here.
HELPER_IMAGE = os.environ.get("STEPRUN_TEST_ARTIFACTS_IMAGE", "")


@pytest.fixture(scope="module")
def store_env(kubeconfig: str) -> dict[str, str]:
    return read_store_env(kubeconfig)


@pytest.fixture(scope="module")
def store(store_env: dict[str, str]) -> ArtifactStore:
    return ArtifactStore(
        Repository(store_env["STORE_ENDPOINT"], store_env["STORE_BUCKET"], KEY_PREFIX),
        Credentials(store_env["STORE_ACCESS_KEY"], store_env["STORE_SECRET_KEY"]),
    )


def _namespace(core: client.CoreV1Api, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    for _ in range(100):
        try:
            core.read_namespaced_service_account("default", name)
            break
        except client.ApiException:
            time.sleep(0.1)
    return name


@pytest.fixture(scope="module")
def credentials_secret(
    api_client: client.ApiClient, store_env: dict[str, str]
) -> Iterator[tuple[str, str]]:
    """The repository's credentials, in a namespace no operator watches (like the chart's)."""
    core = client.CoreV1Api(api_client)
    namespace = _namespace(core, f"{SESSION_PREFIX}s")
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name="artifact-store"),
        string_data={
            "accessKey": store_env["STORE_ACCESS_KEY"],
            "secretKey": store_env["STORE_SECRET_KEY"],
        },
    )
    core.create_namespaced_secret(namespace, body)
    yield namespace, "artifact-store"
    core.delete_namespace(namespace, propagation_policy="Background")


def _operator(
    kubeconfig: str,
    log_dir: Path,
    prefix: str,
    endpoint: str,
    bucket: str,
    secret: tuple[str, str],
) -> OperatorProcess:
    return OperatorProcess(
        kubeconfig=kubeconfig,
        log_dir=log_dir,
        extra_env={
            "STEPRUN_NAMESPACES": f'["{prefix}-*"]',
            "STEPRUN_ARTIFACTS_ENDPOINT": endpoint,
            "STEPRUN_ARTIFACTS_BUCKET": bucket,
            "STEPRUN_ARTIFACTS_KEY_PREFIX": KEY_PREFIX,
            "STEPRUN_ARTIFACTS_SECRET": "/".join(secret),
            "STEPRUN_ARTIFACTS_MAX_UNPACKED_BYTES": str(MAX_UNPACKED_BYTES),
            "STEPRUN_ARTIFACTS_MAX_ENTRIES": str(MAX_ENTRIES),
            "STEPRUN_EVENTS": "false",
            # The helper of this checkout, when the cluster's image is another's (see below).
            **({"STEPRUN_ARTIFACTS_IMAGE": HELPER_IMAGE} if HELPER_IMAGE else {}),
        },
    )


@pytest.fixture(scope="module")
def store_operator(
    kubeconfig: str,
    crds: None,
    store_env: dict[str, str],
    credentials_secret: tuple[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    process = _operator(
        kubeconfig,
        tmp_path_factory.mktemp("artifact-operator"),
        STORE_PREFIX,
        store_env["STORE_ENDPOINT"],
        store_env["STORE_BUCKET"],
        credentials_secret,
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def down_operator(
    kubeconfig: str,
    crds: None,
    store_env: dict[str, str],
    credentials_secret: tuple[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    """An operator whose store does not answer: the store's host, a port nothing listens on."""
    host = store_env["STORE_ENDPOINT"].rsplit(":", 1)[0]
    process = _operator(
        kubeconfig,
        tmp_path_factory.mktemp("down-operator"),
        DOWN_PREFIX,
        f"{host}:1",
        store_env["STORE_BUCKET"],
        credentials_secret,
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture
def steps(api_client: client.ApiClient, store_operator: OperatorProcess) -> Iterator[Steps]:
    core = client.CoreV1Api(api_client)
    namespace = _namespace(core, STORE_PREFIX)
    yield Steps(api_client, namespace)
    core.delete_namespace(namespace, propagation_policy="Background")


@pytest.fixture
def down_steps(api_client: client.ApiClient, down_operator: OperatorProcess) -> Iterator[Steps]:
    core = client.CoreV1Api(api_client)
    namespace = _namespace(core, DOWN_PREFIX)
    yield Steps(api_client, namespace)
    core.delete_namespace(namespace, propagation_policy="Background")


def engine(steps: Steps, store: ArtifactStore) -> StepRunClient:
    return StepRunClient(steps.api, steps.namespace, artifact_store=store)


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as archive:
        return {
            m.name: archive.extractfile(m).read()  # type: ignore[union-attr]
            for m in archive.getmembers()
            if m.isfile()
        }


def step(script: str, artifacts: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"image": STEP_IMAGE, "script": script, "artifacts": artifacts, **spec}


BUILD = """
mkdir -p /workspace/dist/sub
echo alpha > /workspace/dist/a.txt
echo beta > /workspace/dist/sub/b.txt
echo '<testsuite tests="1"/>' > /workspace/report.xml
"""
OUTPUTS = {
    "outputs": [
        {"name": "dist", "path": "/workspace/dist"},
        {"name": "report", "path": "/workspace/report.xml"},
    ]
}


def test_directory_and_file_outputs_round_trip_into_the_next_step(
    steps: Steps, store: ArtifactStore, tmp_path: Path, store_env: dict[str, str]
) -> None:
    steps.create("build", step(BUILD, OUTPUTS))
    status = steps.wait_terminal("build", timeout=120)
    assert (status["phase"], status["reason"]) == ("Succeeded", "Completed"), status
    uploaded = {a["name"]: a for a in status["artifacts"]}
    assert set(uploaded) == {"dist", "report"}
    uid = steps.get("build")["metadata"]["uid"]
    assert uploaded["dist"]["key"] == f"{KEY_PREFIX}{steps.namespace}/build/{uid}/1/dist.tgz"
    assert all(a["attempt"] == 1 for a in uploaded.values())

    # The object in the store is what status says, byte for byte.
    for entry in uploaded.values():
        data = b"".join(store.read(entry["key"]))
        assert len(data) == entry["size"]
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]

    engine_client = engine(steps, store)
    assert [a.name for a in engine_client.artifacts("build")] == ["dist", "report"]
    dist = engine_client.download("build", "dist", tmp_path / "dist.tgz")
    assert members(dist) == {"./a.txt": b"alpha\n", "./sub/b.txt": b"beta\n"}
    report = engine_client.download("build", "report", tmp_path / "report.tgz")
    assert members(report) == {"report.xml": b'<testsuite tests="1"/>\n'}
    with pytest.raises(ArtifactNotFound, match='no artifact "nope"; it has: dist, report'):
        engine_client.download("build", "nope", tmp_path / "x")

    # The CLI, reading the store with the caller's own credentials from the environment.
    env = {
        **os.environ,
        "STEPRUN_ARTIFACTS_ENDPOINT": store_env["STORE_ENDPOINT"],
        "STEPRUN_ARTIFACTS_BUCKET": store_env["STORE_BUCKET"],
        "STEPRUN_ARTIFACTS_KEY_PREFIX": KEY_PREFIX,
        "STEPRUN_ARTIFACTS_ACCESS_KEY": store_env["STORE_ACCESS_KEY"],
        "STEPRUN_ARTIFACTS_SECRET_KEY": store_env["STORE_SECRET_KEY"],
    }
    cli = [sys.executable, "-m", "steprun", "-n", steps.namespace, "artifacts"]
    listing = subprocess.run([*cli, "ls", "build"], env=env, capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr
    assert uploaded["dist"]["sha256"] in listing.stdout
    got = subprocess.run(
        [*cli, "get", "build", "dist", "-o", str(tmp_path / "cli.tgz")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "cli.tgz").read_bytes() == dist.read_bytes()

    check = """
    set -e
    test "$(cat /in/dist/a.txt)" = alpha
    test "$(cat /in/dist/sub/b.txt)" = beta
    grep -q testsuite /in/report.xml
    echo consumed
    """
    inputs = {
        "inputs": [
            {"name": "dist", "from": {"stepRun": "build", "artifact": "dist"}, "path": "/in/dist"},
            {
                "name": "report",
                "from": {"stepRun": "build", "artifact": "report"},
                "path": "/in/report.xml",
            },
        ]
    }
    steps.create("test", step(check, inputs))
    status = steps.wait_terminal("test", timeout=120)
    assert (status["phase"], status["exitCode"]) == ("Succeeded", 0), status
    assert "consumed" in list(engine_client.logs("test"))


def test_outputs_are_uploaded_when_the_step_fails(steps: Steps, store: ArtifactStore) -> None:
    script = "echo '<failure/>' > /workspace/report.xml; exit 3"
    outputs = {"outputs": [{"name": "report", "path": "/workspace/report.xml"}]}
    steps.create("failing", step(script, outputs))
    status = steps.wait_terminal("failing", timeout=120)
    assert (status["phase"], status["reason"], status["exitCode"]) == ("Failed", "Error", 3)
    [report] = status["artifacts"]
    assert hashlib.sha256(b"".join(store.read(report["key"]))).hexdigest() == report["sha256"]


def test_a_retry_does_not_overwrite_the_first_attempts_artifacts(
    steps: Steps, store: ArtifactStore, tmp_path: Path
) -> None:
    script = "mkdir -p /out; echo attempt-$STEPRUN_ATTEMPT > /out/n; exit 1"
    spec = step(script, {"outputs": [{"name": "out", "path": "/out"}]})
    steps.create("flaky", {**spec, "retries": {"limit": 1, "backoffSeconds": 1}})
    status = steps.wait_terminal("flaky", timeout=150)
    assert status["phase"] == "Failed" and status["attempt"] == 2, status
    by_attempt = {a["attempt"]: a for a in status["artifacts"]}
    assert set(by_attempt) == {1, 2}
    assert by_attempt[1]["key"] != by_attempt[2]["key"]
    engine_client = engine(steps, store)
    for attempt in (1, 2):
        path = engine_client.download("flaky", "out", tmp_path / f"{attempt}.tgz", attempt=attempt)
        assert members(path) == {"./n": f"attempt-{attempt}\n".encode()}


def test_an_input_the_producer_does_not_have_is_refused_before_any_pod(steps: Steps) -> None:
    steps.create("plain", {"image": STEP_IMAGE, "script": "true"})
    steps.wait_terminal("plain", timeout=90)
    inputs = {
        "inputs": [{"name": "x", "from": {"stepRun": "plain", "artifact": "x"}, "path": "/x"}]
    }
    steps.create("consumer", step("true", inputs))
    status = steps.wait_terminal("consumer", timeout=60)
    assert (status["phase"], status["reason"]) == ("Failed", "InvalidSpec"), status
    assert 'StepRun "plain" has no artifact "x"' in status["message"]
    assert steps.pods("consumer") == []


def test_a_store_that_is_down_fails_the_step_naming_the_artifact(down_steps: Steps) -> None:
    down_steps.create("to-nowhere", step(BUILD, OUTPUTS, retries={"platformLimit": 0}))
    status = down_steps.wait_terminal("to-nowhere", timeout=180)
    assert (status["phase"], status["reason"]) == ("Failed", "ArtifactUploadFailed"), status
    assert 'output "dist"' in status["message"] and "connection refused" in status["message"]
    assert not status.get("artifacts"), "nothing half-written is reported as uploaded"


def archived_logs(steps: Steps, store: ArtifactStore, name: str) -> list[str]:
    return list(engine(steps, store).logs(name))


def test_logs_are_read_from_the_archive_after_ttl_deletion(
    steps: Steps, store: ArtifactStore
) -> None:
    script = "echo line one; echo line two; exit 2"
    steps.create(
        "short-lived", {"image": STEP_IMAGE, "script": script, "ttlSecondsAfterFinished": 2}
    )
    eventually(lambda: not steps.exists("short-lived"), 120, "the StepRun to expire")
    eventually(lambda: not steps.pods("short-lived"), 60, "its Pod to be collected")
    assert archived_logs(steps, store, "short-lived") == ["line one", "line two"]


def test_logs_of_cancelled_and_timed_out_steps_survive_their_pods(
    steps: Steps, store: ArtifactStore
) -> None:
    forever = "echo started; trap 'echo stopping; exit 143' TERM; while true; do sleep 1; done"
    steps.create("cancelled", {"image": STEP_IMAGE, "script": forever})
    steps.create(
        "slow", {"image": STEP_IMAGE, "script": "echo before; sleep 300", "timeoutSeconds": 5}
    )
    steps.wait_phase("cancelled", "Running", timeout=90)
    eventually(lambda: "started" in current_logs(steps, store, "cancelled"), 30, "the first line")
    steps.patch_spec("cancelled", {"cancel": True})
    assert steps.wait_terminal("cancelled", timeout=90)["phase"] == "Cancelled"
    assert steps.wait_terminal("slow", timeout=120)["phase"] == "TimedOut"
    for name in ("cancelled", "slow"):
        steps.custom.delete_namespaced_custom_object(
            "steprun.dev", "v1alpha1", steps.namespace, "stepruns", name
        )
    eventually(lambda: not steps.pods("cancelled") and not steps.pods("slow"), 90, "Pods gone")
    assert archived_logs(steps, store, "cancelled") == ["started", "stopping"]
    assert archived_logs(steps, store, "slow") == ["before"]


def test_a_namesake_never_overwrites_the_archived_log_it_replaced(
    steps: Steps, store: ArtifactStore, store_env: dict[str, str]
) -> None:
    """Delete a finished StepRun, create one with its name: the first one's archived log stays
    what it was, ``steprun logs`` shows the StepRun it reads, and the deleted one by its uid."""
    steps.create("namesake", {"image": STEP_IMAGE, "script": "echo the original"})
    assert steps.wait_terminal("namesake", timeout=90)["phase"] == "Succeeded"
    first = steps.get("namesake")["metadata"]["uid"]
    steps.custom.delete_namespaced_custom_object(
        "steprun.dev", "v1alpha1", steps.namespace, "stepruns", "namesake"
    )
    eventually(lambda: not steps.exists("namesake"), 60, "the StepRun to be deleted")
    steps.create("namesake", {"image": STEP_IMAGE, "script": "echo a forgery"})
    assert steps.wait_terminal("namesake", timeout=90)["phase"] == "Succeeded"
    again = steps.get("namesake")["metadata"]["uid"]
    assert archived_logs(steps, store, "namesake") == ["a forgery"]
    steps.custom.delete_namespaced_custom_object(
        "steprun.dev", "v1alpha1", steps.namespace, "stepruns", "namesake"
    )
    eventually(lambda: not steps.exists("namesake"), 60, "the namesake to be deleted")
    client = engine(steps, store)
    assert list(client.logs("namesake", uid=first)) == ["the original"]
    assert list(client.logs("namesake", uid=again)) == ["a forgery"]
    env = {
        **os.environ,
        "STEPRUN_ARTIFACTS_ENDPOINT": store_env["STORE_ENDPOINT"],
        "STEPRUN_ARTIFACTS_BUCKET": store_env["STORE_BUCKET"],
        "STEPRUN_ARTIFACTS_KEY_PREFIX": KEY_PREFIX,
        "STEPRUN_ARTIFACTS_ACCESS_KEY": store_env["STORE_ACCESS_KEY"],
        "STEPRUN_ARTIFACTS_SECRET_KEY": store_env["STORE_SECRET_KEY"],
    }
    cli = [sys.executable, "-m", "steprun", "-n", steps.namespace, "logs", "namesake"]
    ambiguous = subprocess.run(cli, env=env, capture_output=True, text=True)
    assert ambiguous.returncode != 0 and "say which one" in ambiguous.stderr, ambiguous
    original = subprocess.run([*cli, "--uid", first], env=env, capture_output=True, text=True)
    assert original.returncode == 0, original.stderr
    assert "the original" in original.stdout and "forgery" not in original.stdout


def current_logs(steps: Steps, store: ArtifactStore, name: str) -> list[str]:
    try:
        return archived_logs(steps, store, name)
    except Exception:
        return []


def test_a_sandbox_step_without_the_artifact_permission_is_refused(
    steps: Steps, sandbox_policies: Any
) -> None:
    policy = sandbox_policies.create(
        "no-artifacts",
        {"plugins": [{"name": "sh", "image": STEP_IMAGE, "command": ["sh", "-c"]}]},
    )
    spec = {
        "mode": "sandbox",
        "args": ["echo x > /tmp/x"],
        "sandbox": {"policy": policy, "plugin": "sh"},
        "artifacts": {"outputs": [{"name": "x", "path": "/tmp/x"}]},
    }
    steps.create("sandboxed", spec)
    status = steps.wait_terminal("sandboxed", timeout=60)
    assert (status["phase"], status["reason"]) == ("Rejected", "PermissionDenied"), status
    assert "artifacts.write" in status["message"]
    assert steps.pods("sandboxed") == []


EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples" / "artifacts").glob("*.yaml"))


def test_the_two_step_example_passes_a_directory_from_build_to_test(
    steps: Steps, store: ArtifactStore
) -> None:
    for path in EXAMPLES:
        [name] = steps.apply_file(path)
        status = steps.wait_terminal(name, timeout=120)
        expect = dict(
            item.split("=", 1)
            for line in path.read_text().splitlines()
            if line.startswith("# expect:")
            for item in line.removeprefix("# expect:").split()
        )
        assert status["phase"] == expect["phase"], (path.name, status)
        assert status["reason"] == expect["reason"], (path.name, status)
    assert list(engine(steps, store).logs("artifacts-test")) == [
        "version=1.0.1",
        "hello from the build",
    ]


# ---------------------------------------------------------------------- isolation between tenants


def impersonating(kubeconfig: str, user: str) -> client.ApiClient:
    api = kube_config.new_client_from_config(config_file=kubeconfig)
    api.set_default_header("Impersonate-User", user)
    return api


def co_tenant(api_client: client.ApiClient, kubeconfig: str, namespace: str) -> client.CoreV1Api:
    """An identity that may create Pods and read Secrets in ``namespace``, and nothing else."""
    core = client.CoreV1Api(api_client)
    rbac = client.RbacAuthorizationV1Api(api_client)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "cotenant"}})
    rules = [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "list"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]},
    ]
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "cotenant"}, "rules": rules})
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "cotenant"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "cotenant",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "cotenant", "namespace": namespace}],
        },
    )
    user = f"system:serviceaccount:{namespace}:cotenant"
    return client.CoreV1Api(impersonating(kubeconfig, user))


def http_status(method: str, url: str, data: bytes | None = None) -> int:
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def with_path(url: str, bucket: str, key: str) -> str:
    """The same signature and query, pointed at another object."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{bucket}/{quote(key)}"))


def test_a_co_tenant_reaches_no_object_beyond_its_own_attempts(
    steps: Steps,
    store: ArtifactStore,
    store_env: dict[str, str],
    api_client: client.ApiClient,
    kubeconfig: str,
) -> None:
    """What a co-tenant of namespace A can read there (Secrets, Pods) while A's steps run opens
    at most those steps' own objects: no store credential, and another namespace's artifact
    stays closed (the store's own 403). The legitimate path, one step's output as the next
    step's input, still works."""
    core = client.CoreV1Api(api_client)
    other = Steps(api_client, _namespace(core, STORE_PREFIX))
    try:
        other.create(
            "secret-build",
            step(
                "mkdir -p /out; echo other-tenant > /out/x",
                {"outputs": [{"name": "private", "path": "/out"}]},
            ),
        )
        theirs = other.wait_terminal("secret-build", timeout=120)
        assert theirs["phase"] == "Succeeded", theirs
        their_key = theirs["artifacts"][0]["key"]

        as_cotenant = co_tenant(api_client, kubeconfig, steps.namespace)
        steps.create(
            "build",
            step(
                "mkdir -p /out; echo mine > /out/x", {"outputs": [{"name": "dist", "path": "/out"}]}
            ),
        )
        assert steps.wait_terminal("build", timeout=120)["phase"] == "Succeeded"
        consume = "cat /in/x; sleep 20; mkdir -p /res; echo done > /res/r"
        steps.create(
            "consume",
            step(
                consume,
                {
                    "inputs": [
                        {
                            "name": "dist",
                            "from": {"stepRun": "build", "artifact": "dist"},
                            "path": "/in",
                        }
                    ],
                    "outputs": [{"name": "result", "path": "/res"}],
                },
            ),
        )
        steps.wait_phase("consume", "Running", timeout=90)

        def readable() -> list[Any]:
            try:
                return list(as_cotenant.list_namespaced_secret(steps.namespace).items)
            except client.ApiException as error:
                if error.status == 403:  # the binding is not in the authorizer's cache yet
                    return []
                raise

        secrets = eventually(
            lambda: (
                [s for s in readable() if s.metadata.name.startswith("consume-")] and readable()
            ),
            30,
            "the co-tenant to read the namespace's Secrets",
        )
        seen = ""
        for secret in secrets:
            for value in (secret.data or {}).values():
                seen += base64.b64decode(value).decode(errors="replace")
        for pod in as_cotenant.list_namespaced_pod(steps.namespace).items:
            seen += json.dumps(as_cotenant.api_client.sanitize_for_serialization(pod))
        assert store_env["STORE_SECRET_KEY"] not in seen, "the store's secret key is readable"
        # The access key id names the signer in every SigV4 URL (it opens nothing alone).
        access = store_env["STORE_ACCESS_KEY"]
        assert seen.count(access) == seen.count(f"X-Amz-Credential={access}%2F")
        (urls_secret,) = [s for s in secrets if s.metadata.name.startswith("consume-artifacts-")]
        urls = json.loads(base64.b64decode(urls_secret.data["urls"]))
        assert set(urls) == {"inputs", "outputs"}
        assert set(urls["inputs"]) == {"dist"} and set(urls["outputs"]) == {"result"}
        get_url, put_url = urls["inputs"]["dist"], urls["outputs"]["result"]
        bucket = store_env["STORE_BUCKET"]
        # The residual risk, documented: this attempt's own objects, until the URLs expire.
        assert http_status("GET", get_url) == 200
        # Nothing else: the signature covers one key, one method.
        assert http_status("GET", with_path(get_url, bucket, their_key)) == 403
        assert http_status("GET", with_path(put_url, bucket, their_key)) == 403
        assert http_status("PUT", with_path(put_url, bucket, their_key), b"forged") == 403
        assert http_status("PUT", get_url, b"forged") == 403
        assert http_status("GET", f"{store_env['STORE_ENDPOINT']}/{bucket}/{their_key}") == 403
        assert b"".join(store.read(their_key)), "their artifact is untouched"

        status = steps.wait_terminal("consume", timeout=120)
        assert (status["phase"], status["exitCode"]) == ("Succeeded", 0), status
        assert "mine" in list(engine(steps, store).logs("consume"))
        assert [a["name"] for a in status["artifacts"]] == ["result"]
        eventually(
            lambda: not steps.secret_exists(urls_secret.metadata.name),
            30,
            "the attempt's URLs to be deleted with its end",
        )
    finally:
        core.delete_namespace(other.namespace, propagation_policy="Background")


def test_a_step_cannot_forge_the_helpers_done_marker(steps: Steps, store: ArtifactStore) -> None:
    """uploadOnFailure: false holds even when the failing step writes, where the uploader used
    to read it, a marker saying it succeeded and an archive of its choosing."""
    forge = """
    mkdir -p /out; echo real > /out/x
    cd /var/run/steprun/outputs
    echo forged > x; tar czf out.tgz x
    printf '{"exitCode":0,"outputs":{"out":{"state":"packed"}}}' > done
    sleep 3
    exit 1
    """
    spec = step(forge, {"outputs": [{"name": "out", "path": "/out"}], "uploadOnFailure": False})
    steps.create("forger", spec)
    status = steps.wait_terminal("forger", timeout=120)
    assert (status["phase"], status["exitCode"]) == ("Failed", 1), status
    assert not status.get("artifacts"), f"a failed step's outputs were uploaded: {status}"


def test_a_decompression_bomb_fails_the_consumer_naming_the_limit(steps: Steps) -> None:
    """A few hundred KB of gzip that unpack past maxUnpackedBytes; and more entries than
    maxEntries: each fails the consumer ArtifactDownloadFailed, naming the limit."""
    bomb = (
        f"mkdir -p /out; dd if=/dev/zero of=/out/zeros bs=1M count={(MAX_UNPACKED_BYTES >> 20) * 2}"
    )
    many = (
        f"mkdir -p /out; cd /out; i=0; "
        f"while [ $i -lt {MAX_ENTRIES + 10} ]; do : > f$i; i=$((i+1)); done"
    )
    for name, script in (("bomb", bomb), ("many", many)):
        steps.create(name, step(script, {"outputs": [{"name": "a", "path": "/out"}]}))
    for name, limit in (("bomb", "maxUnpackedBytes"), ("many", "maxEntries")):
        produced = steps.wait_terminal(name, timeout=180)
        assert produced["phase"] == "Succeeded", produced
        inputs = {
            "inputs": [{"name": "a", "from": {"stepRun": name, "artifact": "a"}, "path": "/in"}]
        }
        steps.create(f"open-{name}", step("echo unpacked", inputs))
        status = steps.wait_terminal(f"open-{name}", timeout=120)
        assert (status["phase"], status["reason"]) == ("Failed", "ArtifactDownloadFailed"), status
        assert limit in status["message"], status["message"]


def test_sandbox_steps_reach_the_store_and_nothing_else(
    steps: Steps, store: ArtifactStore, sandbox_policies: Any, sandbox_admission: str
) -> None:
    """Sandbox steps pass an artifact through the store where NetworkPolicies are enforced
    (tests/cluster/test_network_policy.py): the store rule the operator adds to each step's
    policy lets the helpers through, and nothing else on the store's host opens to the step."""
    sh = {"name": "sh", "image": STEP_IMAGE, "command": ["sh", "-c"]}
    policy = sandbox_policies.create(
        "store-only", {"plugins": [sh], "grants": ["artifacts.write", "artifacts.read"]}
    )
    store_host = urlparse(store.repository.endpoint).hostname
    # The API server listens on the store's host too: a port of that address the rule omits.
    api_port = urlparse(steps.api.configuration.host).port or 443
    probe = (
        f"if nc -w 3 {store_host} {api_port} </dev/null; then echo other-port=open; "
        "else echo other-port=refused; fi"
    )

    def sandboxed(script: str, permission: str, artifacts: dict[str, Any]) -> dict[str, Any]:
        return {
            "mode": "sandbox",
            "sandbox": {"policy": policy, "plugin": "sh", "permissions": [permission]},
            # The agent confines a Pod once it has an IP (docs/security.md): wait it out.
            "args": [f"sleep 5; {probe}; {script}"],
            "artifacts": artifacts,
            "timeoutSeconds": 120,
        }

    steps.create(
        "producer",
        sandboxed(
            "mkdir -p /tmp/out && echo sealed > /tmp/out/f",
            "artifacts.write",
            {"outputs": [{"name": "out", "path": "/tmp/out"}]},
        ),
    )
    status = steps.wait_terminal("producer", timeout=150)
    assert (status["phase"], status["reason"]) == ("Succeeded", "Completed"), status
    [uploaded] = status["artifacts"]
    assert b"".join(store.read(uploaded["key"])), uploaded

    steps.create(
        "consumer",
        sandboxed(
            'test "$(cat /tmp/in/f)" = sealed && echo consumed',
            "artifacts.read",
            {
                "inputs": [
                    {
                        "name": "in",
                        "from": {"stepRun": "producer", "artifact": "out"},
                        "path": "/tmp/in",
                    }
                ]
            },
        ),
    )
    status = steps.wait_terminal("consumer", timeout=150)
    assert (status["phase"], status["exitCode"]) == ("Succeeded", 0), status
    for name in ("producer", "consumer"):
        lines = list(engine(steps, store).logs(name))
        assert "other-port=refused" in lines, (name, lines)
    assert "consumed" in list(engine(steps, store).logs("consumer"))
