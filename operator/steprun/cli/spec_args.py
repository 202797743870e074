"""From ``steprun run`` arguments to the StepRun to create (pure).

Flags are layered over an optional manifest (``-f``): ``--env`` and ``--input`` add or replace
keys, ``--secret`` and ``--workspace`` add or replace entries by name, ``--image``, a command,
``--script``, ``--timeout``, ``--retries``, ``--workflow`` and ``--run-id`` replace the
manifest's values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError

from steprun.api.models import Mode, StepRun, StepRunSpec
from steprun.client.errors import causes_text, schema_causes
from steprun.client.objects import default_generate_name

# generateName gets 5 characters appended; Pod names derive from the result (render.names).
_MAX_RERUN_PREFIX = 40


class SpecArgumentError(ValueError):
    """Arguments or a manifest that do not make a valid StepRun; the message says what to fix."""


@dataclass(frozen=True)
class RunRequest:
    """Everything ``submit`` needs: exactly one of ``name`` and ``generate_name`` is set."""

    spec: StepRunSpec
    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    # Other objects of the manifest file (e.g. "Secret credentials"), which are not created.
    skipped: tuple[str, ...] = ()


def split_assignment(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise SpecArgumentError(f"{flag} expects KEY=VALUE, got {text!r}")
    return key, value


def parse_env(items: Sequence[str]) -> dict[str, str]:
    return dict(split_assignment(item, "--env") for item in items)


def parse_inputs(items: Sequence[str]) -> dict[str, Any]:
    """``K=V`` sets a string; ``K:=JSON`` sets any JSON value (number, list, object...)."""
    inputs: dict[str, Any] = {}
    for item in items:
        key, value = split_assignment(item, "--input")
        if key.endswith(":"):
            try:
                inputs[key[:-1]] = json.loads(value)
            except ValueError as exc:
                raise SpecArgumentError(f"--input {item!r}: {value!r} is not JSON ({exc})") from exc
        else:
            inputs[key] = value
    return inputs


def parse_secret(text: str) -> dict[str, Any]:
    """``NAME=SECRET/KEY`` (an env var) or ``NAME=SECRET/KEY:file`` (a file), as API JSON."""
    name, ref = split_assignment(text, "--secret")
    as_ = "env"
    for suffix in (":file", ":env"):
        if ref.endswith(suffix):
            ref, as_ = ref[: -len(suffix)], suffix[1:]
    secret, slash, key = ref.partition("/")
    if not slash or not secret or not key:
        raise SpecArgumentError(f"--secret expects NAME=SECRET/KEY[:file], got {text!r}")
    return {"name": name, "secretKeyRef": {"name": secret, "key": key}, "as": as_}


_WORKSPACE_FLAGS = {"readOnly", "emptyDir"}
_WORKSPACE_KEYS = {
    "name",
    "claimName",
    "storage",
    "mountPath",
    "subPath",
    "readOnly",
    "accessMode",
    "storageClassName",
    "sizeLimit",
    "medium",
    "emptyDir",
}


def parse_workspace(text: str) -> dict[str, Any]:
    """``name=src,claimName=cache,readOnly`` and the like, as API JSON (see run --workspace)."""
    fields: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if key not in _WORKSPACE_KEYS:
            raise SpecArgumentError(
                f"--workspace {text!r}: unknown key {key!r} "
                f"(known: {', '.join(sorted(_WORKSPACE_KEYS))})"
            )
        if not sep and key not in _WORKSPACE_FLAGS:
            raise SpecArgumentError(f"--workspace {text!r}: {key} needs a value ({key}=...)")
        fields[key] = value if sep else "true"
    name = fields.pop("name", None)
    if not name:
        raise SpecArgumentError(f"--workspace {text!r}: give name=NAME")
    workspace: dict[str, Any] = {"name": name}
    for key in ("mountPath", "subPath"):
        if key in fields:
            workspace[key] = fields.pop(key)
    if "readOnly" in fields:
        workspace["readOnly"] = fields.pop("readOnly").lower() in ("true", "1", "yes")
    sources = [k for k in ("claimName", "storage", "emptyDir") if k in fields]
    if len(sources) != 1:
        raise SpecArgumentError(
            f"--workspace {text!r}: give exactly one of claimName=, storage= and emptyDir"
        )
    if "claimName" in fields:
        workspace["persistentVolumeClaim"] = {"claimName": fields.pop("claimName")}
    elif "storage" in fields:
        claim: dict[str, Any] = {"resources": {"requests": {"storage": fields.pop("storage")}}}
        if "accessMode" in fields:
            claim["accessModes"] = [fields.pop("accessMode")]
        if "storageClassName" in fields:
            claim["storageClassName"] = fields.pop("storageClassName")
        workspace["volumeClaimTemplate"] = {"spec": claim}
    else:
        fields.pop("emptyDir")
        empty_dir: dict[str, Any] = {}
        for key in ("sizeLimit", "medium"):
            if key in fields:
                empty_dir[key] = fields.pop(key)
        workspace["emptyDir"] = empty_dir
    if fields:
        raise SpecArgumentError(
            f"--workspace {text!r}: {', '.join(sorted(fields))} does not apply to this source"
        )
    return workspace


def split_run_words(
    before_dashdash: Sequence[str], after_dashdash: Sequence[str] | None, *, has_source: bool
) -> tuple[str | None, list[str]]:
    """Which positional words are the NAME and which the command.

    ``run NAME --image IMG -- CMD...``: with ``--``, at most one word before it, the NAME.
    ``run --image IMG CMD...``: without ``--``, the words are the command, unless the step comes
    from ``--script`` or ``-f`` (``has_source``): then a single word is the NAME.
    """
    if after_dashdash is not None:
        if len(before_dashdash) > 1:
            raise SpecArgumentError(
                f"expected at most one NAME before --, got {' '.join(before_dashdash)!r}"
            )
        return (before_dashdash[0] if before_dashdash else None), list(after_dashdash)
    if has_source:
        if len(before_dashdash) > 1:
            raise SpecArgumentError(
                "a command cannot be combined with --script or -f; "
                f"expected at most a NAME, got {' '.join(before_dashdash)!r}"
            )
        return (before_dashdash[0] if before_dashdash else None), []
    return None, list(before_dashdash)


@dataclass(frozen=True)
class Manifest:
    """The StepRun of a file; ``skipped`` describes the file's other objects, left alone."""

    metadata: dict[str, Any]
    spec: dict[str, Any]
    skipped: tuple[str, ...] = ()


