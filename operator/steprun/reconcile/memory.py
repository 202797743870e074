"""What the reconciler remembers of each StepRun beside the caches: one record per key.

Every fact here is a shortcut that a restart may lose without harm (docs/design.md): the
cluster stays the record, and each decision is derived again from it. Keeping them in one
record makes forgetting a StepRun one ``forget``, so no fact outlives the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from steprun.api.models import StepRun

Key = tuple[str, str]  # (namespace, name)

# The children whose uids are remembered for their delete when the step ends.
_CONTEXT_KINDS = frozenset({"ConfigMap", "Secret"})


def made_key(body: Mapping[str, Any]) -> str:
    """The step's one ConfigMap and Secret by kind; its Pods, one per attempt, by name."""
    kind = str(body["kind"])
    return kind if kind in _CONTEXT_KINDS else f"{kind}/{body['metadata']['name']}"


def remembered(body: Mapping[str, Any]) -> bool:
    """Whether the uid of a created child is remembered: the context objects and the Pods."""
    return body.get("kind") in _CONTEXT_KINDS or body.get("kind") == "Pod"


@dataclass
class StepMemory:
    # The StepRun last parsed, by its (uid, resourceVersion): most reconciles follow Pod events
    # and meet a version already parsed. Only live steps keep it.
    parsed: tuple[tuple[str, str], StepRun] | None = None
    # When the step's context was last checked: decide() checks it once per attempt, or while
    # the kubelet reports it missing.
    context_checked: datetime | None = None
    # When creating its Pod first failed for now (e.g. a full ResourceQuota): the startup
    # timeout bounds the wait, on the operator's clock.
    blocked_since: datetime | None = None
    # The uids of the children this process created or adopted (``made_key``), for the
    # StepRun of uid ``made_for``: deleted at the end by those uids, without reading them back.
    made_for: str = ""
    made: dict[str, str] = field(default_factory=dict)

    def made_uids(self, uid: str) -> dict[str, str]:
        """The uids of what was made for the StepRun of ``uid`` (a namesake's do not count)."""
        return self.made if self.made_for == uid else {}

    def note_made(self, uid: str, body: Mapping[str, Any]) -> None:
        if self.made_for != uid:
            self.made_for, self.made = uid, {}
        self.made[made_key(body)] = str(body["metadata"].get("uid") or "")

    def made_here(self, uid: str, body: Mapping[str, Any]) -> bool:
        child = body["metadata"].get("uid")
        return bool(child) and self.made_uids(uid).get(made_key(body)) == child

    def forget_made(self) -> dict[str, str]:
        """The uids made, forgotten: the step has ended (or its context is being deleted)."""
        made, self.made_for, self.made = self.made, "", {}
        return made


class Memory:
    """The records of every StepRun this process has seen and not yet forgotten."""

    def __init__(self) -> None:
        self._records: dict[Key, StepMemory] = {}

    def __call__(self, key: Key) -> StepMemory:
        """The record of ``key``, made empty on first use."""
        record = self._records.get(key)
        if record is None:
            record = self._records[key] = StepMemory()
        return record

    def peek(self, key: Key) -> StepMemory | None:
        """The record of ``key`` if there is one (reading makes none)."""
        return self._records.get(key)

    def forget(self, key: Key) -> None:
        self._records.pop(key, None)

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, key: object) -> bool:
        return key in self._records
