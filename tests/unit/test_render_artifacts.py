"""spec.artifacts in the step's Pod, input resolution and path checks (pure, table-tested)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from steprun.api.models import StepRun
from steprun.artifacts.names import (
    INIT_CONTAINER,
    UPLOAD_CONTAINER,
    archived_log_of,
    artifact_key,
    log_key,
)
from steprun.config import OperatorConfig
from steprun.render.artifacts import (
    OUTPUTS_DIR,
    STEP_HELPER,
    URLS_ENV,
    URLS_KEY,
    ArtifactError,
    ResolvedInput,
    add_artifacts,
    add_store_egress,
    attempt_objects,
    path_problems,
    render_urls_secret,
    resolve_inputs,
    url_lifetime_seconds,
)
from steprun.render.pod import render_pod
from steprun.render.sandbox import restricted_violations

CONFIG = OperatorConfig(
    artifacts_endpoint="http://10.1.2.3:7070",
    artifacts_bucket="steprun",
    artifacts_key_prefix="runs",
    artifacts_secret="steprun-system/store",
    artifacts_max_bytes=1000,
)
SHA = "a" * 64


def steprun(name: str = "build-42", status: dict[str, Any] | None = None, **spec: Any) -> StepRun:
    spec.setdefault("image", "busybox:1.36")
    return StepRun.from_body(
        {
            "apiVersion": "steprun.dev/v1alpha1",
            "kind": "StepRun",
            "metadata": {"name": name, "namespace": "ci", "uid": "uid-1"},
            "spec": spec,
            "status": status or {},
        }
    )


OUTPUTS = {"outputs": [{"name": "dist", "path": "/workspace/dist"}]}
INPUTS = {
    "inputs": [{"name": "dist", "from": {"stepRun": "build-41", "artifact": "dist"}, "path": "/in"}]
}


def containers(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = pod["spec"]
    return {c["name"]: c for c in [*spec.get("initContainers", []), *spec["containers"]]}


def test_keys_are_deterministic_per_namespace_steprun_uid_attempt_and_name() -> None:
    assert CONFIG.artifacts_prefix == "runs/"
    assert artifact_key("runs/", "ci", "build-42", "u1", 2, "dist") == (
        "runs/ci/build-42/u1/2/dist.tgz"
    )
    assert log_key("", "ci", "build-42", "u1", 1) == "ci/build-42/u1/1/step.log"
    assert archived_log_of("", "ci", "build-42", "ci/build-42/u1/3/step.log") == ("u1", 3)
    assert archived_log_of("", "ci", "build-42", "ci/build-42/u1/3/dist.tgz") is None
    assert archived_log_of("", "ci", "build-4", "ci/build-42/u1/3/step.log") is None
    assert archived_log_of("", "ci", "build-42", "ci/build-42/3/step.log") is None


@pytest.mark.parametrize("uid", ["", "a/b"], ids=["no-uid", "slash"])
def test_a_key_is_never_made_without_a_uid(uid: str) -> None:
    with pytest.raises(ValueError, match="uid"):
        log_key("", "ci", "build-42", uid, 1)


def test_a_namesake_never_writes_the_keys_of_the_steprun_it_replaced() -> None:
    """Deleted and created again under the same name: another uid, so other objects."""
    first = steprun(script="make dist", artifacts=OUTPUTS)
    again = first.model_copy(
        update={"metadata": first.metadata.model_copy(update={"uid": "uid-2"})}
    )

    def upload_keys(sr: StepRun) -> dict[str, str]:
        pod = add_artifacts(render_pod(sr, 1, CONFIG), sr, 1, CONFIG, [])
        upload = containers(pod)[UPLOAD_CONTAINER]
        keys: dict[str, str] = json.loads(
            upload["command"][upload["command"].index("--outputs") + 1]
        )
        return keys

    assert upload_keys(first) != upload_keys(again)
    assert log_key("", "ci", first.name, first.uid, 1) != log_key(
        "", "ci", again.name, again.uid, 1
    )


def test_outputs_wrap_the_command_and_add_an_uploader_with_its_urls() -> None:
    sr = steprun(script="make dist", artifacts=OUTPUTS)
    pod = add_artifacts(render_pod(sr, 2, CONFIG), sr, 2, CONFIG, [])
    by_name = containers(pod)
    step = pod["spec"]["containers"][0]
    assert step["name"] == "step", "the step's container stays first (logs, observation)"
    assert step["command"][:2] == [STEP_HELPER, "run"]
    separator = step["command"].index("--")
    assert step["command"][separator + 1 :] == ["/bin/sh", "/var/run/steprun/context/script.sh"]
    listed = json.loads(step["command"][step["command"].index("--outputs") + 1])
    assert listed == [{"name": "dist", "path": "/workspace/dist"}]
    upload = by_name[UPLOAD_CONTAINER]
    keys = json.loads(upload["command"][upload["command"].index("--outputs") + 1])
    assert keys == {"dist": "runs/ci/build-42/uid-1/2/dist.tgz"}, "uid and attempt in the key"
    assert "--on-failure=true" in upload["command"]
    assert "1000" in upload["command"], "the size limit reaches the helper"
    refs = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in upload["env"]}
    assert refs == {URLS_ENV: {"name": "build-42-artifacts-2", "key": URLS_KEY}}, (
        "the attempt's own URLs, by reference: nothing else of the store"
    )
    assert {m["mountPath"] for m in upload["volumeMounts"]} == {OUTPUTS_DIR}
    assert INIT_CONTAINER in by_name, "the init container installs the helper binary"


def test_no_container_gets_a_store_credential_and_the_step_not_even_its_urls() -> None:
    sr = steprun(command=["make"], artifacts={**OUTPUTS, **INPUTS})
    inputs = [ResolvedInput("dist", "runs/ci/build-41/1/dist.tgz", SHA, "/in")]
    pod = add_artifacts(render_pod(sr, 1, CONFIG), sr, 1, CONFIG, inputs)
    step = pod["spec"]["containers"][0]
    assert "build-42-artifacts-1" not in json.dumps(step)
    assert not any(e["name"].startswith("STEPRUN_ARTIFACTS") for e in step["env"])
    for container in containers(pod).values():
        names = {e["name"] for e in container.get("env", [])}
        assert not {n for n in names if n.endswith(("ACCESS_KEY", "SECRET_KEY"))}, container["name"]
        refs = [e["valueFrom"] for e in container.get("env", []) if "valueFrom" in e]
        assert all(
            ref["secretKeyRef"]["name"] != "build-42-context"
            for ref in refs
            if "secretKeyRef" in ref
        )
    # The step sees the helper binary read-only and cannot reach the uploader's files otherwise.
    bin_mount = next(m for m in step["volumeMounts"] if m["mountPath"].endswith("/bin"))
    assert bin_mount["readOnly"] is True


def test_inputs_are_downloaded_by_the_init_container_and_mounted_at_their_path() -> None:
    sr = steprun(command=["ls"], artifacts=INPUTS)
    inputs = [ResolvedInput("dist", "runs/ci/build-41/1/dist.tgz", SHA, "/in")]
    pod = add_artifacts(render_pod(sr, 1, CONFIG), sr, 1, CONFIG, inputs)
    init = containers(pod)[INIT_CONTAINER]
    listed = json.loads(init["command"][init["command"].index("--inputs") + 1])
    assert listed == [
        {
            "name": "dist",
            "key": "runs/ci/build-41/1/dist.tgz",
            "sha256": SHA,
            "dest": listed[0]["dest"],
        }
    ]
    step = pod["spec"]["containers"][0]
    assert step["command"] == ["ls"], "inputs alone need no wrapper"
    mount = next(m for m in step["volumeMounts"] if m["mountPath"] == "/in")
    assert listed[0]["dest"].endswith("/" + mount["subPath"])
    assert UPLOAD_CONTAINER not in containers(pod)


def test_dollar_signs_reach_the_helper_literally() -> None:
    sr = steprun(command=["make"], artifacts={"outputs": [{"name": "d", "path": "/w/$(HOME)"}]})
    pod = add_artifacts(render_pod(sr, 1, CONFIG), sr, 1, CONFIG, [])
    arg = pod["spec"]["containers"][0]["command"][7]
    assert "$$(HOME)" in arg, "the kubelet turns $$ into $, so no variable is expanded"


def test_upload_on_failure_can_be_turned_off() -> None:
    sr = steprun(command=["make"], artifacts={**OUTPUTS, "uploadOnFailure": False})
    pod = add_artifacts(render_pod(sr, 1, CONFIG), sr, 1, CONFIG, [])
    assert "--on-failure=false" in containers(pod)[UPLOAD_CONTAINER]["command"]


def test_outputs_without_a_command_are_refused() -> None:
    sr = steprun(artifacts=OUTPUTS)
    with pytest.raises(ArtifactError, match="needs a command"):
        add_artifacts(render_pod(sr, 1, CONFIG), sr, 1, CONFIG, [])


def test_a_step_without_artifacts_is_left_alone() -> None:
    sr = steprun(command=["true"])
    pod = render_pod(sr, 1, CONFIG)
    assert add_artifacts(pod, sr, 1, CONFIG, []) == pod


def producer(artifacts: list[dict[str, Any]]) -> StepRun:
    return steprun("build-41", status={"phase": "Succeeded", "artifacts": artifacts}, command=["x"])


def upload(name: str, attempt: int) -> dict[str, Any]:
    key = f"ci/build-41/{attempt}/{name}.tgz"
    return {"name": name, "attempt": attempt, "key": key, "size": 10, "sha256": SHA}


@pytest.mark.parametrize(
    ("source", "producers", "key", "problem"),
    [
        pytest.param(
            {"stepRun": "build-41", "artifact": "dist"},
            {"build-41": producer([upload("dist", 1), upload("dist", 2)])},
            "ci/build-41/2/dist.tgz",
            None,
            id="latest-attempt",
        ),
        pytest.param(
            {"stepRun": "build-41", "artifact": "dist", "attempt": 1},
            {"build-41": producer([upload("dist", 1), upload("dist", 2)])},
            "ci/build-41/1/dist.tgz",
            None,
            id="chosen-attempt",
        ),
        pytest.param(
            {"stepRun": "build-41", "artifact": "dist"},
            {"build-41": producer([upload("report", 1)])},
            None,
            'input "dist": StepRun "build-41" has no artifact "dist" (it has: report)',
            id="no-such-artifact",
        ),
        pytest.param(
            {"stepRun": "build-41", "artifact": "dist"},
            {"build-41": producer([])},
            None,
            'StepRun "build-41" has no artifact "dist" (it uploaded none)',
            id="producer-uploaded-nothing",
        ),
        pytest.param(
            {"stepRun": "build-41", "artifact": "dist"},
            {},
            None,
            'input "dist": StepRun "build-41" not found in namespace ci',
            id="no-producer",
        ),
    ],
)
def test_resolve_inputs(
    source: dict[str, Any], producers: dict[str, StepRun], key: str | None, problem: str | None
) -> None:
    sr = steprun(
        command=["x"], artifacts={"inputs": [{"name": "dist", "from": source, "path": "/in"}]}
    )
    resolved, problems = resolve_inputs(sr, producers)
    if problem is None:
        assert problems == []
        assert [r.key for r in resolved] == [key]
    else:
        assert resolved == []
        assert len(problems) == 1 and problem in problems[0]


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        pytest.param("/workspace/dist", None, id="ok"),
        pytest.param("/workspace/dist/", None, id="trailing-slash"),
        pytest.param("/workspace/../etc", "without . or ..", id="dotdot"),
        pytest.param("/var/run/steprun/outputs/x", "inside /var/run/steprun", id="reserved"),
        pytest.param("/proc/self", "inside /proc", id="proc"),
    ],
)
def test_path_problems(path: str, problem: str | None) -> None:
    sr = steprun(command=["x"], artifacts={"outputs": [{"name": "d", "path": path}]})
    found = path_problems(sr)
    if problem is None:
        assert found == []
    else:
        assert len(found) == 1 and problem in found[0]


def test_two_inputs_on_one_path_are_refused() -> None:
    src = {"stepRun": "a", "artifact": "x"}
    sr = steprun(
        command=["x"],
        artifacts={
            "inputs": [
                {"name": "a", "from": src, "path": "/in"},
                {"name": "b", "from": src, "path": "/in/"},
            ]
        },
    )
    assert any("share the path '/in'" in p for p in path_problems(sr))


def test_a_sandbox_step_with_artifacts_may_reach_a_store_given_by_address() -> None:
    sr = steprun(command=["make"], artifacts=OUTPUTS)
    policy = {"spec": {"policyTypes": ["Ingress", "Egress"]}}
    opened = add_store_egress(policy, sr, CONFIG)
    assert opened["spec"]["egress"] == [
        {"to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}], "ports": [{"protocol": "TCP", "port": 7070}]}
    ]
    assert "egress" not in policy["spec"], "the input is untouched"
    named = CONFIG.model_copy(update={"artifacts_endpoint": "https://s3.example.com"})
    assert add_store_egress(policy, sr, named) == policy, "a DNS name is the policy's to allow"
    assert add_store_egress(policy, steprun(command=["make"]), CONFIG) == policy


def test_helpers_keep_a_local_step_restricted_compliant() -> None:
    # In a namespace enforcing Pod Security "restricted", the API server refuses the whole Pod
    # if any container (ours included) is not compliant.
    sr = steprun(script="make dist", artifacts={**OUTPUTS, **INPUTS})
    resolved = [ResolvedInput("dist", "runs/ci/build-41/1/dist.tgz", SHA, "/in")]
    pod = add_artifacts(render_pod(sr, 1, CONFIG, restricted=True), sr, 1, CONFIG, resolved)
    assert {INIT_CONTAINER, UPLOAD_CONTAINER} <= set(containers(pod))
    assert restricted_violations(pod) == []
    # Outside such namespaces the helpers still give up what they never need.
    plain = add_artifacts(render_pod(sr, 1, CONFIG), sr, 1, CONFIG, resolved)
    for name in (INIT_CONTAINER, UPLOAD_CONTAINER):
        context = containers(plain)[name]["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}


TEAM_A = OperatorConfig(
    artifacts_endpoint="http://10.1.2.3:7070",
    artifacts_bucket="steprun",
    artifacts_key_prefix="runs",
    artifacts_secret="steprun-system/store",
    artifacts_namespaces=[
        {"namespaces": ["team-a-*"], "bucket": "team-a", "secret": "steprun-system/team-a"},
        {"namespaces": ["team-b"], "endpoint": "http://10.9.9.9:9000", "keyPrefix": ""},
    ],
)


@pytest.mark.parametrize(
    ("namespace", "endpoint", "bucket", "prefix", "secret"),
    [
        ("team-a-ci", "http://10.1.2.3:7070", "team-a", "runs/", "steprun-system/team-a"),
        ("team-b", "http://10.9.9.9:9000", "steprun", "", "steprun-system/store"),
        ("team-bb", "http://10.1.2.3:7070", "steprun", "runs/", "steprun-system/store"),
    ],
)
def test_a_namespace_may_have_its_own_repository(
    namespace: str, endpoint: str, bucket: str, prefix: str, secret: str
) -> None:
    repository = TEAM_A.artifact_repository(namespace)
    assert (repository.endpoint, repository.bucket, repository.prefix, repository.secret) == (
        endpoint,
        bucket,
        prefix,
        secret,
    )


def test_a_namespaces_repository_reaches_its_helpers() -> None:
    body = steprun(script="make dist", artifacts=OUTPUTS).model_dump(by_alias=True)
    body["metadata"]["namespace"] = "team-a-ci"
    sr = StepRun.model_validate(body)
    pod = add_artifacts(render_pod(sr, 1, TEAM_A), sr, 1, TEAM_A, [])
    outputs = json.loads(containers(pod)[UPLOAD_CONTAINER]["command"][-1])
    assert outputs == {"dist": "runs/team-a-ci/build-42/uid-1/1/dist.tgz"}


def test_namespace_repositories_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "STEPRUN_ARTIFACTS_NAMESPACES", '[{"namespaces": ["ml-*"], "bucket": "models"}]'
    )
    assert OperatorConfig().artifact_repository("ml-train").bucket == "models"
    monkeypatch.setenv("STEPRUN_ARTIFACTS_NAMESPACES", '[{"bucket": "models"}]')
    with pytest.raises(ValueError, match="namespaces"):
        OperatorConfig()


def test_the_attempts_objects_are_its_inputs_to_read_and_its_outputs_to_write() -> None:
    sr = steprun(command=["make"], artifacts={**OUTPUTS, **INPUTS})
    inputs = [ResolvedInput("dist", "runs/ci/build-41/u0/1/dist.tgz", SHA, "/in")]
    objects = attempt_objects(sr, 3, CONFIG, inputs)
    assert objects.reads == {"dist": "runs/ci/build-41/u0/1/dist.tgz"}
    assert objects.writes == {"dist": "runs/ci/build-42/uid-1/3/dist.tgz"}


def test_the_urls_secret_is_the_attempts_own_and_owned_by_the_steprun() -> None:
    sr = steprun(command=["make"], artifacts=OUTPUTS)
    body = render_urls_secret(sr, 2, {}, {"dist": "http://s/b/k?X-Amz-Signature=x"})
    assert body["metadata"]["name"] == "build-42-artifacts-2"
    assert body["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert body["metadata"]["labels"]["steprun.dev/attempt"] == "2"
    assert body["immutable"] is True
    urls = json.loads(base64.b64decode(body["data"][URLS_KEY]))
    assert urls == {"inputs": {}, "outputs": {"dist": "http://s/b/k?X-Amz-Signature=x"}}


@pytest.mark.parametrize(
    ("timeout", "startup", "grace", "lifetime"),
    [
        (600, 120, 30, 120 + 600 + 30 + 300),
        (3600, None, 30, CONFIG.default_startup_timeout_seconds + 3600 + 30 + 300),
        (7 * 24 * 3600, 120, 30, 7 * 24 * 3600),
    ],
    ids=["bounded-by-the-pod", "default-startup", "a-week-at-most"],
)
def test_urls_live_as_long_as_the_attempts_pod_may(
    timeout: int, startup: int | None, grace: int, lifetime: int
) -> None:
    spec: dict[str, Any] = {"timeoutSeconds": timeout, "terminationGracePeriodSeconds": grace}
    if startup is not None:
        spec["startupTimeoutSeconds"] = startup
    sr = steprun(command=["make"], artifacts=OUTPUTS, **spec)
    pod = render_pod(sr, 1, CONFIG)
    assert url_lifetime_seconds(sr, pod, CONFIG) == lifetime


def test_scratch_volumes_are_bounded_and_the_unpack_limits_reach_the_helper() -> None:
    config = CONFIG.model_copy(
        update={"artifacts_max_unpacked_bytes": 5000, "artifacts_max_entries": 7}
    )
    sr = steprun(command=["make"], artifacts={**OUTPUTS, **INPUTS})
    inputs = [ResolvedInput("dist", "runs/ci/build-41/1/dist.tgz", SHA, "/in")]
    pod = add_artifacts(render_pod(sr, 1, config), sr, 1, config, inputs)
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["steprun-artifacts"]["emptyDir"]["sizeLimit"] == str(5000 + (64 << 20))
    assert volumes["steprun-outputs"]["emptyDir"]["sizeLimit"] == str(1000 + (1 << 20))
    init = containers(pod)[INIT_CONTAINER]["command"]
    assert init[init.index("--max-unpacked-bytes") + 1] == "5000"
    assert init[init.index("--max-entries") + 1] == "7"


def test_no_artifact_may_exceed_what_one_presigned_put_writes() -> None:
    with pytest.raises(ValueError, match="artifacts_max_bytes"):
        OperatorConfig(artifacts_max_bytes=(5 << 30) + 1)
