"""``steprun completion bash|zsh``: shell completion generated from the argument parser.

The script is derived from the parser itself, so a new command or flag completes without
touching this module. Names of StepRuns complete from ``steprun list -o name`` (in the
namespace given with -n, if any); files complete for FILE arguments.
"""

from __future__ import annotations

import argparse
import shlex
from typing import TYPE_CHECKING

from steprun.cli import exit_codes
from steprun.cli.context import CliContext

if TYPE_CHECKING:
    from steprun.cli.context import SubParsers

SHELLS = ("bash", "zsh")
FUNCTION = "_steprun_complete"

_BASH_TEMPLATE = """\
# {shell} completion for steprun; load it with: source <(steprun completion {shell})
{preamble}{function}() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    local commands={commands}
    local cmd="" ns_flag="" i word
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${{COMP_WORDS[i]}}"
        case "$word" in
            -n|--namespace) ns_flag="--namespace=${{COMP_WORDS[i+1]}}" ;;
            -*) ;;
            *) if [[ -z "$cmd" && " $commands " == *" $word "* ]]; then cmd="$word"; fi ;;
        esac
    done
    case "$cmd $prev" in
{value_cases}
    esac
    local opts="" positional=""
    case "$cmd" in
{command_cases}
    esac
    if [[ "$cur" == -* || -z "$positional" ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    elif [[ "$positional" == names ]]; then
        COMPREPLY=($(compgen -W "$(steprun list -o name $ns_flag 2>/dev/null)" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$positional" -- "$cur"))
    fi
}}
complete -o default -F {function} steprun kubectl-steprun
"""

_ZSH_PREAMBLE = "autoload -U +X bashcompinit && bashcompinit\n"


def register(
    subparsers: SubParsers,
    common: argparse.ArgumentParser,
) -> None:

    parser = subparsers.add_parser(
        "completion",
        help="print a shell completion script",
        description="Print a completion script for bash or zsh.",
        epilog=(
            "examples:\n"
            "  source <(steprun completion bash)      # in ~/.bashrc\n"
            "  source <(steprun completion zsh)       # in ~/.zshrc\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("shell", choices=SHELLS)
    parser.set_defaults(func=completion_command)


def completion_command(args: argparse.Namespace, ctx: CliContext) -> int:
    root = getattr(args, "root_parser", None)
    if not isinstance(root, argparse.ArgumentParser):
        ctx.err("error: the completion script needs the command's parser")
        return exit_codes.ERROR
    ctx.stdout.write(completion_script(root, args.shell))
    return exit_codes.OK


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    if shell not in SHELLS:
        raise ValueError(f"no completion for {shell!r}; choose one of {', '.join(SHELLS)}")
    commands = _subcommands(parser)
    # A flag's values depend on the command (-f is a file for run, --follow for logs).
    value_cases = "\n".join(
        f"        {_case_pattern(name, action)}) {_value_completion(action)}; return ;;"
        for name, command_parser in [("", parser), *commands.items()]
        for action in command_parser._actions
        if action.option_strings and action.nargs != 0
    )
    command_cases = "\n".join(
        [
            f'        "") opts={shlex.quote(" ".join([*_options(parser), *commands]))} ;;',
            *(
                f"        {name}) opts={shlex.quote(' '.join(_options(sub)))}"
                f" positional={shlex.quote(_positional(sub))} ;;"
                for name, sub in commands.items()
            ),
        ]
    )
    return _BASH_TEMPLATE.format(
        shell=shell,
        preamble=_ZSH_PREAMBLE if shell == "zsh" else "",
        function=FUNCTION,
        commands=shlex.quote(" ".join(commands)),
        value_cases=value_cases,
        command_cases=command_cases,
    )


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return [
        option
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--") or len(option) == 2
    ]


def _positional(parser: argparse.ArgumentParser) -> str:
    """ "names" for commands taking a StepRun NAME, the choices of a choice, else nothing."""
    for action in parser._actions:
        if action.option_strings:
            continue
        if action.metavar == "NAME":
            return "names"
        if action.choices:
            return " ".join(str(c) for c in action.choices)
    return ""


def _case_pattern(command: str, action: argparse.Action) -> str:
    return "|".join(shlex.quote(f"{command} {option}") for option in action.option_strings)


def _value_completion(action: argparse.Action) -> str:
    if action.choices:
        words = " ".join(str(c) for c in action.choices)
        return f'COMPREPLY=($(compgen -W {shlex.quote(words)} -- "$cur"))'
    if action.metavar == "FILE" or action.dest == "kubeconfig":
        return 'COMPREPLY=($(compgen -f -- "$cur"))'
    return "COMPREPLY=()"
