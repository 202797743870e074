from __future__ import annotations

import json
from typing import Any

import pytest

from steprun.api.models import Permission, ResourceRequirements, StepRun
from steprun.config import OperatorConfig
from steprun.policy.decision import SandboxDecision
from steprun.render.pod import RenderError, prefer_other_node, render_pod

CONFIG = OperatorConfig(
    default_timeout_seconds=3600,
    default_env={"TZ": "UTC"},
    context_mount_path="/var/run/steprun/context",
    secrets_mount_path="/var/run/steprun/secrets",
    output_file="/dev/termination-log",
)
CONTEXT = "build-42-lint-context"
SECRETS = [
    {"name": "TOKEN", "secretKeyRef": {"name": "gh", "key": "token"}},
    {"name": "id_rsa", "secretKeyRef": {"name": "ssh", "key": "key"}, "as": "file"},
    {"name": "known_hosts", "secretKeyRef": {"name": "ssh", "key": "hosts"}, "as": "file"},
]


def steprun(**spec: Any) -> StepRun:
    spec.setdefault("image", "busybox:1.36")
    return StepRun.from_body(
        {
            "apiVersion": "steprun.dev/v1alpha1",
            "kind": "StepRun",
            "metadata": {"name": "build-42-lint", "namespace": "ci", "uid": "uid-1"},
            "spec": spec,
        }
    )


def sandbox_steprun(**spec: Any) -> StepRun:
    body: dict[str, Any] = {"mode": "sandbox", "sandbox": {"plugin": "eslint"}, **spec}
    body.setdefault("image", None)
    return steprun(**body)


def decision(
    *,
    grants: tuple[Permission, ...] = (),
    command: list[str] | None = None,
    resources: dict[str, Any] | None = None,
    timeout_seconds: int = 900,
    env: dict[str, str] | None = None,
) -> SandboxDecision:
    return SandboxDecision(
        policy="default",
        plugin="eslint",
        image="registry.example/plugins/eslint:9",
        command=command if command is not None else ["eslint"],
        granted=frozenset(grants),
        timeout_seconds=timeout_seconds,
        resources=ResourceRequirements.model_validate(resources) if resources else None,
        env=env or {},
    )


