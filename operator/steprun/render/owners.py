"""Which StepRun owns an object: the one reading of ``ownerReferences`` in the package (pure).

A reference counts only when it names a StepRun of this API group. The operator makes itself
the controller of what one step owns (its Pods, context, NetworkPolicy), and a plain owner of
what a workflow run's steps share (a workspace's claim). An owner reference is anyone's to
write, so being named owner is never proof that the operator made an object
(``render/adoption.py`` checks that).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from steprun.api.models import GROUP, StepRun


def steprun_refs(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The references of ``body`` to StepRuns of this API group."""
    refs = (body.get("metadata") or {}).get("ownerReferences") or []
    return [
        ref
        for ref in refs
        if isinstance(ref, Mapping)
        and ref.get("kind") == "StepRun"
        and str(ref.get("apiVersion") or "").startswith(f"{GROUP}/")
    ]


def is_owned_by(body: Mapping[str, Any], uid: str) -> bool:
    """Whether the StepRun of ``uid`` is among the owners of ``body``."""
    return bool(uid) and any(ref.get("uid") == uid for ref in steprun_refs(body))


def controller_uid(body: Mapping[str, Any]) -> str | None:
    """The uid of the StepRun that controls ``body``, if one does."""
    for ref in steprun_refs(body):
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def is_controlled_by(body: Mapping[str, Any], uid: str) -> bool:
    return bool(uid) and controller_uid(body) == uid


def owner_name(body: Mapping[str, Any]) -> str | None:
    """The name of the StepRun that owns ``body`` (its controller first): unlike the name
    label, never shortened for long names."""
    refs = sorted(steprun_refs(body), key=lambda ref: not ref.get("controller"))
    return str(refs[0].get("name")) if refs else None


def from_namesake(body: Mapping[str, Any], sr: StepRun) -> bool:
    """Whether ``body`` was made for an earlier StepRun of the same name (another uid)."""
    named = [ref for ref in steprun_refs(body) if ref.get("name") == sr.name]
    return bool(named) and all(ref.get("uid") != sr.uid for ref in named)
