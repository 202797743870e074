"""The ``steprun`` command (also ``kubectl steprun`` and ``python -m steprun``).

Startup is kept light: building the parser imports no Kubernetes client, pydantic model or
YAML library (bench/cli_startup.py measures `steprun --help`); each command imports what it
uses when it runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from steprun.cli import artifacts, commands, completion, exit_codes, operator, render, run
from steprun.cli.context import CliContext, ClientFactory, NoClusterConfig, client_from_args

PROG = "steprun"
DESCRIPTION = """\
Run workflow steps as Kubernetes Pods, and inspect them.

A step is a StepRun object; the steprun operator runs it as a Pod and reports its phase,
exit code and outputs in the StepRun's status. `steprun COMMAND --help` shows each
command's options and examples.
"""
EPILOG = """\
examples:
  steprun run --image steprun.local/step:1 -- sh -c 'echo hello'
  steprun get
  steprun list --workflow build --run-id 42
  steprun describe build-42-lint
  steprun logs -f build-42-lint
  steprun render -f step.yaml --validate

The global flags may also follow the command: `steprun get NAME -n ci`. kubectl's -v/--v
is accepted (steprun logs no requests); --as/--as-group are refused: steprun does not
impersonate.
"""


# Global flags that take a value: the command word is the first word that is neither one of
# these nor a value of one.
VALUE_FLAGS = frozenset(
    {"--kubeconfig", "--context", "--request-timeout", "-n", "--namespace", "-v", "--v"}
    | {"--as", "--as-group"}
)


def _add_connection_flags(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("--kubeconfig", default=default, metavar="FILE", help="kubeconfig file")
    parser.add_argument("--context", default=default, help="kubeconfig context to use")
    # kubectl's global flags, so `kubectl steprun` takes what kubectl users type.
    parser.add_argument(
        "-v",
        "--v",
        dest="verbosity",
        default=default,
        metavar="LEVEL",
        help="kubectl's log level: accepted, steprun logs no requests",
    )
    for flag in ("--as", "--as-group"):
        parser.add_argument(
            flag,
            dest=flag.lstrip("-").replace("-", "_"),
            default=default,
            metavar="USER" if flag == "--as" else "GROUP",
            help="refused: steprun does not impersonate (use kubectl --as for that request)",
        )
    parser.add_argument(
        "--request-timeout",
        type=commands.seconds,
        default=default,
        metavar="DURATION",
        help="give up on an API request after this long (e.g. 5s, 1m; default 5s to connect)",
    )


def build_parser() -> argparse.ArgumentParser:
    connection = argparse.ArgumentParser(add_help=False)
    # SUPPRESS keeps a flag given before the command from being reset by the command's parser.
    _add_connection_flags(connection, argparse.SUPPRESS)
    common = argparse.ArgumentParser(add_help=False, parents=[connection])
    completion.complete_namespaces(
        common.add_argument(
            "-n",
            "--namespace",
            default=argparse.SUPPRESS,
            metavar="NS",
            help="namespace (default: the kubeconfig context's)",
        )
    )

    parser = argparse.ArgumentParser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_connection_flags(parser, None)
    completion.complete_namespaces(
        parser.add_argument(
            "-n", "--namespace", metavar="NS", help="namespace (default: the kubeconfig context's)"
        )
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


def report_error(exc: BaseException, ctx: CliContext) -> int | None:
    """The exit code for an error the commands may raise (None: not one of those)."""
    if isinstance(exc, NoClusterConfig):
        ctx.err(f"error: {exc}")
        return exit_codes.ERROR
    # Loaded only now: a command that raised one of these has imported the client already.
    from steprun.client import ApiUnreachable, InvalidStepRun, StepRunError, StepRunRejected

    if isinstance(exc, InvalidStepRun):
        ctx.err(f"error: the API server refused the StepRun: {exc.message}")
        for cause in exc.causes:
            ctx.err(f"  {cause.field}: {cause.message}")
        return exit_codes.USAGE
    # Most specific first: both of the others are StepRunErrors.
    for kind, code in (
        (StepRunRejected, exit_codes.USAGE),
        (ApiUnreachable, exit_codes.API_UNREACHABLE),
        (StepRunError, exit_codes.ERROR),
    ):
        if isinstance(exc, kind):
            ctx.err(f"error: {exc}")
            return code
    from steprun.kube.config import ConfigException

    if isinstance(exc, ConfigException):
        ctx.err(f"error: the cluster configuration cannot be used: {exc}")
        return exit_codes.ERROR
    return None


def command_word(head: Sequence[str]) -> str | None:
    """The command of a command line (the first word not a global flag or its value)."""
    words = iter(head)
    for word in words:
        if not word.startswith("-"):
            return word
        if word in VALUE_FLAGS:
            next(words, None)
    return None


def unknown_command(word: str, parser: argparse.ArgumentParser) -> str | None:
    """kubectl's answer to a command that does not exist, with the nearest ones (None: it
    exists)."""
    import difflib

    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    known = sorted(subparsers.choices)
    if word in known:
        return None
    text = f'error: unknown command "{word}" for "{PROG}"'
    close = difflib.get_close_matches(word, known, n=3, cutoff=0.6)
    close += [c for c in known if c.startswith(word[:2]) and c not in close and len(word) > 1]
    if close:
        text += "\n\nDid you mean this?\n" + "".join(f"\t{c}\n" for c in close[:3])
    return text + f"\nRun '{PROG} --help' for usage."


def main(
    argv: Sequence[str] | None = None,
    *,
    make_client: ClientFactory = client_from_args,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    head, tail = split_dashdash(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    completion.autocomplete(parser)
    out, err = stdout or sys.stdout, stderr or sys.stderr
    if not head and tail is None:
        # As kubectl does: a bare command is a request for help, not a mistake.
        out.write(parser.format_help())
        return exit_codes.OK
    word = command_word(head)
    refusal = unknown_command(word, parser) if word is not None else None
    if refusal is not None:
        err.write(refusal + "\n")
        return exit_codes.USAGE
    args = parser.parse_args(head)
    for flag in ("as", "as_group"):
        if getattr(args, flag, None):
            err.write(
                f"error: --{flag.replace('_', '-')} is not supported: steprun does not "
                "impersonate; run it with credentials of that user, or use kubectl --as\n"
            )
            return exit_codes.USAGE
    if tail is not None:
        if args.command != "run":
            parser.error(f"{args.command} takes no arguments after --")
        args.after_dashdash = tail
    ctx = CliContext(args, out, err, make_client)
    try:
        code: int = args.func(args, ctx)
        return code
    except KeyboardInterrupt:
        return exit_codes.CANCELLED
    except BrokenPipeError:
        # The reader went away (`steprun logs x | head`): stop quietly, and keep Python from
        # reporting the failed flush of stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return exit_codes.OK
    except Exception as exc:
        handled = report_error(exc, ctx)
        if handled is None:
            raise
        return handled
    finally:
        ctx.close()
