"""The objects of a step's attempt: its Pod and its context (Secret, ConfigMap, artifact URLs,
NetworkPolicy), created or adopted in the order that keeps a Pod from ever running without
what must hold first, and removed when the step ends. It carries out; the reconciler decides.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from datetime import datetime
from typing import Any

from steprun.api.models import StepRun
from steprun.config import OperatorConfig
from steprun.kube.client import Kube, Transient
from steprun.log import for_steprun
from steprun.policy.decision import SandboxDecision
from steprun.reconcile.artifacts import ArtifactProblem, Artifacts, UrlsSecretTaken
from steprun.reconcile.children import CreateFailed, StepAborted, create_or_adopt
from steprun.reconcile.memory import Memory, remembered
from steprun.reconcile.queue import Key, PodCache
from steprun.reconcile.rules import create_given_up, create_refused, invalid_spec
from steprun.reconcile.tenancy import Tenancy
from steprun.reconcile.workloads import Workloads
from steprun.render.artifacts import ResolvedInput, needs_artifacts
from steprun.render.attempt import AttemptPlan
from steprun.render.context import needs_secret, resolve_secret_values, secret_sources
from steprun.render.names import TRACKING_FINALIZER, context_name


class AttemptObjects:
    """Creates, adopts and removes what an attempt of a step needs, for the reconciler."""

    def __init__(
        self,
        kube: Kube,
        config: OperatorConfig,
        *,
        tenancy: Tenancy,
        artifacts: Artifacts,
        workloads: Workloads,
        memory: Memory,
        pods: PodCache,
    ):
        self.kube = kube
        self.config = config
        self.tenancy = tenancy
        self.artifacts = artifacts
        self.workloads = workloads
        self.memory = memory
        self.pods = pods

    async def _ensure_artifact_urls(
        self, sr: StepRun, attempt: int, pod: Mapping[str, Any], inputs: list[ResolvedInput]
    ) -> None:
        try:
            await self.artifacts.ensure_urls(sr, attempt, pod, inputs)
        except UrlsSecretTaken as taken:
            raise StepAborted(create_refused(str(taken))) from None
        except ArtifactProblem as problem:
            raise StepAborted(invalid_spec(str(problem))) from None

    async def ensure_context(
        self, sr: StepRun, sandbox: SandboxDecision | None, plan: AttemptPlan
    ) -> None:
        # The context objects do not depend on each other: created at once, they cost the
        # step's start one round trip to a loaded API server instead of one each.
        bodies = [plan.configmap]
        if plan.network_policy is not None:
            bodies.append(plan.network_policy)
        creates: list[Awaitable[object]] = [self.create_owned(sr, body) for body in bodies]
        if plan.has_secret:
            creates.insert(0, self._create_secret(sr, sandbox, plan))
        await _all(creates)

    async def create_with_context(
        self,
        sr: StepRun,
        sandbox: SandboxDecision | None,
        plan: AttemptPlan,
        attempt: int,
        inputs: list[ResolvedInput],
        now: datetime,
    ) -> dict[str, Any]:
        """The Pod and its context, one round trip before the Pod on a loaded API server.

        The Pod mounts the step's ConfigMap and its own Secret without ``optional``: the kubelet
        starts no container before both exist, so they are created with the Pod. The Pod names
        only the operator's copy of the values, never the user's Secret, so a source Secret or
        key found missing (read beside the Pod's create) leaves a Pod that can never start: it is
        deleted and the step ends without running. What must hold before anything of the Pod
        runs comes first: its NetworkPolicy (the CNI confines a Pod only once it exists), and
        the artifact URLs Secret (replaced, never trusted, so not while a Pod may read it)."""
        first: list[Awaitable[object]] = [self._ensure_artifact_urls(sr, attempt, plan.pod, inputs)]
        if plan.network_policy is not None:
            first.insert(0, self.create_owned(sr, plan.network_policy))
        await _all(first)
        context: list[Awaitable[object]] = [self.create_owned(sr, plan.configmap)]
        if plan.has_secret:
            context.insert(0, self._create_secret(sr, sandbox, plan))
        *made, pod = await asyncio.gather(
            *context, self._create_pod(sr, plan.pod, now), return_exceptions=True
        )
        failed = next((r for r in made if isinstance(r, BaseException)), None)
        if isinstance(failed, (StepAborted, CreateFailed)) and isinstance(pod, dict):
            await self.withdraw_pod(sr, pod)
        if failed is not None:
            # A transient failure keeps the Pod: the retry follows it, and the kubelet's
            # CreateContainerConfigError (or the context check) puts the context back.
            raise failed
        if isinstance(pod, BaseException):
            raise pod
        assert isinstance(pod, dict)
        return pod

    async def withdraw_pod(self, sr: StepRun, pod: dict[str, Any]) -> None:
        """A Pod whose step ends before it could start: gone before the ending is written, its
        tracking finalizer released at once (there is no outcome to wait for). Deleted first: a
        crash between the two leaves a Pod that is going, never one that might be followed."""
        meta = pod["metadata"]
        for_steprun(sr).info("deleting a Pod that cannot start", pod=meta["name"])
        await self.kube.delete(
            "Pod", sr.namespace, meta["name"], grace_period_seconds=0, uid=meta.get("uid")
        )
        await self.kube.remove_finalizer("Pod", sr.namespace, pod, TRACKING_FINALIZER)
        self.pods.observe(_key(sr), pod, deleted=True)

    async def _create_secret(
        self, sr: StepRun, sandbox: SandboxDecision | None, plan: AttemptPlan
    ) -> None:
        data: dict[str, str] = {}
        if needs_secret(sr, sandbox):
            names = sorted({name for name, _ in secret_sources(sr)})
            sources = await asyncio.gather(
                *(self.kube.get_or_none("Secret", sr.namespace, name) for name in names)
            )
            fetched = {
                name: None if source is None else (source.get("data") or {})
                for name, source in zip(names, sources, strict=True)
            }
            data, problems = resolve_secret_values(sr, fetched)
            if problems:
                raise StepAborted(invalid_spec("; ".join(problems)))
        secret = plan.secret(data)
        assert secret is not None
        await self.create_owned(sr, secret)

    async def create_owned(self, sr: StepRun, body: dict[str, Any]) -> dict[str, Any]:
        """Create, or adopt the existing object when it is ours (a previous run made it)."""
        made = await create_or_adopt(self.kube, sr, body)
        if remembered(made):
            self.memory(_key(sr)).note_made(sr.uid, made)
        return made

    def made_here(self, sr: StepRun, body: Mapping[str, Any]) -> bool:
        """Whether this process created ``body`` for ``sr`` (or adopted it after checking it is
        what the operator renders): an owner reference alone is anyone's to write."""
        record = self.memory.peek(_key(sr))
        return record is not None and record.made_here(sr.uid, body)

    async def _create_pod(self, sr: StepRun, pod: dict[str, Any], now: datetime) -> dict[str, Any]:
        try:
            return await self.create_owned(sr, pod)
        except Transient as error:
            # E.g. a ResourceQuota full for now: retried with backoff, but no longer than the
            # step's startup timeout allows a Pod to take to start.
            record = self.memory(_key(sr))
            since = record.blocked_since = record.blocked_since or now
            name = pod["metadata"]["name"]
            given_up = create_given_up(sr, self.config, name, since, now, error.message)
            if given_up is None:
                raise
            raise CreateFailed(given_up) from None

    async def cleanup_context(
        self, sr: StepRun, own_secret: dict[str, Any] | bool | None = False
    ) -> None:
        """The step's context must not outlive it (docs/api.md: both deleted at a terminal phase).
        The ConfigMap goes too, although the garbage collector would take it with the StepRun:
        a retained StepRun must not keep a copy of its inputs and script beside it. The
        NetworkPolicy stays: it still confines a Pod that may be terminating."""
        name = context_name(sr.name)
        record = self.memory.peek(_key(sr))
        uids = record.made_uids(sr.uid) if record is not None else {}
        if record is not None:
            record.forget_made()
        if has_secret(sr):
            await self.tenancy.delete_owned("Secret", sr, name, own_secret, uid=uids.get("Secret"))
        await self.tenancy.delete_owned("ConfigMap", sr, name, uid=uids.get("ConfigMap"))
        if needs_artifacts(sr):
            await self.artifacts.forget_urls(sr)
        # Its quota and place in the queue go with it (not left to the garbage collector, which
        # would keep a retained StepRun's Workload holding quota).
        await self.workloads.delete(sr)


def has_secret(sr: StepRun) -> bool:
    """Whether the step has its own Secret (secret projections)."""
    return bool(sr.spec.context.secrets)


def _key(sr: StepRun) -> Key:
    return (sr.namespace, sr.name)


async def _all(requests: Sequence[Awaitable[object]]) -> None:
    """Runs independent requests at once. Every one is let finish (none is left half-made by
    a cancel), then the first failure in the order given is raised, as if run in that order."""
    results = await asyncio.gather(*requests, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
