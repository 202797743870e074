"""The outcome of admitting a sandbox step: everything the renderer needs, frozen at admission.

A decision is stored in ``status.admitted`` when the step is admitted, so a SandboxPolicy edited
after the step started never changes that step (its retries included).
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field
from typing import Any

from steprun.api.models import EgressRule, Permission, ResourceRequirements
from steprun.config import DEFAULT_EMPTY_DIR_SIZE_LIMIT

# Author env names that make a plugin load or run code of the author's choosing: loader and
# interpreter hooks, shell start-up files, tool configuration that names commands. Without
# this, setting LD_PRELOAD or NODE_OPTIONS would turn the plugin's grants into the author's.
HOOK_ENV_PATTERNS = (
    "LD_*",
    "DYLD_*",
    "GCONV_PATH",
    "GLIBC_TUNABLES",
    "MALLOC_*",
    "LOCPATH",
    "NLSPATH",
    "HOSTALIASES",
    "RES_OPTIONS",
    "PATH",
    "IFS",
    "ENV",
    "BASH_ENV",
    "BASH_FUNC_*",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "NODE_OPTIONS",
    "NODE_PATH",
    "NODE_REPL_EXTERNAL_MODULE",
    "npm_config_*",
    "NPM_CONFIG_*",
    "PYTHON*",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "CLASSPATH",
    "PERL5OPT",
    "PERL5LIB",
    "PERLLIB",
    "PERL5DB",
    "RUBYOPT",
    "RUBYLIB",
    "GEM_PATH",
    "GEM_HOME",
    "GIT_CONFIG*",
    "GIT_EXEC_PATH",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_ASKPASS",
    "GIT_PROXY_COMMAND",
    "GIT_EXTERNAL_DIFF",
    "SSH_ASKPASS",
    "EDITOR",
    "VISUAL",
    "PAGER",
    "GIT_PAGER",
)


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
    # Bounds a step cannot skip (decisions frozen before these existed read as unbounded).
    termination_grace_period_seconds: int | None = None
    empty_dir_size_limit: str = DEFAULT_EMPTY_DIR_SIZE_LIMIT
    allowed_env: list[str] | None = None
    # The Pod's scheduling comes from the policy alone.
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)

    def accepts_author_env(self, name: str) -> bool:
        """Whether an env name set by the step's author reaches the plugin."""
        if self.allowed_env is not None:
            return any(fnmatch.fnmatchcase(name, p) for p in self.allowed_env)
        return not any(fnmatch.fnmatchcase(name, p) for p in HOOK_ENV_PATTERNS)

    @property
    def secrets_allowed(self) -> bool:
        return Permission.SECRETS_READ in self.granted

    @property
    def egress_allowed(self) -> bool:
        return Permission.NETWORK_EGRESS in self.granted

    @property
    def writable_root(self) -> bool:
        return Permission.FILESYSTEM_WRITABLE in self.granted

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
            termination_grace_period_seconds=raw.get("termination_grace_period_seconds"),
            empty_dir_size_limit=str(
                raw.get("empty_dir_size_limit") or DEFAULT_EMPTY_DIR_SIZE_LIMIT
            ),
            allowed_env=list(raw["allowed_env"]) if raw.get("allowed_env") is not None else None,
            node_selector=dict(raw.get("node_selector") or {}),
            tolerations=[dict(t) for t in raw.get("tolerations") or []],
        )
