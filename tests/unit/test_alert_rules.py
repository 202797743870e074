"""The chart's alert rules fire when they should and stay quiet otherwise: `promtool test rules`
on synthetic series, with the rules as the chart renders them.

promtool comes from the Debian package prometheus (hack/install-prometheus.sh; `make test`
installs it). tests/cluster/test_deploy.py evaluates the same rules against a real operator."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_manifests import helm, one, render

__all__ = ["helm"]
NS = "steprun-system"
SEL = f'namespace="{NS}"'


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found:
        return found
    message = "promtool is not installed (hack/install-prometheus.sh installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def alert_test(
    alert: str, series: dict[str, str], eval_time: str, fires: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "interval": "1m",
        "input_series": [{"series": name, "values": values} for name, values in series.items()],
        "alert_rule_test": [{"eval_time": eval_time, "alertname": alert, "exp_alerts": fires}],
    }


def expected(rules: dict[str, Any], alert: str, value: str = "") -> dict[str, Any]:
    rule = rules[alert]
    annotations = {
        k: v.replace("{{ $value | humanize }}", value).replace("{{ $value }}", value)
        for k, v in rule["annotations"].items()
    }
    return {"exp_labels": dict(rule["labels"]), "exp_annotations": annotations}


def test_alerts_fire_on_their_conditions_only(helm: str, promtool: str, tmp_path: Path) -> None:
    docs = render(helm, "--set", "monitoring.prometheusRule.enabled=true")
    spec = one(docs, "PrometheusRule")["spec"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    rules = {r["alert"]: r for r in spec["groups"][0]["rules"]}
    up = f'up{{job="steprun",{SEL},pod="steprun-operator-0"}}'
    active0 = f'steprun_active_replica{{{SEL},pod="steprun-operator-0"}}'
    active1 = f'steprun_active_replica{{{SEL},pod="steprun-operator-1"}}'
    pending = f'steprun_stepruns{{{SEL},phase="Pending"}}'
    running = f'steprun_transitions_total{{{SEL},phase="Running",reason="Started"}}'
    ended = f'steprun_transitions_total{{{SEL},phase="Succeeded",reason="Completed"}}'
    pended = f'steprun_transitions_total{{{SEL},phase="Pending",reason="PodCreated"}}'
    errors = f'steprun_reconcile_errors_total{{{SEL},error="Transient"}}'
    conflicts = f'steprun_reconcile_errors_total{{{SEL},error="Conflict"}}'
    depth = f'steprun_workqueue_depth{{{SEL},pod="steprun-operator-0"}}'
    tests = [
        # Down: the only replica stops answering; up again: quiet.
        alert_test(
            "SteprunOperatorDown", {up: "0x10"}, "6m", [expected(rules, "SteprunOperatorDown")]
        ),
        alert_test("SteprunOperatorDown", {up: "1x10"}, "6m", []),
        alert_test("SteprunOperatorDown", {}, "6m", [expected(rules, "SteprunOperatorDown")]),
        # Replicas up, none active; one active: quiet.
        alert_test(
            "SteprunNoActiveReplica",
            {active0: "0x10", active1: "0x10"},
            "6m",
            [expected(rules, "SteprunNoActiveReplica")],
        ),
        alert_test("SteprunNoActiveReplica", {active0: "1x10", active1: "0x10"}, "6m", []),
        # Transient errors at 1/s for 10 minutes; conflicts alone are normal.
        alert_test(
            "SteprunReconcileErrors",
            {errors: "0+60x20"},
            "16m",
            [expected(rules, "SteprunReconcileErrors", "1")],
        ),
        alert_test("SteprunReconcileErrors", {conflicts: "0+600x20"}, "16m", []),
        # 3 steps Pending while none moved on for 15 minutes (also before any ever did; new
        # steps becoming Pending is no progress).
        alert_test(
            "SteprunStepsStuckPending",
            {pending: "3x40", running: "5x40", ended: "7x40", pended: "0+1x40"},
            "32m",
            [expected(rules, "SteprunStepsStuckPending", "3")],
        ),
        alert_test(
            "SteprunStepsStuckPending",
            {pending: "3x40"},
            "32m",
            [expected(rules, "SteprunStepsStuckPending", "3")],
        ),
        # A stuck operator writes no phase at all: its steps stay "New".
        alert_test(
            "SteprunStepsStuckPending",
            {f'steprun_stepruns{{{SEL},phase="New"}}': "2x40"},
            "32m",
            [expected(rules, "SteprunStepsStuckPending", "2")],
        ),
        # Progress: steps start running, or quick ones end without ever being seen Running.
        alert_test("SteprunStepsStuckPending", {pending: "3x40", running: "0+1x40"}, "32m", []),
        alert_test("SteprunStepsStuckPending", {pending: "3x40", ended: "0+1x40"}, "32m", []),
        # The queue holds 150 StepRuns for 10 minutes; 20 is fine.
        alert_test(
            "SteprunWorkQueueBackingUp",
            {depth: "150x20"},
            "12m",
            [expected(rules, "SteprunWorkQueueBackingUp")],
        ),
        alert_test("SteprunWorkQueueBackingUp", {depth: "20x20"}, "12m", []),
    ]
    (tmp_path / "tests.yaml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests})
    )
    result = subprocess.run(
        [promtool, "test", "rules", "tests.yaml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_advice_names_the_setting_that_helps(helm: str) -> None:
    spec = one(render(helm, "--set", "monitoring.prometheusRule.enabled=true"), "PrometheusRule")
    rules = {r["alert"]: r for r in spec["spec"]["groups"][0]["rules"]}
    # The queue is drained reconcileConcurrency at a time; workerLimit is kopf's, not the queue's.
    queue = rules["SteprunWorkQueueBackingUp"]["annotations"]["description"]
    assert "reconcileConcurrency" in queue and "workerLimit" not in queue
    assert 'phase=~"Pending|New"' in rules["SteprunStepsStuckPending"]["expr"]