def split_documents(text: str) -> list[dict[str, Any]]:
    """The objects of a YAML stream (``---`` separated), empty documents dropped."""
    from steprun.cli.context import source_name

    source = source_name(text)
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.MarkedYAMLError as exc:
        # PyYAML names a string "<unicode string>": name the file the user gave instead.
        for mark in (exc.context_mark, exc.problem_mark):
            if mark is not None:
                mark.name = source
        raise SpecArgumentError(f"{source} is not valid YAML: {exc}") from exc
    except yaml.YAMLError as exc:
        raise SpecArgumentError(f"{source} is not valid YAML: {exc}") from exc
    if not documents:
        raise SpecArgumentError(f"{source} is empty")
    if not all(isinstance(d, dict) for d in documents):
        raise SpecArgumentError(f"{source}: every YAML document must be an object (a mapping)")
    return documents


def find_object(documents: Sequence[dict[str, Any]], kind: str) -> tuple[dict[str, Any], list[str]]:
    """The one object of ``kind`` (a document without ``kind`` counts as one), and the others.

    A file may carry what the step needs besides (a Secret, say) the way examples do; those
    objects are described, not applied.
    """
    found = [d for d in documents if d.get("kind", kind) == kind]
    if len(found) != 1:
        held = "no" if not found else str(len(found))
        raise SpecArgumentError(f"the file holds {held} {kind} objects; expected exactly one")
    others = [
        f"{d.get('kind', '?')} {(d.get('metadata') or {}).get('name', '')}".strip()
        for d in documents
        if d is not found[0]
    ]
    return found[0], others


def load_manifest(text: str) -> Manifest:
    """A StepRun manifest, or just a StepRun spec, from a file's text."""
    documents = split_documents(text)
    only = documents[0]
    if len(documents) == 1 and not (
        "spec" in only and {"kind", "apiVersion", "metadata"} & only.keys()
    ):
        return Manifest(metadata={}, spec=only)
    document, others = find_object(documents, "StepRun")
    return Manifest(
        metadata=dict(document.get("metadata") or {}),
        spec=dict(document.get("spec") or {}),
        skipped=tuple(others),
    )


