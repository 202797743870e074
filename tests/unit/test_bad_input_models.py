"""Hundreds of invalid and borderline specs against the API models, checked by an oracle.

The oracle below restates the rules of the contract (``docs/api.md`` and the bounds the CRD
publishes) from scratch, without reading the models, so a bound changed by mistake in one place
shows up as a disagreement. It sorts each broken rule into one of two kinds:

* schema rules: types, bounds, patterns, unknown fields. The pydantic models enforce them, so
  the models must refuse a spec exactly when the oracle finds such a violation.
* API-only rules: rules across fields or over map keys (script vs command, mode vs image,
  reserved env names, duplicate list keys, quantities). Only the API server enforces them
  (CEL and list types in the generated CRD); the models accept such specs, and
  ``tests/cluster/test_bad_input.py`` checks that the API server refuses them.

The generators and the oracle are shared with that cluster test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from steprun.api.models import SandboxPolicySpec, StepRunSpec

Json = Any
Spec = dict[str, Any]

IMAGE = "steprun.local/step:1"

# The contract's bounds, restated (not imported) so the oracle stays independent of the models.
MAX_MAP_ENTRIES = 256
MAX_SECRETS = 64
MAX_LIST = 256
MAX_STRING = 32 * 1024
MAX_SCRIPT = 128 * 1024
MAX_SECONDS = 7 * 24 * 3600
MAX_RESOURCES = 32
MAX_QUANTITY = 64
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
# A Kubernetes resource quantity: a signed decimal and an optional suffix.
QUANTITY = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?\d+)?")
PERMISSIONS = ("network.egress", "secrets.read", "filesystem.writable")
# sandbox.uses: a workflow step's three forms; entry ids may hold / and :.
ENTRY_ID = r"[A-Za-z0-9]([-A-Za-z0-9_.:/]*[A-Za-z0-9])?"
# A plugin: a DNS label, or a scoped package name @scope/name (npm's lower-case names).
NPM_PART = r"[a-z0-9]([-a-z0-9._]*[a-z0-9])?"
PLUGIN_NAME = re.compile(rf"[a-z0-9]([-a-z0-9]*[a-z0-9])?|@{NPM_PART}/{NPM_PART}")
USES = re.compile(rf"plugin:({PLUGIN_NAME.pattern})/{ENTRY_ID}|command:{ENTRY_ID}|builtin:shell")
MAX_PLUGINS = 32
MAX_HANDLERS = 32
MAX_COMMANDS = 16
RESERVED = "STEPRUN_"


# ---------------------------------------------------------------- the oracle


@dataclass
class Verdict:
    """The rules a spec breaks, as paths under ``spec.`` (e.g. ``spec.retries.limit``)."""

    schema: list[str] = field(default_factory=list)
    api_only: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.schema and not self.api_only


def _is_int(value: Json) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_str(value: Json, max_len: int, pattern: re.Pattern[str] | None = None) -> bool:
    if not isinstance(value, str) or len(value) > max_len:
        return False
    return pattern is None or pattern.fullmatch(value) is not None


def _is_str_map(value: Json, max_entries: int | None = None) -> bool:
    return (
        isinstance(value, dict)
        and all(isinstance(v, str) for v in value.values())
        and (max_entries is None or len(value) <= max_entries)
    )


def _is_str_list(value: Json, max_items: int, max_len: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) <= max_items
        and all(_is_str(v, max_len) for v in value)
    )


def _int_in(lo: int, hi: int) -> Callable[[Json], bool]:
    return lambda v: _is_int(v) and lo <= v <= hi


def _check_object(
    value: Json,
    path: str,
    fields: Mapping[str, Callable[[Json], bool]],
    out: list[str],
    required: tuple[str, ...] = (),
) -> None:
    """A closed object: known fields each pass their check, required ones present."""
    if not isinstance(value, dict):
        out.append(path)
        return
    for key, item in value.items():
        check = fields.get(key)
        if check is None or not check(item):
            out.append(f"{path}.{key}")
    out.extend(f"{path}.{key}" for key in required if key not in value)


def _quantity_map_ok(value: Json) -> bool:
    return (
        isinstance(value, dict)
        and len(value) <= MAX_RESOURCES
        and all(_is_int(v) or _is_str(v, MAX_QUANTITY) for v in value.values())
    )


def _resources_ok(value: Json) -> bool:
    problems: list[str] = []
    _check_object(value, "r", {"requests": _quantity_map_ok, "limits": _quantity_map_ok}, problems)
    return not problems


def _secret_ok(value: Json) -> bool:
    problems: list[str] = []
    ref_fields = {
        "name": lambda v: _is_str(v, 253, DNS_SUBDOMAIN),
        "key": lambda v: _is_str(v, 253, SECRET_KEY),
    }
    fields: dict[str, Callable[[Json], bool]] = {
        "name": lambda v: _is_str(v, 253, ENV_NAME),
        "secretKeyRef": lambda v: _closed_ok(v, ref_fields, ("name", "key")),
        "as": lambda v: v in ("env", "file"),
    }
    _check_object(value, "s", fields, problems, required=("name", "secretKeyRef"))
    return not problems


def _closed_ok(
    value: Json, fields: Mapping[str, Callable[[Json], bool]], required: tuple[str, ...] = ()
) -> bool:
    problems: list[str] = []
    _check_object(value, "x", fields, problems, required)
    return not problems


def _label_value_ok(value: Json) -> bool:
    return _is_str(value, 63, LABEL_VALUE)


def _context_schema(value: Json, out: list[str]) -> None:
    workflow = {"name": _label_value_ok, "runId": _label_value_ok, "stepId": _label_value_ok}
    fields: dict[str, Callable[[Json], bool]] = {
        "workflow": lambda v: _closed_ok(v, workflow),
        "env": lambda v: _is_str_map(v, MAX_MAP_ENTRIES),
        "inputs": lambda v: isinstance(v, dict),
        "secrets": lambda v: (
            isinstance(v, list) and len(v) <= MAX_SECRETS and all(_secret_ok(s) for s in v)
        ),
    }
    _check_object(value, "spec.context", fields, out)


def _sandbox_ok(value: Json) -> bool:
    fields: dict[str, Callable[[Json], bool]] = {
        "policy": lambda v: _is_str(v, 253, DNS_SUBDOMAIN),
        "plugin": lambda v: _is_str(v, 128, PLUGIN_NAME),
        "uses": lambda v: _is_str(v, 256, USES),
        "permissions": lambda v: (
            isinstance(v, list) and len(v) <= 8 and all(p in PERMISSIONS for p in v)
        ),
    }
    return _closed_ok(value, fields)


def _pod_template_ok(value: Json) -> bool:
    fields: dict[str, Callable[[Json], bool]] = {
        "nodeSelector": _is_str_map,
        "tolerations": lambda v: (
            isinstance(v, list) and len(v) <= 64 and all(isinstance(t, dict) for t in v)
        ),
        "labels": _is_str_map,
        "annotations": _is_str_map,
    }
    return _closed_ok(value, fields)


_SPEC_FIELDS: dict[str, Callable[[Json], bool]] = {
    "mode": lambda v: v in ("local", "sandbox"),
    "image": lambda v: _is_str(v, 1024) and len(v) >= 1,
    "command": lambda v: _is_str_list(v, MAX_LIST, MAX_STRING),
    "args": lambda v: _is_str_list(v, MAX_LIST, MAX_STRING),
    "script": lambda v: _is_str(v, MAX_SCRIPT),
    "workingDir": lambda v: _is_str(v, 4096),
    "env": lambda v: _is_str_map(v, MAX_MAP_ENTRIES),
    "timeoutSeconds": _int_in(1, MAX_SECONDS),
    "startupTimeoutSeconds": _int_in(1, MAX_SECONDS),
    "terminationGracePeriodSeconds": _int_in(0, 3600),
    "cancel": lambda v: isinstance(v, bool),
    "retries": lambda v: _closed_ok(
        v, {"limit": _int_in(0, 20), "backoffSeconds": _int_in(0, 3600)}
    ),
    "resources": _resources_ok,
    "serviceAccountName": lambda v: _is_str(v, 253, DNS_SUBDOMAIN),
    "ttlSecondsAfterFinished": _int_in(0, MAX_SECONDS * 52),
    "podTemplate": _pod_template_ok,
    "sandbox": _sandbox_ok,
}


def _env_keys_api_only(env: Json, path: str, out: list[str]) -> None:
    if isinstance(env, dict) and any(
        not ENV_NAME.fullmatch(k) or k.startswith(RESERVED) for k in env
    ):
        out.append(path)


def _quantities_api_only(resources: Json, out: list[str]) -> None:
    if not isinstance(resources, dict):
        return
    for part in ("requests", "limits"):
        values = resources.get(part)
        if isinstance(values, dict) and any(
            isinstance(v, str) and not QUANTITY.fullmatch(v) for v in values.values()
        ):
            out.append(f"spec.resources.{part}")


def _secrets_api_only(secrets: Json, out: list[str]) -> None:
    if not isinstance(secrets, list):
        return
    names = [s.get("name") for s in secrets if isinstance(s, dict)]
    if len(names) != len(set(map(str, names))):
        out.append("spec.context.secrets")
    for s in secrets:
        if (
            isinstance(s, dict)
            and s.get("as", "env") == "env"
            and str(s.get("name", "")).startswith(RESERVED)
        ):
            out.append("spec.context.secrets[].name")


def step_verdict(spec: Json) -> Verdict:
    """What is wrong with a StepRun spec in wire form, per the contract."""
    verdict = Verdict()
    if not isinstance(spec, dict):
        verdict.schema.append("spec")
        return verdict
    for key, value in spec.items():
        if key == "context":
            _context_schema(value, verdict.schema)
            continue
        check = _SPEC_FIELDS.get(key)
        if check is None or not check(value):
            verdict.schema.append(f"spec.{key}")

    api = verdict.api_only
    mode = spec.get("mode", "local")
    if "script" in spec and ("command" in spec or "args" in spec):
        api.append("spec.script")
    if mode == "local" and "image" not in spec:
        api.append("spec.image")
    if mode == "sandbox":
        if "sandbox" not in spec:
            api.append("spec.sandbox")
        api.extend(f"spec.{f}" for f in ("image", "command", "serviceAccountName") if f in spec)
        sandbox = spec.get("sandbox")
        shell = isinstance(sandbox, dict) and sandbox.get("uses") == "builtin:shell"
        if ("script" in spec) != shell:
            api.append("spec.script")
        if isinstance(sandbox, dict) and ("plugin" in sandbox) == ("uses" in sandbox):
            api.append("spec.sandbox")
    elif "sandbox" in spec:
        api.append("spec.sandbox")
    _env_keys_api_only(spec.get("env"), "spec.env", api)
    context = spec.get("context")
    if isinstance(context, dict):
        _env_keys_api_only(context.get("env"), "spec.context.env", api)
        _secrets_api_only(context.get("secrets"), api)
    _quantities_api_only(spec.get("resources"), api)
    sandbox = spec.get("sandbox")
    if isinstance(sandbox, dict) and isinstance(sandbox.get("permissions"), list):
        permissions = [str(p) for p in sandbox["permissions"]]
        if len(permissions) != len(set(permissions)):
            api.append("spec.sandbox.permissions")
    return verdict


def _ports_ok(value: Json) -> bool:
    return isinstance(value, list) and len(value) <= 64 and all(_int_in(1, 65535)(p) for p in value)


def _egress_ok(value: Json) -> bool:
    return _closed_ok(
        value, {"cidr": lambda v: _is_str(v, 64), "ports": _ports_ok}, required=("cidr",)
    )


def _permissions_ok(value: Json) -> bool:
    return isinstance(value, list) and len(value) <= 8 and all(p in PERMISSIONS for p in value)


def _entries_ok(value: Json, with_args: bool) -> bool:
    """A plugin's handlers (with args; ids up to 128) or commands (ids up to 48)."""
    max_id, max_entries = (128, MAX_HANDLERS) if with_args else (48, MAX_COMMANDS)
    fields: dict[str, Callable[[Json], bool]] = {
        "id": lambda v: _is_str(v, max_id, re.compile(ENTRY_ID)),
        "command": lambda v: _is_str_list(v, MAX_LIST, MAX_STRING),
        "permissions": _permissions_ok,
    }
    if with_args:
        fields["args"] = lambda v: _is_str_list(v, MAX_LIST, MAX_STRING)
    return (
        isinstance(value, list)
        and len(value) <= max_entries
        and all(_closed_ok(e, fields, required=("id",)) for e in value)
    )


