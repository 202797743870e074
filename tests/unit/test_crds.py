"""The generated CRDs: in sync with the models, structural, and carrying every API rule."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from steprun.api import crdgen
from steprun.api.models import (
    MAX_ENV_VARS,
    MAX_SCRIPT,
    USES_PATTERN,
    Permission,
    Phase,
    SandboxPolicy,
    SandboxPolicySpec,
    StepRun,
    StepRunSpec,
    StepRunStatus,
)

REPO = Path(__file__).resolve().parents[2]
# The reasons the API server accepts on an x-kubernetes-validations rule.
API_SERVER_REASONS = (
    "FieldValueInvalid",
    "FieldValueForbidden",
    "FieldValueRequired",
    "FieldValueDuplicate",
)
CRD_DIR = REPO / "crds"
Schema = dict[str, Any]

# The StepRun and SandboxPolicy of docs/api.md. The StepRun example lists every field at once, so
# script (exclusive with command/args) and sandbox (mode sandbox only) are left out here.
API_STEPRUN = """
apiVersion: steprun.dev/v1alpha1
kind: StepRun
metadata: {name: build-42-lint, namespace: ci}
spec:
  mode: local
  image: busybox:1.36
  command: ["/bin/sh", "-c"]
  args: ["make lint"]
  workingDir: /workspace
  env: {LOG_LEVEL: debug}
  context:
    workflow: {name: build, runId: "42", stepId: lint}
    env: {CI: "true"}
    inputs: {branch: main}
    secrets:
      - {name: TOKEN, secretKeyRef: {name: gh, key: token}}
      - {name: id_rsa, secretKeyRef: {name: ssh, key: key}, as: file}
  timeoutSeconds: 600
  startupTimeoutSeconds: 300
  terminationGracePeriodSeconds: 30
  cancel: false
  retries: {limit: 0, backoffSeconds: 10}
  resources: {requests: {cpu: 100m}, limits: {memory: 256Mi}}
  serviceAccountName: builder
  ttlSecondsAfterFinished: 3600
  podTemplate: {nodeSelector: {}, tolerations: [], labels: {}, annotations: {}}
status:
  phase: Succeeded
  reason: Completed
  message: done
  exitCode: 0
  outputs: {digest: "sha256:abc"}
  podName: build-42-lint-1
  attempt: 1
  attempts:
    - {attempt: 1, podName: build-42-lint-1, exitCode: 0, reason: Completed,
       startTime: "2025-01-01T00:00:00Z", completionTime: "2025-01-01T00:00:12Z"}
  startTime: "2025-01-01T00:00:00Z"
  completionTime: "2025-01-01T00:00:12Z"
  duration: 12s
  observedGeneration: 1
  conditions:
    - {type: Succeeded, status: "True", reason: Completed, message: done,
       lastTransitionTime: "2025-01-01T00:00:12Z"}
"""

API_SANDBOX_STEP = """
mode: sandbox
args: ["--fix"]
sandbox: {policy: default, plugin: eslint, permissions: [network.egress]}
"""

API_POLICY = """
apiVersion: steprun.dev/v1alpha1
kind: SandboxPolicy
metadata: {name: default}
spec:
  namespaceSelector: {}
  grants: [secrets.read]
  plugins:
    - name: eslint
      image: registry.example/plugins/eslint:9
      command: ["eslint"]
      permissions: []
  maxTimeoutSeconds: 900
  defaultResources: {limits: {cpu: "1", memory: 512Mi}}
  maxResources: {cpu: "2", memory: 1Gi}
  runtimeClassName: gvisor
  egress: [{cidr: 10.0.0.0/8, ports: [443]}]
  podLabels: {team: platform}
