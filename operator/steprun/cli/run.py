"""``steprun run``: create a StepRun, stream its logs, exit with its exit code."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from steprun.cli import exit_codes
from steprun.cli.context import CliContext, UnreadableFile, add_command, read_source

if TYPE_CHECKING:
    from steprun.api.models import StepRun
    from steprun.cli.context import SubParsers
    from steprun.cli.spec_args import RunRequest
    from steprun.client import LogEvent, StepRunClient

HELP = f"""\
create a step, stream its logs, exit with its exit code

Create a StepRun, show its progress and logs, and exit with the step's exit code.

The step is given by an image and a command, an image and a script, or a manifest (-f FILE,
a StepRun or just its spec; "-" reads stdin); flags are applied over the manifest. Without a
NAME, one is generated from the image. While the Pod is pending, what it waits for is shown on
stderr; the logs go to stdout, following retries. Ctrl-C cancels the step (spec.cancel) and
waits until it is Cancelled; a second Ctrl-C stops waiting.

Put the command after "--" when it has options of its own, or when naming the step.

examples:
  # steprun.local/step:1 is the local cluster's busybox: use any image your cluster can pull
  steprun run --image steprun.local/step:1 -- sh -c 'echo hello'
  steprun run build-42-lint --image steprun.local/step:1 --env CI=true -l team=web -- \\
      sh -c 'echo "linting as $STEPRUN_NAME"'
  steprun run --image steprun.local/step:1 --script 'sleep 5; date' --timeout 10m --rm
  steprun run --image steprun.local/step:1 --input branch=main --input 'retries:=3' \\
      --secret TOKEN=gh/token --secret id_rsa=ssh/key:file --script 'cat "$STEPRUN_CONTEXT_FILE"'
  steprun run -f step.yaml --retries 2 --detach
  steprun run --image steprun.local/step:1 --dry-run=client -o yaml -- echo hi
  steprun run --image steprun.local/step:1 --workflow build --run-id 42 \\
      --workspace name=src,storage=1Gi --workspace name=cache,claimName=ci-cache,readOnly \\
      --script 'ls /workspace/cache > list.txt'

