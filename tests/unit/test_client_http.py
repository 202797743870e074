"""The client against an in-process fake API server: real HTTP, real kubernetes clients.

The fake (``tests.support.fake_apiserver``) serves the in-memory API server the reconciler
tests use too, so these tests check the wiring that pure unit tests cannot: request shapes,
content types, streaming, watch resumption, error mapping.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import inspect
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast, get_type_hints

import kubernetes
import pytest

from steprun.api.models import StepRunSpec
from steprun.artifacts.store import ArtifactStore
from steprun.client import (
    ApiUnreachable,
    AttemptStarted,
    InvalidStepRun,
    LogLine,
    PodWaiting,
    StepRunClient,
    StepRunConflict,
    StepRunError,
    StepRunHandle,
    StepRunNotFound,
    StepRunRejected,
    WaitTimeout,
)
from steprun.client.aio import AsyncStepRunClient, AsyncStepRunHandle, ClientOptions
from steprun.client.logs import LogOptions
from steprun.kube.errors import Refused, Transient
from tests.support.fake_apiserver import FAST, FakeApiServer, finish, later, status_of, steprun
from tests.support.fake_cluster import ANY, FakeCluster

SPEC = {"image": "busybox:1.36", "script": "echo hi"}


@pytest.fixture
def client(server: FakeApiServer) -> Iterator[StepRunClient]:
    with StepRunClient(
        server.sync_api_client(), "ns1", watch_timeout_seconds=1, poll_interval=0.05, backoff=FAST
    ) as made:
        yield made


def lists(server: FakeApiServer) -> int:
    """How many times the StepRuns were listed (not watched, not read one by one)."""
    return sum(
        1
        for method, path, query, _ in server.requests
        if method == "GET" and path.endswith("/stepruns") and not query.get("watch")
    )


# ---------------------------------------------------------------------- submit / get / list


def test_submit_creates_the_steprun_with_workflow_labels(
    client: StepRunClient, server: FakeApiServer
) -> None:
    spec = {**SPEC, "context": {"workflow": {"name": "build", "runId": "42", "stepId": "lint"}}}
    handle = client.submit(spec, name="build-42-lint", labels={"team": "web"})
    assert (handle.name, handle.namespace) == ("build-42-lint", "ns1")
    stored = server.cluster.get("StepRun", "ns1", "build-42-lint")
    assert stored["metadata"]["labels"] == {
        "team": "web",
        "steprun.dev/workflow": "build",
        "steprun.dev/run-id": "42",
        "steprun.dev/step-id": "lint",
    }
    assert stored["spec"]["script"] == "echo hi"
    assert client.get("build-42-lint").spec.image == "busybox:1.36"


def test_submit_without_a_name_generates_one_from_the_image(client: StepRunClient) -> None:
    handle = client.submit(StepRunSpec.model_validate(SPEC))
    assert re.fullmatch(r"busybox-[0-9a-f]{5}", handle.name)


def test_submitting_the_same_step_twice_returns_the_existing_one(
    client: StepRunClient, server: FakeApiServer
) -> None:
    first = client.submit(SPEC, name="same")
    client.cancel("same")  # a control switch, not part of what the step is
    again = client.submit(SPEC, name="same")
    assert again.name == first.name
    assert len(server.requests_of("POST")) == 2
    with pytest.raises(StepRunConflict) as raised:
        client.submit({**SPEC, "script": "echo other"}, name="same")
    assert raised.value.steprun is not None and raised.value.steprun.name == "same"


def test_a_refused_steprun_raises_invalid_with_the_server_message(
    client: StepRunClient, server: FakeApiServer
) -> None:
    message = 'StepRun.steprun.dev "x" is invalid: spec.image: Required value'
    refusal = status_of(
        422,
        message,
        reason="Invalid",
        details={"causes": [{"field": "spec.image", "message": "Required value"}]},
    )
    server.cluster.fail("create", "StepRun", Refused(422, "Invalid", message, refusal))
    with pytest.raises(InvalidStepRun) as raised:
        client.submit(SPEC, name="x")
    assert "spec.image: Required value" in raised.value.message
    assert raised.value.causes[0].field == "spec.image"


def test_list_filters_by_workflow_fields(client: StepRunClient, server: FakeApiServer) -> None:
    for run_id in ("1", "2"):
        client.submit(
            {**SPEC, "context": {"workflow": {"name": "build", "runId": run_id}}},
            name=f"build-{run_id}",
        )
    client.submit(SPEC, name="other")
    assert [sr.name for sr in client.list(workflow="build", run_id="2")] == ["build-2"]
    assert {sr.name for sr in client.list(workflow="build")} == {"build-1", "build-2"}
    assert len(client.list(all_namespaces=True)) == 3
    (query,) = [q for q in server.requests_of("GET", "stepruns") if "fieldSelector" in q][:1]
    assert query["fieldSelector"] == [
        "spec.context.workflow.name=build,spec.context.workflow.runId=2"
    ]


def test_get_of_a_missing_steprun_raises_not_found(client: StepRunClient) -> None:
    with pytest.raises(StepRunNotFound):
        client.get("nope")


def test_cancel_sends_a_merge_patch(client: StepRunClient, server: FakeApiServer) -> None:
    client.submit(SPEC, name="c")
    assert client.cancel("c").spec.cancel is True
    (patch,) = [r for r in server.requests if r[0] == "PATCH"]
    assert patch[3] == "application/merge-patch+json"


def test_delete_removes_and_then_not_found(client: StepRunClient) -> None:
    client.submit(SPEC, name="d")
    client.delete("d")
    with pytest.raises(StepRunNotFound):
        client.delete("d")


# ---------------------------------------------------------------------- retries and errors


def test_transient_server_errors_are_retried(client: StepRunClient, server: FakeApiServer) -> None:
    client.submit(SPEC, name="r")
    server.cluster.fail(
        ANY,
        ANY,
        Transient(503, "ServiceUnavailable", "injected"),
        Transient(500, "InternalError", "injected"),
    )
    assert client.get("r").name == "r"


def test_persistent_server_errors_raise_api_unreachable(
    client: StepRunClient, server: FakeApiServer
) -> None:
    server.cluster.fail(ANY, ANY, *[Transient(503, "ServiceUnavailable", "injected")] * 3)
    with pytest.raises(ApiUnreachable):
        client.get("r")


def test_a_server_that_is_not_there_raises_api_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    configuration = kubernetes.client.Configuration()
    configuration.host = f"http://127.0.0.1:{port}"
    configuration.retries = 0
    with (
        StepRunClient(kubernetes.client.ApiClient(configuration), "ns1", backoff=FAST) as client,
        pytest.raises(ApiUnreachable),
    ):
        client.get("x")


# ---------------------------------------------------------------------- wait


def test_wait_returns_the_terminal_steprun_across_watch_restarts(
    client: StepRunClient, server: FakeApiServer
) -> None:
    client.submit(SPEC, name="w")
    later(0.3, lambda: server.cluster.set_status("ns1", "w", phase="Running"))
    later(2.6, lambda: finish(server.cluster, "w"))
    done = client.wait("w", timeout=20)
    assert done.status.phase == "Succeeded"
    watches = server.requests_of("GET", "stepruns")
    watches = [q for q in watches if q.get("watch")]
    # One-second watches over ~2.6 s: the client resumed several times, each time from the
    # version it had seen last, never from scratch.
    assert len(watches) >= 3
    assert all(q["resourceVersion"][0] for q in watches)
    assert all(q["fieldSelector"] == ["metadata.name=w"] for q in watches)


def test_wait_relists_after_410_gone(client: StepRunClient, server: FakeApiServer) -> None:
    client.submit(SPEC, name="g")

    def finish_then_compact() -> None:
        # At once: the watch's version is compacted before the watch can see the change.
        with server.cluster.cond:
            finish(server.cluster, "g", phase="Failed", reason="Error", exitCode=3)
            server.cluster.compact()

    later(1.5, finish_then_compact)
    done = client.wait("g", timeout=20)
    assert (done.status.phase, done.status.exit_code) == ("Failed", 3)
    assert lists(server) == 2, "listed, then listed again after the watch's 410"


def test_wait_times_out_with_the_last_seen_state(
    client: StepRunClient, server: FakeApiServer
) -> None:
    client.submit(SPEC, name="slow")
    server.cluster.set_status("ns1", "slow", phase="Running")
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as raised:
        client.wait("slow", timeout=1.2)
    assert time.monotonic() - started < 5
    assert raised.value.steprun is not None and raised.value.steprun.status.phase == "Running"


def test_wait_on_a_deleted_steprun_raises_not_found(
    client: StepRunClient, server: FakeApiServer
) -> None:
    client.submit(SPEC, name="gone")
    later(0.3, lambda: server.cluster.delete("StepRun", "ns1", "gone"))
    with pytest.raises(StepRunNotFound):
        client.wait("gone", timeout=10)


def test_run_returns_a_failed_result_and_raises_on_rejected(
    client: StepRunClient, server: FakeApiServer
) -> None:
    def operator(name: str, **status: Any) -> None:
        later(0.3, lambda: finish(server.cluster, name, **status))

    operator(
        "f",
        phase="Failed",
        reason="Error",
        exitCode=7,
        outputs={"k": "v"},
        attempts=[{"attempt": 1, "podName": "f-1", "exitCode": 7}],
    )
    result = client.run(SPEC, name="f", timeout=10)
    assert not result.succeeded
    assert (result.exit_code, result.outputs, len(result.attempts)) == (7, {"k": "v"}, 1)

    operator("rej", phase="Rejected", reason="PermissionDenied", message="denied: x")
    with pytest.raises(StepRunRejected) as raised:
        client.run(SPEC, name="rej", timeout=10)
    assert (raised.value.reason, raised.value.message) == ("PermissionDenied", "denied: x")


# ---------------------------------------------------------------------- logs


def test_logs_follow_every_attempt_in_order(client: StepRunClient, server: FakeApiServer) -> None:
    cluster = server.cluster
    client.submit(SPEC, name="lg")
    pod1 = cluster.add_pod("ns1", "lg", 1, state="waiting", reason="ContainerCreating")

    def first_attempt() -> None:
        cluster.set_pod_state("ns1", pod1, "running")
        cluster.log("ns1", pod1, "attempt 1", "failing")
        later(0.3, second_attempt)

    def second_attempt() -> None:
        cluster.set_pod_state("ns1", pod1, "terminated", "Error")
        cluster.end_log("ns1", pod1)
        cluster.set_status(
            "ns1", "lg", phase="Pending", reason="Retrying", nextAttemptTime="2030-01-01T00:00:00Z"
        )
        later(0.3, start_second)

    def start_second() -> None:
        pod2 = cluster.add_pod("ns1", "lg", 2)
        cluster.log("ns1", pod2, "attempt 2", "résumé ok")
        cluster.set_pod_state("ns1", pod2, "terminated", "Completed")
        cluster.end_log("ns1", pod2)
        finish(cluster, "lg")

    later(0.3, first_attempt)
    events = list(client.log_events("lg", follow=True))
    lines = [e.text for e in events if isinstance(e, LogLine)]
    assert lines == ["attempt 1", "failing", "attempt 2", "résumé ok"]
    assert [e.attempt for e in events if isinstance(e, AttemptStarted)] == [1, 2]
    waiting = [e for e in events if isinstance(e, PodWaiting)]
    assert waiting[0] == PodWaiting(1, "lg-1", "ContainerCreating")
    assert PodWaiting(2, None, "Retrying") in waiting
    # Both attempts read again without follow, after the fact, give the same lines.
    assert list(client.logs("lg")) == lines
    assert list(client.logs("lg", attempt=2)) == ["attempt 2", "résumé ok"]


def test_logs_of_a_missing_steprun_raise_not_found(client: StepRunClient) -> None:
    with pytest.raises(StepRunNotFound):
        list(client.logs("nope"))


# ---------------------------------------------------------------------- asyncio client


async def test_async_client_submits_waits_reads_logs_and_cancels(server: FakeApiServer) -> None:
    cluster = server.cluster
    async with AsyncStepRunClient(
        server.async_api_client(),
        "ns1",
        watch_timeout_seconds=1,
        poll_interval=0.05,
        backoff=FAST,
    ) as client:
        handle = await client.submit(SPEC, name="a")
        again = await client.submit(SPEC, name="a")
        assert again.name == handle.name
        pod = cluster.add_pod("ns1", "a", 1)
        cluster.log("ns1", pod, "hello", "from async")

        def end() -> None:
            cluster.set_pod_state("ns1", pod, "terminated", "Completed")
            cluster.end_log("ns1", pod)
            finish(cluster, "a", outputs={"k": "v"})

        later(2.2, end)
        lines = [line async for line in handle.logs(follow=True)]
        assert lines == ["hello", "from async"]
        result = await handle.result(timeout=10)
        assert result.succeeded and result.outputs == {"k": "v"}

        await client.submit(SPEC, name="b")
        later(1.5, lambda: finish(cluster, "b", phase="Cancelled", reason="Cancelled"))
        cancelled = await client.cancel("b")
        assert cancelled.spec.cancel is True
        assert (await client.wait("b", timeout=10)).status.phase == "Cancelled"
        assert [sr.name for sr in await client.list()] == ["a", "b"]
        with pytest.raises(StepRunNotFound):
            await client.get("missing")
        await client.delete("b")


async def test_async_wait_resumes_and_relists(server: FakeApiServer) -> None:
    cluster = server.cluster
    async with AsyncStepRunClient(
        server.async_api_client(), "ns1", watch_timeout_seconds=1, backoff=FAST
    ) as client:
        await client.submit(SPEC, name="w")
        later(1.2, lambda: cluster.touch("ns1", "w"))

        def finish_then_compact() -> None:
            with cluster.cond:
                finish(cluster, "w", phase="TimedOut", reason="DeadlineExceeded")
                cluster.compact()

        later(2.5, finish_then_compact)
        done = await client.wait("w", timeout=20)
        assert done.status.phase == "TimedOut"
        watches = [q for q in server.requests_of("GET", "stepruns") if q.get("watch")]
        assert len(watches) >= 3
        assert lists(server) == 2, "listed, then listed again after the watch's 410"
        with pytest.raises(WaitTimeout):
            await client.wait((await client.submit(SPEC, name="never")).name, timeout=1.1)


async def test_async_client_loads_the_kubeconfig_namespace(
    server: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", server.kubeconfig(tmp_path, namespace="from-context"))
    async with AsyncStepRunClient(backoff=FAST) as client:
        assert client.namespace == "from-context"
        handle = await client.submit(SPEC, name="k")
        assert handle.namespace == "from-context"


def test_sync_client_loads_the_kubeconfig_namespace(
    server: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", server.kubeconfig(tmp_path, namespace="from-context"))
    with StepRunClient(backoff=FAST) as client:
        assert client.namespace == "from-context"
        assert client.submit(SPEC, name="k").namespace == "from-context"


# ---------------------------------------------------------------------- trace context

TRACE_ID, SPAN_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def engine_span() -> Any:
    """A span of the engine, as its tracer would make (the API alone, no SDK needed)."""
    from opentelemetry import trace
    from opentelemetry.trace.span import TraceState

    context = trace.SpanContext(
        TRACE_ID,
        SPAN_ID,
        is_remote=False,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
        trace_state=TraceState([("engine", "run42")]),
    )
    return trace.use_span(trace.NonRecordingSpan(context))


def test_submit_carries_the_engines_current_trace_context(
    client: StepRunClient, server: FakeApiServer
) -> None:
    with engine_span():
        client.submit(SPEC, name="traced")
        client.submit(SPEC, name="untraced", propagate_trace=False)
    assert server.cluster.get("StepRun", "ns1", "traced")["spec"]["context"]["trace"] == {
        "traceparent": TRACEPARENT,
        "tracestate": "engine=run42",
    }
    untraced = server.cluster.get("StepRun", "ns1", "untraced")
    assert "trace" not in untraced["spec"].get("context", {})
    # Outside any span nothing is added.
    client.submit(SPEC, name="outside")
    assert "trace" not in server.cluster.get("StepRun", "ns1", "outside")["spec"].get("context", {})


def test_an_explicit_trace_wins_and_resubmitting_in_another_span_is_the_same_step(
    client: StepRunClient, server: FakeApiServer
) -> None:
    other = "00-11111111111111111111111111111111-2222222222222222-00"
    spec = {**SPEC, "context": {"trace": {"traceparent": other}}}
    with engine_span():
        client.submit(spec, name="explicit")
        again = client.submit(SPEC, name="explicit")
    assert again.name == "explicit"
    assert server.cluster.get("StepRun", "ns1", "explicit")["spec"]["context"]["trace"] == {
        "traceparent": other
    }


def test_without_opentelemetry_installed_nothing_is_added(
    client: StepRunClient, server: FakeApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with engine_span():
        # What `import` sees when the optional dependency is absent.
        monkeypatch.setitem(sys.modules, "opentelemetry.trace.propagation.tracecontext", None)
        client.submit(SPEC, name="no-otel")
    assert "trace" not in server.cluster.get("StepRun", "ns1", "no-otel")["spec"].get("context", {})


async def test_async_submit_carries_the_trace_context(server: FakeApiServer) -> None:
    async with AsyncStepRunClient(server.async_api_client(), "ns1", backoff=FAST) as client:
        with engine_span():
            await client.submit(SPEC, name="async-traced")
    trace = server.cluster.get("StepRun", "ns1", "async-traced")["spec"]["context"]["trace"]
    assert trace["traceparent"] == TRACEPARENT


# ---------------------------------------------------------------------- archive and artifacts


class MemoryStore:
    """An artifact store in a dict: what the clients read of the real one (list, stream)."""

    prefix = "runs/"

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def keys(self, prefix: str) -> list[str]:
        return sorted(key for key in self.objects if key.startswith(prefix))

    async def get_stream(self, key: str) -> Any:
        data = self.objects[key]
        for start in range(0, len(data), 7):  # small chunks: lines cross chunk borders
            yield data[start : start + 7]


def _archived_step(cluster: FakeCluster) -> MemoryStore:
    """A finished two-attempt step whose first Pod is gone; both logs are archived, and the
    second attempt uploaded an artifact."""
    from steprun.artifacts.names import artifact_key, log_key

    uid = cluster.create(steprun("ns1", "arch", image="busybox"))["metadata"]["uid"]
    data = b"tarball bytes"
    artifact = {
        "name": "dist",
        "attempt": 2,
        "key": artifact_key("runs/", "ns1", "arch", uid, 2, "dist"),
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    finish(
        cluster,
        "arch",
        attempts=[{"attempt": 1, "podName": "arch-1"}, {"attempt": 2, "podName": "arch-2"}],
        artifacts=[artifact],
    )
    pod = cluster.add_pod("ns1", "arch", 2, state="terminated", reason="Completed")
    cluster.log("ns1", pod, "live line of 2")
    return MemoryStore(
        {
            log_key("runs/", "ns1", "arch", uid, 1): b"first attempt\nfailed here\n",
            log_key("runs/", "ns1", "arch", uid, 2): b"archived line of 2\nlast, no newline",
            artifact["key"]: data,
        }
    )


ARCHIVED_LINES = ["first attempt", "failed here", "archived line of 2", "last, no newline"]


def test_blocking_client_reads_archived_logs_and_downloads_artifacts(
    server: FakeApiServer, tmp_path: Path
) -> None:
    store = _archived_step(server.cluster)
    with StepRunClient(
        server.sync_api_client(), "ns1", backoff=FAST, artifact_store=cast(ArtifactStore, store)
    ) as client:
        assert list(client.logs("arch")) == ARCHIVED_LINES
        assert list(client.logs("arch", attempt=1)) == ARCHIVED_LINES[:2]
        assert [a.name for a in client.artifacts("arch")] == ["dist"]
        written = client.download("arch", "dist", tmp_path / "dist.tgz")
        assert written.read_bytes() == b"tarball bytes"


async def test_async_client_reads_archived_logs_and_downloads_artifacts(
    server: FakeApiServer, tmp_path: Path
) -> None:
    store = _archived_step(server.cluster)
    async with AsyncStepRunClient(
        server.async_api_client(), "ns1", backoff=FAST, artifact_store=cast(ArtifactStore, store)
    ) as client:
        assert [line async for line in client.logs("arch")] == ARCHIVED_LINES
        events = [event async for event in client.log_events("arch", attempt=2)]
        assert events[0] == AttemptStarted(2, "arch-2")
        assert [a.name for a in await client.artifacts("arch")] == ["dist"]
        written = await client.download("arch", "dist", tmp_path / "dist.tgz")
        assert written.read_bytes() == b"tarball bytes"
        # Deleted StepRun, archive kept: still readable.
        await client.delete("arch")
        assert [line async for line in client.logs("arch")] == ARCHIVED_LINES


async def test_a_namesake_never_shows_the_archived_log_of_the_steprun_it_replaced(
    server: FakeApiServer,
) -> None:
    """Deleted and created again under the same name, a StepRun is another object: its log is
    its own, and once both are gone the archive is read by uid, never guessed by name."""
    from steprun.artifacts.names import log_key

    store = _archived_step(server.cluster)
    first = server.cluster.get("StepRun", "ns1", "arch")["metadata"]["uid"]
    async with AsyncStepRunClient(
        server.async_api_client(), "ns1", backoff=FAST, artifact_store=cast(ArtifactStore, store)
    ) as client:
        await client.delete("arch")
        server.cluster.remove("Pod", "ns1", "arch-2")
        again = server.cluster.create(steprun("ns1", "arch", image="busybox"))["metadata"]["uid"]
        store.objects[log_key("runs/", "ns1", "arch", again, 1)] = b"the namesake's line\n"
        finish(server.cluster, "arch", attempts=[{"attempt": 1, "podName": "arch-1"}])
        assert [line async for line in client.logs("arch")] == ["the namesake's line"]
        with pytest.raises(StepRunError, match="not " + first):
            _ = [line async for line in client.logs("arch", uid=first)]
        await client.delete("arch")
        with pytest.raises(StepRunError, match="say which one"):
            _ = [line async for line in client.logs("arch")]
        assert [line async for line in client.logs("arch", uid=first)] == ARCHIVED_LINES
        assert [line async for line in client.logs("arch", uid=again)] == ["the namesake's line"]


def test_log_options_reach_the_log_request(client: StepRunClient, server: FakeApiServer) -> None:
    client.submit(SPEC, name="opt")
    pod = server.cluster.add_pod("ns1", "opt", 1, state="terminated", reason="Completed")
    server.cluster.log("ns1", pod, "one", "two", "three")
    assert list(client.logs("opt", options=LogOptions(tail=2, timestamps=True))) == [
        "2026-01-01T00:00:00Z two",
        "2026-01-01T00:00:00Z three",
    ]
    (query,) = server.requests_of("GET", "/log")
    assert (query["tailLines"], query["timestamps"]) == (["2"], ["true"])


# ---------------------------------------------------------------------- one implementation


def _public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(cls).items()
        if callable(member) and not name.startswith("_")
    }


@pytest.mark.parametrize(
    ("blocking", "asynchronous"),
    [(StepRunClient, AsyncStepRunClient), (StepRunHandle, AsyncStepRunHandle)],
    ids=["client", "handle"],
)
def test_the_blocking_api_is_the_async_one(blocking: type, asynchronous: type) -> None:
    """Every public method of the async client exists blocking, with the same parameters
    (connect() aside: the blocking client connects in its constructor)."""
    mirrored = _public_methods(blocking)
    for name, signature in _public_methods(asynchronous).items():
        if name == "connect":
            continue
        assert name in mirrored, f"{blocking.__name__} lacks {name}"
        assert list(mirrored[name].parameters) == list(signature.parameters), name


def test_the_blocking_client_takes_every_option_of_the_async_one() -> None:
    """The blocking constructor's keyword options are ClientOptions: the async constructor's
    keyword-only parameters, with the same types."""
    signature = inspect.signature(AsyncStepRunClient.__init__, eval_str=True)
    keyword_only = {
        name: parameter.annotation
        for name, parameter in signature.parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    assert get_type_hints(ClientOptions) == keyword_only


def test_an_interrupted_blocking_call_cancels_its_coroutine() -> None:
    from steprun.client.sync import portal

    unwound = threading.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            unwound.set()

    with pytest.raises(concurrent.futures.TimeoutError):
        portal().call(slow, timeout=0.2)
    # Cancelled and unwound by the time the caller goes on; the portal still serves calls.
    assert unwound.is_set()

    async def answer() -> int:
        return 42

    assert portal().call(answer) == 42


def test_an_abandoned_blocking_iterator_closes_the_async_one() -> None:
    from steprun.client.sync import portal

    closed = threading.Event()

    async def numbers() -> Any:
        try:
            for n in range(100):
                yield n
        finally:
            closed.set()

    items = portal().iterate(numbers())
    assert [next(items), next(items)] == [0, 1]
    items.close()  # what `break` out of a for loop does
    assert closed.is_set()
