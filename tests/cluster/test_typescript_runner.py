"""The TypeScript runner (clients/typescript) end to end, against this session's operator.

Each suite is a file of node tests under clients/typescript/test/e2e/; it gets a namespace of its
own and the kubeconfig through env, and this test fails with node's report when any of its
tests fails. The package is built first (`make typescript` installs its dependencies).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cluster.conftest import SandboxPolicies
from tests.support.operator_process import OperatorProcess
from tests.support.steps import Steps

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

PACKAGE = Path(__file__).resolve().parents[2] / "clients" / "typescript"
SUITES = ["runner", "restart", "example", "workspace"]
SHELL = ["/bin/sh", "-c"]


@pytest.fixture(scope="module")
def built_package() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are needed for the TypeScript runner's tests (Node.js >= 20)")
    if not (PACKAGE / "node_modules").is_dir():
        pytest.fail(f"{PACKAGE} has no node_modules: run `make typescript` (npm ci) first")
    build = subprocess.run(
        [npm, "run", "--silent", "build"], cwd=PACKAGE, capture_output=True, text=True, check=False
    )
    assert build.returncode == 0, f"tsc failed:\n{build.stdout}\n{build.stderr}"
    return PACKAGE


def run_suite(suite: str, package: Path, env: dict[str, str]) -> None:
    """Runs one node e2e file; fails with node's report unless it ran tests and all passed."""
    result = subprocess.run(
        ["node", "--test", "--test-reporter=spec", f"dist/test/e2e/{suite}.e2e.test.js"],
        cwd=package,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    report = f"{result.stdout[-30000:]}\n{result.stderr[-5000:]}"
    assert result.returncode == 0, f"node tests of {suite} failed:\n{report}"
    # A suite that ran no test must not pass: node exits 0 for an empty file.
    passed = re.search(r"\bpass (\d+)$", result.stdout, re.MULTILINE)
    assert passed is not None and int(passed.group(1)) > 0, f"no test of {suite} ran:\n{report}"
    print(result.stdout[-3000:])  # node's report, shown by pytest -rP


@pytest.mark.parametrize("suite", SUITES)
def test_typescript_runner(
    suite: str,
    built_package: Path,
    namespace: str,
    operator: OperatorProcess,
    kubeconfig: str,
    step_image: str,
) -> None:
    env = {
        "KUBECONFIG": kubeconfig,
        "STEPRUN_E2E_NAMESPACE": namespace,
        "STEPRUN_E2E_IMAGE": step_image,
        # The clusters hack/cluster-up.sh builds split log streams; others may not.
        "STEPRUN_E2E_LOCAL_CLUSTER": "1" if Path(kubeconfig).match(".cluster/kubeconfig") else "0",
    }
    run_suite(suite, built_package, env)


def test_typescript_runner_sandbox(
    built_package: Path,
    sandbox_steps: Steps,
    sandbox_policies: SandboxPolicies,
    kubeconfig: str,
    step_image: str,
) -> None:
    """Plugin handler (scoped and not) and CLI command steps, in a restricted namespace under
    admission."""
    greet = 'who=$(sed -n \'s/.*"who": *"\\([^"]*\\)".*/\\1/p\' "$STEPRUN_CONTEXT_FILE"); '
    greet += (
        'echo "greeting $who"; printf \'{"greeting":"hello %s"}\' "$who" > "$STEPRUN_OUTPUT_FILE"'
    )
    report = 'printf \'{"args":"%s"}\' "$*" > "$STEPRUN_OUTPUT_FILE"'
    quality = 'echo checking; echo "::kb-output::{\\"passed\\":true}"'
    policy = sandbox_policies.create(
        "ts",
        {
            "plugins": [
                {
                    "name": "tool",
                    "image": step_image,
                    "version": "1.0.0",
                    "command": SHELL,
                    "handlers": [{"id": "greet", "command": [*SHELL, greet]}],
                    "commands": [{"id": "report", "command": [*SHELL, report, "report"]}],
                },
                # A scoped plugin, as the runtime's plugins are published.
                {
                    "name": "@kb-labs/quality",
                    "image": step_image,
                    "command": SHELL,
                    "handlers": [{"id": "check", "command": [*SHELL, quality]}],
                },
            ]
        },
    )
    env = {
        "KUBECONFIG": kubeconfig,
        "STEPRUN_E2E_NAMESPACE": sandbox_steps.namespace,
        "STEPRUN_E2E_IMAGE": step_image,
        "STEPRUN_E2E_POLICY": policy,
    }
    run_suite("sandbox", built_package, env)