def _plugin_ok(value: Json) -> bool:
    fields: dict[str, Callable[[Json], bool]] = {
        "name": lambda v: _is_str(v, 128, PLUGIN_NAME),
        "image": lambda v: _is_str(v, 1024) and len(v) >= 1,
        "command": lambda v: _is_str_list(v, MAX_LIST, MAX_STRING),
        "permissions": _permissions_ok,
        "version": lambda v: _is_str(v, 128) and len(v) >= 1,
        "handlers": lambda v: _entries_ok(v, with_args=True),
        "commands": lambda v: _entries_ok(v, with_args=False),
    }
    return _closed_ok(value, fields, required=("name", "image"))


def _selector_ok(value: Json) -> bool:
    requirement = {
        "key": lambda v: isinstance(v, str),
        "operator": lambda v: v in ("In", "NotIn", "Exists", "DoesNotExist"),
        "values": lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
    }
    fields: dict[str, Callable[[Json], bool]] = {
        "matchLabels": _is_str_map,
        "matchExpressions": lambda v: (
            isinstance(v, list) and all(_closed_ok(r, requirement, ("key", "operator")) for r in v)
        ),
    }
    return _closed_ok(value, fields)


_POLICY_FIELDS: dict[str, Callable[[Json], bool]] = {
    "namespaceSelector": _selector_ok,
    "grants": lambda v: isinstance(v, list) and len(v) <= 8 and all(p in PERMISSIONS for p in v),
    "plugins": lambda v: (
        isinstance(v, list) and len(v) <= MAX_PLUGINS and all(_plugin_ok(p) for p in v)
    ),
    "maxTimeoutSeconds": _int_in(1, MAX_SECONDS),
    "defaultResources": _resources_ok,
    "maxResources": _quantity_map_ok,
    "runtimeClassName": lambda v: _is_str(v, 253),
    "egress": lambda v: isinstance(v, list) and len(v) <= 64 and all(_egress_ok(e) for e in v),
    "podLabels": _is_str_map,
    "env": lambda v: _is_str_map(v, MAX_MAP_ENTRIES),
    "shellPlugin": lambda v: _is_str(v, 128, PLUGIN_NAME),
}


