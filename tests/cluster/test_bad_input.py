"""Generated and hand-picked bad StepRuns against the real API server and a running operator.

Every StepRun sent is either refused by the API server (4xx, naming a field under ``spec.``) or
accepted, and then ends in a terminal phase with a reason and a message. The API server's
verdict must match the oracle of ``tests/unit/test_bad_input_models.py``. Afterwards the
operator is still alive, logged no exception, and wrote a bounded number of lines per StepRun
(a reconcile hot loop would show up as thousands).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from kubernetes import client

from tests.support.operator_process import OperatorProcess
from tests.support.steps import GROUP, PLURAL, VERSION, Steps, eventually
from tests.unit.test_bad_input_models import MAX_SECONDS, Spec, step_specs, step_verdict

# Accepted StepRuns run real Pods; this many at a time keeps the shared node comfortable.
MAX_IN_FLIGHT = 40
FUZZ_EXAMPLES = 300
STARTUP_TIMEOUT = 15
# The operator logs a handful of lines per transition; a StepRun it keeps reconciling for
# nothing would produce hundreds.
MAX_LOG_LINES_PER_STEPRUN = 20
KNOWN_REASONS = {
    "Completed",
    "Error",
    "OOMKilled",
    "DeadlineExceeded",
    "StartupTimeout",
    "ImagePullFailed",
    "Cancelled",
    "PermissionDenied",
    "PolicyNotFound",
    "InvalidSpec",
    "PodDeleted",
    "Evicted",
    "NodeLost",
    "PodCreateFailed",
}
KIB = 1024


@dataclass
class Sent:
    name: str
    spec: Spec
    refused: client.ApiException | None = None


@dataclass
class Outcomes:
    """What happened to every StepRun a test sent."""

    steps: Steps
    in_flight: list[Sent] = field(default_factory=list)
    finished: dict[str, dict[str, Any]] = field(default_factory=dict)
    refused: dict[str, client.ApiException] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)

    def send(self, name: str, spec: Spec) -> Sent:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "StepRun",
            "metadata": {"name": name},
            "spec": spec,
        }
        sent = Sent(name, spec)
        try:
            # Strict, as kubectl and the steprun client send it: unknown fields are errors.
            self.steps.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.steps.namespace, PLURAL, body, field_validation="Strict"
            )
        except client.ApiException as error:
            sent.refused = error
            self.refused[name] = error
        else:
            self.in_flight.append(sent)
            while len(self.in_flight) >= MAX_IN_FLIGHT:
                self._finish(self.in_flight.pop(0))
        self.sent.append(sent)
        return sent

    def drain(self) -> None:
        while self.in_flight:
            self._finish(self.in_flight.pop(0))

    def _finish(self, sent: Sent) -> None:
        status = self.steps.wait_terminal(sent.name, timeout=STARTUP_TIMEOUT + 120)
        self.finished[sent.name] = status
        # Finished StepRuns go, and their Pods with them, so the node never fills up.
        self.steps.custom.delete_namespaced_custom_object(
            GROUP, VERSION, self.steps.namespace, PLURAL, sent.name
        )


@pytest.fixture
def steps(api_client: client.ApiClient, namespace: str, operator: OperatorProcess) -> Steps:
    return Steps(api_client, namespace)


@pytest.fixture
def watched_operator(operator: OperatorProcess) -> Iterator[OperatorProcess]:
    """The session's operator; its log from here on must be free of exceptions."""
    offset = len(operator.log())
    yield operator
    assert operator.process is not None and operator.process.poll() is None, "operator died"
    new = operator.log()[offset:]
    assert "Traceback" not in new, _excerpt(new, "Traceback")
    assert '"exception"' not in new, _excerpt(new, '"exception"')


def _excerpt(text: str, needle: str) -> str:
    at = text.find(needle)
    return text[max(0, at - 2000) : at + 2000]


