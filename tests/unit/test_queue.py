"""The operator's caches and its per-key work queue (real event loop, short real delays)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from steprun.kube.backoff import Jittered
from steprun.reconcile.queue import Key, ObjectCache, PodCache, WorkQueue
from tests.unit.factories import NAME, NAMESPACE, pod, pod_name, steprun_body

KEY: Key = (NAMESPACE, NAME)
OTHER: Key = (NAMESPACE, "build-42-test")


def sr_body(resource_version: str, *, uid: str = "uid-a") -> dict[str, Any]:
    body = steprun_body(resource_version=resource_version)
    body["metadata"]["uid"] = uid
    return body


def pod_body(resource_version: str, attempt: int = 1) -> dict[str, Any]:
    body = pod("Running", name=pod_name(attempt))
    body["metadata"]["resourceVersion"] = resource_version
    return body


def rv(body: dict[str, Any] | None) -> str | None:
    return None if body is None else str(body["metadata"]["resourceVersion"])


# ---------------------------------------------------------------- ObjectCache


def test_object_cache_keys_by_namespace_and_name() -> None:
    cache = ObjectCache()
    assert cache.observe(sr_body("10")) == KEY
    cluster_scoped = {"metadata": {"name": "default", "uid": "p", "resourceVersion": "3"}}
    assert cache.observe(cluster_scoped) == ("", "default")
    assert len(cache) == 2
    assert rv(cache.get(KEY)) == "10"
    assert cache.get(OTHER) is None


@pytest.mark.parametrize(
    ("first", "second", "kept"),
    [
        pytest.param("10", "11", "11", id="newer-replaces"),
        pytest.param("11", "10", "11", id="older-ignored"),
        pytest.param("100", "99", "100", id="numeric-not-lexical"),
        pytest.param("9", "10", "10", id="numeric-not-lexical-newer"),
    ],
)
def test_object_cache_keeps_the_fresher_copy(first: str, second: str, kept: str) -> None:
    cache = ObjectCache()
    cache.observe(sr_body(first))
    cache.observe(sr_body(second))
    assert rv(cache.get(KEY)) == kept
    assert len(cache) == 1


def test_object_cache_same_version_takes_the_latest_copy() -> None:
    cache = ObjectCache()
    cache.observe(sr_body("10"))
    again = sr_body("10")
    cache.observe(again)
    assert cache.get(KEY) is again


def test_object_cache_unreadable_version_counts_as_oldest() -> None:
    cache = ObjectCache()
    cache.observe(sr_body("10"))
    cache.observe(sr_body("not-a-number"))
    assert rv(cache.get(KEY)) == "10"


def test_object_cache_new_uid_replaces_whatever_its_version() -> None:
    cache = ObjectCache()
    cache.observe(sr_body("50", uid="uid-a"))
    recreated = sr_body("7", uid="uid-b")
    cache.observe(recreated)
    assert cache.get(KEY) is recreated


@pytest.mark.parametrize(
    ("cached", "deleted", "remains"),
    [
        pytest.param(("10", "uid-a"), ("12", "uid-a"), None, id="delete-newer"),
        pytest.param(("10", "uid-a"), ("10", "uid-a"), None, id="delete-same-version"),
        pytest.param(("12", "uid-a"), ("10", "uid-a"), "12", id="stale-delete-ignored"),
        pytest.param(("12", "uid-b"), ("10", "uid-a"), None, id="delete-other-uid"),
    ],
)
def test_object_cache_delete(
    cached: tuple[str, str], deleted: tuple[str, str], remains: str | None
) -> None:
    cache = ObjectCache()
    cache.observe(sr_body(cached[0], uid=cached[1]))
    assert cache.observe(sr_body(deleted[0], uid=deleted[1]), deleted=True) == KEY
    assert rv(cache.get(KEY)) == remains
    assert len(cache) == (0 if remains is None else 1)


def test_object_cache_delete_of_unknown_object() -> None:
    cache = ObjectCache()
    assert cache.observe(sr_body("10"), deleted=True) == KEY
    assert len(cache) == 0
    cache.observe(sr_body("11"))
    assert rv(cache.get(KEY)) == "11"


# ---------------------------------------------------------------- PodCache


def test_pod_cache_indexes_pods_by_owner() -> None:
    cache = PodCache()
    cache.observe(KEY, pod_body("5", attempt=1))
    cache.observe(KEY, pod_body("6", attempt=2))
    cache.observe(OTHER, pod_body("7", attempt=1))
    assert rv(cache.get(KEY, pod_name(1))) == "5"
    assert rv(cache.get(KEY, pod_name(2))) == "6"
    assert rv(cache.get(OTHER, pod_name(1))) == "7"
    assert cache.get(KEY, pod_name(3)) is None
    assert cache.get(("ci", "unknown"), pod_name(1)) is None


@pytest.mark.parametrize(
    ("first", "second", "kept"),
    [("5", "6", "6"), ("6", "5", "6"), ("6", "6", "6"), ("10", "9", "10")],
)
def test_pod_cache_keeps_the_fresher_copy(first: str, second: str, kept: str) -> None:
    cache = PodCache()
    cache.observe(KEY, pod_body(first))
    cache.observe(KEY, pod_body(second))
    assert rv(cache.get(KEY, pod_name(1))) == kept


def test_pod_cache_delete() -> None:
    cache = PodCache()
    cache.observe(KEY, pod_body("5", attempt=1))
    cache.observe(KEY, pod_body("9", attempt=2))

    cache.observe(KEY, pod_body("4", attempt=2), deleted=True)
    assert rv(cache.get(KEY, pod_name(2))) == "9", "a stale delete must not drop a newer copy"

    cache.observe(KEY, pod_body("10", attempt=2), deleted=True)
    assert cache.get(KEY, pod_name(2)) is None
    assert rv(cache.get(KEY, pod_name(1))) == "5"

    cache.observe(KEY, pod_body("11", attempt=1), deleted=True)
    assert cache.by_owner == {}, "an owner without Pods leaves no entry behind"


def test_pod_cache_delete_of_unknown_pod_leaves_no_entry() -> None:
    cache = PodCache()
    cache.observe(KEY, pod_body("5"), deleted=True)
    assert cache.by_owner == {}


def test_pod_cache_forget() -> None:
    cache = PodCache()
    cache.observe(KEY, pod_body("5"))
    cache.observe(OTHER, pod_body("6"))
    cache.forget(KEY)
    cache.forget(("ci", "never-seen"))
    assert cache.get(KEY, pod_name(1)) is None
    assert rv(cache.get(OTHER, pod_name(1))) == "6"


# ---------------------------------------------------------------- WorkQueue


class Worker:
    """Records each run; a run waits at the gate set for its key, if any."""

    def __init__(self) -> None:
        self.runs: list[Key] = []
        self.active: dict[Key, int] = {}
        self.most_active: dict[Key, int] = {}
        self.started: dict[Key, asyncio.Event] = {}
        self.gates: dict[Key, asyncio.Event] = {}
        self.cancelled: list[Key] = []
        self.fail_first: set[Key] = set()

    def gate(self, key: Key) -> asyncio.Event:
        self.gates[key] = asyncio.Event()
        self.started[key] = asyncio.Event()
        return self.gates[key]

    async def __call__(self, key: Key) -> None:
        self.runs.append(key)
        # The gate in place when the run starts holds it, so a test can hold runs one by one.
        gate = self.gates.get(key)
        self.active[key] = self.active.get(key, 0) + 1
        self.most_active[key] = max(self.most_active.get(key, 0), self.active[key])
        try:
            if key in self.started:
                self.started[key].set()
            if gate is not None:
                await gate.wait()
            if key in self.fail_first:
                self.fail_first.discard(key)
                raise RuntimeError("reconcile crashed")
        except asyncio.CancelledError:
            self.cancelled.append(key)
            raise
        finally:
            self.active[key] -= 1

    def count(self, key: Key = KEY) -> int:
        return self.runs.count(key)


async def settle(predicate: Callable[[], bool] = lambda: True, within: float = 1.0) -> None:
    """Lets the loop run until ``predicate`` holds and nothing is runnable any more."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)
    for _ in range(10):
        await asyncio.sleep(0)


