"""What a step may ask for on a shared cluster, decided before anything is created (pure).

Creating a StepRun must grant nothing its creator could not do with kubectl. The API server
checks the creator's own rights on what the step names (the StepRun-create admission policy);
this module holds the operator's side of the bargain:

- ``namespace_refusal``: system namespaces and the operator's own are not served unless an
  admin lists them;
- ``AdmissionGuard`` / ``authorization_refusal``: a step that names Secrets, a ServiceAccount,
  claims, artifact producers or a SandboxPolicy runs only if the admission policy checked its
  creator (installed, binding in Deny mode and covering the namespace, both older than the
  StepRun), unless the admin opted out;
- ``scheduling_refusals`` / ``allowed_metadata``: podTemplate labels and annotations reach a
  local Pod only under admin-configured key patterns; nodeSelector keys and tolerations outside
  them refuse the step;
- ``network_policy_conflicts``: NetworkPolicies are additive, so another one selecting a
  sandbox Pod with allow rules reopens what the step's own policy denies.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from steprun.api.models import LabelSelector, Mode, StepRun
from steprun.config import OperatorConfig
from steprun.policy.admission import namespace_matches
from steprun.render.names import ANNOTATION_CLAIM_CREATOR
from steprun.render.owners import is_owned_by
from steprun.timeutil import parse_time

DEFAULT_SERVICE_ACCOUNT = "default"
# The policy a sandbox step gets without naming one (the CRD's default for sandbox.policy).
DEFAULT_SANDBOX_POLICY = "default"


# ---------------------------------------------------------------- namespaces


def namespace_refusal(namespace: str, config: OperatorConfig) -> str | None:
    """Why steps of ``namespace`` are not run, or None when they are."""
    if namespace in config.allowed_system_namespaces:
        return None
    if namespace in config.system_namespaces:
        return (
            f"namespace {namespace} is a system namespace: steprun does not run steps there; "
            "run the step in a namespace of its own (an admin may allow it with "
            "STEPRUN_ALLOWED_SYSTEM_NAMESPACES)"
        )
    if config.operator_namespace and namespace == config.operator_namespace:
        return (
            f"namespace {namespace} is the steprun operator's own: a step there could use the "
            "operator's ServiceAccount and Secrets; run it in another namespace (an admin may "
            "allow it with STEPRUN_ALLOWED_SYSTEM_NAMESPACES)"
        )
    return None


# ---------------------------------------------------------------- creator authorization


def needs_creator_check(sr: StepRun) -> list[str]:
    """What of the step the admission policy must have checked against its creator's rights."""
    needs = []
    secrets = sorted({p.secret_key_ref.name for p in sr.spec.context.secrets})
    if secrets:
        needs.append(f"Secret(s) {', '.join(secrets)}")
    account = sr.spec.service_account_name
    if account and account != DEFAULT_SERVICE_ACCOUNT and sr.spec.mode == Mode.LOCAL:
        needs.append(f"ServiceAccount {account}")
    claims = sorted(
        {
            w.persistent_volume_claim.claim_name
            for w in sr.spec.workspace_list
            if w.persistent_volume_claim is not None
        }
    )
    if claims:
        needs.append(f"PersistentVolumeClaim(s) {', '.join(claims)}")
    templates = sorted(w.name for w in sr.spec.workspace_list if w.volume_claim_template)
    if templates:
        needs.append(f"the claims of volumeClaimTemplate workspace(s) {', '.join(templates)}")
    # An input reads what another step uploaded: as much a read of that StepRun as its status.
    inputs = sr.spec.artifacts.inputs if sr.spec.artifacts is not None else []
    producers = sorted({i.from_.step_run for i in inputs})
    if producers:
        needs.append(f"StepRun(s) {', '.join(producers)} (artifact inputs)")
    # What a policy grants (secrets, egress, labels) is the admin's to hand out per identity;
    # the default one is what every step of a selected namespace gets without asking.
    sandbox = sr.spec.sandbox if sr.spec.mode == Mode.SANDBOX else None
    if sandbox is not None and sandbox.policy != DEFAULT_SANDBOX_POLICY:
        needs.append(f"SandboxPolicy {sandbox.policy}")
    return needs