def container(pod: dict[str, Any]) -> dict[str, Any]:
    containers = pod["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def env_by_name(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container(pod)["env"]}


def cm_ref(key: str) -> dict[str, Any]:
    return {"name": key, "valueFrom": {"configMapKeyRef": {"name": CONTEXT, "key": key}}}


def secret_ref(key: str) -> dict[str, Any]:
    return {"name": key, "valueFrom": {"secretKeyRef": {"name": CONTEXT, "key": key}}}


def test_local_pod() -> None:
    sr = steprun(
        command=["make"],
        args=["lint"],
        workingDir="/workspace",
        env={"LOG_LEVEL": "debug"},
        resources={"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}},
        serviceAccountName="builder",
        terminationGracePeriodSeconds=15,
        timeoutSeconds=600,
    )
    assert render_pod(sr, 1, CONFIG) == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "build-42-lint-1",
            "namespace": "ci",
            "labels": {
                "app.kubernetes.io/managed-by": "steprun",
                "steprun.dev/name": "build-42-lint",
                "steprun.dev/uid": "uid-1",
                "steprun.dev/attempt": "1",
                "steprun.dev/component": "pod",
            },
            "ownerReferences": [
                {
                    "apiVersion": "steprun.dev/v1alpha1",
                    "kind": "StepRun",
                    "name": "build-42-lint",
                    "uid": "uid-1",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "finalizers": ["steprun.dev/step-tracking"],
        },
        "spec": {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": 600,
            "terminationGracePeriodSeconds": 15,
            "enableServiceLinks": False,
            "serviceAccountName": "builder",
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            # The step names its ServiceAccount: it gets that account's token.
            "automountServiceAccountToken": True,
            "containers": [
                {
                    "name": "step",
                    "image": "busybox:1.36",
                    "command": ["make"],
                    "args": ["lint"],
                    "workingDir": "/workspace",
                    "env": [
                        cm_ref("LOG_LEVEL"),
                        cm_ref("TZ"),
                        {"name": "STEPRUN_NAME", "value": "build-42-lint"},
                        {"name": "STEPRUN_NAMESPACE", "value": "ci"},
                        {"name": "STEPRUN_ATTEMPT", "value": "1"},
                        {
                            "name": "STEPRUN_CONTEXT_FILE",
                            "value": "/var/run/steprun/context/context.json",
                        },
                        {"name": "STEPRUN_SECRETS_DIR", "value": "/var/run/steprun/secrets"},
                        {"name": "STEPRUN_OUTPUT_FILE", "value": "/dev/termination-log"},
                    ],
                    "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}},
                    "volumeMounts": [
                        {
                            "name": "context",
                            "mountPath": "/var/run/steprun/context",
                            "readOnly": True,
                        }
                    ],
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "securityContext": {"allowPrivilegeEscalation": False},
                }
            ],
            "volumes": [
                {
                    "name": "context",
                    "configMap": {
                        "name": CONTEXT,
                        "items": [{"key": "context.json", "path": "context.json"}],
                    },
                }
            ],
        },
    }


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        # A script runs from the ConfigMap: no argv size limit, no $(VAR) expansion.
        ({"script": "make lint"}, {"command": ["/bin/sh", "/var/run/steprun/context/script.sh"]}),
        (
            {"command": ["/bin/sh", "-c"], "args": ["make lint"]},
            {
                "command": ["/bin/sh", "-c"],
                "args": ["make lint"],
            },
        ),
        ({"command": ["make"]}, {"command": ["make"]}),
        ({"args": ["--verbose"]}, {"args": ["--verbose"]}),  # image entrypoint kept
        ({"command": ["$(TOOL)"]}, {"command": ["$(TOOL)"]}),  # container semantics kept
        ({}, {}),
    ],
)
def test_entrypoint(spec: dict[str, Any], expected: dict[str, list[str]]) -> None:
    c = container(render_pod(steprun(**spec), 1, CONFIG))
    assert {k: c[k] for k in ("command", "args") if k in c} == expected


@pytest.mark.parametrize(
    ("sr", "chosen", "match"),
    [
        (steprun(script="x", command=["sh"]), None, "exclusive"),
        (steprun(script="x", args=["a"]), None, "exclusive"),
        (steprun(image=None), None, "spec.image is required"),
        (sandbox_steprun(), None, "SandboxDecision"),
        (sandbox_steprun(script="rm -rf /"), decision(), "plugin's command"),
        (sandbox_steprun(command=["sh"]), decision(), "plugin's command"),
    ],
)
def test_unrenderable_specs(sr: StepRun, chosen: SandboxDecision | None, match: str) -> None:
    with pytest.raises(RenderError, match=match):
        render_pod(sr, 1, CONFIG, chosen)


def test_attempt_sets_name_label_and_env() -> None:
    pod = render_pod(steprun(), 3, CONFIG)
    assert pod["metadata"]["name"] == "build-42-lint-3"
    assert pod["metadata"]["labels"]["steprun.dev/attempt"] == "3"
    assert env_by_name(pod)["STEPRUN_ATTEMPT"] == {"name": "STEPRUN_ATTEMPT", "value": "3"}


def test_pod_template_labels_cannot_override_reserved_keys() -> None:
    sr = steprun(
        context={"workflow": {"name": "build"}},
        podTemplate={
            "labels": {
                "team": "platform",
                "steprun.dev/name": "someone-else",
                "steprun.dev/workflow": "spoofed",
                "steprun.dev/sandbox": "true",
                "app.kubernetes.io/managed-by": "helm",
            },
            "annotations": {"example.com/owner": "ci", "steprun.dev/anything": "x"},
        },
    )
    # Even when an admin lets every key through.
    open_config = CONFIG.model_copy(update={"pod_label_keys": ["*"], "pod_annotation_keys": ["*"]})
    meta = render_pod(sr, 1, open_config)["metadata"]
    assert meta["labels"] == {
        "team": "platform",
        "app.kubernetes.io/managed-by": "steprun",
        "steprun.dev/name": "build-42-lint",
        "steprun.dev/uid": "uid-1",
        "steprun.dev/workflow": "build",
        "steprun.dev/attempt": "1",
        "steprun.dev/component": "pod",
    }
    assert meta["annotations"] == {"example.com/owner": "ci"}


