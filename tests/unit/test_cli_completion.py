"""`steprun completion`: the generated scripts parse and complete what the parser accepts."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest

from steprun.cli.completion import completion_script
from steprun.cli.main import build_parser, main

BASH = shutil.which("bash")


def script(shell: str) -> str:
    out = io.StringIO()
    assert main(["completion", shell], stdout=out) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("completion") / "steprun.bash"
    path.write_text(script("bash"))
    return path


def complete(bash_script: Path, *words: str) -> list[str]:
    """The candidates bash offers for the last of ``words`` (a stub lists StepRuns a and b)."""
    assert BASH is not None
    quoted = " ".join(f"'{w}'" for w in words)
    program = f"""
source {bash_script}
steprun() {{ [[ "$1" == list ]] && printf 'alpha\\nbeta\\n'; }}
COMP_WORDS=({quoted}); COMP_CWORD=$(({len(words)} - 1)); COMPREPLY=()
_steprun_complete
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    result = subprocess.run([BASH, "-c", program], capture_output=True, text=True, check=True)
    return [line for line in result.stdout.splitlines() if line]


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_scripts_are_valid_bash(shell: str, tmp_path: Path) -> None:
    # The zsh script loads bash completion support (bashcompinit) and is otherwise the same.
    path = tmp_path / "script"
    path.write_text(script(shell))
    subprocess.run([BASH, "-n", str(path)], check=True)


def test_zsh_script_enables_bashcompinit() -> None:
    text = script("zsh")
    assert "bashcompinit" in text and "complete -o default -F _steprun_complete" in text
    assert "bashcompinit" not in script("bash")


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (("steprun", "lo"), ["logs"]),
        (("steprun", "logs", ""), ["alpha", "beta"]),
        (("steprun", "logs", "-f", ""), ["alpha", "beta"]),  # -f is --follow for logs
        (("steprun", "get", "-o", ""), ["table", "wide", "yaml", "json"]),
        (("steprun", "list", "-o", "n"), ["name"]),
        (("steprun", "completion", ""), ["bash", "zsh"]),
        (("steprun", "run", "--image", "busybox", "--re"), ["--retries"]),
        (("steprun", "-n", "ci", "wait", "b"), ["beta"]),
        (("steprun", "operator", "--all"), ["--all-namespaces"]),
    ],
)
def test_completions(bash_script: Path, words: tuple[str, ...], expected: list[str]) -> None:
    assert complete(bash_script, *words) == expected


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_file_arguments_complete_files(bash_script: Path, tmp_path: Path) -> None:
    (tmp_path / "step.yaml").write_text("")
    prefix = str(tmp_path / "st")
    assert complete(bash_script, "steprun", "run", "-f", prefix) == [str(tmp_path / "step.yaml")]


def test_unknown_shell_is_refused() -> None:
    with pytest.raises(ValueError):
        completion_script(build_parser(), "fish")
    with pytest.raises(SystemExit):
        main(["completion", "fish"])
