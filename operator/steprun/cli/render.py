"""``steprun render``: the objects the operator would create for a StepRun, without a cluster
(or, with --dry-run=server, after asking the API server about the StepRun)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from steprun.cli import exit_codes
from steprun.cli.context import CliContext, UnreadableFile, add_command, read_source

if TYPE_CHECKING:
    from steprun.cli.context import SubParsers

HELP = """\
print the Pod, ConfigMap, Secret (and NetworkPolicy) of a StepRun

Print, as YAML, the objects the operator would create for a StepRun: its workspace claims,
Secret (values shown as <redacted>), ConfigMap, NetworkPolicy (sandbox steps) and the Pod of
one attempt, with the artifact helper (artifact inputs' object keys shown as placeholders).
They come from the function the operator creates them from. No cluster is needed. The
operator configuration is read from the STEPRUN_* environment variables, as the operator
reads it.

A sandbox step is admitted against --policy FILE (a SandboxPolicy manifest) unless the file
holds status.admitted (a step the operator already admitted); if the policy refuses it, the
denial is printed and the exit code is 2. Namespace labels for the policy's namespaceSelector
come from --namespace-label (default: kubernetes.io/metadata.name=<namespace>); with
pod-security.kubernetes.io/enforce=restricted the Pod is hardened as the operator hardens it
in such a namespace.

--validate first checks the StepRun as the API server would: its name, and every rule of the
CRD (the CEL rules generated with it: reserved env names, quantities, exclusive fields...);
each problem is printed with its field and the exit code is 2. --dry-run=server sends the
StepRun to the API server without storing it (schema, CEL rules, admission policies, defaults)
and renders what it returns; that needs a cluster.

examples:
  steprun render -f step.yaml
  steprun render -f step.yaml --attempt 2
  steprun render -f lint.yaml --policy default-policy.yaml --namespace-label team=web
  steprun render -f step.yaml --validate
  steprun render -f step.yaml --dry-run=server -n ci
  kubectl get sr build-42-lint -o yaml | steprun render -f -
"""


def register(
    subparsers: SubParsers,
    common: argparse.ArgumentParser,
) -> None:
    parser = add_command(subparsers, "render", common, HELP, render_command)
    parser.add_argument(
        "-f", "--filename", metavar="FILE", required=True, help='StepRun manifest ("-": stdin)'
    )
    parser.add_argument("--attempt", type=int, default=1, metavar="N", help="attempt (default 1)")
    parser.add_argument("--policy", metavar="FILE", help="SandboxPolicy manifest (sandbox steps)")
    parser.add_argument(
        "--namespace-label",
        action="append",
        default=[],
        metavar="K=V",
        help="a label of the step's namespace, for the policy's namespaceSelector",
    )
    parser.add_argument(
        "--validate",
        action="store_true",
        help="check the name and the CRD's validation rules first, as the API server would",
    )
    parser.add_argument(
        "--dry-run",
        choices=("none", "server"),
        default="none",
        help="server: ask the API server to validate and default the StepRun (not stored)",
    )


def _server_view(ctx: CliContext, text: str) -> str:
    """The StepRun of ``text`` as the API server would store it, as YAML."""
    from steprun.cli.output import dump
    from steprun.cli.rendering import RenderRefused
    from steprun.cli.spec_args import SpecArgumentError, find_object, split_documents

    try:
        document, _ = find_object(split_documents(text), "StepRun")
    except SpecArgumentError as exc:
        raise RenderRefused(str(exc)) from exc
    body: dict[str, Any] = {"apiVersion": "steprun.dev/v1alpha1", "kind": "StepRun", **document}
    metadata = dict(body.get("metadata") or {})
    metadata["namespace"] = (
        getattr(ctx.args, "namespace", None) or metadata.get("namespace") or ctx.namespace
    )
    for served_only in (
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "generation",
        "managedFields",
    ):
        metadata.pop(served_only, None)
    body["metadata"] = metadata
    body.pop("status", None)
    return dump(ctx.client().dry_run_create(body), "yaml")


def render_command(args: argparse.Namespace, ctx: CliContext) -> int:
    from steprun.cli.rendering import (
        Rendered,
        RenderRefused,
        format_rendered,
        load_policy,
        load_steprun,
        render_step,
    )
    from steprun.cli.spec_args import SpecArgumentError, split_assignment
    from steprun.config import OperatorConfig

    try:
        text = read_source(args.filename)
        if args.validate:
            from steprun.cli.validation import document_problems

            problems = document_problems(text)
            if problems:
                ctx.err("error: the API server would refuse this StepRun:")
                for problem in problems:
                    ctx.err(f"  {problem.field}: {problem.message}")
                return exit_codes.USAGE
        if args.dry_run == "server":
            text = _server_view(ctx, text)
        steprun, notes = load_steprun(text, getattr(args, "namespace", None))
        policy = load_policy(read_source(args.policy)) if args.policy else None
        labels = dict(split_assignment(item, "--namespace-label") for item in args.namespace_label)
        rendered = render_step(
            steprun, args.attempt, OperatorConfig(), policy=policy, namespace_labels=labels
        )
    except (RenderRefused, SpecArgumentError, UnreadableFile) as exc:
        ctx.err(f"error: {exc}")
        return exit_codes.USAGE
    full = Rendered(objects=rendered.objects, notes=[*notes, *rendered.notes])
    ctx.stdout.write(format_rendered(steprun, args.attempt, full))
    return exit_codes.OK