def test_scheduling_fields_from_pod_template() -> None:
    tolerations = [{"key": "ci", "operator": "Exists", "effect": "NoSchedule"}]
    sr = steprun(podTemplate={"nodeSelector": {"pool": "ci"}, "tolerations": tolerations})
    allowing = CONFIG.model_copy(update={"node_selector_keys": ["pool"], "toleration_keys": ["ci"]})
    spec = render_pod(sr, 1, allowing)["spec"]
    assert spec["nodeSelector"] == {"pool": "ci"}
    assert spec["tolerations"] == tolerations


@pytest.mark.parametrize(
    ("sr", "chosen", "expected"),
    [
        (steprun(), None, 3600),
        (steprun(timeoutSeconds=60), None, 60),
        (sandbox_steprun(), decision(timeout_seconds=900), 900),
        (sandbox_steprun(timeoutSeconds=120), decision(timeout_seconds=900), 120),
    ],
)
def test_active_deadline(sr: StepRun, chosen: SandboxDecision | None, expected: int) -> None:
    assert render_pod(sr, 1, CONFIG, chosen)["spec"]["activeDeadlineSeconds"] == expected


@pytest.mark.parametrize(
    ("step_resources", "policy_resources", "expected"),
    [
        (None, None, None),
        (None, {"limits": {"cpu": "1"}}, {"limits": {"cpu": "1"}}),
        # Admission merged the step's resources into the decision: the decision is what runs.
        ({"limits": {"cpu": "500m"}}, {"limits": {"cpu": "500m"}}, {"limits": {"cpu": "500m"}}),
        ({}, {"limits": {"cpu": "1"}}, {"limits": {"cpu": "1"}}),
    ],
)
def test_sandbox_resources(
    step_resources: dict[str, Any] | None,
    policy_resources: dict[str, Any] | None,
    expected: dict[str, Any] | None,
) -> None:
    sr = sandbox_steprun(resources=step_resources)
    c = container(render_pod(sr, 1, CONFIG, decision(resources=policy_resources)))
    assert c.get("resources") == expected


def test_sandbox_runs_the_plugin() -> None:
    sr = sandbox_steprun(image="attacker/image:latest", args=["--fix", "src/"])
    pod = render_pod(sr, 1, CONFIG, decision())
    c = container(pod)
    assert c["image"] == "registry.example/plugins/eslint:9"
    assert c["command"] == ["eslint"]
    assert c["args"] == ["--fix", "src/"]


def test_sandbox_without_plugin_command_keeps_image_entrypoint() -> None:
    c = container(render_pod(sandbox_steprun(args=["x"]), 1, CONFIG, decision(command=[])))
    assert "command" not in c
    assert c["args"] == ["x"]


def test_sandbox_ignores_service_account() -> None:
    pod = render_pod(sandbox_steprun(serviceAccountName="builder"), 1, CONFIG, decision())
    assert "serviceAccountName" not in pod["spec"]


def test_env_layers_and_delivery() -> None:
    sr = steprun(
        env={"LOG_LEVEL": "debug", "TOKEN": "from-spec", "STEPRUN_NAME": "spoofed"},
        context={"env": {"CI": "true", "LOG_LEVEL": "info"}, "secrets": SECRETS},
    )
    env = container(render_pod(sr, 2, CONFIG))["env"]
    names = [e["name"] for e in env]
    assert len(names) == len(set(names))
    assert env[:4] == [cm_ref("CI"), cm_ref("LOG_LEVEL"), cm_ref("TZ"), secret_ref("TOKEN")]
    assert {"name": "STEPRUN_NAME", "value": "build-42-lint"} in env
    assert names[4:] == [
        "STEPRUN_NAME",
        "STEPRUN_NAMESPACE",
        "STEPRUN_ATTEMPT",
        "STEPRUN_CONTEXT_FILE",
        "STEPRUN_SECRETS_DIR",
        "STEPRUN_OUTPUT_FILE",
    ]


