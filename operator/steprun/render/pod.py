"""The Pod of one attempt of a StepRun.

Sandbox hardening (security context, runtime class, sandbox labels) is applied afterwards by the
sandbox renderer; this module only honours what the SandboxDecision says about the workload
itself: image, command and arguments (a CLI command's flags adapted from context.inputs),
timeout, resources, env and whether secrets are delivered.

Local Pods are hardened here (unless the operator's configuration turns it off): seccomp
RuntimeDefault, no privilege escalation, and no ServiceAccount token unless the step names a
serviceAccountName. In a namespace enforcing Pod Security "restricted" they are also made
restricted-compliant (non-root, every capability dropped), so they run there. podTemplate
labels and annotations reach a local Pod only under the admin's key patterns; a sandbox Pod
gets none of the podTemplate.
"""

from __future__ import annotations

from typing import Any

from steprun.api.models import Mode, StepRun
from steprun.config import OperatorConfig
from steprun.policy.decision import SandboxDecision
from steprun.policy.tenancy import allowed_metadata, matches_any
from steprun.render.context import (
    CONTEXT_FILE_KEY,
    SCRIPT_FILE_KEY,
    env_secret_projections,
    file_secret_projections,
    merged_env,
    reserved_env,
    runs_script,
)
from steprun.render.flags import FlagError, cli_arguments
from steprun.render.names import (
    ANNOTATION_TRACEPARENT,
    ANNOTATION_TRACESTATE,
    TRACKING_FINALIZER,
    context_name,
    is_reserved_key,
    owner_reference,
    pod_labels,
    pod_name,
)
from steprun.render.workspaces import WorkspaceError, default_working_dir, workspace_volumes

CONTAINER_NAME = "step"
SCRIPT_SHELL = "/bin/sh"
CONTEXT_VOLUME = "context"
SECRETS_VOLUME = "secrets"
# Owner-read only: with an fsGroup the kubelet adds group read, without one only the owner reads.
SECRET_FILE_MODE = 0o400
PSA_ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
# The identity of local Pods in a namespace enforcing "restricted" (which refuses root): the
# conventional "nonroot" user, so images whose USER is root still start.
RESTRICTED_UID = 65532
RESTRICTED_GID = 65532


class RenderError(ValueError):
    """The StepRun cannot be turned into a Pod; the message says which field to fix."""


def _image(sr: StepRun, decision: SandboxDecision | None) -> str:
    # A sandbox step runs the plugin's image, never one it names itself.
    image = decision.image if decision is not None else sr.spec.image
    if not image:
        raise RenderError("spec.image is required for local steps")
    return image


def script_path(config: OperatorConfig) -> str:
    return f"{config.context_mount_path}/{SCRIPT_FILE_KEY}"


def _entrypoint(
    sr: StepRun, config: OperatorConfig, decision: SandboxDecision | None
) -> dict[str, list[str]]:
    spec = sr.spec
    command: list[str] | None
    args: list[str] | None
    if decision is not None and decision.runs_script:
        # builtin:shell: the script runs like a local step's, in the policy's shell plugin.
        if spec.script is None:
            raise RenderError(f"spec.sandbox.uses {decision.uses} runs spec.script: set it")
        if spec.command or spec.args:
            raise RenderError("spec.script is exclusive with spec.command and spec.args")
        command, args = [SCRIPT_SHELL, script_path(config)], None
    elif decision is not None:
        if spec.script is not None or spec.command:
            raise RenderError(
                "a sandbox step runs its plugin's command: set spec.args, not script or command"
            )
        command = decision.command
        args = [*decision.args, *_author_arguments(sr, decision)]
    elif spec.script is not None:
        if spec.command or spec.args:
            raise RenderError("spec.script is exclusive with spec.command and spec.args")
        # The script reaches sh byte for byte from the ConfigMap (no argv limit, no $(VAR)).
        command, args = [SCRIPT_SHELL, script_path(config)], None
    else:
        command, args = spec.command, spec.args
    entrypoint: dict[str, list[str]] = {}
    if command:
        entrypoint["command"] = list(command)
    if args:
        entrypoint["args"] = list(args)
    return entrypoint


def _author_arguments(sr: StepRun, decision: SandboxDecision) -> list[str]:
    """The step's ``spec.args`` (after its adapted inputs, for a CLI command), made inert.

    The kubelet expands ``$(VAR)`` in args and turns ``$$`` into ``$``: doubling every ``$``
    makes them reach the plugin byte for byte, so an author cannot pull the plugin's env (its
    policy env, projected secrets) into its command line. The policy's own arguments, an
    admin's, keep the expansion.
    """
    arguments = list(sr.spec.args or [])
    if decision.adapts_inputs:
        try:
            arguments = cli_arguments(sr.spec.context.inputs, arguments)
        except FlagError as exc:
            raise RenderError(f"command {decision.cli_command}: {exc}") from exc
    return [argument.replace("$", "$$") for argument in arguments]


