"""Sandbox admission: does a SandboxPolicy admit a step, and with what settings (pure).

Every rule is checked and every denial collected, so one rejection tells the step author all
there is to fix instead of one item per attempt. What the step runs is resolved first (its
plugin, or the handler or CLI command its ``sandbox.uses`` names, see ``policy.resolve``). An
admitted step gets a ``SandboxDecision`` holding only the permissions the step needs (the union
of its plugin's, its handler's or command's and its own), never everything the policy would
grant: a plugin that did not ask for secrets.read never sees a secret even under a generous
policy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction

from steprun.api.models import (
    DEFAULT_SANDBOX_MAX_GRACE_SECONDS,
    EgressRule,
    LabelSelector,
    Mode,
    Permission,
    QuantityMap,
    Reason,
    ResourceRequirements,
    SandboxPolicy,
    SandboxPolicySpec,
    StepRun,
)
from steprun.config import OperatorConfig
from steprun.policy.decision import SandboxDecision
from steprun.policy.quantity import parse_quantity
from steprun.policy.resolve import Denial, Resolved, policy_problems, resolve

__all__ = ["AdmissionResult", "Denial", "admit", "namespace_matches"]

# Who asks for a permission the step itself lists in spec.sandbox.permissions.
STEP = "spec.sandbox.permissions"


@dataclass(frozen=True)
class AdmissionResult:
    """Either ``decision`` is set (admitted) or ``reason`` is (refused), never both."""

    decision: SandboxDecision | None
    reason: Reason | None
    message: str
    denials: tuple[Denial, ...] = ()

    @property
    def admitted(self) -> bool:
        return self.decision is not None


def admit(
    sr: StepRun,
    policy: SandboxPolicy | None,
    namespace_labels: Mapping[str, str],
    config: OperatorConfig,
) -> AdmissionResult:
    """Checks a sandbox step against its SandboxPolicy (``None``: the policy does not exist).

    ``namespace_labels`` are the labels of the step's Namespace, matched against the policy's
    namespaceSelector. Refusals carry reason PolicyNotFound or PermissionDenied; a sandbox step
    without ``spec.sandbox`` (which the CRD schema already refuses) gets InvalidSpec.
    """
    if sr.spec.mode != Mode.SANDBOX:
        raise ValueError(f"StepRun {sr.name!r} is not a sandbox step (mode '{sr.spec.mode}')")
    sandbox = sr.spec.sandbox
    if sandbox is None:
        denial = Denial("spec.sandbox", "is required with mode: sandbox (set plugin or uses)")
        return AdmissionResult(
            None, Reason.INVALID_SPEC, f"invalid sandbox step: {denial}", (denial,)
        )
    if (sandbox.plugin is None) == (sandbox.uses is None):
        denial = Denial("spec.sandbox", "needs exactly one of plugin and uses")
        return AdmissionResult(
            None, Reason.INVALID_SPEC, f"invalid sandbox step: {denial}", (denial,)
        )
    if policy is None:
        denial = Denial(
            f'SandboxPolicy "{sandbox.policy}"',
            "not found: set spec.sandbox.policy to an existing SandboxPolicy or ask a cluster "
            "admin to create it",
        )
        return AdmissionResult(None, Reason.POLICY_NOT_FOUND, str(denial), (denial,))

    spec = policy.spec
    resolved = resolve(sandbox, spec)
    entry = resolved if isinstance(resolved, Resolved) else None
    needers = entry.permissions() if entry is not None else {}
    for permission in sandbox.permissions:
        needers.setdefault(permission, []).append(STEP)
    needed = frozenset(needers)
    granted = frozenset(spec.grants)
    timeout, timeout_denials = _timeout(sr.spec.timeout_seconds, spec.max_timeout_seconds, config)
    resources = bounded_resources(sr.spec.resources, spec.default_resources, spec.max_resources)

    denials = [
        *_namespace_denials(sr.namespace, spec.namespace_selector, namespace_labels),
        *([resolved] if isinstance(resolved, Denial) else []),
        *_ambiguity_denials(spec),
        *_permission_denials(needers, granted),
        *_secrets_denials(bool(sr.spec.context.secrets), needed),
        *_workspace_denials(sr, needed, spec.workspace_claims or []),
        *_artifacts_denials(sr, needed),
        *timeout_denials,
        *_resource_denials(resources, spec.max_resources),
        *(_egress_denials(spec.egress) if Permission.NETWORK_EGRESS in needed else []),
    ]
    if denials or entry is None:
        # "; " separates the denials, so no denial's own text may contain it.
        message = f'SandboxPolicy "{policy.metadata.name}" denies this step: ' + "; ".join(
            str(d) for d in denials
        )
        return AdmissionResult(None, Reason.PERMISSION_DENIED, message, tuple(denials))

    plugin = entry.plugin
    decision = SandboxDecision(
        policy=policy.metadata.name,
        plugin=plugin.name,
        image=plugin.image,
        command=entry.container_command,
        granted=needed,
        timeout_seconds=timeout,
        resources=resources.model_copy(deep=True) if resources is not None else None,
        runtime_class_name=spec.runtime_class_name,
        pod_labels=dict(spec.pod_labels or {}),
        # Egress rules are recorded only when they apply, so status shows what the step may reach.
        egress=[r.model_copy() for r in spec.egress] if Permission.NETWORK_EGRESS in needed else [],
        env=dict(spec.env or {}),
        uses=sandbox.uses,
        version=plugin.version,
        handler=entry.handler.id if entry.handler is not None else None,
        cli_command=entry.command.id if entry.command is not None else None,
        args=entry.policy_args,
        termination_grace_period_seconds=min(
            sr.spec.termination_grace_period_seconds,
            DEFAULT_SANDBOX_MAX_GRACE_SECONDS
            if spec.max_termination_grace_period_seconds is None
            else spec.max_termination_grace_period_seconds,
        ),
        empty_dir_size_limit=str(
            (spec.max_resources or {}).get("ephemeral-storage")
            or config.sandbox_empty_dir_size_limit
        ),
        allowed_env=list(plugin.allowed_env) if plugin.allowed_env is not None else None,
        node_selector=dict(spec.node_selector or {}),
        tolerations=[dict(t) for t in spec.tolerations or []],
    )
    what = ", ".join(filter(None, [f"plugin {plugin.name}", entry.entry_name]))
    message = (
        f'admitted by SandboxPolicy "{policy.metadata.name}" '
        f"({what}, permissions: {_names(needed)})"
    )
    return AdmissionResult(decision, None, message, ())


def namespace_matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics: every matchLabels pair and every expression hold.

    An empty selector matches every namespace. Raises ValueError for a requirement Kubernetes
    itself would refuse (In/NotIn without values, Exists/DoesNotExist with values).
    """
    for key, value in (selector.match_labels or {}).items():
        if labels.get(key) != value:
            return False
    for requirement in selector.match_expressions or []:
        values = requirement.values or []
        op = requirement.operator
        if op in ("In", "NotIn") and not values:
            raise ValueError(f"matchExpressions {requirement.key!r} {op} needs at least one value")
        if op in ("Exists", "DoesNotExist") and values:
            raise ValueError(f"matchExpressions {requirement.key!r} {op} must not have values")
        present = requirement.key in labels
        if op == "In":
            ok = present and labels[requirement.key] in values
        elif op == "NotIn":
            ok = not present or labels[requirement.key] not in values
        elif op == "Exists":
            ok = present
        else:
            ok = not present
        if not ok:
            return False
    return True