def test_policy_env_reaches_the_pod_through_the_configmap() -> None:
    pod = render_pod(sandbox_steprun(), 1, CONFIG, decision(env={"NODE_ENV": "ci"}))
    assert env_by_name(pod)["NODE_ENV"] == cm_ref("NODE_ENV")


def test_secret_volume_for_file_projections() -> None:
    pod = render_pod(steprun(context={"secrets": SECRETS}), 1, CONFIG)
    assert pod["spec"]["volumes"][1] == {
        "name": "secrets",
        "secret": {
            "secretName": CONTEXT,
            "items": [
                {"key": "id_rsa", "path": "id_rsa", "mode": 0o400},
                {"key": "known_hosts", "path": "known_hosts", "mode": 0o400},
            ],
        },
    }
    assert container(pod)["volumeMounts"][1] == {
        "name": "secrets",
        "mountPath": "/var/run/steprun/secrets",
        "readOnly": True,
    }


def test_no_secret_volume_without_file_projections() -> None:
    pod = render_pod(steprun(context={"secrets": SECRETS[:1]}), 1, CONFIG)
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["context"]
    assert env_by_name(pod)["TOKEN"] == secret_ref("TOKEN")


@pytest.mark.parametrize(
    ("grants", "delivered"),
    [
        ((), False),
        ((Permission.NETWORK_EGRESS, Permission.FILESYSTEM_WRITABLE), False),
        ((Permission.SECRETS_READ,), True),
    ],
)
def test_sandbox_secrets_only_with_secrets_read(
    grants: tuple[Permission, ...], delivered: bool
) -> None:
    sr = sandbox_steprun(context={"secrets": SECRETS})
    pod = render_pod(sr, 1, CONFIG, decision(grants=grants))
    text = json.dumps(pod)
    assert ("secretKeyRef" in text) is delivered
    assert ('"secret":' in text) is delivered
    assert any(m["name"] == "secrets" for m in container(pod)["volumeMounts"]) is delivered


def _has_none(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, dict):
        return any(_has_none(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_none(v) for v in value)
    return False


@pytest.mark.parametrize(
    ("sr", "chosen"),
    [
        (steprun(), None),
        (steprun(script="true", context={"secrets": SECRETS}), None),
        (sandbox_steprun(context={"secrets": SECRETS}), decision()),
        (sandbox_steprun(), decision(grants=(Permission.SECRETS_READ,), command=[])),
    ],
)
def test_output_is_deterministic_and_has_no_none(
    sr: StepRun, chosen: SandboxDecision | None
) -> None:
    first = render_pod(sr, 1, CONFIG, chosen)
    assert not _has_none(first)
    assert json.dumps(first) == json.dumps(render_pod(sr, 1, CONFIG, chosen))


def test_script_reaches_the_shell_byte_for_byte_through_the_configmap() -> None:
    from steprun.render.context import render_configmap

    script = 'echo "$HOME $(date) $$" # ' + "é" * 70_000
    sr = steprun(script=script)
    cm = render_configmap(sr, CONFIG)
    assert cm["data"]["script.sh"] == script
    pod = render_pod(sr, 1, CONFIG)
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == "context"]
    assert {"key": "script.sh", "path": "script.sh"} in volume["configMap"]["items"]
    assert script not in str(pod)


def test_steps_without_a_script_mount_no_script_file() -> None:
    pod = render_pod(steprun(command=["make"]), 1, CONFIG)
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == "context"]
    assert volume["configMap"]["items"] == [{"key": "context.json", "path": "context.json"}]


# ---------------------------------------------------------------- handlers, commands, shell


def uses_decision(**fields: Any) -> SandboxDecision:
    base = decision()
    return SandboxDecision(**{**base.__dict__, **fields})


def test_a_handler_runs_its_command_with_its_args_before_the_step_args() -> None:
    chosen = uses_decision(
        uses="plugin:eslint/fix", handler="fix", command=["eslint"], args=["--fix"]
    )
    sr = sandbox_steprun(args=["src/"], context={"inputs": {"ignored": True}})
    c = container(render_pod(sr, 1, CONFIG, chosen))
    assert c["command"] == ["eslint"]
    # A handler reads its inputs from context.json; only a CLI command gets them as flags.
    assert c["args"] == ["--fix", "src/"]