def _env(
    sr: StepRun, attempt: int, config: OperatorConfig, decision: SandboxDecision | None
) -> list[dict[str, Any]]:
    """Env entries; a name set by a later layer replaces (and moves to) that layer's entry."""
    source = context_name(sr.name)
    entries: dict[str, dict[str, Any]] = {}

    def put(entry: dict[str, Any]) -> None:
        entries.pop(entry["name"], None)
        entries[entry["name"]] = entry

    # The ConfigMap is the delivery channel of plain env, so the Pod references it key by key.
    for key in merged_env(sr, config, decision):
        put({"name": key, "valueFrom": {"configMapKeyRef": {"name": source, "key": key}}})
    for projection in env_secret_projections(sr, decision):
        ref = {"name": source, "key": projection.name}
        put({"name": projection.name, "valueFrom": {"secretKeyRef": ref}})
    for key, value in reserved_env(sr, attempt, config).items():
        put({"name": key, "value": value})
    return list(entries.values())


def _volumes(
    sr: StepRun, config: OperatorConfig, decision: SandboxDecision | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    source = context_name(sr.name)
    volumes: list[dict[str, Any]] = [
        {
            "name": CONTEXT_VOLUME,
            "configMap": {
                "name": source,
                "items": [
                    {"key": key, "path": key}
                    for key in (CONTEXT_FILE_KEY, SCRIPT_FILE_KEY)
                    if key == CONTEXT_FILE_KEY or runs_script(sr, decision)
                ],
            },
        }
    ]
    mounts: list[dict[str, Any]] = [
        {"name": CONTEXT_VOLUME, "mountPath": config.context_mount_path, "readOnly": True}
    ]
    files = file_secret_projections(sr, decision)
    if files:
        items = [{"key": p.name, "path": p.name, "mode": SECRET_FILE_MODE} for p in files]
        volumes.append({"name": SECRETS_VOLUME, "secret": {"secretName": source, "items": items}})
        mounts.append(
            {"name": SECRETS_VOLUME, "mountPath": config.secrets_mount_path, "readOnly": True}
        )
    try:
        workspace_vols, workspace_mounts = workspace_volumes(sr, config, decision)
    except WorkspaceError as error:
        raise RenderError(str(error)) from None
    return volumes + workspace_vols, mounts + workspace_mounts


def _container(
    sr: StepRun, attempt: int, config: OperatorConfig, decision: SandboxDecision | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    spec = sr.spec
    volumes, mounts = _volumes(sr, config, decision)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": _image(sr, decision),
        **_entrypoint(sr, config, decision),
    }
    working_dir = spec.working_dir or default_working_dir(sr)
    if working_dir:
        container["workingDir"] = working_dir
    container["env"] = _env(sr, attempt, config, decision)
    # A sandbox step's resources were merged with the policy's defaults and bounds at admission.
    resources = decision.resources if decision is not None else spec.resources
    if resources is not None and resources.to_api():
        container["resources"] = resources.to_api()
    container["volumeMounts"] = mounts
    container["terminationMessagePath"] = config.output_file
    # Only what the step deliberately writes to its output file reaches the status: a log tail
    # could carry a secret the step printed, and status is readable by anyone who can get it.
    container["terminationMessagePolicy"] = "File"
    return container, volumes


def enforces_restricted(namespace_labels: dict[str, str] | None) -> bool:
    """Whether a namespace with these labels enforces the Pod Security "restricted" profile."""
    return (namespace_labels or {}).get(PSA_ENFORCE_LABEL) == "restricted"


def author_metadata(
    sr: StepRun, config: OperatorConfig
) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """podTemplate labels and annotations that reach a local Pod, and the keys left off.

    A label can join a Service or match another workload's NetworkPolicy, an annotation can
    switch off mesh injection or trigger a secrets injector: only keys an admin allows pass.
    Only the operator writes steprun.dev/ keys (NetworkPolicies and watches select on them).
    """
    template = sr.spec.pod_template
    if template is None:
        return {}, {}, []
    labels, dropped_labels = allowed_metadata(template.labels, config.pod_label_keys)
    annotations, dropped_annotations = allowed_metadata(
        template.annotations, config.pod_annotation_keys
    )
    reserved = [k for k in [*labels, *annotations] if is_reserved_key(k)]
    labels = {k: v for k, v in labels.items() if not is_reserved_key(k)}
    annotations = {k: v for k, v in annotations.items() if not is_reserved_key(k)}
    dropped = [
        *(f"label {k}" for k in dropped_labels),
        *(f"annotation {k}" for k in dropped_annotations),
        *(f"reserved key {k}" for k in reserved),
    ]
    return labels, annotations, dropped


def _metadata(
    sr: StepRun, attempt: int, config: OperatorConfig, decision: SandboxDecision | None
) -> dict[str, Any]:
    if decision is None:
        labels, annotations, _ = author_metadata(sr, config)
    else:
        # Sandbox Pods carry only the operator's and the policy's labels.
        labels, annotations = {}, {}
    labels.update(pod_labels(sr, attempt))
    trace = sr.spec.context.trace
    if trace is not None:
        annotations[ANNOTATION_TRACEPARENT] = trace.traceparent
        if trace.tracestate:
            annotations[ANNOTATION_TRACESTATE] = trace.tracestate
    metadata: dict[str, Any] = {
        "name": pod_name(sr.name, attempt),
        "namespace": sr.namespace,
        "labels": labels,
    }
    if annotations:
        metadata["annotations"] = annotations
    metadata["ownerReferences"] = [owner_reference(sr)]
    metadata["finalizers"] = [TRACKING_FINALIZER]
    return metadata


def _scheduling(sr: StepRun, config: OperatorConfig, pod_spec: dict[str, Any]) -> None:
    """The podTemplate's nodeSelector and tolerations the admin allows (the rest is refused
    before rendering, by policy.tenancy.scheduling_refusals; this is the second line)."""
    template = sr.spec.pod_template
    if template is None:
        return
    selector = {
        k: v
        for k, v in sorted((template.node_selector or {}).items())
        if matches_any(k, config.node_selector_keys)
    }
    if selector:
        pod_spec["nodeSelector"] = selector
    tolerations = [
        {k: v for k, v in t.items() if v is not None}
        for t in template.tolerations or []
        if (t.get("key") and matches_any(str(t["key"]), config.toleration_keys))
        or (not t.get("key") and config.allow_wildcard_toleration)
    ]
    if tolerations:
        pod_spec["tolerations"] = tolerations


def _harden_local(pod_spec: dict[str, Any], config: OperatorConfig, restricted: bool) -> None:
    container = pod_spec["containers"][0]
    if config.local_pod_hardening or restricted:
        pod_spec["securityContext"] = {"seccompProfile": {"type": "RuntimeDefault"}}
        container["securityContext"] = {"allowPrivilegeEscalation": False}
    if config.local_pod_hardening:
        # The namespace's default ServiceAccount may have been granted rights for others, and
        # naming it needs no `use` permission at admission: only another account's token is
        # mounted (its use was checked against the creator).
        pod_spec["automountServiceAccountToken"] = pod_spec.get("serviceAccountName") not in (
            None,
            "default",
        )
    if restricted:
        pod_spec["securityContext"].update(
            runAsNonRoot=True,
            runAsUser=RESTRICTED_UID,
            runAsGroup=RESTRICTED_GID,
            fsGroup=RESTRICTED_GID,
        )
        container["securityContext"].update(runAsNonRoot=True, capabilities={"drop": ["ALL"]})


def grace_period_seconds(sr: StepRun, decision: SandboxDecision | None) -> int:
    """The step's grace period on cancel and timeout: a sandbox step's is capped by its policy."""
    asked = sr.spec.termination_grace_period_seconds
    if decision is not None and decision.termination_grace_period_seconds is not None:
        return min(asked, decision.termination_grace_period_seconds)
    return asked


def render_pod(
    sr: StepRun,
    attempt: int,
    config: OperatorConfig,
    decision: SandboxDecision | None = None,
    *,
    restricted: bool = False,
) -> dict[str, Any]:
    """The Pod of attempt ``attempt`` (1-based), ready to create.

    A sandbox step must be rendered with its SandboxDecision. ``restricted``: the namespace
    enforces Pod Security "restricted" (see ``enforces_restricted``). Raises RenderError for a
    spec that cannot run (the caller reports it as InvalidSpec).
    """
    spec = sr.spec
    if spec.mode == Mode.SANDBOX and decision is None:
        raise RenderError("a sandbox step is rendered only with its SandboxDecision")
    container, volumes = _container(sr, attempt, config, decision)
    timeout = spec.timeout_seconds or (
        decision.timeout_seconds if decision is not None else config.default_timeout_seconds
    )
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": timeout,
        "terminationGracePeriodSeconds": grace_period_seconds(sr, decision),
        "enableServiceLinks": False,
    }
    if decision is None and spec.service_account_name:
        pod_spec["serviceAccountName"] = spec.service_account_name
    if decision is None:
        _scheduling(sr, config, pod_spec)
    pod_spec["containers"] = [container]
    pod_spec["volumes"] = volumes
    if decision is None:
        _harden_local(pod_spec, config, restricted)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _metadata(sr, attempt, config, decision),
        "spec": pod_spec,
    }


# The scheduler weighs preferences 1-100; a retry away from a failing node is a strong wish,
# never a requirement: a one-node cluster still runs the step.
AVOID_NODE_WEIGHT = 100


def prefer_other_node(pod: dict[str, Any], node: str) -> dict[str, Any]:
    """``pod`` preferring any node but ``node`` (where the platform failed the previous
    attempt). Only a preference is added: every required term and nodeSelector the admin or
    the policy set is kept as it is."""
    spec = pod["spec"]
    affinity = spec.setdefault("affinity", {})
    node_affinity = affinity.setdefault("nodeAffinity", {})
    preferred = node_affinity.setdefault("preferredDuringSchedulingIgnoredDuringExecution", [])
    preferred.append(
        {
            "weight": AVOID_NODE_WEIGHT,
            "preference": {
                "matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": [node]}]
            },
        }
    )
    return pod
