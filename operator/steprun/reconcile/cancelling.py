"""A cancelled step's log followed through its grace period, then the step ended Cancelled.

It runs off the reconcile lanes (``reconcile/offlane.py``): the container may take its whole
grace period to end. The log is given up at the grace period plus ARCHIVE_MARGIN_SECONDS, and
not followed at all when the namespace has no free turn within the grace period.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from steprun.api.models import StepRun, is_terminal_phase
from steprun.kube.client import Conflict, Kube
from steprun.reconcile.artifacts import ARCHIVE_MARGIN_SECONDS, Artifacts
from steprun.reconcile.offlane import OffLane
from steprun.reconcile.rules import message_with


async def archive_then_cancel(
    off_lane: OffLane,
    artifacts: Artifacts,
    kube: Kube,
    sr: StepRun,
    pod_name: str,
    message: str,
    grace: int,
    end: Callable[[StepRun, str], Awaitable[None]],
) -> None:
    """Archives the log of ``pod_name``, then ``end``s the step with ``message`` and a note of
    how the archive went."""
    deadline = time.monotonic() + grace + ARCHIVE_MARGIN_SECONDS
    async with off_lane.slot(sr.namespace, grace) as got_a_turn:
        attempt = sr.status.attempt or 1
        if got_a_turn:
            within = deadline - time.monotonic()
            note = await artifacts.archive_log(
                sr, attempt, pod_name, follow=True, give_up_after=within
            )
        else:
            note = (
                f"log of attempt {attempt} not archived: namespace {sr.namespace} had "
                f"{off_lane.per_namespace} cancelled steps' logs in flight for the "
                "whole grace period"
            )
    try:
        await end(sr, message_with(message, note))
    except Conflict:
        # Changed during the grace period (labels, annotations): the cancel stands. Any other
        # failure ends this task, and the reconcile that follows cancels again.
        fresh = StepRun.from_body(await kube.get("StepRun", sr.namespace, sr.name))
        if fresh.uid == sr.uid and not is_terminal_phase(fresh.status.phase):
            await end(fresh, message_with(message, note))