async def test_one_add_runs_once() -> None:
    worker = Worker()
    queue = WorkQueue(worker)
    queue.add(KEY)
    await settle(lambda: worker.count() == 1)
    await asyncio.sleep(0.02)
    assert worker.runs == [KEY]


async def test_events_during_a_run_cause_exactly_one_more_run() -> None:
    worker = Worker()
    queue = WorkQueue(worker)
    gate = worker.gate(KEY)
    queue.add(KEY)
    await asyncio.wait_for(worker.started[KEY].wait(), 1)

    for _ in range(5):
        queue.add(KEY)
    await settle()
    assert worker.count() == 1, "no second run while the first is in progress"

    gate.set()
    await settle(lambda: worker.count() == 2)
    await asyncio.sleep(0.02)
    assert worker.count() == 2
    assert worker.most_active[KEY] == 1


async def test_an_event_during_the_rerun_causes_one_more() -> None:
    worker = Worker()
    queue = WorkQueue(worker)
    gate = worker.gate(KEY)
    queue.add(KEY)
    await asyncio.wait_for(worker.started[KEY].wait(), 1)
    queue.add(KEY)

    # Release the first run; the rerun it causes blocks at a new gate.
    gate.set()
    gate = worker.gate(KEY)
    await asyncio.wait_for(worker.started[KEY].wait(), 1)
    assert worker.count() == 2
    queue.add(KEY)
    queue.add(KEY)
    gate.set()
    await settle(lambda: worker.count() == 3)
    await asyncio.sleep(0.02)
    assert worker.count() == 3
    assert worker.most_active[KEY] == 1