{exit_codes.EXIT_CODES_HELP}"""

# Kept here, not in spec_args: building the parser must not import pydantic or yaml.
WORKSPACE_HELP = (
    "NAME plus one source: claimName=PVC (an existing claim), storage=SIZE (a claim shared by "
    "the workflow run: needs --workflow and --run-id) or emptyDir; options mountPath=, subPath=, "
    "readOnly, accessMode=, storageClassName=, sizeLimit=, medium="
)


def _whole_seconds(value: str) -> int:
    """argparse type of --timeout: a duration (bare seconds too), rounded up to seconds."""
    import math

    from steprun.cli.commands import seconds

    return math.ceil(seconds(value))


def _labels(items: list[str]) -> dict[str, str]:
    from steprun.cli.spec_args import split_assignment

    return dict(
        split_assignment(part, "--labels")
        for item in items
        for part in item.split(",")
        if part.strip()
    )


def register(subparsers: SubParsers, common: argparse.ArgumentParser) -> None:
    parser = add_command(subparsers, "run", common, HELP, run_command)
    parser.add_argument(
        "words",
        nargs="*",
        metavar="[NAME] CMD",
        help="the StepRun's name (before --) and the command to run (after --)",
    )
    parser.add_argument("--name", help="the StepRun's name (default: generated from the image)")
    parser.add_argument("--image", help="container image of the step")
    parser.add_argument("--script", help='shell script run with /bin/sh -c ("-" reads stdin)')
    parser.add_argument(
        "-f", "--filename", metavar="FILE", help='StepRun manifest or spec ("-" reads stdin)'
    )
    # Repeatable flags: each adds one entry.
    for flag, metavar, text in (
        ("--env", "K=V", "environment variable"),
        ("--input", "K=V", "context input: K=V sets a string, K:=JSON any JSON value"),
        (
            "--secret",
            "NAME=SECRET/KEY[:file]",
            "project a key of an existing Secret as env var NAME (or as file NAME)",
        ),
        (
            "--workspace",
            "name=NAME,SOURCE[,OPTION...]",
            "mount a workspace (spec.workspaces): " + WORKSPACE_HELP,
        ),
    ):
        parser.add_argument(flag, action="append", default=[], metavar=metavar, help=text)
    parser.add_argument("--workflow", metavar="NAME", help="context.workflow.name of the step")
    parser.add_argument("--run-id", metavar="ID", help="context.workflow.runId of the step")
    parser.add_argument(
        "--timeout",
        type=_whole_seconds,
        metavar="DURATION",
        help="timeoutSeconds of the step: 600, 90s, 10m, 1h (as wait --timeout reads it)",
    )
    parser.add_argument(
        "-l",
        "--labels",
        action="append",
        default=[],
        metavar="K=V[,K=V]",
        help="labels of the StepRun (over the manifest's), as kubectl run -l",
    )
    parser.add_argument(
        "--rm",
        action="store_true",
        help="delete the StepRun once it has ended and its logs were shown (not with --detach)",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=("yaml", "json"),
        default="yaml",
        help="the format of --dry-run's object (default yaml)",
    )
    parser.add_argument("--retries", type=int, metavar="N", help="retries of a failed attempt")
    parser.add_argument("--no-logs", action="store_true", help="do not stream logs, just wait")
    parser.add_argument(
        "--detach", action="store_true", help="print the StepRun's name and exit after creating it"
    )
    parser.add_argument(
        "--dry-run",
        choices=("none", "client", "server"),
        default="none",
        help="only print the StepRun: as built here (client) or as the API server would store "
        "it after its validation and admission (server); nothing is created",
    )


def request_from_args(args: argparse.Namespace) -> RunRequest:
    """The StepRun that the arguments describe (raises SpecArgumentError)."""
    from steprun.cli.spec_args import (
        SpecFlags,
        build_run_request,
        load_manifest,
        parse_env,
        parse_inputs,
        parse_secret,
        parse_workspace,
        split_run_words,
    )

    manifest = None
    if args.filename:
        manifest = load_manifest(read_source(args.filename))
    script = read_source("-") if args.script == "-" else args.script
    has_source = script is not None or manifest is not None
    name, command = split_run_words(
        args.words, getattr(args, "after_dashdash", None), has_source=has_source
    )
    if name and args.name and name != args.name:
        from steprun.cli.spec_args import SpecArgumentError

        raise SpecArgumentError(f"two names given: {name!r} and --name {args.name!r}")
    flags = SpecFlags(
        image=args.image,
        command=command,
        script=script,
        env=parse_env(args.env),
        inputs=parse_inputs(args.input),
        secrets=[parse_secret(s) for s in args.secret],
        workspaces=[parse_workspace(w) for w in args.workspace],
        workflow=args.workflow,
        run_id=args.run_id,
        timeout=args.timeout,
        retries=args.retries,
    )
    request = build_run_request(
        manifest=manifest,
        name=name or args.name,
        namespace=getattr(args, "namespace", None),
        flags=flags,
    )
    request.labels.update(_labels(getattr(args, "labels", [])))
    return request


def run_command(args: argparse.Namespace, ctx: CliContext) -> int:
    from steprun.cli.spec_args import SpecArgumentError

    try:
        request = request_from_args(args)
    except (SpecArgumentError, UnreadableFile) as exc:
        ctx.err(f"error: {exc}")
        return exit_codes.USAGE
    for skipped in request.skipped:
        ctx.err(f"note: {skipped} in {args.filename} is not created; steprun creates the StepRun")
    if args.dry_run != "none":
        return dry_run(ctx, request, server=args.dry_run == "server", output=args.output)
    if args.rm and args.detach:
        ctx.err("error: --rm cannot be used with --detach (nothing would be left to delete it)")
        return exit_codes.USAGE
    client = ctx.client()
    namespace = request.namespace or client.namespace
    return create_and_follow(
        ctx,
        client,
        request,
        namespace,
        detach=args.detach,
        show_logs=not args.no_logs,
        remove=args.rm,
    )


def create_and_follow(
    ctx: CliContext,
    client: StepRunClient,
    request: RunRequest,
    namespace: str,
    *,
    detach: bool,
    show_logs: bool,
    note: str = "",
    remove: bool = False,
) -> int:
    """Creates the StepRun, then prints its name (``detach``) or follows it to its end and
    returns its exit code; ``note`` ends the line that says it was created."""
    try:
        handle = client.submit(
            request.spec,
            name=request.name,
            generate_name=request.generate_name,
            namespace=namespace,
            labels=request.labels,
        )
    except KeyboardInterrupt:
        ctx.err("interrupted")
        return exit_codes.CANCELLED
    if detach:
        ctx.out(handle.name)
        return exit_codes.OK
    ctx.err(f"steprun/{handle.name} created in namespace {namespace}{note}")
    code = follow_step(ctx, client, handle.name, namespace, show_logs=show_logs)
    if remove:
        client.delete(handle.name, namespace=namespace)
        ctx.err(f"steprun/{handle.name} deleted")
    return code


def dry_run(ctx: CliContext, request: RunRequest, *, server: bool, output: str = "yaml") -> int:
    """Prints the StepRun instead of creating it (``server``: as the API server returns it)."""
    from steprun.cli.output import dump
    from steprun.client.objects import steprun_body

    namespace = request.namespace or (ctx.namespace if server else "default")
    body = steprun_body(
        request.spec,
        namespace=namespace,
        name=request.name,
        generate_name=request.generate_name,
        labels=request.labels,
    )
    if server:
        body = ctx.client().dry_run_create(body)
    ctx.stdout.write(dump(body, output))
    return exit_codes.OK


def follow_step(
    ctx: CliContext, client: StepRunClient, name: str, namespace: str, *, show_logs: bool
) -> int:
    """Streams logs (or just waits) until the step ends; Ctrl-C cancels it."""
    try:
        if show_logs:
            for event in client.log_events(name, namespace=namespace, follow=True):
                show_event(ctx, event)
        steprun = client.wait(name, namespace=namespace)
    except KeyboardInterrupt:
        return cancel_step(ctx, client, name, namespace)
    report_end(ctx, steprun)
    return exit_codes.exit_code_for(steprun)


def cancel_step(ctx: CliContext, client: StepRunClient, name: str, namespace: str) -> int:
    ctx.err(f"interrupted: cancelling steprun/{name} (Ctrl-C again to stop waiting)")
    try:
        client.cancel(name, namespace=namespace)
        steprun = client.wait(name, namespace=namespace)
    except KeyboardInterrupt:
        ctx.err(f"not waiting for steprun/{name} to be cancelled")
        return exit_codes.CANCELLED
    report_end(ctx, steprun)
    return exit_codes.exit_code_for(steprun)


def show_event(ctx: CliContext, event: LogEvent) -> None:
    from steprun.client import AttemptStarted, LogLine, PodWaiting

    match event:
        case LogLine(text=text):
            ctx.out(text)
        case AttemptStarted(attempt=attempt, pod=pod) if attempt > 1:
            ctx.err(f"--- attempt {attempt} (pod {pod}) ---")
        case PodWaiting(attempt=attempt, pod=None, reason="Retrying"):
            ctx.err(f"attempt {attempt - 1} failed; waiting for attempt {attempt} (retry backoff)")
        case PodWaiting(attempt=attempt, pod=None):
            ctx.err(f"waiting for the pod of attempt {attempt} to be created")
        case PodWaiting(pod=pod, reason=reason):
            ctx.err(f"waiting for pod {pod} ({reason})")


def report_end(ctx: CliContext, steprun: StepRun) -> None:
    """One line on stderr saying how the step ended, and why when it did not succeed."""
    from steprun.cli.output import enum_text

    status = steprun.status
    parts = [f"steprun/{steprun.name} {enum_text(status.phase)}"]
    if status.exit_code is not None:
        parts.append(f"exit code {status.exit_code}")
    if status.reason and status.reason != "Completed":
        parts.append(status.reason)
    line = ", ".join(parts)
    if status.message and status.phase != "Succeeded":
        line += f": {status.message}"
    ctx.err(line)
