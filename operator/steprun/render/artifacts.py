"""What spec.artifacts adds to a step's Pod (pure).

The shape follows Tekton's and Argo's entrypoint design, so any image works. No credential of
the store ever enters the step's namespace: the operator presigns one URL per object of the
attempt (GET for each input, PUT for each output), valid for the attempt's longest possible
life, and puts them in a Secret of the attempt that only the helper containers reference:

- init container ``steprun-artifacts-in`` (helper image, input URLs): copies the helper binary
  into the ``steprun-artifacts`` volume, downloads each input, checks its sha256, unpacks it
  within the configured bounds (bytes, entries);
- the step's container runs ``steprun-artifacts run -- <its command>``: the command, then each
  output packed (tar+gzip) into the ``steprun-outputs`` volume; it gets no URL;
- container ``steprun-artifacts-out`` (helper image, output URLs) waits until the outputs are
  packed (or the step's container is gone) and uploads them, hashing as it streams.

Inputs appear at their paths through subPath mounts of the volume the init container filled.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import json
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from steprun.api.models import ArtifactStatus, StepRun
from steprun.artifacts.names import INIT_CONTAINER, UPLOAD_CONTAINER, artifact_key
from steprun.config import OperatorConfig
from steprun.render.names import (
    COMPONENT_CONTEXT,
    LABEL_ATTEMPT,
    LABEL_COMPONENT,
    artifact_urls_name,
    child_labels,
    owner_reference,
)

ARTIFACTS_VOLUME = "steprun-artifacts"
OUTPUTS_VOLUME = "steprun-outputs"
ARTIFACTS_DIR = "/var/run/steprun/artifacts"
OUTPUTS_DIR = "/var/run/steprun/outputs"
HELPER_BINARY = "/steprun-artifacts"
STEP_HELPER = f"{ARTIFACTS_DIR}/bin/steprun-artifacts"
# The helper streams: one 16 MiB part in flight, a few buffers besides.
HELPER_RESOURCES = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}}
# Places the operator mounts itself; an artifact there would hide or be hidden by them.
_RESERVED_DIRS = ("/var/run/steprun", "/dev", "/proc", "/sys")
# The key of the attempt's Secret holding its URLs, and the helper's variable reading it.
URLS_KEY = "urls"
URLS_ENV = "STEPRUN_ARTIFACTS_URLS"
# SigV4 presigned URLs live at most a week.
MAX_URL_LIFETIME_SECONDS = 7 * 24 * 3600
# Beyond the Pod's own bounds: the operator's clock against the store's, and the kubelet's
# moment between accepting the Pod and starting its deadline.
URL_LIFETIME_MARGIN_SECONDS = 300
# The helper binary, a few MiB, shares the inputs' scratch volume.
HELPER_ROOM_BYTES = 64 << 20
# The done marker and the upload socket, beside the packed outputs.
MARKER_ROOM_BYTES = 1 << 20


class ArtifactError(ValueError):
    """spec.artifacts cannot be honoured as written; the message says what to fix."""


@dataclass(frozen=True)
class ResolvedInput:
    name: str
    key: str
    sha256: str
    path: str


def resolve_inputs(
    sr: StepRun, producers: Mapping[str, StepRun | None]
) -> tuple[list[ResolvedInput], list[str]]:
    """Each input's object, from its producer's status.artifacts (producers by name; None or
    absent: no such StepRun). Returns the inputs and the problems, which name each input."""
    resolved: list[ResolvedInput] = []
    problems: list[str] = []
    spec = sr.spec.artifacts
    for item in spec.inputs if spec is not None else []:
        source = item.from_
        producer = producers.get(source.step_run)
        where = f'input "{item.name}": StepRun "{source.step_run}"'
        if producer is None:
            problems.append(f"{where} not found in namespace {sr.namespace}")
            continue
        found = _pick(producer.status.artifacts or [], source.artifact, source.attempt)
        if found is None:
            attempt = f" from attempt {source.attempt}" if source.attempt else ""
            have = sorted({a.name for a in producer.status.artifacts or []})
            detail = f" (it has: {', '.join(have)})" if have else " (it uploaded none)"
            problems.append(f'{where} has no artifact "{source.artifact}"{attempt}{detail}')
            continue
        resolved.append(ResolvedInput(item.name, found.key, found.sha256, item.path))
    return resolved, problems


def _pick(uploads: list[ArtifactStatus], name: str, attempt: int | None) -> ArtifactStatus | None:
    matching = [a for a in uploads if a.name == name and attempt in (None, a.attempt)]
    return max(matching, key=lambda a: a.attempt) if matching else None


def input_sources(sr: StepRun) -> list[str]:
    """Names of the StepRuns the inputs come from, each once, in spec order."""
    spec = sr.spec.artifacts
    return list(dict.fromkeys(i.from_.step_run for i in (spec.inputs if spec else [])))


def needs_artifacts(sr: StepRun) -> bool:
    spec = sr.spec.artifacts
    return spec is not None and bool(spec.outputs or spec.inputs)


def path_problems(sr: StepRun) -> list[str]:
    """Paths the helper cannot honour: not normalized, or inside a directory steprun mounts."""
    spec = sr.spec.artifacts
    if spec is None:
        return []
    problems = []
    entries: list[tuple[str, str]] = [(f"outputs[{o.name}]", o.path) for o in spec.outputs]
    entries += [(f"inputs[{i.name}]", i.path) for i in spec.inputs]
    for where, path in entries:
        clean = posixpath.normpath(path)
        if clean != path.rstrip("/") or clean == "/":
            problems.append(
                f"spec.artifacts.{where}.path {path!r} must be an absolute path without . or .."
            )
        elif any(clean == d or clean.startswith(d + "/") for d in _RESERVED_DIRS):
            problems.append(
                f"spec.artifacts.{where}.path {path!r} is inside {_reserved_of(clean)}, which "
                "steprun or the runtime mounts: choose another directory"
            )
    paths = [posixpath.normpath(i.path) for i in spec.inputs]
    for path in sorted({p for p in paths if paths.count(p) > 1}):
        problems.append(f"spec.artifacts.inputs: two inputs share the path {path!r}")
    return problems


def _reserved_of(path: str) -> str:
    return next(d for d in _RESERVED_DIRS if path == d or path.startswith(d + "/"))


def _json_arg(value: Any) -> str:
    # The kubelet expands $(VAR) in command lines; $$ is its escape for a literal $.
    return json.dumps(value, separators=(",", ":"), sort_keys=True).replace("$", "$$")


def _helper_env(secret_name: str) -> list[dict[str, Any]]:
    # A reference, not the value: readers of the Pod (a wider audience than readers of
    # Secrets) do not see the URLs.
    ref = {"secretKeyRef": {"name": secret_name, "key": URLS_KEY}}
    return [{"name": URLS_ENV, "valueFrom": ref}]


@dataclass(frozen=True)
class AttemptObjects:
    """The only objects one attempt may touch: inputs to read, outputs to write (name -> key)."""

    reads: dict[str, str]
    writes: dict[str, str]


def attempt_objects(
    sr: StepRun, attempt: int, config: OperatorConfig, inputs: list[ResolvedInput]
) -> AttemptObjects:
    spec = sr.spec.artifacts
    prefix = config.artifact_repository(sr.namespace).prefix
    outputs = spec.outputs if spec is not None else []
    return AttemptObjects(
        reads={i.name: i.key for i in inputs},
        writes={
            o.name: artifact_key(prefix, sr.namespace, sr.name, sr.uid, attempt, o.name)
            for o in outputs
        },
    )


def url_lifetime_seconds(sr: StepRun, pod: Mapping[str, Any], config: OperatorConfig) -> int:
    """How long the attempt's URLs stay valid: as long as its Pod may live (time to start,
    its deadline, its grace period), and no longer; a week at most (SigV4's limit)."""
    spec = pod.get("spec") or {}
    startup = sr.spec.startup_timeout_seconds or config.default_startup_timeout_seconds
    deadline = int(spec.get("activeDeadlineSeconds") or config.default_timeout_seconds)
    grace = int(spec.get("terminationGracePeriodSeconds") or 30)
    total = startup + deadline + grace + URL_LIFETIME_MARGIN_SECONDS
    return min(total, MAX_URL_LIFETIME_SECONDS)


def render_urls_secret(
    sr: StepRun, attempt: int, reads: Mapping[str, str], writes: Mapping[str, str]
) -> dict[str, Any]:
    """The attempt's Secret: presigned URLs by artifact name, read by the helper containers."""
    urls = {"inputs": dict(sorted(reads.items())), "outputs": dict(sorted(writes.items()))}
    text = json.dumps(urls, separators=(",", ":"), sort_keys=True)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": artifact_urls_name(sr.name, attempt),
            "namespace": sr.namespace,
            "labels": {
                **child_labels(sr),
                LABEL_COMPONENT: COMPONENT_CONTEXT,
                LABEL_ATTEMPT: str(attempt),
            },
            "ownerReferences": [owner_reference(sr)],
        },
        "immutable": True,
        "type": "Opaque",
        "data": {URLS_KEY: base64.b64encode(text.encode()).decode()},
    }


