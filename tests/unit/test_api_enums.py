"""API enums are enum members inside the program and plain strings on the wire.

Reading an object gives ``Mode``, ``Permission`` and ``Phase`` members (a phase this version
does not know is kept as the string it is); everything sent to the API server or printed is
plain JSON, which ``yaml.safe_dump`` proves: it refuses enum members.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from steprun.api.models import (
    AdmittedSandbox,
    Mode,
    Permission,
    Phase,
    Reason,
    SandboxPolicySpec,
    StepRun,
    StepRunSpec,
    StepRunStatus,
)
from steprun.reconcile import status as statuses
from steprun.reconcile.rules import Ending
from steprun.render.events import render_event
from tests.unit.factories import at, pod_name, steprun

SANDBOX_SPEC: dict[str, Any] = {
    "mode": "sandbox",
    "sandbox": {"plugin": "eslint", "permissions": ["network.egress", "secrets.read"]},
}
POLICY_SPEC: dict[str, Any] = {
    "grants": ["secrets.read"],
    "plugins": [
        {
            "name": "eslint",
            "image": "registry.example/eslint:9",
            "permissions": ["filesystem.writable"],
            "handlers": [{"id": "fix", "permissions": ["network.egress"]}],
            "commands": [{"id": "lint", "permissions": ["artifacts.read"]}],
        }
    ],
}
ADMITTED: dict[str, Any] = {
    "policy": "default",
    "plugin": "eslint",
    "image": "registry.example/eslint:9",
    "granted": ["filesystem.writable", "network.egress"],
    "timeoutSeconds": 600,
}


def members(values: list[Any], kind: type) -> bool:
    return bool(values) and all(type(v) is kind for v in values)


def test_a_spec_reads_mode_and_permissions_as_members() -> None:
    spec = StepRunSpec.model_validate(SANDBOX_SPEC)

    assert spec.mode is Mode.SANDBOX
    assert spec.sandbox is not None
    assert spec.sandbox.permissions == [Permission.NETWORK_EGRESS, Permission.SECRETS_READ]
    assert members(spec.sandbox.permissions, Permission)
    assert StepRunSpec(image="busybox").mode is Mode.LOCAL


def test_a_policy_reads_its_permissions_as_members() -> None:
    spec = SandboxPolicySpec.model_validate(POLICY_SPEC)
    [plugin] = spec.plugins

    assert members(spec.grants, Permission)
    assert members(plugin.permissions, Permission)
    assert members(plugin.handlers[0].permissions, Permission)
    assert members(plugin.commands[0].permissions, Permission)


def test_an_admission_decision_reads_its_grants_as_members() -> None:
    admitted = AdmittedSandbox.model_validate(ADMITTED)

    assert admitted.granted == [Permission.FILESYSTEM_WRITABLE, Permission.NETWORK_EGRESS]
    assert members(admitted.granted, Permission)


@pytest.mark.parametrize("phase", list(Phase), ids=str)
def test_a_known_phase_is_read_as_its_member(phase: Phase) -> None:
    status = StepRunStatus.model_validate({"phase": str(phase)})

    assert status.phase is phase


def test_an_unknown_phase_is_kept_as_written() -> None:
    status = StepRunStatus.model_validate({"phase": "Paused"})

    assert status.phase == "Paused"
    assert type(status.phase) is str


NOW = at("2024-05-01T10:00:00Z")


def sandbox_steprun() -> StepRun:
    return StepRun.from_body(
        {
            "metadata": {"name": "s", "namespace": "ci", "generation": 1},
            "spec": {**SANDBOX_SPEC, "script": "x"},
            "status": {"phase": "Running", "admitted": ADMITTED},
        }
    )


WIRE: dict[str, Callable[[], Any]] = {
    "spec": lambda: sandbox_steprun().spec.to_api(),
    "policy": lambda: SandboxPolicySpec.model_validate(POLICY_SPEC).to_api(),
    "admitted": lambda: AdmittedSandbox.model_validate(ADMITTED).to_api(),
    "pending": lambda: statuses.to_patch(statuses.pending(sandbox_steprun(), 2, pod_name(2), NOW)),
    "cancelled": lambda: statuses.to_patch(
        statuses.terminal(
            sandbox_steprun(), Ending(Phase.CANCELLED, Reason.CANCELLED, "cancelled"), NOW
        )
    ),
    "given-up": lambda: statuses.to_patch(
        statuses.given_up(1, Ending(Phase.FAILED, Reason.RECONCILE_FAILED, "too large"), NOW)
    ),
    "event": lambda: render_event(steprun(), "Warning", Reason.INVALID_SPEC, "bad", NOW),
    "object": lambda: steprun(status={"phase": "Succeeded"}).model_dump(by_alias=True, mode="json"),
}


@pytest.mark.parametrize("name", list(WIRE))
def test_what_goes_on_the_wire_is_plain_json(name: str) -> None:
    document = WIRE[name]()

    yaml.safe_dump(document)  # refuses enum members
    assert not _enum_members(document), _enum_members(document)


def _enum_members(value: Any, path: str = "") -> list[str]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _enum_members(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _enum_members(v, f"{path}[{i}]")]
    return [path] if isinstance(value, str) and type(value) is not str else []
