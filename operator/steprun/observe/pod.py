"""What a step's Pod says happened: a pure reading of the Pod as the API server returns it.

The reading favours the most specific signal: a Pod-level reason set by the control plane
(deadline, eviction) explains a failure better than the exit code of a container that was
killed because of it; the container's own state explains the rest.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from steprun.api.models import MAX_OUTPUT_BYTES, MAX_OUTPUT_DEPTH, Reason
from steprun.artifacts.names import INIT_CONTAINER, UPLOAD_CONTAINER
from steprun.observe.redact import redact as redact_text

PodState = Literal["pending", "running", "succeeded", "failed"]

STEP_CONTAINER = "step"
MESSAGE_TAIL_CHARS = 1024

# Kubelet reasons for a container that cannot start; waiting on them does not resolve by itself.
IMAGE_PULL_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "ImageInspectError",
        "RegistryUnavailable",
        "SignatureValidationFailed",
    }
)
STARTUP_FAILURE_REASONS = IMAGE_PULL_REASONS | frozenset(
    {"CreateContainerConfigError", "CreateContainerError", "RunContainerError", "PreStartHookError"}
)
# Pod-level reasons of a Pod the cluster took away (eviction, preemption, node shutdown): the
# step itself did not fail, so the attempt is worth retrying.
DISRUPTION_REASONS = frozenset({"Evicted", "Preempting", "Terminated", "Shutdown", "NodeShutdown"})
UNSCHEDULABLE = "Unschedulable"
# 128 + 9: killed by SIGKILL, which the kernel's OOM killer and the kubelet send.
SIGKILL_EXIT_CODE = 137
OOM_KILLED = "OOMKilled"


@dataclass(frozen=True, kw_only=True)
class StepReport:
    """What the step's container reported of its run: read from the Pod, then carried into
    the attempt's outcome and its status. Keyword-only, so that each class built on it keeps
    its own fields first and positional."""

    exit_code: int | None = None
    outputs: dict[str, Any] | None = None
    start_time: str | None = None
    completion_time: str | None = None


@dataclass(frozen=True)
class PodObservation(StepReport):
    state: PodState
    reason: str
    message: str
    output_error: str | None = None
    stuck_reason: str | None = None
    stuck_message: str | None = None
    # What the artifact uploader reported: [{name, size, sha256}], and why it failed, if it did.
    artifacts: tuple[dict[str, Any], ...] = ()
    artifact_error: str | None = None


# DisruptionTarget reasons set by the control plane when it removes a Pod.
_NODE_GONE_REASONS = frozenset({"DeletionByPodGC", "DeletionByTaintManager"})


def removal(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    """Why the control plane is taking this Pod away (node lost, eviction, preemption), if it is."""
    condition = _condition(_mapping(pod.get("status")), "DisruptionTarget")
    if condition.get("status") != "True":
        return None
    cause = str(condition.get("reason") or "")
    detail = str(condition.get("message") or cause)
    if cause in _NODE_GONE_REASONS:
        node = _mapping(pod.get("spec")).get("nodeName") or "its node"
        return Reason.NODE_LOST, f"the Pod was removed because {node} is gone: {detail}"
    return Reason.POD_EVICTED, f"the Pod was evicted: {detail}"


def is_terminal(obs: PodObservation) -> bool:
    return obs.state in ("succeeded", "failed")


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _step_entry(items: Any) -> Mapping[str, Any]:
    """The step container's entry in a list of containers or container statuses."""
    if not isinstance(items, list) or not items:
        return {}
    for item in items:
        if _mapping(item).get("name") == STEP_CONTAINER:
            return _mapping(item)
    return _mapping(items[0])


def step_container_started(pod: Mapping[str, Any]) -> bool:
    """Whether the step's container ever started, so the kubelet has a log of it: one still
    waiting (ContainerCreating, an image pull) answers a log request with an error, not lines."""
    status = _step_entry(_mapping(pod.get("status")).get("containerStatuses"))
    states = (_mapping(status.get("state")), _mapping(status.get("lastState")))
    return any(state.get("running") or state.get("terminated") for state in states)


