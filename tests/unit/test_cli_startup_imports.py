"""What a command that reaches the cluster loads: only the parts of the client library it uses.

Importing all of kubernetes_asyncio (about 850 modules of generated API and model classes)
was most of the start of `steprun list`, `get` and every completion of a name; the "no cluster
configuration" answer loaded it too. `make bench-cli` measures the times; these tests pin the
cause, in a fresh interpreter each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from steprun.kube.lean import DEFERRED
from tests.support.cli import REPO
from tests.support.fake_apiserver import NS, FakeApiServer, steprun


def modules_after(code: str, env: dict[str, str] | None = None) -> tuple[list[str], str]:
    """The modules loaded once ``code`` has run in a fresh interpreter, and its output."""
    script = f"{code}\nimport sys, json\nprint('MODULES=' + json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env or dict(os.environ),
        check=False,
        timeout=120,
    )
    line = next((x for x in result.stdout.splitlines() if x.startswith("MODULES=")), None)
    assert line is not None, result.stderr
    return json.loads(line.removeprefix("MODULES=")), result.stdout + result.stderr


def library_modules(modules: list[str]) -> list[str]:
    return [m for m in modules if m.startswith("kubernetes_asyncio")]


@pytest.mark.parametrize("argv", [["list"], ["get", "one"], ["get"]])
def test_cluster_commands_load_only_the_client_parts_they_use(
    server: FakeApiServer, kubeconfig: str, argv: list[str]
) -> None:
    server.cluster.create(steprun(NS, "one"))
    call = json.dumps(["--kubeconfig", kubeconfig, *argv])
    modules, output = modules_after(
        f"from steprun.cli.main import main\nassert main({call}) == 0, 'exit code'"
    )
    assert "one" in output
    loaded = library_modules(modules)
    assert not [m for m in loaded if m.startswith("kubernetes_asyncio.client.models.")]
    assert not [m for m in loaded if m.startswith("kubernetes_asyncio.client.api.")]
    assert len(loaded) < 30, loaded


def test_no_cluster_configuration_is_told_before_loading_any_client(tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")
    }
    env["HOME"] = str(tmp_path)
    modules, output = modules_after(
        "from steprun.cli.main import main\nassert main(['list']) == 1", env=env
    )
    assert "no cluster configuration" in output
    heavy = {"kubernetes_asyncio", "aiohttp", "pydantic", "yaml", "prometheus_client"}
    # The deferred packages are registered, none of their code has run.
    assert not {m for m in modules if m.split(".")[0] in heavy} - set(DEFERRED)


def test_the_whole_library_is_still_there_for_code_that_asks_for_it() -> None:
    modules, output = modules_after(
        "import steprun.kube.client\n"
        "from kubernetes_asyncio.client import V1Pod\n"
        "import kubernetes_asyncio\n"
        "from kubernetes_asyncio import client\n"
        "print(V1Pod.__name__, kubernetes_asyncio.watch.Watch.__name__,"
        " client.CoreV1Api.__name__)\n"
        "assert client.ApiClient is steprun.kube.client.k8s.ApiClient"
    )
    assert "V1Pod Watch CoreV1Api" in output
    assert "kubernetes_asyncio.client.models.v1_pod" in modules
