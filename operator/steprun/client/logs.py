"""Reading a step's logs across its attempts: which Pod to read next, and when to stop.

A StepRun has one Pod per attempt (label ``steprun.dev/attempt``). Logs are read attempt by
attempt in order; when following, the reader waits for a Pod that is not running yet, follows
the running one, and moves on to the next attempt when a retry starts, until the StepRun is
finished and no attempt is left. :class:`LogPlanner` makes those decisions from plain
snapshots (the Pods, whether the StepRun is finished); the clients do the I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from steprun.render.names import LABEL_ATTEMPT

PodState = Literal["waiting", "running", "terminated"]


@dataclass(frozen=True)
class LogLine:
    attempt: int
    pod: str
    text: str


@dataclass(frozen=True)
class AttemptStarted:
    """Precedes the first line of each attempt."""

    attempt: int
    pod: str


@dataclass(frozen=True)
class PodWaiting:
    """The next attempt's Pod does not exist yet (``pod`` None) or its container is not running.

    ``reason`` is the kubelet's waiting reason, e.g. ContainerCreating, ErrImagePull,
    Unschedulable; NotCreated when the operator has not created the first Pod yet; Retrying
    while a retry waits out its backoff.
    """

    attempt: int
    pod: str | None
    reason: str
    # The kubelet's or scheduler's words for it, e.g. why an image cannot be pulled.
    message: str = ""


LogEvent = LogLine | AttemptStarted | PodWaiting


@dataclass(frozen=True)
class LogOptions:
    """What part of each attempt's log to read, as the API server's log options.

    ``tail``: only the last N lines; ``since_seconds``: only lines newer than that; with
    ``timestamps`` every line starts with the kubelet's RFC 3339 timestamp.
    """

    tail: int | None = None
    since_seconds: int | None = None
    timestamps: bool = False

    def query(self) -> dict[str, str]:
        """The log request's query parameters (none when nothing is asked)."""
        options: dict[str, str] = {}
        if self.tail is not None:
            options["tailLines"] = str(self.tail)
        if self.since_seconds is not None:
            options["sinceSeconds"] = str(self.since_seconds)
        if self.timestamps:
            options["timestamps"] = "true"
        return options


@dataclass(frozen=True)
class PodView:
    """The little of a Pod that log reading needs."""

    name: str
    attempt: int
    container: str | None
    state: PodState
    reason: str
    message: str = ""


def pod_view(pod: Mapping[str, Any]) -> PodView | None:
    """Reads a Pod (API JSON, camelCase); None for a Pod without a valid attempt label."""
    metadata = pod.get("metadata") or {}
    try:
        attempt = int((metadata.get("labels") or {}).get(LABEL_ATTEMPT, ""))
    except ValueError:
        return None
    containers = (pod.get("spec") or {}).get("containers") or []
    # The step runs in the Pod's first container; naming it keeps the log request valid even
    # if a Pod template ever adds a sidecar.
    container = containers[0].get("name") if containers else None
    status = pod.get("status") or {}
    state, reason, message = _container_state(status, container)
    return PodView(
        name=str(metadata.get("name") or ""),
        attempt=attempt,
        container=container,
        state=state,
        reason=reason,
        message=message,
    )


def _container_state(status: Mapping[str, Any], container: str | None) -> tuple[PodState, str, str]:
    for entry in status.get("containerStatuses") or []:
        if entry.get("name") != container:
            continue
        state = entry.get("state") or {}
        if "running" in state:
            return "running", "Running", ""
        if "terminated" in state:
            ended = state["terminated"] or {}
            return "terminated", str(ended.get("reason") or "Terminated"), ""
        if "waiting" in state:
            waiting = state["waiting"] or {}
            return (
                "waiting",
                str(waiting.get("reason") or "Waiting"),
                str(waiting.get("message") or ""),
            )
    phase = status.get("phase")
    if phase in ("Succeeded", "Failed"):
        return "terminated", str(phase), ""
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            reason = str(condition.get("reason") or "Unschedulable")
            return "waiting", reason, str(condition.get("message") or "")
    return "waiting", "Pending", ""


@dataclass(frozen=True)
class StreamLogs:
    """Read ``pod``'s logs, skipping the ``skip_lines`` already emitted before an interruption."""

    pod: PodView
    follow: bool
    skip_lines: int
    first: bool