"""


@pytest.fixture(scope="module")
def steprun_crd() -> Schema:
    return crdgen.steprun_crd()


@pytest.fixture(scope="module")
def policy_crd() -> Schema:
    return crdgen.sandboxpolicy_crd()


def root_schema(crd: Schema) -> Schema:
    schema: Schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def rules_at(crd: Schema, path: str) -> list[Schema]:
    rules: list[Schema] = crdgen.node_at(root_schema(crd), path).get("x-kubernetes-validations", [])
    return rules


def rule_texts(crd: Schema, path: str) -> set[str]:
    return {r["rule"] for r in rules_at(crd, path)}


# ---------------------------------------------------------------- files in sync


def test_checked_in_crds_match_the_generator() -> None:
    drift = crdgen.diff(CRD_DIR, crdgen.generate())
    assert drift == "", f"crds/ is stale; run python -m steprun.api.crdgen\n{drift}"


def test_generation_is_deterministic() -> None:
    assert crdgen.generate() == crdgen.generate()


def test_files_carry_the_generated_header_and_parse_as_crds() -> None:
    for name, text in crdgen.generate().items():
        assert text.startswith(crdgen.HEADER)
        doc = yaml.safe_load(text)
        assert doc["kind"] == "CustomResourceDefinition"
        assert doc["apiVersion"] == "apiextensions.k8s.io/v1"
        assert name == f"{doc['metadata']['name']}.yaml"


def test_main_writes_and_check_passes(tmp_path: Path) -> None:
    assert crdgen.main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "sandboxpolicies.steprun.dev.yaml",
        "stepruns.steprun.dev.yaml",
    ]
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 0


def test_check_fails_with_a_diff_on_drift(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crdgen.main(["--out", str(tmp_path)])
    target = tmp_path / "stepruns.steprun.dev.yaml"
    target.write_text(target.read_text().replace("shortNames:\n    - sr", "shortNames:\n    - st"))
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 1
    out = capsys.readouterr().out
    assert "-    - st" in out and "+    - sr" in out


def test_check_fails_on_a_missing_file(tmp_path: Path) -> None:
    crdgen.main(["--out", str(tmp_path)])
    (tmp_path / "sandboxpolicies.steprun.dev.yaml").unlink()
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 1


# ---------------------------------------------------------------- structural schema


def nodes(schema: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from nodes(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")


def structural_violations(schema: Schema) -> list[str]:
    """The subset of the API server's structural-schema rules a generator could break."""
    problems: list[str] = []
    for path, node in nodes(schema):
        where = path or "<root>"
        for key in ("$ref", "$defs", "title", "oneOf", "allOf", "not", "const"):
            if key in node:
                problems.append(f"{where}: has {key}")
        int_or_string = node.get("x-kubernetes-int-or-string") is True
        untyped_ok = int_or_string or node.get("x-kubernetes-preserve-unknown-fields") is True
        if "type" not in node and not untyped_ok:
            problems.append(f"{where}: no type")
        if "anyOf" in node and not (
            int_or_string
            and "type" not in node
            and node["anyOf"] == [{"type": "integer"}, {"type": "string"}]
        ):
            problems.append(f"{where}: anyOf other than int-or-string")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{where}: both properties and additionalProperties")
        if node.get("additionalProperties") is False:
            problems.append(f"{where}: additionalProperties false")
        if "default" in node and node["default"] is None:
            problems.append(f"{where}: null default")
        if ("properties" in node or "additionalProperties" in node) and node.get("type") not in (
            "object",
            None,
        ):
            problems.append(f"{where}: properties on a non-object")
        for name in node.get("required", []):
            if name not in node.get("properties", {}):
                problems.append(f"{where}: required {name} is not a property")
        if node.get("x-kubernetes-list-type") == "map":
            item = node["items"]
            for key in node["x-kubernetes-list-map-keys"]:
                if key not in item.get("required", []) and "default" not in item["properties"][key]:
                    problems.append(
                        f"{where}: list-map key {key} is neither required nor defaulted"
                    )
    return problems


@pytest.mark.parametrize("make", [crdgen.steprun_crd, crdgen.sandboxpolicy_crd])
def test_schemas_are_structural(make: Any) -> None:
    assert structural_violations(root_schema(make())) == []


def test_structural_checker_catches_violations() -> None:
    bad: Schema = {
        "type": "object",
        "properties": {
            "a": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "b": {"$ref": "#/$defs/B"},
            "c": {"type": "string", "title": "C", "default": None},
        },
        "required": ["d"],
    }
    problems = structural_violations(bad)
    assert any(p.startswith(".a: no type") for p in problems)
    assert any(p.startswith(".a: anyOf") for p in problems)
    assert ".b: has $ref" in problems
    assert ".c: has title" in problems
    assert ".c: null default" in problems
    assert "<root>: required d is not a property" in problems


