from __future__ import annotations

import json
from typing import Any

import pytest

from steprun.observe.pod import (
    PodObservation,
    is_terminal,
    observe_pod,
    parse_outputs,
    step_container_started,
)
from tests.unit.factories import (
    CREATED,
    FINISHED,
    STARTED,
    container_status,
    disrupted,
    pod,
    running,
    terminated,
    unschedulable,
    waiting,
)

OUTPUT = json.dumps({"digest": "sha256:abc", "count": 3})
LOG = "\n".join(f"line {i}: checking" for i in range(200)) + "\nFATAL: lint failed"

CASES = [
    pytest.param(
        pod("Succeeded", terminated(0, message=OUTPUT)),
        {
            "state": "succeeded",
            "reason": "Completed",
            "exit_code": 0,
            "outputs": {"digest": "sha256:abc", "count": 3},
            "output_error": None,
            "start_time": STARTED,
            "completion_time": FINISHED,
        },
        [],
        id="succeeded-with-outputs",
    ),
    pytest.param(
        pod("Succeeded", terminated(0)),
        {"state": "succeeded", "exit_code": 0, "outputs": None, "output_error": None},
        [],
        id="succeeded-without-outputs",
    ),
    pytest.param(
        pod("Succeeded", terminated(0, message='["a", "b"]')),
        {
            "state": "succeeded",
            "outputs": None,
            "output_error": "output is not a JSON object: it is an array",
        },
        [],
        id="succeeded-output-array",
    ),
    pytest.param(
        pod("Succeeded", terminated(0, message="done, all good\n")),
        {
            "state": "succeeded",
            "outputs": None,
            "output_error": "output is not a JSON object: it is not valid JSON",
        },
        [],
        id="succeeded-output-text",
    ),
    pytest.param(
        pod("Succeeded", terminated(0, message='{"blob": "' + "x" * 5000 + '"}')),
        {
            "state": "succeeded",
            "outputs": None,
            "output_error": "output exceeds 4 KiB (5012 bytes)",
        },
        [],
        id="succeeded-output-too-large",
    ),
    pytest.param(
        pod("Succeeded", terminated(0, message='{"blob": "' + "x" * 4086)),
        {
            "state": "succeeded",
            "outputs": None,
            "output_error": "output exceeds 4 KiB (cut off at 4096 bytes)",
        },
        [],
        id="succeeded-output-cut-by-kubelet",
    ),
    pytest.param(
        pod("Succeeded"),
        {"state": "succeeded", "exit_code": 0, "start_time": CREATED, "completion_time": None},
        [],
        id="succeeded-without-container-status",
    ),
    pytest.param(
        pod("Failed", terminated(2, message="src/a.js: 3 problems\n")),
        {
            "state": "failed",
            "reason": "Error",
            "exit_code": 2,
            "outputs": None,
            "output_error": None,
        },
        ["exited with code 2", "src/a.js: 3 problems"],
        id="failed-exit-code-with-log-tail",
    ),
    pytest.param(
        pod("Failed", terminated(1, message=LOG)),
        {"state": "failed", "reason": "Error", "exit_code": 1},
        ["exited with code 1", "FATAL: lint failed", "…"],
        id="failed-long-log-keeps-the-end",
    ),
    pytest.param(
        pod("Failed", terminated(3, message='{"failed": ["a.js"]}')),
        {"state": "failed", "reason": "Error", "exit_code": 3, "outputs": {"failed": ["a.js"]}},
        ["exited with code 3"],
        id="failed-with-outputs",
    ),
    pytest.param(
        pod(
            "Failed",
            terminated(
                128,
                reason="StartError",
                message='exec: "lint": executable file not found in $PATH',
            ),
        ),
        {"state": "failed", "reason": "Error", "exit_code": 128},
        ["code 128 (StartError)", "executable file not found"],
        id="failed-start-error",
    ),
    pytest.param(
        pod("Failed", terminated(137, reason="OOMKilled")),
        {"state": "failed", "reason": "OOMKilled", "exit_code": 137},
        ["out of memory", "resources.limits.memory", "256Mi"],
        id="failed-oom-killed",
    ),
    pytest.param(
        pod("Failed", terminated(137, reason="OOMKilled"), memory_limit=None),
        {"state": "failed", "reason": "OOMKilled"},
        ["out of memory"],
        id="failed-oom-killed-without-limit",
    ),
    pytest.param(
        # cgroup v1, or a kernel that kills one process: the step's shell outlives its child,
        # and the runtime still reports the container's out-of-memory kill.
        pod("Failed", terminated(1, reason="OOMKilled"), memory_limit="64Mi"),
        {"state": "failed", "reason": "OOMKilled", "exit_code": 1},
        ["out of memory", "limit of 64Mi"],
        id="failed-oom-killed-child-process",
    ),
    pytest.param(
        pod("Failed", terminated(137)),
        {"state": "failed", "reason": "Killed", "exit_code": 137},
        ["signal 9 (SIGKILL, exit code 137)", "memory limit is 256Mi", "did not report"],
        id="failed-sigkill-without-oom-evidence",
    ),
    pytest.param(
        pod("Failed", terminated(137), memory_limit=None),
        {"state": "failed", "reason": "Killed", "exit_code": 137},
        ["SIGKILL", "no memory limit"],
        id="failed-sigkill-without-a-limit",
    ),
    pytest.param(
        pod("Failed", terminated(139)),
        {"state": "failed", "reason": "Error", "exit_code": 139},
        ["exited with code 139"],
        id="failed-other-signal-is-the-steps-error",
    ),
    pytest.param(
        pod(
            "Failed",
            terminated(137, message="still linting..."),
            reason="DeadlineExceeded",
            message="Pod was active on the node longer than the specified deadline",
        ),
        {"state": "failed", "reason": "DeadlineExceeded", "exit_code": 137},
        ["timeout of 600s", "spec.timeoutSeconds", "still linting..."],
        id="failed-deadline-exceeded",
    ),
    pytest.param(
        pod(
            "Failed",
            waiting("ImagePullBackOff", "Back-off pulling image"),
            reason="DeadlineExceeded",
            message="Pod was active on the node longer than the specified deadline",
        ),
        {
            "state": "failed",
            "reason": "DeadlineExceeded",
            "exit_code": None,
            "completion_time": None,
        },
        ["timeout of 600s"],
        id="failed-deadline-before-start",
    ),
    pytest.param(
        pod(
            "Failed",
            terminated(137),
            reason="Evicted",
            message="The node was low on resource: memory. Threshold quantity: 100Mi.",
        ),
        {"state": "failed", "reason": "Evicted"},
        ["evicted", "low on resource: memory"],
        id="failed-evicted",
    ),
    pytest.param(
        disrupted(),
        {"state": "failed", "reason": "Evicted", "exit_code": 137},
        ["preempted by ci/high-priority-job"],
        id="failed-disruption-target",
    ),
    pytest.param(
        pod(
            "Failed",
            terminated(143),
            reason="Terminated",
            message="Pod was terminated in response to imminent node shutdown.",
        ),
        {"state": "failed", "reason": "Evicted"},
        ["node shutdown"],
        id="failed-node-shutdown",
    ),
    pytest.param(
        pod(
            "Failed",
            reason="NodeLost",
            message="Node kind-worker which was running pod is unresponsive",
        ),
        {"state": "failed", "reason": "NodeLost"},
        ["unresponsive"],
        id="failed-node-lost",
    ),
    pytest.param(
        pod("Failed", reason="OutOfcpu", message="Node didn't have enough resource: cpu"),
        {"state": "failed", "reason": "OutOfcpu", "exit_code": None},
        ["enough resource: cpu"],
        id="failed-kubelet-admission",
    ),
    pytest.param(
        pod(
            "Failed",
            waiting("PodInitializing"),
            init_statuses=[container_status(terminated(1), name="prepare")],
        ),
        {"state": "failed", "reason": "Error", "exit_code": None},
        ['init container "prepare" exited with code 1'],
        id="failed-init-container",
    ),
    pytest.param(
        pod("Running", {"running": {"startedAt": STARTED}}),
        {"state": "running", "reason": "Started", "start_time": STARTED, "stuck_reason": None},
        [],
        id="running",
    ),
    pytest.param(
        pod("Running", terminated(0, message=OUTPUT)),
        {"state": "succeeded", "exit_code": 0, "outputs": {"digest": "sha256:abc", "count": 3}},
        [],
        id="kubelet-lag-succeeded",
    ),
    pytest.param(
        pod("Running", terminated(4, message="boom")),
        {"state": "failed", "reason": "Error", "exit_code": 4, "completion_time": FINISHED},
        ["exited with code 4", "boom"],
        id="kubelet-lag-failed",
    ),
    pytest.param(
        pod("Running", terminated(137, reason="OOMKilled")),
        {"state": "failed", "reason": "OOMKilled"},
        [],
        id="kubelet-lag-oom",
    ),
    pytest.param(
        pod("Running", terminated(143), deleting=True),
        {"state": "running", "exit_code": None, "start_time": STARTED},
        [],
        id="deleting-killed-is-not-terminal",
    ),
    pytest.param(
        pod("Running", {"running": {"startedAt": STARTED}}, deleting=True),
        {"state": "running"},
        [],
        id="deleting-running",
    ),
    pytest.param(
        pod("Running", terminated(0), deleting=True),
        {"state": "succeeded", "exit_code": 0},
        [],
        id="deleting-after-success",
    ),
    pytest.param(
        pod("Pending", waiting("ContainerCreating"), deleting=True),
        {"state": "pending", "stuck_reason": None},
        [],
        id="deleting-pending",
    ),
    pytest.param(
        pod(
            "Pending",
            waiting(
                "ErrImagePull",
                'failed to pull and unpack image "docker.io/library/busybox:nope": not found',
            ),
        ),
        {"state": "pending", "reason": "ImagePullFailed", "stuck_reason": "ErrImagePull"},
        ['"busybox:1.36"', "not found", "registry credentials"],
        id="pending-err-image-pull",
    ),
    pytest.param(
        pod("Pending", waiting("ImagePullBackOff", 'Back-off pulling image "busybox:1.36"')),
        {
            "state": "pending",
            "reason": "ImagePullFailed",
            "stuck_reason": "ImagePullBackOff",
            "stuck_message": 'Back-off pulling image "busybox:1.36"',
            "start_time": None,
        },
        [],
        id="pending-image-pull-backoff",
    ),
    pytest.param(
        pod("Pending", waiting("InvalidImageName", 'couldn\'t parse image name "Busy Box"')),
        {"state": "pending", "reason": "ImagePullFailed", "stuck_reason": "InvalidImageName"},
        ["couldn't parse image name"],
        id="pending-invalid-image-name",
    ),
    pytest.param(
        pod("Pending", waiting("ErrImageNeverPull")),
        {"state": "pending", "reason": "ImagePullFailed", "stuck_reason": "ErrImageNeverPull"},
        [],
        id="pending-never-pull",
    ),
    pytest.param(
        pod(
            "Pending",
            waiting("CreateContainerConfigError", 'secret "build-42-lint-context" not found'),
        ),
        {
            "state": "pending",
            "reason": "CreateContainerConfigError",
            "stuck_reason": "CreateContainerConfigError",
            "stuck_message": 'secret "build-42-lint-context" not found',
        },
        ["cannot be created", 'secret "build-42-lint-context" not found'],
        id="pending-config-error",
    ),
    pytest.param(
        pod("Pending", waiting("CreateContainerError", "context deadline exceeded")),
        {"state": "pending", "stuck_reason": "CreateContainerError"},
        [],
        id="pending-create-error",
    ),
    pytest.param(
        pod("Pending", waiting("ContainerCreating")),
        {"state": "pending", "reason": "ContainerCreating", "stuck_reason": None},
        [],
        id="pending-container-creating",
    ),
    pytest.param(
        pod("Pending", waiting("PodInitializing")),
        {"state": "pending", "reason": "PodInitializing", "stuck_reason": None},
        [],
        id="pending-pod-initializing",
    ),
    pytest.param(
        pod(
            "Pending",
            waiting("PodInitializing"),
            init_statuses=[container_status(waiting("ErrImagePull", "not found"), name="prepare")],
        ),
        {"state": "pending", "reason": "ImagePullFailed", "stuck_reason": "ErrImagePull"},
        [],
        id="pending-init-container-image",
    ),
    pytest.param(
        unschedulable(
            "Unschedulable",
            "0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are "
            "available: 3 No preemption victims found for incoming pod.",
        ),
        {"state": "pending", "reason": "Unschedulable", "stuck_reason": "Unschedulable"},
        ["Insufficient memory", "nodeSelector"],
        id="pending-unschedulable",
    ),
    pytest.param(
        unschedulable("SchedulingGated", "Scheduling is blocked due to non-empty scheduling gates"),
        {"state": "pending", "reason": "SchedulingGated", "stuck_reason": None},
        ["scheduling gates"],
        id="pending-scheduling-gated",
    ),
    pytest.param(
        pod("Pending", scheduled=False),
        {"state": "pending", "reason": "Pending", "stuck_reason": None, "start_time": None},
        ["scheduled"],
        id="pending-just-created",
    ),
    pytest.param(
        pod("Pending"),
        {"state": "pending", "reason": "ContainerCreating", "stuck_reason": None},
        [],
        id="pending-scheduled-no-status-yet",
    ),
    pytest.param(
        pod("Unknown", {"running": {"startedAt": STARTED}}),
        {"state": "running", "reason": "NodeLost", "start_time": STARTED},
        ["kind-worker"],
        id="unknown-phase",
    ),
    pytest.param(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {}},
        {"state": "pending", "reason": "Pending"},
        [],
        id="no-status-at-all",
    ),
]