@dataclass(frozen=True)
class AdmissionGuard:
    """What the operator knows of the StepRun-create admission policy.

    ``problem`` is None when the policy and a Deny binding exist; ``created`` is the later of
    their creation times (a StepRun older than that was never checked); ``namespace_selectors``
    are the selectors of the Deny bindings (None: a binding covers every namespace).
    """

    name: str
    problem: str | None
    created: datetime | None = None
    namespace_selectors: tuple[LabelSelector | None, ...] = ()

    @classmethod
    def read(
        cls, name: str, policy: Mapping[str, Any] | None, bindings: Iterable[Mapping[str, Any]]
    ) -> AdmissionGuard:
        """From the policy object (None: absent) and every ValidatingAdmissionPolicyBinding."""
        if policy is None:
            return cls(name, f"ValidatingAdmissionPolicy {name} is not installed")
        if (policy.get("spec") or {}).get("failurePolicy", "Fail") != "Fail":
            return cls(name, f"ValidatingAdmissionPolicy {name} does not have failurePolicy Fail")
        created = [parse_time((policy.get("metadata") or {}).get("creationTimestamp"))]
        selectors: list[LabelSelector | None] = []
        for binding in bindings:
            spec = binding.get("spec") or {}
            if spec.get("policyName") != name or "Deny" not in (
                spec.get("validationActions") or []
            ):
                continue
            match = spec.get("matchResources") or {}
            if match.get("objectSelector") or match.get("excludeResourceRules"):
                # Exempts some StepRuns in ways the operator does not evaluate: not relied on.
                continue
            try:
                selector = (
                    LabelSelector.model_validate(match["namespaceSelector"])
                    if match.get("namespaceSelector")
                    else None
                )
            except ValidationError:
                continue
            selectors.append(selector)
            created.append(parse_time((binding.get("metadata") or {}).get("creationTimestamp")))
        if not selectors:
            return cls(
                name,
                f"ValidatingAdmissionPolicy {name} has no ValidatingAdmissionPolicyBinding "
                "with validationActions [Deny]",
            )
        known = [c for c in created if c is not None]
        return cls(name, None, max(known) if known else None, tuple(selectors))

    def covers(self, namespace_labels: Mapping[str, str]) -> bool:
        for selector in self.namespace_selectors:
            if selector is None:
                return True
            try:
                if namespace_matches(selector, namespace_labels):
                    return True
            except ValueError:
                continue
        return False


def authorization_refusal(
    sr: StepRun,
    guard: AdmissionGuard | None,
    namespace_labels: Mapping[str, str],
    config: OperatorConfig,
) -> str | None:
    """Why a step naming what its creator must be allowed to use is not run (fail closed).

    ``guard`` None means the operator could not read the policy at all (no permission).
    """
    needs = needs_creator_check(sr)
    if not needs or not config.require_admission_policy:
        return None
    name = guard.name if guard is not None else config.admission_policy
    problem = _guard_problem(guard, name, sr.namespace, namespace_labels)
    if problem is None:
        assert guard is not None
        created = parse_time(sr.metadata.creation_timestamp)
        # Timestamps have one-second resolution: a StepRun of the same second may predate it.
        if guard.created is None or created is None or created > guard.created:
            return None
        problem = (
            f"ValidatingAdmissionPolicy {name} was installed after this StepRun was created, "
            "so its creator was never checked; create the StepRun again"
        )
    return (
        f"not run: the step names {' and '.join(needs)}, and the admission policy that checks "
        f"its creator may read them is missing ({problem}); install the chart's admission "
        "policies (manifests/admission/) or, accepting that anyone who may create StepRuns "
        "can then use every Secret, ServiceAccount, claim, artifact and SandboxPolicy of the "
        "namespace, set "
        "STEPRUN_REQUIRE_ADMISSION_POLICY=false"
    )


def _guard_problem(
    guard: AdmissionGuard | None, name: str, namespace: str, namespace_labels: Mapping[str, str]
) -> str | None:
    """Why admission policy ``name`` does not guard ``namespace``, or None where it does."""
    if guard is None:
        return f"the operator cannot read ValidatingAdmissionPolicy {name}"
    if guard.problem is not None:
        return guard.problem
    if not guard.covers(namespace_labels):
        return f"the bindings of ValidatingAdmissionPolicy {name} exclude namespace {namespace}"
    return None


# ---------------------------------------------------------------- run claims


def claim_origin_refusal(
    sr: StepRun,
    guard: AdmissionGuard | None,
    namespace_labels: Mapping[str, str],
    config: OperatorConfig,
) -> str | None:
    """Why a step with volumeClaimTemplate workspaces is not run (fail closed): without the
    claim-origin policy anyone who may create claims could have planted the run's claim."""
    templates = sorted(w.name for w in sr.spec.workspace_list if w.volume_claim_template)
    if not templates or not config.require_admission_policy:
        return None
    name = guard.name if guard is not None else config.claim_origin_policy
    problem = _guard_problem(guard, name, sr.namespace, namespace_labels)
    if problem is None:
        return None
    return (
        f"not run: workspace(s) {', '.join(templates)} mount the claim of the workflow run, and "
        "the admission policy that lets only the operator make such claims is missing "
        f"({problem}), so a co-tenant could have planted it; install the chart's admission "
        "policies (manifests/admission/) or, accepting that, set "
        "STEPRUN_REQUIRE_ADMISSION_POLICY=false"
    )


