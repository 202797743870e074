"""The ``steprun`` command (also ``kubectl steprun`` and ``python -m steprun``)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from kubernetes.config.config_exception import ConfigException

from steprun.cli import artifacts, commands, completion, exit_codes, operator, render, run
from steprun.cli.context import CliContext, ClientFactory, client_from_args
from steprun.client import (
    ApiUnreachable,
    InvalidStepRun,
    StepRunError,
    StepRunRejected,
)

PROG = "steprun"
DESCRIPTION = """\
Run workflow steps as Kubernetes Pods, and inspect them.

A step is a StepRun object; the steprun operator runs it as a Pod and reports its phase,
exit code and outputs in the StepRun's status. `steprun COMMAND --help` shows each
command's options and examples.
"""
EPILOG = """\
examples:
  steprun run --image busybox:1.36 -- sh -c 'echo hello'
  steprun list --workflow build --run-id 42
  steprun logs -f build-42-lint
  steprun render -f step.yaml

The global flags may also follow the command: `steprun get NAME -n ci`.
"""


def build_parser() -> argparse.ArgumentParser:
    connection = argparse.ArgumentParser(add_help=False)
    # SUPPRESS keeps a flag given before the command from being reset by the command's parser.
    connection.add_argument(
        "--kubeconfig", default=argparse.SUPPRESS, metavar="FILE", help="kubeconfig file"
    )
    connection.add_argument(
        "--context", default=argparse.SUPPRESS, help="kubeconfig context to use"
    )
    common = argparse.ArgumentParser(add_help=False, parents=[connection])
    common.add_argument(
        "-n",
        "--namespace",
        default=argparse.SUPPRESS,
        metavar="NS",
        help="namespace (default: the kubeconfig context's)",
    )

    parser = argparse.ArgumentParser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig file")
    parser.add_argument("--context", help="kubeconfig context to use")
    parser.add_argument(
        "-n", "--namespace", metavar="NS", help="namespace (default: the kubeconfig context's)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run.register(subparsers, common)
    commands.register(subparsers, common)
    render.register(subparsers, common)
    artifacts.register(subparsers, common)
    operator.register(subparsers, connection)
    completion.register(subparsers, common)
    parser.set_defaults(root_parser=parser)
    return parser


def split_dashdash(argv: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """The arguments before the first ``--`` and those after it (None when there is none).

    argparse drops ``--`` and merges both sides into the positionals, which would lose where
    ``run``'s NAME ends and its command begins.
    """
    if "--" not in argv:
        return list(argv), None
    index = list(argv).index("--")
    return list(argv[:index]), list(argv[index + 1 :])


def main(
    argv: Sequence[str] | None = None,
    *,
    make_client: ClientFactory = client_from_args,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    head, tail = split_dashdash(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(head)
    if tail is not None:
        if args.command != "run":
            parser.error(f"{args.command} takes no arguments after --")
        args.after_dashdash = tail
    ctx = CliContext(args, stdout or sys.stdout, stderr or sys.stderr, make_client)
    try:
        code: int = args.func(args, ctx)
        return code
    except InvalidStepRun as exc:
        ctx.err(f"error: the API server refused the StepRun: {exc.message}")
        for cause in exc.causes:
            ctx.err(f"  {cause.field}: {cause.message}")
        return exit_codes.USAGE
    except StepRunRejected as exc:
        ctx.err(f"error: {exc}")
        return exit_codes.USAGE
    except ApiUnreachable as exc:
        ctx.err(f"error: {exc}")
        return exit_codes.API_UNREACHABLE
    except StepRunError as exc:
        ctx.err(f"error: {exc}")
        return exit_codes.ERROR
    except ConfigException as exc:
        ctx.err(f"error: no cluster configuration found: {exc}")
        return exit_codes.ERROR
    except KeyboardInterrupt:
        return exit_codes.CANCELLED
    except BrokenPipeError:
        # The reader went away (`steprun logs x | head`): stop quietly, and keep Python from
        # reporting the failed flush of stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return exit_codes.OK
    finally:
        ctx.close()