def policy_verdict(spec: Json) -> Verdict:
    """What is wrong with a SandboxPolicy spec (schema rules only: the models' share)."""
    verdict = Verdict()
    _check_object(spec, "spec", _POLICY_FIELDS, verdict.schema)
    return verdict


# ---------------------------------------------------------------- generators

# Text that has broken parsers, shells, terminals and log pipelines before.
NASTY_TEXT = (
    "",
    " ",
    "ü",
    "é\n",
    "line1\nline2\n",
    "tab\there",
    "cr\r\nlf",
    "\x1b[31mred\x1b[0m",
    "emoji \U0001f680",
    "\u202eright-to-left",
    "zero\u200bwidth",
    "$(id)",
    "`id`",
    "'; rm -rf / #",
    '"quoted"',
    "\\",
    "%s%n%x",
    "{{.Values}}",
    "${HOME}",
    "a" * 63,
    "a" * 64,
)

ENV_KEYS = ("A", "LOG_LEVEL", "_x", "a1", "STEPRUN_NAME", "STEPRUN_X", "1A", "A-B", "é", "", "A\n")
SECRET_REF_NAMES = ("missing", "also-missing.x", "Bad_Name", "", "a" * 254)
SECRET_KEYS = ("token", "a.b-c_d", "bad/key", "", "ü")
QUANTITIES: tuple[Json, ...] = ("100m", "1Gi", "1.5", "1e3", "-1", "abc", "", "1GiB", 1, 0, 2.5)