def test_optional_fields_are_not_required_and_nulls_are_gone(steprun_crd: Schema) -> None:
    spec = crdgen.node_at(root_schema(steprun_crd), "spec")
    assert "required" not in spec
    assert spec["properties"]["image"] == {
        "type": "string",
        "description": spec["properties"]["image"]["description"],
        "maxLength": 1024,
        "minLength": 1,
    }
    sandbox = spec["properties"]["sandbox"]
    # plugin or uses, one of them: a CEL rule says which, not `required`.
    assert "required" not in sandbox
    assert root_schema(steprun_crd)["required"] == ["spec"]


def test_bounds_defaults_and_patterns_are_kept(steprun_crd: Schema) -> None:
    root = root_schema(steprun_crd)
    spec = crdgen.node_at(root, "spec")["properties"]
    assert spec["script"]["maxLength"] == MAX_SCRIPT
    assert spec["command"]["maxItems"] == 256
    assert spec["command"]["items"]["maxLength"] == 32 * 1024
    assert spec["env"]["maxProperties"] == MAX_ENV_VARS
    assert (spec["timeoutSeconds"]["minimum"], spec["timeoutSeconds"]["maximum"]) == (1, 604800)
    assert spec["mode"]["default"] == "local"
    assert spec["cancel"]["default"] is False
    assert spec["terminationGracePeriodSeconds"]["default"] == 30
    assert crdgen.node_at(root, "spec.sandbox.policy")["default"] == "default"
    assert crdgen.node_at(root, "spec.context.secrets[].as")["default"] == "env"
    assert "pattern" in crdgen.node_at(root, "spec.context.secrets[].secretKeyRef.name")


def test_enums_and_literals_become_enum(steprun_crd: Schema, policy_crd: Schema) -> None:
    permissions = [p.value for p in Permission]
    assert crdgen.node_at(root_schema(steprun_crd), "spec.mode")["enum"] == ["local", "sandbox"]
    assert crdgen.node_at(root_schema(steprun_crd), "spec.sandbox.permissions")["items"][
        "enum"
    ] == (permissions)
    assert crdgen.node_at(root_schema(steprun_crd), "status.phase")["enum"] == [
        p.value for p in Phase
    ]
    assert crdgen.node_at(root_schema(steprun_crd), "status.conditions[].status")["enum"] == [
        "True",
        "False",
        "Unknown",
    ]
    assert crdgen.node_at(root_schema(steprun_crd), "spec.context.secrets[].as")["enum"] == [
        "env",
        "file",
    ]
    assert crdgen.node_at(root_schema(policy_crd), "spec.grants")["items"]["enum"] == permissions


def test_free_json_objects_preserve_unknown_fields(steprun_crd: Schema) -> None:
    root = root_schema(steprun_crd)
    for path in ("spec.context.inputs", "status.outputs"):
        node = crdgen.node_at(root, path)
        assert node["type"] == "object"
        assert node["x-kubernetes-preserve-unknown-fields"] is True
        assert node["additionalProperties"] == {
            "nullable": True,
            "x-kubernetes-preserve-unknown-fields": True,
        }
    # The admission decision is typed (kubectl explain documents it) yet keeps unknown keys: a
    # decision stored by an older operator has snake_case keys that must survive to be read.
    admitted = crdgen.node_at(root, "status.admitted")
    assert admitted["x-kubernetes-preserve-unknown-fields"] is True
    assert {"policy", "plugin", "handler", "cliCommand", "timeoutSeconds"} <= set(
        admitted["properties"]
    )
    assert admitted["required"] == ["policy", "plugin", "image", "timeoutSeconds"]
    toleration = crdgen.node_at(root, "spec.podTemplate.tolerations[]")
    assert toleration["type"] == "object"
    assert toleration["x-kubernetes-preserve-unknown-fields"] is True


def test_string_maps_and_quantity_maps(steprun_crd: Schema, policy_crd: Schema) -> None:
    root = root_schema(steprun_crd)
    assert crdgen.node_at(root, "spec.podTemplate.nodeSelector")["additionalProperties"] == {
        "type": "string"
    }
    quantity = {
        "x-kubernetes-int-or-string": True,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "maxLength": 64,
    }
    for crd, path in (
        (steprun_crd, "spec.resources.requests"),
        (steprun_crd, "spec.resources.limits"),
        (policy_crd, "spec.maxResources"),
        (policy_crd, "spec.defaultResources.limits"),
    ):
        node = crdgen.node_at(root_schema(crd), path)
        assert node["type"] == "object"
        assert node["additionalProperties"] == quantity, path