@pytest.mark.parametrize(("pod_body", "expected", "message_parts"), CASES)
def test_observe_pod(
    pod_body: dict[str, Any], expected: dict[str, Any], message_parts: list[str]
) -> None:
    obs = observe_pod(pod_body)
    assert {field: getattr(obs, field) for field in expected} == expected
    for part in message_parts:
        assert part in obs.message
    assert obs.message
    if obs.state in ("pending", "running"):
        assert obs.exit_code is None


def test_failure_message_is_bounded() -> None:
    obs = observe_pod(pod("Failed", terminated(1, message=LOG)))
    assert len(obs.message) < 1200
    assert obs.message.endswith("FATAL: lint failed")


def test_start_error_zero_time_falls_back_to_pod_start() -> None:
    state = terminated(128, reason="StartError")
    state["terminated"]["startedAt"] = "1970-01-01T00:00:00Z"
    obs = observe_pod(pod("Failed", state))
    assert obs.start_time == CREATED


def test_secret_values_are_redacted_from_messages() -> None:
    log = "using token ghp_s3cr3tvalue\nauth failed for ghp_s3cr3tvalue (id 7)"
    obs = observe_pod(
        pod("Failed", terminated(1, message=log)), redact=["ghp_s3cr3tvalue", "7", ""]
    )
    assert "ghp_s3cr3tvalue" not in obs.message
    assert "using token ***" in obs.message
    assert "(id 7)" in obs.message  # too short to mask


