"""Fixtures of the tests that reach the fake API server over HTTP (client and CLI)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fake_apiserver import NS, FakeApiServer
from tests.support.fake_cluster import FakeCluster


@pytest.fixture(autouse=True)
def faults_are_used() -> Iterator[None]:
    """A failure injected into the fake cluster that no request met fails the test."""
    FakeCluster.made.clear()
    yield
    unused = [problem for cluster in FakeCluster.made for problem in cluster.unused()]
    FakeCluster.made.clear()
    if unused:
        pytest.fail("injected into the fake cluster but never used: " + "; ".join(unused))


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with FakeApiServer() as running:
        yield running


@pytest.fixture
def cluster(server: FakeApiServer) -> FakeCluster:
    return server.cluster


@pytest.fixture
def kubeconfig(server: FakeApiServer, tmp_path: Path) -> str:
    """A kubeconfig of the fake API server, its context in namespace ``NS`` (in unit tests
    this replaces the real cluster's kubeconfig fixture of tests/conftest.py)."""
    return server.kubeconfig(tmp_path, namespace=NS)
