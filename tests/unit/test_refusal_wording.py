"""A spec the models refuse is said the same way by the CLI, the client and the operator."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from steprun.cli.rendering import RenderRefused, load_steprun
from steprun.cli.spec_args import SpecArgumentError, _validate
from steprun.client.errors import InvalidStepRun, invalid_spec
from steprun.config import OperatorConfig
from steprun.reconcile.reconciler import Reconciler
from tests.support.fake_kube import FakeKube

SPEC = {"image": "busybox:1.36", "timeoutSeconds": "soon"}
SAID = (
    'spec.timeoutSeconds: Invalid value: "soon": Input should be a valid integer, unable to '
    "parse string as an integer"
)
STEPRUN: dict[str, Any] = {
    "apiVersion": "steprun.dev/v1alpha1",
    "kind": "StepRun",
    "metadata": {"name": "bad", "namespace": "ci", "uid": "u-1", "resourceVersion": "1"},
    "spec": SPEC,
}


def test_steprun_render_says_it() -> None:
    with pytest.raises(RenderRefused) as refused:
        load_steprun(yaml.safe_dump(STEPRUN), None)
    assert str(refused.value) == f"invalid StepRun: {SAID}"


def test_the_cli_flags_say_it() -> None:
    with pytest.raises(SpecArgumentError) as refused:
        _validate(SPEC)
    assert str(refused.value) == f"invalid step: {SAID}"


def test_the_client_says_it() -> None:
    from pydantic import ValidationError

    from steprun.api.models import StepRunSpec

    with pytest.raises(ValidationError) as caught:
        StepRunSpec.model_validate(SPEC)
    error = invalid_spec(caught.value)
    assert isinstance(error, InvalidStepRun) and str(error) == f"invalid StepRun: {SAID}"


async def test_the_operator_says_it_in_the_status() -> None:
    kube = FakeKube()
    rec = Reconciler(kube, OperatorConfig(events="off"))  # type: ignore[arg-type]
    rec.stepruns.observe(kube.put(STEPRUN))

    await rec.reconcile(("ci", "bad"))

    status = (kube.find("StepRun", "ci", "bad") or {})["status"]
    assert status["message"] == f"the operator cannot read this StepRun: {SAID}"
    await rec.queue.drain()


async def test_the_operator_posts_it_about_the_steprun_it_cannot_read() -> None:
    kube = FakeKube()
    rec = Reconciler(kube, OperatorConfig(events="warnings"))  # type: ignore[arg-type]
    rec.stepruns.observe(kube.put(STEPRUN))

    await rec.reconcile(("ci", "bad"))

    [event] = kube.of_kind("Event")
    assert (event["type"], event["reason"]) == ("Warning", "InvalidSpec")
    assert event["message"] == f"the operator cannot read this StepRun: {SAID}"
    assert {k: event["involvedObject"][k] for k in ("kind", "name", "namespace", "uid")} == {
        "kind": "StepRun",
        "name": "bad",
        "namespace": "ci",
        "uid": "u-1",
    }
    await rec.queue.drain()
