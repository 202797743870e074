from __future__ import annotations

from typing import Any

import pytest

from steprun.observe.mounts import mount_failure


def event(reason: str, message: str, when: str, type_: str = "Warning") -> dict[str, Any]:
    return {"reason": reason, "message": message, "type": type_, "lastTimestamp": when}


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([], None),
        ([event("Scheduled", "assigned", "2024-05-01T10:00:00Z", "Normal")], None),
        (
            [
                event("FailedMount", "MountVolume.SetUp failed: older", "2024-05-01T10:00:01Z"),
                event("FailedMount", "MountVolume.SetUp failed: newer", "2024-05-01T10:00:09Z"),
                event("BackOff", "unrelated", "2024-05-01T10:00:10Z"),
            ],
            ("FailedMount", "MountVolume.SetUp failed: newer"),
        ),
        (
            [
                {
                    "reason": "FailedAttachVolume",
                    "message": "Multi-Attach error for volume pvc-1",
                    "eventTime": "2024-05-01T10:00:02.000000Z",
                }
            ],
            ("FailedAttachVolume", "Multi-Attach error for volume pvc-1"),
        ),
    ],
    ids=["none", "no-failure", "latest-mount-failure", "attach-failure-with-event-time"],
)
def test_mount_failure(events: list[dict[str, Any]], expected: tuple[str, str] | None) -> None:
    assert mount_failure(events) == expected


def test_failures_of_the_operators_own_volumes_are_not_the_workspaces() -> None:
    events = [
        event(
            "FailedMount",
            'MountVolume.SetUp failed for volume "pvc-1" : bad',
            "2024-05-01T10:00:01Z",
        ),
        event(
            "FailedMount",
            'MountVolume.SetUp failed for volume "context" : configmap "x" not found',
            "2024-05-01T10:00:05Z",
        ),
    ]
    assert mount_failure(events, ignore_volumes=("context", "secrets")) == (
        "FailedMount",
        'MountVolume.SetUp failed for volume "pvc-1" : bad',
    )
    assert mount_failure(events[1:], ignore_volumes=("context",)) is None


LOST = 'MountVolume.SetUp failed for volume "context" : configmap "s-context" not found'


def test_only_the_named_volumes_failures_when_asked() -> None:
    events = [
        {
            "reason": "FailedMount",
            "message": 'MountVolume.SetUp failed for volume "work" : x',
            "lastTimestamp": "2024-05-01T10:00:02Z",
        },
        {"reason": "FailedMount", "message": LOST, "lastTimestamp": "2024-05-01T10:00:01Z"},
    ]
    assert mount_failure(events, only_volumes=("context",)) == ("FailedMount", LOST)
    assert mount_failure(events, ignore_volumes=("context",)) == (
        "FailedMount",
        'MountVolume.SetUp failed for volume "work" : x',
    )
    assert mount_failure(events[:1], only_volumes=("context",)) is None
