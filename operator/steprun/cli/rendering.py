"""What ``steprun render`` prints: the objects the operator would create for a StepRun.

It admits a sandbox step as the operator does, then prints ``plan_attempt``, the function the
operator creates its objects from, so what it prints is what the operator creates, given the
same operator configuration (read from the same STEPRUN_* variables) and namespace labels.
Only what needs the cluster differs: secret values are redacted, artifact inputs' object keys
are placeholders.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from steprun.api.models import Mode, Reason, SandboxPolicy, StepRun
from steprun.cli.output import dump_all_yaml
from steprun.cli.spec_args import (
    SpecArgumentError,
    find_object,
    split_documents,
)
from steprun.client.errors import causes_text, schema_causes
from steprun.config import OperatorConfig
from steprun.policy.admission import admit
from steprun.policy.decision import SandboxDecision
from steprun.reconcile.decide import node_to_avoid
from steprun.render.artifacts import (
    ResolvedInput,
    attempt_objects,
    needs_artifacts,
    render_urls_secret,
)
from steprun.render.attempt import plan_attempt
from steprun.render.pod import RenderError, enforces_restricted

PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"
REDACTED = "<redacted>"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
COMMENT_WIDTH = 98


class RenderRefused(Exception):
    """The step cannot be rendered; the message says why (admission denial, invalid spec)."""


@dataclass(frozen=True)
class Rendered:
    objects: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)


def load_steprun(text: str, namespace: str | None) -> tuple[StepRun, list[str]]:
    """The StepRun of a manifest, with what had to be made up noted (name, namespace, uid)."""
    document, others = _find(text, "StepRun")
    metadata = dict(document.get("metadata") or {})
    notes = [
        f"{other} in the file is not rendered: it is not made by the operator." for other in others
    ]
    if not metadata.get("name"):
        prefix = metadata.get("generateName")
        if not prefix:
            raise RenderRefused("the StepRun has neither metadata.name nor generateName")
        metadata["name"] = f"{prefix}xxxxx"
        notes.append(
            f"name {metadata['name']} stands for the name the API server generates from "
            f"generateName {prefix!r}."
        )
    metadata["namespace"] = namespace or metadata.get("namespace") or "default"
    if not metadata.get("uid"):
        metadata["uid"] = PLACEHOLDER_UID
        notes.append(
            f"uid {PLACEHOLDER_UID} is a placeholder: the file has none (the API server "
            "assigns it when the StepRun is created)."
        )
    try:
        steprun = StepRun.model_validate({**document, "metadata": metadata})
    except ValidationError as exc:
        raise RenderRefused(f"invalid StepRun: {causes_text(schema_causes(exc, ''))}") from exc
    return steprun, notes


def load_policy(text: str) -> SandboxPolicy:
    document, _ = _find(text, "SandboxPolicy")
    try:
        return SandboxPolicy.model_validate(document)
    except ValidationError as exc:
        raise RenderRefused(
            f"invalid SandboxPolicy: {causes_text(schema_causes(exc, ''))}"
        ) from exc


def render_step(
    steprun: StepRun,
    attempt: int,
    config: OperatorConfig,
    *,
    policy: SandboxPolicy | None = None,
    namespace_labels: Mapping[str, str] | None = None,
) -> Rendered:
    """The operator's objects for ``steprun``, in the order it creates them, secrets redacted."""
    if attempt < 1:
        raise RenderRefused(f"attempts are numbered from 1, got {attempt}")
    decision, notes = _decision(steprun, config, policy, namespace_labels)
    labels = _namespace_labels(steprun, namespace_labels)
    inputs = placeholder_inputs(steprun)
    if inputs:
        notes.append(
            "Each artifact input's object key and sha256 are shown as placeholders: the operator "
            "reads them from the producing StepRun's status.artifacts when the step starts."
        )
    try:
        plan = plan_attempt(
            steprun,
            attempt,
            config,
            decision,
            restricted=enforces_restricted(labels),
            inputs=inputs,
            avoid_node=node_to_avoid(steprun, attempt),
        )
    except (RenderError, ValueError) as exc:
        # The operator ends such a step Failed with reason InvalidSpec and this message.
        raise RenderRefused(f"the operator would fail this step (InvalidSpec): {exc}") from exc
    for claim in plan.claims:
        notes.append(
            f"PersistentVolumeClaim {claim['metadata']['name']} is created only by the first "
            "step of the run that needs it; later steps add themselves to its owners."
        )
    placeholders = {p.name: REDACTED for p in steprun.spec.context.secrets}
    objects = plan.objects(placeholders)
    if needs_artifacts(steprun):
        # Signed by the operator when the attempt starts (the store is not asked here).
        objects.insert(-1, _urls_secret(steprun, attempt, config, inputs))
        notes.append(
            "The artifact helpers' presigned URLs are shown redacted: the operator signs them "
            "when the attempt starts, one per object of the attempt."
        )
    return Rendered(objects=[_redacted(obj) for obj in objects], notes=notes)


