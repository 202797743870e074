"""The step's context: its environment, context.json, and the Secret of projected keys.

Environment precedence, lowest to highest:

1. operator defaults (``OperatorConfig.default_env``)
2. policy defaults (``SandboxDecision.env``, sandbox steps only)
3. workflow env (``spec.context.env``), then ``TRACEPARENT``/``TRACESTATE`` from
   ``spec.context.trace`` (the OpenTelemetry environment carrier), which win over it
4. step env (``spec.env``)
5. secret projections with ``as: env`` (values from the step's Secret)
6. reserved ``STEPRUN_*`` variables, set by the operator per attempt

Layers 1-4 are plain values delivered through the step's ConfigMap; layer 5 is delivered through
the step's Secret so values never touch the ConfigMap; layer 6 differs per attempt, so it is
written straight into the Pod. A ``STEPRUN_*`` name in layers 1-4 is dropped: the operator's
meaning of those names cannot be shadowed or pre-empted by configuration.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from typing import Any

from steprun.api.models import (
    MAX_INPUTS_BYTES,
    RESERVED_ENV_PREFIX,
    Permission,
    SecretProjection,
    StepRun,
)
from steprun.config import OperatorConfig
from steprun.policy.decision import SandboxDecision
from steprun.render.names import (
    COMPONENT_CONTEXT,
    LABEL_COMPONENT,
    child_labels,
    context_name,
    owner_reference,
)

CONTEXT_FILE_KEY = "context.json"
# spec.script travels as a file beside context.json: a command-line argument is capped at
# 128 KiB by Linux, and the kubelet would expand $(VAR) inside it.
SCRIPT_FILE_KEY = "script.sh"

ENV_NAME = "STEPRUN_NAME"
ENV_NAMESPACE = "STEPRUN_NAMESPACE"
ENV_ATTEMPT = "STEPRUN_ATTEMPT"
ENV_CONTEXT_FILE = "STEPRUN_CONTEXT_FILE"
ENV_SECRETS_DIR = "STEPRUN_SECRETS_DIR"
ENV_OUTPUT_FILE = "STEPRUN_OUTPUT_FILE"
ENV_WORKSPACE = "STEPRUN_WORKSPACE"
ENV_TRACEPARENT = "TRACEPARENT"
ENV_TRACESTATE = "TRACESTATE"


def context_file_path(config: OperatorConfig) -> str:
    return f"{config.context_mount_path.rstrip('/')}/{CONTEXT_FILE_KEY}"


def reserved_env(sr: StepRun, attempt: int, config: OperatorConfig) -> dict[str, str]:
    """The ``STEPRUN_*`` variables of one attempt (layer 6).

    ``STEPRUN_WORKSPACE`` (the first workspace's mount path, the directory the step works in)
    is set only for a step with workspaces.
    """
    env = {
        ENV_NAME: sr.name,
        ENV_NAMESPACE: sr.namespace,
        ENV_ATTEMPT: str(attempt),
        ENV_CONTEXT_FILE: context_file_path(config),
        ENV_SECRETS_DIR: config.secrets_mount_path,
        ENV_OUTPUT_FILE: config.output_file,
    }
    workspaces = sr.spec.workspace_list
    if workspaces:
        env[ENV_WORKSPACE] = posixpath.normpath(workspaces[0].path)
    return env


def trace_env(sr: StepRun) -> dict[str, str]:
    """TRACEPARENT and TRACESTATE of the step's trace context, when it has one."""
    trace = sr.spec.context.trace
    if trace is None:
        return {}
    env = {ENV_TRACEPARENT: trace.traceparent}
    if trace.tracestate:
        env[ENV_TRACESTATE] = trace.tracestate
    return env


def merged_env(
    sr: StepRun, config: OperatorConfig, decision: SandboxDecision | None = None
) -> dict[str, str]:
    """Layers 1-4 merged, reserved names dropped, keys sorted.

    ``context.json`` is dropped too: it is the ConfigMap key of the context document (and not a
    valid environment variable name under the API's rules anyway).
    """
    layers: list[Mapping[str, str]] = [
        config.default_env,
        decision.env if decision is not None else {},
        _author_env(sr.spec.context.env, decision),
        trace_env(sr),
        _author_env(sr.spec.env, decision),
    ]
    merged: dict[str, str] = {}
    for layer in layers:
        merged.update(layer)
    return {
        key: merged[key]
        for key in sorted(merged)
        if not key.startswith(RESERVED_ENV_PREFIX) and key != CONTEXT_FILE_KEY
    }


def _author_env(env: Mapping[str, str], decision: SandboxDecision | None) -> Mapping[str, str]:
    """A sandbox step's author env without the names its plugin does not accept (loader and
    interpreter hooks by default); a local step's author runs their own code anyway."""
    if decision is None:
        return env
    return {k: v for k, v in env.items() if decision.accepts_author_env(k)}


def secrets_allowed(decision: SandboxDecision | None) -> bool:
    """Local steps always get their secrets; sandbox steps only when secrets.read is granted."""
    return decision is None or decision.grants(Permission.SECRETS_READ)


def _projections(sr: StepRun, decision: SandboxDecision | None, as_: str) -> list[SecretProjection]:
    if not secrets_allowed(decision):
        return []
    # Keyed by name so a repeated name yields one env var / one file, the last one winning.
    by_name = {p.name: p for p in sr.spec.context.secrets if p.as_ == as_}
    return [by_name[name] for name in sorted(by_name)]


def env_secret_projections(
    sr: StepRun, decision: SandboxDecision | None = None
) -> list[SecretProjection]:
    """The ``as: env`` projections the step receives (none when secrets are not allowed).

    Reserved ``STEPRUN_*`` names are left out, as in every layer below the operator's own.
    """
    projections = _projections(sr, decision, "env")
    return [
        p
        for p in projections
        if not p.name.startswith(RESERVED_ENV_PREFIX)
        and (decision is None or decision.accepts_author_env(p.name))
    ]


def file_secret_projections(
    sr: StepRun, decision: SandboxDecision | None = None
) -> list[SecretProjection]:
    """The ``as: file`` projections the step receives (none when secrets are not allowed)."""
    return _projections(sr, decision, "file")


def needs_secret(sr: StepRun, decision: SandboxDecision | None = None) -> bool:
    """Whether the step gets its own Secret at all."""
    return bool(sr.spec.context.secrets) and secrets_allowed(decision)


def context_document(sr: StepRun) -> dict[str, Any]:
    """The content of context.json. Shared by all attempts, so nothing per-attempt is in it."""
    workflow = sr.spec.context.workflow
    document: dict[str, Any] = {
        "workflow": workflow.to_api() if workflow is not None else {},
        "inputs": sr.spec.context.inputs,
        "step": {"name": sr.name, "namespace": sr.namespace, "uid": sr.uid},
    }
    trace = sr.spec.context.trace
    if trace is not None:
        document["trace"] = trace.to_api()
    workspaces = sr.spec.workspace_list
    if workspaces:
        document["workspaces"] = {w.name: posixpath.normpath(w.path) for w in workspaces}
    return document


def inputs_problem(sr: StepRun) -> str | None:
    """The API contract bounds inputs at 256 KiB; the API server cannot check an object's
    serialized size (CEL does not see preserve-unknown-fields data), so the operator does."""
    size = len(
        json.dumps(sr.spec.context.inputs, separators=(",", ":"), ensure_ascii=False).encode()
    )
    if size <= MAX_INPUTS_BYTES:
        return None
    return (
        f"spec.context.inputs is {size} bytes serialized; at most {MAX_INPUTS_BYTES} "
        "(256 KiB) are allowed: pass large data by reference (a URL or a volume) instead"
    )


def _metadata(sr: StepRun) -> dict[str, Any]:
    return {
        "name": context_name(sr.name),
        "namespace": sr.namespace,
        "labels": {**child_labels(sr), LABEL_COMPONENT: COMPONENT_CONTEXT},
        "ownerReferences": [owner_reference(sr)],
    }


def runs_script(sr: StepRun, decision: SandboxDecision | None) -> bool:
    """Whether the Pod runs spec.script (a local script step, or builtin:shell)."""
    return sr.spec.script is not None and (decision is None or decision.runs_script)


def render_configmap(
    sr: StepRun, config: OperatorConfig, decision: SandboxDecision | None = None
) -> dict[str, Any]:
    """The step's ConfigMap: one key per non-secret env var, ``context.json``, and
    ``script.sh`` for a step given as a script.

    Immutable: the context must not change while the step runs, and kubelets stop watching
    immutable ConfigMaps, which matters with thousands of steps.
    """
    data = dict(merged_env(sr, config, decision))
    data[CONTEXT_FILE_KEY] = json.dumps(
        context_document(sr), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    if sr.spec.script is not None and runs_script(sr, decision):
        data[SCRIPT_FILE_KEY] = sr.spec.script
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(sr),
        "immutable": True,
        "data": data,
    }


def secret_sources(sr: StepRun) -> list[tuple[str, str]]:
    """The distinct (Secret name, key) pairs the step reads, in the order the spec lists them."""
    pairs = ((p.secret_key_ref.name, p.secret_key_ref.key) for p in sr.spec.context.secrets)
    return list(dict.fromkeys(pairs))


def resolve_secret_values(
    sr: StepRun, fetched: Mapping[str, Mapping[str, str] | None]
) -> tuple[dict[str, str], list[str]]:
    """Copies the projected keys out of the source Secrets.

    ``fetched`` maps each source Secret name to its ``data`` (base64, as the API returns it), or
    to None when the Secret does not exist; a name missing from ``fetched`` counts as not found.
    Returns the step Secret's data keyed by projection name (values still base64) and the
    problems found. Problems name Secrets and keys, never values.
    """
    data: dict[str, str] = {}
    problems: list[str] = []
    for projection in sr.spec.context.secrets:
        ref = projection.secret_key_ref
        source = fetched.get(ref.name)
        if source is None:
            problem = f'secret "{ref.name}" not found'
        elif ref.key not in source:
            problem = f'secret "{ref.name}" has no key "{ref.key}"'
        else:
            data[projection.name] = source[ref.key]
            continue
        if problem not in problems:
            problems.append(problem)
    return data, problems


def render_secret(sr: StepRun, data: Mapping[str, str]) -> dict[str, Any]:
    """The step's Secret: the projected keys only, base64 as given, immutable like the ConfigMap."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(sr),
        "immutable": True,
        "type": "Opaque",
        "data": {key: data[key] for key in sorted(data)},
    }
