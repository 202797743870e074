from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from steprun.api.models import Permission, ResourceRequirements, StepRun
from steprun.config import DEFAULT_EMPTY_DIR_SIZE_LIMIT, OperatorConfig
from steprun.policy.decision import SandboxDecision
from steprun.render.names import LABEL_MANAGED_BY, LABEL_NAME, LABEL_POLICY, LABEL_SANDBOX
from steprun.render.pod import render_pod
from steprun.render.sandbox import SANDBOX_UID, harden_pod, restricted_violations

MANIFEST = Path(__file__).resolve().parents[2] / "manifests" / "admission"
OPERATOR_SA = "system:serviceaccount:steprun-system:steprun-operator"

Pod = dict[str, Any]


def decision(
    *grants: Permission,
    resources: ResourceRequirements | None = None,
    runtime_class_name: str | None = None,
    pod_labels: dict[str, str] | None = None,
    timeout_seconds: int = 600,
    **bounds: Any,
) -> SandboxDecision:
    return SandboxDecision(
        policy="default",
        plugin="eslint",
        image="registry.example/eslint:9",
        command=["eslint"],
        granted=frozenset(grants),
        timeout_seconds=timeout_seconds,
        resources=resources,
        runtime_class_name=runtime_class_name,
        pod_labels=pod_labels or {},
        **bounds,
    )


def plain_pod(**spec: Any) -> Pod:
    container: dict[str, Any] = {"name": "step", "image": "registry.example/eslint:9"}
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "build-42-lint-1",
            "namespace": "ci",
            "labels": {LABEL_NAME: "build-42-lint", LABEL_MANAGED_BY: "steprun"},
        },
        "spec": {"restartPolicy": "Never", "containers": [container], **spec},
    }


def container(pod: Pod, index: int = 0) -> dict[str, Any]:
    result: dict[str, Any] = pod["spec"]["containers"][index]
    return result


def mounts_by_path(c: dict[str, Any]) -> dict[str, str]:
    return {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}


def volumes_by_name(pod: Pod) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in pod["spec"].get("volumes", [])}


def rendered(**spec: Any) -> Pod:
    """A real plain Pod of a sandbox StepRun, as the operator renders it before hardening."""
    sr = StepRun.from_body(
        {
            "metadata": {"name": "build-42-lint", "namespace": "ci", "uid": "u1"},
            "spec": {"mode": "sandbox", "sandbox": {"plugin": "eslint"}, **spec},
        }
    )
    return render_pod(sr, 1, OperatorConfig(), decision(Permission.SECRETS_READ))


# Pods that start out loose in every way hardening can fix by overriding a setting.
LOOSE_INPUTS: dict[str, Callable[[], Pod]] = {
    "minimal": plain_pod,
    "rendered": rendered,
    "rendered-with-secrets-and-workdir": lambda: rendered(
        workingDir="/workspace",
        args=["src/"],
        context={
            "secrets": [
                {"name": "TOKEN", "secretKeyRef": {"name": "gh", "key": "t"}},
                {"name": "id_rsa", "secretKeyRef": {"name": "ssh", "key": "k"}, "as": "file"},
            ]
        },
        podTemplate={"labels": {"team": "x"}, "annotations": {"note": "kept"}},
    ),
    "root-and-privileged": lambda: plain_pod(
        securityContext={
            "runAsUser": 0,
            "runAsNonRoot": False,
            "seccompProfile": {"type": "Unconfined"},
            "sysctls": [{"name": "kernel.msgmax", "value": "1"}],
            "seLinuxOptions": {"type": "spc_t", "user": "root"},
            "appArmorProfile": {"type": "Unconfined"},
            "windowsOptions": {"hostProcess": True},
        },
        container={
            "securityContext": {
                "privileged": True,
                "allowPrivilegeEscalation": True,
                "runAsUser": 0,
                "capabilities": {"add": ["SYS_ADMIN", "NET_RAW"]},
                "procMount": "Unmasked",
                "seccompProfile": {"type": "Unconfined"},
            }
        },
    ),
    "host-namespaces-and-service-account": lambda: plain_pod(
        hostNetwork=True,
        hostPID=True,
        hostIPC=True,
        serviceAccountName="builder",
        serviceAccount="builder",
        automountServiceAccountToken=True,
    ),
    "init-containers": lambda: plain_pod(
        initContainers=[
            {"name": "fetch", "image": "x", "securityContext": {"privileged": True}},
            {"name": "prep", "image": "x", "workingDir": "/src"},
        ]
    ),
    "apparmor-annotation": lambda: {
        **plain_pod(),
        "metadata": {
            "name": "p",
            "annotations": {"container.apparmor.security.beta.kubernetes.io/step": "unconfined"},
        },
    },
    "no-metadata-or-labels": lambda: {"spec": {"containers": [{"name": "s", "image": "x"}]}},
}
DECISIONS = {
    "read-only": decision(),
    "writable": decision(Permission.FILESYSTEM_WRITABLE),
    "everything": decision(
        Permission.FILESYSTEM_WRITABLE,
        Permission.NETWORK_EGRESS,
        Permission.SECRETS_READ,
        runtime_class_name="gvisor",
        pod_labels={"team": "platform"},
        resources=ResourceRequirements(limits={"cpu": "1"}),
    ),
}


