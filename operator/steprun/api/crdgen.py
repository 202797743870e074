"""Generate the steprun.dev CustomResourceDefinitions from the pydantic models.

``python -m steprun.api.crdgen`` writes ``crds/stepruns.steprun.dev.yaml`` and
``crds/sandboxpolicies.steprun.dev.yaml``; ``--check`` compares instead of writing and prints a
unified diff of any drift. The OpenAPI schemas come from the models' JSON schemas, rewritten into
the structural form the API server requires; rules that span fields, which a JSON schema cannot
express, are CEL ``x-kubernetes-validations`` declared below next to the path they guard.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from steprun.api.models import (
    ENV_NAME_PATTERN,
    MAX_TRACESTATE_MEMBERS,
    RESERVED_ENV_PREFIX,
    SUB_PATH_MESSAGE,
    TERMINAL_PHASES,
    TRACEPARENT_MESSAGES,
    TRACESTATE_MESSAGE,
    USES_BUILTIN_SHELL,
    WORKSPACE_ONE_SOURCE_MESSAGE,
    WORKSPACE_PATHS_MESSAGE,
    WORKSPACE_ROOT,
    WORKSPACE_TEMPLATE_MESSAGE,
    ApiModel,
    Mode,
    SandboxPolicySpec,
    StepRunSpec,
    StepRunStatus,
)
from steprun.api.resources import SANDBOX_POLICY, STEPRUN, Resource

Schema = dict[str, Any]

# The keywords the generator knows how to carry into a structural schema. Anything else in a
# pydantic JSON schema is an error rather than silently copied, so a model change that needs new
# handling is noticed when the CRDs are regenerated.
_KEPT_KEYWORDS = frozenset(
    {
        "type",
        "description",
        "default",
        "enum",
        "format",
        "pattern",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "nullable",
    }
)
_DROPPED_KEYWORDS = frozenset({"title"})

# Words CEL reserves; a property with such a name is reached as __name__ in a rule.
_CEL_RESERVED = frozenset(
    {
        "as",
        "break",
        "const",
        "continue",
        "else",
        "false",
        "for",
        "function",
        "if",
        "import",
        "in",
        "let",
        "loop",
        "package",
        "namespace",
        "null",
        "return",
        "true",
        "var",
        "void",
        "while",
    }
)

INT_OR_STRING: Schema = {
    "x-kubernetes-int-or-string": True,
    "anyOf": [{"type": "integer"}, {"type": "string"}],
}


class SchemaError(ValueError):
    """A model's JSON schema has a shape the generator cannot turn into a structural schema."""


# ---------------------------------------------------------------- JSON schema -> structural