def _names(permissions: Iterable[Permission]) -> str:
    names = sorted(permissions)
    return ", ".join(names) if names else "none"


def _namespace_denials(
    namespace: str, selector: LabelSelector, labels: Mapping[str, str]
) -> list[Denial]:
    item = f"namespace {namespace}"
    try:
        if namespace_matches(selector, labels):
            return []
    except ValueError as exc:
        return [
            Denial(item, f"cannot be matched: the policy's namespaceSelector is invalid ({exc})")
        ]
    return [
        Denial(
            item,
            "does not match the policy's namespaceSelector: run the step in a namespace the "
            "policy selects or use another policy",
        )
    ]


def _ambiguity_denials(spec: SandboxPolicySpec) -> list[Denial]:
    """A policy the schema would refuse (stored before its rules existed, or read from a file)
    admits nothing until it is fixed: which command or handler a step meant would be a guess."""
    return [
        Denial("the policy", f"is invalid: {problem}; ask a cluster admin to fix it")
        for problem in policy_problems(spec)
    ]


def _permission_denials(
    needers: Mapping[Permission, list[str]], granted: frozenset[Permission]
) -> list[Denial]:
    """One denial per needed permission the policy does not grant, saying who needs it."""
    denials = []
    for permission in sorted(set(needers) - granted):
        who = needers[permission]
        others = [w for w in who if w != STEP]
        if not others:
            source = "remove it from spec.sandbox.permissions or ask a cluster admin to grant it"
        else:
            verb = "needs" if len(others) == 1 else "need"
            alternative = "plugin" if others[0].startswith("plugin ") else others[0].split()[0]
            source = (
                f"{' and '.join(others)} {verb} it, so ask a cluster admin to grant it or use "
                f"another {alternative}"
            )
            if STEP in who:
                source += " (spec.sandbox.permissions asks for it too)"
        denials.append(
            Denial(
                f"permission {permission}",
                f"is not granted (grants: {_names(granted)}): {source}",
            )
        )
    return denials


def _secrets_denials(has_secrets: bool, needed: frozenset[Permission]) -> list[Denial]:
    if not has_secrets or Permission.SECRETS_READ in needed:
        return []
    return [
        Denial(
            "context.secrets",
            "requires permission secrets.read: add it to spec.sandbox.permissions or drop the "
            "secrets",
        )
    ]


