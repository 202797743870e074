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
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from steprun.api.models import (
    FailureCategory,
    Mode,
    ObjectMeta,
    Phase,
    QueueStatus,
    Reason,
    SandboxPolicy,
    StepRun,
    StepRunSpec,
    StepRunStatus,
    is_terminal_phase,
)
from steprun.config import OperatorConfig
from steprun.kube.client import (
    AlreadyExists,
    Conflict,
    Kube,
    NotFound,
    Refused,
    Transient,
)
from steprun.log import for_steprun, get_logger
from steprun.metrics import (
    KUEUE_WAIT_SECONDS,
    RECONCILE_ERRORS,
    RECONCILE_SECONDS,
    container_started_at,
    record_pod_start,
    record_transition,
)
from steprun.observe.failure import category, recent_events
from steprun.observe.mounts import MOUNT_EVENT_FIELDS, mount_failure
from steprun.observe.redact import redact, redact_json
from steprun.observe.workload import observe_workload
from steprun.policy.admission import admit
from steprun.policy.decision import SandboxDecision
from steprun.reconcile import status as statuses
from steprun.reconcile.artifacts import (
    ARCHIVE_MARGIN_SECONDS,
    ArtifactProblem,
    Artifacts,
    message_with,
)
from steprun.reconcile.decide import (
    Cancel,
    ExpireTtl,
    FinishAttempt,
    MarkRunning,
    Outcome,
    RecordPending,
    ReleasePods,
    RepairContext,
    StartAttempt,
    Wait,
    attempt_failed,
    decide,
    node_to_avoid,
    pod_created_at,
)
from steprun.reconcile.offlane import OffLane
from steprun.reconcile.queue import (
    FOLLOW_LANE,
    START_LANE,
    Key,
    ObjectCache,
    PodCache,
    WorkQueue,
    is_terminal_body,
)
from steprun.reconcile.queueing import (
    CreateWorkload,
    MarkAdmitted,
    MarkQueued,
    Preempt,
    QueueDecision,
    QueueTimedOut,
    Requeue,
    queued_message,
)
from steprun.reconcile.tenancy import Tenancy
from steprun.reconcile.workloads import WorkloadProblem, Workloads
from steprun.reconcile.workspaces import WorkspaceUnavailable, ensure_workspaces
from steprun.render.adoption import adoption_problems
from steprun.render.artifacts import (
    ResolvedInput,
    add_artifacts,
    add_store_egress,
    needs_artifacts,
    path_problems,
)
from steprun.render.context import (
    inputs_problem,
    needs_secret,
    render_configmap,
    render_secret,
    resolve_secret_values,
    secret_sources,
)
from steprun.render.events import render_event
from steprun.render.names import (
    ANNOTATION_CREATED_AT,
    LABEL_UID,
    TRACKING_FINALIZER,
    context_name,
    workload_name,
)
from steprun.render.names import pod_name as child_pod_name
from steprun.render.network import render_network_policy
from steprun.render.pod import (
    CONTEXT_VOLUME,
    SECRETS_VOLUME,
    RenderError,
    enforces_restricted,
    grace_period_seconds,
    prefer_other_node,
    render_pod,
)
from steprun.render.sandbox import harden_pod
from steprun.render.workload import queue_name, with_admission
from steprun.timeutil import format_time, parse_time, utcnow

# A namesake's leftover child is deleted and the create retried this soon: the garbage
# collector or our own delete usually removes it within a second.
NAMESAKE_RETRY_SECONDS = 1.0

_EVENT_TYPES = {
    Phase.SUCCEEDED: "Normal",
    Phase.CANCELLED: "Normal",
}


class StepAborted(Exception):
    """The step cannot run as written; it ends with this reason and message, without a Pod."""

    def __init__(self, phase: Phase, reason: Reason, message: str):
        super().__init__(message)
        self.phase = phase
        self.reason = reason
        self.message = message


class NamesakeLeftover(Exception):
    """A child of an earlier StepRun of the same name is still there; it is being removed."""