def structural_schema(model: type[BaseModel]) -> Schema:
    """The model's validation JSON schema (camelCase) as a structural OpenAPI v3 schema."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _convert(raw, defs, where=model.__name__)


def _convert(node: Schema, defs: Mapping[str, Schema], where: str) -> Schema:
    node = dict(node)
    if "$ref" in node:
        # Keywords beside a $ref (a field's description, default) refine the referenced type.
        target = _resolve(node.pop("$ref"), defs, where)
        return _convert({**target, **node}, defs, where)
    if "anyOf" in node:
        return _convert_any_of(node, defs, where)
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if node.get("default", ...) is None:
        # An optional field's default is "absent", which the API server expresses by omission.
        del node["default"]

    out: Schema = {}
    for key, value in node.items():
        if key in _DROPPED_KEYWORDS:
            continue
        if key == "properties":
            out["properties"] = {
                name: _convert(sub, defs, f"{where}.{name}") for name, sub in value.items()
            }
        elif key == "required":
            out["required"] = list(value)
        elif key == "items":
            out["items"] = _convert(value, defs, f"{where}[]")
        elif key == "additionalProperties":
            _convert_additional_properties(value, out, defs, where)
        elif key in _KEPT_KEYWORDS or key.startswith("x-kubernetes-"):
            out[key] = copy.deepcopy(value)
        else:
            raise SchemaError(f"{where}: unsupported JSON schema keyword {key!r}")
    if "type" not in out and not _is_untyped_ok(out):
        raise SchemaError(f"{where}: schema has no type")
    return out


def _resolve(ref: str, defs: Mapping[str, Schema], where: str) -> Schema:
    prefix = "#/$defs/"
    if not ref.startswith(prefix) or ref[len(prefix) :] not in defs:
        raise SchemaError(f"{where}: cannot resolve {ref}")
    return defs[ref[len(prefix) :]]


def _convert_any_of(node: Schema, defs: Mapping[str, Schema], where: str) -> Schema:
    branches = [b for b in node.pop("anyOf") if b != {"type": "null"}]
    if node.get("default", ...) is None:
        del node["default"]
    if len(branches) == 1:
        # X | None: optional, which the API server expresses by leaving it out of `required`.
        return _convert({**branches[0], **node}, defs, where)
    by_type = {b.get("type"): b for b in branches}
    if len(branches) == 2 and by_type.keys() == {"integer", "string"}:
        # The one union a structural schema allows, e.g. a resource quantity (1 or "100m").
        # Branches may not carry value validations there, so the string's bounds move up:
        # maxLength and pattern only ever apply to string values.
        integer, string = dict(by_type["integer"]), dict(by_type["string"])
        del integer["type"], string["type"]
        if integer:
            raise SchemaError(f"{where}: int | str with integer bounds is not supported")
        out = _convert({**node, **string, "x-kubernetes-int-or-string": True}, defs, where)
        return {**out, **copy.deepcopy(INT_OR_STRING)}
    raise SchemaError(f"{where}: unions other than X | None and int | str are not structural")


def _convert_additional_properties(
    value: bool | Schema, out: Schema, defs: Mapping[str, Schema], where: str
) -> None:
    if value is False:
        # Unknown fields are pruned by the API server (and reported by strict field validation).
        return
    if value is True:
        # A free JSON object. Declaring its values as "any JSON" (not just the object as
        # preserving unknown fields) makes CEL equality compare every key, so the immutability
        # rule sees a renamed key; nullable keeps a null value from being pruned.
        out["x-kubernetes-preserve-unknown-fields"] = True
        out["additionalProperties"] = {
            "nullable": True,
            "x-kubernetes-preserve-unknown-fields": True,
        }
        return
    out["additionalProperties"] = _convert(value, defs, f"{where}{{}}")


def _is_untyped_ok(node: Schema) -> bool:
    return bool(
        node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
    )


# ---------------------------------------------------------------- CEL rules


class Rule(ApiModel):
    """One x-kubernetes-validations entry, as the CRD holds it (``to_api``)."""

    model_config = ConfigDict(frozen=True)

    rule: str
    message: str
    field_path: str | None = None
    reason: str | None = None


FORBIDDEN = "FieldValueForbidden"
REQUIRED = "FieldValueRequired"
INVALID = "FieldValueInvalid"

SPEC_IMMUTABLE_MESSAGE = "spec is immutable after creation; only spec.cancel may change"


def cel_string(value: str) -> str:
    """A CEL single-quoted string literal for value."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def cel_field(name: str) -> str:
    """How a rule names a property: CEL keywords are escaped as __keyword__."""
    return f"__{name}__" if name in _CEL_RESERVED else name


def env_key_rules(path: str) -> tuple[Rule, ...]:
    """Keys of an env map: valid variable names, none in the operator's reserved namespace."""
    return (
        Rule(
            rule=f"self.all(k, k.matches({cel_string(ENV_NAME_PATTERN)}))",
            message=(
                f"{path} keys must be environment variable names: letters, digits and _, "
                "not starting with a digit"
            ),
            reason=INVALID,
        ),
        Rule(
            rule=f"self.all(k, !k.startsWith({cel_string(RESERVED_ENV_PREFIX)}))",
            message=(
                f"{path} keys must not start with {RESERVED_ENV_PREFIX}: the operator reserves them"
            ),
            reason=FORBIDDEN,
        ),
    )


def quantity_rules(path: str) -> tuple[Rule, ...]:
    """Values of a resource map: integers or Kubernetes quantities such as 100m or 1Gi."""
    return (
        Rule(
            rule="self.all(k, type(self[k]) == int || isQuantity(self[k]))",
            message=f"{path} values must be integers or quantities such as 100m or 1Gi",
            reason=INVALID,
        ),
    )