def _text(*, max_size: int = 16) -> st.SearchStrategy[str]:
    return st.sampled_from(NASTY_TEXT) | st.text(max_size=max_size)


def _ints(*interesting: int) -> st.SearchStrategy[Json]:
    """Integers around the given bounds, plus values of the wrong JSON type."""
    edges = sorted({v + d for v in interesting for d in (-1, 0, 1)})
    wrong: list[Json] = ["5", 1.5, True, [1]]
    return st.sampled_from(edges) | st.sampled_from(wrong) | st.integers(-(2**31), 2**31)


def _maybe(strategy: st.SearchStrategy[Json]) -> st.SearchStrategy[Json]:
    """A field value, or the marker that leaves the field out."""
    return st.none().map(lambda _: _ABSENT) | strategy


_ABSENT = object()


def _drop_absent(fields: Mapping[str, Json]) -> Spec:
    return {k: v for k, v in fields.items() if v is not _ABSENT}


def _env_maps() -> st.SearchStrategy[Json]:
    keys = st.sampled_from(ENV_KEYS) | st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
    small = st.dictionaries(keys, _text(), max_size=4)
    return (
        small
        | st.just({f"V{i}": "x" for i in range(MAX_MAP_ENTRIES + 1)})
        | st.just({f"V{i}": "x" for i in range(MAX_MAP_ENTRIES)})
        | st.just({"A": 1})
        | st.just(["A=1"])
    )


