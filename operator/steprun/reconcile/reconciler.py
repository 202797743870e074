"""Carries out what ``decide`` chose for a StepRun: the only place decisions meet the API.

Every write is idempotent by construction: children have deterministic names and an
AlreadyExists answer for an object we own counts as success; status writes carry the
resourceVersion they were computed from, so a stale decision is refused instead of applied.
The order of writes is chosen so that a crash between any two of them is repaired by the
next reconcile: children first, status last.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import aiohttp
from pydantic import ValidationError

from steprun.api.models import Mode, Phase, Reason, SandboxPolicy, StepRun
from steprun.config import OperatorConfig
from steprun.kube.client import AlreadyExists, Conflict, Invalid, Kube, KubeError, NotFound
from steprun.log import for_steprun, get_logger
from steprun.metrics import POD_START_SECONDS, RECONCILE_SECONDS, TRANSITIONS
from steprun.observe.redact import redact, redact_json
from steprun.policy.admission import admit
from steprun.policy.decision import SandboxDecision
from steprun.reconcile import status as statuses
from steprun.reconcile.decide import (
    Cancel,
    ExpireTtl,
    FinishAttempt,
    MarkRunning,
    Outcome,
    RepairContext,
    StartAttempt,
    Wait,
    decide,
)
from steprun.reconcile.queue import Key, ObjectCache, PodCache, WorkQueue
from steprun.reconcile.tenancy import Tenancy
from steprun.render.adoption import adoption_problems
from steprun.render.context import (
    inputs_problem,
    needs_secret,
    render_configmap,
    render_secret,
    resolve_secret_values,
    secret_sources,
)
from steprun.render.events import render_event
from steprun.render.names import context_name
from steprun.render.network import render_network_policy
from steprun.render.pod import RenderError, enforces_restricted, grace_period_seconds, render_pod
from steprun.render.sandbox import harden_pod
from steprun.timeutil import parse_time, utcnow

MAX_BACKOFF_SECONDS = 60.0
TRANSIENT = (KubeError, aiohttp.ClientError, asyncio.TimeoutError, OSError)

_EVENT_TYPES = {
    Phase.SUCCEEDED: "Normal",
    Phase.CANCELLED: "Normal",
}


class StepAborted(Exception):
    """The step cannot run as written; it ends with this reason and message, without a Pod."""

    def __init__(self, phase: Phase, reason: str, message: str):
        super().__init__(message)
        self.phase = phase
        self.reason = reason
        self.message = message


class Reconciler:
    def __init__(self, kube: Kube, config: OperatorConfig):
        self.kube = kube
        self.config = config
        self.stepruns = ObjectCache()
        self.pods = PodCache()
        self.queue = WorkQueue(self.reconcile)
        self.tenancy = Tenancy(kube, config)
        self._failures: dict[Key, int] = {}
        self._log = get_logger("steprun.reconcile")

    # ------------------------------------------------------------------ entry point

    async def reconcile(self, key: Key) -> None:
        body = self.stepruns.get(key)
        if body is None:
            self.pods.forget(key)
            return
        try:
            sr = StepRun.from_body(body)
        except ValidationError as error:
            # The CRD schema is generated from the same models, so this means a schema skew
            # (e.g. an old CRD); retrying cannot help, and one log line per change is enough.
            self._log.error("unreadable StepRun", namespace=key[0], name=key[1], error=str(error))
            return
        started = time.perf_counter()
        try:
            await self._reconcile(sr)
            self._failures.pop(key, None)
        except Conflict:
            await self._refresh(key)
        except TRANSIENT as error:
            self._retry_later(sr, key, error)
        finally:
            RECONCILE_SECONDS.observe(time.perf_counter() - started)

    async def _reconcile(self, sr: StepRun) -> None:
        now = utcnow()
        pod = await self._current_pod(sr)
        decision = decide(sr, pod, now, self.config)
        match decision:
            case Wait(until=until):
                if until is not None:
                    self.queue.add_after(_key(sr), (until - now).total_seconds() + 0.05)
            case StartAttempt(attempt=attempt):
                await self._start_attempt(sr, attempt, now)
            case MarkRunning(start_time=start_time):
                await self._write(sr, statuses.running(sr, start_time, now), "Normal", "Started")
            case FinishAttempt():
                await self._finish_attempt(sr, decision, now)
            case RepairContext(until=until):
                await self._repair_context(sr, until, now)
            case Cancel(pod_name=pod_name):
                await self._cancel(sr, pod_name, now)
            case ExpireTtl():
                for_steprun(sr).info("deleting StepRun: ttlSecondsAfterFinished elapsed")
                await self.kube.delete("StepRun", sr.namespace, sr.name, uid=sr.uid)

    # ------------------------------------------------------------------ the steps

    async def _current_pod(self, sr: StepRun) -> dict[str, Any] | None:
        """The Pod of the attempt in flight, if it exists (checked with the API when unseen)."""
        status = sr.status
        in_flight = status.pod_name and not status.next_attempt_time
        if not in_flight or (status.phase and Phase(status.phase).terminal):
            return None
        assert status.pod_name is not None
        pod = self.pods.get(_key(sr), status.pod_name)
        if pod is None:
            # Not yet seen by the watch (just created, or the operator just started) or gone.
            pod = await self.kube.get_or_none("Pod", sr.namespace, status.pod_name)
            if pod is not None:
                self.pods.observe(_key(sr), pod)
        return pod

    async def _start_attempt(self, sr: StepRun, attempt: int, now: datetime) -> None:
        log = for_steprun(sr).bind(attempt=attempt)
        try:
            if problem := inputs_problem(sr):
                raise StepAborted(Phase.FAILED, Reason.INVALID_SPEC.value, problem)
            namespace = await self.kube.get("Namespace", None, sr.namespace)
            labels = namespace["metadata"].get("labels") or {}
            if refusal := await self.tenancy.refusal(sr, labels):
                raise StepAborted(Phase.REJECTED, Reason.PERMISSION_DENIED.value, refusal)
            sandbox = await self._sandbox_decision(sr, labels)
            pod = render_pod(
                sr, attempt, self.config, sandbox, restricted=enforces_restricted(labels)
            )
            if sandbox is not None:
                pod = harden_pod(pod, sandbox)
                if refusal := await self.tenancy.network_refusal(sr, pod["metadata"]["labels"]):
                    raise StepAborted(Phase.REJECTED, Reason.PERMISSION_DENIED.value, refusal)
            await self._ensure_context(sr, sandbox)
            created = await self._create_pod(sr, pod)
        except StepAborted as aborted:
            log.info("step cannot run", reason=aborted.reason, message=aborted.message)
            await self._end_without_pod(sr, aborted, now)
            return
        except (RenderError, ValueError) as error:
            invalid = StepAborted(Phase.FAILED, Reason.INVALID_SPEC.value, str(error))
            await self._end_without_pod(sr, invalid, now)
            return
        self.pods.observe(_key(sr), created)
        pod_name = created["metadata"]["name"]
        log.info("pod created", pod=pod_name)
        if attempt == 1:
            created_at = parse_time(sr.metadata.creation_timestamp)
            if created_at is not None:
                POD_START_SECONDS.observe(max(0.0, (now - created_at).total_seconds()))
        admitted = sandbox.to_status() if sandbox is not None and not sr.status.admitted else None
        doc = statuses.pending(sr, attempt, pod_name, now, admitted)
        await self._write(sr, doc, "Normal", Reason.POD_CREATED.value)

    async def _sandbox_decision(
        self, sr: StepRun, namespace_labels: Mapping[str, str] | None = None
    ) -> SandboxDecision | None:
        if sr.spec.mode != Mode.SANDBOX:
            return None
        if sr.status.admitted:
            # Frozen at admission: a policy edited later never changes a started step.
            return SandboxDecision.from_status(sr.status.admitted)
        assert sr.spec.sandbox is not None
        raw_policy = await self.kube.get_or_none("SandboxPolicy", None, sr.spec.sandbox.policy)
        if namespace_labels is None:
            namespace = await self.kube.get("Namespace", None, sr.namespace)
            namespace_labels = namespace["metadata"].get("labels") or {}
        policy = SandboxPolicy.from_body(raw_policy) if raw_policy is not None else None
        result = admit(sr, policy, namespace_labels, self.config)
        if result.decision is None:
            reason = result.reason.value if result.reason else Reason.PERMISSION_DENIED.value
            raise StepAborted(Phase.REJECTED, reason, result.message)
        return result.decision

    async def _ensure_context(self, sr: StepRun, sandbox: SandboxDecision | None) -> None:
        if needs_secret(sr, sandbox):
            fetched: dict[str, dict[str, str] | None] = {}
            for secret_name in sorted({name for name, _ in secret_sources(sr)}):
                source = await self.kube.get_or_none("Secret", sr.namespace, secret_name)
                fetched[secret_name] = None if source is None else (source.get("data") or {})
            data, problems = resolve_secret_values(sr, fetched)
            if problems:
                raise StepAborted(Phase.FAILED, Reason.INVALID_SPEC.value, "; ".join(problems))
            await self._create_owned(sr, render_secret(sr, data))
        await self._create_owned(sr, render_configmap(sr, self.config, sandbox))
        if sandbox is not None:
            await self._create_owned(sr, render_network_policy(sr, sandbox))

    async def _create_owned(self, sr: StepRun, body: dict[str, Any]) -> dict[str, Any]:
        """Create, or adopt the existing object when it is ours (a previous run made it)."""
        try:
            return await self.kube.create(body)
        except AlreadyExists:
            kind, name = body["kind"], body["metadata"]["name"]
            existing = await self.kube.get(kind, sr.namespace, name)
            owners = existing["metadata"].get("ownerReferences") or []
            if not any(ref.get("uid") == sr.uid for ref in owners):
                raise StepAborted(
                    Phase.FAILED,
                    Reason.CREATE_FAILED.value,
                    f"{kind} {name} already exists and is not owned by this StepRun; "
                    "delete it or rename the StepRun",
                ) from None
            # An owner reference is no proof: anyone who may create the kind can write one.
            if problems := adoption_problems(body, existing):
                for_steprun(sr).warning(
                    "refusing to adopt an object the operator did not make",
                    kind=kind,
                    object=name,
                    problems=problems,
                )
                raise StepAborted(
                    Phase.FAILED,
                    Reason.CREATE_FAILED.value,
                    f"{kind} {name} already exists, claims this StepRun as its owner, but is not "
                    f"what the operator made ({'; '.join(problems[:3])}); it is left alone: "
                    "delete it or rename the StepRun",
                ) from None
            return existing
        except Invalid as error:
            raise StepAborted(
                Phase.FAILED,
                Reason.CREATE_FAILED.value,
                f"the API server refused {body['kind']} {body['metadata']['name']}: "
                f"{error.message}",
            ) from None

    async def _create_pod(self, sr: StepRun, pod: dict[str, Any]) -> dict[str, Any]:
        return await self._create_owned(sr, pod)

    async def _finish_attempt(self, sr: StepRun, decision: FinishAttempt, now: datetime) -> None:
        outcome = await self._redacted(sr, decision.outcome)
        if decision.delete_pod and sr.status.pod_name:
            await self.tenancy.delete_owned("Pod", sr, sr.status.pod_name, grace_period_seconds=0)
        if decision.retry_at is None:
            await self._cleanup_context(sr)
        event_type = "Warning" if decision.retry_at else _EVENT_TYPES.get(outcome.phase, "Warning")
        event_reason = Reason.RETRYING.value if decision.retry_at else outcome.reason
        for _ in range(3):
            doc = statuses.attempt_finished(sr, outcome, now, decision.retry_at)
            try:
                await self._write(sr, doc, event_type, event_reason)
                break
            except Conflict:
                # The outcome is known and the Pod may already be gone: re-apply it to the
                # fresh object rather than re-deciding from a world it no longer shows.
                fresh = StepRun.from_body(await self.kube.get("StepRun", sr.namespace, sr.name))
                self.stepruns.observe(fresh.model_dump(by_alias=True, mode="json"))
                if fresh.status.attempt != sr.status.attempt or (
                    fresh.status.phase and Phase(fresh.status.phase).terminal
                ):
                    return
                sr = fresh
        if decision.retry_at is not None:
            self.queue.add_after(_key(sr), (decision.retry_at - now).total_seconds() + 0.05)

    async def _repair_context(self, sr: StepRun, until: datetime, now: datetime) -> None:
        """Recreate the step's ConfigMap or Secret if someone deleted them before its Pod
        started (the kubelet retries on its own); the startup timeout still bounds the wait.
        Reads only, unless something is missing."""
        name = context_name(sr.name)
        kinds = ["ConfigMap", *(["Secret"] if sr.spec.context.secrets else [])]
        missing = [k for k in kinds if await self.kube.get_or_none(k, sr.namespace, name) is None]
        if missing:
            for_steprun(sr).warning(
                "context deleted while the Pod starts; recreating", kinds=missing
            )
            try:
                await self._ensure_context(sr, await self._sandbox_decision(sr))
            except StepAborted as aborted:
                await self._end_without_pod(sr, aborted, now)
                return
        self.queue.add_after(_key(sr), (until - now).total_seconds() + 0.05)

    async def _redacted(self, sr: StepRun, outcome: Outcome) -> Outcome:
        """The outcome with every secret value the step was given masked: its text came from
        the Pod and goes to status, Events and logs."""
        values = await self.tenancy.secret_values(sr)
        if not values:
            return outcome
        return dataclasses.replace(
            outcome,
            message=redact(outcome.message, values),
            outputs=redact_json(outcome.outputs, values) if outcome.outputs else outcome.outputs,
        )

    async def _cancel(self, sr: StepRun, pod_name: str | None, now: datetime) -> None:
        sandbox = SandboxDecision.from_status(sr.status.admitted) if sr.status.admitted else None
        grace = grace_period_seconds(sr, sandbox)
        if pod_name:
            await self.tenancy.delete_owned("Pod", sr, pod_name, grace_period_seconds=grace)
            message = f"cancelled: Pod {pod_name} deleted with a {grace}s grace period"
        else:
            message = "cancelled before a Pod was running"
        await self._cleanup_context(sr)
        doc = statuses.terminal(sr, Phase.CANCELLED, Reason.CANCELLED.value, message, now)
        await self._write(sr, doc, "Normal", Reason.CANCELLED.value)

    async def _end_without_pod(self, sr: StepRun, aborted: StepAborted, now: datetime) -> None:
        await self._cleanup_context(sr)
        doc = statuses.terminal(sr, aborted.phase, aborted.reason, aborted.message, now)
        await self._write(sr, doc, "Warning", aborted.reason)

    async def _cleanup_context(self, sr: StepRun) -> None:
        """The step's context must not outlive it (the NetworkPolicy stays: it still confines a
        Pod that may be terminating; it goes with the StepRun)."""
        name = context_name(sr.name)
        if sr.spec.context.secrets:
            await self.tenancy.delete_owned("Secret", sr, name)
        await self.tenancy.delete_owned("ConfigMap", sr, name)

    # ------------------------------------------------------------------ writes

    async def _write(
        self, sr: StepRun, doc: dict[str, Any], event_type: str, event_reason: str
    ) -> None:
        body = await self.kube.patch_status(
            "StepRun", sr.namespace, sr.name, doc, resource_version=sr.metadata.resource_version
        )
        self.stepruns.observe(body)
        phase, message = str(doc.get("phase")), str(doc.get("message") or "")
        TRANSITIONS.labels(phase=phase, reason=str(doc.get("reason"))).inc()
        for_steprun(sr).info(
            "status written",
            attempt=doc.get("attempt"),
            phase=phase,
            reason=doc.get("reason"),
            message=message,
        )
        if self.config.events:
            event = render_event(sr, event_type, event_reason, message, utcnow())
            try:
                await self.kube.create(event)
            except TRANSIENT as error:
                # Events are a courtesy to humans; the status is the record.
                for_steprun(sr).warning("event not posted", error=str(error))

    async def _refresh(self, key: Key) -> None:
        try:
            body = await self.kube.get("StepRun", key[0], key[1])
        except NotFound:
            return
        except TRANSIENT:
            self.queue.add_after(key, 1.0)
            return
        self.stepruns.observe(body)
        self.queue.add(key)

    def _retry_later(self, sr: StepRun, key: Key, error: BaseException) -> None:
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** (failures - 1))
        for_steprun(sr).warning(
            "reconcile failed; retrying", error=str(error), retry_in_seconds=delay
        )
        self.queue.add_after(key, delay)


def _key(sr: StepRun) -> Key:
    return (sr.namespace, sr.name)


__all__ = ["Outcome", "Reconciler"]