def _step_spec(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    return _step_entry(_mapping(pod.get("spec")).get("containers"))


# The kubelet reports this start time for a container that never started (e.g. StartError).
_ZERO_TIME = "1970-01-01T00:00:00Z"


def _time(value: Any) -> str | None:
    return value if isinstance(value, str) and value and value != _ZERO_TIME else None


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    for condition in status.get("conditions") or []:
        if _mapping(condition).get("type") == kind:
            return _mapping(condition)
    return {}


_JSON_KINDS = {list: "an array", str: "a string", bool: "a boolean", int: "a number"}


def parse_outputs(text: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """The step's outputs from its termination message, or why there are none.

    An empty message means the step wrote no outputs, which is not an error.
    """
    if text is None or not text.strip():
        return None, None
    size = len(text.encode())
    if size > MAX_OUTPUT_BYTES:
        return None, f"output exceeds 4 KiB ({size} bytes)"
    if _nesting(text) > MAX_OUTPUT_DEPTH:
        return None, f"output is nested more than {MAX_OUTPUT_DEPTH} levels deep"
    try:
        value = json.loads(text)
    except ValueError:
        if size >= MAX_OUTPUT_BYTES:
            # The kubelet cuts termination messages at 4 KiB, which breaks larger JSON.
            return None, "output exceeds 4 KiB (cut off at 4096 bytes)"
        return None, "output is not a JSON object: it is not valid JSON"
    if not isinstance(value, dict):
        kind = "null" if value is None else _JSON_KINDS.get(type(value), "a number")
        return None, f"output is not a JSON object: it is {kind}"
    return value, None


def _nesting(text: str) -> int:
    """How deeply JSON text nests (brackets outside strings), measured without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _tail(text: str) -> str:
    text = text.strip()
    if len(text) <= MESSAGE_TAIL_CHARS:
        return text
    return "…" + text[-MESSAGE_TAIL_CHARS:]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _terminal(
    pod: Mapping[str, Any],
    status: Mapping[str, Any],
    terminated: Mapping[str, Any],
    pod_failed: bool,
    redact: Iterable[str],
) -> PodObservation:
    """A Pod whose step is over, successfully or not."""
    exit_code = _int(terminated.get("exitCode"))
    start_time = _time(terminated.get("startedAt")) or _time(status.get("startTime"))
    completion_time = _time(terminated.get("finishedAt"))
    raw_message = terminated.get("message")
    raw_message = raw_message if isinstance(raw_message, str) else None
    outputs, output_error = parse_outputs(raw_message)

    uploads, upload_error = _upload_report(status)
    if not pod_failed:
        return PodObservation(
            artifacts=uploads,
            state="succeeded",
            reason=Reason.COMPLETED,
            message="the step completed",
            exit_code=0,
            outputs=outputs,
            output_error=output_error,
            start_time=start_time,
            completion_time=completion_time,
        )

    # A failing step's message is usually its log tail, not outputs, so it is shown as text and
    # not reported as malformed output.
    detail = (
        "" if outputs is not None or not raw_message else _tail(redact_text(raw_message, redact))
    )
    reason, message = _failure(pod, status, terminated, exit_code, upload_error)
    if detail:
        message = f"{message}; last output:\n{detail}"
    return PodObservation(
        artifacts=uploads,
        artifact_error=upload_error,
        state="failed",
        reason=reason,
        message=message,
        exit_code=exit_code,
        outputs=outputs,
        start_time=start_time,
        completion_time=completion_time,
    )


def _failure(
    pod: Mapping[str, Any],
    status: Mapping[str, Any],
    terminated: Mapping[str, Any],
    exit_code: int | None,
    upload_error: str | None = None,
) -> tuple[str, str]:
    pod_reason = status.get("reason") or ""
    pod_message = status.get("message") or ""
    disruption = _condition(status, "DisruptionTarget")

    if pod_reason == Reason.DEADLINE_EXCEEDED:
        deadline = _int(_mapping(pod.get("spec")).get("activeDeadlineSeconds"))
        limit = f" of {deadline}s" if deadline is not None else ""
        return (
            Reason.DEADLINE_EXCEEDED,
            f"the step did not finish within its timeout{limit} and was stopped; raise "
            "spec.timeoutSeconds if it needs longer",
        )
    if disruption.get("reason") in _NODE_GONE_REASONS:
        return removal(pod) or (Reason.NODE_LOST, "the Pod's node is gone")
    if pod_reason in DISRUPTION_REASONS or disruption.get("status") == "True":
        why = pod_message or disruption.get("message") or pod_reason or disruption.get("reason")
        return Reason.POD_EVICTED, f"the Pod was evicted: {why}"
    if pod_reason == Reason.NODE_LOST:
        return Reason.NODE_LOST, f"the Pod's node was lost: {pod_message or pod_reason}"
    download_error = _download_failure(status)
    if download_error is not None:
        return Reason.ARTIFACT_DOWNLOAD_FAILED, download_error
    if upload_error is not None and exit_code == 0:
        return Reason.ARTIFACT_UPLOAD_FAILED, upload_error
    limits = _mapping(_mapping(_step_spec(pod).get("resources")).get("limits"))
    memory = limits.get("memory")
    if _out_of_memory(status, terminated):
        limit = f" of {memory}" if memory is not None else ""
        return (
            Reason.OOM_KILLED,
            f"the step ran out of memory and was killed (exit code {exit_code}); raise "
            f"resources.limits.memory above its limit{limit}",
        )
    if exit_code == SIGKILL_EXIT_CODE:
        limit = (
            f"its memory limit is {memory}, " if memory is not None else "it has no memory limit, "
        )
        return (
            Reason.KILLED,
            f"the step was killed by signal 9 (SIGKILL, exit code {exit_code}); {limit}and "
            "the kubelet did not report it out of memory: the node, or a process in the "
            "step, killed it",
        )
    if exit_code is not None:
        kind = terminated.get("reason")
        detail = f" ({kind})" if kind and kind not in ("Error", "Completed") else ""
        also = f"; {upload_error}" if upload_error else ""
        return Reason.ERROR, f"the step exited with code {exit_code}{detail}{also}"
    # No container ever ran: the kubelet refused the Pod (e.g. OutOfcpu, NodeAffinity).
    init_failure = _init_failure(status)
    if init_failure:
        return Reason.ERROR, init_failure
    return (
        pod_reason or Reason.ERROR,
        f"the Pod failed: {pod_message or pod_reason or 'no reason given'}",
    )


def _out_of_memory(status: Mapping[str, Any], terminated: Mapping[str, Any]) -> bool:
    """Whether the step's container reached its memory limit: the runtime says so on the
    container's end (for any process of the container the kernel killed, a child included),
    or on its last state."""
    if terminated.get("reason") == OOM_KILLED:
        return True
    step = _step_entry(status.get("containerStatuses"))
    last = _mapping(_mapping(step.get("lastState")).get("terminated"))
    return last.get("reason") == OOM_KILLED


def _init_failure(status: Mapping[str, Any]) -> str:
    for init in status.get("initContainerStatuses") or []:
        terminated = _mapping(_mapping(_mapping(init).get("state")).get("terminated"))
        code = _int(terminated.get("exitCode"))
        if code:
            return f'init container "{_mapping(init).get("name")}" exited with code {code}'
    return ""


def _named_status(status: Mapping[str, Any], key: str, name: str) -> Mapping[str, Any]:
    for entry in status.get(key) or []:
        if _mapping(entry).get("name") == name:
            return _mapping(entry)
    return {}


def _download_failure(status: Mapping[str, Any]) -> str | None:
    """The artifact init container's own account of a failed download, if it failed."""
    init = _named_status(status, "initContainerStatuses", INIT_CONTAINER)
    terminated = _mapping(_mapping(init.get("state")).get("terminated"))
    code = _int(terminated.get("exitCode"))
    if not code:
        return None
    message = terminated.get("message")
    text = message.strip() if isinstance(message, str) and message.strip() else ""
    prefix = f"{Reason.ARTIFACT_DOWNLOAD_FAILED}: "
    if text.startswith(prefix):
        text = text[len(prefix) :]
    return _tail(text) or f"the artifact download exited with code {code}"


def _upload_report(status: Mapping[str, Any]) -> tuple[tuple[dict[str, Any], ...], str | None]:
    """What the uploader says it uploaded, and its error (None when it did not fail)."""
    uploader = _named_status(status, "containerStatuses", UPLOAD_CONTAINER)
    if not uploader:
        return (), None
    terminated = _mapping(_mapping(uploader.get("state")).get("terminated"))
    code = _int(terminated.get("exitCode"))
    raw = terminated.get("message")
    try:
        report = json.loads(raw) if isinstance(raw, str) and raw.strip() else {}
    except ValueError:
        report = {}
    report = _mapping(report)
    uploads = tuple(
        {"name": str(a["name"]), "size": int(a["size"]), "sha256": str(a["sha256"])}
        for a in report.get("artifacts") or []
        if isinstance(a, Mapping) and {"name", "size", "sha256"} <= a.keys()
    )
    error = report.get("error")
    if isinstance(error, str) and error:
        prefix = f"{Reason.ARTIFACT_UPLOAD_FAILED}: "
        return uploads, error[len(prefix) :] if error.startswith(prefix) else error
    if code:
        return uploads, f"the artifact upload exited with code {code}"
    if report.get("lost"):
        return uploads, (
            "outputs not uploaded: the step's container was killed before it packed them"
        )
    return uploads, None


def _uploading(pod: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """The uploader exists and has not ended: the step's outcome is not known yet."""
    names = {_mapping(c).get("name") for c in _mapping(pod.get("spec")).get("containers") or []}
    if UPLOAD_CONTAINER not in names:
        return False
    uploader = _named_status(status, "containerStatuses", UPLOAD_CONTAINER)
    return not _mapping(uploader.get("state")).get("terminated")


def _stuck(reason: str, message: str, stuck_reason: str, stuck_message: str) -> PodObservation:
    """A Pod that cannot start as it is; ``stuck_*`` are the kubelet's or the scheduler's
    words, which a startup timeout reports."""
    return PodObservation(
        state="pending",
        reason=reason,
        message=message,
        stuck_reason=stuck_reason,
        stuck_message=stuck_message,
    )


def _pending(
    pod: Mapping[str, Any], status: Mapping[str, Any], container: Mapping[str, Any]
) -> PodObservation:
    # Init containers run first, so one stuck there is why the step's container waits.
    candidates = [_mapping(s) for s in status.get("initContainerStatuses") or []]
    candidates.append(container)
    for candidate in candidates:
        waiting = _mapping(_mapping(candidate.get("state")).get("waiting"))
        kubelet_reason = waiting.get("reason")
        if kubelet_reason in STARTUP_FAILURE_REASONS:
            kubelet_message = waiting.get("message") or kubelet_reason
            reason = kubelet_reason
            message = f"the step's container cannot be created: {kubelet_message}"
            if kubelet_reason in IMAGE_PULL_REASONS:
                image = candidate.get("image") or _step_spec(pod).get("image")
                reason = Reason.IMAGE_PULL_FAILED
                message = (
                    f'cannot pull image "{image}" ({kubelet_reason}): {kubelet_message}; '
                    "check the image name and the registry credentials"
                )
            return _stuck(reason, message, kubelet_reason, kubelet_message)

    scheduled = _condition(status, "PodScheduled")
    if scheduled.get("status") == "False":
        scheduler_reason = scheduled.get("reason") or "Unscheduled"
        scheduler_message = scheduled.get("message") or scheduler_reason
        if scheduler_reason == UNSCHEDULABLE:
            reason, check = UNSCHEDULABLE, "the step's resources, nodeSelector and tolerations"
            if _is_about_claims(scheduler_message):
                reason = Reason.WORKSPACE_UNAVAILABLE
                check = "the claims of spec.workspaces and their StorageClass"
            message = f"the Pod cannot be scheduled: {scheduler_message}; check {check}"
            return _stuck(reason, message, UNSCHEDULABLE, scheduler_message)
        # E.g. SchedulingGated: held back on purpose by another controller, not stuck.
        return PodObservation(
            state="pending",
            reason=scheduler_reason,
            message=f"the Pod is not scheduled yet: {scheduler_message}",
        )

    waiting = _mapping(_mapping(container.get("state")).get("waiting"))
    if waiting.get("reason"):
        return PodObservation(
            state="pending",
            reason=waiting["reason"],
            message=f"the step's container is starting ({waiting['reason']})",
        )
    if scheduled.get("status") == "True" or _mapping(pod.get("spec")).get("nodeName"):
        return PodObservation(
            state="pending",
            reason="ContainerCreating",
            message="the Pod is scheduled; its container is starting",
        )
    return PodObservation(
        state="pending", reason="Pending", message="waiting for the Pod to be scheduled"
    )


def _is_about_claims(scheduler_message: str) -> bool:
    # The scheduler's volume plugins name the claim ("persistentvolumeclaim "x" not found",
    # "unbound immediate PersistentVolumeClaims", "didn't find available persistent volumes").
    text = scheduler_message.lower()
    return "persistentvolumeclaim" in text or "persistent volume" in text


def observe_pod(pod: Mapping[str, Any], *, redact: Iterable[str] = ()) -> PodObservation:
    """Reads a step's Pod.

    ``redact``: secret values to mask in messages taken from the container (its log tail may
    print them). A Pod being deleted that has not finished is reported as pending or running:
    its container was most likely killed by the deletion, and the caller knows why it deleted
    it. A step that exited 0 before the deletion still counts as succeeded.
    """
    status = _mapping(pod.get("status"))
    phase = status.get("phase") or "Pending"
    container = _step_entry(status.get("containerStatuses"))
    state = _mapping(container.get("state"))
    terminated = _mapping(state.get("terminated"))
    redact = tuple(redact)

    if phase == "Succeeded":
        return _terminal(pod, status, terminated, pod_failed=False, redact=redact)
    if phase == "Failed":
        return _terminal(pod, status, terminated, pod_failed=True, redact=redact)

    # The kubelet records the container's end before the Pod phase catches up. The uploader of
    # the step's outputs may still be at work: until it ends, the step is not over.
    if terminated and _uploading(pod, status):
        return PodObservation(
            state="running",
            reason=Reason.STARTED,
            message="the step's command ended; uploading its outputs",
            start_time=_time(terminated.get("startedAt")) or _time(status.get("startTime")),
        )
    if terminated:
        succeeded = (
            terminated.get("exitCode") == 0
            and terminated.get("reason") != OOM_KILLED
            and _upload_report(status)[1] is None
        )
        if succeeded or not _mapping(pod.get("metadata")).get("deletionTimestamp"):
            return _terminal(pod, status, terminated, pod_failed=not succeeded, redact=redact)

    running = _mapping(state.get("running"))
    started_at = _time(running.get("startedAt")) or _time(terminated.get("startedAt"))
    if phase == "Unknown":
        node = _mapping(pod.get("spec")).get("nodeName") or "its node"
        return PodObservation(
            state="running" if started_at else "pending",
            reason=Reason.NODE_LOST,
            message=f"lost contact with {node}; the Pod's state is unknown",
            start_time=started_at,
        )
    # With helper containers beside it, a running Pod does not mean a started step.
    step_waiting = bool(_mapping(state.get("waiting"))) and not started_at
    if (phase == "Running" and not step_waiting) or started_at:
        return PodObservation(
            state="running",
            reason=Reason.STARTED,
            message="the step is running",
            start_time=started_at or _time(status.get("startTime")),
        )
    return _pending(pod, status, container)
