"""The outcome of admitting a sandbox step: everything the renderer needs, frozen at admission.

A decision is stored in ``status.admitted`` when the step is admitted, so a SandboxPolicy edited
after the step started never changes that step (its retries included).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from steprun.api.models import EgressRule, Permission, ResourceRequirements


@dataclass(frozen=True)
class SandboxDecision:
    policy: str
    plugin: str
    image: str
    command: list[str] | None
    granted: frozenset[Permission]
    timeout_seconds: int
    resources: ResourceRequirements | None
    runtime_class_name: str | None = None
    pod_labels: dict[str, str] = field(default_factory=dict)
    egress: list[EgressRule] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def secrets_allowed(self) -> bool:
        return Permission.SECRETS_READ in self.granted

    @property
    def egress_allowed(self) -> bool:
        return Permission.NETWORK_EGRESS in self.granted

    @property
    def writable_root(self) -> bool:
        return Permission.FILESYSTEM_WRITABLE in self.granted

    @property
    def workspaces_allowed(self) -> bool:
        return Permission.WORKSPACES_MOUNT in self.granted

    def to_status(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["granted"] = sorted(p.value if isinstance(p, Permission) else p for p in self.granted)
        raw["resources"] = self.resources.to_api() if self.resources else None
        raw["egress"] = [r.to_api() for r in self.egress]
        return raw

    @classmethod
    def from_status(cls, raw: dict[str, Any]) -> SandboxDecision:
        return cls(
            policy=raw["policy"],
            plugin=raw["plugin"],
            image=raw["image"],
            command=raw.get("command"),
            granted=frozenset(Permission(p) for p in raw.get("granted", [])),
            timeout_seconds=int(raw["timeout_seconds"]),
            resources=ResourceRequirements.model_validate(raw["resources"])
            if raw.get("resources")
            else None,
            runtime_class_name=raw.get("runtime_class_name"),
            pod_labels=dict(raw.get("pod_labels") or {}),
            egress=[EgressRule.model_validate(r) for r in raw.get("egress") or []],
            env=dict(raw.get("env") or {}),
        )
