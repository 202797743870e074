"""The steprun command as the CLI tests run it: in-process, or as a process of its own."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from pathlib import Path

from steprun.cli.main import main
from steprun.client import StepRunClient
from steprun.client.backoff import Backoff
from tests.support.signals import default_sigint

REPO = Path(__file__).resolve().parents[2]


def fast_client(args: argparse.Namespace) -> StepRunClient:
    """The client the command makes, with short watches and retries."""
    return StepRunClient.from_kubeconfig(
        args.kubeconfig,
        namespace=args.namespace,
        watch_timeout_seconds=2,
        poll_interval=0.05,
        backoff=Backoff(retries=1, initial=0.01),
    )


def steprun_cli(kubeconfig: str, *argv: str) -> tuple[int, str, str]:
    """``steprun --kubeconfig KUBECONFIG ARGV...`` in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["--kubeconfig", kubeconfig, *argv], make_client=fast_client, stdout=out, stderr=err
    )
    return code, out.getvalue(), err.getvalue()


def cli_process(kubeconfig: str, *argv: str) -> subprocess.Popen[str]:
    """``steprun ARGV...`` as a process with KUBECONFIG set, reading Ctrl-C as a shell would
    deliver it (SIGINT at its default, whatever the test runner set)."""
    env = {**os.environ, "KUBECONFIG": kubeconfig, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "steprun", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=REPO,
        text=True,
        preexec_fn=default_sigint,
    )