@dataclass(frozen=True)
class WaitForPod:
    """Poll again later. ``report`` is True when this waiting state is new (tell the user)."""

    attempt: int
    pod: PodView | None
    reason: str
    report: bool

    @property
    def event(self) -> PodWaiting:
        return PodWaiting(
            self.attempt,
            self.pod.name if self.pod else None,
            self.reason,
            self.pod.message if self.pod else "",
        )


@dataclass(frozen=True)
class LogsDone:
    pass


LogAction = StreamLogs | WaitForPod | LogsDone


class LogPlanner:
    """Decides what to read next. ``attempt`` restricts reading to that one attempt."""

    def __init__(self, *, follow: bool, attempt: int | None = None) -> None:
        self.follow = follow
        self.only = attempt
        self.next_attempt = attempt or 1
        self._done = False
        self._finished = False
        self._lines: dict[int, int] = {}
        self._reported: tuple[int, str | None, str] | None = None

    def plan(self, pods: Sequence[PodView], finished: bool, retrying: bool = False) -> LogAction:
        """The next action, given the StepRun's Pods and whether the StepRun is finished.

        ``retrying``: the StepRun waits out a retry backoff (status.nextAttemptTime is set).
        """
        if self._done:
            return LogsDone()
        self._finished = finished
        keep_waiting = self.follow and not finished
        candidates = sorted(
            (
                pod
                for pod in pods
                if pod.attempt >= self.next_attempt and self.only in (None, pod.attempt)
            ),
            key=lambda pod: pod.attempt,
        )
        for pod in candidates:
            if pod.state != "waiting":
                first = pod.attempt not in self._lines
                skip = self._lines.setdefault(pod.attempt, 0)
                return StreamLogs(pod=pod, follow=self.follow, skip_lines=skip, first=first)
            if keep_waiting:
                return self._wait(pod.attempt, pod, retrying)
            # The container never started and, the step being finished (or this being a
            # snapshot), never will: this attempt has no logs.
            self._finish_attempt(pod.attempt)
            if self._done:
                return LogsDone()
        if keep_waiting:
            return self._wait(self.next_attempt, None, retrying)
        return LogsDone()

    def progress(self, attempt: int, lines: int) -> None:
        """``lines`` lines of ``attempt`` were emitted so far (a re-read skips them)."""
        self._lines[attempt] = lines

    def streamed(self, attempt: int) -> None:
        """The attempt's log stream ended normally: go on with the next attempt."""
        self._finish_attempt(attempt)

    def unavailable(self, attempt: int) -> None:
        """The attempt's logs could not be read (container not started, or Pod gone).

        When following a step that is not finished, the next plan looks again (a started
        container becomes readable, a deleted Pod disappears from the list); otherwise nothing
        will change, and the attempt is skipped.
        """
        if not self.follow or self._finished:
            self._finish_attempt(attempt)

    def _finish_attempt(self, attempt: int) -> None:
        self.next_attempt = max(self.next_attempt, attempt + 1)
        self._lines.setdefault(attempt, 0)
        if self.only is not None:
            self._done = True

    def _wait(self, attempt: int, pod: PodView | None, retrying: bool) -> WaitForPod:
        if pod is not None:
            reason = pod.reason
        elif retrying:
            reason = "Retrying"
        elif attempt > (self.only or 1):
            # The last attempt's container ended and the operator has not yet written whether
            # the step is finished or retried: a moment of silence, not something to report.
            return WaitForPod(attempt=attempt, pod=None, reason="", report=False)
        else:
            reason = "NotCreated"
        key = (attempt, pod.name if pod else None, reason)
        report = key != self._reported
        self._reported = key
        return WaitForPod(attempt=attempt, pod=pod, reason=reason, report=report)


class LineSplitter:
    """Turns a byte stream into text lines; a line split across chunks is joined first."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[str]:
        self._buffer.extend(chunk)
        *complete, rest = bytes(self._buffer).split(b"\n")
        self._buffer = bytearray(rest)
        return [line.decode("utf-8", errors="replace") for line in complete]

    def flush(self) -> list[str]:
        """The last line when the stream did not end with a newline."""
        if not self._buffer:
            return []
        line = self._buffer.decode("utf-8", errors="replace")
        self._buffer.clear()
        return [line]
