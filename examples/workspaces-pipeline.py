"""The write, build, read workflow of examples/workspaces-pipeline/, run by an engine in Python.

Each step is one StepRun of workflow "pipeline", run RUN_ID; all three mount the run's
workspace "src" (a volumeClaimTemplate), so each sees what the steps before it wrote. Names are
deterministic, so running this again with the same run id returns the existing steps instead of
running them twice.

    python examples/workspaces-pipeline.py [--namespace NS] [--run-id ID]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from steprun.client import StepRunClient

IMAGE = "steprun.local/step:1"
WORKSPACE = {
    "name": "src",
    "volumeClaimTemplate": {
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}}
    },
}
STEPS = [
    ("write", "printf 'hello from the write step\\n' > message.txt"),
    ("build", "mkdir -p out && tr a-z A-Z < message.txt > out/result.txt"),
    ("read", 'printf \'{"result": "%s"}\' "$(cat out/result.txt)" > "$STEPRUN_OUTPUT_FILE"'),
]


def step(run_id: str, step_id: str, script: str) -> dict[str, Any]:
    return {
        "image": IMAGE,
        "script": script,
        "context": {
            "workflow": {"name": "pipeline", "runId": run_id, "jobId": "build", "stepId": step_id}
        },
        "workspaces": [WORKSPACE],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", help="namespace of the StepRuns (default: kubeconfig's)")
    parser.add_argument("--run-id", default="py-1", help="the workflow run (default py-1)")
    args = parser.parse_args()
    with StepRunClient(namespace=args.namespace) as steps:
        for number, (step_id, script) in enumerate(STEPS, start=1):
            name = f"pipeline-{args.run_id}-{number}-{step_id}"
            result = steps.run(step(args.run_id, step_id, script), name=name, timeout=300)
            print(f"{name}: {result.phase} (exit code {result.exit_code})")
            if not result.succeeded:
                print(f"{name} failed: {result.message}", file=sys.stderr)
                return 1
        print(f"outputs of the last step: {result.outputs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