def log_lines_per_steprun(log: str, namespace: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("namespace") == namespace and "name" in entry:
            counts[str(entry["name"])] = counts.get(str(entry["name"]), 0) + 1
    return counts


def for_cluster(spec: Spec) -> Spec:
    """Keep accepted steps short: bounded startup, retries and backoff; no early TTL deletion
    (the test reads the final status); sandbox steps name a policy that surely does not exist.
    Only values the contract accepts are changed, so the verdict stays the generator's."""
    spec = json.loads(json.dumps(spec))

    def valid_int(value: Any, lo: int, hi: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi

    if valid_int(spec.get("startupTimeoutSeconds"), 1, MAX_SECONDS) or (
        "startupTimeoutSeconds" not in spec
    ):
        spec["startupTimeoutSeconds"] = min(spec.get("startupTimeoutSeconds", 99), STARTUP_TIMEOUT)
    if valid_int(spec.get("ttlSecondsAfterFinished"), 0, MAX_SECONDS * 52):
        spec["ttlSecondsAfterFinished"] = max(spec["ttlSecondsAfterFinished"], 3600)
    retries = spec.get("retries")
    if isinstance(retries, dict):
        if valid_int(retries.get("limit"), 0, 20):
            retries["limit"] = min(retries["limit"], 1)
        if valid_int(retries.get("backoffSeconds"), 0, 3600):
            retries["backoffSeconds"] = min(retries["backoffSeconds"], 1)
    sandbox = spec.get("sandbox")
    if isinstance(sandbox, dict) and "policy" not in sandbox:
        sandbox["policy"] = f"fz-absent-{uuid.uuid4().hex[:8]}"
    return spec


def expected_phases(spec: Spec) -> set[str]:
    """The phases an accepted StepRun may end in (no source Secret ever exists here)."""
    if spec.get("cancel") is True:
        return {"Cancelled"}
    if spec.get("mode") == "sandbox":
        return {"Rejected"}
    template = spec.get("podTemplate")
    tolerations = template.get("tolerations") if isinstance(template, dict) else None
    if isinstance(tolerations, list) and any(
        isinstance(t, dict) and not t.get("key") for t in tolerations
    ):
        # A toleration without a key tolerates every taint: not allowed unless an admin says.
        return {"Rejected"}
    return {"Succeeded", "Failed", "TimedOut"}


def check_refusal(sent: Sent) -> None:
    assert sent.refused is not None
    assert 400 <= sent.refused.status < 500, (sent.spec, sent.refused.status, sent.refused.body)
    assert "spec." in str(sent.refused.body), (sent.spec, sent.refused.body)


def check_finished(sent: Sent, status: dict[str, Any]) -> None:
    assert status["phase"] in expected_phases(sent.spec), (sent.spec, status)
    assert status.get("reason") in KNOWN_REASONS, (sent.spec, status)
    assert status.get("message"), (sent.spec, status)
    secrets = (sent.spec.get("context") or {}).get("secrets")
    if status["phase"] in {"Succeeded", "Failed", "TimedOut"} and secrets:
        # No source Secret exists in this namespace, so no Pod may ever have started.
        assert status["phase"] == "Failed" and status["reason"] == "InvalidSpec", status
        assert "not found" in status["message"], status


def test_generated_steprun_specs(
    steps: Steps, step_image: str, watched_operator: OperatorProcess
) -> None:
    outcomes = Outcomes(steps)

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(spec=step_specs(step_image, max_changes=2).map(for_cluster))
    def send(spec: Spec) -> None:
        outcomes.send(f"fz-{len(outcomes.sent)}", spec)

    send()
    outcomes.drain()

    disagreements = [
        (s.spec, step_verdict(s.spec), s.refused.body if s.refused else "accepted")
        for s in outcomes.sent
        if (s.refused is not None) == step_verdict(s.spec).valid
    ]
    assert not disagreements, disagreements[:5]
    for sent in outcomes.sent:
        if sent.refused is not None:
            check_refusal(sent)
        else:
            check_finished(sent, outcomes.finished[sent.name])
    # Both kinds must be well represented, or the run proved little.
    assert len(outcomes.refused) >= FUZZ_EXAMPLES // 5, len(outcomes.refused)
    assert len(outcomes.finished) >= FUZZ_EXAMPLES // 5, len(outcomes.finished)
    assert {s["phase"] for s in outcomes.finished.values()} >= {"Succeeded", "Failed"}
    counts = log_lines_per_steprun(watched_operator.log(), steps.namespace)
    noisy = {name: n for name, n in counts.items() if n >= MAX_LOG_LINES_PER_STEPRUN}
    assert not noisy, noisy


# ---------------------------------------------------------------- hand-picked cases


def _inputs_of(size: int) -> dict[str, Any]:
    """An inputs object whose serialized JSON is about ``size`` bytes."""
    return {"blob": "x" * (size - 16)}


def _owned_pods(steps: Steps, name: str) -> list[str]:
    pods: list[Any] = steps.core.list_namespaced_pod(steps.namespace).items
    return [
        str(p.metadata.name)
        for p in pods
        if any(ref.name == name for ref in p.metadata.owner_references or [])
    ]


def test_inputs_at_the_bound_reach_the_step(steps: Steps, step_image: str) -> None:
    inputs = _inputs_of(255 * KIB)
    steps.create(
        "inputs-max",
        {
            "image": step_image,
            "script": f'test "$(wc -c < "$STEPRUN_CONTEXT_FILE")" -gt {255 * KIB - 64}',
            "context": {"inputs": inputs},
        },
    )
    status = steps.wait_terminal("inputs-max")
    assert status["phase"] == "Succeeded", status


def test_inputs_over_the_bound_end_invalid_spec(steps: Steps, step_image: str) -> None:
    steps.create(
        "inputs-over",
        {"image": step_image, "script": "true", "context": {"inputs": _inputs_of(300 * KIB)}},
    )
    status = steps.wait_terminal("inputs-over")
    assert status["phase"] == "Failed" and status["reason"] == "InvalidSpec", status
    assert "inputs" in status["message"], status
    assert _owned_pods(steps, "inputs-over") == []


def test_inputs_too_big_for_a_configmap_end_with_a_clear_status(
    steps: Steps, step_image: str, watched_operator: OperatorProcess
) -> None:
    """The StepRun fits in etcd but its ConfigMap could not (1 MiB): no Pod, a clear reason
    (the operator's inputs bound answers first, otherwise the ConfigMap refusal would)."""
    steps.create(
        "inputs-huge",
        {"image": step_image, "script": "true", "context": {"inputs": _inputs_of(1100 * KIB)}},
    )
    status = steps.wait_terminal("inputs-huge")
    assert status["phase"] == "Failed", status
    assert status["reason"] in {"InvalidSpec", "PodCreateFailed"}, status
    assert "ConfigMap" in status["message"] or "inputs" in status["message"], status
    assert _owned_pods(steps, "inputs-huge") == []
    eventually(lambda: not steps.configmap_exists("inputs-huge-context"), 30, "no ConfigMap")


def test_env_too_big_for_a_configmap_ends_pod_create_failed(
    steps: Steps, step_image: str, watched_operator: OperatorProcess
) -> None:
    """Env values have no bound of their own; past 1 MiB the API server refuses the step's
    ConfigMap, and the step must end on that refusal instead of retrying it forever."""
    steps.create(
        "env-huge", {"image": step_image, "script": "true", "env": {"BIG": "x" * (1100 * KIB)}}
    )
    status = steps.wait_terminal("env-huge")
    assert status["phase"] == "Failed" and status["reason"] == "PodCreateFailed", status
    assert "ConfigMap env-huge-context" in status["message"], status
    assert _owned_pods(steps, "env-huge") == []


def test_object_too_big_for_the_api_server_is_refused(steps: Steps, step_image: str) -> None:
    """Past etcd's request limit the API server refuses the StepRun itself. It answers 500
    (etcd's gRPC ResourceExhausted), not 413: the object is simply never stored."""
    with pytest.raises(client.ApiException) as refused:
        steps.create(
            "inputs-giant",
            {
                "image": step_image,
                "script": "true",
                "context": {"inputs": _inputs_of(2 * KIB * KIB)},
            },
        )
    body = str(refused.value.body)
    assert refused.value.status in (413, 422, 500), (refused.value.status, body)
    assert "larger than max" in body or "too large" in body.lower(), body
    assert not steps.exists("inputs-giant")


NASTY_VALUE = "line1\nline2\tü🚀\u202e$(id)`id`'\"\\"


def test_env_values_with_newlines_and_unicode_arrive_intact(steps: Steps, step_image: str) -> None:
    expected = NASTY_VALUE.encode().hex()
    steps.create(
        "nasty-env",
        {
            "image": step_image,
            # Compare bytes as hex so the shell never interprets the value.
            "script": f'test "$(printf %s "$NASTY" | od -An -tx1 | tr -d " \\n")" = {expected}',
            "env": {"NASTY": NASTY_VALUE},
            "context": {"env": {"WORKFLOW_NASTY": NASTY_VALUE}, "inputs": {"v": NASTY_VALUE}},
        },
    )
    status = steps.wait_terminal("nasty-env")
    assert status["phase"] == "Succeeded", status


def test_env_value_with_nul_ends_with_a_clear_status(steps: Steps, step_image: str) -> None:
    """A NUL byte cannot be put into a process environment; the step must still end."""
    steps.create(
        "nul-env",
        {
            "image": step_image,
            "script": "true",
            "env": {"NUL": "a\x00b"},
            "startupTimeoutSeconds": STARTUP_TIMEOUT,
        },
    )
    status = steps.wait_terminal("nul-env", timeout=STARTUP_TIMEOUT + 90)
    # The container runtime refuses it (runc: "environment variable value can't contain
    # null"), which the step reports as a start error with that text.
    assert status["phase"] == "Failed", status
    assert status["reason"] in KNOWN_REASONS and "null" in status["message"], status


@pytest.mark.parametrize(
    ("case", "spec", "words"),
    [
        (
            # A key the operator lets through (tests/conftest.py), with a value Pods may not have.
            "bad-label",
            {"podTemplate": {"labels": {"team": "bad value!"}}},
            "labels",
        ),
        (
            "requests-over-limits",
            {"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}},
            "resources",
        ),
        ("missing-sa", {"serviceAccountName": "fz-missing-sa"}, "fz-missing-sa"),
        ("blank-image", {"image": " steprun.local/step:1"}, "image"),
    ],
)
def test_pod_the_api_server_refuses_ends_pod_create_failed(
    steps: Steps, step_image: str, case: str, spec: Spec, words: str
) -> None:
    steps.create(case, {"image": step_image, "script": "true", **spec})
    status = steps.wait_terminal(case)
    assert status["phase"] == "Failed" and status["reason"] == "PodCreateFailed", status
    assert words in status["message"], status
    assert _owned_pods(steps, case) == []


@pytest.mark.parametrize("name", ["a" * 253, "x.y.z", "0-numeric-start"])
def test_odd_but_valid_names_run(steps: Steps, step_image: str, name: str) -> None:
    steps.create(name, {"image": step_image, "script": 'test -n "$STEPRUN_NAME"'})
    status = steps.wait_terminal(name)
    assert status["phase"] == "Succeeded", status
    assert len(_owned_pods(steps, name)) == 1


def test_script_at_its_bound_runs(steps: Steps, step_image: str) -> None:
    script = "true " + "#" * (128 * KIB - 5)
    steps.create("long-script", {"image": step_image, "script": script})
    status = steps.wait_terminal("long-script")
    assert status["phase"] == "Succeeded", status
