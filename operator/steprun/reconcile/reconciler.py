"""Carries out what ``decide`` chose for a StepRun: the only place decisions meet the API.

Every write is idempotent by construction: children have deterministic names and an
AlreadyExists answer for an object we own counts as success; status writes carry the
resourceVersion they were computed from, so a stale decision is refused instead of applied.
The order of writes is chosen so that a crash between any two of them is repaired by the
next reconcile: children first, status last.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from steprun.api.models import (
    Mode,
    QueueStatus,
    SandboxPolicy,
    StepRun,
    StepRunStatus,
    is_terminal_phase,
)
from steprun.client.errors import causes_text, schema_causes
from steprun.config import OperatorConfig
from steprun.kube.client import Conflict, Kube, NotFound, Refused, Transient
from steprun.log import for_steprun, get_logger
from steprun.metrics import (
    KUEUE_WAIT_SECONDS,
    RECONCILE_ERRORS,
    RECONCILE_SECONDS,
    container_started_at,
    record_pod_start,
    record_transition,
)
from steprun.observe.mounts import MOUNT_EVENT_FIELDS
from steprun.observe.pod import step_container_started
from steprun.observe.redact import redact, redact_json
from steprun.observe.workload import observe_workload
from steprun.policy.admission import admit
from steprun.policy.decision import SandboxDecision
from steprun.reconcile import status as statuses
from steprun.reconcile.artifacts import ArtifactProblem, Artifacts
from steprun.reconcile.attempt_objects import AttemptObjects, has_secret
from steprun.reconcile.cancelling import archive_then_cancel
from steprun.reconcile.children import (
    CreateFailed,
    NamesakeLeftover,
    StepAborted,
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
from steprun.reconcile.memory import Memory
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
from steprun.reconcile.rules import (
    Ending,
    admission,
    cancel_message,
    cancelled,
    create_failed,
    create_refused,
    event_of,
    explained,
    invalid_spec,
    may_quote_the_pod,
    message_with,
    needs_failure_events,
    needs_pod_created,
    never_seen_running,
    next_attempt,
    preemption,
    queue_base,
    queue_timed_out,
    reapply_to,
    reconcile_failed,
    rejected,
    seconds_until,
    still_queued,
    workspace_unavailable,
)
from steprun.reconcile.tenancy import Tenancy
from steprun.reconcile.workloads import WorkloadProblem, Workloads
from steprun.reconcile.workspaces import WorkspaceUnavailable, ensure_workspaces
from steprun.render.artifacts import ResolvedInput, needs_artifacts, path_problems
from steprun.render.attempt import plan_attempt
from steprun.render.context import (
    inputs_problem,
)
from steprun.render.events import event_subject, render_event
from steprun.render.names import LABEL_UID, TRACKING_FINALIZER, context_name, workload_name
from steprun.render.names import pod_name as child_pod_name
from steprun.render.owners import is_controlled_by
from steprun.render.pod import (
    RenderError,
    enforces_restricted,
    grace_period_seconds,
)
from steprun.render.workload import queue_name, with_admission
from steprun.timeutil import parse_time, utcnow

# A namesake's leftover child is deleted and the create retried this soon: the garbage
# collector or our own delete usually removes it within a second.
NAMESAKE_RETRY_SECONDS = 1.0


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
        # One record per live StepRun (reconcile/memory.py); retained terminal StepRuns have
        # none, so they cost no memory here.
        self.memory = Memory()
        self._log = get_logger("steprun.reconcile")
        self.artifacts = Artifacts(kube, config)
        # Cancelled steps whose log is followed through their grace period, out of the lanes.
        self.off_lane = OffLane(config.archive_concurrency_per_namespace, self.queue.add)
        self.objects = AttemptObjects(
            kube,
            config,
            tenancy=self.tenancy,
            artifacts=self.artifacts,
            workloads=self.workloads,
            memory=self.memory,
            pods=self.pods,
        )

    # ------------------------------------------------------------------ entry point

    def _lane(self, key: Key) -> str:
        """Steps that still need a Pod created wait for each other, never for the others."""
        starting = needs_pod_created(self.stepruns.get(key), self.pods.all(key))
        return START_LANE if starting else FOLLOW_LANE

    async def reconcile(self, key: Key) -> None:
        body = self.stepruns.get(key)
        if body is None:
            await self._gone(key)
            return
        with RECONCILE_SECONDS.time():
            try:
                await self._reconcile_body(key, body)
                self.queue.forget(key)
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

    def _parse(self, key: Key, body: Mapping[str, Any]) -> StepRun:
        meta = body.get("metadata") or {}
        version = (str(meta.get("uid") or ""), str(meta.get("resourceVersion") or ""))
        record = self.memory.peek(key)
        parsed = record.parsed if record is not None else None
        if parsed is not None and parsed[0] == version and all(version):
            return parsed[1]
        sr = StepRun.from_body(body)
        if is_terminal_phase(sr.status.phase):
            # Nothing of an ended step needs remembering.
            self.memory.forget(key)
        else:
            self.memory(key).parsed = (version, sr) if all(version) else None
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
            await self._give_up(sr, invalid_spec(message))
        except Refused as error:
            # A request the step needs that the API server will never accept (e.g. the status
            # is too large, or the operator is forbidden to read what the step names).
            message = f"the API server refused a request this step needs: {error.message}"
            await self._give_up(sr, reconcile_failed(message))

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
        record = self.memory.peek(_key(sr))
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
            context_checked=record.context_checked if record is not None else None,
            workload=workload,
        )
        match decision:
            case Wait(until=until):
                if until is not None:
                    self.queue.add_after(_key(sr), seconds_until(until, now))
            case StartAttempt(attempt=attempt):
                await self._start_attempt(sr, attempt, now)
            case MarkRunning(start_time=start_time):
                await self._write(sr, statuses.running(sr, start_time, now))
                record_pod_start(pod, parse_time(start_time) or now)
            case RecordPending():
                await self._write(sr, sr.status)
            case FinishAttempt():
                if never_seen_running(sr):
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
                await self._end_without_pod(sr, queue_timed_out(message), now)

    # ------------------------------------------------------------------ failures

    async def _crashed(self, key: Key, body: Mapping[str, Any], error: Exception) -> None:
        """An unexpected error (a bug, or an object the code does not handle): retried with the
        key's backoff, and after ``max_reconcile_failures`` in a row the step ends saying so."""
        # Counted by the queue's backoff: reconciles of the key that failed in a row.
        crashes = self.queue.failures(key) + 1
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
            await self._give_up(sr, reconcile_failed(message))
        except Exception as final:
            self._log.error("cannot end StepRun", namespace=key[0], name=key[1], error=str(final))
        self.queue.discard(key)

    async def _unreadable(self, key: Key, body: Mapping[str, Any], error: Exception) -> None:
        if is_terminal_body(body):
            return
        meta = body.get("metadata") or {}
        if isinstance(error, ValidationError):
            detail = causes_text(schema_causes(error, "")[:5])
        elif isinstance(error, RecursionError):
            detail = "it is nested too deeply"
        else:
            detail = str(error) or type(error).__name__
        message = f"the operator cannot read this StepRun: {detail}"
        self._log.error("unreadable StepRun", namespace=key[0], name=key[1], error=str(error))
        ended = statuses.given_up(meta.get("generation"), invalid_spec(message), utcnow())
        written = await self.kube.patch_status(
            "StepRun",
            key[0],
            key[1],
            statuses.to_patch(ended),
            resource_version=meta.get("resourceVersion"),
        )
        self.stepruns.observe(written)
        record_transition(meta.get("creationTimestamp"), ended)
        event_type, event_reason = event_of(ended)
        if self.config.posts_event(event_type):
            subject = event_subject(written)
            await self._post(
                render_event(subject, event_type, event_reason, message, utcnow()), key
            )

    async def _give_up(self, sr: StepRun, ending: Ending) -> None:
        """End the step with only a small status patch (the full one may be what is refused).
        If even that is refused, nothing more can be done: logged, not retried."""
        site = statuses.attempt_site(sr, None)
        status = statuses.given_up(sr.metadata.generation, ending, utcnow(), site)
        try:
            await self._write(sr, status)
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
        attempt = next_attempt(status.attempt, status.pod_name)
        body = self.pods.get(_key(sr), child_pod_name(sr.name, attempt))
        if (
            body is None
            or not is_controlled_by(body, sr.uid)
            or not self.objects.made_here(sr, body)
        ):
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
            (held if is_controlled_by(body, sr.uid) else orphans).append(name)
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
        self.memory.forget(key)

    async def _start_attempt(self, sr: StepRun, attempt: int, now: datetime) -> None:
        log = for_steprun(sr).bind(attempt=attempt)
        try:
            if problem := inputs_problem(sr):
                raise StepAborted(invalid_spec(problem))
            labels = await self.tenancy.namespace_labels(sr.namespace)
            if refusal := await self.tenancy.refusal(sr, labels):
                raise StepAborted(rejected(refusal))
            sandbox = await self._sandbox_decision(sr, labels)
            plan = plan_attempt(
                sr,
                attempt,
                self.config,
                sandbox,
                restricted=enforces_restricted(labels),
                inputs=(inputs := await self._artifact_inputs(sr)),
                created_at=now,
                avoid_node=node_to_avoid(sr, attempt),
            )
            pod = await self._placed_by_kueue(sr, plan.pod)
            if sandbox is not None and (
                refusal := await self.tenancy.network_refusal(sr, pod["metadata"]["labels"])
            ):
                raise StepAborted(rejected(refusal))
            await self._ensure_workspaces(sr)
            created = await self.objects.create_with_context(
                sr, sandbox, plan, attempt, inputs, now
            )
        except StepAborted as aborted:
            log.info("step cannot run", reason=aborted.ending.reason, message=str(aborted))
            await self._end_without_pod(sr, aborted.ending, now)
            return
        except (RenderError, ValueError) as error:
            await self._end_without_pod(sr, invalid_spec(str(error)), now)
            return
        except CreateFailed as failed:
            # Like a failed attempt: recorded in attempts, and retried while retries allow.
            log.info("pod not created", message=failed.message)
            sr_attempt = statuses.with_attempt(sr, attempt, child_pod_name(sr.name, attempt))
            outcome = create_failed(failed.message)
            self.memory(_key(sr)).blocked_since = None
            await self._finish_attempt(sr_attempt, attempt_failed(sr_attempt, outcome, now), now)
            return
        self.memory(_key(sr)).blocked_since = None
        self.pods.observe(_key(sr), created)
        pod_name = created["metadata"]["name"]
        log.info("pod created", pod=pod_name)
        if sandbox is not None and not sr.status.admitted:
            # The admission decision is frozen with the Pod it admitted: recorded at once.
            doc = statuses.pending(sr, attempt, pod_name, now, sandbox.to_admitted())
            await self._write(sr, doc)
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
            raise StepAborted(rejected(result.message, result.reason))
        return result.decision

    async def _ensure_workspaces(self, sr: StepRun) -> None:
        try:
            await ensure_workspaces(self.kube, sr, self.tenancy.claim_problem)
        except WorkspaceUnavailable as error:
            raise StepAborted(workspace_unavailable(str(error))) from None

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
            raise StepAborted(invalid_spec(str(problem))) from None

    async def _finish_attempt(
        self,
        sr: StepRun,
        decision: FinishAttempt,
        now: datetime,
        *,
        recorded: bool = True,
        pod: Mapping[str, Any] | None = None,
    ) -> None:
        if needs_failure_events(sr, decision.outcome):
            selector = MOUNT_EVENT_FIELDS.format(pod=sr.status.pod_name)
            events = await self.kube.list("Event", sr.namespace, field_selector=selector)
            decision = explained(sr, decision, events, now)
        # Read once, only when what the Pod said reaches the status: its values mask that, and
        # it is then deleted by the uid read. Otherwise by the uid it was created with.
        outcome = decision.outcome
        own_secret: dict[str, Any] | bool | None = False
        if sr.spec.context.secrets and may_quote_the_pod(outcome):
            own_secret = await self.tenancy.own_secret(sr)
            outcome = await self._redacted(sr, outcome, own_secret)
        if decision.delete_pod and sr.status.pod_name:
            await self.tenancy.delete_owned("Pod", sr, sr.status.pod_name, grace_period_seconds=0)
        elif sr.status.pod_name:
            note = await self.artifacts.archive_log(sr, sr.status.attempt or 1, sr.status.pod_name)
            outcome = dataclasses.replace(outcome, message=message_with(outcome.message, note))
        if decision.retry_at is None:
            await self.objects.cleanup_context(sr, own_secret)
        for _ in range(3):
            doc = statuses.attempt_finished(sr, outcome, now, decision.retry_at, pod)
            try:
                await self._write(sr, doc)
                break
            except Conflict:
                # The outcome is known and the Pod may already be gone: re-apply it to the
                # fresh object rather than re-deciding from a world it no longer shows.
                raw = await self.kube.get("StepRun", sr.namespace, sr.name)
                self.stepruns.observe(raw)
                fresh = reapply_to(sr, StepRun.from_body(raw), recorded=recorded, now=now)
                if fresh is None:
                    return
                sr = fresh
        if decision.retry_at is not None:
            self.queue.add_after(_key(sr), seconds_until(decision.retry_at, now))

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

    async def _repair_context(self, sr: StepRun, until: datetime, now: datetime) -> None:
        """Recreate the step's ConfigMap or Secret if someone deleted them before its Pod
        started (the kubelet retries on its own); the startup timeout still bounds the wait.
        Reads only, unless something is missing."""
        name = context_name(sr.name)
        kinds = ["ConfigMap", *(["Secret"] if has_secret(sr) else [])]
        missing = [k for k in kinds if await self.kube.get_or_none(k, sr.namespace, name) is None]
        self.memory(_key(sr)).context_checked = now
        if missing:
            for_steprun(sr).warning(
                "context deleted while the Pod starts; recreating", kinds=missing
            )
            try:
                sandbox = await self._sandbox_decision(sr)
                plan = plan_attempt(sr, sr.status.attempt or 1, self.config, sandbox)
                await self.objects.ensure_context(sr, sandbox, plan)
            except StepAborted as aborted:
                await self._end_without_pod(sr, aborted.ending, now)
                return
            except CreateFailed as failed:
                await self._end_without_pod(sr, create_refused(failed.message), now)
                return
        self.queue.add_after(_key(sr), seconds_until(until, now))

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
            if not is_controlled_by(pod, sr.uid) or pod["metadata"].get("deletionTimestamp"):
                continue
            name = pod["metadata"]["name"]
            await self.kube.delete(
                "Pod", sr.namespace, name, grace_period_seconds=grace, uid=pod["metadata"]["uid"]
            )
            self.pods.observe(_key(sr), pod)
            deleted.append(name)
        message = cancel_message(deleted, pod_name, grace)
        # A container that never started has no log: a request for one is only an error.
        started = any(step_container_started(p) for p in pods if p["metadata"]["name"] == pod_name)
        if pod_name and started and self.artifacts.archives_logs(sr.namespace):
            # Followed until the container ends, so the lines of its grace period are kept too
            # (the tracking finalizer keeps the Pod, and its log, until the status is written);
            # that may take the whole grace period, so never in a reconcile slot.
            end = functools.partial(self._end_cancelled, now=now)
            finish = archive_then_cancel(
                self.off_lane, self.artifacts, self.kube, sr, pod_name, message, grace, end
            )
            self.off_lane.start(_key(sr), finish)
            return
        await self._end_cancelled(sr, message, now=now)

    async def _end_cancelled(self, sr: StepRun, message: str, *, now: datetime) -> None:
        await self.objects.cleanup_context(sr)
        await self._write(sr, statuses.terminal(sr, cancelled(message), now))

    async def _end_without_pod(self, sr: StepRun, ending: Ending, now: datetime) -> None:
        await self.objects.cleanup_context(sr)
        await self._write(sr, statuses.terminal(sr, ending, now))

    # ------------------------------------------------------------------ Kueue

    async def _follow_queue(
        self, sr: StepRun, decision: QueueDecision, workload: dict[str, Any] | None, now: datetime
    ) -> None:
        """Carries out what queueing chose for a step queued by Kueue (see reconcile.queueing)."""
        queue = queue_name(sr) or ""
        base = queue_base(sr, queue, workload_name(sr.name))
        match decision:
            case CreateWorkload():
                try:
                    sandbox = await self._sandbox_decision(sr)
                    pod = plan_attempt(sr, 1, self.config, sandbox).pod
                    made = await self.workloads.ensure(sr, pod)
                except StepAborted as aborted:
                    await self._end_without_pod(sr, aborted.ending, now)
                    return
                except (RenderError, ValueError, WorkloadProblem) as error:
                    await self._end_without_pod(sr, invalid_spec(str(error)), now)
                    return
                await self._mark_queued(sr, base, made, now)
            case MarkQueued():
                await self._mark_queued(sr, base, workload, now)
            case MarkAdmitted(cluster_queue=admitted_by, flavors=flavors):
                admitted = admission(sr, base, admitted_by, flavors, now)
                KUEUE_WAIT_SECONDS.labels(queue=queue).observe(admitted.waited_seconds)
                status = statuses.queue_admitted(sr, admitted.queue, admitted.message, now)
                await self._write(sr, status)
            case Preempt(pod_name=pod_name, message=why):
                await self._preempt(sr, base, pod_name, why, now)
            case Requeue():
                assert workload is not None
                await self.workloads.hand_back(sr, workload, observe_workload(workload), now)

    async def _mark_queued(
        self, sr: StepRun, base: QueueStatus, workload: dict[str, Any] | None, now: datetime
    ) -> None:
        cluster_queue = base.cluster_queue or await self.workloads.cluster_queue(sr)
        queue_status = still_queued(sr, base, cluster_queue, now)
        state = observe_workload(workload) if workload is not None else None
        message = queued_message(base.name, queue_status.cluster_queue, state)
        await self._write(sr, statuses.queued(sr, queue_status, message, now))

    async def _preempt(
        self, sr: StepRun, base: QueueStatus, pod_name: str, why: str, now: datetime
    ) -> None:
        """Nothing of the evicted attempt may keep running: its log is archived like any
        attempt's, its Pod deleted (with the step's grace period), and the attempt recorded as
        Preempted; the step waits in its queue again."""
        note = await self.artifacts.archive_log(sr, sr.status.attempt or 1, pod_name)
        sandbox = SandboxDecision.from_status(sr.status.admitted) if sr.status.admitted else None
        grace = grace_period_seconds(sr, sandbox)
        pod = self.pods.get(_key(sr), pod_name)
        await self.tenancy.delete_owned("Pod", sr, pod_name, grace_period_seconds=grace)
        ended = preemption(sr, base, why, note, now)
        doc = statuses.preempted(sr, ended.outcome, ended.queue, ended.message, now, pod)
        await self._write(sr, doc)

    async def _placed_by_kueue(self, sr: StepRun, pod: dict[str, Any]) -> dict[str, Any]:
        """A queued step's Pod goes where Kueue admitted it: the node labels and tolerations
        of the admitted ResourceFlavors."""
        flavors = sr.status.queue.flavors if sr.status.queue else None
        if not queue_name(sr) or not flavors:
            return pod
        return with_admission(pod, await self.workloads.flavors(flavors.values()))

    # ------------------------------------------------------------------ writes

    async def _write(self, sr: StepRun, status: StepRunStatus) -> None:
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
            self.memory.forget(_key(sr))
        record_transition(sr.metadata.creation_timestamp, status)
        for_steprun(sr).info(
            "status written",
            attempt=status.attempt,
            phase=str(status.phase),
            reason=status.reason,
            message=message,
        )
        event_type, event_reason = event_of(status)
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


def _key(sr: StepRun) -> Key:
    return (sr.namespace, sr.name)


__all__ = ["Outcome", "Reconciler"]