def _secrets() -> st.SearchStrategy[Json]:
    projection = st.fixed_dictionaries(
        {
            "name": st.sampled_from(("TOKEN", "id_rsa", "STEPRUN_TOKEN", "1bad", "T")),
            "secretKeyRef": st.fixed_dictionaries(
                {"name": st.sampled_from(SECRET_REF_NAMES), "key": st.sampled_from(SECRET_KEYS)}
            )
            | st.just({"name": "missing"}),
        },
        optional={"as": st.sampled_from(("env", "file", "volume"))},
    )
    return st.lists(projection, max_size=3) | st.just(
        [
            {"name": f"S{i}", "secretKeyRef": {"name": "missing", "key": "k"}}
            for i in range(MAX_SECRETS + 1)
        ]
    )


def _inputs() -> st.SearchStrategy[Json]:
    leaves = st.none() | st.booleans() | st.integers() | _text()
    tree = st.recursive(
        leaves,
        lambda kids: st.lists(kids, max_size=3) | st.dictionaries(_text(), kids, max_size=3),
        max_leaves=8,
    )
    return st.dictionaries(_text(), tree, max_size=4) | st.just([1, 2]) | st.just("inputs")


def _context() -> st.SearchStrategy[Json]:
    workflow = st.fixed_dictionaries(
        {}, optional={"name": _text(), "runId": _text(), "stepId": _text()}
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "workflow": workflow,
            "env": _env_maps(),
            "inputs": _inputs(),
            "secrets": _secrets(),
            "bogus": st.just(1),
        },
    )


def _resources() -> st.SearchStrategy[Json]:
    quantities = st.dictionaries(
        st.sampled_from(("cpu", "memory", "ephemeral-storage")),
        st.sampled_from(QUANTITIES),
        max_size=2,
    )
    return st.fixed_dictionaries({}, optional={"requests": quantities, "limits": quantities})


def _sandbox() -> st.SearchStrategy[Json]:
    return st.fixed_dictionaries(
        {},
        optional={
            "policy": st.sampled_from(("fz-no-such-policy", "Bad_Policy", "")),
            "plugin": st.sampled_from(
                ("eslint", "Bad_Plugin", "a" * 64, "@kb-labs/quality", "@Kb/q", "@kb/", "a" * 129)
            ),
            "uses": st.sampled_from(
                (
                    "plugin:eslint/fix",
                    "plugin:eslint/notes/draft",
                    "plugin:@kb-labs/quality/check",
                    "plugin:@kb-labs/quality",
                    "plugin:@Kb/quality/check",
                    "command:mind:rag-index",
                    "builtin:shell",
                    "plugin:eslint",
                    "plugin:Bad/fix",
                    "command:",
                    "command:-lint",
                    "shell",
                )
            ),
            "permissions": st.lists(st.sampled_from((*PERMISSIONS, "root.shell")), max_size=3),
        },
    )


def _pod_template() -> st.SearchStrategy[Json]:
    string_map = st.dictionaries(_text(), _text(), max_size=2) | st.just({"a": 1})
    return st.fixed_dictionaries(
        {},
        optional={
            "labels": string_map,
            "annotations": string_map,
            "nodeSelector": string_map,
            "tolerations": st.just([{"operator": "Exists"}]) | st.just(["not-an-object"]),
        },
    )


def step_field_values(image: str = IMAGE) -> dict[str, st.SearchStrategy[Json]]:
    """Per spec field: values valid and invalid, nasty or borderline."""
    scripts = st.sampled_from(
        ("true", "exit 3", "echo ü; printf '%s' \"$A\"", "echo $(id)", "a" * (MAX_SCRIPT + 1))
    )
    string_lists = (
        st.lists(_text(), max_size=3)
        | st.just(["x" * (MAX_STRING + 1)])
        | st.just(["x"] * (MAX_LIST + 1))
        | st.just("sh")
    )
    return {
        "mode": st.sampled_from(("local", "sandbox", "Local", "", 1)),
        "image": st.sampled_from((image, "", " " + image, "x" * 1025, 5)),
        "command": string_lists,
        "args": string_lists,
        "script": scripts,
        "workingDir": st.sampled_from(("/tmp", "relative", "", "/" + "d" * 4096)),
        "env": _env_maps(),
        "context": _context(),
        "timeoutSeconds": _ints(1, MAX_SECONDS),
        "startupTimeoutSeconds": _ints(1, MAX_SECONDS),
        "terminationGracePeriodSeconds": _ints(0, 3600),
        "cancel": st.sampled_from((True, False, "true", 0)),
        "retries": st.fixed_dictionaries(
            {}, optional={"limit": _ints(0, 20), "backoffSeconds": _ints(0, 3600)}
        ),
        "resources": _resources(),
        "serviceAccountName": st.sampled_from(("default", "fz-missing-sa", "Bad", "")),
        "ttlSecondsAfterFinished": _ints(0, MAX_SECONDS * 52),
        "podTemplate": _pod_template(),
        "sandbox": _sandbox(),
        "unknownField": st.just("x"),
    }