@pytest.mark.parametrize("make_pod", LOOSE_INPUTS.values(), ids=LOOSE_INPUTS.keys())
@pytest.mark.parametrize("dec", DECISIONS.values(), ids=DECISIONS.keys())
def test_hardened_pods_pass_the_restricted_profile(
    make_pod: Callable[[], Pod], dec: SandboxDecision
) -> None:
    pod = make_pod()
    assert harden_pod(pod, dec) is not pod
    assert restricted_violations(harden_pod(pod, dec)) == []


@pytest.mark.parametrize("make_pod", LOOSE_INPUTS.values(), ids=LOOSE_INPUTS.keys())
def test_loose_inputs_do_violate_the_profile(make_pod: Callable[[], Pod]) -> None:
    # Guards the test above: the inputs must need the hardening.
    assert restricted_violations(make_pod()) != []


@pytest.mark.parametrize("make_pod", LOOSE_INPUTS.values(), ids=LOOSE_INPUTS.keys())
def test_input_is_not_mutated(make_pod: Callable[[], Pod]) -> None:
    pod = make_pod()
    before = copy.deepcopy(pod)
    harden_pod(pod, DECISIONS["everything"])
    harden_pod(pod, DECISIONS["read-only"])
    assert pod == before


def test_hardening_is_idempotent() -> None:
    once = harden_pod(rendered(workingDir="/workspace"), decision())
    assert harden_pod(once, decision()) == once


