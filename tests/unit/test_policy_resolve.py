"""What a sandbox step runs: plugin, handler, CLI command or builtin:shell, found in a policy."""

from __future__ import annotations

from typing import Any

import pytest

from steprun.api.models import Permission, SandboxPolicySpec, SandboxSpec
from steprun.policy.resolve import (
    Denial,
    Resolved,
    Uses,
    command_owners,
    parse_uses,
    policy_problems,
    resolve,
)

ESLINT: dict[str, Any] = {
    "name": "eslint",
    "image": "registry.example/eslint:9",
    "command": ["eslint"],
    "version": "9.1.0",
    "permissions": ["secrets.read"],
    "handlers": [
        {"id": "fix", "args": ["--fix"], "permissions": ["filesystem.writable"]},
        {"id": "notes/draft", "command": ["eslint-notes"], "args": ["draft"]},
    ],
    "commands": [
        {
            "id": "lint",
            "command": ["eslint", "--format", "json"],
            "permissions": ["network.egress"],
        },
        {"id": "mind:rag-index"},
    ],
}
PRETTIER: dict[str, Any] = {
    "name": "prettier",
    "image": "registry.example/prettier:3",
    "commands": [{"id": "format", "command": ["prettier", "--write"]}],
}
SH: dict[str, Any] = {"name": "sh", "image": "registry.example/busybox:1", "command": ["/bin/sh"]}


def policy(*plugins: dict[str, Any], **spec: Any) -> SandboxPolicySpec:
    return SandboxPolicySpec.model_validate(
        {"plugins": list(plugins or (ESLINT, PRETTIER, SH)), **spec}
    )


def sandbox(**fields: str) -> SandboxSpec:
    return SandboxSpec.model_validate(fields)


def found(result: Resolved | Denial) -> Resolved:
    assert isinstance(result, Resolved), str(result)
    return result


def denied(result: Resolved | Denial) -> str:
    assert isinstance(result, Denial), result
    text = str(result)
    assert "; " not in text, "denials are joined with '; '"
    return text


# ---------------------------------------------------------------- parsing uses