def step_specs(image: str = IMAGE, max_changes: int = 3) -> st.SearchStrategy[Spec]:
    """StepRun specs in wire form: a runnable spec with up to ``max_changes`` fields set to
    values drawn from ``step_field_values`` (valid or not), so both sides of each rule appear."""
    values = step_field_values(image)

    @st.composite
    def build(draw: st.DrawFn) -> Spec:
        spec: Spec = {"image": image, "script": draw(st.sampled_from(("true", "exit 3")))}
        changed = draw(st.lists(st.sampled_from(sorted(values)), max_size=max_changes, unique=True))
        for name in changed:
            spec[name] = draw(values[name])
        for name in draw(st.lists(st.sampled_from(("image", "script")), max_size=1)):
            spec.pop(name, None)
        return spec

    return build()


def policy_specs() -> st.SearchStrategy[Spec]:
    """SandboxPolicy specs in wire form, each field sometimes broken."""
    plugin = st.fixed_dictionaries(
        {
            "name": st.sampled_from(("eslint", "Bad_Name", "", "@kb-labs/quality", "@kb-labs")),
            "image": images_for_plugins(),
        },
        optional={
            "command": st.lists(_text(), max_size=2) | st.just("eslint"),
            "permissions": st.lists(st.sampled_from((*PERMISSIONS, "root")), max_size=2),
            "version": st.sampled_from(("9.1.0", "", "v" * 129)),
            "handlers": st.lists(entry(with_args=True), max_size=2),
            "commands": st.lists(entry(with_args=False), max_size=2)
            | st.just([{"id": f"c{i}"} for i in range(MAX_COMMANDS + 1)]),
        },
    ) | st.just({"name": "no-image"})
    egress = st.fixed_dictionaries(
        {"cidr": st.sampled_from(("10.0.0.0/8", "not-a-cidr", "x" * 65))},
        optional={"ports": st.lists(_ints(1, 65535), max_size=2)},
    )
    requirement = st.fixed_dictionaries(
        {"key": _text(), "operator": st.sampled_from(("In", "Exists", "Matches"))},
        optional={"values": st.lists(_text(), max_size=2) | st.just("a")},
    )
    selector = st.fixed_dictionaries(
        {},
        optional={
            "matchLabels": st.dictionaries(_text(), _text(), max_size=2) | st.just({"a": 1}),
            "matchExpressions": st.lists(requirement, max_size=2),
        },
    )
    fields = {
        "namespaceSelector": _maybe(selector),
        "grants": _maybe(st.lists(st.sampled_from((*PERMISSIONS, "all")), max_size=9)),
        "plugins": _maybe(
            st.lists(plugin, max_size=3)
            | st.just([{"name": f"p{i}", "image": "x"} for i in range(MAX_PLUGINS + 1)])
        ),
        "maxTimeoutSeconds": _maybe(_ints(1, MAX_SECONDS)),
        "defaultResources": _maybe(_resources()),
        "maxResources": _maybe(
            st.dictionaries(st.sampled_from(("cpu", "memory")), st.sampled_from(QUANTITIES))
        ),
        "runtimeClassName": _maybe(st.sampled_from(("gvisor", "x" * 254, 7))),
        "egress": _maybe(st.lists(egress, max_size=2)),
        "podLabels": _maybe(st.dictionaries(_text(), _text(), max_size=2)),
        "env": _maybe(_env_maps()),
        "shellPlugin": _maybe(st.sampled_from(("eslint", "Bad_Shell", ""))),
        "bogus": _maybe(st.just(True)),
    }
    return st.fixed_dictionaries(fields).map(_drop_absent)