async def test_different_keys_run_concurrently() -> None:
    worker = Worker()
    queue = WorkQueue(worker)
    first, second = worker.gate(KEY), worker.gate(OTHER)
    queue.add(KEY)
    queue.add(OTHER)
    # Both runs are in progress at once: neither waits for the other to finish.
    await asyncio.wait_for(worker.started[KEY].wait(), 1)
    await asyncio.wait_for(worker.started[OTHER].wait(), 1)
    assert worker.active == {KEY: 1, OTHER: 1}
    first.set()
    second.set()
    await settle(lambda: worker.active == {KEY: 0, OTHER: 0})
    assert sorted(worker.runs) == sorted([KEY, OTHER])


async def test_concurrency_limit_holds_runs_of_other_keys() -> None:
    worker = Worker()
    queue = WorkQueue(worker, concurrency=1)
    gate = worker.gate(KEY)
    queue.add(KEY)
    await asyncio.wait_for(worker.started[KEY].wait(), 1)
    queue.add(OTHER)
    await settle()
    assert worker.count(OTHER) == 0
    gate.set()
    await settle(lambda: worker.count(OTHER) == 1)
    assert worker.runs == [KEY, OTHER]


async def test_finishing_a_step_never_waits_behind_steps_being_started() -> None:
    worker = Worker()
    starting = [(NAMESPACE, f"new-{i}") for i in range(3)]
    lanes = {key: "start" for key in starting} | {KEY: "follow"}
    queue = WorkQueue(worker, concurrency=1, lane=lanes.__getitem__)
    gates = [worker.gate(key) for key in starting]
    for key in starting:
        queue.add(key)
    await asyncio.wait_for(worker.started[starting[0]].wait(), 1)

    queue.add(KEY)  # a step whose Pod just ended

    await settle(lambda: worker.count(KEY) == 1)
    assert worker.count(starting[1]) == 0, "starts still take their turn, one at a time"
    for gate in gates:
        gate.set()
    await settle(lambda: all(worker.count(key) == 1 for key in starting))


