"""The reads behind the tenancy checks (docs/security.md); every decision is in policy/tenancy.

The reconciler asks this object, before creating anything for an attempt, whether the step may
run here at all; at the end of an attempt, which secret values to mask in what the Pod said; and
before deleting a child, whether that child is the StepRun's own.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from steprun.api.models import StepRun
from steprun.config import OperatorConfig
from steprun.kube.client import Conflict, Kube, Refused
from steprun.log import get_logger
from steprun.observe.redact import secret_values
from steprun.policy.tenancy import (
    AdmissionGuard,
    authorization_refusal,
    claim_origin_problem,
    claim_origin_refusal,
    namespace_refusal,
    needs_creator_check,
    network_policy_conflicts,
    scheduling_refusals,
)
from steprun.render.names import context_name
from steprun.render.owners import is_controlled_by

# How long what the operator read of the admission policy is trusted before it reads it again:
# a policy deleted while the operator runs stops steps from starting within this long.
GUARD_TTL_SECONDS = 10.0
# The same for a namespace's labels (Pod Security level, the admission binding's selector,
# sandbox policies' namespaceSelector): read once per namespace per this long, not per step.
NAMESPACE_TTL_SECONDS = GUARD_TTL_SECONDS


class Tenancy:
    def __init__(self, kube: Kube, config: OperatorConfig):
        self.kube = kube
        self.config = config
        # Per admission policy name: what was read of it (None: no permission) and when.
        self._guards: dict[str, tuple[float, AdmissionGuard | None]] = {}
        self._namespaces: dict[str, tuple[float, dict[str, str]]] = {}
        self._log = get_logger("steprun.tenancy")

    async def guard(self) -> AdmissionGuard | None:
        """The StepRun-create admission policy's state, re-read at most every
        GUARD_TTL_SECONDS; None when the operator may not read it (which counts as missing)."""
        return await self._guard(self.config.admission_policy)

    async def claim_guard(self) -> AdmissionGuard | None:
        """The same for the claim-origin policy (only the operator makes run claims)."""
        return await self._guard(self.config.claim_origin_policy)

    async def _guard(self, name: str) -> AdmissionGuard | None:
        previous = self._guards.get(name)
        if previous is not None and time.monotonic() - previous[0] < GUARD_TTL_SECONDS:
            return previous[1]
        try:
            policy = await self.kube.get_or_none("ValidatingAdmissionPolicy", None, name)
            bindings = await self.kube.list("ValidatingAdmissionPolicyBinding", None)
            guard: AdmissionGuard | None = AdmissionGuard.read(name, policy, bindings)
        except Refused:
            guard = None
        was_fine = previous is not None and previous[1] is not None and previous[1].problem is None
        if (guard is None or guard.problem is not None) and (was_fine or previous is None):
            self._warn_missing(name, guard)
        self._guards[name] = (time.monotonic(), guard)
        return guard

    async def namespace_labels(self, namespace: str) -> dict[str, str]:
        """The namespace's labels, read at most every NAMESPACE_TTL_SECONDS ({} if it is gone:
        its StepRuns are about to go too)."""
        now = time.monotonic()
        cached = self._namespaces.get(namespace)
        if cached is not None and now - cached[0] < NAMESPACE_TTL_SECONDS:
            return cached[1]
        body = await self.kube.get_or_none("Namespace", None, namespace) or {}
        labels = dict((body.get("metadata") or {}).get("labels") or {})
        # Stale entries go when read again; the map holds one entry per namespace served.
        self._namespaces[namespace] = (now, labels)
        return labels

    async def announce(self) -> None:
        """Said loudly at start: what steps will not run for want of the admission policies."""
        for guard in (await self.guard(), await self.claim_guard()):
            if guard is not None and guard.problem is None:
                self._log.info("admission policy installed", policy=guard.name)

    def _warn_missing(self, name: str, guard: AdmissionGuard | None) -> None:
        problem = guard.problem if guard is not None else "the operator cannot read it"
        claims = name == self.config.claim_origin_policy
        consequence = (
            (
                "steps with volumeClaimTemplate workspaces end Rejected until it is installed"
                if claims
                else "steps that name Secrets, a ServiceAccount, claims or artifact producers "
                "end Rejected until it is installed"
            )
            if self.config.require_admission_policy
            else "STEPRUN_REQUIRE_ADMISSION_POLICY=false: such steps run WITHOUT any check "
            "that their creator may read those Secrets or use that ServiceAccount"
        )
        self._log.error(
            f"{'claim-origin' if claims else 'StepRun'} admission policy missing",
            policy=name,
            problem=problem,
            consequence=consequence,
        )

    async def refusal(self, sr: StepRun, namespace_labels: Mapping[str, str]) -> str | None:
        """Why the step may not run at all, or None; checked before anything is created."""
        if problem := namespace_refusal(sr.namespace, self.config):
            return problem
        guard = await self.guard() if needs_creator_check(sr) else None
        if needs_creator_check(sr) and (
            problem := authorization_refusal(sr, guard, namespace_labels, self.config)
        ):
            return problem
        if sr.spec.workspace_list and (
            problem := claim_origin_refusal(
                sr, await self.claim_guard(), namespace_labels, self.config
            )
        ):
            return problem
        refused = scheduling_refusals(sr, self.config)
        if refused:
            return (
                "not run: " + "; ".join(refused) + ": remove them, or ask an admin to allow "
                "those keys in the operator's configuration"
            )
        return None

    async def claim_problem(self, claim: Mapping[str, Any]) -> str | None:
        """Why an existing claim with the run's labels is not joined (see
        ``claim_origin_problem``), or None."""
        guard = await self.claim_guard() if self.config.require_admission_policy else None
        return claim_origin_problem(claim, guard, self.config)

    async def network_refusal(self, sr: StepRun, pod_labels: Mapping[str, str]) -> str | None:
        """A sandbox step is not started while another NetworkPolicy would reopen its own."""
        policies = await self.kube.list("NetworkPolicy", sr.namespace)
        conflicts = network_policy_conflicts(pod_labels, policies, sr.uid)
        if not conflicts:
            return None
        return (
            f"not run: NetworkPolicy {', '.join(conflicts)} selects this sandbox step's Pod, "
            "and NetworkPolicies add up, so it would reopen what the step's own policy denies; "
            "narrow its podSelector (e.g. exclude steprun.dev/sandbox) or run the step elsewhere"
        )

    async def own_secret(self, sr: StepRun) -> dict[str, Any] | None:
        """The step's own Secret when it exists and is the StepRun's (read once, then handed to
        ``secret_values`` and ``delete_owned``)."""
        own = await self.kube.get_or_none("Secret", sr.namespace, context_name(sr.name))
        return own if own is not None and is_controlled_by(own, sr.uid) else None

    async def secret_values(
        self, sr: StepRun, own: Mapping[str, Any] | bool | None = False
    ) -> list[str]:
        """The values the step was given, to mask in what its Pod reports. ``own``: the step's
        Secret as ``own_secret`` returned it (False: not read yet)."""
        if not sr.spec.context.secrets:
            return []
        if own is False:
            own = await self.own_secret(sr)
        if isinstance(own, Mapping):
            return secret_values(own.get("data") or {})
        # The step's Secret is gone: mask what the source Secrets hold for the named keys.
        data: dict[str, str] = {}
        for projection in sr.spec.context.secrets:
            ref = projection.secret_key_ref
            source = await self.kube.get_or_none("Secret", sr.namespace, ref.name)
            value = ((source or {}).get("data") or {}).get(ref.key)
            if value is not None:
                data[projection.name] = value
        return secret_values(data)

    async def delete_owned(
        self,
        kind: str,
        sr: StepRun,
        name: str,
        existing: Mapping[str, Any] | bool | None = False,
        *,
        uid: str | None = None,
        **options: Any,
    ) -> bool:
        """Delete ``name`` only when it is this StepRun's, and only that very object (uid
        precondition): a namesake someone else made, or made since, survives. ``existing``:
        the object as just read (None: it is gone; False: not read yet). ``uid``: the uid of
        the object as the operator itself made it for this StepRun, which proves it is the
        StepRun's without reading it; a Conflict means it was replaced since, and then what
        is there now is read and checked."""
        if existing is False and uid:
            try:
                return await self.kube.delete(kind, sr.namespace, name, uid=uid, **options)
            except Conflict:
                pass
        if existing is False:
            existing = await self.kube.get_or_none(kind, sr.namespace, name)
        if not isinstance(existing, Mapping):
            return False
        if not is_controlled_by(existing, sr.uid):
            self._log.warning(
                "not deleting an object the StepRun does not own",
                namespace=sr.namespace,
                name=sr.name,
                uid=sr.uid,
                kind=kind,
                object=name,
            )
            return False
        uid = str(existing["metadata"].get("uid") or "")
        return await self.kube.delete(kind, sr.namespace, name, uid=uid or None, **options)
