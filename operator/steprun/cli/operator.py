"""``steprun operator``: run the operator in the foreground (as its container does)."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from steprun.cli import exit_codes
from steprun.cli.context import CliContext, add_command

if TYPE_CHECKING:
    from steprun.cli.context import SubParsers
    from steprun.config import OperatorConfig

HELP = """\
run the operator

Run the steprun operator in the foreground until SIGINT or SIGTERM.

Its configuration comes from the STEPRUN_* environment variables (see the operator guide);
-n/--namespace (repeatable) and -A/--all-namespaces override STEPRUN_NAMESPACES. It connects
with the in-cluster service account, else with the kubeconfig (--kubeconfig or KUBECONFIG,
current context).

examples:
  steprun operator -A
  steprun operator -n ci -n builds
  STEPRUN_DEFAULT_TIMEOUT_SECONDS=900 steprun operator --kubeconfig ~/.kube/dev
"""


def register(
    subparsers: SubParsers,
    connection: argparse.ArgumentParser,
) -> None:
    """``connection`` holds the global flags minus -n, which means "watch" here."""
    parser = add_command(subparsers, "operator", connection, HELP, operator_command)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        dest="watch_namespaces",
        action="append",
        default=[],
        metavar="NS",
        help="watch StepRuns of this namespace (repeatable)",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch StepRuns of every namespace"
    )


def operator_config(args: argparse.Namespace, base: OperatorConfig) -> OperatorConfig:
    """The configuration with the namespace flags applied (none given: ``base`` unchanged)."""
    if args.all_namespaces:
        return base.model_copy(update={"namespaces": []})
    namespaces = list(args.watch_namespaces)
    # A global -n given before the subcommand (`steprun -n ci operator`) means the same.
    if not namespaces and getattr(args, "namespace", None):
        namespaces = [args.namespace]
    if namespaces:
        return base.model_copy(update={"namespaces": namespaces})
    return base


def operator_command(args: argparse.Namespace, ctx: CliContext) -> int:
    if getattr(args, "context", None):
        ctx.err(
            "error: the operator uses the kubeconfig's current context; "
            "--context is not supported here"
        )
        return exit_codes.USAGE
    if getattr(args, "kubeconfig", None):
        # The operator's Kubernetes clients (its own and kopf's) read KUBECONFIG.
        os.environ["KUBECONFIG"] = args.kubeconfig
    # kopf and the reconciler are loaded for this command only, so the client commands start
    # quickly and work where the operator's dependencies are not wanted.
    from steprun.config import OperatorConfig
    from steprun.handlers.main import run_operator

    run_operator(operator_config(args, OperatorConfig()))
    return exit_codes.OK