@dataclass(frozen=True)
class SpecFlags:
    """What ``steprun run``'s flags set, layered over the manifest's spec (see the module's
    docstring); an unset flag leaves the manifest's value."""

    image: str | None = None
    command: Sequence[str] = ()
    script: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    inputs: Mapping[str, Any] = field(default_factory=dict)
    secrets: Sequence[Mapping[str, Any]] = ()
    workspaces: Sequence[Mapping[str, Any]] = ()
    workflow: str | None = None
    run_id: str | None = None
    timeout: int | None = None
    retries: int | None = None


def build_run_request(
    *,
    manifest: Manifest | None = None,
    name: str | None = None,
    namespace: str | None = None,
    flags: SpecFlags = SpecFlags(),
) -> RunRequest:
    metadata, base = (manifest.metadata, manifest.spec) if manifest is not None else ({}, {})
    model = _validate(_layer(base, flags))
    chosen_name = name or metadata.get("name")
    return RunRequest(
        spec=model,
        name=chosen_name,
        generate_name=None
        if chosen_name
        else (metadata.get("generateName") or default_generate_name(model)),
        namespace=namespace or metadata.get("namespace"),
        labels={str(k): str(v) for k, v in (metadata.get("labels") or {}).items()},
        skipped=manifest.skipped if manifest is not None else (),
    )


def _layer(base: Mapping[str, Any], flags: SpecFlags) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(
        json.dumps(base)
    )  # a deep copy the caller's manifest never sees
    if flags.image is not None:
        spec["image"] = flags.image
    if flags.command and flags.script is not None:
        raise SpecArgumentError("give either a command or --script, not both")
    if flags.command:
        spec["command"] = list(flags.command)
        spec.pop("args", None)
        spec.pop("script", None)
    if flags.script is not None:
        spec["script"] = flags.script
        spec.pop("command", None)
        spec.pop("args", None)
    if flags.env:
        spec["env"] = {**(spec.get("env") or {}), **flags.env}
    context = spec.setdefault("context", {})
    if flags.inputs:
        context["inputs"] = {**(context.get("inputs") or {}), **flags.inputs}
    if flags.secrets:
        by_name = {s["name"]: s for s in context.get("secrets") or []}
        by_name.update({s["name"]: dict(s) for s in flags.secrets})
        context["secrets"] = list(by_name.values())
    if flags.workflow is not None or flags.run_id is not None:
        run = dict(context.get("workflow") or {})
        if flags.workflow is not None:
            run["name"] = flags.workflow
        if flags.run_id is not None:
            run["runId"] = flags.run_id
        context["workflow"] = run
    if flags.workspaces:
        by_workspace = {w["name"]: w for w in spec.get("workspaces") or []}
        by_workspace.update({w["name"]: dict(w) for w in flags.workspaces})
        spec["workspaces"] = list(by_workspace.values())
    if not context:
        del spec["context"]
    if flags.timeout is not None:
        spec["timeoutSeconds"] = flags.timeout
    if flags.retries is not None:
        spec["retries"] = {**(spec.get("retries") or {}), "limit": flags.retries}
    return spec


def _validate(spec: Mapping[str, Any]) -> StepRunSpec:
    try:
        model = StepRunSpec.model_validate(spec)
    except ValidationError as exc:
        raise SpecArgumentError(f"invalid step: {causes_text(schema_causes(exc))}") from exc
    if model.mode == Mode.LOCAL and not model.image:
        raise SpecArgumentError("a local step needs an image: give --image IMAGE (or -f FILE)")
    if model.script is not None and (model.command or model.args):
        raise SpecArgumentError("spec.script cannot be combined with command or args")
    return model


RERUN_OF_LABEL = "steprun.dev/rerun-of"


def rerun_request(old: StepRun, *, name: str | None = None) -> RunRequest:
    """A new StepRun with ``old``'s spec (not cancelled) and labels, marked as its rerun.

    Without ``name``, the API server generates one from ``old``'s name, so reruns of a step
    sort next to it.
    """
    from steprun.render.names import name_label_value

    spec = old.spec.model_copy(update={"cancel": False})
    labels = {**old.metadata.labels, RERUN_OF_LABEL: name_label_value(old.name)}
    prefix = old.name[:_MAX_RERUN_PREFIX].rstrip("-.") + "-"
    return RunRequest(
        spec=spec,
        name=name,
        generate_name=None if name else prefix,
        namespace=old.namespace,
        labels=labels,
    )