@pytest.mark.parametrize(
    ("uses", "parsed"),
    [
        ("plugin:eslint/fix", Uses("handler", "eslint", "fix")),
        ("plugin:eslint/notes/draft", Uses("handler", "eslint", "notes/draft")),
        ("command:lint", Uses("command", None, "lint")),
        ("command:mind:rag-index", Uses("command", None, "mind:rag-index")),
        ("builtin:shell", Uses("shell")),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_parse_uses(uses: str, parsed: Uses) -> None:
    assert parse_uses(uses) == parsed


@pytest.mark.parametrize(
    "uses", ["plugin:eslint", "plugin:/fix", "command:", "builtin:python", "eslint", ""]
)
def test_parse_uses_refuses_other_forms_saying_what_is_expected(uses: str) -> None:
    with pytest.raises(ValueError, match="plugin:<plugin>/<handler>, command:<name> or builtin"):
        parse_uses(uses)


# ---------------------------------------------------------------- resolution table


@pytest.mark.parametrize(
    ("step", "plugin", "handler", "command", "container_command", "args"),
    [
        pytest.param({"plugin": "eslint"}, "eslint", None, None, ["eslint"], [], id="plugin"),
        pytest.param(
            {"uses": "plugin:eslint/fix"}, "eslint", "fix", None, ["eslint"], ["--fix"],
            id="handler-with-the-plugin-command",
        ),
        pytest.param(
            {"uses": "plugin:eslint/notes/draft"}, "eslint", "notes/draft", None,
            ["eslint-notes"], ["draft"], id="handler-path-with-its-own-command",
        ),
        pytest.param(
            {"uses": "command:lint"}, "eslint", None, "lint",
            ["eslint", "--format", "json"], [], id="command",
        ),
        pytest.param(
            {"uses": "command:mind:rag-index"}, "eslint", None, "mind:rag-index", ["eslint"], [],
            id="namespaced-command-with-the-plugin-command",
        ),
        pytest.param(
            {"uses": "command:format"}, "prettier", None, "format", ["prettier", "--write"], [],
            id="command-of-another-plugin",
        ),
    ],
)  # fmt: skip
def test_each_form_resolves(
    step: dict[str, str],
    plugin: str,
    handler: str | None,
    command: str | None,
    container_command: list[str],
    args: list[str],
) -> None:
    resolved = found(resolve(sandbox(**step), policy()))
    assert resolved.plugin.name == plugin
    assert (resolved.handler.id if resolved.handler else None) == handler
    assert (resolved.command.id if resolved.command else None) == command
    assert resolved.container_command == container_command
    assert resolved.policy_args == args


def test_builtin_shell_resolves_to_the_designated_plugin() -> None:
    resolved = found(resolve(sandbox(uses="builtin:shell"), policy(shellPlugin="sh")))
    assert resolved.plugin.name == "sh"
    assert resolved.uses.form == "shell"
    # The renderer runs the step's script; no command comes from the policy.
    assert resolved.container_command is None
    assert resolved.policy_args == []


@pytest.mark.parametrize(
    ("step", "spec", "words"),
    [
        pytest.param(
            {"plugin": "rubocop"}, {},
            ["plugin rubocop is not declared", "plugins: eslint, prettier, sh"],
            id="plugin",
        ),
        pytest.param(
            {"uses": "plugin:rubocop/fix"}, {},
            ["Plugin not found: rubocop", "plugins: eslint, prettier, sh"],
            id="plugin-of-a-handler",
        ),
        pytest.param(
            {"uses": "plugin:eslint/format"}, {},
            ["Workflow handler not found: format in plugin eslint",
             "handlers of eslint: fix, notes/draft"],
            id="handler",
        ),
        pytest.param(
            {"uses": "plugin:prettier/fix"}, {},
            ["Workflow handler not found: fix in plugin prettier", "handlers of prettier: none"],
            id="handler-of-a-plugin-without-handlers",
        ),
        pytest.param(
            {"uses": "command:test"}, {},
            ["CLI command not found: test",
             "commands: lint (plugin eslint), mind:rag-index (plugin eslint), "
             "format (plugin prettier)"],
            id="command",
        ),
        pytest.param(
            {"uses": "builtin:shell"}, {},
            ["builtin:shell is not available", "names no shellPlugin", "spec.shellPlugin"],
            id="shell-without-a-shell-plugin",
        ),
        pytest.param(
            {"uses": "builtin:shell"}, {"shellPlugin": "bash"},
            ["builtin:shell is not available", "shellPlugin bash is not one of its plugins",
             "plugins: eslint, prettier, sh"],
            id="shell-plugin-not-declared",
        ),
    ],
)  # fmt: skip
def test_not_found_names_what_is_missing_and_what_exists(
    step: dict[str, str], spec: dict[str, Any], words: list[str]
) -> None:
    text = denied(resolve(sandbox(**step), policy(**spec)))
    for word in words:
        assert word in text


def test_command_not_found_in_a_policy_without_commands() -> None:
    text = denied(resolve(sandbox(uses="command:lint"), policy(SH)))
    assert text == "CLI command not found: lint (commands: none)"


def test_an_ambiguous_command_is_refused_naming_every_plugin() -> None:
    twin = {**PRETTIER, "name": "prettier2"}
    text = denied(resolve(sandbox(uses="command:format"), policy(ESLINT, PRETTIER, twin)))
    assert text.startswith("CLI command format is ambiguous: plugins prettier and prettier2")


@pytest.mark.parametrize("step", [{}, {"plugin": "eslint", "uses": "command:lint"}])
def test_exactly_one_of_plugin_and_uses(step: dict[str, str]) -> None:
    assert denied(resolve(sandbox(**step), policy())) == (
        "spec.sandbox needs exactly one of plugin and uses"
    )


# ---------------------------------------------------------------- permissions


def test_permissions_name_who_needs_each() -> None:
    resolved = found(resolve(sandbox(uses="plugin:eslint/fix"), policy()))
    assert resolved.permissions() == {
        Permission.SECRETS_READ: ["plugin eslint"],
        Permission.FILESYSTEM_WRITABLE: ["handler fix of plugin eslint"],
    }
    resolved = found(resolve(sandbox(uses="command:lint"), policy()))
    assert resolved.permissions() == {
        Permission.SECRETS_READ: ["plugin eslint"],
        Permission.NETWORK_EGRESS: ["command lint of plugin eslint"],
    }
    assert found(resolve(sandbox(plugin="eslint"), policy())).permissions() == {
        Permission.SECRETS_READ: ["plugin eslint"]
    }


# ---------------------------------------------------------------- the policy's own check


def test_policy_problems_restate_the_schema_rules() -> None:
    twin = {**PRETTIER, "name": "prettier2"}
    doubled = {
        **SH,
        "handlers": [{"id": "run"}, {"id": "run"}],
        "commands": [{"id": "x"}, {"id": "x"}],
    }
    spec = policy(ESLINT, PRETTIER, twin, doubled, shellPlugin="bash")
    assert policy_problems(spec) == [
        "command format is declared by plugins prettier and prettier2",
        "plugin sh declares handler run twice",
        "plugin sh declares command x twice",
        "shellPlugin bash is not a plugin of the policy",
    ]
    assert policy_problems(policy(shellPlugin="sh")) == []


def test_command_owners() -> None:
    assert command_owners(policy().plugins) == {
        "lint": ["eslint"],
        "mind:rag-index": ["eslint"],
        "format": ["prettier"],
    }


# ---------------------------------------------------------------- scoped plugin ids

QUALITY: dict[str, Any] = {
    "name": "@kb-labs/quality",
    "image": "registry.example/quality:1",
    "command": ["quality"],
    "handlers": [{"id": "check"}, {"id": "report/html"}],
}
OTHER_QUALITY: dict[str, Any] = {**QUALITY, "name": "@acme/quality", "handlers": [{"id": "check"}]}


@pytest.mark.parametrize(
    ("uses", "parsed"),
    [
        ("plugin:@kb-labs/quality/check", Uses("handler", "@kb-labs/quality", "check")),
        ("plugin:@kb-labs/quality/report/html", Uses("handler", "@kb-labs/quality", "report/html")),
    ],
)
def test_parse_scoped_uses(uses: str, parsed: Uses) -> None:
    assert parse_uses(uses) == parsed


@pytest.mark.parametrize(
    "uses", ["plugin:@kb-labs/quality", "plugin:@kb-labs//check", "plugin:@/q/c"]
)
def test_a_scoped_uses_needs_scope_name_and_handler(uses: str) -> None:
    with pytest.raises(ValueError, match="plugin:<plugin>/<handler>"):
        parse_uses(uses)


@pytest.mark.parametrize(
    "uses",
    ["plugin:@kb-labs/quality/check", "plugin:quality/check"],
    ids=["scoped", "short-name"],
)
def test_a_scoped_plugin_resolves_by_its_name_or_its_unique_short_name(uses: str) -> None:
    resolved = found(resolve(sandbox(uses=uses), policy(QUALITY, ESLINT)))
    assert resolved.plugin.name == "@kb-labs/quality"
    assert resolved.uses.plugin == "@kb-labs/quality"
    assert resolved.handler is not None and resolved.handler.id == "check"
    assert resolved.container_command == ["quality"]


def test_an_exact_name_wins_over_a_short_name() -> None:
    plain = {**QUALITY, "name": "quality", "command": ["plain-quality"]}
    resolved = found(resolve(sandbox(uses="plugin:quality/check"), policy(QUALITY, plain)))
    assert resolved.plugin.name == "quality"


def test_a_short_name_of_two_scoped_plugins_is_refused_naming_both() -> None:
    text = denied(resolve(sandbox(uses="plugin:quality/check"), policy(QUALITY, OTHER_QUALITY)))
    assert "Plugin quality is ambiguous" in text
    assert "@kb-labs/quality and @acme/quality" in text


def test_a_missing_scoped_plugin_or_handler_is_named_in_the_runtime_words() -> None:
    missing = denied(resolve(sandbox(uses="plugin:@kb-labs/lint/check"), policy(QUALITY)))
    assert missing.startswith("Plugin not found: @kb-labs/lint")
    handler = denied(resolve(sandbox(uses="plugin:quality/deploy"), policy(QUALITY)))
    assert handler.startswith("Workflow handler not found: deploy in plugin @kb-labs/quality")


def test_scoped_names_are_valid_in_steps_and_policies() -> None:
    SandboxSpec.model_validate({"uses": "plugin:@kb-labs/quality/check"})
    SandboxSpec.model_validate({"plugin": "@kb-labs/quality"})
    spec = policy(QUALITY, shellPlugin="@kb-labs/quality")
    assert spec.shell_plugin == "@kb-labs/quality"
    for bad in ("@Kb/quality", "@kb-labs/", "@kb-labs", "kb/quality", "@a/b/c"):
        with pytest.raises(ValueError):
            SandboxSpec.model_validate({"plugin": bad})
