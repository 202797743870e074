"""``steprun completion bash|zsh|fish``: shell completion by argcomplete.

The shell asks the ``steprun`` command itself what completes (argcomplete's protocol: the
command runs with ``_ARGCOMPLETE`` set and answers from its own parser), so every command and
flag completes without a hand-kept script. StepRun names complete from the cluster (in the
namespace given with -n, if any), namespaces for -n/--namespace, files for FILE arguments.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from steprun.cli import exit_codes
from steprun.cli.context import add_command

if TYPE_CHECKING:
    from steprun.cli.context import CliContext, SubParsers

SHELLS = ("bash", "zsh", "fish")
EXECUTABLES = ("steprun", "kubectl-steprun")


def _client(parsed_args: argparse.Namespace) -> Any:
    from steprun.cli.context import client_from_args

    return client_from_args(parsed_args)


def steprun_names(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> Iterable[str]:
    """argcomplete completer: names of the StepRuns of the chosen namespace."""
    try:
        with _client(parsed_args) as client:
            body = client.list_raw(namespace=getattr(parsed_args, "namespace", None))
    except Exception:
        # A completion never prints an error into the user's command line.
        return []
    names = (str(item["metadata"]["name"]) for item in body.get("items") or [])
    return [name for name in names if name.startswith(prefix)]


def namespace_names(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> Iterable[str]:
    """argcomplete completer: the cluster's namespaces."""
    try:
        with _client(parsed_args) as client:
            names = client.namespace_names()
    except Exception:
        return []
    return [name for name in names if name.startswith(prefix)]


def complete_names(action: argparse.Action) -> argparse.Action:
    """Marks a NAME argument as completing StepRun names."""
    action.completer = steprun_names  # type: ignore[attr-defined]
    return action


def complete_namespaces(action: argparse.Action) -> argparse.Action:
    action.completer = namespace_names  # type: ignore[attr-defined]
    return action


def autocomplete(parser: argparse.ArgumentParser, **options: Any) -> None:
    """Answers a shell's completion request and exits, if this run is one (else returns)."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    import argcomplete

    # Flags are offered once "-" is typed, as kubectl's completion does.
    options.setdefault("always_complete_options", False)
    argcomplete.autocomplete(parser, **options)


HELP = """\
print a shell completion script

Print a completion script for bash, zsh or fish. The script asks steprun itself
what completes: commands, flags, StepRun names and namespaces (from the cluster).

examples:
  source <(steprun completion bash)                       # in ~/.bashrc
  source <(steprun completion zsh)                        # in ~/.zshrc
  steprun completion fish > ~/.config/fish/completions/steprun.fish
"""


def register(subparsers: SubParsers, common: argparse.ArgumentParser) -> None:
    parser = add_command(subparsers, "completion", None, HELP, completion_command)
    parser.add_argument("shell", choices=SHELLS)


def completion_script(shell: str) -> str:
    if shell not in SHELLS:
        raise ValueError(f"no completion for {shell!r}; choose one of {', '.join(SHELLS)}")
    from argcomplete.shell_integration import shellcode

    script: str = shellcode(list(EXECUTABLES), shell=shell)
    return f"# {shell} completion for steprun (steprun completion {shell})\n{script}"


def completion_command(args: argparse.Namespace, ctx: CliContext) -> int:
    ctx.stdout.write(completion_script(args.shell))
    return exit_codes.OK


# kubectl's completion of plugins (kubectl 1.26 and later): `kubectl steprun <TAB>` runs the
# executable kubectl_complete-steprun with the words after "steprun", the last one being the
# word to complete, and reads cobra's answer: one candidate a line, then ":DIRECTIVE".
_NO_FILE_COMPLETION = 4
_DEFAULT_COMPLETION = 0


def kubectl_candidates(words: list[str]) -> list[str]:
    """What completes the last of ``words`` (the words after ``kubectl steprun``)."""
    import io
    import shlex

    from steprun.cli.main import build_parser

    *before, partial = words or [""]
    line = " ".join(["steprun", *(shlex.quote(w) for w in before), partial])
    answer = io.StringIO()
    saved = {k: os.environ.get(k) for k in _PROTOCOL_ENV}
    os.environ.update(
        _ARGCOMPLETE="1",
        COMP_LINE=line,
        COMP_POINT=str(len(line)),
        _ARGCOMPLETE_IFS="\n",
        _ARGCOMPLETE_SUPPRESS_SPACE="1",
    )
    try:
        autocomplete(build_parser(), output_stream=answer, exit_method=lambda code: None)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return [c.rstrip() for c in answer.getvalue().split("\n") if c.strip()]


_PROTOCOL_ENV = (
    "_ARGCOMPLETE",
    "COMP_LINE",
    "COMP_POINT",
    "_ARGCOMPLETE_IFS",
    "_ARGCOMPLETE_SUPPRESS_SPACE",
)


def kubectl_complete_main(argv: list[str] | None = None) -> int:
    """The ``kubectl_complete-steprun`` executable."""
    import sys

    words = list(sys.argv[1:] if argv is None else argv)
    candidates = kubectl_candidates(words)
    directive = _NO_FILE_COMPLETION if candidates else _DEFAULT_COMPLETION
    sys.stdout.write("".join(f"{c}\n" for c in candidates) + f":{directive}\n")
    return 0