def claim_origin_problem(
    claim: Mapping[str, Any], guard: AdmissionGuard | None, config: OperatorConfig
) -> str | None:
    """Why an existing claim carrying the run's labels is not one the operator made, or None.

    Only claims the operator made carry the creator annotation, and the claim-origin policy
    makes that annotation (and the labels) unforgeable, but only for claims created after it:
    an older one may have been planted before it was installed.
    """
    metadata = claim.get("metadata") or {}
    if not (metadata.get("annotations") or {}).get(ANNOTATION_CLAIM_CREATOR):
        return "steprun did not make it"
    if not config.require_admission_policy:
        return None
    created = parse_time(metadata.get("creationTimestamp"))
    trusted_since = guard.created if guard is not None and guard.problem is None else None
    # One-second resolution: a claim of the same second as the policy may predate it.
    if trusted_since is None or created is None or created <= trusted_since:
        return (
            "it was made before the claim-origin admission policy guarded the namespace, so "
            "anyone may have made it"
        )
    return None


# ---------------------------------------------------------------- podTemplate


def matches_any(key: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)


def allowed_metadata(
    values: Mapping[str, str] | None, patterns: Iterable[str]
) -> tuple[dict[str, str], list[str]]:
    """The entries whose keys match a pattern (sorted), and the keys left off."""
    patterns = list(patterns)
    kept = {k: v for k, v in sorted((values or {}).items()) if matches_any(k, patterns)}
    dropped = sorted(k for k in values or {} if k not in kept)
    return kept, dropped


def scheduling_refusals(sr: StepRun, config: OperatorConfig) -> list[str]:
    """podTemplate nodeSelector keys and tolerations the admin's configuration does not allow.

    Sandbox steps are not checked: their Pods take scheduling from the SandboxPolicy only.
    """
    template = sr.spec.pod_template
    if template is None or sr.spec.mode == Mode.SANDBOX:
        return []
    refusals = [
        f"podTemplate.nodeSelector key {key} is not allowed (STEPRUN_NODE_SELECTOR_KEYS: "
        f"{_patterns(config.node_selector_keys)})"
        for key in sorted(template.node_selector or {})
        if not matches_any(key, config.node_selector_keys)
    ]
    for index, toleration in enumerate(template.tolerations or []):
        key = toleration.get("key")
        if not key:
            if not config.allow_wildcard_toleration:
                refusals.append(
                    f"podTemplate.tolerations[{index}] has no key, so it tolerates every taint "
                    "(control-plane nodes included); wildcard tolerations are not allowed"
                )
        elif not matches_any(str(key), config.toleration_keys):
            refusals.append(
                f"podTemplate.tolerations[{index}] key {key} is not allowed "
                f"(STEPRUN_TOLERATION_KEYS: {_patterns(config.toleration_keys)})"
            )
    return refusals


def _patterns(patterns: list[str]) -> str:
    return ", ".join(patterns) if patterns else "none"


# ---------------------------------------------------------------- NetworkPolicies


def network_policy_conflicts(
    pod_labels: Mapping[str, str],
    network_policies: Iterable[Mapping[str, Any]],
    own_uid: str,
) -> list[str]:
    """Names of the NetworkPolicies, other than the step's own, that select a Pod with
    ``pod_labels`` and allow some traffic: with additive policies they reopen what the step's
    own policy denies. A policy that only denies (a type listed without rules) is harmless."""
    conflicts = []
    for policy in network_policies:
        metadata = policy.get("metadata") or {}
        if is_owned_by(policy, own_uid):
            continue
        spec = policy.get("spec") or {}
        try:
            selector = LabelSelector.model_validate(spec.get("podSelector") or {})
            selected = namespace_matches(selector, pod_labels)
        except (ValidationError, ValueError):
            # A selector the operator cannot read might select the Pod: assume it does.
            selected = True
        if not selected:
            continue
        opened = [direction for direction in ("ingress", "egress") if spec.get(direction)]
        if opened:
            conflicts.append(f"{metadata.get('name')} (allows {' and '.join(opened)})")
    return sorted(conflicts)