def unchanged(field: str) -> str:
    """CEL: field is absent in both, or present in both with equal values."""
    f = cel_field(field)
    return f"has(self.{f}) ? has(oldSelf.{f}) && self.{f} == oldSelf.{f} : !has(oldSelf.{f})"


def spec_immutability_rules(spec_properties: Iterable[str]) -> tuple[Rule, ...]:
    """Transition rules on spec that freeze every field but cancel, and cancel once true.

    They sit on spec rather than on each field because a rule on a field only runs when the
    field exists in both the old and the new object, so setting or removing an optional field
    would slip through. One rule per field keeps each within the CEL cost limit and lets the
    error name the field. (Comparing optionals, ``self.?f == oldSelf.?f``, reads better but the
    API server cannot estimate its cost and rejects it.)
    """
    frozen = sorted(name for name in spec_properties if name != "cancel")
    return (
        *(
            Rule(
                rule=unchanged(name),
                message=SPEC_IMMUTABLE_MESSAGE,
                field_path=f".{name}",
                reason=FORBIDDEN,
            )
            for name in frozen
        ),
        Rule(
            rule="!has(oldSelf.cancel) || !oldSelf.cancel || (has(self.cancel) && self.cancel)",
            message="spec.cancel cannot go from true back to false",
            field_path=".cancel",
            reason=FORBIDDEN,
        ),
    )


def spec_mode_rules() -> tuple[Rule, ...]:
    """What each mode requires and forbids."""
    sandbox = cel_string(Mode.SANDBOX)
    from_plugin = {
        "image": "spec.image must not be set for mode sandbox: the image comes from the plugin",
        "command": (
            "spec.command must not be set for mode sandbox: the command comes from the plugin "
            "(spec.args are appended to it)"
        ),
        "serviceAccountName": (
            "spec.serviceAccountName must not be set for mode sandbox: sandbox Pods run without "
            "a service account token"
        ),
    }
    return (
        Rule(
            rule="!has(self.script) || (!has(self.command) && !has(self.args))",
            message="spec.script is exclusive with spec.command and spec.args",
            field_path=".script",
            reason=FORBIDDEN,
        ),
        *(
            Rule(
                rule=f"self.mode != {cel_string(mode)} || has(self.{field})",
                message=f"spec.{field} is required for mode {mode}",
                field_path=f".{field}",
                reason=REQUIRED,
            )
            for mode, field in ((Mode.LOCAL, "image"), (Mode.SANDBOX, "sandbox"))
        ),
        Rule(
            rule=f"self.mode == {sandbox} || !has(self.sandbox)",
            message="spec.sandbox is allowed only with mode sandbox",
            field_path=".sandbox",
            reason=FORBIDDEN,
        ),
        *(
            Rule(
                rule=f"self.mode != {sandbox} || !has(self.{field})",
                message=message,
                field_path=f".{field}",
                reason=FORBIDDEN,
            )
            for field, message in from_plugin.items()
        ),
        *builtin_shell_rules(),
    )


def builtin_shell_rules() -> tuple[Rule, ...]:
    """A sandbox step runs a script only through uses: builtin:shell, which needs one."""
    sandbox, shell = cel_string(Mode.SANDBOX), cel_string(USES_BUILTIN_SHELL)
    uses_shell = f"has(self.sandbox) && has(self.sandbox.uses) && self.sandbox.uses == {shell}"
    return (
        Rule(
            rule=f"self.mode != {sandbox} || !has(self.script) || ({uses_shell})",
            message=(
                "spec.script must not be set for mode sandbox unless spec.sandbox.uses is "
                f"{USES_BUILTIN_SHELL}: the command comes from the plugin (spec.args are "
                "appended to it)"
            ),
            field_path=".script",
            reason=FORBIDDEN,
        ),
        Rule(
            rule=f"!({uses_shell}) || has(self.script)",
            message=f"spec.sandbox.uses {USES_BUILTIN_SHELL} runs spec.script: set it",
            field_path=".script",
            reason=REQUIRED,
        ),
    )


