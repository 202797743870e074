"""``steprun describe``: one StepRun for a person, like ``kubectl describe`` (pure).

From the StepRun as served, its Pods and the Events about it: what runs, phase, reason,
message, exit code, every attempt, the outputs, the current Pod's container state and last
state, and the Events, oldest first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from steprun.api.models import Failure, FailureCategory, StepRun
from steprun.cli.output import enum_text, format_age, format_table
from steprun.render.names import LABEL_ATTEMPT
from steprun.timeutil import parse_time_or_none

_NONE = "<none>"
_WIDTH = 16


def _field(label: str, value: object, indent: int = 0) -> str:
    pad = " " * indent
    text = _NONE if value is None or value == "" else str(value)
    return f"{pad}{label + ':':<{_WIDTH}}{text}\n"


def _when(text: str | None, now: datetime) -> str | None:
    moment = parse_time_or_none(text)
    if moment is None:
        return None
    return f"{text} ({format_age((now - moment).total_seconds())} ago)"


def _queue(sr: StepRun, now: datetime) -> list[str]:
    """Where a step queued by Kueue waits (or waited), and for how long."""
    queue = sr.status.queue
    if queue is None:
        return []
    lines = [
        "Queue:\n",
        _field("LocalQueue", queue.name, 2),
        _field("ClusterQueue", queue.cluster_queue, 2),
        _field("Workload", queue.workload, 2),
    ]
    waiting = parse_time_or_none(queue.queued_time)
    if waiting is not None:
        lines.append(_field("Waiting", format_age((now - waiting).total_seconds()), 2))
    lines.append(_field("Waited", f"{queue.wait_seconds or 0}s", 2))
    if queue.flavors:
        flavors = ", ".join(f"{r}={f}" for r, f in sorted(queue.flavors.items()))
        lines.append(_field("Flavors", flavors, 2))
    return lines


def _indented(text: str, indent: int) -> str:
    return "".join(" " * indent + line + "\n" for line in text.splitlines())


def _what_runs(sr: StepRun) -> list[str]:
    spec = sr.spec
    lines = [_field("Mode", enum_text(spec.mode))]
    if spec.sandbox is not None:
        runs = spec.sandbox.uses or f"plugin {spec.sandbox.plugin}"
        lines.append(_field("Sandbox", f"{runs}, policy {spec.sandbox.policy}"))
    if spec.image:
        lines.append(_field("Image", spec.image))
    if spec.script is not None:
        first, *rest = spec.script.splitlines() or [""]
        lines.append(_field("Script", first + (f" (+{len(rest)} lines)" if rest else "")))
    if spec.command or spec.args:
        lines.append(_field("Command", " ".join([*(spec.command or []), *(spec.args or [])])))
    workflow = spec.context.workflow
    if workflow is not None:
        parts = [
            f"{label} {value}"
            for label, value in (
                ("workflow", workflow.name),
                ("run", workflow.run_id),
                ("step", workflow.step_id),
            )
            if value
        ]
        lines.append(_field("Workflow", ", ".join(parts)))
    return lines


def _attempts(sr: StepRun, now: datetime) -> str:
    attempts = sr.status.attempts or []
    if not attempts:
        return "Attempts:       <none>\n"
    rows = [
        [
            str(a.attempt),
            a.pod_name,
            "" if a.exit_code is None else str(a.exit_code),
            a.reason or "",
            _short_time(a.start_time, now),
            _duration(a.start_time, a.completion_time),
            f"{a.failure.category}/{a.failure.stage}" if a.failure else "",
            (a.message or "").splitlines()[0] if a.message else "",
        ]
        for a in attempts
    ]
    table = format_table(
        ("ATTEMPT", "POD", "EXIT", "REASON", "STARTED", "DURATION", "FAILURE", "MESSAGE"), rows
    )
    return "Attempts:\n" + _indented(table, 2)


def _failure(failure: Failure | None) -> str:
    """Whose failure it was and where, in one line, then the Events that explain it."""
    if failure is None:
        return _field("Failure", None)
    parts = [f"{failure.category} at {failure.stage} ({failure.reason})"]
    if failure.container:
        parts.append(f"container {failure.container}")
    if failure.exit_code is not None:
        signal = f" (signal {failure.signal})" if failure.signal else ""
        parts.append(f"exit code {failure.exit_code}{signal}")
    if failure.node:
        parts.append(f"node {failure.node}")
    out = [_field("Failure", ", ".join(parts))]
    for event in failure.events or []:
        message = (event.message or "").replace("\n", " ")
        out.append(f"  {event.type or 'Event'} {event.reason}: {message}\n")
    return "".join(out)


def _retries(sr: StepRun) -> str:
    """The attempt in flight and what each retry budget has spent on the attempts before it."""
    status, retries = sr.status, sr.spec.retries
    attempt = status.attempt or 1
    platform = sum(
        1
        for a in status.attempts
        if a.attempt < attempt and a.failure and a.failure.category == FailureCategory.PLATFORM
    )
    own = attempt - 1 - platform
    return _field(
        "Attempt",
        f"{attempt} of at most {retries.limit + retries.platform_retries + 1} (retries spent: "
        f"{own} of {retries.limit} for the step, {platform} of {retries.platform_retries} "
        "for the platform)",
    )


def _short_time(text: str | None, now: datetime) -> str:
    moment = parse_time_or_none(text)
    return f"{format_age((now - moment).total_seconds())} ago" if moment else ""


def _duration(start: str | None, end: str | None) -> str:
    started, ended = parse_time_or_none(start), parse_time_or_none(end)
    if started is None or ended is None:
        return ""
    return format_age((ended - started).total_seconds())


def container_state(state: Mapping[str, Any] | None) -> str:
    """A container state of a Pod's status, in one line."""
    if not state:
        return _NONE
    if "running" in state:
        return f"Running since {(state['running'] or {}).get('startedAt', '?')}"
    if "waiting" in state:
        waiting = state["waiting"] or {}
        message = f": {waiting['message']}" if waiting.get("message") else ""
        return f"Waiting ({waiting.get('reason', '?')}){message}"
    if "terminated" in state:
        t = state["terminated"] or {}
        parts = [f"Terminated ({t.get('reason', '?')})", f"exit code {t.get('exitCode', '?')}"]
        if t.get("startedAt"):
            parts.append(f"started {t['startedAt']}")
        if t.get("finishedAt"):
            parts.append(f"finished {t['finishedAt']}")
        return ", ".join(parts)
    return _NONE