def entry(with_args: bool) -> st.SearchStrategy[Json]:
    """A plugin's handler (with args) or CLI command, each field sometimes broken."""
    optional: dict[str, st.SearchStrategy[Json]] = {
        "command": st.lists(_text(), max_size=2) | st.just("fix"),
        "permissions": st.lists(st.sampled_from((*PERMISSIONS, "root")), max_size=2),
        "bogus": st.just(1),
    }
    if with_args:
        optional["args"] = st.lists(_text(), max_size=2) | st.just(["x" * (MAX_STRING + 1)])
    ids = st.sampled_from(("fix", "notes/draft", "mind:rag-index", "", "-x", "x" * 49, "x" * 129))
    return st.fixed_dictionaries({"id": ids}, optional=optional) | st.just({"command": ["x"]})


def images_for_plugins() -> st.SearchStrategy[Json]:
    return st.sampled_from(("registry.example/eslint:9", "", "x" * 1025, 9))


# ---------------------------------------------------------------- the checks


FUZZ = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _wire_errors(model: type[StepRunSpec] | type[SandboxPolicySpec], spec: Json) -> set[str]:
    """Top-level fields pydantic refuses when the spec arrives as JSON, as the API sends it."""
    try:
        model.model_validate_json(json.dumps(spec), strict=True)
    except ValidationError as error:
        return {str(e["loc"][0]) if e["loc"] else "" for e in error.errors()}
    return set()


def _top_level(paths: list[str]) -> set[str]:
    return {p.removeprefix("spec.").split(".")[0].split("[")[0] for p in paths}


@FUZZ
@given(spec=step_specs())
def test_steprun_model_refuses_exactly_the_schema_violations(spec: Spec) -> None:
    verdict = step_verdict(spec)
    refused = _wire_errors(StepRunSpec, spec)
    assert refused == _top_level(verdict.schema), (verdict, refused)


@FUZZ
@given(spec=step_specs())
def test_lax_reading_agrees_with_the_wire_on_valid_specs(spec: Spec) -> None:
    """The operator reads bodies with the lax model; on a valid spec it must see what was sent."""
    if step_verdict(spec).schema:
        return
    wire = StepRunSpec.model_validate_json(json.dumps(spec), strict=True)
    assert StepRunSpec.model_validate(spec) == wire
    # Round trip: what the client would send back is the same spec, accepted again.
    assert StepRunSpec.model_validate(wire.to_api()) == wire


@FUZZ
@given(spec=step_specs())
def test_api_only_rules_are_left_to_the_api_server(spec: Spec) -> None:
    """Specs whose only faults are cross-field rules pass the models: the CRD's CEL rules and
    list types are the guard, and the cluster test shows the API server applies them."""
    verdict = step_verdict(spec)
    if verdict.schema or not verdict.api_only:
        return
    StepRunSpec.model_validate_json(json.dumps(spec), strict=True)


@FUZZ
@given(spec=policy_specs())
def test_policy_model_refuses_exactly_the_schema_violations(spec: Spec) -> None:
    verdict = policy_verdict(spec)
    refused = _wire_errors(SandboxPolicySpec, spec)
    assert refused == _top_level(verdict.schema), (verdict, refused)


