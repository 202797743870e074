"""The kopf wiring: settings that keep kopf's own work per watch event to what steprun uses."""

from __future__ import annotations

import asyncio
import copy
from typing import Any, cast

import kopf
import pytest
from kopf._cogs.structs import bodies, ephemera, references
from kopf._core.actions import lifecycles
from kopf._core.engines import indexing
from kopf._core.reactor import inventory, processing

from steprun.config import OperatorConfig
from steprun.handlers.kopf_handlers import configure_settings, register
from steprun.reconcile.reconciler import Reconciler
from steprun.render.names import LABEL_NAME
from tests.support.fake_kube import FakeKube

PODS = references.Resource(
    group="",
    version="v1",
    plural="pods",
    kind="Pod",
    namespaced=True,
    verbs=frozenset({"list", "watch"}),
)


def pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "build-1",
            "namespace": "ci",
            "uid": "pod-uid",
            "resourceVersion": "7",
            "labels": {LABEL_NAME: "build"},
            "ownerReferences": [
                {"apiVersion": "steprun.dev/v1alpha1", "kind": "StepRun", "name": "build"}
            ],
        },
        "spec": {"containers": [{"name": "step", "image": "busybox"}]},
        "status": {"phase": "Running"},
    }


def test_configured_settings_post_no_events_of_their_own() -> None:
    settings = kopf.OperatorSettings()
    configure_settings(settings, OperatorConfig())
    assert settings.posting.enabled is False


async def test_a_watch_event_is_not_deep_copied_for_a_diff_nothing_uses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = OperatorConfig()
    reconciler = Reconciler(FakeKube(), config)  # type: ignore[arg-type]
    registry = kopf.OperatorRegistry()
    register(registry, reconciler, config)
    settings = kopf.OperatorSettings()
    configure_settings(settings, config)
    body = pod()
    copied: list[Any] = []
    real_deepcopy = copy.deepcopy

    def counting(value: Any, *args: Any, **kwargs: Any) -> Any:
        # kopf copies dict(body): a new dict holding the body's own spec.
        if isinstance(value, dict) and value.get("spec") is body["spec"]:
            copied.append(value)
        return real_deepcopy(value, *args, **kwargs)

    monkeypatch.setattr(copy, "deepcopy", counting)
    await processing.process_resource_event(
        lifecycle=lifecycles.all_at_once,
        indexers=indexing.OperatorIndexers(),
        registry=registry,
        settings=settings,
        memories=inventory.ResourceMemories(),
        memobase=cast(ephemera.AnyMemo, ephemera.Memo()),
        resource=PODS,
        raw_event=cast(bodies.RawEvent, {"type": "MODIFIED", "object": body}),
        event_queue=asyncio.Queue(),
        no_throttling=True,
    )

    assert reconciler.pods.get(("ci", "build"), "build-1") is not None, "the handler ran"
    assert copied == []
    await reconciler.queue.drain()