def test_redaction_happens_before_truncation() -> None:
    secret = "s3cr3t-" * 10
    log = "x" * 2000 + secret + "y" * 990
    obs = observe_pod(pod("Failed", terminated(1, message=log)), redact=[secret])
    assert "s3cr3t" not in obs.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, (None, None)),
        ("   \n", (None, None)),
        ('{"a": 1}', ({"a": 1}, None)),
        ('"text"', (None, "output is not a JSON object: it is a string")),
        ("42", (None, "output is not a JSON object: it is a number")),
        ("4.5", (None, "output is not a JSON object: it is a number")),
        ("true", (None, "output is not a JSON object: it is a boolean")),
        ("null", (None, "output is not a JSON object: it is null")),
        ("{", (None, "output is not a JSON object: it is not valid JSON")),
        ('{"k": "' + "é" * 2100 + '"}', (None, "output exceeds 4 KiB (4209 bytes)")),
    ],
)
def test_parse_outputs(
    text: str | None, expected: tuple[dict[str, Any] | None, str | None]
) -> None:
    assert parse_outputs(text) == expected


@pytest.mark.parametrize(
    ("state", "terminal"),
    [("pending", False), ("running", False), ("succeeded", True), ("failed", True)],
)
def test_is_terminal(state: Any, terminal: bool) -> None:
    assert is_terminal(PodObservation(state=state, reason="x", message="y")) is terminal


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('{"a":' * 65 + "1" + "}" * 65, id="just-over"),
        pytest.param("[" * 2040 + "]" * 2040, id="2040-deep-in-4KiB"),
    ],
)
def test_outputs_nested_too_deep_are_refused_without_parsing(text: str) -> None:
    assert len(text.encode()) <= 4096
    assert parse_outputs(text) == (None, "output is nested more than 64 levels deep")


def test_outputs_at_the_depth_bound_are_kept_and_brackets_in_strings_do_not_count() -> None:
    text = '{"a":' * 63 + '"[[[{{{"' + "}" * 63
    outputs, error = parse_outputs(text)
    assert error is None and outputs is not None


@pytest.mark.parametrize(
    ("statuses", "started"),
    [
        pytest.param(None, False, id="no-status-yet"),
        pytest.param([container_status(waiting("ContainerCreating"))], False, id="creating"),
        pytest.param([container_status(waiting("ImagePullBackOff"))], False, id="image-pull"),
        pytest.param([container_status(running())], True, id="running"),
        pytest.param([container_status(terminated(1))], True, id="ended"),
        pytest.param(
            [{**container_status(waiting("CrashLoopBackOff")), "lastState": terminated(137)}],
            True,
            id="restarting-after-a-run",
        ),
    ],
)
def test_whether_the_step_container_ever_started(
    statuses: list[dict[str, Any]] | None, started: bool
) -> None:
    pod = {"metadata": {"name": "p"}, "status": {"containerStatuses": statuses} if statuses else {}}
    assert step_container_started(pod) is started
