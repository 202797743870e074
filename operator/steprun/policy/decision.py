"""The outcome of admitting a sandbox step: everything the renderer needs, frozen at admission.

A decision is stored in ``status.admitted`` (the ``AdmittedSandbox`` API type) when the step is
admitted, so a SandboxPolicy edited after the step started never changes that step (its
retries included): the resolved plugin, handler or command, image, command and arguments are
read back from there, never from the policy again.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from steprun.api.models import (
    USES_BUILTIN_SHELL,
    AdmittedSandbox,
    EgressRule,
    Permission,
    ResourceRequirements,
)
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


_ABSENT_WHEN_EMPTY = ("args", "pod_labels", "env", "node_selector", "tolerations")


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
    # How the step named what it runs (spec.sandbox.uses), and what that resolved to.
    uses: str | None = None
    version: str | None = None
    handler: str | None = None
    cli_command: str | None = None
    # Arguments from the policy (a handler's), placed before the step's own.
    args: list[str] = field(default_factory=list)
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

    def grants(self, permission: Permission) -> bool:
        return permission in self.granted

    @property
    def runs_script(self) -> bool:
        """builtin:shell: the step's spec.script runs, not a command of the plugin."""
        return self.uses == USES_BUILTIN_SHELL

    @property
    def adapts_inputs(self) -> bool:
        """A CLI command: context.inputs become its flags."""
        return self.cli_command is not None

    def to_admitted(self) -> AdmittedSandbox:
        """The decision as ``status.admitted`` records it: every field of AdmittedSandbox is a
        field of the decision, by the same name, so one that both gain is recorded as it is."""
        decided = {name: getattr(self, name) for name in AdmittedSandbox.model_fields}
        # What the policy gave none of is recorded as absent rather than as an empty value.
        for name in _ABSENT_WHEN_EMPTY:
            decided[name] = decided[name] or None
        decided["granted"] = sorted(self.granted)
        # The record shares no list, map or model with the decision it was made from.
        return AdmittedSandbox.model_validate(copy.deepcopy(decided))

    @classmethod
    def from_status(cls, admitted: AdmittedSandbox | Mapping[str, Any]) -> SandboxDecision:
        """The decision frozen in ``status.admitted``; also reads the snake_case keys of
        decisions stored by operators that predate the typed ``AdmittedSandbox``."""
        if not isinstance(admitted, AdmittedSandbox):
            admitted = AdmittedSandbox.model_validate(dict(admitted))
        return cls(
            policy=admitted.policy,
            plugin=admitted.plugin,
            image=admitted.image,
            command=list(admitted.command) if admitted.command is not None else None,
            granted=frozenset(admitted.granted),
            timeout_seconds=admitted.timeout_seconds,
            resources=admitted.resources.model_copy(deep=True) if admitted.resources else None,
            runtime_class_name=admitted.runtime_class_name,
            pod_labels=dict(admitted.pod_labels or {}),
            egress=[r.model_copy() for r in admitted.egress],
            env=dict(admitted.env or {}),
            uses=admitted.uses,
            version=admitted.version,
            handler=admitted.handler,
            cli_command=admitted.cli_command,
            args=list(admitted.args or []),
            termination_grace_period_seconds=admitted.termination_grace_period_seconds,
            empty_dir_size_limit=admitted.empty_dir_size_limit or DEFAULT_EMPTY_DIR_SIZE_LIMIT,
            allowed_env=list(admitted.allowed_env) if admitted.allowed_env is not None else None,
            node_selector=dict(admitted.node_selector or {}),
            tolerations=[dict(t) for t in admitted.tolerations or []],
        )
