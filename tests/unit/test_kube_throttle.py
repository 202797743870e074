"""The access layer's request path: client-side QPS and burst, the server's 429s, no env lookups."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from steprun.kube.client import Kube, api_client
from steprun.kube.errors import Transient
from steprun.kube.throttle import DEFAULT_HOLD_SECONDS, Throttle
from tests.support.fake_apiserver import FakeApiServer


class Clock:
    """Time that moves only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


async def test_a_burst_goes_at_once_then_requests_are_spaced_by_the_rate() -> None:
    clock = Clock()
    throttle = Throttle(qps=10, burst=3, clock=clock, sleep=clock.sleep)

    for _ in range(5):
        await throttle.acquire()

    assert clock.slept == [0.1, 0.1]


async def test_concurrent_requests_beyond_the_burst_queue_up_one_interval_apart() -> None:
    now = 100.0

    async def sleep(_: float) -> None:
        await asyncio.sleep(0)  # time stands still: all four ask at the same instant

    throttle = Throttle(qps=4, burst=1, clock=lambda: now, sleep=sleep)
    waits = await asyncio.gather(*(throttle.acquire() for _ in range(4)))
    assert sorted(waits) == [0.0, 0.25, 0.5, 0.75]


async def test_without_a_rate_nothing_waits() -> None:
    clock = Clock()
    throttle = Throttle(qps=0, clock=clock, sleep=clock.sleep)
    for _ in range(1000):
        await throttle.acquire()
    assert clock.slept == []


async def test_a_hold_delays_every_request_until_it_passes() -> None:
    clock = Clock()
    throttle = Throttle(qps=0, clock=clock, sleep=clock.sleep)
    throttle.hold(3)
    throttle.hold(1)  # a shorter ask does not shorten the longer one

    await throttle.acquire()
    await throttle.acquire()

    assert clock.slept == [3.0]


class FakeApi:
    """Answers the access layer's call_api like kubernetes_asyncio's ApiClient would."""

    def __init__(self, answers: list[Exception | dict[str, Any]]) -> None:
        self.answers = answers

    async def call_api(self, *_: Any, **__: Any) -> dict[str, Any]:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def close(self) -> None:
        return None


def too_many_requests(retry_after: str | None) -> k8s.ApiException:
    error = k8s.ApiException(status=429, reason="Too Many Requests")
    error.headers = {"Retry-After": retry_after} if retry_after else {}
    error.body = '{"kind":"Status","reason":"TooManyRequests","message":"too many requests"}'
    return error


@pytest.mark.parametrize(
    ("retry_after", "held"), [("4", 4.0), (None, DEFAULT_HOLD_SECONDS)], ids=["header", "none"]
)
async def test_a_429_holds_the_next_requests_as_priority_and_fairness_asks(
    retry_after: str | None, held: float
) -> None:
    clock = Clock()
    throttle = Throttle(clock=clock, sleep=clock.sleep)
    ok = {"kind": "Pod", "metadata": {"name": "p"}}
    kube = Kube(FakeApi([too_many_requests(retry_after), ok]), throttle=throttle)  # type: ignore[arg-type]

    with pytest.raises(Transient) as raised:
        await kube.get("Pod", "ns", "p")
    assert raised.value.status == 429
    assert await kube.get("Pod", "ns", "p") == ok

    assert clock.slept == [held]


@contextlib.contextmanager
def serving() -> Iterator[FakeApiServer]:
    """The fake API server on loopback, serving Pod p1."""
    with FakeApiServer() as server:
        server.cluster.put(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p1", "namespace": "ns"}}
        )
        yield server


async def test_proxy_variables_of_the_environment_are_not_looked_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Honoured implicitly, this would send the request to a port nobody listens on.
    for variable in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with serving() as api_server:
        configuration = k8s.Configuration(host=api_server.url)
        kube = Kube(api_client(configuration))

        assert (await kube.get("Pod", "ns", "p1"))["metadata"]["name"] == "p1"
        await kube.close()


async def test_an_explicit_proxy_is_used() -> None:
    with serving() as api_server:
        configuration = k8s.Configuration(host=api_server.url)
        # Nothing listens there: the request must go to the proxy and fail to connect.
        kube = Kube(api_client(configuration, proxy="http://127.0.0.1:9"))

        with pytest.raises(Transient) as raised:
            await kube.get("Pod", "ns", "p1")
        assert raised.value.reason == "ConnectionError"
        await kube.close()