def _workspace_denials(
    sr: StepRun, needed: frozenset[Permission], allowed_claims: Iterable[str]
) -> list[Denial]:
    """Workspaces need workspaces.mount; an existing claim must also be named by the policy."""
    workspaces = sr.spec.workspace_list
    if not workspaces:
        return []
    denials = []
    if Permission.WORKSPACES_MOUNT not in needed:
        denials.append(
            Denial(
                "spec.workspaces",
                "requires permission workspaces.mount: add it to spec.sandbox.permissions or "
                "drop the workspaces",
            )
        )
    allowed = sorted(set(allowed_claims))
    for workspace in workspaces:
        ref = workspace.persistent_volume_claim
        if ref is None or ref.claim_name in allowed:
            continue
        denials.append(
            Denial(
                f"workspace {workspace.name} (claim {ref.claim_name})",
                f"is not among the policy's workspaceClaims ({', '.join(allowed) or 'none'}): "
                "ask a cluster admin to allow the claim or use a volumeClaimTemplate",
            )
        )
    return denials


def _artifacts_denials(sr: StepRun, needed: frozenset[Permission]) -> list[Denial]:
    """Outputs need artifacts.write, inputs artifacts.read: both move files through the store."""
    spec = sr.spec.artifacts
    wanted = [
        ("artifacts.outputs", Permission.ARTIFACTS_WRITE, bool(spec and spec.outputs)),
        ("artifacts.inputs", Permission.ARTIFACTS_READ, bool(spec and spec.inputs)),
    ]
    return [
        Denial(
            item,
            f"requires permission {permission}: add it to spec.sandbox.permissions or "
            f"drop spec.{item}",
        )
        for item, permission, used in wanted
        if used and permission not in needed
    ]


def _timeout(
    asked: int | None, maximum: int | None, config: OperatorConfig
) -> tuple[int, list[Denial]]:
    """The step's timeout and any denial: an unset timeout takes the default, capped by the max."""
    if asked is None:
        default = config.default_timeout_seconds
        return (default if maximum is None else min(default, maximum)), []
    if maximum is not None and asked > maximum:
        return asked, [
            Denial(f"timeoutSeconds {asked}", f"exceeds maxTimeoutSeconds {maximum}: lower it")
        ]
    return asked, []


def bounded_resources(
    asked: ResourceRequirements | None,
    defaults: ResourceRequirements | None,
    maximum: QuantityMap | None,
) -> ResourceRequirements | None:
    """The resources a sandbox step runs with: what it asks for, the policy's defaults for
    every key it leaves out (``resources: {}`` or requests only skip nothing), and a limit for
    every resource the policy bounds (the maximum, unless a lower one was asked for or
    defaulted). A defaulted limit below the step's own request is raised to that request, so
    the Pod stays valid; ``_resource_denials`` then holds every value to the maximum."""
    requests = {**((defaults.requests if defaults else None) or {})}
    requests.update((asked.requests if asked else None) or {})
    asked_limits = (asked.limits if asked else None) or {}
    limits = {**((defaults.limits if defaults else None) or {}), **asked_limits}
    for name, bound in (maximum or {}).items():
        limits.setdefault(name, bound)
    for name, request in requests.items():
        if name in limits and name not in asked_limits:
            try:
                wanted = parse_quantity(request)
                above_bound = name in (maximum or {}) and wanted > parse_quantity(
                    (maximum or {})[name]
                )
                if wanted > parse_quantity(limits[name]) and not above_bound:
                    limits[name] = request
            except ValueError:
                continue  # reported by _resource_denials
    if not requests and not limits:
        return None
    return ResourceRequirements(requests=requests or None, limits=limits or None)


def _resource_denials(
    resources: ResourceRequirements | None, maximum: QuantityMap | None
) -> list[Denial]:
    """Each request and limit above the policy's maximum for that resource, plus unparsable ones.

    Resources the policy does not bound are not limited here.
    """
    if resources is None:
        return []
    bounds: dict[str, tuple[int | str, Fraction]] = {}
    denials: list[Denial] = []
    for name, raw in (maximum or {}).items():
        try:
            bounds[name] = (raw, parse_quantity(raw))
        except ValueError as exc:
            denials.append(Denial(f"maxResources.{name}", f"is invalid in the policy: {exc}"))
    for kind, values in (("requests", resources.requests), ("limits", resources.limits)):
        for name, raw in (values or {}).items():
            item = f"resources.{kind}.{name} {raw}"
            try:
                value = parse_quantity(raw)
            except ValueError as exc:
                denials.append(Denial(f"resources.{kind}.{name}", f"is invalid: {exc}"))
                continue
            if name not in bounds:
                continue
            bound_raw, bound = bounds[name]
            if value > bound:
                denials.append(Denial(item, f"exceeds maxResources {name} {bound_raw}: lower it"))
    return denials


def _egress_denials(rules: Iterable[EgressRule]) -> list[Denial]:
    """Rules the NetworkPolicy API would refuse, caught before they fail the step's Pod."""
    denials = []
    for rule in rules:
        try:
            # ip_network takes a bare address as a /32; the NetworkPolicy API wants a prefix.
            valid = "/" in rule.cidr and bool(ipaddress.ip_network(rule.cidr, strict=False))
        except ValueError:
            valid = False
        if not valid:
            denials.append(
                Denial(f"egress {rule.cidr}", "is not a valid CIDR in the policy: fix the policy")
            )
    return denials
