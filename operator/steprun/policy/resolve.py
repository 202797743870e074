"""What a sandbox step runs: its ``sandbox.plugin`` or ``sandbox.uses`` resolved in a policy (pure).

The forms are those of a workflow step's ``uses`` (as in the @kb-labs/workflow-runtime
sandbox runner), plus the original one:

- ``sandbox.plugin: <name>``: the plugin's own command (the original form);
- ``uses: plugin:<id>/<handler>``: a workflow handler the plugin declares; ``<id>`` is a plugin
  name, scoped (``@kb-labs/quality``) or not, or the short name of a scoped one (``quality``
  for ``@kb-labs/quality``) when exactly one plugin of the policy has it — the runtime's
  sandbox runner resolves short names the same way, except that it takes the first match
  where this refuses an ambiguous one;
- ``uses: command:<name>``: a CLI command of exactly one plugin of the policy, its input adapted
  to flags when the Pod is rendered;
- ``uses: builtin:shell``: ``spec.script`` in the plugin the policy names as ``shellPlugin``.

Resolution either finds one entry point or says, as a ``Denial``, what was not found and what
the policy declares instead, in the words workflow engines know ("Workflow handler not found:
X in plugin Y").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from steprun.api.models import (
    USES_BUILTIN_SHELL,
    USES_COMMAND_PREFIX,
    USES_PLUGIN_PREFIX,
    Permission,
    Plugin,
    PluginCommand,
    PluginHandler,
    SandboxPolicySpec,
    SandboxSpec,
)

Form = Literal["plugin", "handler", "command", "shell"]


@dataclass(frozen=True)
class Denial:
    """One thing the policy refuses: ``item`` names it, ``detail`` says why and what to fix."""

    item: str
    detail: str

    def __str__(self) -> str:
        return f"{self.item} {self.detail}"


@dataclass(frozen=True)
class Uses:
    """A parsed ``sandbox.uses`` (or ``sandbox.plugin``, as form plugin)."""

    form: Form
    plugin: str | None = None
    entry: str | None = None


@dataclass(frozen=True)
class Resolved:
    """The entry point a step runs, found in the policy."""

    uses: Uses
    plugin: Plugin
    handler: PluginHandler | None = None
    command: PluginCommand | None = None

    @property
    def entry_name(self) -> str | None:
        """How a message names the entry: "handler fix", "command lint" (None: the plugin)."""
        if self.handler is not None:
            return f"handler {self.handler.id}"
        if self.command is not None:
            return f"command {self.command.id}"
        return None

    @property
    def container_command(self) -> list[str] | None:
        """The handler's or command's command, else the plugin's (builtin:shell: none, the
        renderer runs the script)."""
        if self.uses.form == "shell":
            return None
        entry = self.handler or self.command
        own = entry.command if entry is not None else None
        chosen = own if own is not None else self.plugin.command
        return list(chosen) if chosen is not None else None

    @property
    def policy_args(self) -> list[str]:
        return list(self.handler.args or []) if self.handler is not None else []

    def permissions(self) -> dict[Permission, list[str]]:
        """Each permission the plugin and the entry need, with who needs it."""
        needers: dict[Permission, list[str]] = {}
        sources: list[tuple[str, Iterable[Permission]]] = [
            (f"plugin {self.plugin.name}", self.plugin.permissions)
        ]
        entry = self.handler or self.command
        if entry is not None and self.entry_name is not None:
            sources.append((f"{self.entry_name} of plugin {self.plugin.name}", entry.permissions))
        for who, permissions in sources:
            for permission in permissions:
                needers.setdefault(permission, []).append(who)
        return needers


def parse_uses(uses: str) -> Uses:
    """``plugin:<id>/<handler>``, ``command:<name>`` or ``builtin:shell``.

    The CRD's pattern admits only these forms; a ValueError says what is expected for anything
    else (a manifest rendered offline never met the API server).
    """
    if uses == USES_BUILTIN_SHELL:
        return Uses("shell")
    if uses.startswith(USES_PLUGIN_PREFIX):
        reference = uses[len(USES_PLUGIN_PREFIX) :]
        # A scoped plugin (@scope/name) holds one "/" of its own.
        parts = reference.split("/", 2 if reference.startswith("@") else 1)
        plugin, handler = "/".join(parts[:-1]), parts[-1]
        if (
            plugin
            and handler
            and (not plugin.startswith("@") or (len(parts) == 3 and all(parts) and parts[0] != "@"))
        ):
            return Uses("handler", plugin, handler)
    elif uses.startswith(USES_COMMAND_PREFIX):
        name = uses[len(USES_COMMAND_PREFIX) :]
        if name:
            return Uses("command", None, name)
    raise ValueError(
        f'spec.sandbox.uses "{uses}" must be plugin:<plugin>/<handler>, command:<name> or '
        f"{USES_BUILTIN_SHELL}"
    )


def resolve(sandbox: SandboxSpec, policy: SandboxPolicySpec) -> Resolved | Denial:
    """The entry point ``sandbox`` names in ``policy``, or the denial saying why there is none."""
    if (sandbox.plugin is None) == (sandbox.uses is None):
        return Denial("spec.sandbox", "needs exactly one of plugin and uses")
    if sandbox.uses is None:
        name = sandbox.plugin or ""
        plugin = _plugin(policy.plugins, name)
        if plugin is None:
            return Denial(f"plugin {name}", f"is not declared by the policy ({_plugins(policy)})")
        return Resolved(Uses("plugin", name), plugin)
    try:
        uses = parse_uses(sandbox.uses)
    except ValueError as exc:
        return Denial("spec.sandbox.uses", f"is invalid: {exc}")
    match uses.form:
        case "handler":
            return _resolve_handler(uses, policy)
        case "command":
            return _resolve_command(uses, policy)
        case _:
            return _resolve_shell(uses, policy)


def command_owners(plugins: Sequence[Plugin]) -> dict[str, list[str]]:
    """Each CLI command id with the plugins declaring it, in policy order."""
    owners: dict[str, list[str]] = {}
    for plugin in plugins:
        for command in plugin.commands or []:
            declaring = owners.setdefault(command.id, [])
            if plugin.name not in declaring:
                declaring.append(plugin.name)
    return owners


def policy_problems(policy: SandboxPolicySpec) -> list[str]:
    """What the SandboxPolicy schema refuses about plugin entry points, checked again here for
    policies that never met it (rendered offline, or stored before the rule existed)."""
    problems = []
    for command, plugins in command_owners(policy.plugins).items():
        if len(plugins) > 1:
            problems.append(f"command {command} is declared by plugins {_and(plugins)}")
    for plugin in policy.plugins:
        for kind, ids in (
            ("handler", [h.id for h in plugin.handlers or []]),
            ("command", [c.id for c in plugin.commands or []]),
        ):
            for duplicate in sorted({i for i in ids if ids.count(i) > 1}):
                problems.append(f"plugin {plugin.name} declares {kind} {duplicate} twice")
    if policy.shell_plugin and _plugin(policy.plugins, policy.shell_plugin) is None:
        problems.append(f"shellPlugin {policy.shell_plugin} is not a plugin of the policy")
    return problems


def _resolve_handler(uses: Uses, policy: SandboxPolicySpec) -> Resolved | Denial:
    assert uses.plugin is not None and uses.entry is not None
    plugin = _plugin(policy.plugins, uses.plugin)
    if plugin is None:
        scoped = [
            p
            for p in policy.plugins
            if p.name.startswith("@") and short_name(p.name) == uses.plugin
        ]
        if len(scoped) > 1:
            return Denial(
                f"Plugin {uses.plugin}",
                f"is ambiguous: it is the short name of {_and([p.name for p in scoped])} (write "
                "the scoped name)",
            )
        if not scoped:
            return Denial(f"Plugin not found: {uses.plugin}", f"({_plugins(policy)})")
        plugin = scoped[0]
        uses = Uses("handler", plugin.name, uses.entry)
    handler = next((h for h in plugin.handlers or [] if h.id == uses.entry), None)
    if handler is None:
        declared = ", ".join(h.id for h in plugin.handlers or []) or "none"
        return Denial(
            f"Workflow handler not found: {uses.entry} in plugin {plugin.name}",
            f"(handlers of {plugin.name}: {declared})",
        )
    return Resolved(uses, plugin, handler=handler)


def _resolve_command(uses: Uses, policy: SandboxPolicySpec) -> Resolved | Denial:
    assert uses.entry is not None
    found = [(p, c) for p in policy.plugins for c in p.commands or [] if c.id == uses.entry]
    if not found:
        declared = ", ".join(
            f"{c.id} (plugin {p.name})" for p in policy.plugins for c in p.commands or []
        )
        return Denial(f"CLI command not found: {uses.entry}", f"(commands: {declared or 'none'})")
    if len(found) > 1:
        return Denial(
            f"CLI command {uses.entry}",
            f"is ambiguous: plugins {_and([p.name for p, _ in found])} all declare it, and a "
            "policy must declare each command once (ask a cluster admin to fix the policy)",
        )
    plugin, command = found[0]
    return Resolved(Uses("command", plugin.name, command.id), plugin, command=command)


def _resolve_shell(uses: Uses, policy: SandboxPolicySpec) -> Resolved | Denial:
    if not policy.shell_plugin:
        return Denial(
            USES_BUILTIN_SHELL,
            "is not available: the policy names no shellPlugin (ask a cluster admin to set "
            "spec.shellPlugin, or use plugin:<plugin>/<handler> or command:<name>)",
        )
    plugin = _plugin(policy.plugins, policy.shell_plugin)
    if plugin is None:
        return Denial(
            USES_BUILTIN_SHELL,
            f"is not available: the policy's shellPlugin {policy.shell_plugin} is not one of "
            f"its plugins ({_plugins(policy)})",
        )
    return Resolved(Uses("shell", plugin.name), plugin)


def short_name(plugin: str) -> str:
    """A scoped plugin's name without its scope (``@kb-labs/quality`` -> ``quality``)."""
    return plugin.split("/", 1)[1] if plugin.startswith("@") and "/" in plugin else plugin


def _plugin(plugins: Iterable[Plugin], name: str) -> Plugin | None:
    return next((p for p in plugins if p.name == name), None)


def _plugins(policy: SandboxPolicySpec) -> str:
    return "plugins: " + (", ".join(p.name for p in policy.plugins) or "none")


def _and(names: Sequence[str]) -> str:
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)