def test_every_field_has_a_description(steprun_crd: Schema, policy_crd: Schema) -> None:
    for crd in (steprun_crd, policy_crd):
        for path, node in nodes(root_schema(crd)):
            if path in ("", ".metadata") or path.endswith(("{}", "[]")):
                continue
            assert node.get("description"), f"{path} has no description"


class _Union(BaseModel):
    value: int | list[str]


class _Untyped(BaseModel):
    value: Any


def test_unsupported_shapes_are_refused() -> None:
    with pytest.raises(crdgen.SchemaError, match="unions"):
        crdgen.structural_schema(_Union)
    with pytest.raises(crdgen.SchemaError, match="no type"):
        crdgen.structural_schema(_Untyped)


# ---------------------------------------------------------------- kinds and columns


def test_steprun_names_scope_and_subresources(steprun_crd: Schema) -> None:
    spec = steprun_crd["spec"]
    assert steprun_crd["metadata"]["name"] == "stepruns.steprun.dev"
    assert spec["group"] == "steprun.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "StepRun"
    assert spec["names"]["shortNames"] == ["sr"]
    assert spec["names"]["categories"] == ["steprun"]
    version = spec["versions"][0]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    assert root_schema(steprun_crd)["description"].startswith("StepRun runs one workflow step")


def test_sandboxpolicy_names_scope_and_subresources(policy_crd: Schema) -> None:
    spec = policy_crd["spec"]
    assert policy_crd["metadata"]["name"] == "sandboxpolicies.steprun.dev"
    assert spec["scope"] == "Cluster"
    assert spec["names"]["kind"] == "SandboxPolicy"
    assert spec["names"]["shortNames"] == ["sbp"]
    assert "subresources" not in spec["versions"][0]
    assert "status" not in root_schema(policy_crd)["properties"]
    assert root_schema(policy_crd)["description"].startswith("SandboxPolicy says")


def test_steprun_printer_columns(steprun_crd: Schema) -> None:
    columns = [
        (c["name"], c["type"], c["jsonPath"], c.get("priority", 0))
        for c in steprun_crd["spec"]["versions"][0]["additionalPrinterColumns"]
    ]
    assert columns == [
        ("Phase", "string", ".status.phase", 0),
        ("Mode", "string", ".spec.mode", 0),
        ("Exit", "integer", ".status.exitCode", 0),
        ("Duration", "string", ".status.duration", 0),
        ("Reason", "string", ".status.reason", 1),
        ("Pod", "string", ".status.podName", 1),
        ("Queue", "string", ".status.queue.name", 1),
        ("QueueWait", "integer", ".status.queue.waitSeconds", 1),
        ("Age", "date", ".metadata.creationTimestamp", 0),
    ]


def test_printer_columns_point_at_schema_fields(steprun_crd: Schema, policy_crd: Schema) -> None:
    for crd in (steprun_crd, policy_crd):
        for column in crd["spec"]["versions"][0]["additionalPrinterColumns"]:
            path = column["jsonPath"].lstrip(".")
            if not path.startswith("metadata."):
                crdgen.node_at(root_schema(crd), path)


# ---------------------------------------------------------------- CEL rules


def test_script_is_exclusive_with_command_and_args(steprun_crd: Schema) -> None:
    assert "!has(self.script) || (!has(self.command) && !has(self.args))" in rule_texts(
        steprun_crd, "spec"
    )


def test_mode_rules(steprun_crd: Schema) -> None:
    rules = rule_texts(steprun_crd, "spec")
    assert "self.mode != 'local' || has(self.image)" in rules
    assert "self.mode != 'sandbox' || has(self.sandbox)" in rules
    assert "self.mode == 'sandbox' || !has(self.sandbox)" in rules
    for field in ("image", "command", "serviceAccountName"):
        assert f"self.mode != 'sandbox' || !has(self.{field})" in rules
    assert "self.mode != 'sandbox' || !has(self.args)" not in rules