async def test_each_lane_has_its_own_limit() -> None:
    worker = Worker()
    following = [(NAMESPACE, f"running-{i}") for i in range(2)]
    queue = WorkQueue(worker, concurrency=1, lane=lambda key: "follow")
    gate = worker.gate(following[0])
    for key in following:
        queue.add(key)
    await asyncio.wait_for(worker.started[following[0]].wait(), 1)
    await settle()
    assert worker.count(following[1]) == 0
    gate.set()
    await settle(lambda: worker.count(following[1]) == 1)


async def test_a_failed_run_does_not_block_the_key() -> None:
    worker = Worker()
    worker.fail_first.add(KEY)
    queue = WorkQueue(worker)
    queue.add(KEY)
    await settle(lambda: worker.count() == 1)
    queue.add(KEY)
    await settle(lambda: worker.count() == 2)


async def test_an_event_during_a_failed_run_is_not_lost() -> None:
    worker = Worker()
    worker.fail_first.add(KEY)
    gate = worker.gate(KEY)
    queue = WorkQueue(worker)
    queue.add(KEY)
    await asyncio.wait_for(worker.started[KEY].wait(), 1)
    queue.add(KEY)
    gate.set()
    await settle()
    await asyncio.sleep(0.02)
    assert worker.count() == 2


async def test_add_after_fires_once() -> None:
    worker = Worker()
    queue = WorkQueue(worker)
    queue.add_after(KEY, 0.02)
    await settle()
    assert worker.count() == 0, "not before its time"
    await settle(lambda: worker.count() == 1)
    await asyncio.sleep(0.05)
    assert worker.count() == 1


async def test_add_after_negative_delay_fires_at_once() -> None:
    worker = Worker()
    queue = WorkQueue(worker)
    queue.add_after(KEY, -5)
    await settle(lambda: worker.count() == 1, within=0.05)


async def test_add_after_earliest_request_wins() -> None:
    worker = Worker()
    queue = WorkQueue(worker)
    loop = asyncio.get_running_loop()
    began = loop.time()
    queue.add_after(KEY, 0.3)
    queue.add_after(KEY, 0.02)
    queue.add_after(KEY, 0.2)
    await settle(lambda: worker.count() == 1)
    assert loop.time() - began < 0.2
    await asyncio.sleep(0.35)
    assert worker.count() == 1, "the later requests were replaced, not added"


async def test_add_after_per_key() -> None:
    worker = Worker()
    queue = WorkQueue(worker)
    queue.add_after(KEY, 0.01)
    queue.add_after(OTHER, 0.03)
    await settle(lambda: len(worker.runs) == 2)
    assert worker.runs == [KEY, OTHER]


async def test_add_after_firing_during_a_run_causes_one_more_run() -> None:
    worker = Worker()
    queue = WorkQueue(worker)
    gate = worker.gate(KEY)
    queue.add(KEY)
    await asyncio.wait_for(worker.started[KEY].wait(), 1)
    queue.add_after(KEY, 0.01)
    await asyncio.sleep(0.03)
    assert worker.count() == 1
    gate.set()
    await settle(lambda: worker.count() == 2)
    await asyncio.sleep(0.02)
    assert worker.count() == 2


async def test_add_after_can_be_requested_again_after_firing() -> None:
    worker = Worker()
    queue = WorkQueue(worker)
    queue.add_after(KEY, 0.01)
    await settle(lambda: worker.count() == 1)
    queue.add_after(KEY, 0.01)
    await settle(lambda: worker.count() == 2)


async def test_drain_cancels_timers() -> None:
    worker = Worker()
    queue = WorkQueue(worker)
    queue.add_after(KEY, 0.02)
    queue.add_after(OTHER, 0.03)
    await queue.drain()
    await asyncio.sleep(0.06)
    assert worker.runs == []


