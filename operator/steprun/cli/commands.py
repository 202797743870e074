"""The commands that read or change existing StepRuns: get, list, logs, wait, cancel, delete."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from steprun.cli import exit_codes
from steprun.cli.context import CliContext
from steprun.cli.output import (
    OUTPUT_FORMATS,
    dump,
    list_document,
    steprun_document,
    steprun_table,
)
from steprun.cli.run import report_end, show_event
from steprun.client import WaitTimeout

if TYPE_CHECKING:
    from steprun.cli.context import SubParsers


_RAW = argparse.RawDescriptionHelpFormatter


def register(subparsers: SubParsers, common: argparse.ArgumentParser) -> None:
    get = subparsers.add_parser(
        "get",
        parents=[common],
        help="show one StepRun",
        description=(
            "Show one StepRun: a table row (-o wide adds attempt, duration, Pod and workflow),\n"
            "or the whole object as YAML or JSON."
        ),
        epilog="examples:\n  steprun get build-42-lint\n  steprun get build-42-lint -o yaml\n",
        formatter_class=_RAW,
    )
    get.add_argument("name", metavar="NAME")
    get.add_argument("-o", "--output", choices=OUTPUT_FORMATS, default="table")
    get.set_defaults(func=get_command)

    listing = subparsers.add_parser(
        "list",
        aliases=["ls"],
        parents=[common],
        help="list StepRuns",
        description=(
            "List StepRuns of a namespace (or all), optionally of one workflow or run.\n"
            "-o name prints bare names, one a line (for scripts and shell completion)."
        ),
        epilog=(
            "examples:\n  steprun list\n  steprun list -A -o wide\n"
            "  steprun list --workflow build --run-id 42 -o yaml\n"
        ),
        formatter_class=_RAW,
    )
    listing.add_argument(
        "-A", "--all-namespaces", action="store_true", help="list StepRuns of every namespace"
    )
    listing.add_argument("--workflow", metavar="W", help="only steps of this workflow")
    listing.add_argument("--run-id", metavar="R", help="only steps of this workflow run")
    listing.add_argument("--step-id", metavar="S", help="only steps with this step id")
    listing.add_argument("-o", "--output", choices=(*OUTPUT_FORMATS, "name"), default="table")
    listing.set_defaults(func=list_command)

    logs = subparsers.add_parser(
        "logs",
        parents=[common],
        help="print a step's logs, every attempt in order",
        description=(
            "Print the logs of every attempt in order (or of one, --attempt). With -f, wait for\n"
            "the Pod to start, follow it and the retries that come after, until the step ends."
        ),
        epilog="examples:\n  steprun logs build-42-lint\n  steprun logs -f build-42-lint\n"
        "  steprun logs build-42-lint --attempt 2\n",
        formatter_class=_RAW,
    )
    logs.add_argument("name", metavar="NAME")
    logs.add_argument("-f", "--follow", action="store_true", help="follow until the step ends")
    logs.add_argument("--attempt", type=int, metavar="N", help="only this attempt (1 = first)")
    logs.set_defaults(func=logs_command)

    wait = subparsers.add_parser(
        "wait",
        parents=[common],
        help="wait until a step ends; exit with its exit code",
        description="Wait until the step is finished and exit like `steprun run` would.",
        epilog="examples:\n  steprun wait build-42-lint --timeout 600\n\n"
        + exit_codes.EXIT_CODES_HELP,
        formatter_class=_RAW,
    )
    wait.add_argument("name", metavar="NAME")
    wait.add_argument("--timeout", type=float, metavar="S", help="give up after S seconds")
    wait.set_defaults(func=wait_command)

    cancel = subparsers.add_parser(
        "cancel",
        parents=[common],
        help="cancel a step",
        description="Cancel a step (sets spec.cancel): its Pod is deleted, it ends Cancelled.",
        epilog="examples:\n  steprun cancel build-42-lint\n",
        formatter_class=_RAW,
    )
    cancel.add_argument("name", metavar="NAME")
    cancel.set_defaults(func=cancel_command)

    delete = subparsers.add_parser(
        "delete",
        parents=[common],
        help="delete a StepRun and everything it owns",
        description="Delete a StepRun; its Pods, ConfigMap and Secret are deleted with it.",
        epilog="examples:\n  steprun delete build-42-lint\n",
        formatter_class=_RAW,
    )
    delete.add_argument("name", metavar="NAME")
    delete.set_defaults(func=delete_command)


def get_command(args: argparse.Namespace, ctx: CliContext) -> int:
    steprun = ctx.client().get(args.name, ctx.namespace)
    if args.output in ("table", "wide"):
        ctx.stdout.write(steprun_table([steprun], datetime.now(UTC), wide=args.output == "wide"))
    else:
        ctx.stdout.write(dump(steprun_document(steprun), args.output))
    return exit_codes.OK


def list_command(args: argparse.Namespace, ctx: CliContext) -> int:
    found = ctx.client().list(
        namespace=None if args.all_namespaces else ctx.namespace,
        all_namespaces=args.all_namespaces,
        workflow=args.workflow,
        run_id=args.run_id,
        step_id=args.step_id,
    )
    found.sort(key=lambda sr: (sr.namespace, sr.name))
    if args.output == "name":
        ctx.stdout.write("".join(f"{sr.name}\n" for sr in found))
    elif args.output in ("table", "wide"):
        if not found:
            ctx.err("No StepRuns found.")
        else:
            table = steprun_table(
                found,
                datetime.now(UTC),
                with_namespace=args.all_namespaces,
                wide=args.output == "wide",
            )
            ctx.stdout.write(table)
    else:
        ctx.stdout.write(dump(list_document(found), args.output))
    return exit_codes.OK


def logs_command(args: argparse.Namespace, ctx: CliContext) -> int:
    events = ctx.client().log_events(
        args.name, namespace=ctx.namespace, follow=args.follow, attempt=args.attempt
    )
    try:
        for event in events:
            show_event(ctx, event)
    except KeyboardInterrupt:
        return exit_codes.CANCELLED
    return exit_codes.OK


def wait_command(args: argparse.Namespace, ctx: CliContext) -> int:
    try:
        steprun = ctx.client().wait(args.name, namespace=ctx.namespace, timeout=args.timeout)
    except WaitTimeout as exc:
        ctx.err(f"error: {exc}")
        return exit_codes.WAIT_TIMEOUT
    except KeyboardInterrupt:
        return exit_codes.CANCELLED
    report_end(ctx, steprun)
    return exit_codes.exit_code_for(steprun)


def cancel_command(args: argparse.Namespace, ctx: CliContext) -> int:
    ctx.client().cancel(args.name, namespace=ctx.namespace)
    ctx.out(f"steprun/{args.name} cancel requested")
    return exit_codes.OK


def delete_command(args: argparse.Namespace, ctx: CliContext) -> int:
    ctx.client().delete(args.name, namespace=ctx.namespace)
    ctx.out(f"steprun/{args.name} deleted")
    return exit_codes.OK