def test_sandbox_names_one_thing_to_run_and_scripts_need_builtin_shell(
    steprun_crd: Schema,
) -> None:
    assert rule_texts(steprun_crd, "spec.sandbox") == {"has(self.plugin) != has(self.uses)"}
    shell = "has(self.sandbox) && has(self.sandbox.uses) && self.sandbox.uses == 'builtin:shell'"
    rules = rule_texts(steprun_crd, "spec")
    assert f"self.mode != 'sandbox' || !has(self.script) || ({shell})" in rules
    assert f"!({shell}) || has(self.script)" in rules
    uses = crdgen.node_at(root_schema(steprun_crd), "spec.sandbox.uses")
    assert uses["pattern"] == USES_PATTERN


def test_every_spec_field_but_cancel_is_immutable(steprun_crd: Schema) -> None:
    immutable = {
        r["fieldPath"].lstrip(".")
        for r in rules_at(steprun_crd, "spec")
        if r["message"] == crdgen.SPEC_IMMUTABLE_MESSAGE
    }
    aliases = {f.alias or name for name, f in StepRunSpec.model_fields.items()}
    assert immutable == aliases - {"cancel"}
    for rule in rules_at(steprun_crd, "spec"):
        if rule["message"] == crdgen.SPEC_IMMUTABLE_MESSAGE:
            field = rule["fieldPath"].lstrip(".")
            # Absence on either side must count as a change, not skip the comparison.
            assert rule["rule"] == (
                f"has(self.{field}) ? has(oldSelf.{field}) && self.{field} == oldSelf.{field}"
                f" : !has(oldSelf.{field})"
            )


def test_cancel_cannot_be_reset(steprun_crd: Schema) -> None:
    [rule] = [r for r in rules_at(steprun_crd, "spec") if r.get("fieldPath") == ".cancel"]
    assert (
        rule["rule"]
        == "!has(oldSelf.cancel) || !oldSelf.cancel || (has(self.cancel) && self.cancel)"
    )


@pytest.mark.parametrize("path", ["spec.env", "spec.context.env"])
def test_env_keys_are_valid_and_not_reserved(steprun_crd: Schema, path: str) -> None:
    rules = rules_at(steprun_crd, path)
    assert {r["rule"] for r in rules} == {
        "self.all(k, k.matches('^[A-Za-z_][A-Za-z0-9_]*$'))",
        "self.all(k, !k.startsWith('STEPRUN_'))",
    }
    assert all(r["message"].startswith(path) for r in rules)


def test_secret_names_are_unique_and_env_ones_not_reserved(steprun_crd: Schema) -> None:
    secrets = crdgen.node_at(root_schema(steprun_crd), "spec.context.secrets")
    assert secrets["x-kubernetes-list-type"] == "map"
    assert secrets["x-kubernetes-list-map-keys"] == ["name"]
    assert rule_texts(steprun_crd, "spec.context.secrets[]") == {
        "self.__as__ != 'env' || !self.name.startsWith('STEPRUN_')"
    }


def test_terminal_phase_is_final(steprun_crd: Schema) -> None:
    [rule] = rules_at(steprun_crd, "status")
    for phase in ("Succeeded", "Failed", "TimedOut", "Cancelled", "Rejected"):
        assert f"'{phase}'" in rule["rule"]
    assert "'Running'" not in rule["rule"]
    conditions = crdgen.node_at(root_schema(steprun_crd), "status.conditions")
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]


def test_policy_lists_and_bounds(policy_crd: Schema) -> None:
    root = root_schema(policy_crd)
    plugins = crdgen.node_at(root, "spec.plugins")
    assert plugins["x-kubernetes-list-type"] == "map"
    assert plugins["x-kubernetes-list-map-keys"] == ["name"]
    assert crdgen.node_at(root, "spec.grants")["x-kubernetes-list-type"] == "set"
    assert crdgen.node_at(root, "spec.plugins[].permissions")["x-kubernetes-list-type"] == "set"
    assert crdgen.node_at(root, "spec.maxTimeoutSeconds")["minimum"] == 1
    assert rule_texts(policy_crd, "spec.egress[].cidr") == {"isCIDR(self)"}
    assert rule_texts(policy_crd, "spec.maxResources") == {
        "self.all(k, type(self[k]) == int || isQuantity(self[k]))"
    }


