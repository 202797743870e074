"""`steprun completion`: scripts for bash, zsh and fish, and what the command answers them.

The scripts come from argcomplete; the shell runs `steprun` with argcomplete's environment
variables to ask what completes. These tests ask the same way, in-process, with StepRun names
and namespaces served by the fake API server.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest

from steprun.cli.completion import completion_script
from steprun.cli.main import main
from tests.support.fake_apiserver import FakeApiServer, steprun

BASH = shutil.which("bash")


def script(shell: str) -> str:
    out = io.StringIO()
    assert main(["completion", shell], stdout=out) == 0
    return out.getvalue()


@pytest.fixture
def server(server: FakeApiServer) -> FakeApiServer:
    for namespace, name in (("ns1", "alpha"), ("ns1", "beta"), ("ci", "ci-step")):
        server.cluster.create(steprun(namespace, name))
    return server


@pytest.fixture
def kubeconfig(kubeconfig: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The shell's environment: the fake API server's kubeconfig in KUBECONFIG."""
    monkeypatch.setenv("KUBECONFIG", kubeconfig)
    return kubeconfig


def complete(monkeypatch: pytest.MonkeyPatch, line: str) -> list[str]:
    """What `steprun` answers a shell asking to complete ``line`` (cursor at its end).

    A separate process, as the shell runs it: argcomplete takes over file descriptors.
    """
    import os
    import sys
    import tempfile

    with tempfile.NamedTemporaryFile("r", suffix=".out") as answer:
        env = {
            **os.environ,
            "_ARGCOMPLETE": "1",
            "_ARGCOMPLETE_IFS": "\n",
            "_ARGCOMPLETE_STDOUT_FILENAME": answer.name,
            "COMP_LINE": line,
            "COMP_POINT": str(len(line)),
        }
        subprocess.run(
            [sys.executable, "-m", "steprun"],
            env=env,
            cwd=os.getcwd(),
            capture_output=True,
            timeout=60,
            check=False,
        )
        text = Path(answer.name).read_text()
    return sorted(word.strip() for word in text.split("\n") if word.strip())


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("steprun lo", ["logs"]),
        ("steprun des", ["describe"]),
        ("steprun re", ["render", "rerun"]),
        ("steprun completion ", ["bash", "fish", "zsh"]),
        ("steprun run --image busybox --re", ["--request-timeout", "--retries"]),
        ("steprun operator --all", ["--all-namespaces"]),
        ("steprun list -o n", ["name"]),
        ("steprun get x -o j", ["json", "jsonpath="]),
        ("steprun logs --t", ["--tail", "--timestamps"]),
    ],
)
def test_commands_and_flags_complete(
    monkeypatch: pytest.MonkeyPatch, line: str, expected: list[str]
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    assert complete(monkeypatch, line) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("steprun logs ", ["alpha", "beta"]),
        ("steprun logs -f b", ["beta"]),
        ("steprun describe a", ["alpha"]),
        ("steprun delete alpha ", ["alpha", "beta"]),
        ("steprun -n ci wait ", ["ci-step"]),
        ("steprun get -n ci c", ["ci-step"]),
    ],
)
def test_names_complete_from_the_cluster(
    kubeconfig: str, monkeypatch: pytest.MonkeyPatch, line: str, expected: list[str]
) -> None:
    assert complete(monkeypatch, line) == expected


def test_namespaces_complete_from_the_cluster(
    server: FakeApiServer, kubeconfig: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ci", "default", "ns1"):
        server.cluster.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    assert complete(monkeypatch, "steprun list -n ") == ["ci", "default", "ns1"]
    assert complete(monkeypatch, "steprun -n c") == ["ci"]


def test_no_cluster_means_no_names_and_no_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    assert complete(monkeypatch, "steprun logs ") == []


def test_file_arguments_complete_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "step.yaml").write_text("")
    monkeypatch.chdir(tmp_path)
    assert complete(monkeypatch, "steprun run -f st") == ["step.yaml"]


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_bash_and_zsh_scripts_parse(shell: str, tmp_path: Path) -> None:
    path = tmp_path / "script"
    path.write_text(script(shell))
    if shell == "bash":
        subprocess.run([BASH, "-n", str(path)], check=True)
    assert "steprun" in path.read_text() and "kubectl-steprun" in path.read_text()


def test_fish_script_registers_both_commands() -> None:
    text = script("fish")
    assert "complete" in text and "--command steprun" in text
    assert "--command kubectl-steprun" in text


def test_unknown_shell_is_refused() -> None:
    with pytest.raises(ValueError):
        completion_script("tcsh-ng")
    with pytest.raises(SystemExit):
        main(["completion", "powershell-ng"])
