"""One reading of ownerReferences: which StepRun owns, or controls, an object."""

from __future__ import annotations

from typing import Any

import pytest

from steprun.api.models import API_VERSION
from steprun.render.owners import (
    controller_uid,
    from_namesake,
    is_controlled_by,
    is_owned_by,
    owner_name,
)
from tests.unit.factories import NAME, UID, steprun


def ref(
    uid: str = UID, *, name: str = NAME, controller: bool = True, **over: Any
) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "StepRun",
        "name": name,
        "uid": uid,
        "controller": controller,
        **over,
    }


def body(*refs: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "child", "ownerReferences": list(refs)}}


@pytest.mark.parametrize(
    ("child", "owned", "controlled", "controller", "name"),
    [
        pytest.param(body(), False, False, None, None, id="no-owner"),
        pytest.param(body(ref()), True, True, UID, NAME, id="controlled"),
        pytest.param(body(ref(controller=False)), True, False, None, NAME, id="shared-claim"),
        pytest.param(
            body(ref("other", name="a", controller=False), ref()),
            True,
            True,
            UID,
            NAME,
            id="controller-among-owners",
        ),
        pytest.param(body(ref(kind="Job")), False, False, None, None, id="another-kind"),
        pytest.param(
            body(ref(apiVersion="example.com/v1")), False, False, None, None, id="another-group"
        ),
        pytest.param(
            {"metadata": {"ownerReferences": [{"uid": UID}]}},
            False,
            False,
            None,
            None,
            id="a-bare-uid",
        ),
    ],
)
def test_who_owns_a_child(
    child: dict[str, Any], owned: bool, controlled: bool, controller: str | None, name: str | None
) -> None:
    assert is_owned_by(child, UID) is owned
    assert is_controlled_by(child, UID) is controlled
    assert controller_uid(child) == controller
    assert owner_name(child) == name


@pytest.mark.parametrize(
    ("child", "expected"),
    [
        pytest.param(body(ref()), False, id="its-own"),
        pytest.param(body(ref("old-uid")), True, id="an-earlier-namesake"),
        pytest.param(body(ref("old-uid", name="other")), False, id="another-steprun"),
        pytest.param(body(), False, id="no-owner"),
    ],
)
def test_a_child_of_an_earlier_namesake(child: dict[str, Any], expected: bool) -> None:
    assert from_namesake(child, steprun()) is expected