def test_plugin_entries_are_unique(policy_crd: Schema) -> None:
    root = root_schema(policy_crd)
    for entries in ("handlers", "commands"):
        node = crdgen.node_at(root, f"spec.plugins[].{entries}")
        assert node["x-kubernetes-list-type"] == "map"
        assert node["x-kubernetes-list-map-keys"] == ["id"]
        assert node["items"]["required"] == ["id"]
    (unique_commands,) = rule_texts(policy_crd, "spec.plugins")
    assert "self.filter(q, has(q.commands) && q.commands.exists(d, d.id == c.id)).size() == 1" in (
        unique_commands
    )
    assert rule_texts(policy_crd, "spec") == {
        "!has(self.shellPlugin) || self.plugins.exists(p, p.name == self.shellPlugin)"
    }


def test_every_rule_has_a_message_naming_a_field(steprun_crd: Schema, policy_crd: Schema) -> None:
    for crd in (steprun_crd, policy_crd):
        for path, node in nodes(root_schema(crd)):
            for rule in node.get("x-kubernetes-validations", []):
                assert rule["message"].startswith(("spec", "status")), (path, rule)
                assert rule.get("reason") in (None, *API_SERVER_REASONS)


def test_node_at_rejects_unknown_paths(steprun_crd: Schema) -> None:
    with pytest.raises(crdgen.SchemaError):
        crdgen.node_at(root_schema(steprun_crd), "spec.nope")


def test_cel_helpers() -> None:
    assert crdgen.cel_string("it's \\") == "'it\\'s \\\\'"
    assert crdgen.cel_field("as") == "__as__"
    assert crdgen.cel_field("image") == "image"


# ---------------------------------------------------------------- models round-trip


def unknown_fields(value: Any, schema: Schema, path: str = "") -> list[str]:
    """Paths in value the API server would prune under schema."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found: list[str] = []
    if isinstance(value, dict):
        props = schema.get("properties")
        for key, sub in value.items():
            if props is not None:
                if key not in props:
                    found.append(f"{path}.{key}")
                else:
                    found += unknown_fields(sub, props[key], f"{path}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                found += unknown_fields(sub, schema["additionalProperties"], f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += unknown_fields(item, schema["items"], f"{path}[{i}]")
    return found


def test_api_example_steprun_round_trips(steprun_crd: Schema) -> None:
    body = yaml.safe_load(API_STEPRUN)
    run = StepRun.from_body(body)
    # The wire form adds only defaults (secrets[].as: env) to what was written.
    expected_spec = body["spec"]
    expected_spec["context"]["secrets"][0]["as"] = "env"
    assert run.spec.to_api() == expected_spec
    assert StepRunSpec.model_validate(run.spec.to_api()) == run.spec
    assert run.status.to_api() == body["status"]
    root = root_schema(steprun_crd)
    assert unknown_fields(run.spec.to_api(), root["properties"]["spec"]) == []
    assert unknown_fields(run.status.to_api(), root["properties"]["status"]) == []


def test_api_example_sandbox_step_validates(steprun_crd: Schema) -> None:
    spec = StepRunSpec.model_validate(yaml.safe_load(API_SANDBOX_STEP))
    assert spec.sandbox is not None and spec.sandbox.plugin == "eslint"
    assert unknown_fields(spec.to_api(), root_schema(steprun_crd)["properties"]["spec"]) == []


def test_api_example_policy_round_trips(policy_crd: Schema) -> None:
    body = yaml.safe_load(API_POLICY)
    policy = SandboxPolicy.from_body(body)
    assert policy.spec.to_api() == body["spec"]
    assert unknown_fields(policy.spec.to_api(), root_schema(policy_crd)["properties"]["spec"]) == []


@pytest.mark.parametrize("model", [StepRunSpec, StepRunStatus, SandboxPolicySpec])
def test_schema_declares_every_model_field(model: type[BaseModel]) -> None:
    schema = crdgen.structural_schema(model)
    assert set(schema["properties"]) == {f.alias or n for n, f in model.model_fields.items()}


def test_unknown_fields_checker_finds_strays(steprun_crd: Schema) -> None:
    spec = root_schema(steprun_crd)["properties"]["spec"]
    stray = {"image": "x", "imagePullPolicy": "Always", "context": {"workflow": {"id": "1"}}}
    assert unknown_fields(stray, spec) == [".imagePullPolicy", ".context.workflow.id"]