def _helper(name: str, config: OperatorConfig, command: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "image": config.artifacts_image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "resources": copy.deepcopy(HELPER_RESOURCES),
        "terminationMessagePolicy": "File",
        # The helper only moves files it can read as the step's user; it needs no capability,
        # and these are what Pod Security "restricted" asks of every container (the Pod-level
        # user and seccomp come from the step's own hardening).
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }


def _step_container(pod: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod["spec"]["containers"]
    return containers[0]


def add_artifacts(
    pod: dict[str, Any],
    sr: StepRun,
    attempt: int,
    config: OperatorConfig,
    inputs: list[ResolvedInput],
) -> dict[str, Any]:
    """A copy of the step's ``pod`` with the artifact helper wired in (the input is untouched).

    Raises ArtifactError when the step has outputs but no command to wrap (its image's own
    entrypoint cannot be known from the API).
    """
    spec = sr.spec.artifacts
    if spec is None or not (spec.outputs or spec.inputs):
        return pod
    out = copy.deepcopy(pod)
    pod_spec = out["spec"]
    step = _step_container(out)
    env = _helper_env(artifact_urls_name(sr.name, attempt))
    objects = attempt_objects(sr, attempt, config, inputs)
    max_bytes = str(config.artifacts_max_bytes)
    volumes: list[dict[str, Any]] = pod_spec.setdefault("volumes", [])
    mounts: list[dict[str, Any]] = step.setdefault("volumeMounts", [])

    # Bounded scratch space: what the inputs may unpack to, and the helper binary. Without a
    # sizeLimit an emptyDir fills the node's disk, and DiskPressure evicts other tenants' Pods.
    scratch = len(inputs) * config.artifacts_max_unpacked_bytes + HELPER_ROOM_BYTES
    volumes.append({"name": ARTIFACTS_VOLUME, "emptyDir": {"sizeLimit": str(scratch)}})
    init_command = [
        HELPER_BINARY,
        "init",
        "--max-bytes",
        max_bytes,
        "--max-unpacked-bytes",
        str(config.artifacts_max_unpacked_bytes),
        "--max-entries",
        str(config.artifacts_max_entries),
    ]
    if spec.outputs:
        init_command += ["--bin-dir", f"{ARTIFACTS_DIR}/bin"]
    if inputs:
        destinations = [
            {
                "name": i.name,
                "key": i.key,
                "sha256": i.sha256,
                "dest": f"{ARTIFACTS_DIR}/in/{n}",
            }
            for n, i in enumerate(inputs)
        ]
        init_command += ["--inputs", _json_arg(destinations)]
    init = _helper(INIT_CONTAINER, config, init_command)
    if inputs:
        init["env"] = env
    init["volumeMounts"] = [{"name": ARTIFACTS_VOLUME, "mountPath": ARTIFACTS_DIR}]
    pod_spec.setdefault("initContainers", []).append(init)
    for n, item in enumerate(inputs):
        mounts.append({"name": ARTIFACTS_VOLUME, "mountPath": item.path, "subPath": f"in/{n}"})

    if spec.outputs:
        command = step.get("command")
        if not command:
            raise ArtifactError(
                "spec.artifacts.outputs needs a command to run: set spec.command or spec.script "
                "(sandbox steps: a plugin with a command), because the image's own entrypoint "
                "cannot be wrapped"
            )
        listed = [{"name": o.name, "path": o.path} for o in spec.outputs]
        step["command"] = [
            STEP_HELPER,
            "run",
            "--dir",
            OUTPUTS_DIR,
            "--max-bytes",
            max_bytes,
            "--outputs",
            _json_arg(listed),
            "--",
            *command,
        ]
        mounts.append(
            {
                "name": ARTIFACTS_VOLUME,
                "mountPath": f"{ARTIFACTS_DIR}/bin",
                "subPath": "bin",
                "readOnly": True,
            }
        )
        mounts.append({"name": OUTPUTS_VOLUME, "mountPath": OUTPUTS_DIR})
        # Packing stops at max-bytes per output, so this is room enough.
        packed = len(spec.outputs) * config.artifacts_max_bytes + MARKER_ROOM_BYTES
        volumes.append({"name": OUTPUTS_VOLUME, "emptyDir": {"sizeLimit": str(packed)}})
        upload = _helper(
            UPLOAD_CONTAINER,
            config,
            [
                HELPER_BINARY,
                "upload",
                "--dir",
                OUTPUTS_DIR,
                "--max-bytes",
                max_bytes,
                f"--on-failure={'true' if spec.upload_on_failure else 'false'}",
                "--outputs",
                _json_arg(objects.writes),
            ],
        )
        upload["env"] = env
        upload["volumeMounts"] = [{"name": OUTPUTS_VOLUME, "mountPath": OUTPUTS_DIR}]
        pod_spec["containers"].append(upload)
    return out


def add_store_egress(
    network_policy: dict[str, Any], sr: StepRun, config: OperatorConfig
) -> dict[str, Any]:
    """A copy of a sandbox step's NetworkPolicy that also lets its Pod reach the store.

    A NetworkPolicy selects Pods, not containers, so the plugin's container can reach the store
    too, but without credentials (they are only in the helper containers). Only a store given
    by IP address can be expressed as an ipBlock; for a store named by DNS, the policy's own
    egress rules must allow it (docs/artifacts.md).
    """
    repository = config.artifact_repository(sr.namespace)
    if not needs_artifacts(sr) or not repository.enabled:
        return network_policy
    endpoint = urlparse(repository.endpoint)
    try:
        address = ipaddress.ip_address(endpoint.hostname or "")
    except ValueError:
        return network_policy
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    bits = 32 if address.version == 4 else 128
    rule = {
        "to": [{"ipBlock": {"cidr": f"{address}/{bits}"}}],
        "ports": [{"protocol": "TCP", "port": port}],
    }
    out = copy.deepcopy(network_policy)
    out["spec"].setdefault("egress", []).append(rule)
    return out