async def test_drain_cancels_runs_and_leaves_the_queue_usable() -> None:
    worker = Worker()
    queue = WorkQueue(worker)
    worker.gate(KEY)
    queue.add(KEY)
    await asyncio.wait_for(worker.started[KEY].wait(), 1)
    queue.add(KEY)

    await asyncio.wait_for(queue.drain(), 1)
    assert worker.cancelled == [KEY]
    assert worker.count() == 1, "a drained queue does not start the pending run"

    del worker.gates[KEY]
    queue.add(KEY)
    await settle(lambda: worker.count() == 2)


# ---------------------------------------------------------------- per-key backoff


async def test_rate_limited_requeues_back_off_per_key_and_forget_resets() -> None:
    seen: list[Key] = []

    async def work(key: Key) -> None:
        seen.append(key)

    queue = WorkQueue(work, backoff=Jittered(initial=1.0, maximum=8.0))
    delays = [queue.add_rate_limited(KEY) for _ in range(5)]
    assert [queue.failures(KEY), queue.failures(OTHER)] == [5, 0]
    for failures, delay in enumerate(delays, start=1):
        ceiling = min(8.0, 2.0 ** (failures - 1))
        assert ceiling / 2 <= delay <= ceiling
    queue.forget(KEY)
    assert queue.failures(KEY) == 0
    assert queue.add_rate_limited(KEY) <= 1.0
    await queue.drain()


async def test_rate_limited_requeue_honours_retry_after_and_replaces_an_earlier_timer() -> None:
    async def work(key: Key) -> None:
        return None

    queue = WorkQueue(work)
    queue.add_after(KEY, 0.01)
    delay = queue.add_rate_limited(KEY, retry_after=5.0)
    assert delay == 5.0
    assert queue.pending_timers() == 1
    loop = asyncio.get_running_loop()
    assert queue._timers[KEY].when() - loop.time() > 4.5
    queue.discard(KEY)
    assert queue.pending_timers() == 0
    await queue.drain()


async def test_a_crashing_work_function_is_retried_with_backoff() -> None:
    calls = 0

    async def work(key: Key) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("bug")

    queue = WorkQueue(work, backoff=Jittered(initial=0.01, maximum=0.02))
    queue.add(KEY)
    for _ in range(50):
        await asyncio.sleep(0.01)
        if calls >= 3:
            break
    assert calls >= 3
    assert queue.failures(KEY) >= 2
    await queue.drain()


# ---------------------------------------------------------------- bounded memory


def test_a_terminal_steprun_is_cached_as_its_ttl_fields_only() -> None:
    cache = ObjectCache()
    body = sr_body("10")
    body["spec"]["ttlSecondsAfterFinished"] = 60
    body["spec"]["context"] = {"inputs": {"big": "x" * 100_000}}
    body["status"] = {
        "phase": "Succeeded",
        "completionTime": "2024-05-01T10:01:00Z",
        "outputs": {"big": "y" * 4000},
        "attempts": [{"attempt": 1, "podName": "p", "message": "m" * 1000}],
    }
    cache.observe(body)
    cached = cache.get(KEY)
    assert cached is not None
    assert cached["spec"] == {"ttlSecondsAfterFinished": 60}
    assert cached["status"] == {"phase": "Succeeded", "completionTime": "2024-05-01T10:01:00Z"}
    assert cached["metadata"]["uid"] == "uid-a"
    assert len(repr(cached)) < 1000


def test_pods_of_a_terminal_steprun_are_kept_only_while_they_hold_the_finalizer() -> None:
    cache = PodCache(finalizer="steprun.dev/step-tracking")
    held = pod_body("10")
    held["metadata"]["finalizers"] = ["steprun.dev/step-tracking"]
    released = pod_body("11", attempt=2)
    cache.observe(KEY, held, slim=True)
    cache.observe(KEY, released, slim=True)
    assert set(cache.all(KEY)) == {pod_name(1)}
    assert "status" not in cache.all(KEY)[pod_name(1)]
    cache.observe(KEY, pod_body("12"), slim=True)
    assert len(cache) == 0