def _urls_secret(
    steprun: StepRun, attempt: int, config: OperatorConfig, inputs: list[ResolvedInput]
) -> dict[str, Any]:
    objects = attempt_objects(steprun, attempt, config, inputs)
    return render_urls_secret(
        steprun,
        attempt,
        dict.fromkeys(objects.reads, REDACTED),
        dict.fromkeys(objects.writes, REDACTED),
    )


def placeholder_inputs(steprun: StepRun) -> list[ResolvedInput]:
    """The step's artifact inputs, with what only the producer's status says as placeholders."""
    spec = steprun.spec.artifacts
    return [
        ResolvedInput(
            name=item.name,
            key=f"<key of artifact {item.from_.artifact} of StepRun {item.from_.step_run}>",
            sha256=f"<sha256 of artifact {item.from_.artifact} of StepRun {item.from_.step_run}>",
            path=item.path,
        )
        for item in (spec.inputs if spec is not None else [])
    ]


def _redacted(obj: dict[str, Any]) -> dict[str, Any]:
    return redact_secret(obj) if obj.get("kind") == "Secret" else obj


def _namespace_labels(
    steprun: StepRun, namespace_labels: Mapping[str, str] | None
) -> dict[str, str]:
    labels = dict(namespace_labels or {})
    labels.setdefault(NAMESPACE_NAME_LABEL, steprun.namespace)
    return labels


def redact_secret(secret: Mapping[str, Any]) -> dict[str, Any]:
    """A Secret with every value replaced, whatever the renderer put there."""
    redacted = dict(secret)
    for key in ("data", "stringData"):
        if isinstance(secret.get(key), Mapping):
            redacted[key] = {name: REDACTED for name in secret[key]}
    return redacted


def format_rendered(steprun: StepRun, attempt: int, rendered: Rendered) -> str:
    header = [
        f"Objects the operator creates for steprun/{steprun.name} in namespace "
        f"{steprun.namespace}, attempt {attempt}, in creation order.",
        *rendered.notes,
    ]
    if any(obj.get("kind") == "Secret" for obj in rendered.objects):
        header.append(f"Secret values are shown as {REDACTED}; they are never read here.")
    comments = "".join(
        f"# {line}\n" for note in header for line in textwrap.wrap(note, COMMENT_WIDTH)
    )
    return comments + "---\n" + dump_all_yaml(rendered.objects)


def _decision(
    steprun: StepRun,
    config: OperatorConfig,
    policy: SandboxPolicy | None,
    namespace_labels: Mapping[str, str] | None,
) -> tuple[SandboxDecision | None, list[str]]:
    """The sandbox decision, as the operator reaches it (frozen one first, then admission)."""
    if steprun.spec.mode != Mode.SANDBOX:
        return None, []
    if steprun.status.admitted:
        note = "The sandbox decision is the one frozen in status.admitted."
        return SandboxDecision.from_status(steprun.status.admitted), [note]
    sandbox = steprun.spec.sandbox
    if policy is None:
        raise RenderRefused(
            "a sandbox step is admitted against a SandboxPolicy: give --policy FILE"
        )
    if sandbox is not None and policy.metadata.name != sandbox.policy:
        raise RenderRefused(
            f'the step asks for SandboxPolicy "{sandbox.policy}" but --policy holds '
            f'"{policy.metadata.name}"'
        )
    result = admit(steprun, policy, _namespace_labels(steprun, namespace_labels), config)
    if result.decision is None:
        reason = result.reason or Reason.PERMISSION_DENIED
        raise RenderRefused(f"the step would be Rejected ({reason}): {result.message}")
    return result.decision, [result.message[:1].upper() + result.message[1:] + "."]


def _find(text: str, kind: str) -> tuple[dict[str, Any], list[str]]:
    try:
        return find_object(split_documents(text), kind)
    except SpecArgumentError as exc:
        raise RenderRefused(str(exc)) from exc