def test_security_contexts_are_replaced_wholesale() -> None:
    pod = harden_pod(LOOSE_INPUTS["root-and-privileged"](), decision())
    assert pod["spec"]["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": SANDBOX_UID,
        "runAsGroup": SANDBOX_UID,
        "fsGroup": SANDBOX_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container(pod)["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def test_init_containers_are_hardened_too() -> None:
    pod = harden_pod(LOOSE_INPUTS["init-containers"](), decision())
    for c in pod["spec"]["initContainers"]:
        assert c["securityContext"]["privileged"] is False
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert mounts_by_path(c)["/tmp"] == "steprun-tmp"
    assert mounts_by_path(pod["spec"]["initContainers"][1])["/src"].startswith("steprun-workdir")


def test_no_token_no_host_namespaces() -> None:
    pod = harden_pod(LOOSE_INPUTS["host-namespaces-and-service-account"](), decision())
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in spec
    assert "serviceAccount" not in spec
    assert (spec["hostNetwork"], spec["hostPID"], spec["hostIPC"]) == (False, False, False)


@pytest.mark.parametrize(
    ("dec", "expected"),
    [(decision(), True), (decision(Permission.FILESYSTEM_WRITABLE), False)],
)
def test_read_only_root_unless_writable_is_granted(dec: SandboxDecision, expected: bool) -> None:
    pod = harden_pod(plain_pod(), dec)
    assert container(pod)["securityContext"]["readOnlyRootFilesystem"] is expected


def test_read_only_root_gets_scratch_at_tmp_and_the_working_dir() -> None:
    pod = harden_pod(plain_pod(container={"workingDir": "/workspace/"}), decision())
    mounts = mounts_by_path(container(pod))
    assert set(mounts) == {"/tmp", "/workspace"}
    volumes = volumes_by_name(pod)
    # Bounded: an unbounded emptyDir fills the node's disk.
    scratch = {"sizeLimit": DEFAULT_EMPTY_DIR_SIZE_LIMIT}
    assert volumes[mounts["/tmp"]] == {"name": mounts["/tmp"], "emptyDir": scratch}
    assert volumes[mounts["/workspace"]] == {"name": mounts["/workspace"], "emptyDir": scratch}
    assert mounts["/tmp"] != mounts["/workspace"]


def test_writable_root_needs_no_scratch_volumes() -> None:
    pod = harden_pod(
        plain_pod(container={"workingDir": "/workspace"}), decision(Permission.FILESYSTEM_WRITABLE)
    )
    assert "volumeMounts" not in container(pod)
    assert "volumes" not in pod["spec"]


@pytest.mark.parametrize("workdir", [None, "/", "/tmp", "/tmp/"])
def test_working_dir_without_its_own_volume(workdir: str | None) -> None:
    extra = {"workingDir": workdir} if workdir else {}
    pod = harden_pod(plain_pod(container=extra), decision())
    assert list(mounts_by_path(container(pod))) == ["/tmp"]
    assert list(volumes_by_name(pod)) == ["steprun-tmp"]


def test_existing_mounts_are_not_shadowed() -> None:
    pod = plain_pod(
        container={
            "workingDir": "/work",
            "volumeMounts": [
                {"name": "scratch", "mountPath": "/tmp"},
                {"name": "ws", "mountPath": "/work"},
            ],
        },
        volumes=[{"name": "scratch", "emptyDir": {}}, {"name": "ws", "emptyDir": {}}],
    )
    hardened = harden_pod(pod, decision())
    assert mounts_by_path(container(hardened)) == {"/tmp": "scratch", "/work": "ws"}
    assert list(volumes_by_name(hardened)) == ["scratch", "ws"]


def test_scratch_volume_names_avoid_existing_volumes() -> None:
    pod = plain_pod(
        container={"workingDir": "/w"},
        volumes=[{"name": "steprun-tmp", "configMap": {"name": "c"}}],
    )
    hardened = harden_pod(pod, decision())
    mounts = mounts_by_path(container(hardened))
    assert mounts["/tmp"] == "steprun-tmp-2"
    assert volumes_by_name(hardened)["steprun-tmp"] == {
        "name": "steprun-tmp",
        "configMap": {"name": "c"},
    }
    assert len(volumes_by_name(hardened)) == 3


def test_containers_sharing_a_working_dir_share_its_volume() -> None:
    pod = plain_pod(
        container={"workingDir": "/w"},
        initContainers=[{"name": "prep", "image": "x", "workingDir": "/w"}],
    )
    hardened = harden_pod(pod, decision())
    init_mounts = mounts_by_path(hardened["spec"]["initContainers"][0])
    assert init_mounts == mounts_by_path(container(hardened))
    assert len(volumes_by_name(hardened)) == 2


def test_rendered_pod_keeps_context_mounts() -> None:
    plain = rendered(workingDir="/workspace")
    hardened = harden_pod(plain, decision())
    mounts = mounts_by_path(container(hardened))
    for path, name in mounts_by_path(container(plain)).items():
        assert mounts[path] == name
    assert {"/tmp", "/workspace"} <= set(mounts)


def test_labels() -> None:
    pod = plain_pod()
    pod["metadata"]["labels"].update({"team": "author", "app": "lint"})
    dec = decision(
        pod_labels={
            "team": "platform",
            "cost-center": "42",
            LABEL_SANDBOX: "false",
            LABEL_POLICY: "other",
            LABEL_NAME: "someone-else",
            LABEL_MANAGED_BY: "me",
        }
    )
    labels = harden_pod(pod, dec)["metadata"]["labels"]
    assert labels == {
        LABEL_NAME: "build-42-lint",
        LABEL_MANAGED_BY: "steprun",
        LABEL_SANDBOX: "true",
        LABEL_POLICY: "default",
        "team": "platform",  # the admin's policy label wins over the author's
        "cost-center": "42",
        "app": "lint",
    }


def test_security_annotations_are_dropped_others_kept() -> None:
    pod = plain_pod()
    pod["metadata"]["annotations"] = {
        "container.apparmor.security.beta.kubernetes.io/step": "unconfined",
        "seccomp.security.alpha.kubernetes.io/pod": "unconfined",
        "note": "kept",
    }
    assert harden_pod(pod, decision())["metadata"]["annotations"] == {"note": "kept"}
    pod["metadata"]["annotations"].pop("note")
    assert "annotations" not in harden_pod(pod, decision())["metadata"]


@pytest.mark.parametrize(
    ("runtime_class", "expected"), [("gvisor", "gvisor"), (None, None)], ids=["set", "unset"]
)
def test_runtime_class_comes_from_the_decision(
    runtime_class: str | None, expected: str | None
) -> None:
    pod = plain_pod(runtimeClassName="runc-privileged")
    hardened = harden_pod(pod, decision(runtime_class_name=runtime_class))
    assert hardened["spec"].get("runtimeClassName") == expected


def test_resources_come_from_the_decision_whatever_the_container_has() -> None:
    """Admission merged the step's resources with the policy's defaults and bounds; nothing
    in the plain Pod can skip them."""
    dec = decision(resources=ResourceRequirements(limits={"cpu": "1", "memory": "512Mi"}))
    for own in (None, {"requests": {"cpu": "100m"}}, {}):
        plain = plain_pod(container={"resources": own}) if own is not None else plain_pod()
        assert container(harden_pod(plain, dec))["resources"] == {
            "limits": {"cpu": "1", "memory": "512Mi"}
        }
    own = {"limits": {"cpu": "64"}}
    assert "resources" not in container(
        harden_pod(plain_pod(container={"resources": own}), decision())
    )


def test_every_empty_dir_gets_a_size_limit() -> None:
    pod = plain_pod(
        volumes=[{"name": "e", "emptyDir": {}}, {"name": "m", "emptyDir": {"medium": "Memory"}}]
    )
    hardened = harden_pod(pod, decision(empty_dir_size_limit="1Gi"))
    dirs = {v["name"]: v["emptyDir"] for v in hardened["spec"]["volumes"] if "emptyDir" in v}
    assert len(dirs) == 3  # e, m and the scratch /tmp
    assert all(d["sizeLimit"] == "1Gi" for d in dirs.values()), dirs
    assert dirs["m"] == {"medium": "Memory", "sizeLimit": "1Gi"}


@pytest.mark.parametrize(
    ("asked", "bound", "expected"),
    [
        pytest.param("100Gi", "256Mi", "256Mi", id="author-above-the-bound"),
        pytest.param("64Mi", "256Mi", "64Mi", id="author-below-the-bound"),
        pytest.param("256Mi", "256Mi", "256Mi", id="equal"),
        pytest.param("300M", "256Mi", "256Mi", id="decimal-above-binary"),
        pytest.param("268435455", "256Mi", "268435455", id="bytes-just-below"),
        pytest.param(10**12, "1Gi", "1Gi", id="integer-above"),
        pytest.param(1024, "1Gi", 1024, id="integer-below"),
        pytest.param("1e12", "1Gi", "1Gi", id="exponent-above"),
        pytest.param("not-a-quantity", "1Gi", "1Gi", id="unparsable-takes-the-bound"),
    ],
)  # fmt: skip
def test_an_empty_dir_size_is_the_smaller_of_the_authors_and_the_policys(
    asked: str | int, bound: str, expected: str | int
) -> None:
    pod = plain_pod(volumes=[{"name": "w", "emptyDir": {"sizeLimit": asked}}])
    hardened = harden_pod(pod, decision(empty_dir_size_limit=bound))
    (volume,) = (v for v in hardened["spec"]["volumes"] if v["name"] == "w")
    assert volume["emptyDir"] == {"sizeLimit": expected}


def test_a_sandbox_workspace_empty_dir_is_bounded_by_the_policy() -> None:
    sr = StepRun.from_body(
        {
            "metadata": {"name": "build-42-lint", "namespace": "ci", "uid": "u1"},
            "spec": {
                "mode": "sandbox",
                "sandbox": {"plugin": "eslint", "permissions": ["workspaces.mount"]},
                "workspaces": [
                    {"name": "big", "emptyDir": {"sizeLimit": "100Gi"}},
                    {"name": "open", "emptyDir": {}},
                ],
            },
        }
    )
    chosen = decision(Permission.WORKSPACES_MOUNT)
    pod = harden_pod(render_pod(sr, 1, OperatorConfig(), chosen), chosen)
    volumes = volumes_by_name(pod)
    assert volumes["ws-0"]["emptyDir"] == {"sizeLimit": DEFAULT_EMPTY_DIR_SIZE_LIMIT}
    assert volumes["ws-1"]["emptyDir"] == {"sizeLimit": DEFAULT_EMPTY_DIR_SIZE_LIMIT}


@pytest.mark.parametrize(
    ("asked", "cap", "expected"), [(30, 30, 30), (3600, 30, 30), (5, 30, 5), (3600, None, 3600)]
)
def test_policy_caps_the_grace_period(asked: int, cap: int | None, expected: int) -> None:
    pod = plain_pod(terminationGracePeriodSeconds=asked)
    hardened = harden_pod(pod, decision(termination_grace_period_seconds=cap))
    assert hardened["spec"]["terminationGracePeriodSeconds"] == expected


def test_scheduling_comes_from_the_policy_only() -> None:
    pod = plain_pod(
        nodeSelector={"node-role.kubernetes.io/control-plane": ""},
        tolerations=[{"operator": "Exists"}],
        nodeName="control-plane-1",
    )
    hardened = harden_pod(pod, decision())
    for key in ("nodeSelector", "tolerations", "nodeName", "affinity"):
        assert key not in hardened["spec"], key
    toleration = {"key": "sandbox", "operator": "Exists", "effect": "NoSchedule"}
    chosen = decision(node_selector={"pool": "sandbox"}, tolerations=[toleration])
    hardened = harden_pod(pod, chosen)
    assert hardened["spec"]["nodeSelector"] == {"pool": "sandbox"}
    assert hardened["spec"]["tolerations"] == [toleration]


@pytest.mark.parametrize(
    ("deadline", "expected"), [(None, 600), (60, 60), (600, 600), (86400, 600)]
)
def test_deadline_is_capped_by_the_decision(deadline: int | None, expected: int) -> None:
    pod = plain_pod(**({"activeDeadlineSeconds": deadline} if deadline else {}))
    assert harden_pod(pod, decision())["spec"]["activeDeadlineSeconds"] == expected


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            lambda p: p["spec"].update(volumes=[{"name": "h", "hostPath": {"path": "/"}}]),
            "volume 'h' of type hostPath",
        ),
        (
            lambda p: p["spec"].update(
                volumes=[{"name": "n", "nfs": {"server": "s", "path": "/"}}]
            ),
            "volume 'n' of type nfs",
        ),
        (
            lambda p: p["spec"].update(
                volumes=[
                    {
                        "name": "t",
                        "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]},
                    }
                ]
            ),
            "no service-account token",
        ),
        (
            lambda p: container(p).update(ports=[{"containerPort": 80, "hostPort": 8080}]),
            "hostPort 8080",
        ),
        (
            lambda p: container(p).update(
                livenessProbe={"httpGet": {"port": 80, "host": "169.254.169.254"}}
            ),
            "another host",
        ),
        (
            lambda p: container(p).update(
                lifecycle={"preStop": {"tcpSocket": {"port": 1, "host": "10.0.0.1"}}}
            ),
            "another host",
        ),
    ],
    ids=["hostPath", "nfs", "token", "hostPort", "probe-host", "hook-host"],
)
def test_unfixable_pods_are_refused(change: Callable[[Pod], object], match: str) -> None:
    pod = plain_pod()
    change(pod)
    with pytest.raises(ValueError, match=match):
        harden_pod(pod, decision())