def sandbox_uses_rule() -> Rule:
    """A sandbox step names what it runs once: a plugin, or a handler or command through uses."""
    return Rule(
        rule="has(self.plugin) != has(self.uses)",
        message=(
            "spec.sandbox needs exactly one of plugin (the plugin's command) and uses "
            "(plugin:<plugin>/<handler>, command:<name> or builtin:shell)"
        ),
        reason=INVALID,
    )


def unique_command_rule() -> Rule:
    """command:<name> resolves to exactly one plugin: no two plugins declare the same command.

    Each plugin's ids are unique already (a list map keyed by id), so counting the plugins that
    declare a command is enough.
    """
    return Rule(
        rule=(
            "self.all(p, !has(p.commands) || p.commands.all(c, "
            "self.filter(q, has(q.commands) && q.commands.exists(d, d.id == c.id)).size() == 1))"
        ),
        message=(
            "spec.plugins[].commands[].id must be unique across the plugins of the policy: "
            "uses: command:<name> must resolve to exactly one plugin"
        ),
        reason=INVALID,
    )


def shell_plugin_rule() -> Rule:
    return Rule(
        rule="!has(self.shellPlugin) || self.plugins.exists(p, p.name == self.shellPlugin)",
        message="spec.shellPlugin must name one of spec.plugins",
        field_path=".shellPlugin",
        reason=INVALID,
    )


def artifacts_rules() -> tuple[Rule, ...]:
    """A step with artifacts runs its command through the artifact helper, which must be told
    what to run: an image's own entrypoint cannot be read from the API."""
    sandbox = cel_string(Mode.SANDBOX)
    return (
        Rule(
            rule=(
                f"self.mode == {sandbox} || !has(self.artifacts) || "
                "!has(self.artifacts.outputs) || size(self.artifacts.outputs) == 0 || "
                "has(self.command) || has(self.script)"
            ),
            message=(
                "spec.artifacts.outputs needs spec.command or spec.script: the step's command runs "
                "through steprun's artifact helper, which cannot see the image's entrypoint"
            ),
            field_path=".artifacts",
            reason=REQUIRED,
        ),
    )


def terminal_phase_rule() -> Rule:
    """A terminal phase is final: guards the status against an operator bug rewriting it."""
    terminal = ", ".join(cel_string(p) for p in sorted(TERMINAL_PHASES))
    return Rule(
        rule=(
            f"!has(oldSelf.phase) || !(oldSelf.phase in [{terminal}]) || "
            "(has(self.phase) && self.phase == oldSelf.phase)"
        ),
        message="status.phase is terminal and cannot change",
        field_path=".phase",
        reason=FORBIDDEN,
    )


def secret_projection_rule() -> Rule:
    """A secret delivered as an env var may not take a reserved name."""
    return Rule(
        rule=(
            f"self.{cel_field('as')} != 'env' || "
            f"!self.name.startsWith({cel_string(RESERVED_ENV_PREFIX)})"
        ),
        message=(
            f"spec.context.secrets[].name must not start with {RESERVED_ENV_PREFIX} "
            "when as is env: the operator reserves those variables"
        ),
        field_path=".name",
        reason=FORBIDDEN,
    )


def egress_cidr_rule() -> Rule:
    """Egress destinations become NetworkPolicy ipBlocks, which need a CIDR."""
    return Rule(
        rule="isCIDR(self)",
        message="spec.egress[].cidr must be a CIDR such as 10.0.0.0/8",
        reason=INVALID,
    )


def workspace_rules() -> tuple[Rule, ...]:
    """One workspace: exactly one source (a JSON schema cannot say "exactly one of")."""
    count = " + ".join(
        f"(has(self.{source}) ? 1 : 0)"
        for source in ("persistentVolumeClaim", "volumeClaimTemplate", "emptyDir")
    )
    return (Rule(rule=f"{count} == 1", message=WORKSPACE_ONE_SOURCE_MESSAGE, reason=INVALID),)


