"""Which replica is active: our reading of the peering object agrees with kopf's own decision,
and the readiness answer that the chart's readiness probe asks for."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
import pytest
from kopf._cogs.aiokits.aiotoggles import Toggle
from kopf._cogs.structs.references import Resource
from kopf._core.engines.peering import process_peering_event

from steprun.activity import STALE_POLLS, Activity, is_active
from steprun.kube.errors import Transient
from tests.support.fake_kube import FakeKube

ME, PRIORITY = "steprun-operator-1", 99
NOW = datetime.now(UTC)


def record(priority: int, seen_ago: float = 1, lifetime: int = 60) -> dict[str, Any]:
    seen = (NOW - timedelta(seconds=seen_ago)).isoformat()
    return {"priority": priority, "lastseen": seen, "lifetime": lifetime}


CASES = {
    "alone": {ME: record(PRIORITY)},
    "empty": {},
    "higher-live": {ME: record(PRIORITY), "steprun-operator-0": record(100)},
    "higher-dead": {ME: record(PRIORITY), "steprun-operator-0": record(100, seen_ago=120)},
    "lower-live": {ME: record(PRIORITY), "steprun-operator-2": record(98)},
    "equal-live": {ME: record(PRIORITY), "other": record(PRIORITY)},
    "higher-short-lifetime-dead": {"steprun-operator-0": record(100, seen_ago=11, lifetime=10)},
}


async def kopf_pauses(records: dict[str, Any]) -> bool:
    settings = kopf.OperatorSettings()
    settings.peering.name = "steprun"
    settings.peering.priority = PRIORITY
    paused = Toggle(False)
    awake = asyncio.Event()
    awake.set()  # kopf then does not wait for peers to expire, nor touch its own record
    await process_peering_event(
        raw_event={
            "type": "MODIFIED",
            "object": {"metadata": {"name": "steprun"}, "status": records},
        },
        namespace=None,
        resource=Resource(group="kopf.dev", version="v1", plural="clusterkopfpeerings"),
        identity=ME,  # type: ignore[arg-type]
        settings=settings,
        autoclean=False,
        stream_pressure=awake,
        conflicts_found=paused,
    )
    return paused.is_on()


@pytest.mark.parametrize("records", list(CASES.values()), ids=list(CASES))
async def test_is_active_agrees_with_kopf(records: dict[str, Any]) -> None:
    assert is_active(records, ME, PRIORITY, datetime.now(UTC)) is not await kopf_pauses(records)


def peering(name: str, records: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "kopf.dev/v1",
        "kind": "ClusterKopfPeering",
        "metadata": {"name": name},
        "status": records,
    }


def unreachable(times: int) -> list[Transient]:
    """What the access layer raises when the API server refuses connections."""
    return [Transient(0, "", "Cannot connect to host: connection refused")] * times


async def test_polls_flip_activity_and_tell_listeners() -> None:
    changes: list[bool] = []
    activity = Activity(peering="steprun", identity=ME, priority=PRIORITY)
    activity.on_change.append(changes.append)
    # The records are dated from NOW (import time): polling at NOW keeps them as written
    # however long after collection the test runs.
    kube = FakeKube()
    kube.put(peering("steprun", CASES["higher-live"]))
    # Another operator's peering, in which this replica would be active: never read.
    kube.put(peering("another", CASES["alone"]))
    await activity.poll_once(kube, NOW)
    assert not activity.active and changes == []
    records = CASES["higher-dead"]
    kube.cluster.update("ClusterKopfPeering", None, "steprun", lambda o: o.update(status=records))
    await activity.poll_once(kube, NOW)
    assert activity.active and changes == [True]
    assert kube.count("list", "ClusterKopfPeering") == 2


async def test_standalone_is_always_active() -> None:
    activity = Activity(peering="", identity=ME, priority=0)
    kube = FakeKube()
    await activity.poll_once(kube, datetime.now(UTC))
    assert activity.active
    assert kube.count("list", "ClusterKopfPeering") == 0, "a standalone replica asks no one"


async def test_readiness_means_started_reachable_and_not_stopping() -> None:
    activity = Activity(peering="steprun", identity=ME, priority=PRIORITY)
    assert activity.ready() == (False, "starting: the watches are not established yet")
    activity.started = True
    assert activity.ready() == (True, "standing by")
    kube = FakeKube()
    kube.fail("list", "ClusterKopfPeering", *unreachable(STALE_POLLS))
    for _ in range(STALE_POLLS):
        await activity.poll_once(kube, datetime.now(UTC))
    ok, why = activity.ready()
    assert not ok and "did not answer" in why
    # The API server answers again (no peering object: standing alone).
    await activity.poll_once(kube, datetime.now(UTC))
    assert activity.ready() == (True, "active")
    activity.stopping = True
    assert activity.ready() == (False, "stopping")
