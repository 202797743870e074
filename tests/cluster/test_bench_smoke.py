"""The benchmark harness end to end at a tiny size: it runs, cleans up and reports sane numbers.

No timing assertions: this machine's speed is not under test, the harness is.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from kubernetes import client

REPO = Path(__file__).resolve().parents[2]
SIZE = 3


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value >= 0


def test_bench_runs_every_arm_and_writes_a_report(
    kubeconfig: str, crds: None, api_client: client.ApiClient, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    command = [sys.executable, "-m", "bench", "--sizes", str(SIZE), "--rates", "burst"]
    # Both Job arms (the controller-manager restarted unthrottled, then with its defaults), one
    # run each: the harness is under test here, not the spread. The tree under test may differ
    # from its commit; a report for people must not.
    arms = [
        "--controller-manager",
        "unthrottled,default",
        "--repeats",
        "1",
        "--allow-local-changes",
    ]
    result = subprocess.run(
        [*command, "--nodes", "real", "--out", str(out), *arms],
        cwd=REPO,
        env={**os.environ, "KUBECONFIG": kubeconfig, "BENCH_WORK_DIR": str(tmp_path / "work")},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]

    (report,) = out.glob(f"*-{SIZE}.md")
    text = report.read_text()
    assert f"# StepRun vs Job vs bare Pods: {SIZE} steps per arm" in text
    assert "Job (unthrottled controller-manager)" in text
    assert "Job (default controller-manager)" in text
    assert "## Targets" in text
    assert (out / "latest.md").read_text() == text
    plot = report.with_suffix(".png")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"]({plot.name})" in text

    document = json.loads(report.with_suffix(".json").read_text())
    scenarios = document["scenarios"]
    # The mode the cluster was found in runs last, so the run leaves it as it was.
    modes = [s["spec"]["controller_manager"] for s in scenarios]
    assert sorted(modes) == ["default", "unthrottled"]
    for scenario in scenarios:
        flags = scenario["controller_flags"]["kube-controller-manager"]
        unthrottled = scenario["spec"]["controller_manager"] == "unthrottled"
        assert ("--kube-api-qps" in flags) == unthrottled, flags
    for scenario in scenarios:
        _check_scenario(scenario, core=client.CoreV1Api(api_client), api_client=api_client)


def _check_scenario(scenario: dict[str, Any], core: Any, api_client: client.ApiClient) -> None:
    assert scenario["errors"] == []
    for side in ("steprun", "job", "pod"):
        summary = scenario["summaries"][side]
        assert (summary["submitted"], summary["succeeded"], summary["unfinished"]) == (
            SIZE,
            SIZE,
            0,
        )
        assert summary["extra_pods"] == 0
        for metric in ("pod_creation", "end_to_end"):
            assert summary[metric]["count"] == SIZE
            assert _finite(summary[metric]["p50"]) and _finite(summary[metric]["max"])
            assert summary[metric]["p50"] <= summary[metric]["max"]
        assert len(scenario["latencies"][side]["pod_creation"]) == SIZE
    operator = scenario["usage"]["operator"]
    assert operator["cpu_seconds"] > 0 and operator["peak_rss_bytes"] > 10 * 2**20
    # The operator made writes, by its own count, and the audit log (when this cluster logs
    # StepRun writes) attributes them to the operator's own identity.
    assert sum(scenario["operator_requests"].values()) >= 3 * SIZE
    if scenario["audit_complete"]:
        by_actor = {(r["side"], r["actor"]) for r in scenario["audit_rows"]}
        assert ("steprun", "operator") in by_actor
        assert ("job", "job controller") in by_actor
        assert ("pod", "bench client") in by_actor
    assert scenario["usage"]["bench client"]["cpu_seconds"] > 0

    # Nothing is left behind: namespaces and the operator's ClusterRoleBinding are gone.
    leftovers = [ns for ns in scenario["namespaces"].values() if _exists(core.read_namespace, ns)]
    assert leftovers == []
    rbac = client.RbacAuthorizationV1Api(api_client)
    binding = f"steprun-bench-{scenario['run_id']}"
    assert not _exists(rbac.read_cluster_role_binding, binding)


def _exists(read: Any, name: str) -> bool:
    try:
        read(name)
    except client.ApiException as error:
        if error.status == 404:
            return False
        raise
    return True