def sub_path_rule() -> Rule:
    return Rule(rule="!self.matches('(^|/)[.][.](/|$)')", message=SUB_PATH_MESSAGE, reason=INVALID)


def _workspace_path(var: str) -> str:
    root = cel_string(WORKSPACE_ROOT + "/")
    return f"(has({var}.mountPath) ? {var}.mountPath : {root} + {var}.name)"


def workspaces_list_rules() -> tuple[Rule, ...]:
    """The list: mount paths (given or defaulted) are distinct."""
    return (
        Rule(
            rule=(
                f"self.all(w, self.exists_one(x, {_workspace_path('x')} == {_workspace_path('w')}))"
            ),
            message=WORKSPACE_PATHS_MESSAGE,
            reason=INVALID,
        ),
    )


def workspace_template_rule() -> Rule:
    """A run's claim is keyed by the workflow name and run id, so a template needs both."""
    return Rule(
        rule=(
            "!has(self.workspaces) || self.workspaces.all(w, !has(w.volumeClaimTemplate)) || "
            "(has(self.context) && has(self.context.workflow) "
            "&& has(self.context.workflow.name) && self.context.workflow.name != '' "
            "&& has(self.context.workflow.runId) && self.context.workflow.runId != '')"
        ),
        message=WORKSPACE_TEMPLATE_MESSAGE,
        field_path=".workspaces",
        reason=REQUIRED,
    )


def traceparent_rules() -> tuple[Rule, ...]:
    """The W3C rules a pattern alone does not express (see models.traceparent_problem)."""
    return (
        Rule(rule="!self.startsWith('ff-')", message=TRACEPARENT_MESSAGES["version"]),
        Rule(
            rule="!self.startsWith('00-') || size(self) == 55",
            message=TRACEPARENT_MESSAGES["length"],
        ),
        Rule(rule="!self.matches('^[0-9a-f]{2}-0{32}-')", message=TRACEPARENT_MESSAGES["trace-id"]),
        Rule(
            rule="!self.matches('^[0-9a-f]{2}-[0-9a-f]{32}-0{16}-')",
            message=TRACEPARENT_MESSAGES["parent-id"],
        ),
    )


def tracestate_rule() -> Rule:
    return Rule(
        rule=f"!self.matches('^([^,]*,){{{MAX_TRACESTATE_MEMBERS}}}')",
        message=TRACESTATE_MESSAGE,
        reason=INVALID,
    )


def steprun_rules(spec_schema: Schema) -> dict[str, tuple[Rule, ...]]:
    """CEL rules of the StepRun kind by schema path (see :func:`node_at`)."""
    return {
        "spec": (
            *spec_mode_rules(),
            workspace_template_rule(),
            *artifacts_rules(),
            *spec_immutability_rules(spec_schema["properties"]),
        ),
        "spec.workspaces": workspaces_list_rules(),
        "spec.workspaces[]": workspace_rules(),
        "spec.workspaces[].subPath": (sub_path_rule(),),
        "spec.workspaces[].volumeClaimTemplate.spec.resources.requests": (
            *quantity_rules("spec.workspaces[].volumeClaimTemplate.spec.resources.requests"),
            Rule(
                rule="'storage' in self",
                message=(
                    "spec.workspaces[].volumeClaimTemplate.spec.resources.requests needs storage"
                ),
                reason=REQUIRED,
            ),
        ),
        "spec.workspaces[].emptyDir": (
            Rule(
                rule="!has(self.sizeLimit) || type(self.sizeLimit) == int "
                "|| isQuantity(self.sizeLimit)",
                message="spec.workspaces[].emptyDir.sizeLimit must be an integer or a quantity",
                field_path=".sizeLimit",
                reason=INVALID,
            ),
        ),
        "spec.context.trace.traceparent": traceparent_rules(),
        "spec.context.trace.tracestate": (tracestate_rule(),),
        "spec.env": env_key_rules("spec.env"),
        "spec.context.env": env_key_rules("spec.context.env"),
        "spec.context.secrets[]": (secret_projection_rule(),),
        "spec.sandbox": (sandbox_uses_rule(),),
        "spec.resources.requests": quantity_rules("spec.resources.requests"),
        "spec.resources.limits": quantity_rules("spec.resources.limits"),
        "status": (terminal_phase_rule(),),
    }


