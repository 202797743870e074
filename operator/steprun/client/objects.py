"""Pure helpers shared by the sync and async clients: request bodies, selectors, parsing."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from steprun.api.models import API_VERSION, StepRun, StepRunSpec
from steprun.client.errors import invalid_spec
from steprun.render.names import label_selector_for, workflow_labels

CANCEL_PATCH: dict[str, Any] = {"spec": {"cancel": True}}

# generateName gets 5 random characters appended and the result must stay a DNS label for the
# Pod names derived from it to stay readable (see render.names), so the prefix is kept short.
_MAX_GENERATE_NAME_PREFIX = 40
_NOT_NAME_CHARS = re.compile(r"[^a-z0-9-]+")


def coerce_spec(spec: StepRunSpec | Mapping[str, Any]) -> StepRunSpec:
    """A spec given as a mapping (camelCase or snake_case keys) validated into the model."""
    if isinstance(spec, StepRunSpec):
        return spec
    try:
        return StepRunSpec.model_validate(dict(spec))
    except ValidationError as error:
        raise invalid_spec(error) from None


def default_generate_name(spec: StepRunSpec) -> str:
    """A generateName prefix saying what runs: the image's short name, the plugin (and its
    handler or command), or "step".

    ``registry.example/tools/golang:1.22`` gives ``golang-``, ``uses: plugin:eslint/fix`` gives
    ``eslint-fix-``, ``uses: command:lint`` gives ``lint-``.
    """
    if spec.image:
        # Drop the digest, then the registry and repository path, then the tag.
        base = spec.image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
    elif spec.sandbox is not None and spec.sandbox.uses:
        base = spec.sandbox.uses.split(":", 1)[-1]
    elif spec.sandbox is not None and spec.sandbox.plugin:
        base = spec.sandbox.plugin
    else:
        base = "step"
    cleaned = _NOT_NAME_CHARS.sub("-", base.lower())[:_MAX_GENERATE_NAME_PREFIX].strip("-")
    return f"{cleaned or 'step'}-"


def steprun_body(
    spec: StepRunSpec,
    *,
    namespace: str,
    name: str | None = None,
    generate_name: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The object to POST. Without ``name`` or ``generate_name`` a prefix is derived from spec."""
    metadata: dict[str, Any] = {"namespace": namespace}
    if name:
        metadata["name"] = name
    else:
        metadata["generateName"] = generate_name or default_generate_name(spec)
    # The workflow labels win over caller labels: list() relies on them matching the spec.
    all_labels = {**(labels or {}), **workflow_labels(spec)}
    if all_labels:
        metadata["labels"] = all_labels
    return {
        "apiVersion": API_VERSION,
        "kind": "StepRun",
        "metadata": metadata,
        "spec": spec.to_api(),
    }


def same_spec(existing: StepRunSpec, requested: StepRunSpec) -> bool:
    """Whether an existing StepRun is the one being submitted again.

    ``cancel`` is a control switch, not part of what the step is: a step cancelled in the
    meantime is still the same step, so resubmitting it returns it rather than failing. The
    trace context is not either: an engine resubmitting after a restart runs in a new span.
    """
    ignore: dict[str, Any] = {"cancel": True, "context": {"trace"}}
    return existing.model_dump(exclude=ignore) == requested.model_dump(exclude=ignore)


def name_field_selector(name: str) -> str:
    return f"metadata.name={name}"


def steprun_field_selector(
    *, workflow: str | None = None, run_id: str | None = None, step_id: str | None = None
) -> str | None:
    """The field selector of ``list()`` (the CRD's selectableFields); None without a filter.

    Fields rather than labels: they select every StepRun, also those created with kubectl."""
    parts = [
        f"{path}={value}"
        for path, value in (
            ("spec.context.workflow.name", workflow),
            ("spec.context.workflow.runId", run_id),
            ("spec.context.workflow.stepId", step_id),
        )
        if value is not None
    ]
    return ",".join(parts) or None


def pod_label_selector(name: str) -> str:
    """Selects the Pods of every attempt of the StepRun ``name``."""
    return label_selector_for(name)


def parse_steprun(body: Any) -> StepRun:
    """A StepRun as read from the API, forward-compatibly: fields this version does not know
    (a newer CRD) are ignored, so one newer object never breaks a list or a wait."""
    try:
        return StepRun.from_body(body)
    except ValidationError as error:
        unknown = [e["loc"] for e in error.errors() if e["type"] == "extra_forbidden"]
        if not unknown:
            raise
        return parse_steprun(_without(body, unknown))


def _without(body: Any, paths: list[tuple[int | str, ...]]) -> Any:
    """A copy of ``body`` without the entries at ``paths`` (copied only along those paths)."""
    copy = dict(body)
    for path in paths:
        node: Any = copy
        for part in path[:-1]:
            child = node[part]
            child = dict(child) if isinstance(child, Mapping) else list(child)
            node[part] = child
            node = child
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return copy


def parse_steprun_list(body: Mapping[str, Any]) -> tuple[list[StepRun], str]:
    """The items of a StepRun list response and the list's resourceVersion (to watch from)."""
    items = [parse_steprun(item) for item in body.get("items") or []]
    metadata = body.get("metadata") or {}
    return items, str(metadata.get("resourceVersion") or "")
