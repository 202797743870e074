"""`steprun render`: the operator's objects for a StepRun, printed without a cluster."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from steprun.api.models import StepRun
from steprun.cli.main import main
from steprun.cli.rendering import (
    PLACEHOLDER_UID,
    REDACTED,
    RenderRefused,
    load_steprun,
    redact_secret,
    render_step,
)
from steprun.config import OperatorConfig
from steprun.policy.admission import admit
from steprun.render.names import claim_name

REPO = Path(__file__).resolve().parents[2]

LOCAL = """
apiVersion: steprun.dev/v1alpha1
kind: StepRun
metadata: {name: build-42-lint, namespace: ci}
spec:
  image: busybox:1.36
  script: echo hi
  context:
    workflow: {name: build, runId: "42", stepId: lint}
    secrets:
      - {name: TOKEN, secretKeyRef: {name: gh, key: token}}
      - {name: id_rsa, secretKeyRef: {name: ssh, key: key}, as: file}
"""

POLICY = """
apiVersion: steprun.dev/v1alpha1
kind: SandboxPolicy
metadata: {name: default}
spec:
  grants: [secrets.read]
  plugins:
    - {name: echo, image: steprun.local/step:1, command: [/bin/sh, -c]}
  maxTimeoutSeconds: 600
"""

SANDBOX = """
apiVersion: steprun.dev/v1alpha1
kind: StepRun
metadata: {name: sb, namespace: web, uid: "1234"}
spec:
  mode: sandbox
  sandbox: {policy: default, plugin: echo}
  args: [echo sandboxed]