class Reconciler:
    def __init__(self, kube: Kube, config: OperatorConfig):
        self.kube = kube
        self.config = config
        self.stepruns = ObjectCache()
        self.pods = PodCache(finalizer=TRACKING_FINALIZER)
        self.queue = WorkQueue(
            self.reconcile, concurrency=config.reconcile_concurrency, lane=self._lane
        )
        self.tenancy = Tenancy(kube, config)
        self.workloads = Workloads(kube)
        # When Pod creation of a key first failed transiently (e.g. a full ResourceQuota): the
        # step's startup timeout bounds the wait, on the operator's clock.
        self._blocked_since: dict[Key, datetime] = {}
        self._crashes: dict[Key, int] = {}
        # The uids of the context objects this process created or adopted, per StepRun (and
        # its uid): deleted at the end by that uid, without reading them back. A restart
        # forgets them; the objects are then read before they are deleted.
        self._made: dict[Key, tuple[str, dict[str, str]]] = {}
        # The last StepRun read from the cache, by its (uid, resourceVersion): most reconciles
        # follow Pod events and meet a StepRun version already parsed. Only live steps are
        # kept, so retained terminal StepRuns cost no memory here.
        self._parsed: dict[Key, tuple[tuple[str, str], StepRun]] = {}
        # When each starting step's context was last checked: decide() checks it once per
        # attempt, or while the kubelet reports it missing.
        self._context_checked: dict[Key, datetime] = {}
        self._log = get_logger("steprun.reconcile")
        self.artifacts = Artifacts(kube, config)
        # Cancelled steps whose log is followed through their grace period, out of the lanes.
        self.off_lane = OffLane(config.archive_concurrency_per_namespace, self.queue.add)

    # ------------------------------------------------------------------ entry point

    def _lane(self, key: Key) -> str:
        """Steps that still need a Pod created wait for each other, never for the others."""
        body = self.stepruns.get(key)
        if body is None:
            return FOLLOW_LANE
        status = body.get("status") or {}
        spec = body.get("spec") or {}
        if not isinstance(status, Mapping) or not isinstance(spec, Mapping):
            return FOLLOW_LANE
        starting = (not status.get("podName") or bool(status.get("nextAttemptTime"))) and not (
            is_terminal_body(body)
            or spec.get("cancel")
            or (body.get("metadata") or {}).get("deletionTimestamp")
        )
        if starting:
            # Its Pod may exist already, not recorded yet: then it is being followed.
            attempt = status.get("attempt")
            number = _next_attempt(
                attempt if isinstance(attempt, int) else None, status.get("podName")
            )
            starting = self.pods.get(key, child_pod_name(key[1], number)) is None
        return START_LANE if starting else FOLLOW_LANE

    async def reconcile(self, key: Key) -> None:
        body = self.stepruns.get(key)
        if body is None:
            await self._gone(key)
            return
        started = time.perf_counter()
        try:
            await self._reconcile_body(key, body)
            self.queue.forget(key)
            self._crashes.pop(key, None)
        except Conflict:
            RECONCILE_ERRORS.labels(error="Conflict").inc()
            await self._refresh(key)
        except NamesakeLeftover:
            self.queue.add_after(key, NAMESAKE_RETRY_SECONDS)
        except Transient as error:
            RECONCILE_ERRORS.labels(error="Transient").inc()
            delay = self.queue.add_rate_limited(key, retry_after=error.retry_after)
            self._log.warning(
                "API server unavailable; retrying",
                namespace=key[0],
                name=key[1],
                error=str(error),
                retry_in_seconds=round(delay, 2),
            )
        except Exception as error:
            RECONCILE_ERRORS.labels(error="Crash").inc()
            await self._crashed(key, body, error)
        finally:
            RECONCILE_SECONDS.observe(time.perf_counter() - started)

    def _parse(self, key: Key, body: Mapping[str, Any]) -> StepRun:
        meta = body.get("metadata") or {}
        version = (str(meta.get("uid") or ""), str(meta.get("resourceVersion") or ""))
        parsed = self._parsed.get(key)
        if parsed is not None and parsed[0] == version and all(version):
            return parsed[1]
        sr = StepRun.from_body(body)
        if is_terminal_phase(sr.status.phase):
            self._context_checked.pop(key, None)
        if is_terminal_phase(sr.status.phase) or not all(version):
            self._parsed.pop(key, None)
        else:
            self._parsed[key] = (version, sr)
        return sr

    async def _reconcile_body(self, key: Key, body: Mapping[str, Any]) -> None:
        try:
            sr = self._parse(key, body)
        except (ValidationError, RecursionError, ValueError) as error:
            # The API server accepted it but the operator cannot read it (e.g. a schema skew):
            # retrying cannot help; the step ends saying so, once.
            await self._unreadable(key, body, error)
            return
        try:
            await self._reconcile(sr)
        except RecursionError:
            message = (
                "spec.context.inputs is nested too deeply for the operator to process; flatten it"
            )
            await self._give_up(sr, Phase.FAILED, Reason.INVALID_SPEC, message)
        except Refused as error:
            # A request the step needs that the API server will never accept (e.g. the status
            # is too large, or the operator is forbidden to read what the step names).
            message = f"the API server refused a request this step needs: {error.message}"
            await self._give_up(sr, Phase.FAILED, Reason.RECONCILE_FAILED, message)

    async def _reconcile(self, sr: StepRun) -> None:
        now = utcnow()
        pod = await self._current_pod(sr)
        recorded = True
        if pod is None and (unrecorded := self._unrecorded_pod(sr)) is not None:
            # Followed as if recorded; the first write about it records it.
            attempt, pod = unrecorded
            created = pod_created_at(pod) or now
            sr = statuses.recording(sr, attempt, pod["metadata"]["name"], created)
            recorded = False
        if is_terminal_phase(sr.status.phase):
            self.pods.slim(_key(sr))
        held, orphans = self._held_pods(sr)
        workload = None
        if queue_name(sr) and not (
            sr.metadata.deletion_timestamp or is_terminal_phase(sr.status.phase)
        ):
            workload = await self.workloads.current(sr)
        decision = decide(
            sr,
            pod,
            now,
            self.config,
            held,
            orphans,
            recorded=recorded,
            context_checked=self._context_checked.get(_key(sr)),
            workload=workload,
        )
        match decision:
            case Wait(until=until):
                if until is not None:
                    self.queue.add_after(_key(sr), (until - now).total_seconds() + 0.05)
            case StartAttempt(attempt=attempt):
                await self._start_attempt(sr, attempt, now)
            case MarkRunning(start_time=start_time):
                await self._write(sr, statuses.running(sr, start_time, now), "Normal", "Started")
                record_pod_start(pod, parse_time(start_time) or now)
            case RecordPending():
                await self._write(sr, sr.status, "Normal", Reason.POD_CREATED)
            case FinishAttempt():
                if sr.status.phase == Phase.PENDING:
                    # Ended before it was seen running (a quick step): it did start.
                    record_pod_start(pod, container_started_at(pod))
                await self._finish_attempt(sr, decision, now, recorded=recorded, pod=pod)
            case RepairContext(until=until):
                await self._repair_context(sr, until, now)
            case Cancel(pod_name=pod_name):
                await self._cancel(sr, pod_name, now)
            case ExpireTtl():
                for_steprun(sr).info("deleting StepRun: ttlSecondsAfterFinished elapsed")
                await self.kube.delete("StepRun", sr.namespace, sr.name, uid=sr.uid)
            case ReleasePods(pod_names=names):
                await self._release(_key(sr), names)
                self.queue.add(_key(sr))
            case CreateWorkload() | MarkQueued() | MarkAdmitted() | Preempt() | Requeue():
                await self._follow_queue(sr, decision, workload, now)
            case QueueTimedOut(message=message):
                timed_out = StepAborted(Phase.FAILED, Reason.QUEUE_TIMEOUT, message)
                await self._end_without_pod(sr, timed_out, now)

    # ------------------------------------------------------------------ failures

    async def _crashed(self, key: Key, body: Mapping[str, Any], error: Exception) -> None:
        """An unexpected error (a bug, or an object the code does not handle): retried with the
        key's backoff, and after ``max_reconcile_failures`` in a row the step ends saying so."""
        crashes = self._crashes.get(key, 0) + 1
        self._crashes[key] = crashes
        limit = self.config.max_reconcile_failures
        self._log.error(
            "reconcile failed",
            namespace=key[0],
            name=key[1],
            failures=crashes,
            limit=limit,
            exc_info=error,
        )
        if crashes < limit:
            self.queue.add_rate_limited(key)
            return
        message = (
            f"the operator failed to reconcile this StepRun {crashes} times in a row, last with "
            f"{type(error).__name__}: {error}; this is a bug in steprun (its log has the trace)"
        )
        try:
            sr = StepRun.from_body(body)
            await self._give_up(sr, Phase.FAILED, Reason.RECONCILE_FAILED, message)
        except Exception as final:
            self._log.error("cannot end StepRun", namespace=key[0], name=key[1], error=str(final))
        self._crashes.pop(key, None)
        self.queue.discard(key)

    async def _unreadable(self, key: Key, body: Mapping[str, Any], error: Exception) -> None:
        meta = body.get("metadata") or {}
        status = body.get("status") or {}
        phase = status.get("phase") if isinstance(status, Mapping) else None
        if is_terminal_phase(phase):
            return
        if isinstance(error, ValidationError):
            detail = "; ".join(
                f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}"
                for e in error.errors()[:5]
            )
        elif isinstance(error, RecursionError):
            detail = "it is nested too deeply"
        else:
            detail = str(error) or type(error).__name__
        message = f"the operator cannot read this StepRun: {detail}"
        self._log.error("unreadable StepRun", namespace=key[0], name=key[1], error=str(error))
        ended = statuses.given_up(
            meta.get("generation"), Phase.FAILED, Reason.INVALID_SPEC, message, utcnow()
        )
        written = await self.kube.patch_status(
            "StepRun",
            key[0],
            key[1],
            statuses.to_patch(ended),
            resource_version=meta.get("resourceVersion"),
        )
        self.stepruns.observe(written)
        record_transition(meta.get("creationTimestamp"), ended)
        if self.config.posts_event("Warning"):
            ref = StepRun(
                metadata=ObjectMeta(
                    name=key[1],
                    namespace=key[0],
                    uid=str(meta.get("uid") or ""),
                    resourceVersion=written["metadata"].get("resourceVersion"),
                ),
                spec=StepRunSpec(),
            )
            event = render_event(
                ref,
                "Warning",
                Reason.INVALID_SPEC,
                message,
                utcnow(),
            )
            await self._post(event, key)

    async def _give_up(self, sr: StepRun, phase: Phase, reason: Reason, message: str) -> None:
        """End the step with only a small status patch (the full one may be what is refused).
        If even that is refused, nothing more can be done: logged, not retried."""
        site = statuses.attempt_site(sr, None)
        status = statuses.given_up(sr.metadata.generation, phase, reason, message, utcnow(), site)
        try:
            await self._write(sr, status, "Warning", reason)
        except Refused as error:
            for_steprun(sr).error(
                "the API server refuses every status write of this StepRun; giving up",
                error=error.message,
            )
            self.queue.discard(_key(sr))

    # ------------------------------------------------------------------ the steps

    async def _current_pod(self, sr: StepRun) -> dict[str, Any] | None:
        """The Pod of the attempt in flight, if it exists (checked with the API when unseen)."""
        status = sr.status
        in_flight = status.pod_name and not status.next_attempt_time
        if not in_flight or is_terminal_phase(status.phase):
            return None
        assert status.pod_name is not None
        pod = self.pods.get(_key(sr), status.pod_name)
        if pod is None:
            # Not yet seen by the watch (just created, or the operator just started) or gone.
            pod = await self.kube.get_or_none("Pod", sr.namespace, status.pod_name)
            if pod is not None:
                self.pods.observe(_key(sr), pod)
        return pod

    def _unrecorded_pod(self, sr: StepRun) -> tuple[int, dict[str, Any]] | None:
        """The attempt about to start and its Pod, when this process created (or adopted) that
        Pod but no status write has recorded it yet."""
        status = sr.status
        if is_terminal_phase(status.phase) or (status.pod_name and not status.next_attempt_time):
            return None
        if sr.spec.mode == Mode.SANDBOX and not status.admitted:
            # Its admission is recorded with the Pod, at once (see _start_attempt).
            return None
        attempt = _next_attempt(status.attempt, status.pod_name)
        body = self.pods.get(_key(sr), child_pod_name(sr.name, attempt))
        if body is None or _owner_uid(body) != sr.uid or not self._made_here(sr, body):
            # Not known to be ours (a restart forgot it, or a co-tenant planted it under the
            # next attempt's name): starting the attempt adopts it only if it passes the check.
            return None
        return attempt, body

    def _held_pods(self, sr: StepRun) -> tuple[list[str], list[str]]:
        """This StepRun's cached Pods that carry the tracking finalizer, and those of an earlier
        StepRun of the same name."""
        held: list[str] = []
        orphans: list[str] = []
        for name, body in self.pods.all(_key(sr)).items():
            if TRACKING_FINALIZER not in (body["metadata"].get("finalizers") or []):
                continue
            (held if _owner_uid(body) == sr.uid else orphans).append(name)
        return held, orphans

    async def _release(self, key: Key, names: tuple[str, ...]) -> None:
        for name in names:
            body = self.pods.get(key, name)
            if body is None:
                continue
            await self.kube.remove_finalizer("Pod", key[0], body, TRACKING_FINALIZER)
            # Until the watch shows the change, the cache must not offer it again.
            meta = dict(body["metadata"])
            meta["finalizers"] = [
                f for f in meta.get("finalizers") or [] if f != TRACKING_FINALIZER
            ]
            self.pods.observe(key, {**body, "metadata": meta})

    async def _gone(self, key: Key) -> None:
        """The StepRun is deleted: its Pods' outcomes have nowhere to go, so they are released
        (after checking with the API that the StepRun really is gone: the StepRun watch may
        simply not have listed it yet)."""
        self.queue.discard(key)
        self._parsed.pop(key, None)
        self._context_checked.pop(key, None)
        pods = self.pods.all(key)
        held = {
            n: b
            for n, b in pods.items()
            if TRACKING_FINALIZER in (b["metadata"].get("finalizers") or [])
        }
        if held:
            current = await self.kube.get_or_none("StepRun", key[0], key[1])
            if current is not None:
                self.stepruns.observe(current)
                self.queue.add(key)
                return
            await self._release(key, tuple(sorted(held)))
        self.pods.forget(key)
        self.workloads.forget(key)
        self._crashes.pop(key, None)
        self._blocked_since.pop(key, None)
        self._made.pop(key, None)

    async def _start_attempt(self, sr: StepRun, attempt: int, now: datetime) -> None:
        log = for_steprun(sr).bind(attempt=attempt)
        try:
            if problem := inputs_problem(sr):
                raise StepAborted(Phase.FAILED, Reason.INVALID_SPEC, problem)
            labels = await self.tenancy.namespace_labels(sr.namespace)
            if refusal := await self.tenancy.refusal(sr, labels):
                raise StepAborted(Phase.REJECTED, Reason.PERMISSION_DENIED, refusal)
            sandbox = await self._sandbox_decision(sr, labels)
            inputs = await self._artifact_inputs(sr)
            restricted = enforces_restricted(labels)
            pod = render_pod(sr, attempt, self.config, sandbox, restricted=restricted)
            pod = add_artifacts(pod, sr, attempt, self.config, inputs)
            if sandbox is not None:
                pod = harden_pod(pod, sandbox)
                if refusal := await self.tenancy.network_refusal(sr, pod["metadata"]["labels"]):
                    raise StepAborted(Phase.REJECTED, Reason.PERMISSION_DENIED, refusal)
            if avoid := node_to_avoid(sr, attempt):
                pod = prefer_other_node(pod, avoid)
            pod = await self._placed_by_kueue(sr, pod)
            await self._ensure_workspaces(sr)
            await self._ensure_context(sr, sandbox)
            pod["metadata"].setdefault("annotations", {})[ANNOTATION_CREATED_AT] = format_time(now)
            created = await self._create_pod(sr, pod, now)
        except StepAborted as aborted:
            log.info("step cannot run", reason=aborted.reason, message=aborted.message)
            await self._end_without_pod(sr, aborted, now)
            return
        except (RenderError, ValueError) as error:
            invalid = StepAborted(Phase.FAILED, Reason.INVALID_SPEC, str(error))
            await self._end_without_pod(sr, invalid, now)
            return
        except CreateFailed as failed:
            # Like a failed attempt: recorded in attempts, and retried while retries allow.
            log.info("pod not created", message=failed.message)
            sr_attempt = statuses.with_attempt(sr, attempt, child_pod_name(sr.name, attempt))
            outcome = Outcome(Phase.FAILED, Reason.CREATE_FAILED, failed.message)
            self._blocked_since.pop(_key(sr), None)
            await self._finish_attempt(sr_attempt, attempt_failed(sr_attempt, outcome, now), now)
            return
        self._blocked_since.pop(_key(sr), None)
        self.pods.observe(_key(sr), created)
        pod_name = created["metadata"]["name"]
        log.info("pod created", pod=pod_name)
        if sandbox is not None and not sr.status.admitted:
            # The admission decision is frozen with the Pod it admitted: recorded at once.
            doc = statuses.pending(sr, attempt, pod_name, now, sandbox.to_admitted())
            await self._write(sr, doc, "Normal", Reason.POD_CREATED)
            return
        # Otherwise nothing is written yet: the first status write about the Pod (Running,
        # its outcome, or Pending if it is slow to start) records the attempt; its startup
        # timeout counts from the Pod's created-at. Looked at again now, not on the watch's
        # next event: an adopted Pod (a restart forgot it) may never change again.
        self.queue.add(_key(sr))

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
            namespace_labels = await self.tenancy.namespace_labels(sr.namespace)
        policy = SandboxPolicy.from_body(raw_policy) if raw_policy is not None else None
        result = admit(sr, policy, namespace_labels, self.config)
        if result.decision is None:
            reason = result.reason or Reason.PERMISSION_DENIED
            raise StepAborted(Phase.REJECTED, reason, result.message)
        return result.decision

    async def _ensure_workspaces(self, sr: StepRun) -> None:
        try:
            await ensure_workspaces(self.kube, sr, self.tenancy.claim_problem)
        except WorkspaceUnavailable as error:
            raise StepAborted(Phase.FAILED, Reason.WORKSPACE_UNAVAILABLE, str(error)) from None

    async def _artifact_inputs(self, sr: StepRun) -> list[ResolvedInput]:
        """The inputs' objects, checked before any Pod exists (a missing one ends the step)."""
        if not needs_artifacts(sr):
            return []
        problems = path_problems(sr)
        try:
            if problems:
                raise ArtifactProblem("; ".join(problems))
            return await self.artifacts.resolve(sr)
        except ArtifactProblem as problem:
            raise StepAborted(Phase.FAILED, Reason.INVALID_SPEC, str(problem)) from None

    async def _ensure_context(self, sr: StepRun, sandbox: SandboxDecision | None) -> None:
        # The store's credentials ride in the step's own Secret, for its helper containers.
        try:
            store_keys = (
                await self.artifacts.secret_data(sr.namespace) if needs_artifacts(sr) else {}
            )
        except ArtifactProblem as problem:
            raise StepAborted(Phase.FAILED, Reason.INVALID_SPEC, str(problem)) from None
        # The context objects do not depend on each other: created at once, they cost the
        # step's start one round trip to a loaded API server instead of one each.
        bodies = [render_configmap(sr, self.config, sandbox)]
        if sandbox is not None:
            bodies.append(add_store_egress(render_network_policy(sr, sandbox), sr, self.config))
        creates: list[Awaitable[object]] = [self._create_owned(sr, body) for body in bodies]
        if needs_secret(sr, sandbox) or store_keys:
            creates.insert(0, self._create_secret(sr, sandbox, store_keys))
        await _all(creates)

    async def _create_secret(
        self, sr: StepRun, sandbox: SandboxDecision | None, store_keys: Mapping[str, str]
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
                raise StepAborted(Phase.FAILED, Reason.INVALID_SPEC, "; ".join(problems))
        await self._create_owned(sr, render_secret(sr, {**data, **store_keys}))

    async def _create_owned(self, sr: StepRun, body: dict[str, Any]) -> dict[str, Any]:
        """Create, or adopt the existing object when it is ours (a previous run made it)."""
        made = await self._create_or_adopt(sr, body)
        if made["kind"] in _CONTEXT_KINDS or made["kind"] == "Pod":
            uids = self._made.get(_key(sr))
            if uids is None or uids[0] != sr.uid:
                uids = self._made[_key(sr)] = (sr.uid, {})
            uids[1][_made_key(made)] = str(made["metadata"].get("uid") or "")
        return made

    def _made_here(self, sr: StepRun, body: Mapping[str, Any]) -> bool:
        """Whether this process created ``body`` for ``sr`` (or adopted it after checking it is
        what the operator renders): an owner reference alone is anyone's to write."""
        made = self._made.get(_key(sr))
        uid = body["metadata"].get("uid")
        return (
            made is not None
            and made[0] == sr.uid
            and bool(uid)
            and made[1].get(_made_key(body)) == uid
        )

    async def _create_or_adopt(self, sr: StepRun, body: dict[str, Any]) -> dict[str, Any]:
        kind, name = body["kind"], body["metadata"]["name"]
        try:
            return await self.kube.create(body)
        except AlreadyExists:
            existing = await self.kube.get_or_none(kind, sr.namespace, name)
            if existing is None:
                raise NamesakeLeftover(f"{kind} {name} was just deleted") from None
            owners = existing["metadata"].get("ownerReferences") or []
            if any(ref.get("uid") == sr.uid for ref in owners):
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
                        Reason.CREATE_FAILED,
                        f"{kind} {name} already exists, claims this StepRun as its owner, but "
                        f"is not what the operator made ({'; '.join(problems[:3])}); it is left "
                        "alone: delete it or rename the StepRun",
                    ) from None
                return existing
            if _from_namesake(sr, existing):
                await self._remove_namesake_leftover(sr, existing)
                raise NamesakeLeftover(f"{kind} {name} belongs to an earlier StepRun") from None
            raise StepAborted(
                Phase.FAILED,
                Reason.CREATE_FAILED,
                f"{kind} {name} already exists and is not owned by this StepRun; "
                "delete it or rename the StepRun",
            ) from None
        except Refused as error:
            raise CreateFailed(f"the API server refused {kind} {name}: {error.message}") from None

    async def _remove_namesake_leftover(self, sr: StepRun, existing: dict[str, Any]) -> None:
        """A StepRun deleted and created again under the same name races the garbage
        collector for its old children: remove the old child now instead of failing."""
        meta = existing["metadata"]
        kind = existing.get("kind") or "Pod"
        for_steprun(sr).info(
            "removing a child of an earlier namesake", kind=kind, child=meta["name"]
        )
        if TRACKING_FINALIZER in (meta.get("finalizers") or []):
            await self.kube.remove_finalizer(kind, sr.namespace, existing, TRACKING_FINALIZER)
        await self.kube.delete(kind, sr.namespace, meta["name"], uid=meta.get("uid"))

    async def _create_pod(self, sr: StepRun, pod: dict[str, Any], now: datetime) -> dict[str, Any]:
        try:
            return await self._create_owned(sr, pod)
        except Transient as error:
            # E.g. a ResourceQuota full for now: retried with backoff, but no longer than the
            # step's startup timeout allows a Pod to take to start.
            since = self._blocked_since.setdefault(_key(sr), now)
            limit = sr.spec.startup_timeout_seconds or self.config.default_startup_timeout_seconds
            if now - since < timedelta(seconds=limit):
                raise
            raise CreateFailed(
                f"Pod {pod['metadata']['name']} could not be created for {limit}s "
                f"(startupTimeoutSeconds): {error.message}"
            ) from None

    async def _finish_attempt(
        self,
        sr: StepRun,
        decision: FinishAttempt,
        now: datetime,
        *,
        recorded: bool = True,
        pod: Mapping[str, Any] | None = None,
    ) -> None:
        events = await self._failure_events(sr, decision.outcome)
        if decision.delete_pod:
            explained = self._explain_mount_failure(sr, decision, events)
            if explained.outcome.reason != decision.outcome.reason:
                # Another reason may spend another retry budget.
                retried = attempt_failed(sr, explained.outcome, now)
                explained = replace(retried, delete_pod=True)
            decision = explained
        if events:
            decision = replace(
                decision, outcome=replace(decision.outcome, events=recent_events(events))
            )
        # Read once, only when what the Pod said reaches the status: its values mask that, and
        # it is then deleted by the uid read. Otherwise by the uid it was created with.
        outcome = decision.outcome
        own_secret: dict[str, Any] | bool | None = False
        if sr.spec.context.secrets and _may_quote_the_pod(outcome):
            own_secret = await self.tenancy.own_secret(sr)
            outcome = await self._redacted(sr, outcome, own_secret)
        if decision.delete_pod and sr.status.pod_name:
            await self.tenancy.delete_owned("Pod", sr, sr.status.pod_name, grace_period_seconds=0)
        elif sr.status.pod_name:
            note = await self.artifacts.archive_log(sr, sr.status.attempt or 1, sr.status.pod_name)
            outcome = dataclasses.replace(outcome, message=message_with(outcome.message, note))
        if decision.retry_at is None:
            await self._cleanup_context(sr, own_secret)
        event_type = "Warning" if decision.retry_at else _EVENT_TYPES.get(outcome.phase, "Warning")
        event_reason = Reason.RETRYING if decision.retry_at else outcome.reason
        for _ in range(3):
            doc = statuses.attempt_finished(sr, outcome, now, decision.retry_at, pod)
            try:
                await self._write(sr, doc, event_type, event_reason)
                break
            except Conflict:
                # The outcome is known and the Pod may already be gone: re-apply it to the
                # fresh object rather than re-deciding from a world it no longer shows.
                raw = await self.kube.get("StepRun", sr.namespace, sr.name)
                self.stepruns.observe(raw)
                fresh = StepRun.from_body(raw)
                if not recorded and sr.status.attempt == _next_attempt(
                    fresh.status.attempt, fresh.status.pod_name
                ):
                    # Still not recorded: recorded by this write, as it would have been.
                    entry = next(a for a in sr.status.attempts if a.attempt == sr.status.attempt)
                    created = parse_time(entry.creation_time) or now
                    fresh = statuses.recording(fresh, entry.attempt, entry.pod_name or "", created)
                if fresh.status.attempt != sr.status.attempt or (
                    is_terminal_phase(fresh.status.phase)
                ):
                    return
                sr = fresh
        if decision.retry_at is not None:
            self.queue.add_after(_key(sr), (decision.retry_at - now).total_seconds() + 0.05)

    async def _redacted(
        self, sr: StepRun, outcome: Outcome, own_secret: dict[str, Any] | bool | None
    ) -> Outcome:
        """The outcome with every secret value the step was given masked: its text came from
        the Pod and goes to status, Events and logs."""
        values = await self.tenancy.secret_values(sr, own_secret)
        if not values:
            return outcome
        return replace(
            outcome,
            message=redact(outcome.message, values),
            outputs=redact_json(outcome.outputs, values) if outcome.outputs else outcome.outputs,
            events=tuple(
                e.model_copy(update={"message": redact(e.message, values)}) if e.message else e
                for e in outcome.events
            ),
        )

    async def _failure_events(self, sr: StepRun, outcome: Outcome) -> list[dict[str, Any]]:
        """The Warning events of the attempt's Pod, when the attempt failed by no fault of the
        step's own code: the cluster's words then explain it (one list per such failure)."""
        if outcome.phase == Phase.SUCCEEDED or not sr.status.pod_name:
            return []
        if category(outcome.reason, outcome.message) in (None, FailureCategory.STEP):
            return []
        if outcome.reason == Reason.CREATE_FAILED:
            return []
        selector = MOUNT_EVENT_FIELDS.format(pod=sr.status.pod_name)
        return await self.kube.list("Event", sr.namespace, field_selector=selector)

    def _explain_mount_failure(
        self, sr: StepRun, decision: FinishAttempt, events: list[dict[str, Any]]
    ) -> FinishAttempt:
        """A Pod stuck starting because the kubelet cannot mount a workspace, or its context,
        says so only in its events: the step then fails with the kubelet's words instead of a
        bare timeout."""
        if decision.outcome.reason != Reason.STARTUP_TIMEOUT or not sr.status.pod_name:
            return decision
        context = (CONTEXT_VOLUME, SECRETS_VOLUME)
        failure = mount_failure(events, ignore_volumes=context)
        if failure is None:
            # Its context is checked once while it starts: deleted after that, the kubelet's
            # words say so here.
            if lost := mount_failure(events, only_volumes=context):
                message = (
                    f"{decision.outcome.message}; the step's context (its ConfigMap or Secret "
                    f"{context_name(sr.name)}) cannot be mounted: {lost[0]}: {lost[1]}"
                )
                return replace(decision, outcome=replace(decision.outcome, message=message))
            return decision
        outcome = replace(
            decision.outcome,
            reason=Reason.WORKSPACE_UNAVAILABLE,
            message=f"{decision.outcome.message}; a workspace cannot be mounted: "
            f"{failure[0]}: {failure[1]}",
        )
        return replace(decision, outcome=outcome)

    async def _repair_context(self, sr: StepRun, until: datetime, now: datetime) -> None:
        """Recreate the step's ConfigMap or Secret if someone deleted them before its Pod
        started (the kubelet retries on its own); the startup timeout still bounds the wait.
        Reads only, unless something is missing."""
        name = context_name(sr.name)
        kinds = ["ConfigMap", *(["Secret"] if _has_secret(sr) else [])]
        missing = [k for k in kinds if await self.kube.get_or_none(k, sr.namespace, name) is None]
        self._context_checked[_key(sr)] = now
        if missing:
            for_steprun(sr).warning(
                "context deleted while the Pod starts; recreating", kinds=missing
            )
            try:
                await self._ensure_context(sr, await self._sandbox_decision(sr))
            except StepAborted as aborted:
                await self._end_without_pod(sr, aborted, now)
                return
            except CreateFailed as failed:
                refused = StepAborted(Phase.FAILED, Reason.CREATE_FAILED, failed.message)
                await self._end_without_pod(sr, refused, now)
                return
        self.queue.add_after(_key(sr), (until - now).total_seconds() + 0.05)

    async def _cancel(self, sr: StepRun, pod_name: str | None, now: datetime) -> None:
        """Deletes every Pod of the StepRun, found by its uid label whatever status says: a
        Pod created by a reconcile whose status write then lost a race is not in status."""
        if self.off_lane.busy(_key(sr)):
            return  # its log is being archived; the status write that follows ends it
        sandbox = SandboxDecision.from_status(sr.status.admitted) if sr.status.admitted else None
        grace = grace_period_seconds(sr, sandbox)
        pods = await self.kube.list("Pod", sr.namespace, label_selector=f"{LABEL_UID}={sr.uid}")
        deleted = []
        for pod in pods:
            if _owner_uid(pod) != sr.uid or pod["metadata"].get("deletionTimestamp"):
                continue
            name = pod["metadata"]["name"]
            await self.kube.delete(
                "Pod", sr.namespace, name, grace_period_seconds=grace, uid=pod["metadata"]["uid"]
            )
            self.pods.observe(_key(sr), pod)
            deleted.append(name)
        if deleted:
            message = (
                f"cancelled: Pod {', '.join(sorted(deleted))} deleted with a {grace}s grace period"
            )
        elif pod_name:
            message = f"cancelled: Pod {pod_name} was already being deleted"
        else:
            message = "cancelled before a Pod was created"
        if pod_name and self.artifacts.archives_logs(sr.namespace):
            # Followed until the container ends, so the lines of its grace period are kept too
            # (the tracking finalizer keeps the Pod, and its log, until the status is written);
            # that may take the whole grace period, so never in a reconcile slot.
            finish = self._archive_then_cancel(sr, pod_name, message, now, grace)
            self.off_lane.start(_key(sr), finish)
            return
        await self._end_cancelled(sr, message, now)

    async def _archive_then_cancel(
        self, sr: StepRun, pod_name: str, message: str, now: datetime, grace: int
    ) -> None:
        deadline = time.monotonic() + grace + ARCHIVE_MARGIN_SECONDS
        async with self.off_lane.slot(sr.namespace, grace) as got_a_turn:
            attempt = sr.status.attempt or 1
            if got_a_turn:
                within = deadline - time.monotonic()
                note = await self.artifacts.archive_log(
                    sr, attempt, pod_name, follow=True, give_up_after=within
                )
            else:
                note = (
                    f"log of attempt {attempt} not archived: namespace {sr.namespace} had "
                    f"{self.off_lane.per_namespace} cancelled steps' logs in flight for the "
                    "whole grace period"
                )
        try:
            await self._end_cancelled(sr, message_with(message, note), now)
        except Conflict:
            # Changed during the grace period (labels, annotations): the cancel stands. Any
            # other failure ends this task, and the reconcile that follows cancels again.
            fresh = StepRun.from_body(await self.kube.get("StepRun", sr.namespace, sr.name))
            if fresh.uid == sr.uid and not is_terminal_phase(fresh.status.phase):
                await self._end_cancelled(fresh, message_with(message, note), now)

    async def _end_cancelled(self, sr: StepRun, message: str, now: datetime) -> None:
        await self._cleanup_context(sr)
        doc = statuses.terminal(sr, Phase.CANCELLED, Reason.CANCELLED, message, now)
        await self._write(sr, doc, "Normal", Reason.CANCELLED)

    async def _end_without_pod(self, sr: StepRun, aborted: StepAborted, now: datetime) -> None:
        await self._cleanup_context(sr)
        doc = statuses.terminal(sr, aborted.phase, aborted.reason, aborted.message, now)
        await self._write(sr, doc, "Warning", aborted.reason)

    async def _cleanup_context(
        self, sr: StepRun, own_secret: dict[str, Any] | bool | None = False
    ) -> None:
        """The step's context must not outlive it (API.md: both deleted at a terminal phase).
        The ConfigMap goes too, although the garbage collector would take it with the StepRun:
        a retained StepRun must not keep a copy of its inputs and script beside it. The
        NetworkPolicy stays: it still confines a Pod that may be terminating."""
        name = context_name(sr.name)
        made = self._made.pop(_key(sr), None)
        uids = made[1] if made is not None and made[0] == sr.uid else {}
        if _has_secret(sr):
            await self.tenancy.delete_owned("Secret", sr, name, own_secret, uid=uids.get("Secret"))
        await self.tenancy.delete_owned("ConfigMap", sr, name, uid=uids.get("ConfigMap"))
        # Its quota and place in the queue go with it (not left to the garbage collector, which
        # would keep a retained StepRun's Workload holding quota).
        await self.workloads.delete(sr)

    # ------------------------------------------------------------------ Kueue

    async def _follow_queue(
        self, sr: StepRun, decision: QueueDecision, workload: dict[str, Any] | None, now: datetime
    ) -> None:
        """Carries out what queueing chose for a step queued by Kueue (see reconcile.queueing)."""
        queue = queue_name(sr) or ""
        recorded = sr.status.queue
        cluster_queue = recorded.cluster_queue if recorded else None
        base = QueueStatus(
            name=queue,
            workload=workload_name(sr.name),
            cluster_queue=cluster_queue,
            wait_seconds=recorded.wait_seconds if recorded else None,
            admitted_time=recorded.admitted_time if recorded else None,
        )
        match decision:
            case CreateWorkload():
                try:
                    sandbox = await self._sandbox_decision(sr)
                    pod = render_pod(sr, 1, self.config, sandbox)
                    made = await self.workloads.ensure(
                        sr, harden_pod(pod, sandbox) if sandbox else pod
                    )
                except StepAborted as aborted:
                    await self._end_without_pod(sr, aborted, now)
                    return
                except (RenderError, ValueError, WorkloadProblem) as error:
                    invalid = StepAborted(Phase.FAILED, Reason.INVALID_SPEC, str(error))
                    await self._end_without_pod(sr, invalid, now)
                    return
                await self._mark_queued(sr, base, made, now)
            case MarkQueued():
                await self._mark_queued(sr, base, workload, now)
            case MarkAdmitted(cluster_queue=admitted_by, flavors=flavors):
                since = parse_time(recorded.queued_time) if recorded else None
                waited = max(0.0, (now - since).total_seconds()) if since else 0.0
                cluster_queue = admitted_by or cluster_queue
                queue_status = base.model_copy(
                    update={
                        "cluster_queue": cluster_queue,
                        "admitted_time": format_time(now),
                        "wait_seconds": (base.wait_seconds or 0) + round(waited),
                        "flavors": dict(flavors) or None,
                    }
                )
                placed = ", ".join(f"{r}: {f}" for r, f in sorted(flavors.items()))
                message = (
                    f"admitted by Kueue (ClusterQueue {cluster_queue}"
                    f"{f'; flavors {placed}' if placed else ''}) after {round(waited)}s "
                    f"in LocalQueue {queue}"
                )
                KUEUE_WAIT_SECONDS.labels(queue=queue).observe(waited)
                doc = statuses.queue_admitted(sr, queue_status, message, now)
                await self._write(sr, doc, "Normal", Reason.ADMITTED)
            case Preempt(pod_name=pod_name, message=why):
                await self._preempt(sr, base, pod_name, why, now)
            case Requeue():
                assert workload is not None
                await self.workloads.hand_back(sr, workload, observe_workload(workload), now)

    async def _mark_queued(
        self, sr: StepRun, base: QueueStatus, workload: dict[str, Any] | None, now: datetime
    ) -> None:
        queue_status = base.model_copy(
            update={
                "cluster_queue": base.cluster_queue or await self.workloads.cluster_queue(sr),
                "queued_time": (sr.status.queue and sr.status.queue.queued_time)
                or format_time(now),
            }
        )
        state = observe_workload(workload) if workload is not None else None
        message = queued_message(base.name, queue_status.cluster_queue, state)
        doc = statuses.queued(sr, queue_status, message, now)
        await self._write(sr, doc, "Normal", Reason.QUEUED)

    async def _preempt(
        self, sr: StepRun, base: QueueStatus, pod_name: str, why: str, now: datetime
    ) -> None:
        """Nothing of the evicted attempt may keep running: its Pod is deleted (with the step's
        grace period), its log archived like any attempt's, and the attempt recorded as
        Preempted; the step waits in its queue again."""
        sandbox = SandboxDecision.from_status(sr.status.admitted) if sr.status.admitted else None
        grace = grace_period_seconds(sr, sandbox)
        await self.tenancy.delete_owned("Pod", sr, pod_name, grace_period_seconds=grace)
        attempt = sr.status.attempt or 1
        note = await self.artifacts.archive_log(sr, attempt, pod_name, follow=True)
        outcome = Outcome(Phase.FAILED, Reason.PREEMPTED, message_with(why, note))
        queue_status = base.model_copy(update={"queued_time": format_time(now)})
        waiting = queued_message(base.name, base.cluster_queue, None)
        message = f"attempt {attempt} was {why}; {waiting}"
        pod = self.pods.get(_key(sr), pod_name)
        doc = statuses.preempted(sr, outcome, queue_status, message, now, pod)
        await self._write(sr, doc, "Warning", Reason.PREEMPTED)

    async def _placed_by_kueue(self, sr: StepRun, pod: dict[str, Any]) -> dict[str, Any]:
        """A queued step's Pod goes where Kueue admitted it: the node labels and tolerations
        of the admitted ResourceFlavors."""
        flavors = sr.status.queue.flavors if sr.status.queue else None
        if not queue_name(sr) or not flavors:
            return pod
        return with_admission(pod, await self.workloads.flavors(flavors.values()))

    # ------------------------------------------------------------------ writes

    async def _write(
        self,
        sr: StepRun,
        status: StepRunStatus,
        event_type: str,
        event_reason: str,
    ) -> None:
        body = await self.kube.patch_status(
            "StepRun",
            sr.namespace,
            sr.name,
            statuses.to_patch(status),
            resource_version=sr.metadata.resource_version,
        )
        self.stepruns.observe(body)
        message = status.message or ""
        if is_terminal_body(body):
            self._made.pop(_key(sr), None)
        record_transition(sr.metadata.creation_timestamp, status)
        for_steprun(sr).info(
            "status written",
            attempt=status.attempt,
            phase=str(status.phase),
            reason=status.reason,
            message=message,
        )
        if self.config.posts_event(event_type):
            await self._post(
                render_event(sr, event_type, event_reason, message, utcnow()), _key(sr)
            )

    async def _post(self, event: dict[str, Any], key: Key) -> None:
        try:
            await self.kube.create(event)
        except (Transient, Refused) as error:
            # Events are a courtesy to humans; the status is the record.
            self._log.warning("event not posted", namespace=key[0], name=key[1], error=str(error))

    async def _refresh(self, key: Key) -> None:
        try:
            body = await self.kube.get("StepRun", key[0], key[1])
        except NotFound:
            return
        except Transient as error:
            self.queue.add_rate_limited(key, retry_after=error.retry_after)
            return
        self.stepruns.observe(body)
        self.queue.add(key)