def sandboxpolicy_rules() -> dict[str, tuple[Rule, ...]]:
    """CEL rules of the SandboxPolicy kind by schema path."""
    return {
        "spec.defaultResources.requests": quantity_rules("spec.defaultResources.requests"),
        "spec.defaultResources.limits": quantity_rules("spec.defaultResources.limits"),
        "spec.maxResources": quantity_rules("spec.maxResources"),
        "spec.env": env_key_rules("spec.env"),
        "spec.egress[].cidr": (egress_cidr_rule(),),
        "spec": (shell_plugin_rule(),),
        "spec.plugins": (unique_command_rule(),),
    }


def node_at(root: Schema, path: str) -> Schema:
    """The schema node at a dotted property path; ``name[]`` steps into a list's items."""
    node = root
    for part in path.split("."):
        name, items = (part[:-2], True) if part.endswith("[]") else (part, False)
        try:
            node = node["properties"][name]
            if items:
                node = node["items"]
        except KeyError:
            raise SchemaError(f"no schema node at {path!r}") from None
    return node


def attach_rules(root: Schema, rules: Mapping[str, Iterable[Rule]]) -> None:
    """Add each path's rules to the x-kubernetes-validations of its node, in order."""
    for path, path_rules in rules.items():
        node_at(root, path).setdefault("x-kubernetes-validations", []).extend(
            rule.to_api() for rule in path_rules
        )


# ---------------------------------------------------------------- CRDs


def _object_schema(description: str, spec: Schema, status: Schema | None) -> Schema:
    properties: Schema = {
        "apiVersion": {
            "type": "string",
            "description": "Versioned schema of this representation of an object.",
        },
        "kind": {"type": "string", "description": "REST resource this object represents."},
        "metadata": {"type": "object"},
        "spec": spec,
    }
    if status is not None:
        properties["status"] = status
    return {
        "type": "object",
        "description": description,
        "required": ["spec"],
        "properties": properties,
    }


def _crd(
    *,
    resource: Resource,
    short_names: list[str],
    categories: list[str] | None,
    schema: Schema,
    printer_columns: list[Schema],
    status_subresource: bool,
    selectable_fields: tuple[str, ...] = (),
) -> Schema:
    kind = resource.kind
    names: Schema = {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": resource.plural,
        "singular": kind.lower(),
        "shortNames": short_names,
    }
    if categories:
        names["categories"] = categories
    version: Schema = {
        "name": resource.version,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": schema},
        "additionalPrinterColumns": printer_columns,
    }
    if status_subresource:
        version["subresources"] = {"status": {}}
    if selectable_fields:
        version["selectableFields"] = [{"jsonPath": path} for path in selectable_fields]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{resource.plural}.{resource.group}"},
        "spec": {
            "group": resource.group,
            "names": names,
            "scope": "Namespaced" if resource.namespaced else "Cluster",
            "versions": [version],
        },
    }


def _column(name: str, type_: str, json_path: str, description: str, priority: int = 0) -> Schema:
    column: Schema = {
        "name": name,
        "type": type_,
        "jsonPath": json_path,
        "description": description,
    }
    if priority:
        column["priority"] = priority
    return column


STEPRUN_COLUMNS = [
    _column("Phase", "string", ".status.phase", "Where the step is in its life."),
    _column("Mode", "string", ".spec.mode", "local or sandbox."),
    _column("Exit", "integer", ".status.exitCode", "Exit code of the step container."),
    _column("Duration", "string", ".status.duration", "Run time, once the step finished."),
    _column("Reason", "string", ".status.reason", "Why the step is in its phase.", priority=1),
    _column("Pod", "string", ".status.podName", "Pod of the current attempt.", priority=1),
    _column("Queue", "string", ".status.queue.name", "Kueue LocalQueue of the step.", priority=1),
    _column(
        "QueueWait",
        "integer",
        ".status.queue.waitSeconds",
        "Seconds the step waited for admission by Kueue, over its ended waits.",
        priority=1,
    ),
    _column("Age", "date", ".metadata.creationTimestamp", "Time since the StepRun was created."),
]

