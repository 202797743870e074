"""Creating a step's children: create, or adopt what a previous run of the operator made.

An AlreadyExists answer is success only for an object that is this StepRun's and is what the
operator renders (an owner reference alone is anyone's to write, ``render/adoption.py``). A
child left by an earlier StepRun of the same name is removed and the create retried; anything
else ends the step without a Pod.
"""

from __future__ import annotations

from typing import Any

from steprun.api.models import StepRun
from steprun.kube.client import AlreadyExists, Kube, Refused
from steprun.log import for_steprun
from steprun.reconcile.rules import Ending, create_refused
from steprun.render.adoption import adoption_problems
from steprun.render.names import TRACKING_FINALIZER
from steprun.render.owners import from_namesake, is_owned_by


class StepAborted(Exception):
    """The step cannot run as written; it ends so, without a Pod."""

    def __init__(self, ending: Ending):
        super().__init__(ending.message)
        self.ending = ending


class NamesakeLeftover(Exception):
    """A child of an earlier StepRun of the same name is still there; it is being removed."""


class CreateFailed(Exception):
    """A child of the step could not be created; the attempt fails with this message."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


async def create_or_adopt(kube: Kube, sr: StepRun, body: dict[str, Any]) -> dict[str, Any]:
    kind, name = body["kind"], body["metadata"]["name"]
    try:
        return await kube.create(body)
    except AlreadyExists:
        existing = await kube.get_or_none(kind, sr.namespace, name)
        if existing is None:
            raise NamesakeLeftover(f"{kind} {name} was just deleted") from None
        if is_owned_by(existing, sr.uid):
            # An owner reference is no proof: anyone who may create the kind can write one.
            if problems := adoption_problems(body, existing):
                for_steprun(sr).warning(
                    "refusing to adopt an object the operator did not make",
                    kind=kind,
                    object=name,
                    problems=problems,
                )
                raise StepAborted(
                    create_refused(
                        f"{kind} {name} already exists, claims this StepRun as its owner, but "
                        f"is not what the operator made ({'; '.join(problems[:3])}); it is left "
                        "alone: delete it or rename the StepRun"
                    )
                ) from None
            return existing
        if from_namesake(existing, sr):
            await _remove_namesake_leftover(kube, sr, existing)
            raise NamesakeLeftover(f"{kind} {name} belongs to an earlier StepRun") from None
        raise StepAborted(
            create_refused(
                f"{kind} {name} already exists and is not owned by this StepRun; "
                "delete it or rename the StepRun"
            )
        ) from None
    except Refused as error:
        raise CreateFailed(f"the API server refused {kind} {name}: {error.message}") from None


async def _remove_namesake_leftover(kube: Kube, sr: StepRun, existing: dict[str, Any]) -> None:
    """A StepRun deleted and created again under the same name races the garbage collector for
    its old children: remove the old child now instead of failing."""
    meta = existing["metadata"]
    kind = existing.get("kind") or "Pod"
    for_steprun(sr).info("removing a child of an earlier namesake", kind=kind, child=meta["name"])
    if TRACKING_FINALIZER in (meta.get("finalizers") or []):
        await kube.remove_finalizer(kind, sr.namespace, existing, TRACKING_FINALIZER)
    await kube.delete(kind, sr.namespace, meta["name"], uid=meta.get("uid"))
