"""What the API server checks on a new StepRun, checked here (``steprun render --validate``).

The checks are the CRD's own: its x-kubernetes-validations CEL rules, taken from the CRD the
models generate and evaluated with cel-python (with the Kubernetes functions they call,
isQuantity and isCIDR), plus the object name rules of the API server. Transition rules (those
reading ``oldSelf``) concern updates and are left out. The schema itself (types, lengths,
patterns, enums) is checked by the same pydantic models the CRD is generated from.
tests/cluster/test_cli_e2e.py shows the API server refusing every case these refuse.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import ValidationError

from steprun.api.models import DNS_SUBDOMAIN_PATTERN, StepRunSpec

# Property names CEL cannot spell are escaped (the Kubernetes escaping of structural schemas).
_CEL_RESERVED = frozenset(
    {
        *("as", "break", "const", "continue", "else", "false", "for", "function", "if"),
        *("import", "in", "let", "loop", "package", "namespace", "null", "return", "true"),
        *("var", "void", "while"),
    }
)
_MAX_NAME = 253
_GENERATE_NAME_SUFFIX = 5


@dataclass(frozen=True)
class Problem:
    field: str
    message: str


def escape_property(name: str) -> str:
    """A property name as CEL rules reach it (Kubernetes' escaping rules)."""
    if name in _CEL_RESERVED:
        return f"__{name}__"
    return (
        name.replace("__", "__underscores__")
        .replace(".", "__dot__")
        .replace("-", "__dash__")
        .replace("/", "__slash__")
    )


def _is_quantity(value: Any) -> Any:
    from celpy import celtypes

    # The operator's own parser: what it accepts is what the operator will accept.
    from steprun.policy.quantity import parse_quantity

    try:
        parse_quantity(str(value))
    except ValueError:
        return celtypes.BoolType(False)
    return celtypes.BoolType(True)


def _is_cidr(value: Any) -> Any:
    from celpy import celtypes

    try:
        ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        return celtypes.BoolType(False)
    return celtypes.BoolType("/" in str(value))


@lru_cache(maxsize=256)
def _program(rule: str) -> Any:
    import celpy

    environment = celpy.Environment()
    return environment.program(
        environment.compile(rule), functions={"isQuantity": _is_quantity, "isCIDR": _is_cidr}
    )


def _cel_value(schema: Mapping[str, Any], value: Any) -> Any:
    """``value`` with the property names of schema-declared objects escaped, for CEL."""
    if isinstance(value, dict):
        properties = schema.get("properties")
        if properties is not None:
            return {
                escape_property(k): _cel_value(properties.get(k, {}), v) for k, v in value.items()
            }
        inner = schema.get("additionalProperties")
        inner = inner if isinstance(inner, Mapping) else {}
        return {k: _cel_value(inner, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cel_value(schema.get("items") or {}, v) for v in value]
    return value


def with_defaults(schema: Mapping[str, Any], value: Any) -> Any:
    """``value`` with the schema's defaults filled in, as the API server does before validating."""
    if isinstance(value, dict):
        properties = schema.get("properties")
        if properties is not None:
            out = dict(value)
            for key, child in properties.items():
                if key not in out and "default" in child:
                    out[key] = child["default"]
                if key in out:
                    out[key] = with_defaults(child, out[key])
            return out
        inner = schema.get("additionalProperties")
        if isinstance(inner, Mapping):
            return {k: with_defaults(inner, v) for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [with_defaults(schema["items"], v) for v in value]
    return value


def _passes(rule: str, schema: Mapping[str, Any], value: Any) -> bool:
    import celpy
    from celpy.evaluation import CELEvalError

    try:
        activation = {"self": celpy.adapter.json_to_cel(_cel_value(schema, value))}
        result = _program(rule).evaluate(activation)
    except CELEvalError:
        # An evaluation error makes the API server refuse the object too.
        return False
    return bool(result)


def rule_problems(schema: Mapping[str, Any], value: Any, path: str) -> Iterator[Problem]:
    """Every CEL rule of ``schema`` (and of the schemas below it) that ``value`` breaks."""
    if value is None:
        return
    for rule in schema.get("x-kubernetes-validations") or []:
        if "oldSelf" in rule["rule"]:
            continue
        if not _passes(rule["rule"], schema, value):
            field = path + str(rule.get("fieldPath") or "")
            yield Problem(field, str(rule.get("message") or f"failed rule: {rule['rule']}"))
    if isinstance(value, dict):
        properties = schema.get("properties")
        if properties is not None:
            for key, child in value.items():
                if key in properties:
                    yield from rule_problems(properties[key], child, f"{path}.{key}")
        elif isinstance(schema.get("additionalProperties"), Mapping):
            for key, child in value.items():
                yield from rule_problems(schema["additionalProperties"], child, f"{path}[{key}]")
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, child in enumerate(value):
            yield from rule_problems(schema["items"], child, f"{path}[{index}]")


@lru_cache(maxsize=1)
def steprun_schema() -> Mapping[str, Any]:
    from steprun.api.crdgen import steprun_crd

    (version,) = steprun_crd()["spec"]["versions"]
    schema: Mapping[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def name_problems(metadata: Mapping[str, Any]) -> Iterator[Problem]:
    """The API server's rules for an object's name (a DNS subdomain) or generateName."""
    name, prefix = metadata.get("name"), metadata.get("generateName")
    if name:
        if len(str(name)) > _MAX_NAME or not re.match(DNS_SUBDOMAIN_PATTERN, str(name)):
            yield Problem(
                "metadata.name",
                f"{name!r} is not a valid name: at most {_MAX_NAME} lowercase letters, digits, "
                "'-' and '.', starting and ending with a letter or digit",
            )
    elif prefix:
        # The server appends 5 characters; the result must be a valid name.
        candidate = f"{prefix}{'x' * _GENERATE_NAME_SUFFIX}"
        if len(candidate) > _MAX_NAME or not re.match(DNS_SUBDOMAIN_PATTERN, candidate):
            yield Problem("metadata.generateName", f"{prefix!r} is not a valid name prefix")
    else:
        yield Problem("metadata.name", "name or generateName is required")


def schema_problems(spec: Any) -> Iterator[Problem]:
    try:
        StepRunSpec.model_validate(spec)
    except ValidationError as exc:
        from steprun.client.errors import schema_causes

        for cause in schema_causes(exc):
            yield Problem(cause.field, cause.message)


def steprun_problems(document: Mapping[str, Any]) -> list[Problem]:
    """Why the API server would refuse to create this StepRun (empty: it would not)."""
    schema = steprun_schema()
    problems = [*name_problems(document.get("metadata") or {})]
    spec = document.get("spec")
    if not isinstance(spec, Mapping):
        return [*problems, Problem("spec", "spec is required")]
    problems += schema_problems(spec)
    spec_schema = schema["properties"]["spec"]
    problems += rule_problems(spec_schema, with_defaults(spec_schema, dict(spec)), "spec")
    return problems


def document_problems(text: str) -> list[Problem]:
    """``steprun_problems`` of the StepRun in a manifest's text."""
    from steprun.cli.spec_args import SpecArgumentError, find_object, split_documents

    try:
        document, _ = find_object(split_documents(text), "StepRun")
    except SpecArgumentError as exc:
        return [Problem("(file)", str(exc))]
    return steprun_problems(document)