def _pod(pods: Sequence[Mapping[str, Any]], current: str | None) -> str:
    by_name = {str(p["metadata"]["name"]): p for p in pods}
    pod = by_name.get(current or "")
    if pod is None and pods:
        # The latest attempt's Pod, when the status does not name one.
        pod = max(
            pods, key=lambda p: int((p["metadata"].get("labels") or {}).get(LABEL_ATTEMPT, 0))
        )
    if pod is None:
        return "Pod:            <none>\n"
    status = pod.get("status") or {}
    out = [f"Pod:            {pod['metadata']['name']}\n"]
    out.append(_field("Phase", status.get("phase"), 2))
    if status.get("reason") or status.get("message"):
        out.append(_field("Reason", status.get("reason"), 2))
        out.append(_field("Message", status.get("message"), 2))
    if node := (pod.get("spec") or {}).get("nodeName"):
        out.append(_field("Node", node, 2))
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            out.append(_field("Unschedulable", condition.get("message"), 2))
    for cs in status.get("containerStatuses") or []:
        out.append(f"  Container {cs.get('name')}:\n")
        out.append(_field("State", container_state(cs.get("state")), 4))
        out.append(_field("Last State", container_state(cs.get("lastState")), 4))
        out.append(_field("Restarts", cs.get("restartCount", 0), 4))
        if cs.get("imageID"):
            out.append(_field("Image ID", cs.get("imageID"), 4))
    return "".join(out)


def _events(events: Sequence[Mapping[str, Any]] | str, now: datetime) -> str:
    if isinstance(events, str):
        return f"Events:         {events}\n"
    if not events:
        return "Events:         <none>\n"

    def when(event: Mapping[str, Any]) -> str:
        return str(
            event.get("lastTimestamp")
            or event.get("eventTime")
            or (event.get("metadata") or {}).get("creationTimestamp")
            or ""
        )

    rows = [
        [
            str(event.get("type", "")),
            str(event.get("reason", "")),
            _short_time(when(event), now),
            str(
                (event.get("source") or {}).get("component")
                or event.get("reportingComponent")
                or ""
            ),
            str(event.get("message", "")).replace("\n", " "),
        ]
        for event in sorted(events, key=when)
    ]
    return "Events:\n" + _indented(
        format_table(("TYPE", "REASON", "AGE", "FROM", "MESSAGE"), rows), 2
    )


def describe(
    body: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]] | str,
    now: datetime,
) -> str:
    """The text of ``steprun describe``; ``events`` is a note instead when they are unreadable."""
    sr = StepRun.from_body(dict(body))
    status = sr.status
    labels = ",".join(f"{k}={v}" for k, v in sorted(sr.metadata.labels.items()))
    out = [
        _field("Name", sr.name),
        _field("Namespace", sr.namespace),
        _field("Labels", labels),
        _field("Created", _when(sr.metadata.creation_timestamp, now)),
        *_what_runs(sr),
        _field("Phase", enum_text(status.phase or "Pending")),
        _field("Reason", status.reason),
        _field("Message", status.message),
        _field("Exit Code", status.exit_code),
        _failure(status.failure),
    ]
    if status.attempt is not None:
        out.append(_retries(sr))
    if status.next_attempt_time:
        out.append(_field("Next Attempt", status.next_attempt_time))
    out += _queue(sr, now)
    out += [
        _field("Started", _when(status.start_time, now)),
        _field("Completed", _when(status.completion_time, now)),
        _field("Duration", _duration(status.start_time, status.completion_time) or None),
    ]
    if status.outputs:
        out.append("Outputs:\n")
        for key, value in sorted(status.outputs.items()):
            shown = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
            out.append(f"  {key}: {shown}\n")
    else:
        out.append(_field("Outputs", None))
    out.append(_attempts(sr, now))
    out.append(_pod(pods, status.pod_name))
    out.append(_events(events, now))
    return "".join(out)
