"""The in-memory API server keeps the rules the tests built on it rely on, the same whether the
reconciler's fake access layer calls it directly or the real access layer reaches it over HTTP.

Each test runs twice: against ``FakeKube`` (what the reconciler tests use) and against
``steprun.kube.client.Kube`` over ``FakeApiServer`` (what the client and CLI tests use), so
the two ways in cannot drift apart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from steprun.api.resources import resource
from steprun.kube.client import Kube
from steprun.kube.errors import AlreadyExists, Conflict, NotFound, Refused, Transient
from tests.support.fake_apiserver import FakeApiServer
from tests.support.fake_cluster import FakeCluster
from tests.support.fake_kube import FakeKube

NS = "ns1"
FINALIZER = "steprun.dev/tracking"


# In the test's own event loop: the HTTP session of the access layer belongs to one loop.
@pytest_asyncio.fixture(params=["in-memory", "http"], loop_scope="function")
async def kube(request: pytest.FixtureRequest, cluster: FakeCluster) -> AsyncIterator[Any]:
    if request.param == "in-memory":
        yield FakeKube(cluster)
        return
    with FakeApiServer(cluster) as server:
        real = Kube.over(server.async_api_client())
        yield real
        await real.close()


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()


def config_map(name: str, namespace: str = NS, **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, **metadata},
        "data": {"k": "v"},
    }


def pod(name: str, **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, **metadata},
        "spec": {"containers": [{"name": "step", "image": "b"}]},
    }


async def test_create_is_refused_for_a_name_taken_and_reads_of_nothing_are_not_found(
    kube: Any,
) -> None:
    created = await kube.create(config_map("a"))
    assert created["metadata"]["uid"] and created["metadata"]["resourceVersion"]
    with pytest.raises(AlreadyExists):
        await kube.create(config_map("a"))
    # The same name in another namespace is another object.
    await kube.create(config_map("a", namespace="ns2"))
    with pytest.raises(NotFound):
        await kube.get("ConfigMap", NS, "b")
    assert await kube.get_or_none("ConfigMap", NS, "b") is None
    assert await kube.delete("ConfigMap", NS, "b") is False


async def test_a_write_from_a_stale_resource_version_is_a_conflict(
    kube: Any, cluster: FakeCluster
) -> None:
    async def set_phase(phase: str, seen: dict[str, Any]) -> dict[str, Any]:
        version = seen["metadata"]["resourceVersion"]
        written: dict[str, Any] = await kube.patch_status(
            "StepRun", NS, "p", {"phase": phase}, resource_version=version
        )
        return written

    read = await kube.create(
        {**pod("p"), "apiVersion": "steprun.dev/v1alpha1", "kind": "StepRun", "spec": {}}
    )
    first = await set_phase("Pending", read)
    assert first["status"] == {"phase": "Pending"}
    assert int(first["metadata"]["resourceVersion"]) > int(read["metadata"]["resourceVersion"])
    with pytest.raises(Conflict):
        await set_phase("Running", read)
    # A write that changes nothing leaves the version (and the watches) alone.
    again = await set_phase("Pending", first)
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert cluster.get("StepRun", NS, "p")["status"] == {"phase": "Pending"}


async def test_a_delete_for_another_uid_leaves_the_namesake(
    kube: Any, cluster: FakeCluster
) -> None:
    old = await kube.create(config_map("c"))
    cluster.remove("ConfigMap", NS, "c")
    await kube.create(config_map("c"))
    with pytest.raises(Conflict):
        await kube.delete("ConfigMap", NS, "c", uid=old["metadata"]["uid"])
    assert cluster.find("ConfigMap", NS, "c") is not None
    assert await kube.delete("ConfigMap", NS, "c") is True
    assert cluster.find("ConfigMap", NS, "c") is None


async def test_finalizers_hold_a_deleted_object_until_the_last_is_removed(
    kube: Any, cluster: FakeCluster
) -> None:
    await kube.create(pod("p", finalizers=["other.dev/keep", FINALIZER]))
    assert await kube.delete("Pod", NS, "p") is True
    held = await kube.get("Pod", NS, "p")
    assert held["metadata"]["deletionTimestamp"]
    # Someone else removes theirs between our read and our write.
    cluster.interleave(
        "remove_finalizer" if isinstance(kube, FakeKube) else "patch",
        "Pod",
        lambda: cluster.remove_finalizer("Pod", NS, "p", "other.dev/keep"),
    )
    assert await kube.remove_finalizer("Pod", NS, held, FINALIZER) is True
    assert cluster.find("Pod", NS, "p") is None, "no finalizer left: gone"
    assert await kube.remove_finalizer("Pod", NS, held, FINALIZER) is False


async def test_lists_select_by_label_field_and_namespace(kube: Any) -> None:
    await kube.create(config_map("a", labels={"team": "web"}))
    await kube.create(config_map("b", labels={"team": "data"}))
    await kube.create(config_map("c", namespace="ns2", labels={"team": "web"}))

    async def names(namespace: str | None, **selectors: str) -> list[str]:
        found = await kube.list("ConfigMap", namespace, **selectors)
        return [item["metadata"]["name"] for item in found]

    assert await names(NS) == ["a", "b"]
    assert await names(NS, label_selector="team=web") == ["a"]
    assert await names(None, label_selector="team=web") == ["a", "c"]
    assert await names(None, field_selector="metadata.name=b") == ["b"]
    assert await names("ns3") == []


async def test_injected_failures_arrive_as_the_access_layers_errors_once_each(
    kube: Any, cluster: FakeCluster
) -> None:
    cluster.fail("create", "ConfigMap", Refused(422, "Invalid", "data: Too long"))
    cluster.fail("get", "ConfigMap", Transient(503, "ServiceUnavailable", "etcd leader change"))
    with pytest.raises(Refused, match="data: Too long"):
        await kube.create(config_map("x"))
    await kube.create(config_map("x"))
    with pytest.raises(Transient) as raised:
        await kube.get("ConfigMap", NS, "x")
    assert raised.value.status == 503
    assert (await kube.get("ConfigMap", NS, "x"))["data"] == {"k": "v"}


# ---------------------------------------------------------------- watches, over HTTP


async def test_a_watch_replays_from_a_version_and_answers_410_once_compacted() -> None:
    cluster = FakeCluster()
    with FakeApiServer(cluster) as server:
        kube = Kube.over(server.async_api_client())
        start = cluster.put(config_map("w"))["metadata"]["resourceVersion"]
        cluster.put(config_map("other", labels={"team": "data"}))
        cluster.update("ConfigMap", NS, "w", lambda body: body["data"].update(k="changed"))
        cluster.remove("ConfigMap", NS, "w")
        path = resource("ConfigMap").path(NS)
        query = {
            "resourceVersion": start,
            "timeoutSeconds": "1",
            "fieldSelector": "metadata.name=w",
        }
        events = [event async for event in kube.watch(path, query=query)]
        assert [event["type"] for event in events] == ["MODIFIED", "DELETED"]
        assert events[0]["object"]["data"] == {"k": "changed"}

        cluster.compact()
        (gone,) = [event async for event in kube.watch(path, query=query)]
        assert (gone["type"], gone["object"]["code"]) == ("ERROR", 410)
        _, listed = cluster.list("ConfigMap", NS)
        fresh = [e async for e in kube.watch(path, query={**query, "resourceVersion": listed})]
        assert fresh == []
        await kube.close()


def test_a_fault_no_request_met_is_reported_until_it_is_used() -> None:
    cluster = FakeCluster()
    cluster.fail("get", "Pod", Transient(503, "ServiceUnavailable", "busy", None))
    cluster.interleave("create", "Pod", lambda: None)
    assert cluster.unused() == [
        "1 failure(s) injected into get Pod never raised",
        "1 writer(s) interleaved before create Pod never ran",
    ]

    with pytest.raises(Transient):
        cluster.enter("get", "Pod", "step-1")
    cluster.enter("create", "Pod", "step-1")

    assert cluster.unused() == []