class CreateFailed(Exception):
    """A child of the step could not be created; the attempt fails with this message."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# The children whose uids are remembered for their delete when the step ends.
_CONTEXT_KINDS = frozenset({"ConfigMap", "Secret"})


def _made_key(body: Mapping[str, Any]) -> str:
    """The step's one ConfigMap and Secret by kind; its Pods, one per attempt, by name."""
    kind = str(body["kind"])
    return kind if kind in _CONTEXT_KINDS else f"{kind}/{body['metadata']['name']}"


def _next_attempt(attempt: int | None, pod_name: object) -> int:
    """The attempt a StepRun that is not following a Pod starts next (as decide reads its
    status: nothing recorded, or a retry of the recorded attempt scheduled)."""
    return 1 if attempt is None or not pod_name else attempt + 1


def _may_quote_the_pod(outcome: Outcome) -> bool:
    """Whether the outcome carries text the Pod reported (which may hold a secret value): a
    success says only the operator's words unless it has outputs; any other outcome may quote
    the container's last output or the kubelet."""
    return outcome.phase != Phase.SUCCEEDED or bool(outcome.outputs)


def _has_secret(sr: StepRun) -> bool:
    """Whether the step has its own Secret (secret projections, or the artifact store's keys)."""
    return bool(sr.spec.context.secrets) or needs_artifacts(sr)


def _key(sr: StepRun) -> Key:
    return (sr.namespace, sr.name)


def _owner_uid(body: Mapping[str, Any]) -> str | None:
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == "StepRun" and ref.get("controller"):
            return str(ref.get("uid"))
    return None


def _from_namesake(sr: StepRun, child: Mapping[str, Any]) -> bool:
    """Whether ``child`` was made by an earlier StepRun of the same name (another uid)."""
    for ref in child.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == "StepRun" and ref.get("name") == sr.name:
            return bool(ref.get("uid") != sr.uid)
    return False


__all__ = ["Outcome", "Reconciler"]


async def _all(requests: Sequence[Awaitable[object]]) -> None:
    """Runs independent requests at once. Every one is let finish (none is left half-made by
    a cancel), then the first failure in the order given is raised, as if run in that order."""
    results = await asyncio.gather(*requests, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