def test_allowed_volume_types_and_local_probes_pass() -> None:
    pod = plain_pod(
        volumes=[
            {"name": "c", "configMap": {"name": "c"}},
            {"name": "s", "secret": {"secretName": "s"}},
            {"name": "p", "projected": {"sources": [{"secret": {"name": "s"}}]}},
            {"name": "d", "downwardAPI": {"items": []}},
            {"name": "e", "emptyDir": {}},
            {"name": "v", "persistentVolumeClaim": {"claimName": "v"}},
        ],
        container={
            "readinessProbe": {"httpGet": {"port": 80, "path": "/"}},
            "ports": [{"containerPort": 80}],
        },
    )
    assert restricted_violations(harden_pod(pod, decision())) == []


# ---------------------------------------------------------------- the independent checker


def restricted_pod() -> Pod:
    """A Pod written out by hand to pass the restricted profile, for the checker's own tests."""
    return {
        "metadata": {"name": "p"},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "c",
                    "image": "x",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def test_the_hand_written_pod_passes() -> None:
    assert restricted_violations(restricted_pod()) == []


def sc(p: Pod) -> dict[str, Any]:
    result: dict[str, Any] = p["spec"]["containers"][0]["securityContext"]
    return result


def psc(p: Pod) -> dict[str, Any]:
    result: dict[str, Any] = p["spec"]["securityContext"]
    return result


def init(p: Pod, **security: Any) -> None:
    base = copy.deepcopy(p["spec"]["containers"][0])
    base["name"] = "init"
    base["securityContext"].update(security)
    p["spec"]["initContainers"] = [base]


VIOLATIONS: dict[str, tuple[Callable[[Pod], object], str]] = {
    "hostNetwork": (lambda p: p["spec"].update(hostNetwork=True), "hostNetwork"),
    "hostPID": (lambda p: p["spec"].update(hostPID=True), "hostPID"),
    "hostIPC": (lambda p: p["spec"].update(hostIPC=True), "hostIPC"),
    "privileged": (lambda p: sc(p).update(privileged=True), "privileged"),
    "init-privileged": (lambda p: init(p, privileged=True), "initContainers[init]: privileged"),
    "escalation-unset": (
        lambda p: sc(p).pop("allowPrivilegeEscalation"),
        "allowPrivilegeEscalation",
    ),
    "escalation-true": (
        lambda p: sc(p).update(allowPrivilegeEscalation=True),
        "allowPrivilegeEscalation",
    ),
    "non-root-unset": (lambda p: psc(p).pop("runAsNonRoot"), "runAsNonRoot"),
    "non-root-false-container": (lambda p: sc(p).update(runAsNonRoot=False), "runAsNonRoot"),
    "non-root-false-pod": (lambda p: psc(p).update(runAsNonRoot=False), "runAsNonRoot"),
    "uid-0-pod": (lambda p: psc(p).update(runAsUser=0), "runAsUser"),
    "uid-0-container": (lambda p: sc(p).update(runAsUser=0), "runAsUser"),
    "seccomp-unset": (lambda p: psc(p).pop("seccompProfile"), "seccompProfile"),
    "seccomp-unconfined-pod": (
        lambda p: psc(p).update(seccompProfile={"type": "Unconfined"}),
        "seccompProfile",
    ),
    "seccomp-unconfined-container": (
        lambda p: sc(p).update(seccompProfile={"type": "Unconfined"}),
        "seccompProfile",
    ),
    "no-drop-all": (lambda p: sc(p).update(capabilities={"drop": ["NET_RAW"]}), "drop"),
    "no-capabilities": (lambda p: sc(p).pop("capabilities"), "drop"),
    "add-capability": (
        lambda p: sc(p).update(capabilities={"drop": ["ALL"], "add": ["SYS_ADMIN"]}),
        "SYS_ADMIN",
    ),
    "hostPath": (
        lambda p: p["spec"].update(volumes=[{"name": "h", "hostPath": {"path": "/"}}]),
        "hostPath",
    ),
    "nfs": (
        lambda p: p["spec"].update(volumes=[{"name": "n", "nfs": {"server": "s", "path": "/"}}]),
        "volume n",
    ),
    "hostPort": (lambda p: p["spec"]["containers"][0].update(ports=[{"hostPort": 80}]), "hostPort"),
    "sysctl": (
        lambda p: psc(p).update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
        "kernel.msgmax",
    ),
    "selinux-type": (lambda p: sc(p).update(seLinuxOptions={"type": "spc_t"}), "spc_t"),
    "selinux-user": (lambda p: psc(p).update(seLinuxOptions={"user": "u"}), "user"),
    "apparmor-field": (
        lambda p: sc(p).update(appArmorProfile={"type": "Unconfined"}),
        "appArmorProfile",
    ),
    "apparmor-annotation": (
        lambda p: p["metadata"].update(
            annotations={"container.apparmor.security.beta.kubernetes.io/c": "unconfined"}
        ),
        "AppArmor",
    ),
    "procMount": (lambda p: sc(p).update(procMount="Unmasked"), "procMount"),
    "hostProcess": (
        lambda p: psc(p).update(windowsOptions={"hostProcess": True}),
        "hostProcess",
    ),
    "probe-host": (
        lambda p: p["spec"]["containers"][0].update(
            startupProbe={"tcpSocket": {"port": 1, "host": "10.0.0.1"}}
        ),
        "10.0.0.1",
    ),
    "ephemeral-container": (
        lambda p: p["spec"].update(ephemeralContainers=[{"name": "debug", "image": "x"}]),
        "ephemeralContainers[debug]",
    ),
}


@pytest.mark.parametrize(("change", "expected"), VIOLATIONS.values(), ids=VIOLATIONS.keys())
def test_each_violation_is_reported(change: Callable[[Pod], object], expected: str) -> None:
    pod = restricted_pod()
    change(pod)
    found = restricted_violations(pod)
    assert found, "expected a violation"
    assert any(expected in v for v in found), found


ALLOWED: dict[str, Callable[[Pod], object]] = {
    "container-level-non-root": lambda p: (
        psc(p).pop("runAsNonRoot"),
        sc(p).update(runAsNonRoot=True),
    ),
    "container-level-seccomp": lambda p: (
        psc(p).pop("seccompProfile"),
        sc(p).update(seccompProfile={"type": "RuntimeDefault"}),
    ),
    "localhost-seccomp": lambda p: psc(p).update(
        seccompProfile={"type": "Localhost", "localhostProfile": "x.json"}
    ),
    "net-bind-service": lambda p: sc(p).update(
        capabilities={"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    ),
    "safe-sysctl": lambda p: psc(p).update(
        sysctls=[{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]
    ),
    "allowed-selinux-type": lambda p: sc(p).update(seLinuxOptions={"type": "container_t"}),
    "runtime-default-apparmor": lambda p: psc(p).update(appArmorProfile={"type": "RuntimeDefault"}),
    "non-zero-uid": lambda p: psc(p).update(runAsUser=1000),
    "read-only-root-not-required": lambda p: sc(p).update(readOnlyRootFilesystem=False),
    "allowed-volumes": lambda p: p["spec"].update(
        volumes=[
            {"name": "a", "configMap": {"name": "a"}},
            {"name": "b", "csi": {"driver": "d"}},
            {"name": "c", "ephemeral": {"volumeClaimTemplate": {}}},
            {"name": "d", "image": {"reference": "x"}},
        ]
    ),
    "windows-exemptions": lambda p: (
        p["spec"].update(os={"name": "windows"}),
        psc(p).pop("seccompProfile"),
        sc(p).pop("allowPrivilegeEscalation"),
    ),
}


@pytest.mark.parametrize("change", ALLOWED.values(), ids=ALLOWED.keys())
def test_what_the_profile_allows_is_not_reported(change: Callable[[Pod], object]) -> None:
    pod = restricted_pod()
    change(pod)
    assert restricted_violations(pod) == []


def test_a_plain_local_pod_violates_the_profile() -> None:
    found = restricted_violations(plain_pod(hostNetwork=True))
    assert any("hostNetwork" in v for v in found)
    assert any("allowPrivilegeEscalation" in v for v in found)
    assert any("runAsNonRoot" in v for v in found)
    assert any("seccompProfile" in v for v in found)
    assert any("drop must include ALL" in v for v in found)


# ---------------------------------------------------------------- the admission manifest


def admission_documents() -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((MANIFEST / "sandbox-pods.yaml").read_text()) if d]
    assert all(isinstance(d, dict) for d in docs)
    return docs


def test_admission_manifest_shape() -> None:
    policy, binding = admission_documents()
    assert policy["apiVersion"] == binding["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert policy["kind"] == "ValidatingAdmissionPolicy"
    assert binding["kind"] == "ValidatingAdmissionPolicyBinding"
    assert policy["metadata"]["name"] == binding["metadata"]["name"] == "steprun-sandbox-pods"
    assert binding["spec"] == {"policyName": "steprun-sandbox-pods", "validationActions": ["Deny"]}
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    (rule,) = spec["matchConstraints"]["resourceRules"]
    assert rule["operations"] == ["CREATE", "UPDATE"]
    assert set(rule["resources"]) == {"pods", "pods/ephemeralcontainers"}
    (condition,) = spec["matchConditions"]
    assert "'steprun.dev/sandbox' in object.metadata.labels" in condition["expression"]
    assert "oldObject.metadata.labels" in condition["expression"]


def test_allowed_creators_is_the_first_variable_and_names_the_operator() -> None:
    policy, _ = admission_documents()
    first = policy["spec"]["variables"][0]
    assert first["name"] == "allowedCreators"
    assert yaml.safe_load(first["expression"]) == [OPERATOR_SA]
    creator_check = policy["spec"]["validations"][0]
    assert creator_check["expression"] == "request.userInfo.username in variables.allowedCreators"


def test_every_validation_explains_itself() -> None:
    policy, _ = admission_documents()
    validations = policy["spec"]["validations"]
    expressions = " ".join(v["expression"] for v in validations)
    for field in (
        "privileged",
        "hostNetwork",
        "hostPID",
        "hostIPC",
        "hostPath",
        "hostPort",
        "allowPrivilegeEscalation",
        "runAsNonRoot",
        "runAsUser",
        "capabilities.drop",
        "seccompProfile",
        "automountServiceAccountToken",
        "serviceAccountToken",
        "ephemeralContainers",
    ):
        assert field in expressions, field
    for v in validations:
        assert v.get("message") or v.get("messageExpression")
        assert v["reason"] == "Forbidden"
    # Folded YAML keeps newlines before more-indented lines; a CEL string literal cannot span them.
    for v in validations:
        assert "\n" not in v.get("messageExpression", "")


def test_kustomization_lists_the_manifest() -> None:
    kustomization = yaml.safe_load((MANIFEST / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["resources"] == [
        "stepruns.yaml",
        "pod-origin.yaml",
        "claim-origin.yaml",
        "sandbox-pods.yaml",
    ]