"""


def cli(*argv: str, files: dict[str, str], tmp_path: Path) -> tuple[int, str, str]:
    paths = {}
    for name, text in files.items():
        paths[name] = tmp_path / name
        paths[name].write_text(text)
    resolved = [str(paths[a]) if a in paths else a for a in argv]
    out, err = io.StringIO(), io.StringIO()
    code = main(["render", *resolved], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def test_render_prints_secret_configmap_and_pod_as_yaml(tmp_path: Path) -> None:
    code, out, err = cli("-f", "sr.yaml", files={"sr.yaml": LOCAL}, tmp_path=tmp_path)
    assert code == 0, err
    docs = documents(out)
    assert [d["kind"] for d in docs] == ["Secret", "ConfigMap", "Pod"]
    secret, _, pod = docs
    assert secret["data"] == {"TOKEN": REDACTED, "id_rsa": REDACTED}
    assert pod["metadata"]["name"] == "build-42-lint-1"
    assert pod["metadata"]["ownerReferences"][0]["uid"] == PLACEHOLDER_UID
    assert f"# uid {PLACEHOLDER_UID} is a placeholder" in out
    assert "<redacted>" in out.split("---", 1)[0]  # the header says so
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["STEPRUN_ATTEMPT"]["value"] == "1"


def test_render_matches_the_pure_renderers_and_honours_the_attempt(tmp_path: Path) -> None:
    code, out, _ = cli(
        "-f",
        "sr.yaml",
        "--attempt",
        "3",
        "-n",
        "other",
        files={"sr.yaml": LOCAL},
        tmp_path=tmp_path,
    )
    assert code == 0
    pod = documents(out)[-1]
    steprun, _ = load_steprun(LOCAL, "other")
    expected = render_step(steprun, 3, OperatorConfig()).objects[-1]
    assert pod == expected
    assert pod["metadata"]["namespace"] == "other" and pod["metadata"]["name"] == "build-42-lint-3"


def test_secret_values_never_appear(tmp_path: Path) -> None:
    assert redact_secret({"kind": "Secret", "data": {"a": "c2VjcmV0"}, "stringData": {"b": "x"}})[
        "data"
    ] == {"a": REDACTED}
    code, out, _ = cli("-f", "sr.yaml", files={"sr.yaml": LOCAL}, tmp_path=tmp_path)
    assert code == 0
    secret = documents(out)[0]
    assert set(secret["data"].values()) == {REDACTED}


def test_a_sandbox_step_is_admitted_against_the_policy(tmp_path: Path) -> None:
    code, out, err = cli(
        "-f",
        "sb.yaml",
        "--policy",
        "p.yaml",
        files={"sb.yaml": SANDBOX, "p.yaml": POLICY},
        tmp_path=tmp_path,
    )
    assert code == 0, err
    docs = documents(out)
    assert [d["kind"] for d in docs] == ["ConfigMap", "NetworkPolicy", "Pod"]
    pod = docs[-1]
    assert pod["metadata"]["labels"]["steprun.dev/sandbox"] == "true"
    assert pod["spec"]["containers"][0]["image"] == "steprun.local/step:1"
    assert pod["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] is True
    assert "admitted by" in out.lower()


def test_a_frozen_decision_is_used_without_a_policy(tmp_path: Path) -> None:
    steprun, _ = load_steprun(SANDBOX, None)
    from steprun.api.models import SandboxPolicy

    policy = SandboxPolicy.model_validate(yaml.safe_load(POLICY))
    decision = admit(steprun, policy, {}, OperatorConfig()).decision
    assert decision is not None
    frozen = yaml.safe_load(SANDBOX)
    frozen["status"] = {"admitted": decision.to_admitted().to_api()}
    code, out, err = cli(
        "-f", "sb.yaml", files={"sb.yaml": yaml.safe_dump(frozen)}, tmp_path=tmp_path
    )
    assert code == 0, err
    assert "status.admitted" in out


@pytest.mark.parametrize(
    ("argv", "files", "message"),
    [
        (("-f", "sb.yaml"), {"sb.yaml": SANDBOX}, "--policy FILE"),
        (
            ("-f", "sb.yaml", "--policy", "p.yaml"),
            {"sb.yaml": SANDBOX.replace("plugin: echo", "plugin: other"), "p.yaml": POLICY},
            "would be Rejected (PermissionDenied)",
        ),
        (
            ("-f", "sb.yaml", "--policy", "p.yaml"),
            {"sb.yaml": SANDBOX, "p.yaml": POLICY.replace("name: default", "name: strict")},
            'holds "strict"',
        ),
        (
            ("-f", "sb.yaml", "--policy", "p.yaml", "--namespace-label", "team=web"),
            {
                "sb.yaml": SANDBOX,
                "p.yaml": POLICY.replace(
                    "grants:", "namespaceSelector: {matchLabels: {team: ops}}\n  grants:"
                ),
            },
            "Rejected",
        ),
        (("-f", "sr.yaml", "--attempt", "0"), {"sr.yaml": LOCAL}, "numbered from 1"),
        (("-f", "sr.yaml"), {"sr.yaml": "kind: Pod\nspec: {}\n"}, "holds no StepRun"),
        (("-f", "sr.yaml"), {"sr.yaml": LOCAL + "---\n" + LOCAL}, "holds 2 StepRun"),
        (("-f", "sr.yaml"), {"sr.yaml": "spec: {image: x}\n"}, "neither metadata.name"),
        (("-f", "missing.yaml"), {}, "cannot read"),
    ],
)
def test_refusals_exit_2_with_the_reason(
    tmp_path: Path, argv: tuple[str, ...], files: dict[str, str], message: str
) -> None:
    code, out, err = cli(*argv, files=files, tmp_path=tmp_path)
    assert code == 2 and out == ""
    assert message in err


TOOL_POLICY = """
apiVersion: steprun.dev/v1alpha1
kind: SandboxPolicy
metadata: {name: default}
spec:
  grants: [filesystem.writable]
  plugins:
    - name: tool
      image: steprun.local/step:1
      command: [tool]
      version: 2.3.0
      handlers: [{id: fix, args: [--fix], permissions: [filesystem.writable]}]
      commands: [{id: lint, command: [tool, lint]}]