BORDERLINE: list[tuple[str, Spec, bool]] = [
    ("minimal", {"image": IMAGE}, True),
    ("script at its bound", {"image": IMAGE, "script": "a" * MAX_SCRIPT}, True),
    ("script past its bound", {"image": IMAGE, "script": "a" * (MAX_SCRIPT + 1)}, False),
    ("arg at its bound", {"image": IMAGE, "args": ["a" * MAX_STRING] * 2}, True),
    ("257 args", {"image": IMAGE, "args": ["a"] * (MAX_LIST + 1)}, False),
    ("image of 1024", {"image": "i" * 1024}, True),
    ("image of 1025", {"image": "i" * 1025}, False),
    ("empty image", {"image": ""}, False),
    ("256 env vars", {"image": IMAGE, "env": {f"V{i}": "" for i in range(256)}}, True),
    ("257 env vars", {"image": IMAGE, "env": {f"V{i}": "" for i in range(257)}}, False),
    ("timeout 0", {"image": IMAGE, "timeoutSeconds": 0}, False),
    ("timeout of a week", {"image": IMAGE, "timeoutSeconds": MAX_SECONDS}, True),
    ("timeout past a week", {"image": IMAGE, "timeoutSeconds": MAX_SECONDS + 1}, False),
    ("timeout 2**64", {"image": IMAGE, "timeoutSeconds": 2**64}, False),
    ("timeout as text", {"image": IMAGE, "timeoutSeconds": "60"}, False),
    ("timeout as bool", {"image": IMAGE, "timeoutSeconds": True}, False),
    ("grace -1", {"image": IMAGE, "terminationGracePeriodSeconds": -1}, False),
    ("retries 21", {"image": IMAGE, "retries": {"limit": 21}}, False),
    ("run id newline", {"image": IMAGE, "context": {"workflow": {"runId": "42\n"}}}, False),
    ("run id of 63", {"image": IMAGE, "context": {"workflow": {"runId": "4" * 63}}}, True),
    ("run id of 64", {"image": IMAGE, "context": {"workflow": {"runId": "4" * 64}}}, False),
    ("unicode env value", {"image": IMAGE, "env": {"A": "ü\n\x00\u202e"}}, True),
    ("env value not text", {"image": IMAGE, "env": {"A": 1}}, False),
    (
        "secret without key",
        {"image": IMAGE, "context": {"secrets": [{"name": "T", "secretKeyRef": {"name": "s"}}]}},
        False,
    ),
    (
        "secret ref name with capitals",
        {
            "image": IMAGE,
            "context": {"secrets": [{"name": "T", "secretKeyRef": {"name": "S", "key": "k"}}]},
        },
        False,
    ),
    (
        "permission unknown",
        {"mode": "sandbox", "sandbox": {"plugin": "p", "permissions": ["x"]}},
        False,
    ),
    ("plugin and uses missing: the API server's rule", {"mode": "sandbox", "sandbox": {}}, True),
    ("uses without a handler", {"mode": "sandbox", "sandbox": {"uses": "plugin:eslint"}}, False),
    ("uses a handler path", {"mode": "sandbox", "sandbox": {"uses": "plugin:e/a/b"}}, True),
    ("uses a namespaced command", {"mode": "sandbox", "sandbox": {"uses": "command:a:b"}}, True),
    ("quantity as float", {"image": IMAGE, "resources": {"limits": {"cpu": 0.5}}}, False),
    ("unknown field", {"image": IMAGE, "imagePullPolicy": "Always"}, False),
    ("inputs not an object", {"image": IMAGE, "context": {"inputs": [1]}}, False),
]


@pytest.mark.parametrize(
    ("spec", "accepted"), [(s, a) for _, s, a in BORDERLINE], ids=[n for n, _, _ in BORDERLINE]
)
def test_borderline_specs(spec: Spec, accepted: bool) -> None:
    assert (not step_verdict(spec).schema) is accepted
    assert (not _wire_errors(StepRunSpec, spec)) is accepted


def test_the_oracle_knows_the_api_only_rules() -> None:
    """The oracle itself is checked on one clear case per API-only rule."""
    cases: list[tuple[Spec, str]] = [
        ({"image": IMAGE, "script": "x", "args": ["y"]}, "spec.script"),
        ({"script": "x"}, "spec.image"),
        ({"mode": "sandbox"}, "spec.sandbox"),
        ({"image": IMAGE, "sandbox": {"plugin": "p"}}, "spec.sandbox"),
        ({"mode": "sandbox", "sandbox": {"plugin": "p"}, "image": IMAGE}, "spec.image"),
        ({"mode": "sandbox", "sandbox": {}}, "spec.sandbox"),
        ({"mode": "sandbox", "sandbox": {"plugin": "p", "uses": "command:x"}}, "spec.sandbox"),
        ({"mode": "sandbox", "sandbox": {"plugin": "p"}, "script": "x"}, "spec.script"),
        ({"mode": "sandbox", "sandbox": {"uses": "builtin:shell"}}, "spec.script"),
        ({"image": IMAGE, "env": {"STEPRUN_NAME": "x"}}, "spec.env"),
        ({"image": IMAGE, "context": {"env": {"a-b": "x"}}}, "spec.context.env"),
        ({"image": IMAGE, "resources": {"limits": {"cpu": "lots"}}}, "spec.resources.limits"),
        (
            {"mode": "sandbox", "sandbox": {"plugin": "p", "permissions": ["secrets.read"] * 2}},
            "spec.sandbox.permissions",
        ),
    ]
    for spec, path in cases:
        verdict = step_verdict(spec)
        assert verdict.schema == [] and path in verdict.api_only, (spec, verdict)