SANDBOXPOLICY_COLUMNS = [
    _column(
        "MaxTimeout",
        "integer",
        ".spec.maxTimeoutSeconds",
        "Largest timeoutSeconds a step may have.",
    ),
    _column("RuntimeClass", "string", ".spec.runtimeClassName", "RuntimeClass of sandbox Pods."),
    _column("Age", "date", ".metadata.creationTimestamp", "Time since the policy was created."),
]


# Server-side filters for `kubectl get sr --field-selector ...` and the client's list(): they
# work for every StepRun, however it was created (labels are only there when a client sets them).
STEPRUN_SELECTABLE_FIELDS = (
    ".spec.mode",
    ".spec.context.workflow.name",
    ".spec.context.workflow.runId",
    ".spec.context.workflow.stepId",
    ".spec.context.workflow.jobId",
    ".status.phase",
)


def steprun_crd() -> Schema:
    spec = structural_schema(StepRunSpec)
    root = _object_schema(
        "StepRun runs one workflow step as a Pod: a plain Pod (mode local) or a restricted Pod "
        "admitted by a SandboxPolicy (mode sandbox). The operator reports the phase, exit code "
        "and outputs in status. The spec cannot change after creation except spec.cancel.",
        spec,
        structural_schema(StepRunStatus),
    )
    attach_rules(root, steprun_rules(spec))
    return _crd(
        resource=STEPRUN,
        short_names=["sr"],
        categories=["steprun"],
        schema=root,
        printer_columns=STEPRUN_COLUMNS,
        status_subresource=True,
        selectable_fields=STEPRUN_SELECTABLE_FIELDS,
    )


def sandboxpolicy_crd() -> Schema:
    root = _object_schema(
        "SandboxPolicy says what sandbox steps may do: the namespaces it serves, the plugins "
        "they may run, the permissions it grants and the limits they must fit. Cluster-scoped; "
        "written by cluster admins.",
        structural_schema(SandboxPolicySpec),
        None,
    )
    attach_rules(root, sandboxpolicy_rules())
    return _crd(
        resource=SANDBOX_POLICY,
        short_names=["sbp"],
        categories=None,
        schema=root,
        printer_columns=SANDBOXPOLICY_COLUMNS,
        status_subresource=False,
    )


# ---------------------------------------------------------------- files

HEADER = (
    "# Generated from operator/steprun/api/models.py by steprun.api.crdgen. Do not edit.\n"
    "# Regenerate: python -m steprun.api.crdgen   (verify: python -m steprun.api.crdgen --check)\n"
)


def render(crd: Schema) -> str:
    """The CRD as YAML with the generated-file header; keys sorted so output is stable."""
    body = yaml.safe_dump(crd, sort_keys=True, default_flow_style=False, width=1_000_000)
    return HEADER + "---\n" + body


def generate() -> dict[str, str]:
    """File name -> content of every CRD file."""
    crds = (steprun_crd(), sandboxpolicy_crd())
    return {f"{crd['metadata']['name']}.yaml": render(crd) for crd in crds}


def diff(out_dir: Path, files: Mapping[str, str]) -> str:
    """A unified diff from the files in out_dir to the generated ones; empty when equal."""
    chunks: list[str] = []
    for name, want in sorted(files.items()):
        path = out_dir / name
        have = path.read_text() if path.exists() else ""
        chunks.extend(
            difflib.unified_diff(
                have.splitlines(keepends=True),
                want.splitlines(keepends=True),
                fromfile=str(path),
                tofile=f"{path} (generated)",
            )
        )
    return "".join(chunks)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m steprun.api.crdgen", description="Generate the steprun.dev CRDs."
    )
    parser.add_argument("--out", type=Path, default=Path("crds"), help="directory (default crds)")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 with a diff if the files are out of date"
    )
    args = parser.parse_args(argv)
    files = generate()
    if args.check:
        drift = diff(args.out, files)
        if drift:
            sys.stdout.write(drift)
            print("CRDs are out of date: run python -m steprun.api.crdgen", file=sys.stderr)
            return 1
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