def test_a_cli_command_gets_its_inputs_as_flags_then_the_step_args() -> None:
    chosen = uses_decision(uses="command:lint", cli_command="lint", command=["eslint", "lint"])
    inputs = {"fix": True, "quiet": False, "ext": ["js", "ts"], "max": 3}
    sr = sandbox_steprun(args=["src/"], workingDir="/workspace", context={"inputs": inputs})
    c = container(render_pod(sr, 1, CONFIG, chosen))
    assert c["command"] == ["eslint", "lint"]
    assert c["args"] == ["--ext=js", "--ext=ts", "--fix", "--max=3", "src/"]
    assert c["workingDir"] == "/workspace"


def test_input_flags_and_step_args_are_escaped_from_the_kubelets_variable_expansion() -> None:
    chosen = uses_decision(uses="command:lint", cli_command="lint", args=["$(POLICY)"])
    inputs = {"argv": ["$(A)"], "flags": {"msg": "5$ $(HOME) $$"}}
    sr = sandbox_steprun(args=["$(SECRET)"], context={"inputs": inputs})
    c = container(render_pod(sr, 1, CONFIG, chosen))
    # Only the policy's own arguments (an admin's) keep the kubelet's $(VAR) expansion.
    assert c["args"] == ["$(POLICY)", "--msg=5$$ $$(HOME) $$$$", "$$(SECRET)", "--", "$$(A)"]


@pytest.mark.parametrize("uses", [None, "plugin:eslint/fix"])
def test_sandbox_step_args_reach_the_plugin_as_written(uses: str | None) -> None:
    chosen = uses_decision(uses=uses, handler="fix") if uses else decision(command=["eslint"])
    sr = sandbox_steprun(args=["$(HOME)", "$$(X)", "5$"])
    c = container(render_pod(sr, 1, CONFIG, chosen))
    assert c["args"][-3:] == ["$$(HOME)", "$$$$(X)", "5$$"]


def test_a_cli_command_with_unusable_inputs_is_an_invalid_spec() -> None:
    chosen = uses_decision(uses="command:lint", cli_command="lint")
    sr = sandbox_steprun(context={"inputs": {"not a flag": 1}})
    with pytest.raises(RenderError, match=r"command lint: context\.inputs key 'not a flag'"):
        render_pod(sr, 1, CONFIG, chosen)


def test_builtin_shell_runs_the_script_from_the_configmap_in_the_plugin_image() -> None:
    from steprun.render.context import render_configmap

    chosen = uses_decision(uses="builtin:shell", command=None)
    sr = sandbox_steprun(script="echo hi", sandbox={"uses": "builtin:shell"})
    c = container(render_pod(sr, 1, CONFIG, chosen))
    assert c["image"] == "registry.example/plugins/eslint:9"
    assert c["command"] == ["/bin/sh", f"{CONFIG.context_mount_path}/script.sh"]
    assert "args" not in c
    assert render_configmap(sr, CONFIG, chosen)["data"]["script.sh"] == "echo hi"
    # Any other sandbox step never gets a script file, even if one slipped past the schema.
    assert "script.sh" not in render_configmap(sr, CONFIG, decision())["data"]
    with pytest.raises(RenderError, match="runs its plugin's command"):
        render_pod(sr, 1, CONFIG, decision())
    with pytest.raises(RenderError, match=r"runs spec\.script: set it"):
        render_pod(sandbox_steprun(), 1, CONFIG, chosen)


def test_a_retry_prefers_another_node_without_weakening_what_was_required() -> None:
    required = {
        "nodeSelectorTerms": [
            {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["ci"]}]}
        ]
    }
    pod = {
        "spec": {
            "nodeSelector": {"pool": "ci"},
            "affinity": {
                "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}
            },
        }
    }

    spec = prefer_other_node(pod, "node-a")["spec"]

    assert spec["nodeSelector"] == {"pool": "ci"}
    assert spec["affinity"]["nodeAffinity"] == {
        "requiredDuringSchedulingIgnoredDuringExecution": required,
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {
                "weight": 100,
                "preference": {
                    "matchFields": [
                        {"key": "metadata.name", "operator": "NotIn", "values": ["node-a"]}
                    ]
                },
            }
        ],
    }