"""


def uses_step(uses: str, inputs: str = "{}") -> str:
    return SANDBOX.replace("plugin: echo", f"uses: {uses!r}").replace(
        "args: [echo sandboxed]", f"args: [src/]\n  context: {{inputs: {inputs}}}"
    )


@pytest.mark.parametrize(
    ("uses", "command", "args", "writable"),
    [
        ("command:lint", ["tool", "lint"], ["--ext=js", "--fix", "src/"], False),
        ("plugin:tool/fix", ["tool"], ["--fix", "src/"], True),
    ],
)
def test_render_resolves_uses_against_the_policy(
    tmp_path: Path, uses: str, command: list[str], args: list[str], writable: bool
) -> None:
    step = uses_step(uses, inputs="{fix: true, ext: [js]}")
    code, out, err = cli(
        "-f", "sb.yaml", "--policy", "p.yaml",
        files={"sb.yaml": step, "p.yaml": TOOL_POLICY}, tmp_path=tmp_path,
    )  # fmt: skip
    assert code == 0, err
    container = documents(out)[-1]["spec"]["containers"][0]
    assert (container["command"], container["args"]) == (command, args)
    assert container["securityContext"]["readOnlyRootFilesystem"] is not writable
    assert "plugin tool, " in out


def test_render_refuses_an_unknown_handler_naming_the_declared_ones(tmp_path: Path) -> None:
    code, out, err = cli(
        "-f", "sb.yaml", "--policy", "p.yaml",
        files={"sb.yaml": uses_step("plugin:tool/format"), "p.yaml": TOOL_POLICY},
        tmp_path=tmp_path,
    )  # fmt: skip
    assert code == 2 and out == ""
    assert "Workflow handler not found: format in plugin tool (handlers of tool: fix)" in err


def test_generate_name_is_noted(tmp_path: Path) -> None:
    steprun, notes = load_steprun(LOCAL.replace("name: build-42-lint", "generateName: b-"), None)
    assert steprun.name == "b-xxxxx" and steprun.namespace == "ci"
    assert any("generateName" in note for note in notes)


def test_a_uid_in_the_file_is_kept() -> None:
    steprun, notes = load_steprun(SANDBOX, None)
    assert steprun.uid == "1234" and not any(PLACEHOLDER_UID in n for n in notes)


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("*.yaml")), ids=str)
def test_every_local_example_renders(example: Path) -> None:
    for document in yaml.safe_load_all(example.read_text()):
        if not document or document.get("kind") != "StepRun":
            continue
        steprun, _ = load_steprun(yaml.safe_dump(document), "examples")
        assert isinstance(steprun, StepRun)
        rendered = render_step(steprun, 1, OperatorConfig())
        assert rendered.objects[-1]["kind"] == "Pod"


def test_refused_rendering_raises() -> None:
    steprun, _ = load_steprun(LOCAL, None)
    with pytest.raises(RenderRefused):
        render_step(steprun, 0, OperatorConfig())


def test_other_objects_of_the_file_are_noted_not_rendered(tmp_path: Path) -> None:
    code, out, err = cli(
        "-f",
        "ex.yaml",
        files={"ex.yaml": (REPO / "examples" / "secrets-and-inputs.yaml").read_text()},
        tmp_path=tmp_path,
    )
    assert code == 0, err
    assert "# Secret example-credentials in the file is not rendered" in out
    assert "example-token-value" not in out
    assert [d["kind"] for d in documents(out)] == ["Secret", "ConfigMap", "Pod"]


@pytest.mark.parametrize(
    "example", sorted((REPO / "examples" / "workspaces-pipeline").glob("*.yaml")), ids=str
)
def test_pipeline_steps_render_the_runs_claim_first(tmp_path: Path, example: Path) -> None:
    code, out, err = cli("-f", "sr.yaml", files={"sr.yaml": example.read_text()}, tmp_path=tmp_path)
    assert code == 0, err
    claim, configmap, pod = documents(out)
    assert (claim["kind"], configmap["kind"], pod["kind"]) == (
        "PersistentVolumeClaim",
        "ConfigMap",
        "Pod",
    )
    name = claim_name("pipeline", "1", "src")
    assert claim["metadata"]["name"] == name
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["ws-0"]["persistentVolumeClaim"] == {"claimName": name}
    assert f"# PersistentVolumeClaim {name} is created only by the first step" in out
